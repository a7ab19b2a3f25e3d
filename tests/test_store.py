"""workbench.store: migrations, read API, and DuckDB's one-writer file lock across processes."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np
import pytest
from helpers_store import GRID, add_trial, build_study, downgrade_to_001, make_study

from workbench.errors import StoreError
from workbench.store import Store, latest_version, sqlfiles
from workbench.store.ingest import ingest_study

REPO = Path(__file__).resolve().parent.parent

# --- opening and migrating -----------------------------------------------------------------------


@pytest.fixture
def filled(tmp_path: Path) -> Store:
    store = Store.open(tmp_path / "store.duckdb")
    ingest_study(store, build_study())
    return store


def test_open_creates_parent_and_migrates_once(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "store.duckdb"
    store = Store.open(path)
    assert path.is_file()
    assert store.schema_version() == latest_version() == sqlfiles.migrations()[-1].version
    Store.open(path)
    applied = store.query("schema_migrations")
    assert applied["version"].tolist() == [m.version for m in sqlfiles.migrations()]
    assert store.counts() == dict.fromkeys(
        ["studies", "trials", "params", "curves", "routing", "routing_load", "provenance", "tuning"], 0
    )


def test_read_only_open_of_missing_file_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"no store at .*missing\.duckdb"):
        Store.open(tmp_path / "missing.duckdb", read_only=True)
    assert not (tmp_path / "missing.duckdb").exists()


def test_read_only_open_of_a_foreign_duckdb_file(tmp_path: Path) -> None:
    path = tmp_path / "other.duckdb"
    duckdb.connect(str(path)).close()
    with pytest.raises(StoreError, match="not a workbench store"):
        Store.open(path, read_only=True)


def test_read_only_store_refuses_writes(filled: Store) -> None:
    reader = Store.open(filled.path, read_only=True)
    with pytest.raises(StoreError, match="read-only"), reader.write():
        pass
    assert reader.counts() == filled.counts()


def test_write_rolls_back_on_error(filled: Store) -> None:
    before = filled.counts()
    with pytest.raises(RuntimeError), filled.write() as con:
        con.execute("DELETE FROM trials")
        raise RuntimeError("boom")
    assert filled.counts() == before


def test_sql_binds_parameters_and_wraps_errors(filled: Store) -> None:
    df = filled.sql("SELECT count(*) AS n FROM trials WHERE status = $s", {"s": "complete"})
    assert df["n"].iloc[0] == len(GRID)
    with pytest.raises(StoreError, match="query failed"):
        filled.sql("SELECT * FROM no_such_table")
    with pytest.raises(StoreError, match=r"unknown query 'nope'; valid: .*trials"):
        filled.query("nope")


def test_a_store_from_before_study_uids_migrates_and_keeps_its_rows(filled: Store) -> None:
    before = filled.counts()
    downgrade_to_001(filled.path)
    with pytest.raises(StoreError, match=f"schema version 1, this code needs {latest_version()}"):
        Store.open(filled.path, read_only=True)
    store = Store.open(filled.path)
    assert store.schema_version() == latest_version()
    assert store.counts() == {**before, "tuning": 0}  # migration 003 re-creates the tuning table empty
    assert store.studies()["study_uid"].isna().all()


def test_statements_split_multi_statement_files() -> None:
    parts = sqlfiles.statements(sqlfiles.query("delete_trial"))
    assert len(parts) == 7 and all(p.startswith("DELETE FROM") for p in parts)


# --- dropping a study --------------------------------------------------------------------------


def keyed_tables(store: Store) -> list[str]:
    """Every table with a study_name column (views excluded)."""
    return store.sql(
        "SELECT c.table_name FROM information_schema.columns AS c "
        "JOIN information_schema.tables AS t USING (table_schema, table_name) "
        "WHERE c.column_name = 'study_name' AND t.table_type = 'BASE TABLE' ORDER BY 1"
    )["table_name"].tolist()


def rows_of(store: Store, study_name: str) -> dict[str, int]:
    return {
        table: int(
            store.sql(f"SELECT count(*) AS n FROM {table} WHERE study_name = $s", {"s": study_name})["n"][0]
        )
        for table in keyed_tables(store)
    }


def test_drop_study_deletes_that_study_from_every_keyed_table(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store.duckdb")
    ingest_study(store, build_study("a"))
    ingest_study(store, build_study("b"))
    kept = store.sql("SELECT * FROM trials WHERE study_name = 'b' ORDER BY trial_number")
    assert set(keyed_tables(store)) == set(store.counts())  # the schema has no other keyed table
    before = rows_of(store, "a")
    assert all(before.values())

    assert store.study_counts("a") == before
    assert store.drop_study("a") == before
    assert rows_of(store, "a") == dict.fromkeys(before, 0)
    assert rows_of(store, "b") == before  # the two studies were built alike
    after = store.sql("SELECT * FROM trials WHERE study_name = 'b' ORDER BY trial_number")
    assert after.equals(kept)
    assert store.studies()["study_name"].tolist() == ["b"]
    with pytest.raises(StoreError, match="holds no study 'a'; studies there: b"):
        store.drop_study("a")


def test_drop_study_is_one_transaction(filled: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    before = filled.counts()
    real = sqlfiles.statements
    monkeypatch.setattr(sqlfiles, "statements", lambda sql: [*real(sql), "DELETE FROM no_such_table"])
    with pytest.raises(duckdb.Error):
        filled.drop_study("demo")
    assert filled.counts() == before


# --- read API ------------------------------------------------------------------------------------


def test_studies_summarise_statuses(filled: Store) -> None:
    row = filled.studies().iloc[0]
    assert (row["study_name"], row["space_name"], row["n_trials"]) == ("demo", "demo-space", len(GRID) + 4)
    assert (row["n_complete"], row["n_failed"], row["n_infeasible"], row["n_pruned"]) == (len(GRID), 2, 1, 1)


def test_trials_pivot_one_column_per_parameter(filled: Store) -> None:
    trials = filled.trials("demo")
    assert len(trials) == len(GRID) + 4
    assert trials["trial_number"].tolist() == list(range(len(trials)))
    assert {"memory.kind", "model.d_model", "memory.n_experts", "train.lr", "data.corpus"} <= set(
        trials.columns
    )
    complete = filled.trials(["demo", "other"], status="complete")
    assert complete["memory.kind"].tolist() == [kind for kind, _, _ in GRID]
    assert complete["model.d_model"].tolist() == [d for _, d, _ in GRID]
    assert complete["model.d_model"].dtype == np.int64
    dense = complete[complete["memory.kind"] == "dense"]
    assert dense["memory.n_experts"].isna().all()  # a dense layer has no experts
    assert (complete["memory_kind"] == complete["memory.kind"]).all()
    assert complete["git_commit"].eq("0123abc").all() and complete["duration_s"].notna().all()
    assert filled.trials("demo", ["failed", "infeasible"])["status"].tolist() == [
        "failed",
        "infeasible",
        "failed",
    ]
    assert "memory.kind" not in filled.trials("demo", with_params=False).columns


def test_trials_of_unknown_study_are_empty(filled: Store) -> None:
    assert filled.trials("nope").empty


def test_param_summary_marks_sampled_parameters(filled: Store) -> None:
    summary = filled.param_summary("demo").set_index("name")
    assert summary.loc["memory.kind", "sampled"] and not summary.loc["data.corpus", "sampled"]
    assert summary.loc["model.d_model", "n_values"] == 2


def test_routing_summary_view(filled: Store) -> None:
    trials = filled.trials("demo", "complete").set_index("trial_number")
    switch, dense = 2, 0
    assert trials.loc[switch, "routing_layers"] == 2
    assert trials.loc[switch, "max_dropped_frac"] == pytest.approx(0.01)
    assert math.isnan(trials.loc[dense, "mean_entropy_ratio"])


def test_pareto_front_per_study(filled: Store) -> None:
    front = filled.pareto("demo")
    # flops: dense 16 d^2, switch 16 d^2 + 8 d; the second switch-128 trial (ppl 24) is dominated.
    assert front["trial_number"].tolist() == [0, 2, 1, 3]
    assert front["flops_per_token"].is_monotonic_increasing
    everything = filled.pareto("demo", front_only=False)
    # Designs, not trials: the two switch-128 runs (same config, same seed) are one design.
    assert len(everything) == len(GRID) - 1 and everything["on_front"].sum() == 4
    merged = everything[everything["first_trial"] == 3].iloc[0]
    assert merged["val_ppl"] == pytest.approx(23.0) and merged["trial_numbers"].tolist() == [3]
    best_ppl = filled.pareto("demo", x="model.d_model", y="val_ppl", x_direction="maximize")
    assert best_ppl["trial_number"].tolist() == [3]
    with pytest.raises(StoreError, match="unknown column 'nope'"):
        filled.pareto("demo", x="nope")


def test_pareto_groups_by_study(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.duckdb")
    ingest_study(store, build_study("a"))
    other = make_study("b")
    add_trial(other, kind="dense", d_model=64, val_ppl=99.0)
    ingest_study(store, other)
    per_study = store.pareto(["a", "b"])
    assert per_study.groupby("study_name").size().to_dict() == {"a": 4, "b": 1}
    pooled = store.pareto(["a", "b"], group_by=None)
    assert "b" not in set(pooled["study_name"])


def test_to_xarray_grid(filled: Store) -> None:
    ds = filled.to_xarray("demo", metric="val_ppl", dims=["memory.kind", "model.d_model"])
    assert ds["val_ppl"].dims == ("memory.kind", "model.d_model")
    assert ds["memory.kind"].values.tolist() == ["dense", "switch"]
    assert ds["model.d_model"].values.tolist() == [64, 128]
    assert ds["val_ppl"].sel({"memory.kind": "switch", "model.d_model": 128}).item() == 22.0
    assert ds["count"].sel({"memory.kind": "switch", "model.d_model": 128}).item() == 2
    mean = filled.to_xarray("demo", reduce="mean")
    assert mean["val_ppl"].sel({"memory.kind": "switch", "model.d_model": 128}).item() == 23.0
    assert ds.attrs == {"study_name": "demo", "metric": "val_ppl", "reduce": "min"}


def test_to_xarray_missing_parameter_is_a_nan_coordinate(filled: Store) -> None:
    ds = filled.to_xarray("demo", dims=["memory.n_experts"])
    experts = ds["memory.n_experts"].values
    assert experts[0] == 4 and math.isnan(experts[1])
    assert ds["count"].values.tolist() == [3, 2]


def test_to_xarray_empty_cells_and_errors(filled: Store) -> None:
    empty = filled.to_xarray("demo", status="running")
    assert empty["val_ppl"].shape == (0, 0)
    assert filled.pareto("no-such-study", x="model.d_model").empty
    with pytest.raises(StoreError, match=r"unknown column 'memory\.nope'"):
        filled.to_xarray("demo", dims=["memory.nope"])
    with pytest.raises(StoreError, match="unknown reduce"):
        filled.to_xarray("demo", reduce="sum")  # type: ignore[arg-type]


# --- DuckDB's file lock across processes -----------------------------------------------------------
# Measured with duckdb 2.0: a read-write connection locks out every other process (readers
# too); a read-only connection locks out writers but not other readers. Both sides retry.

_HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "ro")
print("locked", flush=True)
time.sleep(float(sys.argv[3]))
con.close()
"""


