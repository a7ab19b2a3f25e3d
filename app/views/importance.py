"""Importance: which parameters matter for each objective (optuna's importance evaluators)."""

import common
import streamlit as st

from workbench import explore

st.title("Parameter importance")
studies = common.cached(common.load_studies)
names = studies["study_name"].tolist()
if not names:
    st.info("This store has no studies yet.")
    st.stop()

c = st.columns([2, 2, 2])
study = c[0].selectbox("Study", names, key="imp_study")
trials = common.cached(common.load_trials, (study,), "complete")
objectives = explore.study_objectives(studies, study)
extra = [
    m
    for m in explore.METRICS
    if m not in {o.column for o in objectives} and m in trials and trials[m].notna().any()
]
picked = c[1].multiselect(
    "Objectives",
    [o.column for o in objectives] + extra,
    default=[o.column for o in objectives],
    key="imp_objectives",
)
evaluators = [e for e in explore.EVALUATORS if explore.evaluator_available(e)]
evaluator = c[2].selectbox("Evaluator", evaluators, format_func=explore.EVALUATORS.get, key="imp_evaluator")
if len(evaluators) < len(explore.EVALUATORS):
    c[2].caption("fANOVA and MDI appear once scikit-learn is installed.")

kinds = sorted(trials["memory.kind"].dropna().unique()) if "memory.kind" in trials else []
kind = (
    st.radio(
        "Selection method",
        ["all", *kinds],
        horizontal=True,
        key="imp_kind",
        help="Parameters of one method (its experts, blocks) are assessed only within it.",
    )
    if kinds
    else "all"
)
if kind != "all":
    trials = trials[trials["memory.kind"] == kind]

by_name = {o.column: o for o in objectives} | {m: explore.METRICS[m] for m in extra}
sampled = common.cached(common.load_sampled, (study,))
params = [p for p in explore.param_columns(trials) if p in sampled] or explore.param_columns(trials)
try:
    result = explore.param_importances(trials, params, [by_name[p] for p in picked], evaluator=evaluator)
except explore.ExploreError as exc:
    st.info(str(exc))
    st.stop()

st.caption(
    f"{explore.EVALUATORS[evaluator]} over {result.n_trials} complete trials"
    + (f" (a random sample of {result.n_available})" if result.n_trials < result.n_available else "")
    + "; importances sum to 1 per objective."
)
common.chart(explore.importance_figure(result), "imp_chart")
if result.left_out:
    st.caption(
        f"Left out (missing in some trials): {', '.join(result.left_out)}. Pick one selection method above to assess them."
    )
sort_by = (
    st.radio("Sort by", picked, horizontal=True, key="imp_sort", help="Importances are per objective.")
    if len(picked) > 1
    else picked[0]
)
common.table(
    result.table.pivot(index="parameter", columns="objective", values="importance")[picked].sort_values(
        sort_by, ascending=False
    ),
    "importance",
    column_config={
        o: st.column_config.ProgressColumn(o, min_value=0.0, max_value=1.0, format="%.3f") for o in picked
    },
)
