"""Parameters: how the sampled parameters relate to an objective (parallel coordinates, slice, contour)."""

import common
import streamlit as st

from workbench import explore

st.title("Parameters")
studies = common.cached(common.load_studies)
names = studies["study_name"].tolist()
if not names:
    st.info("This store has no studies yet.")
    st.stop()

c = st.columns([2, 2, 4])
study = c[0].selectbox("Study", names, key="params_study")
trials = common.cached(common.load_trials, (study,), "complete")
if trials.empty:
    st.info(f"No complete trials in {study} yet; this page fills in as trials complete.")
    st.stop()
objectives = explore.study_objectives(studies, study)
declared = [o.column for o in objectives if o.column in trials]
metrics = [m for m in explore.METRICS if m in trials and trials[m].notna().any() and m not in declared]
by_name = {m: explore.METRICS[m] for m in metrics} | {o.column: o for o in objectives}
objective = by_name[c[1].selectbox("Objective", [*declared, *metrics], key="params_objective")]

sampled = common.cached(common.load_sampled, (study,))
columns = explore.param_columns(trials)
infos = explore.describe_columns(trials, columns, sampled)
varying = [p for p in columns if infos[p].varies]
if not varying:
    st.info(f"No parameter varies over the {len(trials)} complete trials of {study} yet.")
    st.stop()
default = [p for p in varying if infos[p].sampled] or varying[:6]
params = c[2].multiselect(
    "Parameters",
    varying,
    default=default,
    key="params_params",
    help="Sampled parameters that vary over the study's complete trials come first by default.",
)
if not params:
    st.info("Choose at least one parameter.")
    st.stop()

with st.expander("Filter designs (the parallel coordinates show the kept ranges as bands)"):
    filters = common.filter_widgets(params, infos, "params_f_")
kept = explore.apply_filters(trials, filters)
st.caption(
    f"{len(kept)} of {len(trials)} complete trials pass the filters. **n/a**: the trial does not have "
    "the parameter (a conditional parameter, e.g. the experts of a dense layer), never drawn as 0."
)

tabs = st.tabs(["Parallel coordinates", "Slice", "Contour"])
with tabs[0]:
    try:
        fig = explore.parcoords_figure(trials, params, objective, filters)
    except explore.ExploreError as exc:
        st.info(str(exc))
    else:
        common.chart(fig, "params_parcoords")
        st.caption(
            f"One line per trial, coloured by {objective.column} (brighter is better). Drag along an "
            "axis to brush it in the figure; the filters above set the same bands and the table below."
        )
        matching = explore.with_keys(kept)[["key", *params, objective.column]]
        matching = matching.sort_values(objective.column, ascending=objective.direction == "minimize")
        labels = matching.assign(**{p: matching[p].map(explore.value_label) for p in params})
        common.table(matching, "params_matching", shown=labels, hide_index=True, key="params_matching_table")
with tabs[1]:
    one = st.selectbox("Parameter", params, key="params_slice")
    try:
        common.chart(explore.slice_figure(kept, one, objective), "params_slice_chart")
    except explore.ExploreError as exc:
        st.info(str(exc))
with tabs[2]:
    if len(params) < 2:
        st.info("Choose two parameters or more above for a contour.")
    else:
        cx, cy = st.columns(2)
        px = cx.selectbox("x", params, index=0, key="params_contour_x")
        py = cy.selectbox("y", params, index=1, key="params_contour_y")
        try:
            common.chart(explore.contour_figure(kept, px, py, objective), "params_contour_chart")
            st.caption(
                f"Best {objective.column} per cell; a numeric parameter with many values is cut into "
                "bins. White cells: no trial there."
            )
        except explore.ExploreError as exc:
            st.info(str(exc))
