"""The Pareto explorer: perplexity against a compute axis, the non-dominated front per study.

Computing and drawing are apart: :func:`get_pareto_info` filters the trials and finds the fronts
(:func:`workbench.pareto.front_mask`, an O(N log N) sweep); :func:`pareto_figure` draws it with
plotly, switching to WebGL (``Scattergl``) above :data:`WEBGL_MIN_POINTS` points.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
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
from workbench.pareto import group_fronts

if TYPE_CHECKING:
    import plotly.graph_objects as go

WEBGL_MIN_POINTS = 1500
SYMBOLS = ("circle", "square", "diamond", "cross", "x", "triangle-up", "triangle-down", "star", "hexagon")
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f")
FRONT_DASHES = ("solid", "dash", "dot", "dashdot", "longdash")


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
    repeats = "val_ppl_seeds" in points.columns and y_axis.column == "val_ppl"
    on_front, p_front = group_fronts(
        points["study_name"],
        points[axis.column],
        points[y_axis.column],
        axis.direction,
        y_axis.direction,
        seeds_N=points["val_ppl_seeds"] if repeats else None,
    )
    points = points.assign(on_front=on_front, p_front=p_front).reset_index(drop=True)
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
    info: ParetoInfo,
    *,
    log_x: bool = True,
    log_y: bool = True,
    height: int = 560,
    show_dominated: bool = True,
    highlight: Sequence[str] = (),
) -> go.Figure:
    """Points coloured by ``info.color`` and shaped by ``info.symbol``; each study's front as a step line.

    ``show_dominated=False`` draws only the designs on a front (the axes keep their range, so the
    picture does not jump); ``highlight`` rings the trials of those keys (a picked design).
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    pts = info.points if show_dominated else info.points[info.points["on_front"]]
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
                    error_y=_error_bars(pts.iloc[index], y_col, colors[c]),
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
            xs, ys = front_steps(front, info, info.points[x_col])
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
        marked = pts[pts["key"].isin(list(highlight))]
        if len(marked):
            fig.add_trace(
                go.Scatter(
                    x=marked[x_col],
                    y=marked[y_col],
                    mode="markers",
                    marker={"size": 20, "symbol": "circle-open", "color": "#e4572e", "line": {"width": 3}},
                    name="front · picked",
                    hoverinfo="skip",
                )
            )
    if not show_dominated and len(info.points):
        # Keep the full range so hiding the dominated designs does not rescale the axes.
        fig.update_xaxes(range=_range(info.points[x_col], log_x))
        fig.update_yaxes(range=_range(info.points[y_col], log_y))
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


def _range(values: pd.Series, log: bool) -> list[float]:
    """An axis range (in plotly's units: log10 on a log axis) spanning ``values`` with 4% padding."""
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    v = np.log10(v[v > 0]) if log else v[np.isfinite(v)]
    low, high = float(np.min(v)), float(np.max(v))
    pad = 0.04 * (high - low) or 0.1 * (abs(low) or 1.0)
    return [low - pad, high + pad]


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


def _error_bars(pts: pd.DataFrame, y_col: str, color: str) -> dict[str, Any] | None:
    """The 95% interval over seeds of each design (none for a design of one seed)."""
    if y_col != "val_ppl" or "val_ppl_ci95_high" not in pts.columns:
        return None
    high = pd.to_numeric(pts["val_ppl_ci95_high"] - pts[y_col], errors="coerce").to_numpy(
        dtype=float, na_value=np.nan
    )
    low = pd.to_numeric(pts[y_col] - pts["val_ppl_ci95_low"], errors="coerce").to_numpy(
        dtype=float, na_value=np.nan
    )
    if np.isnan(high).all():
        return None
    return {
        "type": "data",
        "array": np.nan_to_num(high),
        "arrayminus": np.nan_to_num(np.clip(low, 0, None)),
        "visible": True,
        "thickness": 1.2,
        "width": 3,
        "color": color,
    }


def _hover_text(pts: pd.DataFrame, info: ParetoInfo) -> np.ndarray:
    """``study#n · design``, then for designs of several seeds their interval and P(on front);
    the hover template adds the two axis values (formatted by plotly)."""
    text = pts["key"] + " · " + pts["design"]
    if "n_seeds" in pts.columns and "val_ppl_ci95_low" in pts.columns:
        seeds = pd.to_numeric(pts["n_seeds"], errors="coerce").fillna(1).astype(int)
        interval = (
            "<br>"
            + seeds.astype(str)
            + " seeds, 95% CI ["
            + pts["val_ppl_ci95_low"].map(lambda v: f"{v:.4g}")
            + ", "
            + pts["val_ppl_ci95_high"].map(lambda v: f"{v:.4g}")
            + "]"
        )
        if "p_front" in pts.columns:
            interval = interval + ", P(on front) " + pts["p_front"].map(lambda v: f"{v:.2f}")
        text = text + interval.where(seeds > 1, "<br>1 seed (no interval)")
    return text.to_numpy()


def _hover_template(info: ParetoInfo, head: str = "") -> str:
    return f"{head}%{{hovertext}}<br>ppl %{{y:.4g}} · {info.x.label} %{{x:.4s}}<extra></extra>"


