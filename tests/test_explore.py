"""workbench.explore: the analyses behind the app, on a real tiny study and on synthetic stores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers_app import session_store, synthetic_trials, write_synthetic_store

from workbench import explore
from workbench.explore import MISSING, ExploreError, Filter
from workbench.pareto import non_dominated_mask
from workbench.store import Store


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return Store.open(session_store("real", tmp_path_factory), read_only=True)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return Store.open(session_store("synthetic", tmp_path_factory), read_only=True)


# --- keys, filters, labels ---------------------------------------------------------------------------


def test_trial_keys_round_trip_and_come_from_a_plotly_selection() -> None:
    assert explore.parse_trial_key(explore.trial_key("my#study", 12)) == ("my#study", 12)
    with pytest.raises(ExploreError, match="STUDY#NUMBER"):
        explore.parse_trial_key("nope")
    selection = {
        "points": [{"customdata": ["a#1"]}, {"customdata": ["b#2"]}, {"customdata": ["a#1"]}, {"x": 1}]
    }
    assert explore.keys_from_selection(selection) == ["a#1", "b#2"]
    assert explore.keys_from_selection(None) == []


def test_filters_keep_missing_values_only_when_asked() -> None:
    df = pd.DataFrame({"kind": ["dense", "switch", "pkm"], "k": [np.nan, 2.0, 8.0], "lr": [1e-3, 3e-3, 1e-2]})
    kinds = Filter(column="kind", values=("switch", "pkm"))
    assert explore.apply_filters(df, [kinds])["kind"].tolist() == ["switch", "pkm"]
    assert explore.apply_filters(df, [Filter(column="k", values=(2.0,))])["kind"].tolist() == ["switch"]
    assert explore.apply_filters(df, [Filter(column="k", values=(2.0, MISSING))])["kind"].tolist() == [
        "dense",
        "switch",
    ]
    # A range does not drop trials that lack the parameter (a dense layer has no k).
    assert explore.apply_filters(df, [Filter(column="k", low=1, high=4)])["kind"].tolist() == [
        "dense",
        "switch",
    ]
    assert explore.apply_filters(df, [Filter(column="lr", high=5e-3), kinds])["kind"].tolist() == ["switch"]
    with pytest.raises(ExploreError, match="cannot filter on 'nope'"):
        explore.apply_filters(df, [Filter(column="nope", low=0)])


def test_describe_columns_decides_widgets() -> None:
    df = pd.DataFrame(
        {"kind": ["a", "b", None], "d": [64, 128, 64], "lr": np.linspace(1e-3, 1e-2, 3), "c": [1, 1, 1]}
    )
    df = pd.concat([df] * 10, ignore_index=True).assign(lr=np.linspace(1e-3, 1e-2, 30))
    info = explore.describe_columns(df, ["kind", "d", "lr", "c"], sampled=["kind"])
    assert info["kind"].categorical and info["kind"].values == ["a", "b", MISSING] and info["kind"].sampled
    assert info["d"].categorical and info["d"].values == [64, 128]
    assert not info["lr"].categorical and info["lr"].low == pytest.approx(1e-3) and info["lr"].varies
    assert not info["c"].varies


def test_explorer_options_follow_the_sampled_parameters() -> None:
    trials = synthetic_trials(50, "s")
    infos = explore.describe_columns(
        trials,
        ["memory.kind", "model.d_model", "train.lr", "memory.k"],
        ["memory.kind", "model.d_model", "train.lr"],
    )
    options = explore.explorer_options(infos)
    assert options.design == ["memory.kind", "model.d_model", "train.lr"]
    assert options.shapes == ["model.d_model", "memory.k"] and options.default_shape == "model.d_model"


def test_design_lines_put_the_kind_first_and_skip_missing_parameters() -> None:
    df = pd.DataFrame(
        {"model.d_model": [64, 128], "memory.kind": ["switch", "dense"], "memory.n_experts": [8.0, np.nan]}
    )
    lines = explore.design_lines(df, ["model.d_model", "memory.kind", "memory.n_experts"])
    assert lines.tolist() == ["switch · d_model=64 · n_experts=8", "dense · d_model=128"]


# --- Pareto info and figure --------------------------------------------------------------------------


def test_pareto_info_per_study_fronts_filters_and_log_axes() -> None:
    a, b = synthetic_trials(300, "a", seed=1), synthetic_trials(200, "b", seed=2)
    trials = pd.concat([a, b], ignore_index=True)
    trials.loc[0, "flops_per_token"] = 0  # not drawable on a log axis
    info = explore.get_pareto_info(trials, "flops_per_token", design_params=["memory.kind", "model.d_model"])
    assert (info.n_trials, info.n_unplottable, len(info.points)) == (500, 1, 499)
    for study, front in info.fronts.groupby("study_name"):
        part = info.points[info.points["study_name"] == study]
        expected = non_dominated_mask(part, [("flops_per_token", "minimize"), ("val_ppl", "minimize")])
        assert set(front["key"]) == set(part.loc[expected, "key"])
        assert front["flops_per_token"].is_monotonic_increasing and front["val_ppl"].is_monotonic_decreasing
    assert info.points["design"].str.match(r"^(dense|switch|pkm|avgk|hash) · d_model=\d+$").all()

    only_dense = explore.get_pareto_info(
        trials, "flops_per_token", filters=[Filter(column="memory.kind", values=("dense",))]
    )
    assert set(only_dense.points["memory.kind"]) == {"dense"}
    assert only_dense.n_filtered_out == (trials["memory.kind"] != "dense").sum()

    fast = explore.get_pareto_info(trials, "tokens_per_s", log_x=False)
    assert fast.x.direction == "maximize" and fast.n_unplottable == 0
    assert fast.fronts.groupby("study_name")["tokens_per_s"].apply(lambda s: s.is_monotonic_decreasing).all()


def test_pareto_figure_draws_points_fronts_and_switches_to_webgl() -> None:
    small = explore.get_pareto_info(synthetic_trials(200, "s"), symbol="model.d_model")
    fig = small.points.pipe(lambda _: explore.pareto_figure(small))
    kinds = {t.type for t in fig.data}
    assert kinds == {"scatter"}
    points = [t for t in fig.data if t.customdata is not None and not t.name.startswith("front")]
    assert sum(len(t.x) for t in points) == len(small.points)
    assert {t.marker.symbol for t in points} >= {"circle", "square", "diamond"}  # three d_model values
    fronts = [t for t in fig.data if t.name.startswith("front") and t.mode == "lines"]
    assert len(fronts) == 1 and fronts[0].line.shape == "hv"
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"

    big = explore.get_pareto_info(synthetic_trials(explore.WEBGL_MIN_POINTS, "b"))
    traces = explore.pareto_figure(big).data
    assert {t.type for t in traces if t.customdata is not None and not t.name.startswith("front")} == {
        "scattergl"
    }
    legend = [t.name for t in traces if t.showlegend is not False]
    assert legend == ["avgk", "dense", "hash", "pkm", "switch", "front · b"]  # one entry per colour


def test_pareto_sorts_labels_as_the_grid_does_with_missing_last() -> None:
    from workbench.explore._frames import natural_key

    labels = ["switch", MISSING, "10", "2", "dense", "0.5"]
    assert sorted(labels, key=natural_key) == ["0.5", "2", "10", "dense", "switch", MISSING]
    trials = synthetic_trials(200, "s")
    dense = trials["memory.kind"] == "dense"
    trials["memory.router"] = np.where(dense, None, np.where(trials["trial_number"] % 2, "learned", "topk"))
    info = explore.get_pareto_info(trials, symbol="memory.router")
    assert list(info.symbols) == ["learned", "topk", MISSING]  # "n/a" sorted as text came between them


def test_front_steps_run_on_to_the_costliest_design() -> None:
    trials = pd.DataFrame(
        {
            "study_name": "s",
            "trial_number": [0, 1, 2],
            "memory.kind": "dense",
            "flops_per_token": [1.0, 2.0, 4.0],
            "val_ppl": [10.0, 8.0, 9.0],
        }
    )
    info = explore.get_pareto_info(trials)
    xs, ys = explore.front_steps(info.fronts, info, info.points["flops_per_token"])
    assert (xs, ys) == ([1.0, 2.0, 4.0], [10.0, 8.0, 8.0])


# --- studies, trials, comparison ---------------------------------------------------------------------


def test_studies_overview_of_a_real_study(real: Store) -> None:
    overview = explore.studies_overview(real.studies(), real.trials(with_params=False))
    row = overview.iloc[0]
    assert (row["study_name"], row["n_trials"], row["n_complete"]) == ("tiny", 6, 6)
    best = real.sql("SELECT trial_number, val_ppl FROM trials ORDER BY val_ppl LIMIT 1").iloc[0]
    assert row["best_val_ppl"] == pytest.approx(best["val_ppl"]) and row["best_trial"] == best["trial_number"]
    assert [o.column for o in explore.study_objectives(real.studies(), "tiny")] == [
        "val_ppl",
        "flops_per_token",
    ]
    assert explore.studies_overview(real.studies().iloc[:0], real.trials(with_params=False)).empty


def test_trial_detail_of_a_real_switch_trial(real: Store) -> None:
    number = int(
        real.sql("SELECT min(trial_number) AS n FROM trials WHERE memory_kind = 'switch'")["n"].iloc[0]
    )
    detail = explore.load_trial_detail(real, explore.trial_key("tiny", number))
    assert detail.row["status"] == "complete" and detail.config["memory"]["kind"] == "switch"
    params = detail.params.set_index("name")
    assert params.loc["memory.kind", "sampled"] and not params.loc["model.d_model", "sampled"]
    assert {"train_loss", "val_loss", "lr"} <= set(detail.curves["metric"])
    assert len(detail.routing) == 1 and 0 < detail.routing["entropy_ratio"].iloc[0] <= 1
    assert detail.routing_load["load"].sum() == pytest.approx(1.0, abs=1e-6)
    assert detail.provenance["device"] == "cpu" and "torch" in detail.packages
    assert detail.metrics.set_index("metric").loc["val_ppl", "value"] == pytest.approx(detail.row["val_ppl"])
    assert explore.curves_figure(detail.curves).data and explore.routing_load_figure(detail.routing_load).data
    with pytest.raises(ExploreError, match="no trial tiny#99"):
        explore.load_trial_detail(real, "tiny#99")


def test_param_differences_and_metric_table(real: Store) -> None:
    trials = real.trials("tiny")
    keys = ["tiny#0", "tiny#5"]
    diff = explore.param_differences(trials, keys)
    assert list(diff.columns) == ["differs", *keys]
    assert not diff.loc["model.d_model", "differs"] and diff.loc["memory.kind", "differs"]
    only = explore.param_differences(trials, keys, only_different=True)
    assert only["differs"].all() and "memory.kind" in only.index and "model.d_model" not in only.index
    metrics = explore.metric_table(trials, keys)
    assert metrics.loc["validation perplexity", "best"] in keys
    curves = explore.curves_of(real, keys)
    fig = explore.compare_curves_figure(curves, explore.trial_labels(trials, keys), "val_loss")
    assert len(fig.data) == 2


# --- grid ----------------------------------------------------------------------------------------------


def test_grid_from_the_store_xarray_view(synth: Store) -> None:
    ds = synth.to_xarray("synth-a", "val_ppl", ["memory.block_size", "memory.kind"], "min")
    info = explore.get_grid_info(ds, rows="memory.kind", cols="memory.block_size")
    trials = synth.trials("synth-a", "complete")
    expected = trials.groupby(["memory.kind", trials["memory.block_size"].fillna(-1)])["val_ppl"].min()
    cells = info.cells.set_index(["row", "col"])["value"]
    assert cells[("switch", "16")] == pytest.approx(expected[("switch", 16.0)])
    assert cells[("dense", MISSING)] == pytest.approx(expected[("dense", -1.0)])  # dense has no block size
    assert explore.heatmap_figure(info).data[0].type == "heatmap"
    assert len(explore.lines_figure(info).data) == trials["memory.kind"].nunique()


def test_grid_bands_combine_cells_exactly(synth: Store) -> None:
    dims = ["memory.block_size", "memory.kind", "flops_per_token"]
    ds = synth.to_xarray("synth-a", "val_ppl", dims, "mean")
    info = explore.get_grid_info(
        ds, rows="memory.kind", cols="memory.block_size", facet="flops_per_token", bands=3
    )
    assert len(info.facets) == 3 and info.facet == "flops_per_token"
    # A band's mean is the mean over its trials, not the mean of its cells' means.
    trials = synth.trials("synth-a", "complete")
    edges = np.geomspace(trials["flops_per_token"].min(), trials["flops_per_token"].max(), 4)
    band = np.clip(np.searchsorted(edges, trials["flops_per_token"], side="right") - 1, 0, 2)
    part = trials[(band == 0) & (trials["memory.kind"] == "pkm") & (trials["memory.block_size"] == 4)]
    cell = info.cells[
        (info.cells["facet"] == info.facets[0]) & (info.cells["row"] == "pkm") & (info.cells["col"] == "4")
    ]
    assert cell["value"].iloc[0] == pytest.approx(part["val_ppl"].mean()) and cell["count"].iloc[0] == len(
        part
    )
    assert len(explore.lines_figure(info).layout.annotations) == 3  # one panel title per band
    median = synth.to_xarray("synth-a", "val_ppl", dims, "median")
    with pytest.raises(ExploreError, match="median cannot be combined"):
        explore.get_grid_info(median, rows="memory.kind", cols="memory.block_size", facet="flops_per_token")


def test_grid_guards(synth: Store) -> None:
    trials = synth.trials("synth-a", "complete")
    axes = explore.grid_axes(trials, explore.param_columns(trials))
    assert "memory.kind" in axes and "train.lr" not in axes and "data.corpus" not in axes
    with pytest.raises(ExploreError, match="different parameters"):
        explore.check_grid(trials, ["memory.kind", "memory.kind"])
    with pytest.raises(ExploreError, match="cells"):
        explore.check_grid(
            pd.concat([trials] * 30, ignore_index=True).assign(a=range(12000), b=range(12000)), ["a", "b"]
        )


# --- importance ----------------------------------------------------------------------------------------


def test_importance_finds_what_drives_each_objective(synth: Store) -> None:
    trials = synth.trials("synth-a", "complete")
    params = ["memory.kind", "model.d_model", "model.n_layers", "train.lr", "memory.block_size"]
    objectives = [explore.METRICS["val_ppl"], explore.METRICS["flops_per_token"]]
    result = explore.param_importances(trials, params, objectives)
    assert result.n_trials == 400 and result.left_out == ["memory.block_size"]  # dense trials lack it
    table = result.table.pivot(index="parameter", columns="objective", values="importance")
    assert table.sum().to_numpy() == pytest.approx([1.0, 1.0])
    # FLOPs grow with width and depth, and do not depend on the learning rate at all.
    assert (
        table.loc["train.lr", "flops_per_token"]
        < table.loc[["model.d_model", "model.n_layers"], "flops_per_token"].min()
    )
    assert len(explore.importance_figure(result).data) == 2

    within = explore.param_importances(trials[trials["memory.kind"] == "pkm"], params, objectives[:1])
    assert "memory.block_size" in within.params and within.left_out == []


def test_importance_explains_too_few_trials(real: Store) -> None:
    trials = real.trials("tiny", "complete")
    with pytest.raises(ExploreError, match=r"at least 10 complete trials .* has 6"):
        explore.param_importances(trials, ["memory.kind", "train.lr"], [explore.METRICS["val_ppl"]])
    constant = pd.DataFrame({"status": "complete", "a": [1] * 20, "val_ppl": np.arange(20.0)})
    with pytest.raises(ExploreError, match="no parameter varies"):
        explore.param_importances(constant, ["a"], [explore.METRICS["val_ppl"]])
    with pytest.raises(ExploreError, match="unknown importance evaluator"):
        explore.param_importances(
            synthetic_trials(30, "x").assign(status="complete"),
            ["train.lr"],
            [explore.PERPLEXITY],
            evaluator="nope",
        )


def test_data_version_changes_when_a_trial_lands(tmp_path: Path) -> None:
    path = write_synthetic_store(tmp_path / "wb.duckdb", 5)
    store = Store.open(path)
    before = explore.data_version(store)
    with store.write() as con:
        con.execute("UPDATE trials SET ingested_at = now() + INTERVAL 1 SECOND WHERE trial_number = 0")
    assert explore.data_version(store) != before
    assert (
        json.loads(store.sql("SELECT objectives_json FROM studies")["objectives_json"].iloc[0])[0]["name"]
        == "val_ppl"
    )


# --- hypervolume -----------------------------------------------------------------------------------------


def test_hypervolume_against_a_hand_computed_front() -> None:
    # Minimising both: (1,3), (2,2), (3,1) on the front, (3,3) dominated. Worst x = worst y = 3, so
    # the reference is (3.3, 3.3). Sweeping in x, each point adds (3.3 - x) * (drop in best y):
    # (1,3): 2.3 * 0.3 = 0.69; (2,2): 1.3 * 1 = 1.3; (3,1): 0.3 * 1 = 0.3; total 2.29.
    costs = np.array([[3.0, 3.0], [1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    ref = explore.reference_point(costs)
    assert ref == pytest.approx([3.3, 3.3])
    assert explore.hypervolume_2d(costs, ref) == pytest.approx(2.29)
    # In that order: (3,3) alone 0.3 * 0.3 = 0.09; (1,3) dominates it: 0.69; then + 1.3; then + 0.3.
    assert explore.hypervolume_history(costs, ref) == pytest.approx([0.09, 0.69, 1.99, 2.29])
    assert explore.hypervolume_2d(np.array([[4.0, 1.0], [np.nan, 0.0]]), ref) == 0.0  # beyond ref, NaN


def test_hypervolume_history_equals_the_hypervolume_of_each_prefix() -> None:
    rng = np.random.default_rng(3)
    costs = rng.integers(0, 6, (200, 2)).astype(float)  # many ties and duplicates
    ref = explore.reference_point(costs)
    history = explore.hypervolume_history(costs, ref)
    expected = [explore.hypervolume_2d(costs[:k], ref) for k in range(1, len(costs) + 1)]
    assert history == pytest.approx(expected)
    assert np.all(np.diff(history) >= 0)


def test_hypervolume_over_trials_per_study_with_a_maximised_axis() -> None:
    trials = pd.DataFrame(
        {
            "study_name": ["a"] * 3 + ["b"] * 2,
            "trial_number": [2, 0, 1, 0, 1],
            "tokens_per_s": [100.0, 50.0, 100.0, 10.0, 20.0],
            "val_ppl": [10.0, 20.0, 30.0, 5.0, 4.0],
            "finished_at": pd.to_datetime(
                ["2025-01-03", "2025-01-02", "2025-01-01", "2025-01-01", "2025-01-02"]
            ),
        }
    )
    x, y = explore.COMPUTE_AXES["tokens_per_s"], explore.PERPLEXITY
    history = explore.hypervolume_over_trials(trials, x, y)
    a = history[history["study_name"] == "a"]
    # Study a in trial order: (50 tok/s, 20), (100, 30), (100, 10). Reference: 0.9 * 50 = 45 tok/s
    # (costs -50 -> -45) and 1.1 * 30 = 33. Areas: 5 * 13 = 65; + (100 - 50) * (33 - 30) = 215;
    # then (100, 10) dominates both: (100 - 45) * (33 - 10) = 1265, the whole ideal-reference box.
    assert a["trial_number"].tolist() == [0, 1, 2]
    assert a["hypervolume"].tolist() == pytest.approx([65.0, 215.0, 1265.0])
    assert a["fraction"].tolist() == pytest.approx([65 / 1265, 215 / 1265, 1.0])
    by_time = explore.hypervolume_over_trials(trials, x, y, "finished_at")
    assert by_time[by_time["study_name"] == "a"]["trial_number"].tolist() == [1, 0, 2]
    assert explore.hypervolume_figure(history, x, y).data[0].line.shape == "hv"


# --- picked front design, dominated designs hidden --------------------------------------------------------


def test_front_neighbours_and_hidden_dominated_designs() -> None:
    info = explore.get_pareto_info(synthetic_trials(300, "s", seed=4), design_params=["memory.kind"])
    keys = info.fronts["key"].tolist()
    near = explore.front_neighbours(info, keys[1])
    assert (near.previous, near.key, near.next) == (keys[0], keys[1], keys[2])
    assert near.keys == keys[:3]
    ppl = near.table.loc["validation perplexity"]
    assert ppl["Δ previous"] == pytest.approx(ppl[keys[0]] / ppl[keys[1]] - 1) and ppl["Δ previous"] > 0
    assert near.table.index[:2].tolist() == ["validation perplexity", "active FLOPs per token"]
    first = explore.front_neighbours(info, keys[0])
    assert first.previous is None and list(first.table.columns) == [keys[0], keys[1], "Δ next"]
    with pytest.raises(ExploreError, match="not on a front"):
        explore.front_neighbours(info, info.points.loc[~info.points["on_front"], "key"].iloc[0])

    fig = explore.pareto_figure(info, show_dominated=False, highlight=[keys[1]])
    drawn = [t for t in fig.data if t.customdata is not None and not t.name.startswith("front")]
    assert sum(len(t.x) for t in drawn) == len(keys)
    assert fig.layout.xaxis.range is not None  # the full range, not the front's
    (ring,) = [t for t in fig.data if t.name == "front · picked"]
    assert list(ring.x) == [info.fronts["flops_per_token"].iloc[1]]
    assert explore.pareto_rows(info.points) is info.points  # the hook for repeated designs


# --- parameters: conditional ones are never zero ------------------------------------------------------------


def test_encode_param_keeps_absent_parameters_apart() -> None:
    kinds = explore.encode_param(pd.Series(["switch", None, "dense", "switch"], name="memory.kind"))
    assert kinds.categorical and kinds.ticktext == ["dense", "switch", MISSING]
    assert kinds.positions.tolist() == [1.0, 2.0, 0.0, 1.0] and kinds.n_missing == 1

    experts = explore.encode_param(pd.Series([8.0, np.nan, 2.0, 64.0]))
    assert experts.ticktext == ["2", "8", "64", MISSING] and experts.missing_at == 3.0

    rng = np.random.default_rng(0)
    values = pd.Series(np.r_[rng.uniform(1, 1000, 40), [np.nan] * 5], name="memory.n_keys")
    numeric = explore.encode_param(values)
    assert not numeric.categorical and numeric.log and numeric.ticktext[0] == MISSING
    present = numeric.positions[:40]
    assert numeric.missing_at < present.min() and not np.any(numeric.positions[40:] == 0)
    assert numeric.positions[40:] == pytest.approx([numeric.missing_at] * 5)
    assert numeric.tickvals[1:] == [0.0, 1.0, 2.0] or len(numeric.tickvals) == 6  # decades, or 5 ticks


def test_parameter_figures_draw_absent_as_absent() -> None:
    trials = synthetic_trials(200, "s")
    trials["memory.n_keys"] = np.where(
        trials["memory.kind"] == "dense", np.nan, np.linspace(10, 5000, len(trials))
    )
    ppl = explore.PERPLEXITY
    fig = explore.parcoords_figure(
        trials,
        ["memory.kind", "memory.k", "memory.n_keys"],
        ppl,
        [
            Filter(column="memory.k", values=(1.0, MISSING)),
            Filter(column="memory.n_keys", low=100, high=1000),
        ],
    )
    kind, k, n_keys, objective = fig.data[0].dimensions
    assert list(k.ticktext) == ["1", "2", "4", MISSING]
    assert [list(b) for b in k.constraintrange] == [[-0.4, 0.4], [2.6, 3.4]]  # 1 and n/a kept
    assert n_keys.ticktext[0] == MISSING and n_keys.label == "n_keys (log)"
    missing_band, kept = n_keys.constraintrange
    assert kept == pytest.approx([2.0, 3.0]) and missing_band[0] < n_keys.tickvals[0] < missing_band[1]
    assert objective.label == "val_ppl" and "constraintrange" not in kind.to_plotly_json()

    slice_ = explore.slice_figure(trials, "memory.n_keys", ppl)
    assert slice_.layout.xaxis.type == "log" and list(slice_.layout.xaxis2.ticktext) == [MISSING]
    in_na = sum(len(t.x) for t in slice_.data if t.xaxis == "x2")
    assert in_na == (trials["memory.kind"] == "dense").sum()

    contour = explore.contour_figure(trials, "memory.kind", "memory.n_keys", ppl)
    assert contour.layout.yaxis.ticktext[-1] == MISSING and len(contour.layout.yaxis.ticktext) == 9
    z = np.array(contour.data[0].z, dtype=float)
    dense = trials[trials["memory.kind"] == "dense"]["val_ppl"].min()
    assert z[-1, 1] == pytest.approx(dense)  # n/a row x dense column: the best dense trial
    with pytest.raises(ExploreError, match="two different parameters"):
        explore.contour_figure(trials, "memory.k", "memory.k", ppl)


# --- health --------------------------------------------------------------------------------------------------


def test_failure_reasons_group_messages_that_differ_only_in_numbers() -> None:
    trials = pd.DataFrame(
        {
            "study_name": "s",
            "trial_number": [0, 1, 2, 3, 4, 5],
            "status": ["failed", "failed", "complete", "infeasible", "interrupted", "failed"],
            "error": [
                "OutOfMemoryError: tried to allocate 2.00 GiB\nTraceback ...",
                "OutOfMemoryError: tried to allocate 512 MiB",
                None,
                "constraint failed",
                None,
                "OutOfMemoryError: tried to allocate 8.50 GiB",
            ],
        }
    )
    table = explore.failure_reasons(trials).set_index(["status", "reason"])
    oom = table.loc[("failed", "OutOfMemoryError: tried to allocate # GiB")]
    assert (oom["count"], oom["examples"]) == (2, "s#5, s#0")
    assert oom["example_error"].startswith("OutOfMemoryError: tried to allocate 8.50 GiB")
    assert table.loc[("interrupted", "no reason recorded"), "count"] == 1
    assert explore.reason_of("cuda0 failed at step 17") == "cuda0 failed at step #"
    assert explore.failure_reasons(trials[trials["status"] == "complete"]).empty


def test_routing_collapse_thresholds(real: Store) -> None:
    routing = pd.DataFrame({"entropy_ratio": [0.9, 0.49, 0.5, 0.8], "unused_frac": [0.0, 0.0, 0.5, 0.51]})
    flagged = explore.flag_collapse(routing)
    assert flagged["collapsed"].tolist() == [False, True, False, True]
    assert flagged["why"].tolist()[1] == "entropy ratio 0.49 < 0.5"
    assert "51% of blocks unused > 50%" in flagged["why"].tolist()[3]
    health = explore.routing_health(real, ["tiny"])
    assert len(health) == 4 and health["entropy_ratio"].between(0, 1).all()
    assert {"collapsed", "why", "memory_kind", "layer"} <= set(health.columns)
    assert explore.routing_health_figure(health).data


# --- exports, curves --------------------------------------------------------------------------------------------


def test_exports_round_trip_and_the_rerun_command(tmp_path: Path) -> None:
    table = pd.DataFrame(
        {"a": [64, "switch", None], "b": [1.5, 2.0, np.nan]}, index=pd.Index(["x", "y", "z"], name="p")
    )
    back = pd.read_csv(__import__("io").BytesIO(explore.csv_bytes(table)))
    assert back.columns.tolist() == ["p", "a", "b"] and back["p"].tolist() == ["x", "y", "z"]
    (tmp_path / "t.parquet").write_bytes(explore.parquet_bytes(table))
    parquet = pd.read_parquet(tmp_path / "t.parquet")
    assert parquet["a"].tolist()[:2] == ["64", "switch"] and parquet["b"].iloc[0] == 1.5
    assert explore.figure_config("png", "f")["toImageButtonOptions"] == {
        "format": "png",
        "filename": "f",
        "scale": 2,
    }
    with pytest.raises(ValueError, match="image format"):
        explore.figure_config("gif")  # type: ignore[arg-type]

    command = explore.rerun_command(
        "unified",
        "my study",
        7,
        {
            "memory.kind": "pkm",
            "memory.k": 4,
            "train.lr": 0.003,
            "model.act": "true",
            "x.list": [1, 2],
            "train.seed": 3,
        },
        tokens=50_000,
        seed=3,
    )
    lines = command.split(" \\\n  ")
    assert lines[0] == "workbench run spaces/unified.py --study-name 'my study-retrain-7' --trials 1 --seed 3"
    assert lines[1:] == [
        "--set memory.k=4",
        "--set memory.kind=pkm",
        "--set 'model.act=\"true\"'",  # text that reads as JSON stays text
        "--set train.lr=0.003",
        "--set train.tokens=50000",
        "--set 'x.list=[1, 2]'",
    ]
    from workbench.cli._commands import _parse_override

    parsed = dict(_parse_override(__import__("shlex").split(line)[1]) for line in lines[1:])
    assert parsed == {
        "memory.k": 4,
        "memory.kind": "pkm",
        "model.act": "true",
        "train.lr": 0.003,
        "train.tokens": 50000,
        "x.list": [1, 2],
    }


def test_curves_overlay_training_and_validation_against_tokens(real: Store) -> None:
    trials = real.trials("tiny")
    keys = ["tiny#0", "tiny#5"]
    curves = explore.with_tokens(explore.curves_of(real, keys), trials)
    per_step = trials.set_index("trial_number").loc[0, ["tokens_trained", "steps"]]
    first = curves[(curves["key"] == "tiny#0") & (curves["step"] == 1)]["tokens"].iloc[0]
    assert first == pytest.approx(per_step["tokens_trained"] / per_step["steps"])
    fig = explore.compare_curves_figure(
        curves, explore.trial_labels(trials, keys), ["val_loss", "train_loss"], x="tokens", log_x=True
    )
    assert len(fig.data) == 4 and fig.layout.xaxis.type == "log"
    assert [t.line.dash for t in fig.data] == ["solid", "dot", "solid", "dot"]
    assert fig.data[0].line.color == fig.data[1].line.color != fig.data[2].line.color
