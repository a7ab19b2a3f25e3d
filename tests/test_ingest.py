"""workbench.store.ingest: optuna studies -> DuckDB rows, idempotently."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
from helpers_store import GRID, add_trial, build_study, contract_attrs, downgrade_to_001, make_study
from optuna.trial import TrialState

from workbench.errors import StoreError, StudyMismatchError
from workbench.store import Store
from workbench.store.ingest import (
    JournalRepaired,
    check_study_identity,
    flatten_config,
    ingest_storage,
    ingest_study,
    ingest_trial,
    journal_path,
    mask_url,
    open_optuna_storage,
    rdb_url,
    repair_journal,
    study_objectives,
    trial_status,
)

N_TRIALS = len(GRID) + 4


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "store.duckdb")


def test_ingest_twice_adds_no_rows(store: Store) -> None:
    study = build_study()
    first = ingest_study(store, study)
    counts = store.counts()
    assert first.n_trials == first.n_written == N_TRIALS
    assert counts["trials"] == N_TRIALS and counts["studies"] == 1
    assert counts["provenance"] == N_TRIALS - 1  # the hard-crashed trial has none

    again = ingest_study(store, study)
    assert (again.n_written, again.n_unchanged) == (0, N_TRIALS)
    forced = ingest_study(store, study, force=True)
    assert forced.n_written == N_TRIALS
    assert store.counts() == counts


def test_report_counts_statuses(store: Store) -> None:
    report = ingest_study(store, build_study())
    assert report.statuses == {"complete": len(GRID), "failed": 2, "infeasible": 1, "pruned": 1}
    assert "demo:" in report.summary()


def test_running_trial_is_updated_when_it_completes(store: Store) -> None:
    study = make_study()
    trial = study.ask()
    attrs = contract_attrs(kind="switch", d_model=64)
    trial.set_user_attr("wb.config", attrs["wb.config"])
    trial.set_user_attr("wb.curve", [[10, "train_loss", 5.0]])
    ingest_study(store, study)
    row = store.trials("demo").iloc[0]
    assert (row["status"], row["optuna_state"]) == ("running", "RUNNING")
    assert row["val_ppl"] is None or math.isnan(row["val_ppl"])
    assert len(store.curves("demo")) == 1

    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    study.tell(trial, [19.5, 1000.0])
    report = ingest_study(store, study)
    assert report.n_written == 1
    row = store.trials("demo").iloc[0]
    assert (row["status"], row["optuna_state"], row["val_ppl"]) == ("complete", "COMPLETE", 20.0)
    assert json.loads(row["objective_values_json"]) == {"val_ppl": 19.5, "flops_per_token": 1000.0}
    assert len(store.curves("demo")) == len(attrs["wb.curve"])
    assert store.counts()["trials"] == 1


def test_enqueued_trials_are_not_stored_until_they_start(store: Store) -> None:
    study = build_study()
    study.enqueue_trial({"memory.kind": "dense"})
    report = ingest_study(store, study)
    assert (report.n_trials, report.n_waiting) == (N_TRIALS, 1)
    assert store.counts()["trials"] == N_TRIALS
    assert store.studies()["n_trials"].iloc[0] == N_TRIALS


def test_failed_and_infeasible_trials_keep_status_and_error(store: Store) -> None:
    ingest_study(store, build_study())
    trials = store.trials("demo").set_index("trial_number")
    failed, infeasible, pruned, crashed = (trials.loc[len(GRID) + i] for i in range(4))
    assert (failed["status"], failed["error"]) == ("failed", "CUDA OOM")
    assert infeasible["status"] == "infeasible"
    assert "does not divide" in infeasible["error"]
    assert math.isnan(infeasible["val_ppl"])
    assert infeasible["flops_per_token"] == 16 * 128 * 128 + 8 * 128  # analytic cost is known
    assert pruned["status"] == "pruned"
    assert (crashed["status"], crashed["optuna_state"], crashed["error"]) == ("failed", "FAIL", "worker lost")


def test_params_long_form_has_fixed_fields_with_sampled_flag(store: Store) -> None:
    ingest_study(store, build_study())
    rows = store.sql(
        "SELECT name, value_json, value_num, value_str, sampled FROM params "
        "WHERE study_name = $s AND trial_number = $n ORDER BY name",
        {"s": "demo", "n": 2},
    ).set_index("name")
    assert bool(rows.loc["memory.kind", "sampled"]) and bool(rows.loc["model.d_model", "sampled"])
    assert not rows.loc["memory.n_experts", "sampled"] and not rows.loc["data.corpus", "sampled"]
    assert rows.loc["memory.n_experts", "value_num"] == 4
    assert rows.loc["data.corpus", "value_str"] == "kjv"
    assert rows.loc["train.compile", "value_num"] == 0  # booleans count as 0/1
    assert json.loads(rows.loc["train.compile", "value_json"]) is False
    config = contract_attrs(kind="switch", d_model=64)["wb.config"]
    assert set(rows.index) == set(flatten_config(config))


def test_sampled_param_outside_the_config_is_kept(store: Store) -> None:
    study = build_study()
    ingest_study(store, study)
    rows = store.sql("SELECT name, sampled FROM params WHERE trial_number = $n", {"n": N_TRIALS - 1})
    assert rows.to_dict("records") == [{"name": "memory.kind", "sampled": True}]


def test_routing_curves_and_provenance_rows(store: Store) -> None:
    ingest_study(store, build_study())
    switch = 2
    routing = store.routing("demo", switch)
    assert routing["layer"].tolist() == [0, 1]
    assert routing["entropy_ratio"].iloc[0] == pytest.approx(1.28 / 1.386)
    load = store.routing_load("demo", switch)
    assert len(load) == 8 and load.groupby("layer")["load"].sum().tolist() == pytest.approx([1.0, 1.0])
    curves = store.curves("demo", [switch], metrics=["train_loss"])
    assert curves["step"].tolist() == [10, 20]
    prov = store.provenance("demo", [switch]).iloc[0]
    assert (prov["git_commit"], prov["seed"], prov["device"]) == ("0123abc", 7, "cpu")
    assert json.loads(prov["packages_json"])["optuna"] == "5.0.0"


def test_non_finite_values_are_null_not_errors(store: Store) -> None:
    study = make_study()
    add_trial(study, kind="dense", d_model=64, val_ppl=float("inf"))
    attrs = contract_attrs(kind="dense", d_model=64)
    attrs["wb.metrics"]["val_loss"] = float("nan")
    attrs["wb.curve"] = [[1, "train_loss", float("nan")]]
    study.add_trial(optuna.trial.create_trial(values=[1.0, 2.0], user_attrs=attrs))
    ingest_study(store, study)
    trials = store.trials("demo").set_index("trial_number")
    assert trials.loc[0, "val_ppl"] == math.inf
    assert json.loads(trials.loc[0, "objective_values_json"])["val_ppl"] is None
    assert math.isnan(trials.loc[1, "val_loss"])
    assert store.sql("SELECT count(*) AS n FROM curves WHERE value IS NULL")["n"].iloc[0] == 1


def test_malformed_curve_names_the_trial(store: Store) -> None:
    study = make_study()
    study.add_trial(optuna.trial.create_trial(values=[1.0, 2.0], user_attrs={"wb.curve": [[1, "x"]]}))
    with pytest.raises(StoreError, match=r"trial 0: wb.curve rows"):
        ingest_study(store, study)


def test_ingest_trial_labels_values_from_the_stored_study(store: Store) -> None:
    study = build_study()
    ingest_study(store, study)
    assert ingest_trial(store, "demo", study.trials[0]) == "complete"
    row = store.trials("demo", "complete").iloc[0]
    assert set(json.loads(row["objective_values_json"])) == {"val_ppl", "flops_per_token"}


def test_status_and_objectives_fallbacks() -> None:
    plain = optuna.create_study()
    assert study_objectives(plain) == [{"name": "value", "direction": "minimize"}]
    study = make_study()
    running = study.ask()
    running.set_user_attr("wb.status", "complete")  # written just before tell: not finished yet
    assert trial_status(study.trials[-1]) == "running"
    trial = add_trial(study, kind="dense", d_model=64, status="interrupted", state=TrialState.FAIL)
    assert trial_status(trial) == "interrupted"


def test_open_optuna_storage(tmp_path: Path) -> None:
    path = tmp_path / "s.journal"
    assert isinstance(open_optuna_storage(path), optuna.storages.JournalStorage)
    assert isinstance(open_optuna_storage(f"journal://{path}"), optuna.storages.JournalStorage)
    assert open_optuna_storage("sqlite:///x.db") == "sqlite:///x.db"
    storage = optuna.storages.InMemoryStorage()
    assert open_optuna_storage(storage) is storage
    with pytest.raises(StoreError, match="names a file"):
        open_optuna_storage("journal://")


def test_ingest_storage_from_a_journal_file(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "studies.journal"
    storage = open_optuna_storage(path)
    build_study("a", storage)
    build_study("b", storage)
    reports = ingest_storage(store, path)
    assert sorted(r.study_name for r in reports) == ["a", "b"]
    studies = store.studies().set_index("study_name")
    assert studies.loc["a", "storage_url"] == str(path)
    assert studies.loc["a", "space_name"] == "demo-space"
    assert studies.loc["b", "n_complete"] == len(GRID)
    assert [r.n_written for r in ingest_storage(store, path, ["a"])] == [0]
    with pytest.raises(StoreError, match="studies there: a, b"):
        ingest_storage(store, path, ["nope"])


# --- study identity ------------------------------------------------------------------------------


def snapshot(store: Store) -> dict[str, str]:
    """Every row of every table, as text (NaN compares equal): what a refused write must leave as it was."""
    return {table: store.sql(f"SELECT * FROM {table} ORDER BY ALL").to_csv() for table in store.counts()}


def test_a_different_optuna_study_under_a_stored_name_is_refused(store: Store) -> None:
    old = build_study(uid="old-uid")
    ingest_study(store, old, "old.journal")
    before = snapshot(store)
    new = make_study(uid="new-uid")  # same name, fewer trials: it would overwrite trial 0 and keep the rest
    add_trial(new, kind="dense", d_model=128, val_ppl=99.0)

    message = (
        r"holds rows of a different optuna study under the name 'demo' \(stored: uid old-uid from "
        r"old\.journal; being written: uid new-uid from new\.journal\).*nothing was written.*"
        r"--study-name NEW.*workbench drop demo --store "
    )
    with pytest.raises(StudyMismatchError, match=message):
        ingest_study(store, new, "new.journal")
    with pytest.raises(StudyMismatchError, match="workbench drop demo"):
        ingest_trial(store, "demo", new.trials[0], study_uid="new-uid")
    with pytest.raises(StudyMismatchError, match="being written: uid new-uid from an unknown storage"):
        check_study_identity(store, "demo", "new-uid")
    assert snapshot(store) == before

    assert ingest_trial(store, "demo", old.trials[0], study_uid="old-uid") == "complete"
    assert ingest_study(store, old).n_unchanged == N_TRIALS
    assert store.drop_study("demo")["trials"] == N_TRIALS
    assert ingest_study(store, new, "new.journal").n_written == 1
    row = store.studies().iloc[0]
    assert (row["study_uid"], row["storage_url"], row["n_stored"]) == ("new-uid", "new.journal", 1)


def test_an_unknown_uid_on_either_side_is_not_checked_and_is_filled_in(store: Store) -> None:
    ingest_study(store, build_study())  # a study created outside the workbench: no uid
    assert store.studies()["study_uid"].isna().all()
    ingest_study(store, build_study(uid="first"))
    assert store.studies()["study_uid"].tolist() == ["first"]
    ingest_study(store, build_study())  # unknown again: passes, and keeps the known uid
    ingest_trial(store, "demo", build_study().trials[0])
    assert store.studies()["study_uid"].tolist() == ["first"]
    with pytest.raises(StudyMismatchError):
        ingest_study(store, build_study(uid="second"))


def test_a_store_from_before_study_uids_still_ingests(store: Store) -> None:
    ingest_study(store, build_study())
    downgrade_to_001(store.path)
    migrated = Store.open(store.path)
    report = ingest_study(migrated, build_study(uid="known"))
    assert (report.n_written, report.n_unchanged) == (0, N_TRIALS)
    assert migrated.studies()["study_uid"].tolist() == ["known"]
    with pytest.raises(StudyMismatchError):
        ingest_study(migrated, build_study(uid="other"))


def test_a_deleted_journal_then_a_new_study_of_the_same_name(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "studies.journal"
    build_study("a", open_optuna_storage(path), uid="a-1")
    build_study("b", open_optuna_storage(path), uid="b-1")
    ingest_storage(store, path)
    path.unlink()
    again = make_study("a", open_optuna_storage(path), uid="a-2")
    add_trial(again, kind="switch", d_model=64, val_ppl=11.0)
    before = snapshot(store)
    with pytest.raises(
        StudyMismatchError, match=f"stored: uid a-1 from {path}; being written: uid a-2 from {path}"
    ):
        ingest_storage(store, path)
    assert snapshot(store) == before

    store.drop_study("a")
    assert [r.n_written for r in ingest_storage(store, path)] == [1]
    trials = store.trials(["a", "b"], with_params=False)
    assert trials.groupby("study_name").size().to_dict() == {"a": 1, "b": N_TRIALS}
    assert store.trials("a")["val_ppl"].tolist() == [11.0]  # the new study's trial, nothing of the old


# --- crash-proof storages (docs/RELIABILITY.md) ----------------------------------------------------


def test_a_torn_journal_tail_is_moved_aside_and_the_journal_works(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "s.journal"
    build_study("a", open_optuna_storage(path))
    whole = path.read_bytes()
    path.write_bytes(whole[:-7])  # a crash cut the last write short
    with pytest.warns(JournalRepaired, match="last line was torn"):
        storage = open_optuna_storage(path)
    (backup,) = tmp_path.glob("s.journal.torn-*")
    last_start = whole.rfind(b"\n", 0, len(whole) - 1) + 1
    assert backup.read_bytes() == whole[last_start:-7]
    assert path.read_bytes() == whole[:last_start]
    build_study("b", storage)  # appends onto whole lines again
    assert sorted(r.study_name for r in ingest_storage(store, path)) == ["a", "b"]


def test_a_line_appended_onto_a_torn_tail_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "s.journal"
    build_study("a", open_optuna_storage(path))
    whole = path.read_bytes()
    path.write_bytes(whole[:-7] + b'{"op_code":0}\n')
    with pytest.warns(JournalRepaired):
        open_optuna_storage(path)
    assert path.read_bytes() == whole[: whole.rfind(b"\n", 0, len(whole) - 1) + 1]


def test_a_whole_journal_is_not_touched(tmp_path: Path) -> None:
    path = tmp_path / "s.journal"
    build_study("a", open_optuna_storage(path))
    before = path.read_bytes()
    assert repair_journal(path) is None and repair_journal(tmp_path / "absent.journal") is None
    assert path.read_bytes() == before and not list(tmp_path.glob("*.torn-*"))


def test_a_corrupt_line_in_the_middle_of_a_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.journal"
    build_study("a", open_optuna_storage(path))
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = b"garbage\n"
    path.write_bytes(b"".join(lines))
    before = path.read_bytes()
    with pytest.raises(StoreError, match=rf"optuna journal {path}: line 3 of {len(lines)} is not valid JSON"):
        open_optuna_storage(path)
    assert path.read_bytes() == before


def test_a_journal_in_an_unwritable_folder_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"cannot create the optuna journal .*give a --storage"):
        open_optuna_storage(tmp_path / "missing-folder" / "s.journal")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nosuchdb://host/db", "unknown database 'nosuchdb'"),
        ("postgresql+nosuchdriver://u:pw@host/db", "unknown database"),
        ("mysql+mysqldb://u:pw@host/db", "driver is not installed"),
        ("sqlite:////no/such/folder/x.db", "folder /no/such/folder does not exist"),
    ],
)
def test_an_unopenable_rdb_url_is_a_store_error(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as info:
        open_optuna_storage(url)
    assert "pw" not in str(info.value)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    path.write_text("not a database, just text that is long enough to have a header" * 4)
    with pytest.raises(StoreError, match=r"cannot open .* as SQLite"):
        open_optuna_storage(f"sqlite:///{path}")


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://user:secret@host/db", "postgresql://user:***@host/db"),
        (
            "postgresql+psycopg2://user:p@ss:w@host:5432/db?x=1",
            "postgresql+psycopg2://user:***@host:5432/db?x=1",
        ),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        ("sqlite:////abs/x.db", "sqlite:////abs/x.db"),
        ("store/workbench.optuna.journal", "store/workbench.optuna.journal"),
    ],
)
def test_mask_url_hides_only_the_password(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_a_storage_password_is_neither_stored_nor_printed(store: Store) -> None:
    url = "postgresql://user:secret@host/db"
    ingest_study(store, build_study("a", uid="1" * 32), url)
    assert store.studies()["storage_url"].tolist() == ["postgresql://user:***@host/db"]
    with pytest.raises(StudyMismatchError) as info:
        check_study_identity(store, "a", "2" * 32, "mysql://me:hunter2@other/db")
    assert "secret" not in str(info.value) and "hunter2" not in str(info.value)
    assert "postgresql://user:***@host/db" in str(info.value) and "mysql://me:***@other/db" in str(info.value)


def test_a_bare_postgresql_url_names_the_psycopg2_driver() -> None:
    assert rdb_url("postgresql://u:pw@h:5432/db") == "postgresql+psycopg2://u:pw@h:5432/db"
    assert rdb_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert rdb_url("sqlite:///x.db") == "sqlite:///x.db"
    assert open_optuna_storage("postgresql://u:pw@h:5432/db") == "postgresql+psycopg2://u:pw@h:5432/db"
    assert (
        journal_path("journal:///a/b.journal") == "/a/b.journal" and journal_path("x.journal") == "x.journal"
    )
    assert journal_path("postgresql://h/db") is None


def test_an_ingest_killed_mid_way_loses_and_doubles_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each trial's rows are replaced in one transaction: a crash rolls back the trial it was
    writing, the trials before it stay, and the next ingest writes the rest once."""
    import workbench.store.ingest as ingest_module

    study = build_study()
    clean = Store.open(tmp_path / "clean.duckdb")
    ingest_study(clean, study)
    real, calls = ingest_module._write_trial, {"n": 0}

    def crashing(con, study_name, trial, names):
        calls["n"] += 1
        if calls["n"] == 4:
            real(con, study_name, trial, names)  # half of the trial's rows written, then the crash
            raise KeyboardInterrupt
        return real(con, study_name, trial, names)

    monkeypatch.setattr(ingest_module, "BATCH_HOLD_S", 0.0)  # one trial per transaction
    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(ingest_module, "_write_trial", crashing)
        ingest_study(store, study)
    assert store.counts()["trials"] == 3
    again = ingest_study(store, study)
    assert again.n_written == N_TRIALS - 3
    assert store.counts() == clean.counts()
    for table in ("trials", "params", "curves", "provenance"):
        query = (
            f"SELECT * EXCLUDE (ingested_at) FROM {table} ORDER BY ALL"
            if table == "trials"
            else (f"SELECT * FROM {table} ORDER BY ALL")
        )
        assert store.sql(query).equals(clean.sql(query)), table
