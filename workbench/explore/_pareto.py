"""The Pareto explorer: perplexity against a compute axis, the non-dominated front per study.

Computing and drawing are apart: :func:`get_pareto_info` filters the trials and finds the fronts
(an O(N log N) sweep in numpy, fast for 10^4-10^5 trials); :func:`pareto_figure` draws it with
plotly, switching to WebGL (``Scattergl``) above :data:`WEBGL_MIN_POINTS` points.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd

from workbench.explore._frames import (
    COMPUTE_AXES,
    PERPLEXITY,
    Axis,
    ExploreError,
    Filter,
    apply_filters,
    design_lines,
    natural_key,
    value_label,
    with_keys,
)
from workbench.pareto import Direction

if TYPE_CHECKING:
    import plotly.graph_objects as go

WEBGL_MIN_POINTS = 1500
SYMBOLS = ("circle", "square", "diamond", "cross", "x", "triangle-up", "triangle-down", "star", "hexagon")
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f")
FRONT_DASHES = ("solid", "dash", "dot", "dashdot", "longdash")


def front_mask(
    x_N: npt.ArrayLike, y_N: npt.ArrayLike, x_dir: Direction, y_dir: Direction
) -> npt.NDArray[np.bool_]:
    """True where no other point is at least as good on both axes and better on one.

    Same semantics as :func:`workbench.pareto.non_dominated_mask` (NaN is never on the front;
    equal points do not dominate each other) in O(N log N): sort by x, then keep a point when
    its y is the best of its x and strictly better than every y at a better x.
    """
    x = np.asarray(x_N, dtype=float) * (1.0 if x_dir == "minimize" else -1.0)
    y = np.asarray(y_N, dtype=float) * (1.0 if y_dir == "minimize" else -1.0)
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
    keep = (ys == group_min[group_of]) & (ys < before[group_of])
    mask_N[order[keep]] = True
    return mask_N


class ParetoInfo(NamedTuple):
    """What the Pareto explorer draws.

    ``points``: the filtered, plottable trials (``key``, ``design``, ``on_front``, x, y, colour,
    symbol columns). ``fronts``: the rows on each study's front, sorted for a step line.
    """

    points: pd.DataFrame
    fronts: pd.DataFrame
    x: Axis
    y: Axis
    color: str
    symbol: str | None
    n_trials: int  # complete trials of the chosen studies, before filters
    n_filtered_out: int
    n_unplottable: int  # missing or (on a log axis) non-positive x or y
    colors: dict[str, str]  # colour per value of ``color`` over all trials, so filters keep colours
    symbols: dict[str, str]  # marker per value of ``symbol`` (``{"": "circle"}`` without one)


def get_pareto_info(
    trials: pd.DataFrame,
    x: str = "flops_per_token",
    *,
    filters: Sequence[Filter] = (),
    design_params: Sequence[str] = (),
    color: str = "memory.kind",
    symbol: str | None = None,
    log_x: bool = True,
    log_y: bool = True,
) -> ParetoInfo:
    """Filter ``trials`` (complete trials of one or more studies), then find each study's front
    of validation perplexity against compute axis ``x`` (a key of :data:`COMPUTE_AXES` or any
    numeric column, minimised)."""
    axis = COMPUTE_AXES.get(x) or Axis(column=x, label=x)
    y_axis = PERPLEXITY
    for needed in [axis.column, y_axis.column, color] + ([symbol] if symbol else []):
        if not trials.empty and needed not in trials.columns:
            raise ExploreError(f"no column '{needed}' in these trials")
    n_trials = len(trials)
    colors = category_colors(_labels(trials[color]).unique()) if not trials.empty else {}
    symbols = {"": "circle"}
    if symbol and not trials.empty:
        order = sorted(_labels(trials[symbol]).unique(), key=natural_key)
        symbols = {v: SYMBOLS[i % len(SYMBOLS)] for i, v in enumerate(order)}
    kept = apply_filters(trials, filters) if not trials.empty else trials
    n_filtered_out = n_trials - len(kept)
    if kept.empty:
        empty = pd.DataFrame(columns=["key", "design", "on_front", "study_name", "trial_number"])
        return ParetoInfo(
            empty, empty, axis, y_axis, color, symbol, n_trials, n_filtered_out, 0, colors, symbols
        )
    xv = pd.to_numeric(kept[axis.column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    yv = pd.to_numeric(kept[y_axis.column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    ok = ~(np.isnan(xv) | np.isnan(yv))
    if log_x:
        ok &= xv > 0
    if log_y:
        ok &= yv > 0
    points = with_keys(kept[ok])
    points = points.assign(design=design_lines(points, list(design_params)).to_numpy())
    on_front = np.zeros(len(points), dtype=bool)
    for _, index in points.groupby("study_name", sort=False).indices.items():
        on_front[index] = front_mask(
            points[axis.column].to_numpy(dtype=float)[index],
            points[y_axis.column].to_numpy(dtype=float)[index],
            axis.direction,
            y_axis.direction,
        )
    points = points.assign(on_front=on_front).reset_index(drop=True)
    ascending = axis.direction == "minimize"
    fronts = points[points["on_front"]].sort_values(
        ["study_name", axis.column, y_axis.column], ascending=[True, ascending, True], kind="stable"
    )
    return ParetoInfo(
        points,
        fronts.reset_index(drop=True),
        axis,
        y_axis,
        color,
        symbol,
        n_trials,
        n_filtered_out,
        int((~ok).sum()),
        colors,
        symbols,
    )


def category_colors(values: Sequence[object]) -> dict[str, str]:
    """A stable colour per category (sorted), shared by every figure of the app."""
    return {str(v): PALETTE[i % len(PALETTE)] for i, v in enumerate(sorted({str(v) for v in values}))}


def pareto_figure(
    info: ParetoInfo, *, log_x: bool = True, log_y: bool = True, height: int = 560
) -> go.Figure:
    """Points coloured by ``info.color`` and shaped by ``info.symbol``; each study's front as a step line."""
    import plotly.graph_objects as go

    fig = go.Figure()
    pts = info.points
    webgl = len(pts) >= WEBGL_MIN_POINTS
    scatter = go.Scattergl if webgl else go.Scatter
    x_col, y_col = info.x.column, info.y.column
    if not pts.empty:
        color_values = _labels(pts[info.color])
        colors, symbols = info.colors, info.symbols
        sym_values = _labels(pts[info.symbol]) if info.symbol else pd.Series("", index=pts.index)
        hover = _hover_text(pts, info)
        groups = pd.DataFrame({"c": color_values, "s": sym_values}).groupby(["c", "s"], sort=True).indices
        # One trace per (colour, shape); the legend has one entry per colour (clicking it hides the
        # colour's traces) and, below the plot, a key of the shapes.
        for (c, s), index in groups.items():
            fig.add_trace(
                scatter(
                    x=pts[x_col].to_numpy()[index],
                    y=pts[y_col].to_numpy()[index],
                    mode="markers",
                    name=f"{c} · {_short(info.symbol)}={s}" if info.symbol else c,
                    legendgroup=c,
                    showlegend=False,
                    marker={
                        "color": colors[c],
                        "symbol": symbols[s],
                        "size": 8 if not webgl else 6,
                        "opacity": 0.8,
                    },
                    customdata=pts["key"].to_numpy()[index].reshape(-1, 1),
                    hovertext=hover[index],
                    hovertemplate=_hover_template(info),
                )
            )
        for c in sorted(color_values.unique(), key=natural_key):
            fig.add_trace(_key_entry(c, colors[c], "circle", legendgroup=c))
        if info.symbol:
            for s in sorted(sym_values.unique(), key=natural_key):
                entry = _key_entry(f"{_short(info.symbol)}={s}", "#777", symbols[s], legendgroup=f"shape={s}")
                fig.add_trace(entry.update(legend="legend2"))
        # Fronts are sorted best x first, so the attainable perplexity holds until the next point.
        for i, (study, front) in enumerate(info.fronts.groupby("study_name", sort=True)):
            xs, ys = front_steps(front, info, pts[x_col])
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="lines",
                    line={
                        "shape": "hv",
                        "color": "#222",
                        "width": 1.6,
                        "dash": FRONT_DASHES[i % len(FRONT_DASHES)],
                    },
                    name=f"front · {study}",
                    legendgroup=f"front · {study}",
                    hoverinfo="skip",
                )
            )
            fig.add_trace(
                go.Scatter(
                    x=front[x_col],
                    y=front[y_col],
                    mode="markers",
                    marker={"size": 13, "symbol": "circle-open", "color": "#222", "line": {"width": 1.6}},
                    name=f"front · {study}",
                    legendgroup=f"front · {study}",
                    showlegend=False,
                    customdata=front["key"].to_numpy().reshape(-1, 1),
                    hovertext=_hover_text(front, info),
                    hovertemplate=_hover_template(info, "<b>on the front</b><br>"),
                )
            )
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 30, "b": 60 if info.symbol else 10},
        legend={"title": {"text": info.color}},
        legend2={
            "orientation": "h",
            "x": 0,
            "y": -0.16,
            "yanchor": "top",
            "title": {"text": f"{info.symbol}: "},
        },
        dragmode="lasso",
        hoverlabel={"align": "left"},
        uirevision="pareto",
    )
    # nticks: on a narrow log range plotly would otherwise label every minor tick.
    fig.update_xaxes(title=info.x.label, type="log" if log_x else "linear", nticks=8)
    fig.update_yaxes(title=info.y.label, type="log" if log_y else "linear", nticks=10)
    return fig


