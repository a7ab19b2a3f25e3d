"""Studies: every study in the store with its space, trial counts by status, best perplexity, last update."""

import common
import streamlit as st

from workbench import explore

st.title("Studies")
studies = common.cached(common.load_studies)
trials = common.cached(common.load_trial_index)
if studies.empty:
    st.info(
        "This store has no studies yet. Run one with `workbench run spaces/quickstart.py --store "
        f"{common.store_path()}`; it will appear here while it runs."
    )
    st.stop()

overview = explore.studies_overview(studies, trials)
total = overview[["n_trials", "n_complete", "n_failed"]].sum()
c1, c2, c3, c4 = st.columns(4)
c1.metric("studies", len(overview))
c2.metric("trials", int(total["n_trials"]))
c3.metric("complete", int(total["n_complete"]))
c4.metric("failed", int(total["n_failed"]))
common.table(
    overview,
    "studies",
    hide_index=True,
    column_config={
        "study_name": "study",
        "space_name": "space",
        "n_trials": st.column_config.NumberColumn("trials"),
        "n_complete": st.column_config.NumberColumn("complete"),
        "n_failed": st.column_config.NumberColumn("failed"),
        "n_infeasible": st.column_config.NumberColumn("infeasible"),
        "n_pruned": st.column_config.NumberColumn("pruned"),
        "n_running": st.column_config.NumberColumn("running"),
        "best_val_ppl": st.column_config.NumberColumn("best val ppl", format="%.3f"),
        "best_trial": st.column_config.NumberColumn("best trial"),
        "last_update": st.column_config.DatetimeColumn("last update", format="YYYY-MM-DD HH:mm:ss"),
    },
)

if overview["study_name"].str.startswith("replicate-").any():
    st.subheader("Replication: the papers' claims")
    st.caption(
        "Each claim of docs/REPLICATION.md on this store's replicate-* studies: means over seeds with 95% "
        "intervals, Welch intervals on the gaps, and a verdict (python -m bench.replication writes the same table)."
    )
    common.table(
        common.cached(common.load_claims),
        "replication_claims",
        hide_index=True,
        column_config={"statement": st.column_config.TextColumn("claim", width="large")},
    )

st.subheader("Search spaces")
for row in studies.itertuples():
    params = explore.space_params(row.space_json)
    with st.expander(f"{row.study_name} — space '{row.space_name}', {len(params)} parameters"):
        st.caption(
            "objectives: "
            + ", ".join(
                f"{o.direction} {o.column}" for o in explore.study_objectives(studies, row.study_name)
            )
        )
        st.json(params, expanded=1)

failed = explore.failed_trials(trials)
if not failed.empty:
    st.subheader(f"Trials that did not complete ({len(failed)})")
    st.caption("The Health page groups them by reason.")
    common.table(
        failed,
        "studies_failed",
        hide_index=True,
        column_config={"error": st.column_config.TextColumn("reason", width="large")},
    )
