"""Workers sharing one study: trial owners, dead workers' trials, and the study's one target.

Every process that trains a study (``workbench run``, each of its ``--workers``, ``workbench worker``
on any host) coordinates through the optuna storage alone:

* **One target.** The study keeps its target number of designs (``wb.target``). The first process
  sets it; a later ``--trials`` only raises it (``--trials 6`` twice gives 6 designs, not 12); a
  process without ``--trials`` joins the stored target. A design is counted by its first run
  (replicate 0) once that run finished as complete, failed, infeasible or pruned; its other seeds
  are queued by that run and always trained. Runs that died, were interrupted or were skipped do
  not count.
* **Claims under a lock.** A process takes the study's lock (:class:`StudyLock`: ``flock`` on a file
  next to a journal or SQLite database, a PostgreSQL advisory lock), reaps dead trials, checks
  that a design is still open (finished designs + claimed running ones < target) or that another
  seed is queued, asks optuna for a trial and claims it by recording its owner (``wb.owner``), and
  only then lets go. So claims never exceed the target, and a RUNNING trial without an owner is one
  whose process died before it claimed it. A trial optuna hands out when no design is open (a
  queued design popped ahead of a queued seed) is not trained: it is failed with ``wb.status``
  ``skipped`` and never counts.
* **Dead workers.** A trial's owner is (host, pid, process start time, boot id). A RUNNING trial
  owned on this host by a process that is gone (or whose pid now belongs to another process) is
  failed with ``wb.status`` ``died`` and the reason in ``wb.error``, and re-queued with its
  parameters and its ``wb.replicate``/``wb.tuned``/``wb.first_run``, up to ``max_retry`` times
  (``wb.retry_of``, ``wb.retries``). On a journal, trials owned on other hosts cannot be checked
  and are left alone. On an RDB storage optuna's heartbeat does the same for every host: a trial
  without a heartbeat for ``grace_period`` seconds is failed the same way.
* **Sessions.** Each process that opens the study to train takes the next session number
  (``wb.sessions``) and seeds its sampler with (seed, session): a resumed or concurrent process
  continues the sampler instead of replaying the designs of the first.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from workbench import record
from workbench.errors import StoreError
from workbench.store.ingest import (
    IngestReport,
    ingest_storage,
    journal_path,
    mask_url,
    open_optuna_storage,
    rdb_url,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from workbench.store import Store

# Finished trials count toward the target under these statuses (a COMPLETE trial always does).
COUNTED = frozenset({"complete", "failed", "infeasible", "pruned"})
# How often a process with nothing to claim looks again while other trials may still die.
WAIT_S = 1.0


@dataclass(frozen=True, kw_only=True)
class Heartbeat:
    """How dead workers are found on an RDB storage, and how often their trials are retried.

    Every process of a study should use the same values: a process fails trials whose heartbeat
    is older than its own ``grace_period``."""

    interval: int = 10  # seconds between a running trial's heartbeats (RDB storages)
    grace_period: int = 30  # seconds without a heartbeat after which the trial's worker is dead
    max_retry: int = 2  # re-queues of a design's run after its worker died

    def check(self) -> None:
        if self.interval < 1:
            raise StoreError(f"--heartbeat-interval must be >= 1 second, got {self.interval}")
        if self.grace_period <= self.interval:
            raise StoreError(
                f"--grace-period ({self.grace_period} s) must be longer than --heartbeat-interval "
                f"({self.interval} s), or live workers are taken for dead ones"
            )
        if self.max_retry < 0:
            raise StoreError(f"--max-retry must be >= 0, got {self.max_retry}")


# Tries at opening an RDB storage whose schema another process may be creating at that moment.
SCHEMA_ATTEMPTS = 5


class WorkerDied(UserWarning):
    """A trial whose worker died was failed and re-queued (the CLI prints the message)."""


# --- the storage --------------------------------------------------------------------------------


def open_storage(url: str, heartbeat: Heartbeat) -> optuna.storages.BaseStorage:
    """The optuna storage at ``url``: a journal, or an RDB storage with optuna's heartbeat, whose
    dead trials are failed with their reason and re-queued (:func:`requeue`). Connection failures
    are one-line :class:`StoreError`\\ s with the password masked."""
    heartbeat.check()
    opened = open_optuna_storage(url)
    if not isinstance(opened, str):
        return opened
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    with storage_errors(url), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for attempt in range(SCHEMA_ATTEMPTS):
            try:
                rdb = _HeartbeatStorage(
                    opened,
                    engine_kwargs={"pool_pre_ping": True},
                    heartbeat_interval=heartbeat.interval,
                    grace_period=heartbeat.grace_period,
                    heartbeat_stale_trial_callback=_Requeue(heartbeat.max_retry),
                )
                break
            except (IntegrityError, ProgrammingError):
                # Workers started together on a new database race to create optuna's schema
                # (PostgreSQL: duplicate type "studydirection"); the loser finds it made.
                if attempt == SCHEMA_ATTEMPTS - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
    return optuna.storages.get_storage(rdb)


@contextlib.contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """Turn a database failure (connection refused, authentication, a server gone mid-study) into
    one :class:`StoreError` line naming the storage, its password masked."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except (SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
        cause = getattr(exc, "orig", None) or exc.__cause__ or exc
        detail = " ".join(str(cause).split()) or type(cause).__name__
        with contextlib.suppress(Exception):
            password = make_url(rdb_url(url)).password
            if password:
                detail = detail.replace(str(password), "***")
        raise StoreError(
            f"optuna storage {mask_url(url)}: {detail[:300]}; check that the database server is up and "
            "the URL (user, host, port, database) is right"
        ) from None