@contextmanager
def lock_held(path: Path, mode: str, seconds: float) -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``path`` open read-write (``"rw"``) or read-only (``"ro"``)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(path), mode, str(seconds)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        proc.wait(timeout=30)


def test_writer_waits_for_a_reader_process(filled: Store) -> None:
    with lock_held(filled.path, "ro", 0.6) as proc:
        with pytest.raises(duckdb.IOException, match="Could not set lock"):
            duckdb.connect(str(filled.path))
        start = time.monotonic()
        ingest_study(filled, build_study(), force=True)
        assert time.monotonic() - start > 0.3
        assert proc.poll() is not None  # the write went through only once the reader had let go


def test_reader_waits_for_a_writer_process(filled: Store) -> None:
    counts = filled.counts()
    with lock_held(filled.path, "rw", 0.6):
        start = time.monotonic()
        reader = Store.open(filled.path, read_only=True)
        assert reader.counts() == counts
        assert time.monotonic() - start > 0.3


def test_readers_share_the_file(filled: Store) -> None:
    with lock_held(filled.path, "ro", 30) as proc:
        start = time.monotonic()
        assert Store.open(filled.path, read_only=True).counts()["trials"] == len(GRID) + 4
        assert time.monotonic() - start < 5  # no waiting for the other reader's 30 s
        proc.terminate()


