"""Copy optuna studies into the DuckDB store, idempotently (docs/DESIGN.md §6).

Optuna storage is the source of truth. A trial is rewritten whole (delete its rows, insert
them again) inside a short transaction, so re-ingesting adds nothing and a trial that was
RUNNING is replaced once it finishes. Finished trials are immutable in optuna, so a trial
already stored in the same finished state is skipped unless ``force=True``.

What a trial writes, and so what is read here, is the contract of :mod:`workbench.record`.

``wb.study_uid`` identifies the optuna study the stored rows came from: a write of another
optuna study under a name the store already holds (its journal was deleted, another storage was
named) is refused with :class:`StudyMismatchError` instead of being mixed in. A NULL uid on
either side (rows or studies from before uids) is unknown: nothing is checked, and the store
records the uid once it is known.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import numbers
import os
import re
import shlex
import time
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import duckdb
import optuna
from optuna.storages import BaseStorage, JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.trial import FrozenTrial, TrialState

from workbench import record
from workbench.errors import StoreError, StudyMismatchError
from workbench.store import sqlfiles
from workbench.store._store import Store

_STATE_STATUS = {
    TrialState.COMPLETE: "complete",
    TrialState.FAIL: "failed",
    TrialState.PRUNED: "pruned",
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
}
# Longest a bulk ingest holds DuckDB's exclusive lock before letting readers in.
BATCH_HOLD_S = 0.25
# How much of a journal's end is read to tell whether its last line is torn.
_TAIL_BYTES = 1 << 20
# ``scheme://user:password@host``: the password, up to the last ``@`` before the host.
_PASSWORD = re.compile(r"^([A-Za-z][\w+.-]*://[^:/?#@]*:)(.*)(@[^@/?#]*(?:[/?#].*)?)$", re.DOTALL)


@dataclass(frozen=True, kw_only=True)
class IngestReport:
    """What one :func:`ingest_study` did. ``n_trials`` counts started trials; ``n_waiting`` the
    enqueued ones, which are not stored until they start."""

    study_name: str
    n_trials: int
    n_written: int
    n_unchanged: int
    n_waiting: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        by_status = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items())) or "no trials"
        return (
            f"{self.study_name}: {self.n_trials} trials ({by_status}); "
            f"{self.n_written} written, {self.n_unchanged} unchanged, {self.n_waiting} queued in {self.seconds:.2f}s"
        )


# --- optuna storages ---------------------------------------------------------------------------


def open_optuna_storage(url_or_path: str | os.PathLike[str] | BaseStorage) -> str | BaseStorage:
    """An optuna storage for a URL or path.

    ``journal:///abs/path`` (``journal://rel/path`` is relative) and any path ending in ``.journal`` give a
    ``JournalStorage(JournalFileBackend(path))``, after :func:`repair_journal` has moved a torn last
    line aside; RDB URLs (``sqlite:///``, ``postgresql://``) are checked (:func:`check_rdb_url`) and
    returned as strings for optuna (:func:`rdb_url`); a storage object is returned unchanged.
    """
    if isinstance(url_or_path, BaseStorage):
        return url_or_path
    text = os.fspath(url_or_path)
    path = journal_path(text)
    if path is None:
        check_rdb_url(text)
        return rdb_url(text)
    message = repair_journal(path)
    if message is not None:
        warnings.warn(message, JournalRepaired, stacklevel=2)
    try:
        return JournalStorage(JournalFileBackend(path))
    except OSError as exc:
        raise StoreError(
            f"cannot create the optuna journal {path}: {exc.strerror or exc}; "
            "give a --storage in a folder you can write"
        ) from None


def journal_path(text: str) -> str | None:
    """The file of a journal storage (``journal://PATH`` or a path ending in ``.journal``), ``~``
    expanded; None for anything else (an RDB URL)."""
    if text.startswith("journal://"):
        path = text.removeprefix("journal://")
        if not path:
            raise StoreError(f"'{text}': a journal URL names a file, e.g. journal:///abs/path/study.journal")
    elif text.endswith(".journal"):
        path = text
    else:
        return None
    return os.path.expanduser(path)


def rdb_url(url: str) -> str:
    """``url`` as optuna's SQLAlchemy engine takes it: a bare ``postgresql://`` names the psycopg2
    driver (the dependency this package installs; SQLAlchemy 2.1 would pick psycopg 3)."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql+psycopg2://{rest}" if sep and scheme == "postgresql" else url


class JournalRepaired(UserWarning):
    """A torn last line of a journal was moved to a backup file (the CLI prints the message)."""


def repair_journal(path: str | os.PathLike[str]) -> str | None:
    """Move a torn last line (a write cut short by a crash) of the journal at ``path`` aside.

    The torn bytes go to ``<journal>.torn-<timestamp>`` next to it and the journal is truncated
    to its last complete line; returns a one-line message saying so, or None when the journal is
    whole (or absent). A line that is not JSON before the last one cannot be a torn write and is
    refused with :class:`StoreError` naming the file and line. The repair holds optuna's journal
    lock, so it never cuts a write another process is making.
    """
    journal = Path(path)
    if not _tail_is_torn(journal):
        _check_lines(journal, last_too=False)
        return None
    lock = JournalFileSymlinkLock(str(journal))
    lock.acquire()
    try:
        data = journal.read_bytes()  # again, under the lock: the tail seen may have been a write under way
        keep = data.rfind(b"\n") + 1
        if keep == len(data):  # the last line is complete: torn only if it is not JSON
            keep = data.rfind(b"\n", 0, len(data) - 1) + 1
            if _is_json(data[keep:]):
                _check_lines(journal, data)
                return None
        _check_lines(journal, data[:keep])
        stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S%f")
        backup = journal.with_name(f"{journal.name}.torn-{stamp}")
        backup.write_bytes(data[keep:])
        with open(journal, "r+b") as f:
            f.truncate(keep)
    finally:
        lock.release()
    return (
        f"optuna journal {journal}: its last line was torn ({len(data) - keep} bytes, a write cut short); "
        f"moved it to {backup} and truncated the journal to its last complete line"
    )


def _tail_is_torn(journal: Path) -> bool:
    """True when the journal's last line lacks its newline or is not JSON (read without the lock)."""
    try:
        size = journal.stat().st_size
    except OSError:  # absent, or its folder is not one: optuna's own open says so
        return False
    if size == 0:
        return False
    with open(journal, "rb") as f:
        f.seek(max(0, size - _TAIL_BYTES))
        tail = f.read()
    if not tail.endswith(b"\n"):
        return True
    start = tail.rfind(b"\n", 0, len(tail) - 1)
    if start < 0 and size > len(tail):  # a last line longer than the tail read
        tail = journal.read_bytes()
        start = tail.rfind(b"\n", 0, len(tail) - 1)
    return not _is_json(tail[start + 1 :])


def _check_lines(journal: Path, data: bytes | None = None, *, last_too: bool = True) -> None:
    """Raise :class:`StoreError` naming the first line of ``data`` (default: the file) that is not JSON."""
    if data is None:
        try:
            data = journal.read_bytes()
        except OSError:
            return
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    checked = lines if last_too else lines[:-1]
    for number, line in enumerate(checked, start=1):
        if not _is_json(line):
            raise StoreError(
                f"optuna journal {journal}: line {number} of {len(lines)} is not valid JSON (corrupted in "
                "the middle, not a torn last write, so it is not repaired); restore the journal from a "
                "backup or give another --storage"
            )


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def check_rdb_url(url: str) -> None:
    """Raise :class:`StoreError` when optuna could not open the RDB storage ``url``: not a URL, an
    unknown database, a missing driver, or a SQLite file that cannot be opened. Nothing is created."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    shown = mask_url(url)
    try:
        parsed = make_url(rdb_url(url))
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        raise StoreError(
            f"--storage {shown!r}: unknown database {make_url(url).drivername!r}; give a .journal path or "
            "a sqlite:///, postgresql:// or mysql:// URL"
        ) from None
    except (ArgumentError, ValueError):  # NoSuchModuleError, an ArgumentError too, is caught above
        raise StoreError(
            f"--storage {shown!r} is neither a .journal path nor a database URL; give e.g. "
            "store/study.journal, journal:///abs/path.journal or sqlite:///abs/path.db"
        ) from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        raise StoreError(
            f"--storage {shown!r}: its database driver is not installed ({exc}); install it "
            f"(pip install {exc.name or 'the driver'}) or give a .journal path"
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        _check_sqlite_file(Path(parsed.database), shown)


def _check_sqlite_file(path: Path, shown: str) -> None:
    import sqlite3

    if path.exists():
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
                con.execute("PRAGMA schema_version")
        except sqlite3.Error as exc:
            raise StoreError(
                f"--storage {shown!r}: cannot open {path} as SQLite ({exc}); give another --storage"
            ) from None
    elif not path.parent.is_dir():
        raise StoreError(
            f"--storage {shown!r}: folder {path.parent} does not exist; create it or give another --storage"
        )
    elif not os.access(path.parent, os.W_OK):
        raise StoreError(f"--storage {shown!r}: folder {path.parent} is not writable; give another --storage")


@overload
def mask_url(url: str) -> str: ...
@overload
def mask_url(url: None) -> None: ...
def mask_url(url: str | None) -> str | None:
    """``url`` with its password replaced by ``***`` (``postgresql://user:***@host/db``), for storing and printing."""
    if url is None:
        return None
    return _PASSWORD.sub(r"\1***\3", url)


def ingest_storage(
    store: Store,
    storage_url: str | os.PathLike[str] | BaseStorage,
    study_names: Sequence[str] | None = None,
    *,
    force: bool = False,
    url: str | None = None,
) -> list[IngestReport]:
    """Ingest the named studies (None: every study) of an optuna storage. ``url`` names a storage
    given as an object (for the studies table and messages; masked)."""
    storage = open_optuna_storage(storage_url)
    if not isinstance(storage_url, BaseStorage):
        url = os.fspath(storage_url)
    available = optuna.get_all_study_names(storage)
    names = list(available) if study_names is None else list(study_names)
    for name in names:
        if name not in available:
            listed = ", ".join(sorted(available)) or "none"
            raise StoreError(f"study '{name}' is not in {mask_url(url)}; studies there: {listed}")
    return [
        ingest_study(store, optuna.load_study(study_name=name, storage=storage), url, force=force)
        for name in names
    ]


def ingest_study(
    store: Store, study: optuna.Study, storage_url: str | None = None, *, force: bool = False
) -> IngestReport:
    """Write the study row and every new or changed trial (enqueued, not yet started ones are skipped).

    Trials go in short transactions of a few trials each (at most ``BATCH_HOLD_S`` of work), so
    a reader in another process waits a fraction of a second at most.
    """
    start = time.perf_counter()
    objectives = study_objectives(study)
    names = [o["name"] for o in objectives]
    # Enqueued trials (a grid's queue) have not started and carry no data: they are not stored.
    queued = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    trials = [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING]
    stored = {} if force else _stored_states(store, study.study_name)
    pending = [t for t in trials if not (t.state.is_finished() and stored.get(t.number) == t.state.name)]
    attrs = study.user_attrs
    space = attrs.get(record.STUDY_SPACE)
    uid = _str_or_none(attrs.get(record.STUDY_UID))
    study_row = {
        "study_name": study.study_name,
        "space_name": space.get("name") if isinstance(space, Mapping) else None,
        "space_json": _json(space) if space is not None else None,
        "objectives_json": _json(objectives),
        "storage_url": mask_url(storage_url),
        "study_uid": uid,
        "n_trials": len(trials),
        "now": dt.datetime.now(),
    }
    with store.write() as con:
        _check_identity(con, store, study.study_name, uid, storage_url)
        _execute(con, "upsert_study", study_row)
        done = _write_batch(con, study.study_name, pending, 0, names)
    while done < len(pending):
        with store.write() as con:
            done = _write_batch(con, study.study_name, pending, done, names)
    return IngestReport(
        study_name=study.study_name,
        n_trials=len(trials),
        n_written=len(pending),
        n_unchanged=len(trials) - len(pending),
        n_waiting=len(queued),
        statuses=dict(Counter(trial_status(t) for t in trials)),
        seconds=time.perf_counter() - start,
    )


def ingest_trial(
    store: Store,
    study_name: str,
    frozen_trial: FrozenTrial,
    *,
    objective_names: Sequence[str] | None = None,
    study_uid: str | None = None,
    storage_url: str | None = None,
) -> str:
    """Replace one trial's rows in one short transaction; returns its status.

    ``objective_names`` label the objective values; by default they are read from the stored
    study (``value_<i>`` when the study is not stored). ``study_uid`` (``wb.study_uid`` of the
    trial's study) is checked against the stored study's, as :func:`check_study_identity` does;
    ``storage_url`` only names the trial's storage in that error.
    """
    with store.write() as con:
        _check_identity(con, store, study_name, study_uid, storage_url)
        names = objective_names if objective_names is not None else _stored_objective_names(con, study_name)
        return _write_trial(con, study_name, frozen_trial, names)


def _write_batch(
    con: duckdb.DuckDBPyConnection,
    study_name: str,
    trials: Sequence[FrozenTrial],
    start: int,
    objective_names: Sequence[str],
) -> int:
    """Write trials from ``start`` on for at most BATCH_HOLD_S (at least one); returns the next index.

    Letting go of the lock between batches is what lets readers in other processes (the app)
    in during a bulk ingest.
    """
    deadline = time.monotonic() + BATCH_HOLD_S
    index = start
    while index < len(trials) and (index == start or time.monotonic() < deadline):
        _write_trial(con, study_name, trials[index], objective_names)
        index += 1
    return index


def _write_trial(
    con: duckdb.DuckDBPyConnection, study_name: str, trial: FrozenTrial, objective_names: Sequence[str]
) -> str:
    key = {"study_name": study_name, "trial_number": trial.number}
    for statement in sqlfiles.statements(sqlfiles.query("delete_trial")):
        con.execute(statement, key)
    trial_row = _trial_row(trial, objective_names)
    _execute(con, "insert_trial", {**key, **trial_row})
    _execute(con, "insert_params", {**key, **_param_columns(trial)})
    _execute(con, "insert_curves", {**key, **_curve_columns(trial)})
    routing, loads = _routing_columns(trial)
    _execute(con, "insert_routing", {**key, **routing})
    _execute(con, "insert_routing_load", {**key, **loads})
    _execute(con, "insert_tuning", {**key, **_tuning_columns(trial)})
    provenance = trial.user_attrs.get(record.PROVENANCE)
    if isinstance(provenance, Mapping):
        _execute(con, "insert_provenance", {**key, **_provenance_row(provenance)})
    return str(trial_row["status"])


def check_study_identity(
    store: Store, study_name: str, study_uid: str | None, storage_url: str | None = None
) -> None:
    """Raise :class:`StudyMismatchError` when ``store`` holds ``study_name`` rows of another optuna study.

    ``study_uid`` is the ``wb.study_uid`` of the optuna study about to be written (or created).
    A NULL uid on either side is unknown and passes. Ingest checks this itself, inside its write
    transaction; call it to fail before any work, e.g. before a study is created and trains.
    """
    with store.read() as con:
        _check_identity(con, store, study_name, study_uid, storage_url)


def _check_identity(
    con: duckdb.DuckDBPyConnection,
    store: Store,
    study_name: str,
    study_uid: str | None,
    storage_url: str | None,
) -> None:
    if study_uid is None:
        return
    row = con.execute(sqlfiles.query("study_identity"), {"study_name": study_name}).fetchone()
    if row is None or row[0] is None or row[0] == study_uid:
        return
    stored_uid, stored_url = str(row[0]), mask_url(row[1])
    storage_url = mask_url(storage_url)
    drop = f"workbench drop {shlex.quote(study_name)} --store {shlex.quote(str(store.path))}"
    raise StudyMismatchError(
        f"store {store.path} holds rows of a different optuna study under the name {study_name!r} "
        f"(stored: uid {stored_uid[:8]} from {stored_url or 'an unknown storage'}; being written: "
        f"uid {study_uid[:8]} from {storage_url or 'an unknown storage'}), e.g. after its journal was "
        "deleted or another --storage was named; nothing was written, so the two are not mixed. "
        f"Run under a new study name (workbench run SPACE --study-name NEW), or drop the stored rows "
        f"first: {drop}"
    )


# --- one trial's rows (pure) -------------------------------------------------------------------


def study_objectives(study: optuna.Study) -> list[dict[str, str]]:
    """``wb.objectives`` of the study, or names ``value``/``value_<i>`` with optuna's directions."""
    declared = study.user_attrs.get(record.STUDY_OBJECTIVES)
    if isinstance(declared, list) and all(isinstance(o, Mapping) and "name" in o for o in declared):
        return [{"name": str(o["name"]), "direction": str(o.get("direction", "minimize"))} for o in declared]
    directions = [d.name.lower() for d in study.directions]
    if len(directions) == 1:
        return [{"name": "value", "direction": directions[0]}]
    return [{"name": f"value_{i}", "direction": d} for i, d in enumerate(directions)]


def trial_status(trial: FrozenTrial) -> str:
    """``wb.status`` of a finished trial; otherwise, or when missing, derived from optuna's state."""
    status = trial.user_attrs.get(record.STATUS)
    if trial.state.is_finished() and isinstance(status, str) and status:
        return status
    return _STATE_STATUS[trial.state]


def flatten_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``{"memory": {"kind": "switch"}}`` -> ``{"memory.kind": "switch"}`` (one level, as configs are)."""
    flat: dict[str, Any] = {}
    for section, fields in config.items():
        if isinstance(fields, Mapping):
            flat.update({f"{section}.{name}": value for name, value in fields.items()})
        else:
            flat[str(section)] = fields
    return flat


def _trial_row(trial: FrozenTrial, objective_names: Sequence[str]) -> dict[str, Any]:
    attrs = trial.user_attrs
    config = attrs.get(record.CONFIG)
    metrics = attrs.get(record.METRICS)
    metrics = metrics if isinstance(metrics, Mapping) else {}
    memory = config.get("memory") if isinstance(config, Mapping) else None
    error = attrs.get(record.ERROR) or trial.system_attrs.get("fail_reason")
    values = trial.values or []
    names = list(objective_names) + [f"value_{i}" for i in range(len(objective_names), len(values))]
    return {
        "status": trial_status(trial),
        "optuna_state": trial.state.name,
        "config_json": _json(config) if config is not None else None,
        "config_hash": _str_or_none(attrs.get(record.CONFIG_HASH)),
        "memory_kind": _str_or_none(memory.get("kind")) if isinstance(memory, Mapping) else None,
        "design_hash": _design_hash(attrs),
        "seed": _as_int(config.get("train", {}).get("seed")) if isinstance(config, Mapping) else None,
        "replicate": _as_int(attrs.get(record.REPLICATE)),
        **{name: _COERCE[kind](metrics.get(name)) for name, kind in record.stored_metrics().items()},
        "metrics_json": _json(metrics) if metrics else None,
        "objective_values_json": _json(dict(zip(names, values, strict=False))) if values else None,
        "error": _str_or_none(error),
        "started_at": trial.datetime_start,
        "finished_at": trial.datetime_complete,
        "ingested_at": dt.datetime.now(),
    }


def _design_hash(attrs: Mapping[str, Any]) -> str | None:
    """The stored design hash; for trials written before designs had one, the config's without
    its seed (knobs fit per design were not recorded then, so none is left out)."""
    stored = _str_or_none(attrs.get(record.DESIGN_HASH))
    config = attrs.get(record.CONFIG)
    if stored is not None or not isinstance(config, Mapping):
        return stored
    return record.design_hash(config)


def _tuning_columns(trial: FrozenTrial) -> dict[str, list[Any]]:
    tuned = trial.user_attrs.get(record.TUNED)
    columns: dict[str, list[Any]] = {
        k: []
        for k in (
            "probes",
            "params",
            "values",
            "val_losses",
            "tokens_trained",
            "train_seconds",
            "chosen",
            "errors",
        )
    }
    for index, probe in enumerate(_attr_list(trial, record.TUNING)):
        values = probe.get("values") if isinstance(probe, Mapping) else None
        if not isinstance(values, Mapping):
            raise StoreError(
                f"trial {trial.number}: {record.TUNING} entries hold a 'values' dict, got {probe!r}"
            )
        for name, value in values.items():
            columns["probes"].append(index)
            columns["params"].append(str(name))
            columns["values"].append(_as_float(value))
            columns["val_losses"].append(_as_float(probe.get("val_loss")))
            columns["tokens_trained"].append(_as_int(probe.get("tokens_trained")))
            columns["train_seconds"].append(_as_float(probe.get("train_seconds")))
            columns["chosen"].append(isinstance(tuned, Mapping) and dict(values) == dict(tuned))
            columns["errors"].append(_str_or_none(probe.get("error")))
    return columns


def _param_columns(trial: FrozenTrial) -> dict[str, list[Any]]:
    config = trial.user_attrs.get(record.CONFIG)
    flat = flatten_config(config) if isinstance(config, Mapping) else {}
    # A sampled optuna parameter that is not a config field (a transformed knob) is kept as is.
    flat.update({name: value for name, value in trial.params.items() if name not in flat})
    columns: dict[str, list[Any]] = {
        "names": [],
        "values_json": [],
        "values_num": [],
        "values_str": [],
        "sampled": [],
    }
    for name in sorted(flat):
        value = flat[name]
        columns["names"].append(name)
        columns["values_json"].append(_json(value))
        columns["values_num"].append(float(value) if _is_number(value) and not _is_nan(value) else None)
        columns["values_str"].append(value if isinstance(value, str) else None)
        columns["sampled"].append(name in trial.params)
    return columns


def _curve_columns(trial: FrozenTrial) -> dict[str, list[Any]]:
    steps: list[int | None] = []
    metrics: list[str] = []
    values: list[float | None] = []
    for point in _attr_list(trial, record.CURVE):
        if not isinstance(point, Sequence) or isinstance(point, str) or len(point) != 3:
            raise StoreError(f"trial {trial.number}: wb.curve rows are [step, metric, value], got {point!r}")
        steps.append(_as_int(point[0]))
        metrics.append(str(point[1]))
        values.append(_as_float(point[2]))
    return {"steps": steps, "metrics": metrics, "values": values}


def _routing_columns(trial: FrozenTrial) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    keys = ("n_blocks", "load_entropy", "load_entropy_max", "dropped_frac", "unused_frac")
    layers: dict[str, list[Any]] = {"layers": [], **{k: [] for k in keys}}
    loads: dict[str, list[Any]] = {"layers": [], "blocks": [], "loads": []}
    for entry in _attr_list(trial, record.ROUTING):
        layer = _as_int(entry.get("layer")) if isinstance(entry, Mapping) else None
        if layer is None:
            raise StoreError(
                f"trial {trial.number}: wb.routing entries are dicts with a 'layer', got {entry!r}"
            )
        layers["layers"].append(layer)
        layers["n_blocks"].append(_as_int(entry.get("n_blocks")))
        for k in keys[1:]:
            layers[k].append(_as_float(entry.get(k)))
        for block, load in enumerate(entry.get("load") or []):
            loads["layers"].append(layer)
            loads["blocks"].append(block)
            loads["loads"].append(_as_float(load))
    return layers, loads


def _provenance_row(provenance: Mapping[str, Any]) -> dict[str, Any]:
    dirty = provenance.get("git_dirty")
    packages = provenance.get("packages")
    return {
        "git_commit": _str_or_none(provenance.get("git_commit")),
        "git_dirty": bool(dirty) if dirty is not None else None,
        "packages_json": _json(packages) if packages is not None else None,
        "device": _str_or_none(provenance.get("device")),
        "device_name": _str_or_none(provenance.get("device_name")),
        "seed": _as_int(provenance.get("seed")),
        "python": _str_or_none(provenance.get("python")),
        "torch": _str_or_none(provenance.get("torch")),
        "hostname": _str_or_none(provenance.get("hostname")),
    }


# --- store helpers -----------------------------------------------------------------------------


def _execute(con: duckdb.DuckDBPyConnection, name: str, params: Mapping[str, Any]) -> None:
    con.execute(sqlfiles.query(name), dict(params))


def _stored_states(store: Store, study_name: str) -> dict[int, str]:
    df = store.query("trial_states", {"study_name": study_name})
    return {int(n): str(s) for n, s in zip(df["trial_number"], df["optuna_state"], strict=True)}


def _stored_objective_names(con: duckdb.DuckDBPyConnection, study_name: str) -> list[str]:
    row = con.execute(sqlfiles.query("study_objectives"), {"study_name": study_name}).fetchone()
    if row is None or row[0] is None:
        return []
    return [str(o["name"]) for o in json.loads(row[0])]


# --- value coercion: the trial code's JSON may hold ints as floats, NaN, or numpy scalars ----------


def _attr_list(trial: FrozenTrial, name: str) -> list[Any]:
    value = trial.user_attrs.get(name)
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise StoreError(f"trial {trial.number}: {name} must be a list, got {type(value).__name__}")
    return list(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real)


def _is_nan(value: Any) -> bool:
    return isinstance(value, numbers.Real) and math.isnan(float(value))


def _as_float(value: Any) -> float | None:
    """A finite or infinite float; None for missing, NaN and non-numbers."""
    if not _is_number(value) or isinstance(value, bool) or _is_nan(value):
        return None
    return float(value)


def _as_int(value: Any) -> int | None:
    """An int (floats rounded); None for missing, non-finite and non-numbers."""
    number = _as_float(value)
    return round(number) if number is not None and math.isfinite(number) else None


_COERCE = {float: _as_float, int: _as_int}


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _json(value: Any) -> str:
    """JSON that DuckDB accepts: NaN and infinities become null, numpy scalars plain numbers."""
    return json.dumps(_finite(value), separators=(",", ":"), sort_keys=True, default=_json_default)


def _finite(value: Any) -> Any:
    if isinstance(value, float | numbers.Real) and not isinstance(value, bool | int | numbers.Integral):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return item()
    tolist = getattr(value, "tolist", None)  # numpy arrays
    if callable(tolist):
        return tolist()
    return str(value)