class _HeartbeatStorage(RDBStorage):
    """An RDB storage whose stale trials get ``wb.status`` ``died`` and the reason before optuna
    fails them (a finished trial's attributes can no longer be written)."""

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        stale = super()._get_stale_trial_ids(study_id)
        for trial_id in stale:
            owner = self.get_trial(trial_id).user_attrs.get(record.OWNER)
            who = f" from {_describe(owner)}" if isinstance(owner, Mapping) else ""
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                self.set_trial_user_attr(trial_id, record.STATUS, "died")
                self.set_trial_user_attr(
                    trial_id, record.ERROR, f"worker died: no heartbeat{who} for {self.grace_period} s"
                )
        return stale


class _Requeue:
    """optuna's heartbeat callback: :func:`requeue` a trial it failed."""

    def __init__(self, max_retry: int) -> None:
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        requeue(study, trial, self.max_retry)


# --- owners -------------------------------------------------------------------------------------


def owner_record() -> dict[str, Any]:
    """This process as a trial's owner: host, pid, start time (clock ticks after boot) and boot id."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _proc_stat(pid)[1], "boot": _boot_id()}


def owner_state(owner: Any) -> str:
    """``alive``, ``dead`` or ``elsewhere`` (another host: not checkable from here)."""
    if not isinstance(owner, Mapping) or owner.get("host") != socket.gethostname():
        return "elsewhere"
    boot = _boot_id()
    if owner.get("boot") and boot and owner.get("boot") != boot:
        return "dead"  # the machine rebooted since
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return "elsewhere"
    state, start = _proc_stat(pid)
    if state is None:
        if Path("/proc/self/stat").exists():
            return "dead"
        try:  # no /proc: a signal probe (pid reuse goes unnoticed)
            os.kill(pid, 0)
        except ProcessLookupError:
            return "dead"
        except PermissionError:
            return "alive"
        return "alive"
    if state in ("Z", "X") or (owner.get("start") is not None and owner.get("start") != start):
        return "dead"  # a zombie (killed, not yet waited for), or the pid now names another process
    return "alive"


def _proc_stat(pid: int) -> tuple[str | None, int | None]:
    """(state, start time in clock ticks) from ``/proc/<pid>/stat``; (None, None) when absent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None, None
    fields = stat.rsplit(")", 1)[1].split()  # the command name (field 2) may hold spaces and ')'
    return fields[0], int(fields[19])


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _describe(owner: Mapping[str, Any]) -> str:
    return f"pid {owner.get('pid')} on {owner.get('host')}"


