"""workbench.workers: owners, dead trials re-queued, the shared target, the study lock, follow."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from workbench import record, workers
from workbench.errors import StoreError
from workbench.store import Store
from workbench.workers import Heartbeat, StudyLock

KIND = {"memory.kind": CategoricalDistribution(["dense", "switch"])}


def journal_study(tmp_path: Path, name: str = "s") -> tuple[str, optuna.Study]:
    url = str(tmp_path / "study.journal")
    study = optuna.create_study(study_name=name, storage=workers.open_storage(url, Heartbeat()))
    return url, study


def running_trial(study: optuna.Study, owner: object, **user_attrs: object) -> optuna.trial.FrozenTrial:
    """A RUNNING trial popped from the queue, with a parameter, ``owner`` and ``user_attrs``."""
    study.enqueue_trial({"memory.kind": "switch"}, user_attrs=dict(user_attrs))
    trial = study.ask(KIND)
    if owner is not None:
        trial.set_user_attr(record.OWNER, owner)
    return study._storage.get_trial(trial._trial_id)


def dead_owner() -> dict[str, object]:
    """The owner record of a process that has exited (and been waited for)."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import json, workbench.workers as w; print(json.dumps(w.owner_record()))"],
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = child.communicate(timeout=60)
    import json

    return dict(json.loads(out))


def test_owner_state_tells_alive_dead_reused_zombie_and_elsewhere() -> None:
    me = workers.owner_record()
    assert me["host"] == socket.gethostname() and me["pid"] == os.getpid()
    assert workers.owner_state(me) == "alive"
    assert workers.owner_state({**me, "start": int(me["start"]) + 1}) == "dead"  # the pid was reused
    assert workers.owner_state({**me, "boot": "another-boot"}) == "dead"  # the machine rebooted
    assert workers.owner_state({**me, "host": "another-host"}) == "elsewhere"
    assert workers.owner_state(dead_owner()) == "dead"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = {**me, "pid": child.pid, "start": workers._proc_stat(child.pid)[1]}
        assert workers.owner_state(owner) == "alive"
        child.kill()
        time.sleep(0.5)  # killed, not yet waited for: a zombie
        assert workers.owner_state(owner) == "dead"
    finally:
        child.kill()
        child.wait()


def test_a_dead_owners_trial_is_failed_with_its_reason_and_requeued_with_its_attrs(tmp_path: Path) -> None:
    url, study = journal_study(tmp_path)
    owner = dead_owner()
    dead = running_trial(study, owner, **{record.REPLICATE: 1, record.TUNED: {"train.lr": 0.01}})
    study._storage.set_trial_user_attr(dead._trial_id, record.CURVE, [[1, "val_loss", 3.0]])
    with pytest.warns(workers.WorkerDied, match="queued again"), StudyLock(url, "s"):
        workers.reap(study, max_retry=2)
    trials = study.get_trials()
    failed, retry = trials[dead.number], trials[-1]
    assert failed.state == TrialState.FAIL and failed.user_attrs[record.STATUS] == "died"
    assert failed.user_attrs[record.ERROR] == f"worker died (pid {owner['pid']} on {owner['host']} is gone)"
    assert retry.state == TrialState.WAITING and retry.params == {"memory.kind": "switch"}
    assert retry.user_attrs == {
        record.REPLICATE: 1,
        record.TUNED: {"train.lr": 0.01},
        record.RETRY_OF: dead.number,
        record.RETRIES: 1,
    }  # not the dead run's curve, status or owner
    assert retry.system_attrs["retry_history"] == [dead.number]  # optuna's retry series


def test_a_live_or_remote_owners_trial_is_left_alone(tmp_path: Path) -> None:
    url, study = journal_study(tmp_path)
    live = running_trial(study, workers.owner_record())
    remote = running_trial(study, {"host": "node-7", "pid": 4242, "start": 1, "boot": "b"})
    elsewhere = r"trial 1 is running on another host \(pid 4242 on node-7\): left alone"
    with pytest.warns(workers.WorkerDied, match=elsewhere), StudyLock(url, "s"):
        workers.reap(study, max_retry=2, report_elsewhere=True)
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.RUNNING, TrialState.RUNNING]
    assert (live.number, remote.number) == (0, 1)


def test_a_trial_nobody_claimed_is_dead_under_the_lock(tmp_path: Path) -> None:
    url, study = journal_study(tmp_path)
    running_trial(study, None)  # its process died between optuna's ask and the claim
    with pytest.warns(workers.WorkerDied), StudyLock(url, "s"):
        workers.reap(study, max_retry=2)
    first, retry = study.get_trials()
    assert first.user_attrs[record.ERROR] == "worker died before it claimed the trial"
    assert retry.state == TrialState.WAITING


