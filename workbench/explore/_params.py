"""Parameters against an objective: parallel coordinates, slice (one parameter) and contour (two).

Shape suffix: N trials. Sampled parameters are often conditional: a dense layer has no
``n_experts``. Such a trial is never drawn as if the parameter were zero: a categorical axis gets
its own ``n/a`` category (last), and a numeric axis puts ``n/a`` on a tick of its own below the
range with a gap, or (slice plot) in a panel of its own.

:func:`encode_param` decides how a parameter becomes an axis; the figure functions only draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd

from workbench.explore._frames import (
    MAX_CATEGORIES,
    MISSING,
    Axis,
    ExploreError,
    Filter,
    fmt_number,
    fmt_value,
    natural_key,
    short_names,
    value_label,
    with_keys,
)
from workbench.explore._pareto import PALETTE

if TYPE_CHECKING:
    import plotly.graph_objects as go

MISSING_GAP = 0.15  # n/a sits this fraction of the numeric range below the lowest value
CONTOUR_BINS = 8  # a numeric parameter with many values is cut into this many bins for a contour


class ParamAxis(NamedTuple):
    """A parameter as a numeric axis: a position per trial, and the ticks that name positions."""

    name: str
    categorical: bool
    log: bool  # positions are log10 of the values
    positions: npt.NDArray[np.float64]  # per trial; a trial without the parameter sits at ``missing_at``
    tickvals: list[float]
    ticktext: list[str]
    missing_at: float | None  # position of n/a (None: every trial has the parameter)
    labels: list[str]  # categorical: the category of each position 0..k-1 (n/a last)

    @property
    def n_missing(self) -> int:
        return 0 if self.missing_at is None else int(np.sum(self.positions == self.missing_at))


def encode_param(values: pd.Series, name: str | None = None) -> ParamAxis:
    """Categorical (text, booleans, or at most :data:`MAX_CATEGORIES` numbers): positions 0..k-1 in
    natural order with ``n/a`` last. Numeric: the values (log10 when positive and spanning >= 30x),
    with ``n/a`` on its own tick below the range."""
    name = name or str(values.name)
    present = values.dropna()
    numeric = pd.api.types.is_numeric_dtype(present) and not pd.api.types.is_bool_dtype(present)
    missing = values.isna().to_numpy()
    if not numeric or present.nunique() <= MAX_CATEGORIES:
        labels = _category_labels(values)
        order = sorted(set(labels), key=natural_key)
        index = {label: float(i) for i, label in enumerate(order)}
        positions = np.array([index[label] for label in labels], dtype=float)
        missing_at = index.get(MISSING)
        return ParamAxis(name, True, False, positions, list(index.values()), order, missing_at, order)
    raw = present.to_numpy(dtype=float)
    low, high = float(raw.min()), float(raw.max())
    log = low > 0 and high / low >= 30
    to_pos = np.log10 if log else (lambda v: v)
    lo, hi = float(to_pos(low)), float(to_pos(high))
    ticks = _nice_ticks(lo, hi, log)
    positions = np.full(len(values), np.nan)
    positions[~missing] = to_pos(raw)
    missing_at = None
    texts = [_tick_text(10**t if log else t) for t in ticks]
    if missing.any():
        missing_at = lo - MISSING_GAP * ((hi - lo) or 1.0)
        positions[missing] = missing_at
        ticks, texts = [missing_at, *ticks], [MISSING, *texts]
    return ParamAxis(name, False, log, positions, ticks, texts, missing_at, [])


def _category_labels(values: pd.Series) -> list[str]:
    distinct = values.drop_duplicates()
    labels = dict(zip(distinct.astype(object), map(value_label, distinct), strict=True))
    return [labels[v] if not pd.isna(v) else MISSING for v in values.astype(object)]


def _tick_text(value: float) -> str:
    """Short tick labels: 12.3k for large values, two significant digits otherwise."""
    return fmt_number(value) if abs(value) >= 1000 else f"{value:.2g}"


def _nice_ticks(lo: float, hi: float, log: bool) -> list[float]:
    """About five ticks over [lo, hi]: whole decades on a log axis when there are three or more."""
    if log:
        decades = [float(d) for d in range(int(np.ceil(lo)), int(np.floor(hi)) + 1)]
        if len(decades) >= 3:
            return decades
    return [float(v) for v in np.linspace(lo, hi, 5)] if hi > lo else [lo]


def objective_values(trials: pd.DataFrame, objective: Axis) -> npt.NDArray[np.float64]:
    values = pd.to_numeric(trials[objective.column], errors="coerce")
    return values.to_numpy(dtype=float, na_value=np.nan)


def _with_objective(trials: pd.DataFrame, objective: Axis) -> pd.DataFrame:
    if objective.column not in trials:
        raise ExploreError(f"no objective column '{objective.column}' in these trials")
    kept = trials[np.isfinite(objective_values(trials, objective))]
    if kept.empty:
        raise ExploreError(f"no complete trial has {objective.column}")
    return kept


# --- parallel coordinates ----------------------------------------------------------------------------


def constraint_range(axis: ParamAxis, f: Filter) -> list[list[float]] | list[float] | None:
    """A filter as a parcoords ``constraintrange`` on ``axis`` (None when it keeps everything):
    one band per kept category (n/a included), or the numeric range (in axis units)."""
    if f.values is not None:
        kept = {value_label(v) if not (isinstance(v, str) and v == MISSING) else MISSING for v in f.values}
        if axis.categorical:
            bands = [[i - 0.4, i + 0.4] for i, label in enumerate(axis.labels) if label in kept]
            return bands if len(bands) < len(axis.labels) else None
        return None
    to_pos = np.log10 if axis.log else (lambda v: v)
    low = float(to_pos(f.low)) if f.low is not None and (not axis.log or f.low > 0) else None
    high = float(to_pos(f.high)) if f.high is not None and (not axis.log or f.high > 0) else None
    present = axis.positions if axis.missing_at is None else axis.positions[axis.positions != axis.missing_at]
    low = low if low is not None else float(np.min(present))
    high = high if high is not None else float(np.max(present))
    if axis.missing_at is not None:  # a numeric range keeps trials without the parameter
        return [[axis.missing_at - 0.01, axis.missing_at + 0.01], [low, high]]
    return [low, high]


def parcoords_figure(
    trials: pd.DataFrame,
    params: Sequence[str],
    objective: Axis,
    filters: Sequence[Filter] = (),
    height: int = 460,
) -> go.Figure:
    """One line per trial through its parameter values, coloured by ``objective`` (the last axis).

    Categorical axes carry their categories as tick labels; ``filters`` show as constraint ranges
    (the same bands a brush on the axis would draw).
    """
    import plotly.graph_objects as go

    trials = _with_objective(trials, objective)
    if not params:
        raise ExploreError("choose at least one parameter")
    names = short_names(list(params))
    by_column = {f.column: f for f in filters}
    dimensions = []
    for param in params:
        axis = encode_param(trials[param], param)
        dim: dict[str, object] = {
            "label": names[param] + (" (log)" if axis.log else ""),
            "values": axis.positions,
            "tickvals": axis.tickvals,
            "ticktext": axis.ticktext,
        }
        if axis.categorical:
            dim["range"] = [-0.5, max(0.5, len(axis.labels) - 0.5)]
        if param in by_column:
            constraint = constraint_range(axis, by_column[param])
            if constraint is not None:
                dim["constraintrange"] = constraint
        dimensions.append(dim)
    values = objective_values(trials, objective)
    dimensions.append({"label": objective.column, "values": values})
    fig = go.Figure(
        go.Parcoords(
            dimensions=dimensions,
            line={
                "color": values,
                "colorscale": "Viridis_r" if objective.direction == "minimize" else "Viridis",
                "showscale": False,  # the last axis is the objective: it is the colour's scale
            },
            labelangle=0,
            labelside="top",
            unselected={"line": {"color": "#d0d0d0", "opacity": 0.35}},
        )
    )
    fig.update_layout(height=height, margin={"l": 60, "r": 40, "t": 70, "b": 30})
    return fig


# --- slice -------------------------------------------------------------------------------------------


def slice_figure(trials: pd.DataFrame, param: str, objective: Axis, color: str = "memory.kind") -> go.Figure:
    """``objective`` against one parameter, one point per trial (coloured by ``color`` when present).

    A categorical parameter is a category axis (n/a a category of its own, last); a numeric one a
    numeric axis, with the trials that lack it in a narrow ``n/a`` panel on the right.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    trials = with_keys(_with_objective(trials, objective))
    axis = encode_param(trials[param], param)
    y = objective_values(trials, objective)
    colors = _category_labels(trials[color]) if color in trials and color != param else ["all"] * len(trials)
    palette = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(sorted(set(colors), key=natural_key))}
    split = not axis.categorical and axis.missing_at is not None
    fig = make_subplots(
        rows=1, cols=2 if split else 1, shared_yaxes=True, column_widths=[0.88, 0.12] if split else None
    )
    jitter = np.random.default_rng(0).uniform(-0.18, 0.18, len(trials))
    missing = axis.positions == axis.missing_at if axis.missing_at is not None else np.zeros(len(y), bool)
    for c in palette:
        mine = np.array([v == c for v in colors])
        for panel, rows in ((1, mine & ~missing), (2, mine & missing)) if split else ((1, mine),):
            if not rows.any():
                continue
            if axis.categorical:
                x = axis.positions[rows] + jitter[rows]
            elif panel == 2:
                x = jitter[rows]
            else:
                x = 10 ** axis.positions[rows] if axis.log else axis.positions[rows]
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=y[rows],
                    mode="markers",
                    name=c,
                    legendgroup=c,
                    showlegend=panel == 1 and len(palette) > 1,
                    marker={"color": palette[c], "size": 8, "opacity": 0.75},
                    customdata=trials["key"].to_numpy()[rows],
                    hovertemplate="%{customdata}<br>" + objective.column + " %{y:.4g}<extra></extra>",
                ),
                row=1,
                col=panel,
            )
    if axis.categorical:
        fig.update_xaxes(tickvals=axis.tickvals, ticktext=axis.ticktext, row=1, col=1)
    else:
        fig.update_xaxes(type="log" if axis.log else "linear", row=1, col=1)
    if split:
        fig.update_xaxes(tickvals=[0], ticktext=[MISSING], range=[-0.5, 0.5], showgrid=False, row=1, col=2)
    fig.update_xaxes(title_text=param, row=1, col=1)
    fig.update_yaxes(title_text=objective.label, row=1, col=1)
    fig.update_layout(
        height=380,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"title": {"text": color if len(palette) > 1 else ""}},
    )
    return fig


