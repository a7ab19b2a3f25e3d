"""Health: trials that did not complete, grouped by reason, and routers that collapsed, per layer."""

import common
import streamlit as st

from workbench import explore

st.title("Study health")
studies = common.cached(common.load_studies)
names = studies["study_name"].tolist()
if not names:
    st.info("This store has no studies yet.")
    st.stop()
chosen = st.multiselect("Studies", names, default=names, key="health_studies")
if not chosen:
    st.info("Choose at least one study.")
    st.stop()
index = common.cached(common.load_trial_index)
trials = index[index["study_name"].isin(chosen)]

st.subheader("Trials that did not complete")
reasons = explore.failure_reasons(trials)
if reasons.empty:
    st.success(f"All {len(trials)} stored trials completed (or are still running).")
else:
    st.caption(
        f"{int(reasons['count'].sum())} of {len(trials)} trials, grouped by status and reason (numbers in "
        "a message, such as sizes, are written # so that the same cause groups together)."
    )
    common.table(
        reasons,
        "health_failures",
        hide_index=True,
        column_config={
            "reason": st.column_config.TextColumn("reason", width="large"),
            "examples": st.column_config.TextColumn("example trials"),
            "example_error": st.column_config.TextColumn("one message in full", width="medium"),
        },
    )

st.subheader("Routing health per layer")
health = common.cached(common.load_routing_health, tuple(chosen))
if health.empty:
    st.info(
        "No routing statistics in these studies: dense layers do not route, and a trial that did not "
        "train records none."
    )
    st.stop()
collapsed = health[health["collapsed"]]
m = st.columns(3)
m[0].metric("routed layers", len(health))
m[1].metric("trials", health[["study_name", "trial_number"]].drop_duplicates().shape[0])
m[2].metric("collapsed layers", len(collapsed))
st.caption(
    f"A layer is flagged as **collapsed** when its load entropy ratio is below {explore.ENTROPY_COLLAPSE} "
    f"(the load over blocks has less than half its maximum entropy, log n_blocks) or more than "
    f"{explore.UNUSED_COLLAPSE:.0%} of its blocks received no token. Dropped tokens are shown, not flagged: "
    "capacity limits drop tokens by design."
)
common.chart(explore.routing_health_figure(health), "health_routing_chart")
shown = explore.with_keys(health).sort_values(["collapsed", "entropy_ratio"], ascending=[False, True])
shown = shown[
    [
        "key",
        "memory_kind",
        "layer",
        "n_blocks",
        "entropy_ratio",
        "unused_frac",
        "dropped_frac",
        "collapsed",
        "why",
    ]
]
common.table(
    shown,
    "health_routing",
    hide_index=True,
    column_config={
        "entropy_ratio": st.column_config.ProgressColumn(
            "balance (entropy ratio)", min_value=0, max_value=1, format="%.3f"
        ),
        "unused_frac": st.column_config.NumberColumn("unused blocks", format="percent"),
        "dropped_frac": st.column_config.NumberColumn("dropped", format="percent"),
        "collapsed": st.column_config.CheckboxColumn("collapsed"),
    },
)
