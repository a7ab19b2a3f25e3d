"""The Streamlit app, page by page, with AppTest on fixture stores: a real tiny study, a study whose
first trial crashed, an empty store, a synthetic store, and a missing file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from helpers_app import session_store, write_synthetic_store
from streamlit.testing.v1 import AppTest

from workbench import explore
from workbench.errors import StoreError
from workbench.explore import STORE_ENV
from workbench.store import Store

APP = Path(__file__).resolve().parent.parent / "app" / "streamlit_app.py"
PAGES = ["studies", "pareto", "grid", "params", "importance", "health", "trial", "compare", "sql"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {name: session_store(name, tmp_path_factory) for name in ("real", "failed", "empty", "synthetic")}


def open_app(store: Path, monkeypatch: pytest.MonkeyPatch, page: str | None = None, **state: Any) -> AppTest:
    """The app on ``store``, run once (the Studies page), then on ``page`` if given."""
    monkeypatch.setenv(STORE_ENV, str(store))
    at = AppTest.from_file(str(APP), default_timeout=60)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    if page:
        at.switch_page(f"views/{page}.py").run()
    return at


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def charts(at: AppTest) -> list[dict[str, Any]]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def plotted_points(at: AppTest) -> int:
    """Points of the Pareto chart's trial traces (the fronts are drawn by extra traces). Counted by
    their trial keys: plotly may encode numeric arrays as base64."""
    spec = charts(at)[0]
    return sum(
        len(t.get("customdata", [])) for t in spec["data"] if not t.get("name", "").startswith("front")
    )


def texts(elements: Any) -> str:
    return "\n".join(str(e.value) for e in elements)


# --- every page on every store ---------------------------------------------------------------------------


@pytest.mark.parametrize("store_name", ["real", "failed", "empty", "synthetic"])
def test_every_page_renders(
    store_name: str, stores: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_app(stores[store_name], monkeypatch)
    for page in PAGES:
        ok(at.switch_page(f"views/{page}.py").run())
        assert at.title, page
        if store_name == "empty":
            assert page == "sql" or "no studies" in texts(at.info) or "no trials" in texts(at.info), page


def test_missing_store_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(tmp_path / "nowhere.duckdb", monkeypatch)
    assert not at.exception
    assert "no store at" in texts(at.error) and "workbench run" in texts(at.markdown)


# --- studies -------------------------------------------------------------------------------------------


def test_studies_page_counts_statuses_and_shows_failures(
    stores: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = ok(open_app(stores["real"], monkeypatch))
    overview = at.dataframe[0].value
    row = overview.set_index("study_name").loc["tiny"]
    assert (row["n_trials"], row["n_complete"], row["n_failed"]) == (6, 6, 0)
    assert row["best_val_ppl"] == pytest.approx(overview["best_val_ppl"].min())
    assert [m.value for m in at.metric][:2] == ["1", "6"]
    assert "space 'tiny'" in at.expander[0].label

    at = ok(open_app(stores["failed"], monkeypatch))
    row = at.dataframe[0].value.iloc[0]
    assert (row["n_trials"], row["n_complete"], row["n_failed"]) == (2, 1, 1)
    failed = at.dataframe[1].value
    assert "CUDA out of memory (simulated)" in failed["error"].iloc[0]


# --- Pareto explorer -------------------------------------------------------------------------------------


def test_pareto_page_plots_every_complete_trial_and_filters(
    stores: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = ok(open_app(stores["real"], monkeypatch, "pareto"))
    assert "**6** of 6 complete trials plotted" in at.caption[0].value
    assert plotted_points(at) == 6
    spec = charts(at)[0]
    assert spec["layout"]["xaxis"]["type"] == "log" and spec["layout"]["yaxis"]["type"] == "log"
    assert any(t["name"] == "front · tiny" and t["line"]["shape"] == "hv" for t in spec["data"])
    assert all("tiny#" in h for t in spec["data"] for h in t.get("hovertext", []))
    assert [m.key for m in at.sidebar.multiselect][1:] == [
        "pareto_f_memory.kind",
        "pareto_f_memory.n_experts",
        "pareto_f_train.lr",
    ]

    ok(at.sidebar.multiselect(key="pareto_f_memory.kind").set_value(["switch"]).run())
    assert (
        "**4** of 6 complete trials plotted" in at.caption[0].value
        and "2 filtered out" in at.caption[0].value
    )
    assert plotted_points(at) == 4

    ok(at.sidebar.multiselect(key="pareto_more_filters").set_value(["val_ppl"]).run())
    slider = at.sidebar.slider(key="pareto_f_val_ppl")
    low, high = slider.value
    ok(slider.set_value((low, (low + high) / 2)).run())
    assert plotted_points(at) < 4

    ok(at.sidebar.multiselect(key="pareto_f_memory.kind").set_value([]).run())
    assert "No trial passes the filters" in texts(at.warning)


def test_pareto_page_axes_shapes_and_overlaid_studies(
    stores: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = ok(open_app(stores["synthetic"], monkeypatch, "pareto"))
    assert at.multiselect(key="pareto_studies").value == ["synth-a", "synth-b"]
    spec = charts(at)[0]
    assert {t["name"] for t in spec["data"] if t["name"].startswith("front")} == {
        "front · synth-a",
        "front · synth-b",
        "front · picked",  # the design picked below the plot, ringed
    }
    for x in ("params_total", "params_active", "tokens_per_s", "train_seconds", "peak_mem_bytes"):
        ok(at.selectbox(key="pareto_x").set_value(x).run())
        assert charts(at)[0]["layout"]["xaxis"]["title"]["text"], x
    ok(at.toggle(key="pareto_log_x").set_value(False).run())
    assert charts(at)[0]["layout"]["xaxis"]["type"] == "linear"
    ok(at.selectbox(key="pareto_symbol").set_value("model.d_model").run())
    symbols = {t["marker"]["symbol"] for t in charts(at)[0]["data"] if not t["name"].startswith("front")}
    assert symbols == {"circle", "square", "diamond"}
    ok(at.multiselect(key="pareto_studies").set_value(["synth-b"]).run())
    assert "**400** of 400" in at.caption[0].value


def test_pareto_page_with_only_failed_trials_and_with_a_failure(
    stores: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = ok(open_app(stores["failed"], monkeypatch, "pareto"))
    assert "**1** of 1 complete trials plotted" in at.caption[0].value

    store = Store.open(tmp_path / "wb.duckdb")
    with store.write() as con:
        con.execute("INSERT INTO studies (study_name, space_name, n_trials) VALUES ('broken', 'x', 1)")
        con.execute(
            "INSERT INTO trials (study_name, trial_number, status, optuna_state, error, ingested_at) "
            "VALUES ('broken', 0, 'failed', 'FAIL', 'RuntimeError: boom', now())"
        )
    at = ok(open_app(store.path, monkeypatch, "pareto"))
    assert "No complete trials in broken yet (1 stored: 1 failed" in texts(at.info)


def test_pareto_page_hides_dominated_designs_and_switches_to_peak_memory(
    stores: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = ok(open_app(stores["real"], monkeypatch, "pareto"))
    assert plotted_points(at) == 6
    ok(at.toggle(key="pareto_front_only").set_value(True).run())
    n_front = len(at.dataframe[0].value)
    assert plotted_points(at) == n_front < 6
    assert f"{6 - n_front} dominated hidden" in at.caption[0].value
    layout = charts(at)[0]["layout"]
    assert layout["xaxis"]["range"] and layout["yaxis"]["range"]  # the axes keep the full range
    ok(at.selectbox(key="pareto_x").set_value("peak_mem_bytes").run())
    assert charts(at)[0]["layout"]["xaxis"]["title"]["text"] == "peak memory (bytes)"
    assert set(explore.COMPUTE_AXES) >= {"flops_per_token", "params_total", "tokens_per_s", "peak_mem_bytes"}


def test_pareto_page_picks_a_front_design_against_its_neighbours(
    stores: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = ok(open_app(stores["synthetic"], monkeypatch, "pareto"))
    ok(at.multiselect(key="pareto_studies").set_value(["synth-a"]).run())
    front = at.dataframe[0].value["key"].tolist()
    pick = at.selectbox(key="pareto_pick")
    assert pick.options[0].startswith(front[0]) and pick.value == front[0]
    ok(pick.set_value(front[2]).run())
    neighbours = at.dataframe[1].value
    assert list(neighbours.columns) == [front[1], "Δ previous", front[2], front[3], "Δ next"]
    ppl = neighbours.loc["validation perplexity"]
    assert ppl["Δ next"] == pytest.approx((ppl[front[3]] - ppl[front[2]]) / ppl[front[2]])
    assert ppl[front[3]] < ppl[front[2]] < ppl[front[1]]  # further along the front: costlier, better
    config = at.dataframe[2].value
    assert list(config.columns) == [front[1], front[2], front[3]] and len(config) >= 1
    picked = [t for t in charts(at)[0]["data"] if t["name"] == "front · picked"]
    assert len(picked) == 1  # ringed in the plot
    (command,) = [c.value for c in at.code]
    number = explore.parse_trial_key(front[2])[1]
    assert command.startswith(f"workbench run spaces/synthetic.py --study-name synth-a-retrain-{number} ")
    assert "--set memory.kind=" in command and "--set train.tokens=200000" in command


def test_pareto_page_shows_the_hypervolume_over_trials(
    stores: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = ok(open_app(stores["real"], monkeypatch, "pareto"))
    spec = charts(at)[1]
    (line,) = spec["data"]
    assert line["name"] == "tiny" and line["line"]["shape"] == "hv"
    assert spec["layout"]["xaxis"]["title"]["text"] == "trial number"
    ok(at.radio(key="pareto_hv_order").set_value("finished_at").run())
    assert charts(at)[1]["layout"]["xaxis"]["title"]["text"] == "finish time"
    assert "worst observed value × 1.1" in texts(at.caption)


def test_selection_opens_trial_and_compare(stores: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    at = ok(open_app(stores["real"], monkeypatch, "pareto", wb_selected=["tiny#4", "tiny#1"]))
    assert "Selection (2)" in texts(at.subheader)
    at.button(key="pareto_open_compare").click().run()
    ok(at)
    assert at.multiselect[0].value == ["tiny#4", "tiny#1"]
    at.switch_page("views/trial.py").run()
    ok(at)
    assert at.number_input[0].value == 4 and "tiny#4" in at.subheader[0].value


# --- trial detail and compare ----------------------------------------------------------------------------


def test_trial_page_shows_curves_routing_config_provenance(
    stores: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(stores["real"], read_only=True)
    switch = int(
        store.sql("SELECT min(trial_number) AS n FROM trials WHERE memory_kind = 'switch'")["n"].iloc[0]
    )
    at = ok(open_app(stores["real"], monkeypatch, "trial", wb_selected=[f"tiny#{switch}"]))
    assert f"tiny#{switch} · switch · complete" == at.subheader[0].value
    assert [m.label for m in at.metric][:2] == ["validation perplexity", "active FLOPs per token"]
    assert len(charts(at)) == 2  # learning curves and load per block
    routing = at.dataframe[0].value
    assert list(routing["layer"]) == [0] and routing["entropy_ratio"].between(0, 1).all()
    assert at.json[0].value and "memory" in json.loads(at.json[0].value)
    provenance = {r["field"]: r["value"] for r in at.dataframe[3].value.to_dict("records")}
    assert provenance["device"] == "cpu" and provenance["seed"] == "0"

    ok(at.number_input[0].set_value(0).run())  # a dense trial: no routing
    assert "No routing statistics" in texts(at.info)


def test_trial_page_explains_a_failed_trial(stores: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(stores["failed"], monkeypatch, "trial", wb_selected=["crashy#0"])
    assert not at.exception
    assert "did not complete (failed): RuntimeError: CUDA out of memory (simulated)" in texts(at.error)
    assert "No learning curves" in texts(at.info)


def test_compare_page_overlays_curves_and_highlights_differences(
    stores: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = ok(open_app(stores["real"], monkeypatch, "compare", wb_selected=["tiny#0", "tiny#5"]))
    (spec,) = charts(at)
    assert [t["name"] for t in spec["data"]] == [
        "tiny#0 (dense) · val_loss",
        "tiny#0 (dense) · train_loss",
        "tiny#5 (switch) · val_loss",
        "tiny#5 (switch) · train_loss",
    ]
    assert [t["line"]["dash"] for t in spec["data"]] == ["solid", "dot"] * 2
    params = at.dataframe[1].value
    assert "memory.kind" in params.index and "model.d_model" not in params.index
    ok(at.toggle(key="compare_only_diff").set_value(False).run())
    assert "model.d_model" in at.dataframe[1].value.index
    ok(at.multiselect(key="compare_metrics").set_value(["train_loss"]).run())
    assert charts(at)[0]["layout"]["yaxis"]["title"]["text"] == "train_loss"
    assert charts(at)[0]["layout"]["xaxis"]["title"]["text"] == "step"
    ok(at.radio(key="compare_x").set_value("tokens").run())
    ok(at.toggle(key="compare_log_x").set_value(True).run())
    layout = charts(at)[0]["layout"]
    assert layout["xaxis"]["title"]["text"] == "training tokens" and layout["xaxis"]["type"] == "log"

    ok(at.multiselect[0].set_value(["tiny#0"]).run())
    assert "at least two trials" in texts(at.info)


# --- grid and importance ---------------------------------------------------------------------------------


def test_grid_page_heatmap_and_facets(stores: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    at = ok(open_app(stores["synthetic"], monkeypatch, "grid"))
    assert (
        at.selectbox(key="grid_cols").value == "memory.block_size"
        and at.selectbox(key="grid_rows").value == "memory.kind"
    )
    heat, lines = charts(at)
    assert lines["data"][0]["type"] == "scatter"
    assert heat["data"][0]["type"] == "heatmap" and len(heat["data"][0]["y"]) == 5
    ok(at.selectbox(key="grid_facet").set_value("flops_per_token").run())
    bands = at.radio(key="grid_at").options
    assert len(bands) == 4
    ok(at.radio(key="grid_at").set_value(bands[-1]).run())
    assert len(charts(at)[1]["layout"]["annotations"]) == 4
    ok(at.selectbox(key="grid_reduce").set_value("median").run())
    assert "median cannot be combined" in texts(at.warning)

    at = ok(open_app(stores["real"], monkeypatch, "grid"))
    assert charts(at)[0]["data"][0]["type"] == "heatmap"


def test_importance_page(stores: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    at = ok(open_app(stores["synthetic"], monkeypatch, "importance"))
    (spec,) = charts(at)
    assert [a["text"] for a in spec["layout"]["annotations"]] == ["val_ppl", "flops_per_token"]
    assert "memory.block_size" in texts(at.caption)  # left out: dense trials lack it
    ok(at.radio(key="imp_kind").set_value("pkm").run())
    assert "memory.block_size" in set(charts(at)[0]["data"][0]["y"])

    at = ok(open_app(stores["real"], monkeypatch, "importance"))
    assert "at least 10 complete trials" in texts(at.info)


def test_importance_page_sorts_by_any_objective(
    stores: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = ok(open_app(stores["synthetic"], monkeypatch, "importance"))
    table = at.dataframe[0].value
    assert list(table.columns) == ["val_ppl", "flops_per_token"] and table["val_ppl"].is_monotonic_decreasing
    ok(at.radio(key="imp_sort").set_value("flops_per_token").run())
    assert at.dataframe[0].value["flops_per_token"].is_monotonic_decreasing


# --- parameters ------------------------------------------------------------------------------------------


def test_params_page_parallel_coordinates_slice_and_contour(
    stores: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = ok(open_app(stores["real"], monkeypatch, "params"))
    assert at.multiselect(key="params_params").value == ["memory.kind", "memory.n_experts", "train.lr"]
    parcoords, slice_, contour = charts(at)
    dims = {d["label"]: d for d in parcoords["data"][0]["dimensions"]}
    assert list(dims) == ["kind", "n_experts", "lr", "val_ppl"]
    # The dense trials have no n_experts: a category of their own, never 0.
    assert dims["n_experts"]["ticktext"] == ["2", "4", "n/a"]
    assert dims["kind"]["ticktext"] == ["dense", "switch"] and "constraintrange" not in dims["kind"]
    assert len(at.dataframe[0].value) == 6

    ok(at.multiselect(key="params_f_memory.kind").set_value(["switch"]).run())
    dims = {d["label"]: d for d in charts(at)[0]["data"][0]["dimensions"]}
    assert dims["kind"]["constraintrange"] == [[0.6, 1.4]]  # the band a brush on 'switch' would draw
    assert set(at.dataframe[0].value["memory.kind"]) == {"switch"}
    assert "4 of 6 complete trials pass the filters" in texts(at.caption)

    ok(at.multiselect(key="params_f_memory.kind").set_value(["dense", "switch"]).run())
    ok(at.selectbox(key="params_slice").set_value("memory.n_experts").run())
    slice_ = charts(at)[1]
    assert slice_["layout"]["xaxis"]["ticktext"] == ["2", "4", "n/a"]
    assert sum(len(t["customdata"]) for t in slice_["data"]) == 6
    contour = charts(at)[2]
    assert contour["data"][0]["type"] == "contour"
    assert contour["layout"]["xaxis"]["ticktext"] == ["dense", "switch"]
    assert contour["layout"]["yaxis"]["ticktext"] == ["2", "4", "n/a"]
    ok(at.selectbox(key="params_objective").set_value("flops_per_token").run())
    assert charts(at)[0]["data"][0]["dimensions"][-1]["label"] == "flops_per_token"


def test_params_page_with_conditional_and_log_scaled_parameters(
    stores: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = ok(open_app(stores["synthetic"], monkeypatch, "params"))
    ok(at.selectbox(key="params_slice").set_value("memory.block_size").run())
    assert charts(at)[1]["layout"]["xaxis"]["ticktext"] == ["1", "4", "16", "64", "n/a"]
    ok(at.multiselect(key="params_params").set_value(["train.lr", "memory.kind"]).run())
    ok(at.selectbox(key="params_slice").set_value("train.lr").run())
    layout = charts(at)[1]["layout"]
    assert layout["xaxis"]["type"] == "log" and "xaxis2" not in layout  # every trial has a learning rate
    lr = charts(at)[0]["data"][0]["dimensions"][0]
    assert lr["label"] == "lr (log)" and "n/a" not in lr["ticktext"]


# --- health ----------------------------------------------------------------------------------------------


def test_health_page_groups_failures_by_reason(
    stores: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = ok(open_app(stores["failed"], monkeypatch, "health"))
    reasons = at.dataframe[0].value
    row = reasons.iloc[0]
    assert (row["status"], row["count"], row["examples"]) == ("failed", 1, "crashy#0")
    assert row["reason"] == "RuntimeError: CUDA out of memory (simulated)"

    at = ok(open_app(stores["real"], monkeypatch, "health"))
    assert "All 6 stored trials completed" in texts(at.success)
    routing = at.dataframe[0].value
    assert set(routing["memory_kind"]) == {"switch"} and len(routing) == 4
    # A 2,048-token toy may or may not collapse its routers; the metric counts what the table flags.
    from workbench.explore import ENTROPY_COLLAPSE, UNUSED_COLLAPSE

    flagged = int(
        ((routing["entropy_ratio"] < ENTROPY_COLLAPSE) | (routing["unused_frac"] > UNUSED_COLLAPSE)).sum()
    )
    assert [m.value for m in at.metric] == ["4", "4", str(flagged)]


def test_health_page_flags_a_collapsed_router(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_synthetic_store(tmp_path / "wb.duckdb", 20)
    store = Store.open(path)
    with store.write() as con:
        target = con.execute("SELECT min(trial_number) FROM routing").fetchone()[0]
        con.execute(
            "UPDATE routing SET load_entropy = 0.2 * load_entropy_max, unused_frac = 0.75 "
            "WHERE trial_number = $n AND layer = 0",
            {"n": target},
        )
        con.execute(
            "INSERT INTO trials (study_name, trial_number, status, optuna_state, error, ingested_at) VALUES "
            "('synth', 100, 'failed', 'FAIL', 'OutOfMemoryError: tried to allocate 2.00 GiB', now()), "
            "('synth', 101, 'failed', 'FAIL', 'OutOfMemoryError: tried to allocate 4.50 GiB', now()), "
            "('synth', 102, 'infeasible', 'PRUNED', 'constraint params_total < 1e6', now())"
        )
    at = ok(open_app(path, monkeypatch, "health"))
    reasons = at.dataframe[0].value.set_index("reason")
    oom = reasons.loc["OutOfMemoryError: tried to allocate # GiB"]
    assert (oom["count"], oom["examples"]) == (2, "synth#101, synth#100")
    assert reasons.loc["constraint params_total < #e6", "status"] == "infeasible"
    routing = at.dataframe[1].value
    flagged = routing[routing["collapsed"]]
    assert (
        flagged["key"].tolist() == [f"synth#{target}"]
        and "entropy ratio 0.20 < 0.5" in flagged["why"].iloc[0]
    )
    assert [m.value for m in at.metric][-1] == "1"
    assert "below 0.5" in texts(at.caption)


# --- exports -------------------------------------------------------------------------------------------------


def test_tables_offer_csv_and_parquet_and_figures_svg_or_png(
    stores: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = ok(open_app(stores["real"], monkeypatch, "pareto"))
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels.count("CSV") == labels.count("Parquet") == len(at.dataframe)
    assert json.loads(at.get("plotly_chart")[0].proto.config)["toImageButtonOptions"]["format"] == "svg"
    ok(at.sidebar.radio(key="wb_image_format").set_value("png").run())
    options = json.loads(at.get("plotly_chart")[0].proto.config)["toImageButtonOptions"]
    assert options == {"format": "png", "filename": "pareto_chart", "scale": 2}
    for page in ("studies", "compare", "trial", "params", "sql"):
        ok(at.switch_page(f"views/{page}.py").run())
        labels = [b.proto.label for b in at.get("download_button")]
        assert labels.count("CSV") == labels.count("Parquet") >= 1, page
    ok(at.switch_page("views/trial.py").run())
    assert any(c.value.startswith("workbench run spaces/tiny.py") for c in at.code)


# --- SQL ---------------------------------------------------------------------------------------------------


def test_sql_page_runs_reads_and_offers_csv(stores: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    at = ok(open_app(stores["real"], monkeypatch, "sql"))
    result = at.dataframe[0].value
    assert set(result["memory_kind"]) == {"dense", "switch"} and result["trials"].sum() == 6
    assert at.get("download_button")
    ok(at.text_area(key="sql_query").set_value("SELECT count(*) AS n FROM curves").run())
    at.button(key="sql_run").click().run()
    assert ok(at).dataframe[0].value["n"].iloc[0] > 0


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("INSERT INTO trials (study_name) VALUES ('x')", "INSERT statements are not allowed"),
        ("COPY trials TO '/tmp/trials.csv'", "COPY statements are not allowed"),
        ("ATTACH '/tmp/x.duckdb' AS x", "ATTACH statements are not allowed"),
        ("INSTALL httpfs", "INSTALL statements are not allowed"),
        ("SELECT * FROM read_csv('/etc/passwd')", "read_csv() reads files"),
        ("SELECT * FROM read_parquet('/tmp/x.parquet')", "read_parquet() reads files"),
        ("SELECT * FROM glob('/etc/*')", "glob() reads files"),
    ],
)
def test_sql_page_refuses_writes_and_file_reads(
    sql: str, message: str, stores: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_app(stores["real"], monkeypatch, "sql")
    at.text_area(key="sql_query").set_value(sql)
    at.button(key="sql_run").click().run()
    assert not at.exception
    assert message in texts(at.error) and "read-only" in texts(at.error) + texts(at.caption)
    assert not at.dataframe
    assert Store.open(stores["real"], read_only=True).counts()["trials"] == 6


# --- busy store and refresh --------------------------------------------------------------------------------


def test_busy_store_is_retried_with_a_message(
    stores: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real_studies = Store.studies

    def busy_then_free(self: Store) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise StoreError(f"store {self.path} stayed locked for 5s by PID 1 (python)")
        return real_studies(self)

    monkeypatch.setattr(Store, "studies", busy_then_free)
    path = write_synthetic_store(Path(str(stores["empty"])).parent / "busy.duckdb", 3)
    start = time.monotonic()
    at = ok(open_app(path, monkeypatch))
    assert calls["n"] == 2 and time.monotonic() - start >= 1.0  # waited, then rerun and succeeded
    assert at.dataframe[0].value["study_name"].tolist() == ["synth"]


def test_new_trials_show_up_after_refresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_synthetic_store(tmp_path / "wb.duckdb", 10)
    at = ok(open_app(path, monkeypatch, "pareto"))
    assert "**10** of 10" in at.caption[0].value
    with Store.open(path).write() as con:
        con.execute(
            "INSERT INTO trials SELECT * REPLACE (trial_number + 100 AS trial_number, now() AS ingested_at) FROM trials"
        )
        con.execute("INSERT INTO params SELECT * REPLACE (trial_number + 100 AS trial_number) FROM params")
    at.sidebar.button[0].click().run()  # Refresh
    assert "**20** of 20" in ok(at).caption[0].value


def test_live_refresh_reruns_on_new_trials_and_counts_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_synthetic_store(tmp_path / "wb.duckdb", 10)
    at = ok(open_app(path, monkeypatch, "pareto"))
    assert at.sidebar.select_slider(key="wb_live_every").value == "5 s"
    ok(at.run())
    assert not at.sidebar.success  # nothing new
    with Store.open(path).write() as con:
        con.execute(
            "INSERT INTO trials SELECT * REPLACE (trial_number + 100 AS trial_number, now() AS ingested_at) "
            "FROM trials WHERE trial_number < 3"
        )
        con.execute(
            "INSERT INTO params SELECT * REPLACE (trial_number + 100 AS trial_number) FROM params "
            "WHERE trial_number < 3"
        )
    ok(at.run())  # the live check sees a new fingerprint: the page reloads at once, without Refresh
    assert "**13** of 13" in at.caption[0].value
    assert "**3** new trials since your last view of this page" in texts(at.sidebar.success)
    ok(at.run())
    assert not at.sidebar.success
    ok(at.sidebar.select_slider(key="wb_live_every").set_value("off").run())


def test_pareto_page_of_10k_trials_draws_them_with_webgl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """10,000 trials reach the figure, as WebGL traces. How long it takes is measured by
    bench/app_load.py (docs/PERFORMANCE.md), not asserted here: a timing depends on the machine."""
    path = write_synthetic_store(tmp_path / "wb.duckdb", 10_000)
    monkeypatch.setenv(STORE_ENV, str(path))
    at = AppTest.from_file(str(APP), default_timeout=60)
    ok(at.switch_page("views/pareto.py").run())
    assert plotted_points(at) == 10_000
    traces = charts(at)[0]["data"]
    assert {t["type"] for t in traces if t.get("customdata") and not t["name"].startswith("front")} == {
        "scattergl"
    }


def test_workbench_app_command_starts_streamlit_headless_on_localhost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from workbench import cli
    from workbench.cli import _launch

    seen: dict[str, Any] = {}

    def fake_run_app(argv: list[str], env: dict[str, str]) -> int:
        seen.update(argv=argv, env=env)
        return 0

    monkeypatch.setattr(_launch, "run_app", fake_run_app)
    result = CliRunner().invoke(cli.app, ["app", "--store", str(tmp_path / "s.duckdb"), "--port", "8123"])
    assert result.exit_code == 0, result.output
    argv = seen["argv"]
    assert argv[1:4] == ["-m", "streamlit", "run"] and argv[4] == str(APP)
    flags = dict(zip(argv[5::2], argv[6::2], strict=True))
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.port"] == "8123"
    assert flags["--server.headless"] == "true" and flags["--browser.gatherUsageStats"] == "false"
    assert seen["env"][STORE_ENV] == str(tmp_path / "s.duckdb")
    help_text = CliRunner().invoke(cli.app, ["app", "--help"]).output
    assert "--store" in help_text and "--port" in help_text


def test_pareto_page_of_repeated_designs_draws_means_with_95_intervals(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = session_store("repeats", tmp_path_factory)
    designs = Store.open(store, read_only=True).designs("seeds")
    assert designs["n_seeds"].tolist() == [3, 3]
    at = ok(open_app(store, monkeypatch, "pareto"))
    traces = [
        t for t in charts(at)[0]["data"] if not t.get("name", "").startswith("front") and t.get("customdata")
    ]
    assert sum(len(t["customdata"]) for t in traces) == 2  # one point per design, not per run
    bars = [t["error_y"] for t in traces if t.get("error_y", {}).get("visible")]
    assert len(bars) == len(traces), "every design of three seeds has an error bar"
    assert "mean over seeds" in texts(at.caption)
    front = at.dataframe[0].value
    assert {"n_seeds", "val_ppl_ci95_low", "val_ppl_ci95_high", "p_front"} <= set(front.columns)


def test_studies_page_shows_the_replication_claims_of_replicate_studies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workbench.store.ingest import ingest_storage

    runs = Path(__file__).resolve().parents[1] / "store" / "runs"
    path = tmp_path / "replication.duckdb"
    store = Store.open(path)
    for name in ("replicate-24M", "replicate-hash"):
        ingest_storage(store, runs / f"{name}.journal")
    at = ok(open_app(path, monkeypatch))
    assert "Replication: the papers' claims" in texts(at.subheader)
    claims = at.dataframe[1].value.set_index("claim")
    assert claims.loc["Hash 3", "verdict"] in ("reproduced", "not reproduced", "inconclusive")
    assert "31.28 [30.30, 32.27] (3)" in claims.loc["Hash 3", "ours (val ppl, mean [95% CI], seeds)"]
    assert claims.loc["Hash 1", "verdict"] == "not run"  # judged on the S-FFN study, not ingested here
    assert claims.loc["AltUp 1", "verdict"] == "not run"
