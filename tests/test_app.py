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

from workbench.errors import StoreError
from workbench.explore import STORE_ENV
from workbench.store import Store

APP = Path(__file__).resolve().parent.parent / "app" / "streamlit_app.py"
PAGES = ["studies", "pareto", "grid", "importance", "trial", "compare", "sql"]


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
    (spec,) = charts(at)
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
    }
    for x in ("params_total", "params_active", "tokens_per_s", "train_seconds"):
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
    assert len(spec["data"]) == 2 and spec["layout"]["yaxis"]["title"]["text"] == "val_loss"
    params = at.dataframe[1].value
    assert "memory.kind" in params.index and "model.d_model" not in params.index
    ok(at.toggle(key="compare_only_diff").set_value(False).run())
    assert "model.d_model" in at.dataframe[1].value.index
    ok(at.selectbox(key="compare_metric").set_value("train_loss").run())
    assert charts(at)[0]["layout"]["yaxis"]["title"]["text"] == "train_loss"

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


def test_pareto_page_of_10k_trials_is_quick(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A guard for bench/app_load.py (the measured figure is in docs/PERFORMANCE.md): with the
    imports done and nothing cached, the Pareto page of 10,000 trials runs in well under 3 s."""
    path = write_synthetic_store(tmp_path / "wb.duckdb", 10_000)
    monkeypatch.setenv(STORE_ENV, str(path))
    at = AppTest.from_file(str(APP), default_timeout=60)
    start = time.perf_counter()
    ok(at.switch_page("views/pareto.py").run())
    elapsed = time.perf_counter() - start
    assert plotted_points(at) == 10_000
    traces = charts(at)[0]["data"]
    assert {t["type"] for t in traces if t.get("customdata") and not t["name"].startswith("front")} == {
        "scattergl"
    }
    assert elapsed < 3.0, f"Pareto page of 10k trials took {elapsed:.2f}s"


def test_workbench_app_command_starts_streamlit_headless_on_localhost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from workbench import cli, explore

    seen: dict[str, Any] = {}

    def fake_run_app(argv: list[str], env: dict[str, str]) -> int:
        seen.update(argv=argv, env=env)
        return 0

    monkeypatch.setattr(explore, "run_app", fake_run_app)
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