def _labels(values: pd.Series) -> pd.Series:
    """:func:`value_label` of each value, computed once per distinct value."""
    distinct = values.drop_duplicates()
    return values.map(dict(zip(distinct, map(value_label, distinct), strict=True)))


def _short(name: str | None) -> str:
    return (name or "").split(".", 1)[-1]


def front_table(info: ParetoInfo, columns: Sequence[str] = ()) -> pd.DataFrame:
    """The front's designs as a table: key, design, the two axes, the seeds and interval (when
    the study has repeats), then ``columns``."""
    repeats = [c for c in ("n_seeds", "val_ppl_ci95_low", "val_ppl_ci95_high", "p_front") if c in info.fronts]
    cols = [
        "key",
        "design",
        info.y.column,
        *repeats,
        info.x.column,
        *[c for c in columns if c in info.fronts],
    ]
    return info.fronts[list(dict.fromkeys(cols))].reset_index(drop=True)


# Columns of the ``designs`` view carried onto the design's row (its first run).
DESIGN_STATS = (
    "design_hash",
    "n_seeds",
    "val_ppl_seeds",
    "val_ppl_sd",
    "val_ppl_ci95_low",
    "val_ppl_ci95_high",
    "val_ppl_mean",
    "val_loss_mean",
    "first_trial",
)
KEYS = ("study_name", "trial_number")


def has_repeats(trials: pd.DataFrame) -> bool:
    """Whether any design of these trials ran under more than one seed (its other seeds have
    ``replicate`` > 0): only then is :func:`pareto_rows` worth its ``designs`` query."""
    return "replicate" in trials.columns and bool(
        (pd.to_numeric(trials["replicate"], errors="coerce") > 0).any()
    )


def pareto_rows(trials: pd.DataFrame, designs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The rows the Pareto explorer plots: one per design.

    ``designs`` is :meth:`workbench.store.Store.designs` of the same studies. Each design is
    drawn at its first run's row (its parameters, its key) with ``val_ppl`` and ``val_loss``
    replaced by the means over its seeds, and its interval columns added. Runs that are not a
    design's first (its other seeds, reused duplicates) are left out. Without ``designs``, or
    when no design has more than one seed, the trials are returned as they are.
    """
    if designs is None or designs.empty or trials.empty or not (designs["n_seeds"] > 1).any():
        return trials  # one seed per design: a design is its trial
    stats = designs[[c for c in DESIGN_STATS if c in designs.columns]].rename(
        columns={"first_trial": "trial_number"}
    )
    stats = stats.assign(study_name=designs["study_name"].to_numpy())
    rows = trials.drop(columns=[c for c in stats.columns if c in trials.columns and c not in KEYS])
    rows = rows.merge(stats, on=list(KEYS), how="inner")
    return rows.assign(val_ppl=rows["val_ppl_mean"], val_loss=rows["val_loss_mean"])


NEIGHBOUR_METRICS = (
    "val_ppl",
    "val_loss",
    "flops_per_token",
    "params_total",
    "params_active",
    "tokens_per_s",
    "peak_mem_bytes",
    "train_seconds",
)


class FrontNeighbours(NamedTuple):
    """A design on a front and the designs beside it on the same study's front (sorted by x)."""

    key: str
    previous: str | None  # the front's next design towards the better x (cheaper, or faster)
    next: str | None  # the next one towards the worse x
    table: pd.DataFrame  # one row per metric: the picked value, each neighbour's value and change

    @property
    def keys(self) -> list[str]:
        """The neighbourhood in front order (previous, picked, next), for a config diff."""
        return [k for k in (self.previous, self.key, self.next) if k]


def front_neighbours(
    info: ParetoInfo, key: str, metrics: Sequence[str] = NEIGHBOUR_METRICS
) -> FrontNeighbours:
    """The picked front design ``key`` against its neighbours on the front: each metric's value
    and the neighbour's relative change from the picked design (+10% = 10% larger)."""
    from workbench.explore._frames import METRICS

    match = info.fronts[info.fronts["key"] == key]
    if match.empty:
        raise ExploreError(f"{key} is not on a front of the plotted trials")
    front = info.fronts[info.fronts["study_name"] == match["study_name"].iloc[0]].reset_index(drop=True)
    i = int(np.flatnonzero(front["key"].to_numpy() == key)[0])
    previous = str(front["key"].iloc[i - 1]) if i > 0 else None
    after = str(front["key"].iloc[i + 1]) if i + 1 < len(front) else None
    by_key = front.set_index("key")
    shown = [m for m in dict.fromkeys([info.y.column, info.x.column, *metrics]) if m in by_key]
    rows = []
    for metric in shown:
        values = pd.to_numeric(by_key[metric], errors="coerce")
        if values.isna().all():
            continue
        mine = float(values[key])
        axis = METRICS.get(metric) or COMPUTE_AXES.get(metric)
        row: dict[str, object] = {"metric": axis.label if axis else metric, key: mine}
        for label, other in (("previous", previous), ("next", after)):
            if other is None:
                continue
            theirs = float(values[other])
            row[other] = theirs
            row[f"Δ {label}"] = (theirs - mine) / abs(mine) if mine else np.nan
        rows.append(row)
    order = [c for c in (previous, "Δ previous", key, after, "Δ next") if c]
    table = pd.DataFrame(rows).set_index("metric")
    return FrontNeighbours(key, previous, after, table[[c for c in order if c in table]])