def test_retries_stop_at_max_retry(tmp_path: Path) -> None:
    url, study = journal_study(tmp_path)
    running_trial(study, dead_owner())
    with pytest.warns(workers.WorkerDied, match=r"queued again \(retry 1 of 1\)"), StudyLock(url, "s"):
        workers.reap(study, max_retry=1)
    retry = study.ask(KIND)  # the retry runs, and its worker dies too
    retry.set_user_attr(record.OWNER, dead_owner())
    message = r"not re-queued: its design's run died 2 times \(--max-retry 1\)"
    with pytest.warns(workers.WorkerDied, match=message), StudyLock(url, "s"):
        workers.reap(study, max_retry=1)
    assert [t.user_attrs.get(record.STATUS) for t in study.get_trials()] == ["died", "died"]


def test_the_target_only_rises_and_sessions_count_up(tmp_path: Path) -> None:
    _, study = journal_study(tmp_path)
    assert workers.set_target(study, None, default=4) == 4  # a new study: the space's trials
    assert workers.set_target(study, 6, default=4) == 6  # --trials raises it
    assert workers.set_target(study, 6, default=4) == 6  # --trials 6 twice: still 6
    assert workers.set_target(study, 2, default=4) == 6  # never lowered
    assert workers.set_target(study, None, default=9) == 6  # a process without --trials joins it
    assert [workers.new_session(study) for _ in range(3)] == [0, 1, 2]
    seeds = {workers.session_seed(0, s) for s in range(3)}
    assert workers.session_seed(0, 0) == 0 and len(seeds) == 3
    assert workers.session_seed(5, 2) == workers.session_seed(5, 2)


def test_tally_counts_designs_by_their_first_run(tmp_path: Path) -> None:
    _, study = journal_study(tmp_path)
    workers.set_target(study, 3, default=3)

    def finished(status: str, state: TrialState, replicate: int = 0) -> None:
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                values=[1.0] if state == TrialState.COMPLETE else None,
                user_attrs={record.STATUS: status, record.REPLICATE: replicate},
            )
        )

    finished("complete", TrialState.COMPLETE)
    finished("complete", TrialState.COMPLETE, replicate=1)
    finished("failed", TrialState.FAIL)
    for status in ("died", "interrupted", "skipped"):
        finished(status, TrialState.FAIL)
    running_trial(study, workers.owner_record())
    study.enqueue_trial({}, user_attrs={record.REPLICATE: 1})
    now = workers.tally(study)
    assert (now.designs, now.claimed, now.trials, now.running, now.queued_seeds) == (2, 1, 3, 1, 1)
    assert now.open_designs == 0 and not now.done
    assert now.line() == "2/3 designs done (3 trials), 1 running, 1 queued"


def test_the_study_lock_excludes_other_processes(tmp_path: Path) -> None:
    url = str(tmp_path / "study.journal")
    script = (
        "import sys, time; from workbench.workers import StudyLock\n"
        "lock = StudyLock(sys.argv[1], 's'); lock.acquire(); print('held', flush=True); time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script, url], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        got = threading.Event()

        def take() -> None:
            with StudyLock(url, "s"):
                got.set()

        thread = threading.Thread(target=take, daemon=True)
        thread.start()
        assert not got.wait(1.0)  # held by the child
        child.send_signal(signal.SIGKILL)  # the kernel lets go of a dead holder's lock
        assert got.wait(10.0)
        thread.join(10.0)
    finally:
        child.kill()
        child.wait()


def test_follow_stops_once_the_study_is_done(tmp_path: Path) -> None:
    url, study = journal_study(tmp_path)
    store = Store.open(tmp_path / "wb.duckdb")
    lines = workers.follow(store, url, ["s", "later"], Heartbeat(), interval=0.01)
    assert next(lines).endswith("s: 0/? designs done (0 trials), 0 running, 0 queued; 0 trials written")
    assert next(lines).endswith("later: not in the storage yet")
    workers.set_target(study, 1, default=1)
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.COMPLETE, values=[1.0], user_attrs={record.STATUS: "complete"}
        )
    )
    optuna.create_study(study_name="later", storage=workers.open_storage(url, Heartbeat()))
    later = optuna.load_study(study_name="later", storage=workers.open_storage(url, Heartbeat()))
    workers.set_target(later, 1, default=1)
    later.add_trial(
        optuna.trial.create_trial(
            state=TrialState.COMPLETE, values=[2.0], user_attrs={record.STATUS: "complete"}
        )
    )
    rest = list(lines)
    assert rest[-2].endswith("s: 1/1 designs done (1 trials), 0 running, 0 queued; 1 trials written")
    assert rest[-1].endswith("later: 1/1 designs done (1 trials), 0 running, 0 queued; 1 trials written")
    assert store.counts()["trials"] == 2