# --- dead trials --------------------------------------------------------------------------------


def reap(study: optuna.Study, max_retry: int, *, report_elsewhere: bool = False) -> None:
    """Fail and re-queue the study's RUNNING trials whose worker died; hold :class:`StudyLock`.

    Dead: the owner is on this host and gone; or there is no owner (under the lock, a live worker
    has always claimed its trial); or, on an RDB storage, no heartbeat for the grace period. With
    ``report_elsewhere``, trials owned on other hosts of a storage without heartbeat are named in a
    :class:`WorkerDied` warning (they are left alone).
    """
    from optuna.storages._heartbeat import is_heartbeat_enabled

    heartbeat = is_heartbeat_enabled(study._storage)
    if heartbeat:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get(record.OWNER)
        if owner is None:
            reason = "worker died before it claimed the trial"
        else:
            state = owner_state(owner)
            if state == "elsewhere" and report_elsewhere and not heartbeat:
                warnings.warn(
                    f"trial {trial.number} is running on another host ({_describe(owner)}): left alone, "
                    "a journal cannot tell whether that worker is alive (re-run there to reap it)",
                    WorkerDied,
                    stacklevel=2,
                )
            if state != "dead":
                continue
            reason = f"worker died ({_describe(owner)} is gone)"
        _fail_died(study, trial, reason, max_retry)


def _fail_died(study: optuna.Study, trial: FrozenTrial, reason: str, max_retry: int) -> None:
    storage, trial_id = study._storage, trial._trial_id
    try:
        storage.set_trial_user_attr(trial_id, record.STATUS, "died")
        storage.set_trial_user_attr(trial_id, record.ERROR, reason)
        if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
            return
    except optuna.exceptions.UpdateFinishedTrialError:
        return  # it finished meanwhile, or another process reaped it first
    requeue(study, storage.get_trial(trial_id), max_retry)


def requeue(study: optuna.Study, trial: FrozenTrial, max_retry: int | None, *, died: bool = True) -> None:
    """Queue ``trial``'s run again: its parameters, the user attrs that say which run of which
    design it is (``wb.replicate``, ``wb.tuned``, ``wb.first_run``) and the retry series (optuna's
    ``failed_trial``/``retry_history`` system attrs, ``wb.retry_of``/``wb.retries``).

    A run whose worker ``died`` is queued at most ``max_retry`` times (None: always); an
    interrupted one (Ctrl-C) is queued without counting a retry. A sampled trial that died before
    it had parameters is queued too: the sampler fills the retry in. optuna's
    ``RetryHeartbeatStaleTrialCallback`` copies every user attr, the results and errors of the
    dead run included; this copies only what the next run needs.
    """
    first = int(trial.system_attrs.get("failed_trial", trial.number))
    history = list(trial.system_attrs.get("retry_history", []))
    if died:
        history.append(trial.number)
    if died and max_retry is not None and len(history) > max_retry:
        warnings.warn(
            f"trial {trial.number} ({trial.user_attrs.get(record.ERROR, 'worker died')}) is not re-queued: "
            f"its design's run died {len(history)} times (--max-retry {max_retry})",
            WorkerDied,
            stacklevel=2,
        )
        return
    keep = (record.REPLICATE, record.TUNED, record.FIRST_RUN)
    user_attrs = {key: trial.user_attrs[key] for key in keep if key in trial.user_attrs}
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs={**user_attrs, record.RETRY_OF: first, record.RETRIES: len(history)},
            system_attrs={**trial.system_attrs, "failed_trial": first, "retry_history": history},
        )
    )
    if died:
        warnings.warn(
            f"trial {trial.number} failed ({trial.user_attrs.get(record.ERROR, 'worker died')}); "
            f"its run is queued again (retry {len(history)} of {max_retry})",
            WorkerDied,
            stacklevel=2,
        )


