"""Pareto fronts: which rows no other row beats on every objective (docs/DESIGN.md §6).

Shape suffixes: N rows, M objectives. Row a dominates row b when a is at least as good on every
objective and strictly better on one. A row with a missing (NaN) objective is neither on the front
nor allowed to dominate; ``inf`` is an ordinary value; equal rows do not dominate each other, so
both stay on the front. :func:`front_mask` is the O(N log N) sweep for two objectives (every
front the workbench draws or stores); :func:`dominance_mask` is the definition, O(N^2 M), for any
number of objectives, and the reference the sweep is tested against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

Direction = Literal["minimize", "maximize"]
DIRECTIONS: tuple[str, ...] = ("minimize", "maximize")


def _numbers(values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Floats, NaN for anything missing or not a number (a parameter column may hold both)."""
    array = pd.to_numeric(pd.Series(np.asarray(values, dtype=object)), errors="coerce")
    return array.to_numpy(dtype=float, na_value=np.nan)


def _costs(values: npt.ArrayLike, direction: Direction, name: str) -> npt.NDArray[np.float64]:
    if direction not in DIRECTIONS:
        raise ValueError(f"objective '{name}': direction '{direction}' is not one of {DIRECTIONS}")
    costs = _numbers(values)
    return costs if direction == "minimize" else -costs


def dominance_mask(costs_NM: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """The definition, minimising every column: True where no row dominates the row (NaN rows: False)."""
    valid_N = np.asarray(~np.isnan(costs_NM).any(axis=1), dtype=bool)
    keep_N = valid_N.copy()
    rows = costs_NM[valid_N]
    for i in np.flatnonzero(valid_N):
        row_M = costs_NM[i]
        if ((rows <= row_M).all(axis=1) & (rows < row_M).any(axis=1)).any():
            keep_N[i] = False
    return keep_N


def front_mask(
    x_N: npt.ArrayLike, y_N: npt.ArrayLike, x_dir: Direction, y_dir: Direction
) -> npt.NDArray[np.bool_]:
    """True where no other point is at least as good on both axes and better on one.

    The semantics of :func:`dominance_mask` in O(N log N): sort by x, then keep a point when its y
    is the best of its x and strictly better than every y at a better x.
    """
    x, y = _costs(x_N, x_dir, "x"), _costs(y_N, y_dir, "y")
    mask_N = np.zeros(len(x), dtype=bool)
    valid = np.flatnonzero(~(np.isnan(x) | np.isnan(y)))
    if len(valid) == 0:
        return mask_N
    order = valid[np.lexsort((y[valid], x[valid]))]
    xs, ys = x[order], y[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])  # first index of each distinct x
    group_min = np.minimum.reduceat(ys, starts)  # sorted by y within x, so the group's first y
    before = np.r_[np.inf, np.minimum.accumulate(group_min)[:-1]]  # best y at any strictly smaller x
    group_of = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(xs)]))
    # The first x has nothing before it: compare nothing, so an infinite y there still counts.
    keep = (ys == group_min[group_of]) & ((group_of == 0) | (ys < before[group_of]))
    mask_N[order[keep]] = True
    return mask_N


def non_dominated_mask(
    df: pd.DataFrame, objectives: Sequence[tuple[str, Direction]]
) -> npt.NDArray[np.bool_]:
    """Mask over ``df``'s rows for ``objectives`` = ``[(column, "minimize" | "maximize"), ...]``.

    Two objectives take the sweep; any other number the definition.
    """
    if not objectives:
        raise ValueError("non_dominated_mask needs at least one objective")
    if len(objectives) == 2:
        (x, x_dir), (y, y_dir) = objectives
        return front_mask(df[x].to_numpy(), df[y].to_numpy(), x_dir, y_dir)
    costs_NM = np.column_stack([_costs(df[c].to_numpy(), d, c) for c, d in objectives])
    return dominance_mask(costs_NM)


def front_probability(
    x_D: npt.ArrayLike,
    runs_D: Sequence[npt.ArrayLike],
    x_dir: Direction = "minimize",
    y_dir: Direction = "minimize",
    *,
    draws: int = 400,
    seed: int = 0,
) -> npt.NDArray[np.float64]:
    """How often each design is on the (x, mean y) front when its seeds are resampled.

    ``runs_D[d]`` holds design d's per-seed y values; each draw replaces them by a bootstrap
    resample (with replacement, same count) and takes the mean. A design with fewer than two
    seeds gets NaN: one run says nothing about its seed noise. Deterministic under ``seed``.
    """
    x = np.asarray(x_D, dtype=float)
    n_seeds = np.array([len(np.asarray(r, dtype=float)) for r in runs_D], dtype=int)
    if not (n_seeds >= 2).any():  # nothing to resample: skip the draws (10^4 designs of one seed)
        return np.full(len(x), np.nan)
    means_BD = np.empty((draws, len(x)))
    rng = np.random.default_rng(seed)
    for d, runs in enumerate(runs_D):
        values = np.asarray(runs, dtype=float)
        if len(values) == 0:
            means_BD[:, d] = np.nan
            continue
        picks = rng.integers(0, len(values), size=(draws, len(values)))
        means_BD[:, d] = values[picks].mean(axis=1)
    on_front = np.zeros(len(x))
    for means_D in means_BD:
        on_front += front_mask(x, means_D, x_dir, y_dir)
    probability = on_front / max(draws, 1)
    probability[n_seeds < 2] = np.nan
    return probability


def group_fronts(
    groups_N: npt.ArrayLike,
    x_N: npt.ArrayLike,
    y_N: npt.ArrayLike,
    x_dir: Direction = "minimize",
    y_dir: Direction = "minimize",
    *,
    seeds_N: Sequence[Sequence[float]] | None = None,
    draws: int = 400,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    """Each row's place on the (x, y) front of its group (a study; a missing group is a group):
    ``on_front``, and ``p_front`` from :func:`front_probability` when ``seeds_N`` gives each row's
    per-seed y values (NaN without them)."""
    codes, _ = pd.factorize(pd.Series(np.asarray(groups_N, dtype=object)), use_na_sentinel=False)
    x, y = _numbers(x_N), _numbers(y_N)
    seeds = list(seeds_N) if seeds_N is not None else None
    on_front = np.zeros(len(x), dtype=bool)
    p_front = np.full(len(x), np.nan)
    for group in np.unique(codes):
        index = np.flatnonzero(codes == group)
        on_front[index] = front_mask(x[index], y[index], x_dir, y_dir)
        if seeds is not None:
            runs = [list(seeds[i]) for i in index]
            p_front[index] = front_probability(x[index], runs, x_dir, y_dir, draws=draws)
    return on_front, p_front