# --- contour -----------------------------------------------------------------------------------------


def _contour_axis(values: pd.Series, name: str) -> ParamAxis:
    """Categories as they are; a numeric parameter with many values cut into bins (n/a a bin)."""
    axis = encode_param(values, name)
    if axis.categorical:
        return axis
    present = axis.positions if axis.missing_at is None else axis.positions[axis.positions != axis.missing_at]
    edges = np.linspace(float(np.min(present)), float(np.max(present)), CONTOUR_BINS + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    labels = [fmt_value(10**c if axis.log else c) for c in centres]
    index = np.clip(np.searchsorted(edges, axis.positions, side="right") - 1, 0, CONTOUR_BINS - 1).astype(
        float
    )
    if axis.missing_at is not None:
        index[axis.positions == axis.missing_at] = CONTOUR_BINS
        labels.append(MISSING)
    ticks = [float(i) for i in range(len(labels))]
    return ParamAxis(
        name,
        True,
        axis.log,
        index,
        ticks,
        labels,
        CONTOUR_BINS if axis.missing_at is not None else None,
        labels,
    )


def contour_figure(trials: pd.DataFrame, x: str, y: str, objective: Axis) -> go.Figure:
    """The best ``objective`` over two parameters: a filled contour over their categories (or bins),
    the trials as points on top. n/a is a category of its own on either axis."""
    import plotly.graph_objects as go

    if x == y:
        raise ExploreError("choose two different parameters for the contour")
    trials = with_keys(_with_objective(trials, objective))
    ax, ay = _contour_axis(trials[x], x), _contour_axis(trials[y], y)
    if len(ax.labels) < 2 or len(ay.labels) < 2:
        raise ExploreError(f"a contour needs two values or more of both {x} and {y} in these trials")
    values = objective_values(trials, objective)
    cells = pd.DataFrame({"x": ax.positions, "y": ay.positions, "v": values})
    grouped = cells.groupby(["y", "x"])["v"]
    best = grouped.min() if objective.direction == "minimize" else grouped.max()
    z = best.unstack("x").reindex(index=ay.tickvals, columns=ax.tickvals)
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, (2, len(trials)))
    fig = go.Figure(
        [
            go.Contour(
                z=z.to_numpy(),
                x=ax.tickvals,
                y=ay.tickvals,
                colorscale="Viridis_r" if objective.direction == "minimize" else "Viridis",
                connectgaps=False,
                line={"smoothing": 0.8, "width": 0.5},
                colorbar={"title": {"text": f"best {objective.column}"}},
                hovertemplate=f"{x}=%{{x}}, {y}=%{{y}}<br>best {objective.column} %{{z:.4g}}<extra></extra>",
            ),
            go.Scatter(
                x=ax.positions + jitter[0],
                y=ay.positions + jitter[1],
                mode="markers",
                marker={"color": "white", "size": 6, "line": {"color": "#333", "width": 1}},
                customdata=trials["key"],
                hovertemplate="%{customdata}<br>" + objective.column + " %{text}<extra></extra>",
                text=[f"{v:.4g}" for v in values],
                showlegend=False,
            ),
        ]
    )
    fig.update_layout(
        height=440,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis={"title": x, "tickvals": ax.tickvals, "ticktext": ax.ticktext},
        yaxis={"title": y, "tickvals": ay.tickvals, "ticktext": ay.ticktext},
    )
    return fig
