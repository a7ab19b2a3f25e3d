"""Reshape query results: long-form parameters into columns, trials into an xarray grid."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from workbench.errors import StoreError

if TYPE_CHECKING:
    import xarray as xr

Reduce = Literal["min", "max", "mean", "median"]
REDUCERS: tuple[str, ...] = ("min", "max", "mean", "median")
KEYS = ["study_name", "trial_number"]


def pivot_params(long: pd.DataFrame) -> pd.DataFrame:
    """``(study_name, trial_number, name, value_json)`` rows -> one row per trial, one column per name.

    Values are decoded from JSON so a column has the parameter's own type (int, float, str,
    bool); a trial without the parameter (a dense layer has no ``memory.n_experts``) gets NaN.
    """
    if long.empty:
        return pd.DataFrame(columns=KEYS)
    decoded = long.assign(value=[json.loads(v) if v is not None else None for v in long["value_json"]])
    wide = decoded.pivot(index=KEYS, columns="name", values="value")
    wide = wide.reindex(columns=sorted(wide.columns)).infer_objects()
    wide.columns.name = None
    return wide.reset_index()


def join_params(trials: pd.DataFrame, wide: pd.DataFrame) -> pd.DataFrame:
    """Trial columns first, then parameter columns; a parameter named like a trial column gets ``param.``."""
    renames = {c: f"param.{c}" for c in wide.columns if c not in KEYS and c in trials.columns}
    return trials.merge(wide.rename(columns=renames), on=KEYS, how="left")


def check_columns(df: pd.DataFrame, names: Sequence[str], what: str) -> None:
    """Raise :class:`StoreError` naming an unknown column and listing the valid ones."""
    for name in names:
        if name not in df.columns:
            raise StoreError(f"unknown {what} '{name}'; valid: {', '.join(map(str, df.columns))}")


def to_dataset(df: pd.DataFrame, metric: str, dims: Sequence[str], reduce: Reduce) -> xr.Dataset:
    """Reduce ``metric`` over the trials of each cell of the ``dims`` grid.

    Returns a Dataset with data variables ``metric`` (the reduced value, NaN for an empty cell)
    and ``count`` (trials with a non-null metric in the cell) over ``dims``. A trial that lacks
    a dimension's parameter falls in that dimension's NaN coordinate.
    """
    import xarray as xr

    if reduce not in REDUCERS:
        raise StoreError(f"unknown reduce '{reduce}'; valid: {', '.join(REDUCERS)}")
    if not dims:
        raise StoreError("to_xarray needs at least one dimension")
    if df.empty:
        # No trials (yet): no parameter columns to check either, so an empty grid.
        shape = (0,) * len(dims)
        return xr.Dataset(
            {metric: (list(dims), np.full(shape, np.nan)), "count": (list(dims), np.zeros(shape, np.int64))},
            coords={d: [] for d in dims},
        )
    check_columns(df, [metric, *dims], "column")
    values = pd.to_numeric(df[metric], errors="coerce")
    grouped = values.groupby([df[d] for d in dims], dropna=False)
    cells = pd.DataFrame({metric: grouped.agg(reduce), "count": grouped.count()})
    cells.index.names = list(dims)
    ds = xr.Dataset.from_dataframe(cells)
    ds["count"] = ds["count"].fillna(0).astype("int64")
    return ds
