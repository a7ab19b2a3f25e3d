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
``CUDA_VISIBLE_DEVICES`` (so ``--workers G`` is one worker per GPU). Workers stop once the
finished trials and those running since the run started reach the target; two workers
finishing at the same moment can each start one more, so a run may end up to N-1 trials past
``--trials``.
"""

from __future__ import annotations

import datetime
import logging
import os
import signal
import threading
import time
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench import record
from workbench.errors import WorkbenchError
from workbench.space import Space

if TYPE_CHECKING:
    import optuna
    import torch

    from workbench.store import Store

SAMPLERS = ("tpe", "nsga2", "random", "grid", "qmc")


@dataclass(frozen=True, kw_only=True)
class StudyOptions:
    """Options of ``workbench run`` (see its --help)."""

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


@dataclass
class StudyOutcome:
    study_name: str
    storage_url: str
    store_path: str
    ran: int
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


def open_study(space: Space, opts: StudyOptions, storage_url: str, store: Store) -> optuna.Study:
    """Create the study of ``space`` (with a new ``wb.study_uid``) or load it to resume.

    Refuses with :class:`StudyMismatchError`, before anything is created or trained, when
    ``store`` holds rows of another optuna study under the name.
    """
    import optuna

    from workbench.store.ingest import check_study_identity, open_optuna_storage

    storage = optuna.storages.get_storage(open_optuna_storage(storage_url))
    name = opts.study_name or space.name
    # A study from before uids gets one now, like a new study: either way it differs from any stored uid.
    uid = _optuna_uid(storage, name) or uuid.uuid4().hex
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
    if stored is not None and stored.get("params") != current["params"]:
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


def finished_count(study: optuna.Study) -> int:
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    return len(study.get_trials(deepcopy=False, states=done))


def enqueue_grid(study: optuna.Study, space: Space, limit: int | None = None) -> int:
    """Queue the grid points not yet tried (sampled parameters only), at most ``limit`` of them;
    returns the size of the grid. A design's other seeds are queued by its first run, behind
    whatever is queued then: queuing only the designs this run trains keeps a design's seeds
    together and the run within its target."""
    import optuna

    sampled = [n for n, p in space.params.items() if type(p).__name__ in ("Categorical", "Int", "Float")]
    points = space.grid()
    waiting = (optuna.trial.TrialState.WAITING,)
    queued = 0
    for point in points:
        if limit is not None and queued >= limit:
            break
        before = len(study.get_trials(deepcopy=False, states=waiting))
        study.enqueue_trial({k: v for k, v in point.items() if k in sampled}, skip_if_exists=True)
        queued += len(study.get_trials(deepcopy=False, states=waiting)) - before
    return len(points)


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_study(space: Space, opts: StudyOptions, console: Any = None) -> StudyOutcome:
    """Run (or resume) the study of ``space`` until it has ``opts.trials`` finished trials."""

    from workbench.store.ingest import ingest_study

    device = resolve_device(opts.device)
    designs = opts.trials if opts.trials is not None else space.trials
    if designs < 1:
        raise WorkbenchError(f"--trials must be >= 1, got {designs}")
    # A trial is one (design, seed) run: each design's first run queues its other seeds.
    target = designs * space.repeats
    if opts.workers < 1:
        raise WorkbenchError(f"--workers must be >= 1, got {opts.workers}")
    storage_url = opts.storage or default_storage(opts.store)
    Path(opts.store).parent.mkdir(parents=True, exist_ok=True)
    _quiet_optuna()

    from workbench.store import Store

    store = Store.open(opts.store)
    study = open_study(space, opts, storage_url, store)
    ingest_study(store, study, storage_url)
    already = finished_count(study)
    remaining = max(0, target - already)
    for point in space.cover_points():
        study.enqueue_trial(point, skip_if_exists=True)
    if opts.sampler == "grid":
        already_designs = -(-already // space.repeats)
        n = enqueue_grid(study, space, limit=-(-remaining // space.repeats))
        if opts.trials is None:
            remaining = max(0, min(remaining, (n - already_designs) * space.repeats))

    since = datetime.datetime.now()
    interrupted = False
    # SIGTERM (a scheduler stopping the job) is handled like Ctrl-C: finished trials stay stored.
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt) if in_main else None
    helpers: list[Any] = []
    try:
        if remaining and opts.workers > 1:
            helpers = _start_workers(space, opts, storage_url, already + remaining, since)
            share_cpu_threads(device, opts.workers)
        interrupted = _work(
            study,
            space,
            opts,
            device,
            store,
            storage_url,
            already,
            already + remaining,
            since,
            opts.progress,
            console,
        )
        interrupted = _join_workers(helpers, interrupted) or interrupted
    except KeyboardInterrupt:
        interrupted = True
        _join_workers(helpers, True)
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    # Re-sync once more: catches a trial interrupted mid-run (optuna marks it failed).
    report = ingest_study(store, study, storage_url)
    return StudyOutcome(
        study_name=study.study_name,
        storage_url=storage_url,
        store_path=opts.store,
        ran=finished_count(study) - already,
        counts=report.statuses,
        interrupted=interrupted,
    )


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _work(
    study: optuna.Study,
    space: Space,
    opts: StudyOptions,
    device: torch.device,
    store: Store,
    storage_url: str,
    already: int,
    target: int,
    since: datetime.datetime,
    show_progress: bool,
    console: Any = None,
    main: bool = True,
) -> bool:
    """One worker: train trials back to back until the target; True if interrupted."""

    from workbench.progress import StudyProgress
    from workbench.store.ingest import ingest_trial
    from workbench.trial import TrialRunner

    progress = StudyProgress(total=target, done=already, enabled=show_progress, console=console)
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
    )

    uid = study.user_attrs.get(record.STUDY_UID)

    def after_trial(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
        ingest_trial(store, study.study_name, frozen, study_uid=uid, storage_url=storage_url)
        progress.trial_finished(frozen)

    def optimize(n_trials: int, timeout: float | None = None) -> None:
        study.optimize(
            runner,
            n_trials=n_trials,
            timeout=timeout,
            catch=(Exception,),
            callbacks=[after_trial],
            gc_after_trial=True,
        )

    with progress:
        try:
            deadline = None if opts.timeout is None else time.monotonic() + opts.timeout
            if opts.workers == 1 and target > already:
                optimize(target - already, opts.timeout)
            # Workers claim one trial at a time; and a design whose seeds are still queued (its
            # first run was the last of the target) is finished, so every design has all its seeds.
            while (deadline is None or time.monotonic() < deadline) and (
                (opts.workers > 1 and claimed_count(study, since) < target) or queued_repeats(study)
            ):
                optimize(1)
        except KeyboardInterrupt:
            return True
    return False


def queued_repeats(study: optuna.Study) -> int:
    """Enqueued runs of a design's other seeds that no worker has started yet."""
    import optuna

    waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    return sum(1 for t in waiting if t.user_attrs.get(record.REPLICATE))