def test_lock_timeout_names_the_holder(filled: Store) -> None:
    with (
        lock_held(filled.path, "ro", 0.8) as proc,
        pytest.raises(StoreError, match=rf"stayed locked for 0\.2s by PID {proc.pid}"),
    ):
        Store.open(filled.path, lock_timeout_s=0.2)


_WRITER = """
import sys, time
from workbench.store import Store
store = Store.open(sys.argv[1])
for i in range(15):
    with store.write() as con:
        con.execute("INSERT INTO curves VALUES ('w', 0, $step, 'x', 1.0)", {"step": i})
    time.sleep(0.01)
"""


def test_reader_keeps_working_while_another_process_ingests(filled: Store) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(filled.path)], env=env)
    reader = Store.open(filled.path, read_only=True)
    seen = []
    try:
        while writer.poll() is None:
            seen.append(
                int(reader.sql("SELECT count(*) AS n FROM curves WHERE study_name = 'w'")["n"].iloc[0])
            )
            time.sleep(0.02)  # an app reads now and then, not back to back
    finally:
        assert writer.wait(timeout=60) == 0
    assert seen == sorted(seen)  # each read is a consistent snapshot, and time moves forward
    assert any(0 < n < 15 for n in seen)  # reads happened between the writer's transactions
    assert reader.curves("w")["step"].tolist() == list(range(15))


def foreign_duckdb_file(path: Path) -> str:
    """Another program's DuckDB file: its own tables, no schema_migrations; returns its digest."""
    import hashlib

    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE trials (x INTEGER); INSERT INTO trials VALUES (1); CREATE TABLE runs (y INTEGER)"
    )
    con.close()
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("read_only", [False, True])
def test_a_foreign_duckdb_file_is_refused_before_anything_is_written(tmp_path: Path, read_only: bool) -> None:
    import hashlib

    path = tmp_path / "theirs.duckdb"
    before = foreign_duckdb_file(path)
    message = f"{path} is not a workbench store (it has tables runs and trials and no schema_migrations); give another --store"
    with pytest.raises(StoreError) as info:
        Store.open(path, read_only=read_only)
    assert str(info.value) == message
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_a_new_empty_duckdb_file_and_a_real_store_still_open(tmp_path: Path) -> None:
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    assert Store.open(empty).schema_version() == latest_version()
    assert Store.open(empty).schema_version() == latest_version()  # a store now: opens again
    assert Store.open(empty, read_only=True).schema_version() == latest_version()
