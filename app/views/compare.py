"""Compare: two or more trials side by side, curves overlaid, parameter differences highlighted."""

import common
import streamlit as st

from workbench import explore

st.title("Compare trials")
index = common.cached(common.load_trial_index)
if index.empty:
    st.info("This store has no trials yet.")
    st.stop()

keyed = explore.with_keys(index)
labels = dict(
    zip(
        keyed["key"],
        keyed["key"] + " · " + keyed["memory_kind"].fillna("—") + " · " + keyed["status"],
        strict=True,
    )
)
done = keyed[keyed["status"] == "complete"].sort_values("val_ppl")
default = [k for k in common.selected() if k in labels]
if len(default) < 2:
    default = list(dict.fromkeys(default + done["key"].head(2).tolist()))
# Every trial when there are few; else the selection, the best 300 and any trial added by key.
options = (
    list(labels) if len(labels) <= 2000 else list(dict.fromkeys(default + done["key"].head(300).tolist()))
)
added = st.text_input("Add a trial by key", placeholder="study#number", key="compare_add").strip()
if added:
    if added in labels:
        options = list(dict.fromkeys([*options, added]))
        default = list(dict.fromkeys([*default, added]))
    else:
        st.warning(f"No trial '{added}' in the store; keys look like quickstart#3.")
keys = st.multiselect("Trials", options, default=default, format_func=labels.get)
if len(keys) < 2:
    st.info("Choose at least two trials (or select points on the Pareto explorer).")
    st.stop()
common.set_selected(keys)

studies = tuple(sorted({explore.parse_trial_key(k)[0] for k in keys}))
trials = common.cached(common.load_trials, studies, None)
short = explore.trial_labels(trials, keys)

st.subheader("Metrics")
metrics = explore.metric_table(trials, keys)
if not metrics.empty:
    common.table(
        metrics.rename(columns=short),
        "compare_metrics_table",
        column_config={c: st.column_config.NumberColumn(format="%.6g") for c in short.values()},
    )

st.subheader("Learning curves")
curves = common.cached(common.load_curves, tuple(keys))
available = sorted(curves["metric"].unique()) if not curves.empty else []
if not available:
    st.info("None of these trials recorded learning curves.")
else:
    c1, c2, c3 = st.columns([4, 2, 1], vertical_alignment="bottom")
    wanted = [m for m in ("val_loss", "train_loss") if m in available] or available[:1]
    shown_metrics = c1.multiselect(
        "Curves",
        available,
        default=wanted,
        key="compare_metrics",
        help="Validation curves are solid, training curves dotted; one colour per trial.",
    )
    x = c2.radio(
        "x axis",
        ["step", "tokens"],
        horizontal=True,
        key="compare_x",
        help="Tokens: the tokens trained by each step (the trial's tokens / steps).",
    )
    log_x = c3.toggle("log x", value=False, key="compare_log_x")
    if not shown_metrics:
        st.info("Choose at least one curve.")
    else:
        data = explore.with_tokens(curves, trials) if x == "tokens" else curves
        common.chart(
            explore.compare_curves_figure(data, short, shown_metrics, x=x, log_x=log_x), "compare_curves"
        )

st.subheader("Parameters")
only = st.toggle("Only parameters that differ", value=True, key="compare_only_diff")
diff = explore.param_differences(trials, keys, only_different=only)
st.caption(f"{int(diff['differs'].sum())} parameters differ; highlighted rows.")
shown = (
    diff.drop(columns=["differs"])
    .rename(columns=short)
    .map(lambda v: "—" if v is None else explore.fmt_value(v))
)
styled = shown.style.apply(
    lambda r: ["background-color: #fff3b0" if diff.loc[r.name, "differs"] else "" for _ in r], axis=1
)
common.table(diff.rename(columns=short), "compare_params", shown=styled)
