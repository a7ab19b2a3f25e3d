"""Hypervolume of a 2-D Pareto front, and its history over a study's trials: has the search converged?

Shape suffixes: N points. Both objectives are turned into costs (minimised; a maximised objective
is negated). The hypervolume is the area that the front dominates inside the box bounded by a
reference point; it grows as the search finds better trade-offs and flattens once it stops.

The reference point is the worst observed cost on each axis pushed out by a tenth of its
magnitude: ``worst x 1.1`` for a minimised positive metric (perplexity, FLOPs) and ``worst x 0.9``
in value for a maximised one (tokens/s), so even the worst design adds some area. The history
divides by the area of the box between the ideal point (best of each axis) and the reference,
so studies of different scales share one [0, 1] axis.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from workbench.explore._frames import Axis, ExploreError
from workbench.explore._pareto import FRONT_DASHES, PALETTE

if TYPE_CHECKING:
    import plotly.graph_objects as go

Order = Literal["trial_number", "finished_at"]
REFERENCE_MARGIN = 0.1  # the reference point lies 10% of the worst value beyond it


def costs_of(frame: pd.DataFrame, x: Axis, y: Axis) -> npt.NDArray[np.float64]:
    """``(N, 2)`` costs of ``frame``'s rows: the two axes' values, negated where larger is better."""
    columns = []
    for axis in (x, y):
        values = pd.to_numeric(frame[axis.column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        columns.append(values if axis.direction == "minimize" else -values)
    return np.column_stack(columns) if columns[0].size else np.empty((0, 2))


def reference_point(costs_N2: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The worst finite cost of each axis plus :data:`REFERENCE_MARGIN` of its magnitude."""
    finite = costs_N2[np.isfinite(costs_N2).all(axis=1)]
    if not len(finite):
        raise ExploreError("no point with both objectives: no hypervolume")
    worst = finite.max(axis=0)
    return np.asarray(worst + REFERENCE_MARGIN * np.abs(worst), dtype=float)


def hypervolume_2d(costs_N2: npt.NDArray[np.float64], ref_2: npt.ArrayLike) -> float:
    """Area dominated by the points (minimising both columns) and bounded by ``ref_2``.

    A sweep in x: each point that lowers the best y so far adds the strip from its x to the
    reference, as tall as the drop in y. Points not strictly better than ``ref_2`` on both axes
    (and NaN points) add nothing.
    """
    ref = np.asarray(ref_2, dtype=float)
    inside = costs_N2[np.isfinite(costs_N2).all(axis=1) & (costs_N2 < ref).all(axis=1)]
    if not len(inside):
        return 0.0
    pts = inside[np.lexsort((inside[:, 1], inside[:, 0]))]
    best_before = np.r_[ref[1], np.minimum.accumulate(pts[:, 1])[:-1]]
    drop = np.clip(best_before - pts[:, 1], 0.0, None)
    return float(np.sum((ref[0] - pts[:, 0]) * drop))