def front_steps(front: pd.DataFrame, info: ParetoInfo, all_x: pd.Series) -> tuple[list[float], list[float]]:
    """A front's step-line vertices (drawn with ``shape="hv"``), carried on to the worst x of
    ``all_x`` so the line shows that no design beyond the last front point does better."""
    xs = front[info.x.column].astype(float).tolist()
    ys = front[info.y.column].astype(float).tolist()
    if xs:
        worst = float(all_x.max() if info.x.direction == "minimize" else all_x.min())
        if worst != xs[-1]:
            xs.append(worst)
            ys.append(ys[-1])
    return xs, ys


def _key_entry(name: str, color: str, symbol: str, *, legendgroup: str) -> go.Scatter:
    """A legend-only trace (no data point) showing a colour or a marker shape."""
    import plotly.graph_objects as go

    return go.Scatter(
        x=[None],
        y=[None],
        mode="markers",
        name=name,
        legendgroup=legendgroup,
        marker={"color": color, "symbol": symbol, "size": 9},
        hoverinfo="skip",
    )


def _hover_text(pts: pd.DataFrame, info: ParetoInfo) -> np.ndarray:
    """``study#n · design``; the hover template adds the two axis values (formatted by plotly)."""
    return (pts["key"] + " · " + pts["design"]).to_numpy()


def _hover_template(info: ParetoInfo, head: str = "") -> str:
    return f"{head}%{{hovertext}}<br>ppl %{{y:.4g}} · {info.x.label} %{{x:.4s}}<extra></extra>"


def _labels(values: pd.Series) -> pd.Series:
    """:func:`value_label` of each value, computed once per distinct value."""
    distinct = values.drop_duplicates()
    return values.map(dict(zip(distinct, map(value_label, distinct), strict=True)))


def _short(name: str | None) -> str:
    return (name or "").split(".", 1)[-1]


def front_table(info: ParetoInfo, columns: Sequence[str] = ()) -> pd.DataFrame:
    """The front's trials as a table: key, design, the two axes, then ``columns``."""
    cols = ["key", "design", info.y.column, info.x.column, *[c for c in columns if c in info.fronts]]
    return info.fronts[list(dict.fromkeys(cols))].reset_index(drop=True)
