"""Run a study: a space file, an optuna study, trials trained back to back, a DuckDB store.

Optuna storage (a journal file by default) coordinates trials and is the source of truth;
after each trial the run process copies it into DuckDB (short write transactions), so the
app can read the store while a study runs. Re-running the same command resumes the study
up to its trial target. A new study gets a uuid (user attr ``wb.study_uid``) that the store
records; a study whose name the store holds for another optuna study (its journal was deleted)
is refused as it opens, before anything trains (see :mod:`workbench.store.ingest`). A crashed trial
is recorded as failed with its reason and the study goes on; Ctrl-C stops after recording every
finished trial.

Several workers (``workbench run --workers N``) run ``study.optimize`` in N processes on the
one optuna storage (the journal file takes concurrent writers); each trains trials back to
back, keeping its token data on its device and its compiled kernels, and copies each
finished trial into DuckDB (short write transactions that wait out another writer's lock).
On one GPU the workers share it, which pays for small models whose steps leave the GPU idle
between kernels; with several visible GPUs worker i gets GPU ``i mod G`` through its own
``CUDA_VISIBLE_DEVICES`` (so ``--workers G`` is one worker per GPU).

``workbench worker`` is one such worker on any host: it joins (or creates) the study in the
optuna storage (PostgreSQL, for several hosts) and never opens DuckDB; ``workbench ingest
--follow`` copies the study into the store on one host. Every process of a study shares its
one target of designs, claims trials under the study's lock, reaps the trials of dead workers
and continues the sampler instead of replaying it (:mod:`workbench.workers`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench import record
from workbench.errors import WorkbenchError
from workbench.space import Space

if TYPE_CHECKING:
    import optuna
    import torch

    from workbench.early_stop import EarlyStop
    from workbench.store import Store
    from workbench.workers import Heartbeat, StudyLock

SAMPLERS = ("tpe", "nsga2", "random", "grid", "qmc")


@dataclass(frozen=True, kw_only=True)
class StudyOptions:
    """Options of ``workbench run`` and ``workbench worker`` (see their --help)."""

    trials: int | None = None
    timeout: float | None = None
    study_name: str | None = None
    storage: str | None = None
    store: str = "store/workbench.duckdb"
    device: str = "auto"
    seed: int = 0
    sampler: str = "tpe"
    progress: bool = True
    workers: int = 1
    retrain_duplicates: bool = False
    early_stop: EarlyStop | None = None  # stop runs at rungs of their budget (workbench/early_stop.py)
    heartbeat: Heartbeat | None = None  # dead-worker detection and retries (default: Heartbeat())


@dataclass
class StudyOutcome:
    study_name: str
    storage_url: str
    store_path: str | None  # None for `workbench worker`, which writes only to the optuna storage
    target: int  # the study's target of designs
    designs: int  # designs counted toward it
    ran: int  # trials that count, finished during this process
    counts: dict[str, int]
    interrupted: bool


def resolve_device(name: str) -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise WorkbenchError(
                f"--device {name}: no CUDA device is visible on this machine; use --device cpu or auto"
            )
        return torch.device(name)
    raise WorkbenchError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N")


def default_storage(store_path: str) -> str:
    """A journal file next to the store: ``store/workbench.optuna.journal``."""
    p = Path(store_path)
    return str(p.with_name(p.stem + ".optuna.journal"))


def make_sampler(name: str, space: Space, seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=6)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name in ("random", "grid"):
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    raise WorkbenchError(f"--sampler {name!r}: expected one of {', '.join(SAMPLERS)}")


def apply_overrides(space: Space, overrides: Mapping[str, Any], repeats: int | None = None) -> Space:
    """The space with ``--set`` values fixed and ``--repeats`` applied. The study's ``--seed``
    is not a override: it is the first of the seeds a design trains under (``Space.seeds``),
    and a ``train.seed`` the space declares (or ``--set``) wins over it."""
    space = space.with_overrides(overrides) if overrides else space
    return space.with_repeats(repeats) if repeats is not None else space


def open_study(space: Space, opts: StudyOptions, storage_url: str, store: Store | None) -> optuna.Study:
    """Create the study of ``space`` (with a new ``wb.study_uid``) or load it to resume.

    Refuses with :class:`StudyMismatchError`, before anything is created or trained, when
    ``store`` holds rows of another optuna study under the name (``store`` None: a worker that
    writes only to the optuna storage).
    """
    import optuna

    from workbench.store.ingest import check_study_identity
    from workbench.workers import Heartbeat, open_storage

    storage = open_storage(storage_url, opts.heartbeat or Heartbeat())
    name = opts.study_name or space.name
    # A study from before uids gets one now, like a new study: either way it differs from any stored uid.
    uid = _optuna_uid(storage, name) or uuid.uuid4().hex
    if store is not None:
        check_study_identity(store, name, uid, storage_url)
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        directions=[optuna.study.StudyDirection[d.upper()] for d in space.directions],
        sampler=make_sampler(opts.sampler, space, opts.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1),
        load_if_exists=True,
    )
    if [d.name.lower() for d in study.directions] != space.directions:
        raise WorkbenchError(
            f"study {name!r} exists with objectives {[d.name.lower() for d in study.directions]}, "
            f"but the space declares {space.directions}; use --study-name to start a new study"
        )
    stored = study.user_attrs.get(record.STUDY_SPACE)
    current = space.to_json()
    if stored is not None and record.without_legacy_constants(
        stored.get("params") or {}
    ) != record.without_legacy_constants(current["params"]):
        raise WorkbenchError(
            f"study {name!r} exists with a different search space; use --study-name NEW to start a new study "
            "(or restore the space file)"
        )
    study.set_user_attr(record.STUDY_SPACE, current)
    study.set_user_attr(record.STUDY_OBJECTIVES, [o.to_json() for o in space.objectives])
    # Set once: a resumed study keeps its identity (read again: another process may have just set it).
    if record.STUDY_UID not in study.user_attrs:
        study.set_user_attr(record.STUDY_UID, uid)
    return study


def _optuna_uid(storage: optuna.storages.BaseStorage, name: str) -> str | None:
    """``wb.study_uid`` of the study ``name`` in ``storage``; None when it has none or does not exist."""

    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    uid = storage.get_study_user_attrs(study_id).get(record.STUDY_UID)
    return None if uid is None else str(uid)


def join_study(study: optuna.Study, space: Space, opts: StudyOptions, lock: StudyLock) -> int:
    """Join the study as one of its processes, under its lock; returns its target of designs.

    Reaps the trials of dead workers, sets or raises the target (:func:`workbench.workers.set_target`),
    queues the seeds that finished designs lack under a larger ``--repeats``, seeds this
    process's sampler from its session, and queues the cover points and (``grid``) the grid
    points not yet tried, no more than the designs still open.
    """
    from workbench import workers

    default = space.trials
    if opts.sampler == "grid" and opts.trials is None:
        default = min(default, len(space.grid()))
    with lock:
        workers.reap(study, (opts.heartbeat or workers.Heartbeat()).max_retry, report_elsewhere=True)
        target = workers.set_target(study, opts.trials, default)
        workers.queue_missing_seeds(study, len(space.seeds(opts.seed)))
        session = workers.new_session(study)
        study.sampler = make_sampler(opts.sampler, space, workers.session_seed(opts.seed, session))
        now = workers.tally(study)
        room = now.open_designs - (now.queued - now.queued_seeds)
        room -= enqueue_points(study, space, space.cover_points(), room)
        if opts.sampler == "grid":
            enqueue_points(study, space, grid_order(space, opts.early_stop), room)
    return target


def grid_order(space: Space, early_stop: EarlyStop | None) -> list[dict[str, Any]]:
    """The grid points in the order to queue them: as declared, or under early stopping the
    cheapest first (:func:`workbench.early_stop.cheapest_first` says why)."""
    points = space.grid()
    if early_stop is None:
        return points
    from workbench.early_stop import cheapest_first
    from workbench.space import Sample

    samples = []
    for point in points:
        try:
            samples.append(space.grid_sample(point))
        except WorkbenchError as exc:  # its trial fails with the reason; queue it last
            samples.append(Sample(dict(point), None, str(exc)))
    return [points[i] for i in cheapest_first(samples, space.objectives)]


def enqueue_points(study: optuna.Study, space: Space, points: Sequence[Mapping[str, Any]], limit: int) -> int:
    """Queue the designs at ``points`` not yet tried (sampled parameters only), at most ``limit``
    of them; returns how many were queued. A design's other seeds are queued by its first run,
    behind whatever is queued then: queuing only the designs still open keeps a design's seeds
    together and the study within its target."""
    import optuna

    sampled = [n for n, p in space.params.items() if type(p).__name__ in ("Categorical", "Int", "Float")]
    waiting = (optuna.trial.TrialState.WAITING,)
    queued = 0
    for point in points:
        if queued >= limit:
            break
        before = len(study.get_trials(deepcopy=False, states=waiting))
        study.enqueue_trial({k: v for k, v in point.items() if k in sampled}, skip_if_exists=True)
        queued += len(study.get_trials(deepcopy=False, states=waiting)) - before
    return queued


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM (a scheduler stopping the job) is handled like Ctrl-C: finished trials stay stored."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt) if in_main else None
    try:
        yield
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def _check_options(space: Space, opts: StudyOptions) -> None:
    from workbench.workers import Heartbeat

    if opts.early_stop is not None:
        opts.early_stop.check(space.objectives)
    if opts.trials is not None and opts.trials < 1:
        raise WorkbenchError(f"--trials must be >= 1, got {opts.trials}")
    if opts.workers < 1:
        raise WorkbenchError(f"--workers must be >= 1, got {opts.workers}")
    (opts.heartbeat or Heartbeat()).check()


def run_study(space: Space, opts: StudyOptions, console: Any = None) -> StudyOutcome:
    """Run (or resume) the study of ``space`` until it has reached its target of designs
    (``opts.trials`` raises it), copying every trial into the DuckDB store."""

    from workbench.store.ingest import ingest_study
    from workbench.workers import StudyLock, storage_errors, tally

    device = resolve_device(opts.device)
    _check_options(space, opts)
    storage_url = opts.storage or default_storage(opts.store)
    Path(opts.store).parent.mkdir(parents=True, exist_ok=True)
    _quiet_optuna()

    from workbench.store import Store

    store = Store.open(opts.store)
    with storage_errors(storage_url):
        study = open_study(space, opts, storage_url, store)
        lock = StudyLock(storage_url, study.study_name)
        target = join_study(study, space, opts, lock)
        ingest_study(store, study, storage_url)
        before = tally(study)
        interrupted = False
        helpers: list[Any] = []
        with _sigterm_as_ctrl_c():
            try:
                if opts.workers > 1 and (before.open_designs or before.queued_seeds):
                    helpers = _start_workers(space, opts, storage_url)
                    share_cpu_threads(device, opts.workers)
                interrupted = _work(
                    study, space, opts, device, lock, store, storage_url, opts.progress, console
                )
                interrupted = _join_workers(helpers, interrupted) or interrupted
            except KeyboardInterrupt:
                interrupted = True
                _join_workers(helpers, True)
        # Re-sync once more: catches a trial interrupted mid-run (optuna marks it failed).
        report = ingest_study(store, study, storage_url)
        after = tally(study)
    return StudyOutcome(
        study_name=study.study_name,
        storage_url=storage_url,
        store_path=opts.store,
        target=target,
        designs=after.designs,
        ran=after.trials - before.trials,
        counts=report.statuses,
        interrupted=interrupted,
    )


def run_worker(space: Space, opts: StudyOptions, console: Any = None) -> StudyOutcome:
    """Join (or create) the study of ``space`` in ``opts.storage`` and train its trials until the
    study has reached its target; writes only to the optuna storage, never to a DuckDB store."""
    from workbench.store.ingest import trial_status
    from workbench.workers import StudyLock, storage_errors, tally

    if not opts.storage:
        raise WorkbenchError("workbench worker needs --storage: the optuna storage the study's workers share")
    if opts.workers != 1:
        raise WorkbenchError(
            "workbench worker is one process: start one per GPU (or use workbench run --workers)"
        )
    device = resolve_device(opts.device)
    _check_options(space, opts)
    _quiet_optuna()
    with storage_errors(opts.storage):
        study = open_study(space, opts, opts.storage, None)
        lock = StudyLock(opts.storage, study.study_name)
        target = join_study(study, space, opts, lock)
        before = tally(study)
        with _sigterm_as_ctrl_c():
            try:
                interrupted = _work(
                    study, space, opts, device, lock, None, opts.storage, opts.progress, console
                )
            except KeyboardInterrupt:
                interrupted = True
        after = tally(study)
        trials = study.get_trials(deepcopy=False)
    return StudyOutcome(
        study_name=study.study_name,
        storage_url=opts.storage,
        store_path=None,
        target=target,
        designs=after.designs,
        ran=after.trials - before.trials,
        counts=dict(Counter(trial_status(t) for t in trials if t.state.name != "WAITING")),
        interrupted=interrupted,
    )


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class _Skipped(Exception):
    """optuna handed out a first run when no design was open: it is recorded, not trained."""


def _work(
    study: optuna.Study,
    space: Space,
    opts: StudyOptions,
    device: torch.device,
    lock: StudyLock,
    store: Store | None,
    storage_url: str,
    show_progress: bool,
    console: Any = None,
    main: bool = True,
) -> bool:
    """One worker: claim and train trials until the study's target is reached; True if interrupted.

    Each turn holds the study's lock while it reaps dead trials, checks that a design is open or
    a seed queued, and lets optuna create (or pop) a trial, which the objective claims before it
    lets go. With nothing to claim it waits while trials it can watch are still running (one may
    die and be queued again): those on this host, or any with an RDB heartbeat.
    """
    import optuna
    from optuna.storages._heartbeat import is_heartbeat_enabled

    from workbench import workers
    from workbench.progress import StudyProgress
    from workbench.store.ingest import ingest_trial
    from workbench.trial import TrialRunner

    heartbeat = opts.heartbeat or workers.Heartbeat()
    start = workers.tally(study)
    progress = StudyProgress(
        total=(start.target or 0) * space.repeats, done=start.trials, enabled=show_progress, console=console
    )
    runner = TrialRunner(
        space=space,
        device=device,
        seed=opts.seed,
        single_objective=len(space.objectives) == 1,
        on_step=progress.step,
        on_trial_start=progress.trial_started,
        on_data=progress.message,
        reuse_duplicates=not opts.retrain_duplicates,
        on_warning=progress.warn if main else None,
        early_stop=opts.early_stop,
    )

    uid = study.user_attrs.get(record.STUDY_UID)

    ran: list[int] = []  # the trial of this turn (optuna's id)

    def objective(trial: optuna.Trial) -> tuple[float, ...] | float:
        ran[:] = [trial._trial_id]
        try:
            if not workers.claim(study, trial, lock):
                trial.set_user_attr(record.STATUS, "skipped")
                trial.set_user_attr(
                    record.ERROR,
                    f"not trained: the study had reached its target of {workers.tally(study).target} designs "
                    "when this queued design came up",
                )
                raise _Skipped
            return runner(trial)
        except KeyboardInterrupt:
            workers.requeue_interrupted(study, trial)
            raise

    def after_trial(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
        if store is not None:
            ingest_trial(store, study.study_name, frozen, study_uid=uid, storage_url=storage_url)
        if frozen.user_attrs.get(record.STATUS) != "skipped":
            progress.trial_finished(frozen)

    watch_all = is_heartbeat_enabled(study._storage)
    with progress:
        try:
            deadline = None if opts.timeout is None else time.monotonic() + opts.timeout
            while deadline is None or time.monotonic() < deadline:
                with lock:
                    workers.reap(study, heartbeat.max_retry)
                    now = workers.tally(study)
                    if now.open_designs or now.queued_seeds:
                        try:
                            study.optimize(
                                objective,
                                n_trials=1,
                                catch=(Exception,),
                                callbacks=[after_trial],
                                gc_after_trial=True,
                            )
                        except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
                            # optuna could not record the result: was the trial taken for dead?
                            if not (ran and workers.taken_for_dead(study, ran[0])):
                                raise
                        continue
                if not (now.running_here or (watch_all and now.running)):
                    break
                time.sleep(workers.WAIT_S)
            with lock:
                workers.skip_leftovers(study)
        except KeyboardInterrupt:
            return True
    return False


def gpu_assignment(n_workers: int, visible: str | None, n_devices: int) -> list[str | None]:
    """``CUDA_VISIBLE_DEVICES`` of each worker: GPU ``i mod G`` when several are visible, else unchanged."""
    ids = (
        [v.strip() for v in visible.split(",") if v.strip()]
        if visible
        else [str(i) for i in range(n_devices)]
    )
    if len(ids) <= 1:
        return [None] * n_workers
    return [ids[i % len(ids)] for i in range(n_workers)]


def share_cpu_threads(device: torch.device, workers: int) -> None:
    """On the CPU, split the cores between workers: oversubscribed torch threads spin against
    each other (measured: two 2-thread processes on 2 cores ran ~10x slower than one)."""
    import torch

    if device.type == "cpu" and workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def _start_workers(space: Space, opts: StudyOptions, storage_url: str) -> list[Any]:
    """Start workers 1..N-1 as spawned processes (this process is worker 0)."""
    import multiprocessing

    import torch

    n_devices = torch.cuda.device_count() if opts.device in ("auto", "cuda") else 0
    gpus = gpu_assignment(opts.workers, os.environ.get("CUDA_VISIBLE_DEVICES"), n_devices)
    if gpus[0] is not None:
        # This process is worker 0: pin it before it touches CUDA (it has not yet).
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[0]
    context = multiprocessing.get_context("spawn")
    helpers = []
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        for index in range(1, opts.workers):
            gpu = gpus[index]
            if gpu is not None:
                os.environ["CUDA_VISIBLE_DEVICES"] = gpu  # a spawned child copies the environment
            worker_opts = replace(opts, progress=False)
            proc = context.Process(
                target=_worker_main,
                args=(space.to_json(), worker_opts, storage_url),
                name=f"workbench-worker-{index}",
            )
            proc.start()
            helpers.append(proc)
    finally:
        if saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved
    return helpers


def _join_workers(helpers: Sequence[Any], stop: bool) -> bool:
    """Wait for the helper workers (asking them to stop first if ``stop``); True if one was interrupted."""
    if stop:
        for proc in helpers:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: the worker records its trial as interrupted and exits
    for proc in helpers:
        proc.join()
    return any(proc.exitcode == 130 for proc in helpers)


def _worker_main(space_json: dict[str, Any], opts: StudyOptions, storage_url: str) -> None:
    """Entry point of workers 1..N-1: the same study and target, its own sampler session and device."""
    import sys

    from workbench.store import Store
    from workbench.workers import StudyLock, storage_errors

    _quiet_optuna()
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    space = Space.from_json(space_json)
    try:
        store = Store.open(opts.store)
        with storage_errors(storage_url):
            study = open_study(space, opts, storage_url, store)
            lock = StudyLock(storage_url, study.study_name)
            join_study(study, space, opts, lock)
            device = resolve_device(opts.device)
            share_cpu_threads(device, opts.workers)
            interrupted = _work(study, space, opts, device, lock, store, storage_url, False, main=False)
    except KeyboardInterrupt:
        interrupted = True
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(130 if interrupted else 0)
