"""Grid analysis: a metric over two parameters (from :meth:`Store.to_xarray`), optionally at a fixed
value or band of a third, e.g. validation perplexity over block size x selection method at
fixed active FLOPs.

A third dimension with many values (FLOPs, parameter counts) is cut into log-spaced bands, and the
cells of a band are combined exactly: min of mins, max of maxes, and the count-weighted mean of
means. A median cannot be combined from cell medians, so it is refused for banded dimensions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

from workbench.explore._frames import (
    MAX_CATEGORIES,
    MISSING,
    ExploreError,
    fmt_number,
    natural_key,
    value_label,
)
from workbench.explore._pareto import PALETTE

if TYPE_CHECKING:
    import plotly.graph_objects as go
    import xarray as xr

MAX_FACETS = 6
MAX_AXIS_VALUES = 30  # a heatmap axis with more values than this is unreadable
MAX_CELLS = 2_000_000  # to_xarray builds the full product of the dimensions' values


class GridInfo(NamedTuple):
    """A metric on a (row x column) grid per facet; ``cells`` is long form, one row per cell."""

    metric: str
    reduce: str
    rows: str  # dimension drawn as heatmap rows / line colours
    cols: str  # dimension drawn as heatmap columns / line x axis
    facet: str | None
    facets: list[str]  # facet labels in order ([""] without a facet dimension)
    cells: pd.DataFrame  # facet, row, col, value, count (labels as strings)


def grid_axes(trials: pd.DataFrame, columns: list[str]) -> list[str]:
    """The columns that vary over ``trials`` and have few enough values to be a heatmap axis."""
    counts = trials[columns].nunique(dropna=False)
    return [c for c in columns if 1 < counts[c] <= MAX_AXIS_VALUES]


def check_grid(trials: pd.DataFrame, dims: list[str]) -> None:
    """Refuse a grid whose full product of values would not fit (to_xarray is dense)."""
    if len(set(dims)) != len(dims):
        raise ExploreError("choose different parameters for the grid's dimensions")
    cells = int(np.prod([max(1, trials[d].nunique(dropna=False)) for d in dims], dtype=float))
    if cells > MAX_CELLS:
        raise ExploreError(
            f"a grid over {', '.join(dims)} would have {cells:,} cells; choose dimensions with fewer values"
        )


def get_grid_info(
    ds: xr.Dataset, rows: str, cols: str, facet: str | None = None, *, bands: int = 4
) -> GridInfo:
    """Flatten the Dataset of :meth:`Store.to_xarray` (dims ``[cols, rows]`` or ``[cols, rows, facet]``).

    ``ds`` holds ``<metric>`` and ``count`` and its attrs name the metric and the reduction.
    """
    metric, reduce = str(ds.attrs.get("metric", "value")), str(ds.attrs.get("reduce", "min"))
    frame = ds.to_dataframe().reset_index()
    frame = frame[frame["count"] > 0]
    facets = [""]
    if frame.empty:
        cells = pd.DataFrame(columns=["facet", "row", "col", "value", "count"])
        return GridInfo(metric, reduce, rows, cols, facet, facets, cells)
    if facet is None:
        frame = frame.assign(facet="")
    else:
        values = frame[facet]
        if values.nunique(dropna=True) > MAX_CATEGORIES:
            if reduce == "median":
                raise ExploreError(
                    f"'{facet}' has many values, so it is cut into bands, and a median cannot be combined "
                    "across a band's cells: choose min, mean or max, or a dimension with few values"
                )
            labels, order = _bands(values.to_numpy(dtype=float), bands)
            frame = frame.assign(facet=labels)
            facets = order
        else:
            frame = frame.assign(facet=values.map(value_label))
            facets = sorted(frame["facet"].unique(), key=natural_key)
    frame = frame.assign(row=frame[rows].map(value_label), col=frame[cols].map(value_label))
    cells = _combine(frame, metric, reduce)
    return GridInfo(metric, reduce, rows, cols, facet, [f for f in facets if f in set(cells["facet"])], cells)


def _combine(frame: pd.DataFrame, metric: str, reduce: str) -> pd.DataFrame:
    """Merge cells that share (facet, row, col) labels: exact for min, max and mean."""
    keys = ["facet", "row", "col"]
    weighted = frame.assign(_sum=frame[metric] * frame["count"])
    grouped = weighted.groupby(keys, sort=False)
    if reduce == "mean":
        value = grouped["_sum"].sum() / grouped["count"].sum()
    elif reduce in ("min", "max", "median"):  # median only when nothing merges (no bands)
        value = grouped[metric].agg(reduce)
    else:
        raise ExploreError(f"unknown reduction '{reduce}'")
    out = pd.DataFrame({"value": value, "count": grouped["count"].sum()}).reset_index()
    return out


def _bands(values: np.ndarray, n: int) -> tuple[list[str], list[str]]:
    """Log-spaced (linear if any value <= 0) bands; returns a label per value and the label order."""
    finite = values[np.isfinite(values)]
    lo, hi = float(finite.min()), float(finite.max())
    positive = lo > 0
    edges = np.geomspace(lo, hi, n + 1) if positive else np.linspace(lo, hi, n + 1)
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, n - 1)
    names = [f"{fmt_number(edges[i])}–{fmt_number(edges[i + 1])}" for i in range(n)]
    labels = [names[i] if np.isfinite(v) else MISSING for i, v in zip(index, values, strict=True)]
    return labels, names + ([MISSING] if MISSING in labels else [])


def heatmap_figure(info: GridInfo, facet_label: str = "") -> go.Figure:
    """The metric over rows x cols at one facet label (the only one without a facet)."""
    import plotly.graph_objects as go

    part = info.cells[info.cells["facet"] == facet_label]
    z = part.pivot(index="row", columns="col", values="value")
    n = part.pivot(index="row", columns="col", values="count")
    z = z.reindex(index=sorted(z.index, key=natural_key), columns=sorted(z.columns, key=natural_key))
    n = n.reindex(index=z.index, columns=z.columns)
    text = np.vectorize(lambda v, c: "" if np.isnan(v) else f"{v:.4g}<br>n={int(c)}")(
        z.to_numpy(), n.fillna(0).to_numpy()
    )
    fig = go.Figure(
        go.Heatmap(
            z=z.to_numpy(),
            x=list(z.columns),
            y=list(z.index),
            text=text,
            texttemplate="%{text}",
            colorscale="Viridis_r" if info.metric in ("val_ppl", "val_loss") else "Viridis",
            colorbar={"title": f"{info.reduce} {info.metric}"},
            hovertemplate=f"{info.rows}=%{{y}}, {info.cols}=%{{x}}<br>{info.reduce} {info.metric} %{{z:.4g}}<extra></extra>",
        )
    )
    fig.update_layout(
        height=140 + 44 * len(z.index),
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis={"title": info.cols, "type": "category"},
        yaxis={"title": info.rows, "type": "category", "autorange": "reversed"},
    )
    return fig


def lines_figure(info: GridInfo) -> go.Figure:
    """The metric against ``cols``, one line per ``rows`` value, one panel per facet (at most 6)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    facets = info.facets[:MAX_FACETS]
    titles = [f"{info.facet} {f}" if info.facet else "" for f in facets]
    fig = make_subplots(
        rows=1, cols=len(facets), shared_yaxes=True, subplot_titles=titles, horizontal_spacing=0.03
    )
    row_labels = sorted(info.cells["row"].unique(), key=natural_key)
    col_labels = sorted(info.cells["col"].unique(), key=natural_key)
    colors = {r: PALETTE[i % len(PALETTE)] for i, r in enumerate(row_labels)}
    for j, facet in enumerate(facets, start=1):
        part = info.cells[info.cells["facet"] == facet]
        for r in row_labels:
            line = part[part["row"] == r].set_index("col").reindex(col_labels)
            fig.add_trace(
                go.Scatter(
                    x=col_labels,
                    y=line["value"],
                    name=f"{r}",
                    legendgroup=r,
                    showlegend=j == 1,
                    mode="lines+markers",
                    line={"color": colors[r]},
                    connectgaps=True,
                    hovertemplate=f"{info.rows}={r}, {info.cols}=%{{x}}: %{{y:.4g}}<extra></extra>",
                ),
                row=1,
                col=j,
            )
        fig.update_xaxes(
            title_text=info.cols,
            type="category",
            categoryorder="array",
            categoryarray=col_labels,
            row=1,
            col=j,
        )
    fig.update_yaxes(title_text=f"{info.reduce} {info.metric}", row=1, col=1)
    fig.update_layout(
        height=420, margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"title": {"text": info.rows}}
    )
    return fig
