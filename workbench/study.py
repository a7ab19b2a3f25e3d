"""Run a study: a space file, an optuna study, trials trained back to back, a DuckDB store.

Optuna storage (a journal file by default) coordinates trials and is the source of truth;
after each trial the run process copies it into DuckDB (short write transactions), so the
app can read the store while a study runs. Re-running the same command resumes the study
up to its trial target. A crashed trial is recorded as failed with its reason and the study
goes on; Ctrl-C stops after recording every finished trial.
"""

from __future__ import annotations

import logging
import signal
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import WorkbenchError
from workbench.space import Space

if TYPE_CHECKING:
    import optuna
    import torch

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


def default_storage(store_path: str, study_name: str) -> str:
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


def apply_overrides(space: Space, overrides: Mapping[str, Any], seed: int) -> Space:
    return space.with_overrides({"train.seed": seed, **overrides})


def open_study(space: Space, opts: StudyOptions, storage_url: str) -> optuna.Study:
    import optuna

    from workbench.ingest import open_optuna_storage

    storage = open_optuna_storage(storage_url)
    name = opts.study_name or space.name
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        directions=space.directions,
        sampler=make_sampler(opts.sampler, space, opts.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1),
        load_if_exists=True,
    )
    if [d.name.lower() for d in study.directions] != space.directions:
        raise WorkbenchError(
            f"study {name!r} exists with objectives {[d.name.lower() for d in study.directions]}, "
            f"but the space declares {space.directions}; use --study-name to start a new study"
        )
    stored = study.user_attrs.get("wb.space")
    current = space.to_json()
    if stored is not None and stored.get("params") != current["params"]:
        raise WorkbenchError(
            f"study {name!r} exists with a different search space; use --study-name NEW to start a new study "
            "(or restore the space file)"
        )
    study.set_user_attr("wb.space", current)
    study.set_user_attr("wb.objectives", [o.to_json() for o in space.objectives])
    return study


def finished_count(study: optuna.Study) -> int:
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    return len(study.get_trials(deepcopy=False, states=done))


def enqueue_grid(study: optuna.Study, space: Space) -> int:
    """Queue every grid point not yet tried (sampled parameters only)."""
    sampled = [n for n, p in space.params.items() if type(p).__name__ in ("Categorical", "Int", "Float")]
    points = space.grid()
    for point in points:
        study.enqueue_trial({k: v for k, v in point.items() if k in sampled}, skip_if_exists=True)
    return len(points)


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_study(space: Space, opts: StudyOptions, console: Any = None) -> StudyOutcome:
    """Run (or resume) the study of ``space`` until it has ``opts.trials`` finished trials."""
    import optuna

    from workbench.ingest import ingest_study, ingest_trial
    from workbench.progress import StudyProgress
    from workbench.store import Store
    from workbench.trial import TrialRunner

    device = resolve_device(opts.device)
    target = opts.trials if opts.trials is not None else space.trials
    if target < 1:
        raise WorkbenchError(f"--trials must be >= 1, got {target}")
    storage_url = opts.storage or default_storage(opts.store, opts.study_name or space.name)
    Path(opts.store).parent.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    study = open_study(space, opts, storage_url)
    store = Store.open(opts.store)
    ingest_study(store, study, storage_url)
    already = finished_count(study)
    remaining = max(0, target - already)
    for point in space.cover_points():
        study.enqueue_trial(point, skip_if_exists=True)
    if opts.sampler == "grid":
        n = enqueue_grid(study, space)
        remaining = max(0, min(remaining, n - already)) if opts.trials is None else remaining

    progress = StudyProgress(total=target, done=already, enabled=opts.progress, console=console)
    runner = TrialRunner(
        space=space,
        device=device,
        seed=opts.seed,
        single_objective=len(space.objectives) == 1,
        on_step=progress.step,
        on_trial_start=progress.trial_started,
        on_data=progress.message,
    )

    def after_trial(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
        ingest_trial(store, study.study_name, frozen)
        progress.trial_finished(frozen)

    interrupted = False
    # SIGTERM (a scheduler stopping the job) is handled like Ctrl-C: finished trials stay stored.
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt) if in_main else None
    with progress:
        try:
            if remaining:
                study.optimize(
                    runner,
                    n_trials=remaining,
                    timeout=opts.timeout,
                    catch=(Exception,),
                    callbacks=[after_trial],
                    gc_after_trial=True,
                )
        except KeyboardInterrupt:
            interrupted = True
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
        counts=report.status_counts if hasattr(report, "status_counts") else {},
        interrupted=interrupted,
    )