def hypervolume_history(costs_N2: npt.NDArray[np.float64], ref_2: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The hypervolume of the first 1, 2, ..., N points (in the given order), in one pass.

    The non-dominated set is kept sorted by x (so y decreases); a point dominated by it costs a
    bisection, and only a point that changes the front recomputes the (small) front's area.
    """
    ref = np.asarray(ref_2, dtype=float)
    rx, ry = float(ref[0]), float(ref[1])
    inside_N = np.asarray(np.isfinite(costs_N2).all(axis=1) & (costs_N2 < ref).all(axis=1), dtype=bool)
    front_x: list[float] = []
    front_y: list[float] = []
    hv = 0.0
    out_N = np.empty(len(costs_N2), dtype=float)
    for i, (x, y) in enumerate(costs_N2.tolist()):
        if inside_N[i]:
            j = bisect.bisect_right(front_x, x)  # front[:j] has x' <= x
            if not j or front_y[j - 1] > y:  # not weakly dominated by a point at least as cheap
                start = j - 1 if j and front_x[j - 1] == x else j
                end = start
                while end < len(front_x) and front_y[end] >= y:  # the points this one dominates
                    end += 1
                front_x[start:end] = [x]
                front_y[start:end] = [y]
                hv = _front_area(front_x, front_y, rx, ry)
        out_N[i] = hv
    return out_N


def _front_area(front_x: list[float], front_y: list[float], rx: float, ry: float) -> float:
    """Area of a front sorted by x (y falling): the strip of each point down from the one before."""
    area, above = 0.0, ry
    for x, y in zip(front_x, front_y, strict=True):
        area += (rx - x) * (above - y)
        above = y
    return area


def hypervolume_over_trials(
    points: pd.DataFrame, x: Axis, y: Axis, order: Order = "trial_number"
) -> pd.DataFrame:
    """Per study, the front's hypervolume after each trial, in trial-number or finish-time order.

    ``points``: complete trials of one or more studies (``study_name``, ``trial_number``, the two
    axes, ``finished_at`` for the time order). Returns ``study_name, trial_number, finished_at,
    hypervolume, fraction`` where ``fraction`` is the hypervolume over the ideal-to-reference box.
    """
    columns = ["study_name", "trial_number", "finished_at", "hypervolume", "fraction"]
    parts = []
    for study, part in points.groupby("study_name", sort=True):
        if order == "finished_at" and "finished_at" in part:
            part = part.sort_values(["finished_at", "trial_number"], kind="stable", na_position="last")
        else:
            part = part.sort_values("trial_number", kind="stable")
        costs = costs_of(part, x, y)
        finite = costs[np.isfinite(costs).all(axis=1)]
        if not len(finite):
            continue
        ref = reference_point(finite)
        box = float(np.prod(ref - finite.min(axis=0)))
        hv = hypervolume_history(costs, ref)
        parts.append(
            pd.DataFrame(
                {
                    "study_name": study,
                    "trial_number": part["trial_number"].to_numpy(),
                    "finished_at": part["finished_at"].to_numpy() if "finished_at" in part else pd.NaT,
                    "hypervolume": hv,
                    "fraction": hv / box if box > 0 else np.nan,
                }
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def hypervolume_figure(history: pd.DataFrame, x: Axis, y: Axis, order: Order = "trial_number") -> go.Figure:
    """One step line per study: the fraction of the ideal-to-reference box the front dominates."""
    import plotly.graph_objects as go

    fig = go.Figure()
    x_col = "finished_at" if order == "finished_at" else "trial_number"
    for i, (study, whole) in enumerate(history.groupby("study_name", sort=True)):
        # A step line needs only the trials that changed the hypervolume, and the last trial.
        hv = whole["hypervolume"].to_numpy()
        keep = np.r_[True, hv[1:] != hv[:-1]]
        keep[-1] = True
        part = whole[keep]
        fig.add_trace(
            go.Scatter(
                x=part[x_col],
                y=part["fraction"],
                mode="lines",
                name=str(study),
                line={"shape": "hv", "color": PALETTE[i % len(PALETTE)], "dash": FRONT_DASHES[i % 5]},
                customdata=np.column_stack([part["trial_number"], part["hypervolume"]]),
                hovertemplate=f"{study} trial %{{customdata[0]}}<br>hypervolume %{{customdata[1]:.4g}}"
                " (%{y:.1%} of the box)<extra></extra>",
            )
        )
    fig.update_layout(
        height=300,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        title={"text": f"Hypervolume of the front ({y.label} vs {x.label})", "font": {"size": 14}},
        xaxis={"title": "finish time" if order == "finished_at" else "trial number"},
        yaxis={"title": "fraction of the box", "tickformat": ".0%", "rangemode": "tozero"},
        legend={"orientation": "h", "y": -0.25},
    )
    return fig