def taken_for_dead(study: optuna.Study, trial_id: int) -> bool:
    """Another process failed this process's trial as ``died`` while it ran (its heartbeat stalled
    past the grace period): warns that the result is dropped and returns True."""
    trial = study._storage.get_trial(trial_id)
    if trial.state != TrialState.FAIL or trial.user_attrs.get(record.STATUS) != "died":
        return False
    warnings.warn(
        f"trial {trial.number} was failed by another process while this worker ran it "
        f"({trial.user_attrs.get(record.ERROR)}): its result is dropped and its run was queued again; "
        "a longer --grace-period avoids this on a loaded machine",
        WorkerDied,
        stacklevel=2,
    )
    return True


def _from_queue(trial: FrozenTrial) -> bool:
    """The trial was enqueued (a design's seed, a grid or cover point, a retry), not sampled."""
    return "fixed_params" in trial.system_attrs or "failed_trial" in trial.system_attrs


# --- the target ---------------------------------------------------------------------------------


def counts(trial: FrozenTrial) -> bool:
    """The finished trial counts toward the target: not died, interrupted or skipped."""
    if trial.state == TrialState.COMPLETE:
        return True
    return trial.state.is_finished() and trial.user_attrs.get(record.STATUS) in COUNTED


def _first_run(trial: FrozenTrial) -> bool:
    return int(trial.user_attrs.get(record.REPLICATE, 0)) == 0


@dataclass(frozen=True)
class Tally:
    """Where a study stands against its target (:func:`tally`)."""

    target: int | None  # designs (None: not set yet)
    designs: int  # designs counted: first runs finished under a counted status
    claimed: int  # first runs running, claimed by a worker
    trials: int  # finished trials that count, every seed
    running: int  # RUNNING trials
    running_here: int  # of them, owned on this host
    queued: int  # WAITING trials
    queued_seeds: int  # of them, other seeds of a design (always trained)

    @property
    def open_designs(self) -> int:
        """Designs that may still be started."""
        return 0 if self.target is None else max(0, self.target - self.designs - self.claimed)

    @property
    def done(self) -> bool:
        """The target is reached and nothing is left to train."""
        return (
            self.target is not None
            and self.designs >= self.target
            and self.running == 0
            and self.queued_seeds == 0
        )

    def line(self) -> str:
        target = "?" if self.target is None else str(self.target)
        return (
            f"{self.designs}/{target} designs done ({self.trials} trials), {self.running} running, "
            f"{self.queued} queued"
        )


def tally(study: optuna.Study) -> Tally:
    trials = study.get_trials(deepcopy=False)
    running = [t for t in trials if t.state == TrialState.RUNNING]
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    counted = [t for t in trials if counts(t)]
    target = study.user_attrs.get(record.STUDY_TARGET)
    return Tally(
        target=None if target is None else int(target),
        designs=sum(1 for t in counted if _first_run(t)),
        claimed=sum(1 for t in running if _first_run(t) and record.OWNER in t.user_attrs),
        trials=len(counted),
        running=len(running),
        running_here=sum(1 for t in running if owner_state(t.user_attrs.get(record.OWNER)) != "elsewhere"),
        queued=len(waiting),
        queued_seeds=sum(1 for t in waiting if not _first_run(t)),
    )


def queue_missing_seeds(study: optuna.Study, n_seeds: int) -> int:
    """Queue the seeds that completed designs lack when the study now trains ``n_seeds`` per
    design (resumed with a larger ``--repeats``); returns how many. A first run queues its
    design's other seeds only when it runs, so without this a finished study resumed for more
    seeds would train none. Hold :class:`StudyLock`."""
    # Imported here: the trial stage owns a design's seeds, and importing it loads torch.
    from workbench.trial import queue_seeds

    trials = study.get_trials(deepcopy=False)
    return sum(
        queue_seeds(
            study,
            t.params,
            int(t.user_attrs.get(record.RETRY_OF, t.number)),
            t.user_attrs.get(record.TUNED) or {},
            n_seeds,
            trials,
        )
        for t in trials
        if _first_run(t) and t.state == TrialState.COMPLETE
    )


