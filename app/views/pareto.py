"""Pareto explorer: validation perplexity against a compute axis, fronts as step lines, filters, selection."""

import common
import streamlit as st

from workbench import explore

st.title("Pareto explorer")
studies = common.cached(common.load_studies)
names = studies["study_name"].tolist()
if not names:
    st.info("This store has no studies yet: run `workbench run spaces/quickstart.py` and come back.")
    st.stop()

top = st.columns([3, 2, 2, 1])
chosen = top[0].multiselect("Studies (overlaid)", names, default=names, key="pareto_studies")
if not chosen:
    st.info("Choose at least one study.")
    st.stop()
trials = common.cached(common.load_trials, tuple(chosen), "complete")
if trials.empty:
    counts = studies[studies["study_name"].isin(chosen)][["n_stored", "n_failed", "n_infeasible"]].sum()
    st.info(
        f"No complete trials in {', '.join(chosen)} yet ({int(counts['n_stored'])} stored: "
        f"{int(counts['n_failed'])} failed, {int(counts['n_infeasible'])} infeasible). "
        "The Studies page lists why trials failed; this page fills in as trials complete."
    )
    st.stop()

sampled = common.cached(common.load_sampled, tuple(chosen))
params = explore.param_columns(trials)
infos = explore.describe_columns(trials, params, sampled)
options = explore.explorer_options(infos)
design = options.design

x = top[1].selectbox(
    "Compute axis",
    list(explore.COMPUTE_AXES),
    format_func=lambda c: explore.COMPUTE_AXES[c].label,
    key="pareto_x",
)
symbol = top[2].selectbox(
    "Shape by",
    [None, *options.shapes],
    index=options.shapes.index(options.default_shape) + 1 if options.default_shape else 0,
    format_func=lambda p: "—" if p is None else p,
    key="pareto_symbol",
)
log_x = top[3].toggle("log x", value=True, key="pareto_log_x")
log_y = top[3].toggle("log y", value=True, key="pareto_log_y")

with st.sidebar:
    st.header("Filters")
    metric_cols = [m for m in explore.METRICS if m in trials and trials[m].notna().any()]
    extra_options = [p for p in params if infos[p].varies and p not in design] + metric_cols
    extra = st.multiselect(
        "More filters", extra_options, key="pareto_more_filters", placeholder="any parameter or metric"
    )
    extra_infos = explore.describe_columns(trials, [c for c in extra if c not in infos], ranges=metric_cols)
    filters = []
    for column in [*design, *extra]:
        info = infos.get(column) or extra_infos[column]
        if info.categorical:
            values = st.multiselect(
                column,
                info.values,
                default=info.values,
                key=f"pareto_f_{column}",
                format_func=explore.fmt_value,
            )
            if len(values) < len(info.values):
                filters.append(explore.Filter(column=column, values=tuple(values)))
        elif info.high > info.low:
            low, high = st.slider(
                column,
                info.low,
                info.high,
                (info.low, info.high),
                step=(info.high - info.low) / 200,
                key=f"pareto_f_{column}",
                format="%.4g",
            )
            if low > info.low or high < info.high:
                filters.append(explore.Filter(column=column, low=low, high=high))

info = explore.get_pareto_info(
    trials, x, filters=filters, design_params=design, symbol=symbol, log_x=log_x, log_y=log_y
)
notes = [
    f"**{len(info.points)}** of {info.n_trials} complete trials plotted",
    f"**{len(info.fronts)}** on the front",
]
if info.n_filtered_out:
    notes.append(f"{info.n_filtered_out} filtered out")
if info.n_unplottable:
    notes.append(f"{info.n_unplottable} without a plottable {info.x.label}")
st.caption(" · ".join(notes) + " · box or lasso points to open them in Trial detail and Compare")
if info.points.empty:
    st.warning("No trial passes the filters: widen them in the sidebar.")
    st.stop()

event = st.plotly_chart(
    explore.pareto_figure(info, log_x=log_x, log_y=log_y),
    key="pareto_chart",
    on_select="rerun",
    selection_mode=("box", "lasso", "points"),
    config={"displaylogo": False},
)
picked = explore.keys_from_selection(event.selection if event else None)
if picked and picked != st.session_state.get("wb_last_chart_pick"):
    st.session_state["wb_last_chart_pick"] = picked
    common.set_selected(picked)

left, right = st.columns([3, 2])
with left:
    st.subheader("Front")
    table = explore.front_table(
        info, ["study_name", "trial_number", "params_total", "params_active", "tokens_per_s"]
    )
    rows = st.dataframe(
        table.drop(columns=["study_name", "trial_number"]),
        hide_index=True,
        on_select="rerun",
        selection_mode="multi-row",
        key="pareto_front_table",
        column_config=common.fmt_columns(table),
    )
    chosen_rows = rows.selection.rows if rows else []
    if chosen_rows:
        row_keys = table["key"].iloc[chosen_rows].tolist()
        if row_keys != st.session_state.get("wb_last_table_pick"):
            st.session_state["wb_last_table_pick"] = row_keys
            common.set_selected(row_keys)
with right:
    selection = common.selected()
    st.subheader(f"Selection ({len(selection)})")
    if selection:
        st.write(", ".join(f"`{k}`" for k in selection[:30]) + (" …" if len(selection) > 30 else ""))
    else:
        st.caption("Select points in the plot (box or lasso) or rows of the front table.")
    b1, b2, b3 = st.columns(3)
    if b1.button("Trial detail", disabled=not selection, key="pareto_open_trial"):
        st.switch_page("views/trial.py", query_params={"trial": selection[0]})
    if b2.button("Compare", disabled=len(selection) < 2, key="pareto_open_compare"):
        st.switch_page("views/compare.py")
    if b3.button("Clear", disabled=not selection, key="pareto_clear"):
        common.set_selected([])
        st.rerun()