def test_heartbeat_options_are_checked() -> None:
    with pytest.raises(StoreError, match=r"--grace-period .* must be longer than --heartbeat-interval"):
        Heartbeat(interval=10, grace_period=5).check()
    with pytest.raises(StoreError, match="--max-retry must be >= 0"):
        Heartbeat(max_retry=-1).check()


# --- PostgreSQL -------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_trial_without_heartbeat_on_postgresql_is_failed_and_requeued(pg_url: str) -> None:
    heartbeat = Heartbeat(interval=1, grace_period=2, max_retry=2)
    storage = workers.open_storage(pg_url, heartbeat)
    study = optuna.create_study(study_name="hb", storage=storage)
    remote = {
        "host": "node-7",
        "pid": 4242,
        "start": 1,
        "boot": "b",
    }  # another host: only its heartbeat tells
    trial = running_trial(study, remote, **{record.REPLICATE: 0})
    storage.record_heartbeat(trial._trial_id)
    time.sleep(3.5)
    with pytest.warns(workers.WorkerDied, match="queued again"), StudyLock(pg_url, "hb"):
        workers.reap(study, heartbeat.max_retry)
    failed, retry = study.get_trials()
    assert failed.state == TrialState.FAIL and failed.user_attrs[record.STATUS] == "died"
    assert failed.user_attrs[record.ERROR] == "worker died: no heartbeat from pid 4242 on node-7 for 2 s"
    assert retry.state == TrialState.WAITING and retry.params == {"memory.kind": "switch"}
    assert retry.user_attrs[record.RETRY_OF] == failed.number


def test_the_postgresql_lock_excludes_other_processes_and_dies_with_them(pg_url: str) -> None:
    script = (
        "import sys, time; from workbench.workers import StudyLock\n"
        "lock = StudyLock(sys.argv[1], 's'); lock.acquire(); print('held', flush=True); time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script, pg_url], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        got = threading.Event()

        def take() -> None:
            lock = StudyLock(pg_url, "s")
            with lock:
                got.set()

        thread = threading.Thread(target=take, daemon=True)
        thread.start()
        assert not got.wait(1.0)
        assert StudyLock(pg_url, "another study")._key() != StudyLock(pg_url, "s")._key()
        child.send_signal(signal.SIGKILL)
        assert got.wait(10.0)
        thread.join(10.0)  # it lets go before the test's database is dropped
    finally:
        child.kill()
        child.wait()


def test_designs_still_queued_when_the_study_is_done_are_skipped(tmp_path: Path) -> None:
    url, study = journal_study(tmp_path)
    workers.set_target(study, 1, default=1)
    study.enqueue_trial({"memory.kind": "dense"})
    with StudyLock(url, "s"):
        assert workers.skip_leftovers(study) == 0  # not done: the design may still run
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.COMPLETE, values=[1.0], user_attrs={record.STATUS: "complete"}
        )
    )
    with StudyLock(url, "s"):
        assert workers.skip_leftovers(study) == 1
    queued = study.get_trials()[0]
    assert queued.state == TrialState.FAIL and queued.user_attrs[record.STATUS] == "skipped"
    assert workers.tally(study).designs == 1


def test_workers_opening_a_new_postgresql_database_together_all_get_the_storage(pg_url: str) -> None:
    """Four processes create optuna's schema at once (the chaos bench's first failure: one lost
    the race with `duplicate key ... studydirection`); every one must open the storage."""
    script = (
        "import sys, threading\n"
        "from workbench import workers\n"
        "barrier_file = sys.argv[2]\n"
        "import time, os\n"
        "while not os.path.exists(barrier_file): time.sleep(0.01)\n"
        "workers.open_storage(sys.argv[1], workers.Heartbeat())\n"
        "print('opened')\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        go = os.path.join(tmp, "go")
        children = [
            subprocess.Popen(
                [sys.executable, "-c", script, pg_url, go],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        time.sleep(3)  # all imported and waiting
        Path(go).touch()
        results = [child.communicate(timeout=120) for child in children]
    assert [c.returncode for c in children] == [0, 0, 0, 0], [err[-500:] for _, err in results]
    assert all(out.strip() == "opened" for out, _ in results)
