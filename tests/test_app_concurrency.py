"""The app keeps working while `workbench run` writes to the same store, and shows the new trials.

DuckDB lets a writer in only while no other process has the file open, and keeps readers out while
it writes; the app holds no connection between queries and retries a locked file, and the study
writes one trial per short transaction. Here a real `workbench run` process trains a tiny study
while this process loads every page over and over with AppTest.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers_app import TINY_TOKENS, tiny_space_file
from streamlit.testing.v1 import AppTest

from workbench.errors import StoreError
from workbench.explore import STORE_ENV
from workbench.store import Store

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "app" / "streamlit_app.py"
TRIALS = 2
PAUSE_S = 0.2  # between page loads: a quick human, and CPU left for the training process


def wait_for_study(store: Path, writer: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    """Until the writer has created and migrated the store and registered its study."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert writer.poll() is None, "the study process exited before writing the store"
        if store.is_file():
            try:
                if not Store.open(store, read_only=True).studies().empty:
                    return
            except StoreError:
                pass  # not migrated yet, or locked by the writer
        time.sleep(0.1)
    raise AssertionError("the study process did not register its study in time")


def test_pages_load_while_a_study_is_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    space = tiny_space_file(tmp_path)
    store = tmp_path / "wb.duckdb"
    env = {
        **os.environ,
        "WORKBENCH_CACHE": str(tmp_path / "cache"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    command = ["run", str(space), "--trials", str(TRIALS), "--sampler", "random", "--device", "cpu"]
    command += ["--set", f"train.tokens={TINY_TOKENS}"]
    writer = subprocess.Popen(
        [sys.executable, "-m", "workbench", *command, "--store", str(store), "--no-progress"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_study(store, writer)
        monkeypatch.setenv(STORE_ENV, str(store))
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.run()
        loads, during, seen = 0, 0, set()
        pages = [
            "studies",
            "pareto",
            "studies",
            "trial",
            "studies",
            "compare",
            "studies",
            "grid",
            "studies",
            "sql",
        ]
        while writer.poll() is None or loads < len(pages):
            during += writer.poll() is None
            page = pages[loads % len(pages)]
            at.switch_page(f"views/{page}.py").run()
            assert not at.exception, (page, [e.value for e in at.exception])
            assert not at.error, (page, [e.value for e in at.error])
            if page == "studies":
                seen.add(int(at.dataframe[0].value["n_trials"].iloc[0]))
            loads += 1
            time.sleep(PAUSE_S)
        _, stderr = writer.communicate(timeout=120)
        # One more Studies load after the writer's last ingest: on a busy machine every trial
        # can land between the loop's last Studies load and the writer's exit.
        at.switch_page("views/studies.py").run()
        assert not at.exception and not at.error
        seen.add(int(at.dataframe[0].value["n_trials"].iloc[0]))
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert writer.returncode == 0, stderr.decode()[-2000:]
    assert during >= len(pages)  # every page ran while the study was writing

    assert len(seen) >= 2, seen  # and showed it growing

    time.sleep(2.1)  # the data version is re-read at most every 2 s
    at.switch_page("views/studies.py").run()
    row = at.dataframe[0].value.iloc[0]
    assert (row["n_trials"], row["n_complete"]) == (TRIALS, TRIALS)


WRITER = """
import sys, time
from pathlib import Path
from workbench.store.ingest import ingest_storage
from workbench.store import Store
store, journal, stop, count = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
end = time.monotonic() + 300  # a safety net: the test stops it long before
n = 0
while not stop.exists() and time.monotonic() < end:
    ingest_storage(Store.open(store), journal, force=True)  # rewrites every trial, a few per transaction
    n += 1
    count.write_text(str(n))
    time.sleep(0.05)
print(n)
"""


def test_pages_load_while_trials_are_rewritten_again_and_again(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A harsher writer than a study: it re-ingests every trial in a loop, holding the write lock
    most of the time. Every page must still load (waiting for the lock), without an error."""
    import shutil

    from helpers_app import session_store

    source = session_store("real", tmp_path_factory)
    for name in ("wb.duckdb", "wb.optuna.journal"):
        shutil.copy(source.parent / name, tmp_path / name)
    store = tmp_path / "wb.duckdb"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    stop, count = tmp_path / "stop", tmp_path / "count"
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            WRITER,
            str(store),
            str(tmp_path / "wb.optuna.journal"),
            str(stop),
            str(count),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )

    def rewrites() -> int:
        return int(count.read_text() or 0) if count.exists() else 0

    try:
        monkeypatch.setenv(STORE_ENV, str(store))
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.run()
        pages = ["studies", "pareto", "health", "trial", "params", "compare", "sql"]
        # Until every page has loaded at least once after the writer's first rewrite, and the
        # writer has rewritten the store a few times; counted in loads, not seconds, so a slow
        # machine (CI's two cores) runs it longer rather than failing it.
        loads, deadline = 0, time.monotonic() + 240
        while (loads < len(pages) or rewrites() < 3) and time.monotonic() < deadline:
            assert writer.poll() is None, writer.communicate()[1].decode()[-2000:]
            if rewrites() == 0:
                time.sleep(PAUSE_S)
                continue
            page = pages[loads % len(pages)]
            at.switch_page(f"views/{page}.py").run()
            assert not at.exception, (page, [e.value for e in at.exception])
            assert not at.error, (page, [e.value for e in at.error])
            loads += 1
            time.sleep(PAUSE_S)
        stop.touch()
        out, err = writer.communicate(timeout=120)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert writer.returncode == 0, err.decode()[-2000:]
    assert int(out) >= 3 and loads >= len(pages), (int(out), loads)
