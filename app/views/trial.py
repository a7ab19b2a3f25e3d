"""Trial detail: full config, metrics, learning curves, routing statistics and provenance of one trial."""

import common
import pandas as pd
import streamlit as st

from workbench import explore

st.title("Trial detail")
index = common.cached(common.load_trial_index)
if index.empty:
    st.info("This store has no trials yet.")
    st.stop()

keyed = explore.with_keys(index)
status = dict(zip(keyed["key"], keyed["status"], strict=True))
selection = [k for k in common.selected() if k in status]
wanted = st.query_params.get("trial")
if wanted not in status:
    complete = keyed[keyed["status"] == "complete"].sort_values("val_ppl")
    wanted = selection[0] if selection else (complete if len(complete) else keyed)["key"].iloc[0]
if selection:
    jump = st.pills(
        "Selected trials", selection, default=wanted if wanted in selection else None, key="trial_jump"
    )
    if jump and jump != wanted:
        wanted = jump
study_now, number_now = explore.parse_trial_key(wanted)
names = sorted(keyed["study_name"].unique())
c1, c2 = st.columns([3, 1])
# Widgets without keys: a new default (from the selection or the URL) gives a new widget showing it.
study = c1.selectbox("Study", names, index=names.index(study_now))
numbers = keyed.loc[keyed["study_name"] == study, "trial_number"]
number = c2.number_input(
    "Trial number",
    min_value=int(numbers.min()),
    max_value=int(numbers.max()),
    value=number_now if study == study_now else int(numbers.min()),
    step=1,
)
key = explore.trial_key(study, int(number))
if key not in status:
    st.warning(f"Study {study} has no trial {int(number)}.")
    st.stop()
st.query_params["trial"] = key
detail = common.cached(common.load_trial_detail, key)
row = detail.row

st.subheader(f"{key} · {row.get('memory_kind') or 'no memory kind'} · {row['status']}")
if row["status"] != "complete":
    reason = row.get("error") or "no reason recorded"
    st.error(f"This trial did not complete ({row['status']}): {reason}")

shown = [
    m
    for m in ("val_ppl", "flops_per_token", "params_total", "params_active", "tokens_per_s", "train_seconds")
    if row.get(m) is not None
]
for col, metric in zip(st.columns(max(1, len(shown))), shown, strict=False):
    value = row[metric]
    col.metric(
        explore.METRICS[metric].label, f"{value:.4g}" if metric == "val_ppl" else explore.fmt_number(value)
    )

tabs = st.tabs(["Curves", "Routing", "Config", "Metrics", "Provenance"])
with tabs[0]:
    if detail.curves.empty:
        st.info("No learning curves were recorded for this trial.")
    else:
        common.chart(explore.curves_figure(detail.curves), "trial_curves")
with tabs[1]:
    if detail.routing.empty:
        st.info("No routing statistics: this memory layer does not route (or the trial did not train).")
    else:
        common.table(
            detail.routing.drop(columns=["study_name", "trial_number"]),
            "trial_routing",
            hide_index=True,
            column_config={
                "entropy_ratio": st.column_config.ProgressColumn(
                    "balance (entropy ratio)", min_value=0, max_value=1, format="%.3f"
                ),
                "dropped_frac": st.column_config.NumberColumn("dropped", format="percent"),
                "unused_frac": st.column_config.NumberColumn("unused blocks", format="percent"),
            },
        )
        if not detail.routing_load.empty:
            st.caption("Load per block: the fraction of routed tokens each block received.")
            common.chart(explore.routing_load_figure(detail.routing_load), "trial_load")
with tabs[2]:
    c1, c2 = st.columns(2)
    with c1:
        st.caption("Parameters (★ sampled by the study, the rest fixed by the space or defaults)")
        common.table(
            detail.params,
            "trial_params",
            shown=detail.params.assign(
                value=detail.params["value"].astype(str),
                sampled=detail.params["sampled"].map({True: "★", False: ""}),
            ),
            hide_index=True,
        )
    with c2:
        st.caption(f"Train it again (assumes its space file is `spaces/{row.get('space_name')}.py`):")
        st.code(common.cached(common.load_rerun_command, key), language="bash")
        st.caption("Config as trained")
        st.json(detail.config, expanded=2)
with tabs[3]:
    common.table(
        detail.metrics,
        "trial_metrics",
        hide_index=True,
        column_config={"value": st.column_config.NumberColumn(format="%.6g")},
    )
with tabs[4]:
    if not detail.provenance:
        st.info("No provenance was recorded for this trial.")
    else:
        fields = [
            {"field": k, "value": str(v)}
            for k, v in detail.provenance.items()
            if k not in ("study_name", "trial_number")
        ]
        common.table(pd.DataFrame(fields), "trial_provenance", hide_index=True)
        if detail.packages:
            st.caption("Package versions")
            versions = pd.DataFrame(sorted(detail.packages.items()), columns=["package", "version"])
            common.table(versions, "trial_packages", hide_index=True)
