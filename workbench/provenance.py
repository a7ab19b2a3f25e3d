"""Where a trial's numbers came from: code version, packages, device, seed."""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("sparse-memory-workbench", "torch", "optuna", "duckdb", "fvcore", "numpy", "tokenizers", "xarray")


@functools.cache
def git_state() -> tuple[str | None, bool | None]:
    """The commit of the workbench's source checkout and whether it has uncommitted changes.

    A copy without ``.git`` (a GPU host gets the files only) names its commit in
    ``WORKBENCH_GIT_COMMIT``, set by whoever made the copy from a clean checkout
    (bench/trust_gpu.sh's caller).
    """
    named = os.environ.get("WORKBENCH_GIT_COMMIT")
    if named and not (Path(__file__).resolve().parents[1] / ".git").exists():
        return named, False
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit or None, bool(dirty)


@functools.cache
def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def device_name(device: Any) -> str:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def provenance(device: Any, seed: int) -> dict[str, Any]:
    commit, dirty = git_state()
    return {
        "git_commit": commit,
        "git_dirty": dirty,
        "packages": package_versions(),
        "device": str(device),
        "device_name": device_name(device),
        "seed": seed,
        "python": platform.python_version(),
        "torch": package_versions().get("torch"),
        "hostname": socket.gethostname(),
    }
