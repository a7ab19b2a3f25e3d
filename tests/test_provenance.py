"""workbench.provenance: the commit a trial's code came from."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_copy_without_git_names_its_commit_from_the_environment(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "workbench", copy / "workbench")
    code = "from workbench.provenance import git_state; print(git_state())"
    env = {"PATH": "/usr/bin:/bin", "WORKBENCH_GIT_COMMIT": "abc123", "PYTHONPATH": str(copy)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=copy, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "('abc123', False)"


def test_a_checkout_reports_its_own_commit_whatever_the_environment_says() -> None:
    from workbench.provenance import git_state

    commit, _ = git_state()
    assert commit is not None and commit != "abc123" and len(commit) == 40
