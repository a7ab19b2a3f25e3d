"""Pareto fronts of trial tables: which trials no other trial beats on every objective.

Shape suffixes: N rows, M objectives. Pure functions on pandas/numpy. A row with a missing (NaN) objective is neither on the front nor
allowed to dominate; ``inf`` is an ordinary (worst or best) value. Ties: two rows with equal
objectives do not dominate each other, so both stay on the front.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

Direction = Literal["minimize", "maximize"]
DIRECTIONS: tuple[str, ...] = ("minimize", "maximize")


def non_dominated_mask(
    df: pd.DataFrame, objectives: Sequence[tuple[str, Direction]]
) -> npt.NDArray[np.bool_]:
    """Boolean mask over ``df``'s rows: True where no other row dominates the row.

    Row a dominates row b when a is at least as good on every objective and strictly better on
    one. ``objectives`` is a list of ``(column, "minimize" | "maximize")``, any length >= 1.
    """
    if not objectives:
        raise ValueError("non_dominated_mask needs at least one objective")
    columns = []
    for column, direction in objectives:
        if direction not in DIRECTIONS:
            raise ValueError(f"objective '{column}': direction '{direction}' is not one of {DIRECTIONS}")
        values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        columns.append(values if direction == "minimize" else -values)
    costs_NM = np.column_stack(columns)
    valid_N = ~np.isnan(costs_NM).any(axis=1)
    mask_N = np.zeros(len(df), dtype=bool)
    mask_N[valid_N] = _non_dominated(costs_NM[valid_N])
    return mask_N


def _non_dominated(costs_NM: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """Minimisation on every column, no NaN. One vectorised pass per row: O(N^2 M), fine for 1e4 rows."""
    keep_N = np.ones(len(costs_NM), dtype=bool)
    for i in range(len(costs_NM)):
        row_M = costs_NM[i]
        no_worse_N = (costs_NM <= row_M).all(axis=1)
        better_N = (costs_NM < row_M).any(axis=1)
        if (no_worse_N & better_N).any():
            keep_N[i] = False
    return keep_N


def pareto_front(
    df: pd.DataFrame,
    x: str,
    y: str,
    x_direction: Direction = "minimize",
    y_direction: Direction = "minimize",
) -> pd.DataFrame:
    """The rows of ``df`` on the (x, y) Pareto front, sorted by ``x`` then ``y`` for a step line."""
    mask = non_dominated_mask(df, [(x, x_direction), (y, y_direction)])
    return df.loc[mask].sort_values([x, y], kind="stable")