def skip_leftovers(study: optuna.Study) -> int:
    """Once the study is done (:attr:`Tally.done`), fail the designs still queued (a retry queued
    for a trial nobody claimed, a queued point the target left out) as ``skipped``: they would
    never run, and nothing stays WAITING. Hold :class:`StudyLock`; returns how many."""
    now = tally(study)
    if not now.done:
        return 0
    leftovers = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    for trial in leftovers:
        study._storage.set_trial_user_attr(trial._trial_id, record.STATUS, "skipped")
        study._storage.set_trial_user_attr(
            trial._trial_id,
            record.ERROR,
            f"not trained: the study reached its target of {now.target} designs before this queued design ran",
        )
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    return len(leftovers)


def set_target(study: optuna.Study, designs: int | None, default: int) -> int:
    """The study's target after this process joins: ``designs`` (``--trials``) when it raises the
    stored one, else the stored one, else ``default``. Hold :class:`StudyLock`."""
    stored = study.user_attrs.get(record.STUDY_TARGET)
    if designs is not None:
        target = designs if stored is None else max(int(stored), designs)
    else:
        target = default if stored is None else int(stored)
    if stored is None or target != int(stored):
        study.set_user_attr(record.STUDY_TARGET, target)
    return target


def new_session(study: optuna.Study) -> int:
    """The next session number of the study (0 for the first process). Hold :class:`StudyLock`."""
    session = int(study.user_attrs.get(record.STUDY_SESSIONS, 0))
    study.set_user_attr(record.STUDY_SESSIONS, session + 1)
    return session


def session_seed(seed: int, session: int) -> int:
    """The sampler seed of a session: ``seed`` itself for the first, so a fresh study replays."""
    if session == 0:
        return seed
    import numpy as np

    return int(np.random.SeedSequence([seed, session]).generate_state(1)[0])


# --- the lock -----------------------------------------------------------------------------------


