"""Pareto explorer: validation perplexity against a compute axis, fronts as step lines, filters,
selection, a picked front design against its neighbours, and the front's hypervolume over trials."""

import common
import streamlit as st

from workbench import explore

st.title("Pareto explorer")
studies = common.cached(common.load_studies)
names = studies["study_name"].tolist()
if not names:
    st.info("This store has no studies yet: run `workbench run spaces/quickstart.py` and come back.")
    st.stop()

top = st.columns([3, 2, 2])
chosen = top[0].multiselect("Studies (overlaid)", names, default=names, key="pareto_studies")
if not chosen:
    st.info("Choose at least one study.")
    st.stop()
trials = common.cached(common.load_trials, tuple(chosen), "complete")
if explore.has_repeats(trials):  # one point per design: the mean over its seeds
    trials = explore.pareto_rows(trials, common.cached(common.load_designs, tuple(chosen)))
if trials.empty:
    counts = studies[studies["study_name"].isin(chosen)][["n_stored", "n_failed", "n_infeasible"]].sum()
    st.info(
        f"No complete trials in {', '.join(chosen)} yet ({int(counts['n_stored'])} stored: "
        f"{int(counts['n_failed'])} failed, {int(counts['n_infeasible'])} infeasible). "
        "The Health page lists why trials failed; this page fills in as trials complete."
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
with st.container(horizontal=True, gap="large"):
    log_x = st.toggle("log x", value=True, key="pareto_log_x")
    log_y = st.toggle("log y", value=True, key="pareto_log_y")
    front_only = st.toggle(
        "hide dominated designs",
        value=False,
        key="pareto_front_only",
        help="Show only the designs on a front (the axes keep their range)",
    )

with st.sidebar:
    st.header("Filters")
    metric_cols = [m for m in explore.METRICS if m in trials and trials[m].notna().any()]
    extra_options = [p for p in params if infos[p].varies and p not in design] + metric_cols
    extra = st.multiselect(
        "More filters", extra_options, key="pareto_more_filters", placeholder="any parameter or metric"
    )
    extra_infos = explore.describe_columns(trials, [c for c in extra if c not in infos], ranges=metric_cols)
    filters = common.filter_widgets([*design, *extra], {**extra_infos, **infos}, "pareto_f_")

info = explore.get_pareto_info(
    trials, x, filters=filters, design_params=design, symbol=symbol, log_x=log_x, log_y=log_y
)
n_dominated = int((~info.points["on_front"]).sum()) if len(info.points) else 0
repeats = "n_seeds" in info.points and bool((info.points["n_seeds"] > 1).any())
unit = "designs" if repeats else "complete trials"  # one seed each: a design is a trial
notes = [
    f"**{len(info.points)}** of {info.n_trials} {unit} plotted",
    f"**{len(info.fronts)}** on the front",
]
if repeats:
    shaky = info.fronts[~(info.fronts["p_front"] >= 0.95)]
    notes.append(
        "perplexity is the mean over seeds, bars the 95% interval"
        + (f"; **{len(shaky)}** front designs not significant (P(on front) < 0.95)" if len(shaky) else "")
    )
else:
    notes.append("one seed per design: no intervals (--repeats 3 gives them)")
if front_only and n_dominated:
    notes.append(f"{n_dominated} dominated hidden")
if info.n_filtered_out:
    notes.append(f"{info.n_filtered_out} filtered out")
if info.n_unplottable:
    notes.append(f"{info.n_unplottable} without a plottable {info.x.label}")
st.caption(" · ".join(notes) + " · box or lasso points to open them in Trial detail and Compare")
if info.points.empty:
    if info.n_filtered_out == info.n_trials:
        st.warning("No trial passes the filters: widen them in the sidebar.")
    else:
        st.warning(
            f"No trial has a plottable {info.x.label}"
            + (" (on a log axis values must be positive)" if log_x else "")
            + ": choose another compute axis."
        )
    st.stop()

front_keys = info.fronts["key"].tolist()
if st.session_state.get("pareto_pick") not in front_keys:
    st.session_state["pareto_pick"] = front_keys[0]
event = common.chart(
    explore.pareto_figure(
        info,
        log_x=log_x,
        log_y=log_y,
        show_dominated=not front_only,
        highlight=[st.session_state["pareto_pick"]],
    ),
    "pareto_chart",
    on_select="rerun",
    selection_mode=("box", "lasso", "points"),
)
picked = explore.keys_from_selection(event.selection if event else None)
if picked and picked != st.session_state.get("wb_last_chart_pick"):
    st.session_state["wb_last_chart_pick"] = picked
    common.set_selected(picked)
    if picked[0] in front_keys and picked[0] != st.session_state["pareto_pick"]:
        st.session_state["pareto_pick"] = picked[0]  # a click on a front design picks it
        st.rerun()

left, right = st.columns([3, 2])
with left:
    st.subheader("Front")
    table = explore.front_table(
        info, ["study_name", "trial_number", "params_total", "params_active", "tokens_per_s"]
    )
    rows = common.table(
        table.drop(columns=["study_name", "trial_number"]),
        "pareto_front",
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

st.subheader("A front design and its neighbours")
design_of = dict(zip(info.fronts["key"], info.fronts["design"], strict=True))
key = st.selectbox(
    "Design on the front",
    front_keys,
    key="pareto_pick",
    format_func=lambda k: f"{k} · {design_of[k]}",
    help="Or click a design on the front in the plot. Ringed in red in the plot.",
)
near = explore.front_neighbours(info, key)
if not near.previous and not near.next:
    st.info(
        f"{key} is the only design on its study's front: no neighbour to compare with. Another "
        "compute axis, or a filter, may give a longer front."
    )
else:
    st.caption(f"Neighbours along the front, sorted by {info.x.label}; Δ: the neighbour's change from {key}.")
    common.table(
        near.table,
        "pareto_neighbours",
        column_config={
            **{k: st.column_config.NumberColumn(k, format="%.4g") for k in near.keys},
            **{
                c: st.column_config.NumberColumn(c, format="percent") for c in near.table if c.startswith("Δ")
            },
        },
    )
    diff = explore.param_differences(trials, near.keys, only_different=True).drop(columns=["differs"])
    if diff.empty:
        st.caption("The neighbours share every parameter.")
    else:
        st.caption("Parameters that differ between these designs (— : the design does not have it)")
        shown = diff.map(lambda v: "—" if v is None else explore.fmt_value(v))
        common.table(diff, "pareto_neighbour_config", shown=shown)
space = studies.set_index("study_name")["space_name"].get(explore.parse_trial_key(key)[0])
st.caption(f"Train {key} again (assumes its space file is `spaces/{space}.py`):")
st.code(common.cached(common.load_rerun_command, key), language="bash")

st.subheader("Has the search converged?")
order = st.radio(
    "Hypervolume over",
    ["trial_number", "finished_at"],
    format_func={"trial_number": "trial number", "finished_at": "finish time"}.get,
    horizontal=True,
    key="pareto_hv_order",
)
history = explore.hypervolume_over_trials(info.points, info.x, info.y, order)
common.chart(explore.hypervolume_figure(history, info.x, info.y, order), "pareto_hypervolume")
st.caption(
    "The area the front dominates, between each axis's best value and a reference point at the "
    "worst observed value × 1.1 (× 0.9 for an axis where more is better, as tokens/s), as a fraction "
    "of that box: it flattens once new trials stop improving the front. Computed per study over the "
    "plotted (filtered) trials."
)
