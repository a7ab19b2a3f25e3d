"""The trial record: its stored metrics are exactly the typed metric columns of ``trials``."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench import record
from workbench.store import Store

# Columns of `trials` that are numbers but not metrics of a run.
NOT_METRICS = {"trial_number", "seed", "replicate"}
SQL_TYPES = {float: "DOUBLE", int: "BIGINT"}


@pytest.fixture(scope="module")
def columns(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    store = Store.open(tmp_path_factory.mktemp("record") / "wb.duckdb")
    frame = store.sql(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'trials'"
    )
    return dict(zip(frame["column_name"], frame["data_type"], strict=True))


def test_every_stored_metric_has_a_column_of_its_type(columns: dict[str, str]) -> None:
    stored = record.stored_metrics()
    assert stored, "TrialMetrics declares no stored field"
    for name, kind in stored.items():
        assert columns.get(name) == SQL_TYPES[kind], (
            f"trials.{name}: {columns.get(name)} != {SQL_TYPES[kind]}"
        )


def test_every_numeric_column_is_a_stored_metric(columns: dict[str, str]) -> None:
    numeric = {n for n, t in columns.items() if t in SQL_TYPES.values()} - NOT_METRICS
    assert numeric == set(record.stored_metrics())


def test_metrics_round_trip_and_ignore_unknown_keys() -> None:
    metrics = record.TrialMetrics(val_ppl=12.5, params_total=100, duplicate_of=3)
    assert metrics.to_dict() == {"val_ppl": 12.5, "params_total": 100, "duplicate_of": 3}
    assert record.TrialMetrics.from_dict({**metrics.to_dict(), "from_a_newer_writer": 1}) == metrics


def test_objectives_are_stored_metrics() -> None:
    assert set(record.objective_metrics()) <= set(record.stored_metrics())
    assert "val_ppl" in record.objective_metrics() and "flops_per_token" in record.objective_metrics()


def test_the_design_hash_leaves_out_the_seed_and_the_tuned_knobs() -> None:
    config = {"model": {"d_model": 64}, "train": {"seed": 0, "lr": 1e-3}}
    other_seed = {"model": {"d_model": 64}, "train": {"seed": 1, "lr": 1e-3}}
    other_lr = {"model": {"d_model": 64}, "train": {"seed": 0, "lr": 2e-3}}
    assert record.design_hash(config) == record.design_hash(other_seed)
    assert record.design_hash(config) != record.design_hash(other_lr)
    assert record.design_hash(config, ["train.lr"]) == record.design_hash(other_lr, ["train.lr"])
    assert record.config_digest(config) != record.config_digest(other_seed)


def test_the_module_stands_alone() -> None:
    source = Path(record.__file__).read_text(encoding="utf-8")
    assert "import workbench" not in source and "from workbench" not in source


def test_pinning_a_knob_to_its_legacy_value_is_not_a_new_search_space() -> None:
    from workbench.record import without_legacy_constants

    stored = {"memory.kind": {"type": "categorical", "choices": ["hash"], "when": None}}
    pinned = {**stored, "model.ffn_init": {"type": "fixed", "value": "layer", "when": None}}
    assert without_legacy_constants(pinned) == without_legacy_constants(stored)
    changed = {**stored, "model.ffn_init": {"type": "fixed", "value": "fan_in", "when": None}}
    assert without_legacy_constants(changed) != without_legacy_constants(stored)