def claimed_count(study: optuna.Study, since: datetime.datetime) -> int:
    """Finished trials plus those running that started at or after ``since`` (this run's workers)."""
    import optuna

    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    return finished_count(study) + sum(1 for t in running if t.datetime_start and t.datetime_start >= since)


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


def _start_workers(
    space: Space, opts: StudyOptions, storage_url: str, target: int, since: datetime.datetime
) -> list[Any]:
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
                args=(space.to_json(), worker_opts, storage_url, index, target, since),
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


def _worker_main(
    space_json: dict[str, Any],
    opts: StudyOptions,
    storage_url: str,
    index: int,
    target: int,
    since: datetime.datetime,
) -> None:
    """Entry point of worker ``index`` >= 1: the same study, its own sampler seed and device."""
    import sys

    from workbench.store import Store

    _quiet_optuna()
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    space = Space.from_json(space_json)
    store = Store.open(opts.store)
    # Its own sampler seed, so random and startup samples differ from the other workers'.
    study = open_study(space, replace(opts, seed=opts.seed + index), storage_url, store)
    device = resolve_device(opts.device)
    share_cpu_threads(device, opts.workers)
    try:
        interrupted = _work(
            study, space, opts, device, store, storage_url, 0, target, since, False, main=False
        )
    except KeyboardInterrupt:
        interrupted = True
    sys.exit(130 if interrupted else 0)