class StudyLock:
    """The lock every process of a study holds to reap, claim a trial or change the target.

    A journal or SQLite file: ``flock`` on ``<file>.workers.lock`` next to it; PostgreSQL: a
    session advisory lock keyed by the study name. Both are let go by the kernel or the server when
    the holder dies. Other databases get a lock within this process only (claims across processes
    may then pass the target).
    """

    def __init__(self, storage_url: str, study_name: str) -> None:
        self.study_name = study_name
        self._url = rdb_url(storage_url)
        self._path = self._file_of(storage_url)
        self._fd: int | None = None
        self._pg: Connection | None = None
        self._local = threading.Lock()
        self.held = False

    @staticmethod
    def _file_of(url: str) -> str | None:
        path = journal_path(url)
        if path is None and url.startswith("sqlite:///"):
            path = url.removeprefix("sqlite:///") or None
        return None if path in (None, ":memory:") else f"{path}.workers.lock"

    def acquire(self) -> None:
        self._local.acquire()
        try:
            if self._path is not None:
                try:
                    self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
                except OSError as exc:
                    raise StoreError(
                        f"cannot create the study lock {self._path}: {exc.strerror or exc}; "
                        "the storage's folder must be writable"
                    ) from None
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            elif self._url.startswith("postgresql"):
                from sqlalchemy import text

                with storage_errors(self._url):
                    self._pg_connection().execute(text("SELECT pg_advisory_lock(:key)"), {"key": self._key()})
        except BaseException:
            self._close_file()
            self._local.release()
            raise
        self.held = True

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        try:
            if self._pg is not None:
                from sqlalchemy import text

                with storage_errors(self._url):
                    self._pg.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self._key()})
        finally:
            self._close_file()
            self._local.release()

    def __enter__(self) -> StudyLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _close_file(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor lets go of the flock
            self._fd = None

    def _key(self) -> int:
        digest = hashlib.sha256(f"workbench study {self.study_name}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def _pg_connection(self) -> Connection:
        if self._pg is None:
            import sqlalchemy
            from sqlalchemy.pool import NullPool

            # Server-side keepalives: the lock of a host that vanished is let go within ~25 s.
            keepalive = "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3"
            engine = sqlalchemy.create_engine(
                self._url, poolclass=NullPool, connect_args={"options": keepalive}
            )
            self._pg = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._pg


def claim(study: optuna.Study, trial: optuna.Trial, lock: StudyLock) -> bool:
    """Claim ``trial`` for this process when it may run, and let go of ``lock`` (held since before
    optuna created or popped the trial). A design's other seed always may; a first run only while
    a design is open. An unclaimed trial keeps the lock until it is finished (``skipped``), so no
    other process takes it for one whose worker died."""
    if int(trial.user_attrs.get(record.REPLICATE, 0)) != 0 or tally(study).open_designs > 0:
        trial.set_user_attr(record.OWNER, owner_record())
        lock.release()
        return True
    return False


def requeue_interrupted(study: optuna.Study, trial: optuna.Trial) -> None:
    """Queue again the run of ``trial``, stopped by Ctrl-C or SIGTERM, if it was claimed or came
    from the queue: an interrupted run does not count, and its design (or seed) is not lost."""
    frozen = study._storage.get_trial(trial._trial_id)
    if record.OWNER in frozen.user_attrs or _from_queue(frozen):
        requeue(study, frozen, None, died=False)


# --- ingest while a study runs ------------------------------------------------------------------


def reap_and_ingest(
    store: Store,
    storage_url: str,
    study_names: Sequence[str] | None,
    heartbeat: Heartbeat,
    *,
    missing_ok: bool = False,
    report_elsewhere: bool = True,
    storage: optuna.storages.BaseStorage | None = None,
    locks: dict[str, StudyLock] | None = None,
) -> list[tuple[str, IngestReport | None, Tally | None]]:
    """Reap each study's dead trials (under its lock), then ingest it: ``(name, report, tally)``
    per study, ``(name, None, None)`` for one not in the storage yet (``missing_ok``; otherwise
    :func:`ingest_storage` refuses it). The tally is taken before the ingest, so a study it
    finds done is stored whole. ``storage`` and ``locks`` (one per study) are reused across calls.
    """
    storage = storage or open_storage(storage_url, heartbeat)
    locks = {} if locks is None else locks
    with storage_errors(storage_url):
        available = optuna.get_all_study_names(storage)
        names = list(available) if study_names is None else list(study_names)
        tallies = {}
        for name in names:
            if name in available:
                study = optuna.load_study(study_name=name, storage=storage)
                with locks.setdefault(name, StudyLock(storage_url, name)):
                    reap(study, heartbeat.max_retry, report_elsewhere=report_elsewhere)
                tallies[name] = tally(study)
        wanted = [name for name in names if name in available or not missing_ok]
        reports = {r.study_name: r for r in ingest_storage(store, storage, wanted, url=storage_url)}
    return [(name, reports.get(name), tallies.get(name)) for name in names]


def follow(
    store: Store,
    storage_url: str,
    study_names: Sequence[str] | None,
    heartbeat: Heartbeat,
    interval: float,
) -> Iterator[str]:
    """Keep the store in step with studies that are running: a pass (:func:`reap_and_ingest`) every
    ``interval`` seconds, one line per study per pass; returns once every study has reached its
    target with nothing running and no seed queued. Without names, every study in the storage."""
    storage = open_storage(storage_url, heartbeat)
    locks: dict[str, StudyLock] = {}
    first = True
    while True:
        started = time.monotonic()
        passes = reap_and_ingest(
            store,
            storage_url,
            study_names,
            heartbeat,
            missing_ok=True,
            report_elsewhere=first,
            storage=storage,
            locks=locks,
        )
        first = False
        stamp = time.strftime("%H:%M:%S")
        if not passes:
            yield f"{stamp} no studies in {mask_url(storage_url)} yet"
        for name, report, now in passes:
            if report is None or now is None:
                yield f"{stamp} {name}: not in the storage yet"
            else:
                yield f"{stamp} {name}: {now.line()}; {report.n_written} trials written"
        if passes and all(now is not None and now.done for _, _, now in passes):
            return
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
