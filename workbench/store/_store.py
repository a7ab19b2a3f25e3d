"""The DuckDB analysis store: open (and migrate), short write transactions, pandas/xarray reads.

The store keeps a path, not a connection: every read or write opens DuckDB, does its work and
closes it, because DuckDB's file lock lets a writer in only while no other process has the file
open (see ``_connect``). Cache a :class:`Store` (or its results), never a DuckDB connection.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pandas as pd

from workbench.errors import StoreError
from workbench.pareto import Direction, group_fronts
from workbench.store import _frames, sqlfiles
from workbench.store._connect import connect
from workbench.store._migrate import (
    applied_versions,
    check_is_store,
    create_views,
    latest_version,
    migrate,
)

if TYPE_CHECKING:
    import xarray as xr

WRITE_LOCK_TIMEOUT_S = 60.0
READ_LOCK_TIMEOUT_S = 15.0

Names = str | Sequence[str] | None
# Design columns that are seed means, with per-seed values to resample.
_PER_SEED = ("val_ppl", "val_loss")


class Store:
    """A DuckDB file of studies and trials. Build it with :meth:`Store.open`."""

    def __init__(self, path: Path, *, read_only: bool, lock_timeout_s: float) -> None:
        self._path = path
        self._read_only = read_only
        self._lock_timeout_s = lock_timeout_s

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], read_only: bool = False, *, lock_timeout_s: float | None = None
    ) -> Store:
        """Open the store at ``path``.

        Write mode creates the parent folder and the file and applies pending migrations.
        Read-only mode requires an existing, fully migrated store and raises :class:`StoreError`
        otherwise. ``lock_timeout_s`` bounds each wait for another process's lock (default 60 s
        for writing, 15 s for reading).
        """
        resolved = Path(path).expanduser()
        timeout = lock_timeout_s
        if timeout is None:
            timeout = READ_LOCK_TIMEOUT_S if read_only else WRITE_LOCK_TIMEOUT_S
        store = cls(resolved, read_only=read_only, lock_timeout_s=timeout)
        if read_only:
            if not resolved.is_file():
                raise StoreError(f"no store at {resolved}: run a study or `workbench ingest` to create it")
            store._check_schema()
        else:
            try:
                resolved.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the folder of store {resolved}: {exc}") from exc
            with store._connection() as con:
                migrate(con, resolved)
                create_views(con)
        return store

    @property
    def path(self) -> Path:
        return self._path

    @property
    def read_only(self) -> bool:
        return self._read_only

    def __repr__(self) -> str:
        mode = "read-only" if self._read_only else "read-write"
        return f"Store({str(self._path)!r}, {mode})"

    # --- connections -------------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        con = connect(self._path, read_only=self._read_only, timeout_s=self._lock_timeout_s)
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for several queries that must see one snapshot; closed on exit. Keep it short."""
        with self._connection() as con:
            yield con

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction on a fresh connection: committed and closed on exit, rolled back on error.

        Holds DuckDB's exclusive file lock for the duration of the block, so readers in other
        processes wait (they retry): write one trial per block.
        """
        if self._read_only:
            raise StoreError(f"store {self._path} is open read-only; open it with read_only=False to write")
        with self._connection() as con:
            con.begin()
            try:
                yield con
                con.commit()
            except BaseException:
                with suppress(duckdb.Error):
                    con.rollback()
                raise

    def _check_schema(self) -> None:
        with self.read() as con:
            check_is_store(con, self._path)
            versions = applied_versions(con)
        have, want = max(versions, default=0), latest_version()
        if have < want:
            raise StoreError(
                f"store {self._path} has schema version {have}, this code needs {want}: "
                "open it once in write mode (e.g. `workbench ingest`) to migrate it"
            )

    # --- generic reads -----------------------------------------------------------------------

    def sql(self, query: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run one SQL statement with ``$name`` parameters bound from ``params``; returns its rows."""
        with self.read() as con:
            return _frame(con, query, params)

    def query(self, name: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run the named query ``store/queries/<name>.sql`` with ``params`` bound."""
        return self.sql(sqlfiles.query(name), params)

    def schema_version(self) -> int:
        """The highest migration applied to this store."""
        with self.read() as con:
            return max(applied_versions(con), default=0)

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        return _counts(self.query("counts"))

    # --- studies and trials ------------------------------------------------------------------

    def studies(self) -> pd.DataFrame:
        """One row per study with its space, objectives and trial counts by status."""
        return self.query("studies")

    def study_counts(self, study_name: str) -> dict[str, int]:
        """Rows of one study per table (all zero when the store does not hold it)."""
        return _counts(self.query("study_counts", {"study_name": study_name}))

    def drop_study(self, study_name: str) -> dict[str, int]:
        """Delete every row of one study, from every table, in one transaction; returns rows per table.

        Raises :class:`StoreError` listing the stored studies when the store does not hold it.
        Only the store changes: the optuna storage keeps the study, and ingest copies it back from there.
        """
        params = {"study_name": study_name}
        with self.write() as con:
            counts = _counts(_frame(con, sqlfiles.query("study_counts"), params))
            if not any(counts.values()):
                names = [str(row[0]) for row in con.execute(sqlfiles.query("study_names")).fetchall()]
                raise StoreError(
                    f"store {self._path} holds no study {study_name!r}; studies there: "
                    f"{', '.join(names) or 'none'}"
                )
            for statement in sqlfiles.statements(sqlfiles.query("drop_study")):
                con.execute(statement, params)
        return counts

    def trials(
        self, study_name: Names = None, status: Names = None, *, with_params: bool = True
    ) -> pd.DataFrame:
        """One row per trial (columns of the ``trial_overview`` view), then one column per parameter.

        ``study_name`` / ``status``: one name, a list, or None for all. Parameter columns are
        named ``<section>.<field>`` (``memory.kind``, ``model.d_model``) and hold the full config,
        sampled or fixed; :meth:`param_summary` says which were sampled.
        """
        params = {"study_names": _names(study_name), "statuses": _names(status)}
        with self.read() as con:
            trials = _frame(con, sqlfiles.query("trials"), params)
            if not with_params:
                return trials
            long = _frame(con, sqlfiles.query("trial_params"), params)
        return _frames.join_params(trials, _frames.pivot_params(long))

    def param_summary(self, study_name: Names = None) -> pd.DataFrame:
        """Per study and parameter: ``sampled``, ``n_trials``, ``n_values``, ``min_num``, ``max_num``."""
        return self.query("param_summary", {"study_names": _names(study_name)})

    def curves(
        self, study_name: str, trial_numbers: Sequence[int] | None = None, metrics: Names = None
    ) -> pd.DataFrame:
        """Long-form curve points ``(study_name, trial_number, step, metric, value)``."""
        return self.query(
            "curves",
            {"study_name": study_name, "trial_numbers": _numbers(trial_numbers), "metrics": _names(metrics)},
        )

    def routing(self, study_name: str, trial_number: int) -> pd.DataFrame:
        """Per-layer routing statistics of one trial, with ``entropy_ratio`` (1 = balanced)."""
        return self.query("routing", {"study_name": study_name, "trial_number": int(trial_number)})

    def routing_load(self, study_name: str, trial_number: int) -> pd.DataFrame:
        """Per-layer, per-block load of one trial (long form: layer, block, load)."""
        return self.query("routing_load", {"study_name": study_name, "trial_number": int(trial_number)})

    def provenance(self, study_name: str, trial_numbers: Sequence[int] | None = None) -> pd.DataFrame:
        """Git commit, packages, device, seed, ... of one study's trials."""
        return self.query("provenance", {"study_name": study_name, "trial_numbers": _numbers(trial_numbers)})

    # --- analyses ----------------------------------------------------------------------------

    def designs(self, study_name: Names = None, *, with_params: bool = True) -> pd.DataFrame:
        """One row per design (the ``designs`` view: seeds, means, sd, 95% intervals, costs), with
        the parameter columns of its first run. ``val_ppl`` and ``val_loss`` hold the seed means,
        so any code that reads trials reads designs too; ``trial_number`` is the first run.
        ``with_params=False``: the view's columns alone (no parameter pivot)."""
        params = {"study_names": _names(study_name)}
        with self.read() as con:
            designs = _frame(con, sqlfiles.query("designs"), params)
            if not with_params:
                return designs
            long = _frame(con, sqlfiles.query("trial_params"), {**params, "statuses": ["complete"]})
        designs = designs.assign(
            val_ppl=designs["val_ppl_mean"],
            val_loss=designs["val_loss_mean"],
            trial_number=designs["first_trial"],
        )
        return _frames.join_params(designs, _frames.pivot_params(long))

    def pareto(
        self,
        study_name: str | Sequence[str],
        x: str = "flops_per_token",
        y: str = "val_ppl",
        x_direction: Direction = "minimize",
        y_direction: Direction = "minimize",
        *,
        group_by: str | None = "study_name",
        front_only: bool = True,
        draws: int = 400,
    ) -> pd.DataFrame:
        """Designs on the (x, y) Pareto front of each ``group_by`` group (None: all together).

        Designs, not runs: ``y`` is the mean over a design's seeds (``val_ppl`` and ``val_loss``;
        any other numeric column of :meth:`designs` as it is). Each row gets ``on_front``,
        ``p_front`` (the share of ``draws`` bootstrap resamples of every design's seeds in which it
        is on the front; NaN below two seeds) and ``significant``: its place (on or off the front)
        holds in at least 95% of them. Rows come sorted by group, then x, then y (a step line).
        """
        df = self.designs(study_name)
        if df.empty:  # no completed runs yet, hence no parameter columns to check
            return df.assign(
                on_front=pd.Series(dtype=bool),
                p_front=pd.Series(dtype=float),
                significant=pd.Series(dtype=bool),
            )
        _frames.check_columns(df, [x, y] + ([group_by] if group_by else []), "column")
        on_front, p_front = group_fronts(
            df[group_by] if group_by else np.zeros(len(df)),
            df[x],
            df[y],
            x_direction,
            y_direction,
            seeds_N=df[f"{y}_seeds"] if y in _PER_SEED else None,
            draws=draws,
        )
        significant = (on_front & (p_front >= 0.95)) | (~on_front & (p_front <= 0.05))
        df = df.assign(on_front=on_front, p_front=p_front, significant=significant)
        sort = ([group_by] if group_by else []) + [x, y]
        df = df.sort_values(sort, kind="stable").reset_index(drop=True)
        return df[df["on_front"]].reset_index(drop=True) if front_only else df

    def to_xarray(
        self,
        study_name: str | Sequence[str],
        metric: str = "val_ppl",
        dims: Sequence[str] = ("memory.kind", "model.d_model"),
        reduce: _frames.Reduce = "min",
        *,
        status: Names = "complete",
    ) -> xr.Dataset:
        """A grid over parameter ``dims``: ``metric`` reduced (min/max/mean/median) over each cell's
        trials, and ``count`` (trials with the metric in the cell). Any :meth:`trials` column may
        serve as a dimension or metric."""
        ds = _frames.to_dataset(self.trials(study_name, status), metric, list(dims), reduce)
        ds.attrs.update(
            study_name=study_name if isinstance(study_name, str) else ",".join(study_name),
            metric=metric,
            reduce=reduce,
        )
        return ds


def _frame(con: duckdb.DuckDBPyConnection, query: str, params: Mapping[str, Any] | None) -> pd.DataFrame:
    try:
        return con.execute(query, dict(params) if params else None).df()
    except duckdb.Error as exc:
        raise StoreError(f"query failed: {str(exc).strip().splitlines()[0]}") from exc


def _counts(df: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in zip(df["table_name"], df["n_rows"], strict=True)}


def _names(value: Names) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _numbers(value: Sequence[int] | None) -> list[int] | None:
    return None if value is None else [int(v) for v in value]
