"""Grid analysis: a metric over two parameters as dimensions (heatmap), and faceted lines over a third."""

import common
import streamlit as st

from workbench import explore

st.title("Grid analysis")
studies = common.cached(common.load_studies)
names = studies["study_name"].tolist()
if not names:
    st.info("This store has no studies yet.")
    st.stop()
chosen = st.multiselect("Studies", names, default=names[:1], key="grid_studies")
trials = common.cached(common.load_trials, tuple(chosen), "complete") if chosen else None
if trials is None or trials.empty:
    st.info("No complete trials in the chosen studies yet.")
    st.stop()

params = explore.param_columns(trials)
axes = explore.grid_axes(trials, params)
if not axes:
    st.info("No parameter varies over these trials with few enough values for a grid.")
    st.stop()
metrics = [m for m in explore.METRICS if m in trials and trials[m].notna().any()]
facets = [c for c in [*explore.COMPUTE_AXES, *params] if c in trials and trials[c].nunique() > 1]

c = st.columns(5)
metric = c[0].selectbox("Metric", metrics, key="grid_metric")
reduce = c[1].selectbox("Reduce", ["min", "mean", "median", "max"], key="grid_reduce")
cols = c[2].selectbox(
    "Columns (x)",
    axes,
    index=next((i for i, a in enumerate(axes) if "block" in a or "n_experts" in a), 0),
    key="grid_cols",
)
row_options = [a for a in axes if a != cols]
if not row_options:
    st.info(f"Only '{cols}' varies with few values; a grid needs two parameters.")
    st.stop()
rows = c[3].selectbox(
    "Rows (colour)",
    row_options,
    index=row_options.index("memory.kind") if "memory.kind" in row_options else 0,
    key="grid_rows",
)
facet = c[4].selectbox(
    "At fixed",
    [None, *[f for f in facets if f not in (rows, cols)]],
    key="grid_facet",
    format_func=lambda f: "— (all trials)" if f is None else f,
)

dims = [cols, rows] + ([facet] if facet else [])
try:
    explore.check_grid(trials, dims)
    ds = common.cached(common.load_grid, tuple(chosen), metric, tuple(dims), reduce)
    info = explore.get_grid_info(ds, rows, cols, facet)
except explore.ExploreError as exc:
    st.warning(str(exc))
    st.stop()
if info.cells.empty:
    st.info(f"No trial has {metric}.")
    st.stop()

at = info.facets[0]
if facet:
    at = st.radio(f"Heatmap at {facet}", info.facets, horizontal=True, key="grid_at")
common.chart(explore.heatmap_figure(info, at), "grid_heatmap")
st.caption(f"{reduce} of {metric} per cell, n = trials in the cell; n/a: trials without the parameter.")
st.subheader("Lines" + (f" by {facet}" if facet else ""))
common.chart(explore.lines_figure(info), "grid_lines")
if facet and len(info.facets) > 6:
    st.caption(f"Showing the first 6 of {len(info.facets)} values of {facet}.")
