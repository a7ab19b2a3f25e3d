"""A tiny end-to-end study into a temporary store: run, resume, failures, constraints, ingest."""

from __future__ import annotations

from pathlib import Path

import duckdb
import optuna
import pytest
from conftest import write_space

from workbench import record
from workbench.errors import StudyMismatchError
from workbench.space import load_space
from workbench.store import Store
from workbench.store.ingest import ingest_storage, open_optuna_storage
from workbench.study import StudyOptions, apply_overrides, default_storage, run_study


def run(space_file: Path, store: Path, trials: int, sampler: str = "tpe", **kw) -> object:
    space = apply_overrides(load_space(space_file), kw.pop("overrides", {}))
    opts = StudyOptions(trials=trials, store=str(store), device="cpu", sampler=sampler, progress=False, **kw)
    return run_study(space, opts)


def table_counts(store: Path) -> dict[str, int]:
    return Store.open(store, read_only=True).counts()


def test_study_trains_measures_stores_and_resumes(tiny_space_file: Path, tmp_path: Path) -> None:
    store = tmp_path / "wb.duckdb"
    outcome = run(tiny_space_file, store, trials=3, sampler="grid")
    assert outcome.ran == 3
    con = duckdb.connect(str(store), read_only=True)
    rows = con.execute(
        "SELECT status, val_ppl, val_loss, flops_per_token, flops_per_token_fvcore, params_total, params_active, "
        "tokens_per_s, peak_mem_bytes, train_seconds, memory_kind FROM trials ORDER BY trial_number"
    ).fetchall()
    assert len(rows) == 3
    for status, ppl, loss, flops, fv_flops, p_total, p_active, tps, mem, secs, kind in rows:
        assert status == "complete"
        assert 1 < ppl < 256 and abs(ppl - 2.718281828**loss) / ppl < 1e-6
        assert flops > 0 and fv_flops == flops  # dropless routing: fvcore sees all expert matmuls
        assert p_total >= p_active > 0 and tps > 0 and mem > 0 and secs > 0
        assert kind in ("dense", "switch")
    curves = con.execute("SELECT count(*) FROM curves WHERE metric = 'val_loss'").fetchone()[0]
    assert curves >= 3
    prov = con.execute("SELECT device, seed, packages_json FROM provenance").fetchall()
    assert prov and all(d == "cpu" and s == 0 and "torch" in p for d, s, p in prov)
    con.close()

    before = table_counts(store)
    again = run(tiny_space_file, store, trials=3, sampler="grid")
    assert again.ran == 0  # the target is reached: resuming runs nothing new
    assert table_counts(store) == before
    more = run(tiny_space_file, store, trials=4, sampler="grid")
    assert more.ran == 1
    assert table_counts(store)["trials"] == 4


def test_same_config_and_seed_give_the_same_perplexity(tiny_space_file: Path, tmp_path: Path) -> None:
    fixed = {"memory.kind": "switch", "memory.n_experts": 2, "train.lr": 0.01}
    ppl = []
    for name in ("a", "b"):
        store = tmp_path / f"{name}.duckdb"
        run(tiny_space_file, store, trials=1, overrides=fixed)
        ppl.append(Store.open(store, read_only=True).sql("SELECT val_ppl FROM trials")["val_ppl"].iloc[0])
    assert ppl[0] == ppl[1]


def test_infeasible_samples_are_recorded_not_trained(tiny_corpus: Path, tmp_path: Path) -> None:
    space_file = write_space(tmp_path, tiny_corpus, constraints="\"memory.kind == 'dense'\"")
    store = tmp_path / "wb.duckdb"
    run(space_file, store, trials=6, sampler="grid")
    frame = Store.open(store, read_only=True).sql("SELECT memory_kind, status, error, val_ppl FROM trials")
    infeasible = frame[frame.status == "infeasible"]
    assert len(infeasible) and (infeasible.memory_kind == "switch").all()
    assert infeasible.error.str.contains("constraint violated").all()
    assert infeasible.val_ppl.isna().all()
    assert (frame[frame.status == "complete"].memory_kind == "dense").all()


def test_a_crashing_trial_is_recorded_as_failed_and_the_study_goes_on(
    tiny_space_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workbench.trial as trial_module

    real = trial_module.TrialRunner.train_and_measure
    calls = {"n": 0}

    def flaky(self, cfg, trial=None):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(self, cfg, trial)

    monkeypatch.setattr(trial_module.TrialRunner, "train_and_measure", flaky)
    store = tmp_path / "wb.duckdb"
    run(tiny_space_file, store, trials=2)
    frame = Store.open(store, read_only=True).sql("SELECT status, error FROM trials ORDER BY trial_number")
    assert list(frame.status) == ["failed", "complete"]
    assert "RuntimeError: CUDA out of memory (simulated)" in frame.error.iloc[0]


def test_non_finite_loss_fails_the_trial_with_its_reason(tiny_space_file: Path, tmp_path: Path) -> None:
    store = tmp_path / "wb.duckdb"
    run(tiny_space_file, store, trials=1, overrides={"train.lr": 1e6, "train.grad_clip": 0.0})
    frame = Store.open(store, read_only=True).sql("SELECT status, error FROM trials")
    assert frame.status.iloc[0] == "failed"
    assert "NonFiniteLossError" in frame.error.iloc[0]


def test_ingest_rebuilds_the_store_from_optuna_storage_idempotently(
    tiny_space_file: Path, tmp_path: Path
) -> None:
    store = tmp_path / "wb.duckdb"
    run(tiny_space_file, store, trials=2)
    counts = table_counts(store)
    fresh = tmp_path / "fresh.duckdb"
    storage = default_storage(str(store))
    for _ in range(2):
        ingest_storage(Store.open(fresh), storage)
        assert table_counts(fresh) == counts
    study = optuna.load_study(
        study_name="tiny",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage)),
    )
    assert study.user_attrs[record.STUDY_SPACE]["name"] == "tiny"


def test_outcome_counts_trials_by_status(tiny_space_file: Path, tmp_path: Path) -> None:
    outcome = run(tiny_space_file, tmp_path / "wb.duckdb", trials=2)
    assert outcome.counts == {"complete": 2}


def test_a_design_the_study_already_trained_reuses_its_results(tiny_space_file: Path, tmp_path: Path) -> None:
    """Every sample is the same design here: the first trial trains, the others reuse it."""
    fixed = {"memory.kind": "dense", "train.lr": 0.01}
    store = tmp_path / "wb.duckdb"
    outcome = run(tiny_space_file, store, trials=3, sampler="random", overrides=fixed)
    assert outcome.ran == 3 and outcome.counts == {"complete": 3}  # type: ignore[attr-defined]
    frame = Store.open(store, read_only=True).sql(
        "SELECT trial_number, val_ppl, config_hash, json_extract(metrics_json, '$.duplicate_of') AS twin "
        "FROM trials ORDER BY trial_number"
    )
    assert frame.config_hash.nunique() == 1 and frame.val_ppl.nunique() == 1
    assert frame.twin.isna().iloc[0] and [int(t) for t in frame.twin.iloc[1:]] == [0, 0]
    curves = Store.open(store, read_only=True).sql(
        "SELECT trial_number, count(*) AS n FROM curves GROUP BY 1 ORDER BY 1"
    )
    assert curves.n.nunique() == 1 and len(curves) == 3  # the reused trials carry the curve too

    retrained = tmp_path / "retrained.duckdb"
    run(tiny_space_file, retrained, trials=2, sampler="random", overrides=fixed, retrain_duplicates=True)
    twins = Store.open(retrained, read_only=True).sql(
        "SELECT json_extract(metrics_json, '$.duplicate_of') AS twin FROM trials"
    )
    assert twins.twin.isna().all()


def optuna_uid(store: Path, name: str = "tiny") -> str:
    study = optuna.load_study(study_name=name, storage=open_optuna_storage(default_storage(str(store))))
    return str(study.user_attrs[record.STUDY_UID])


def test_a_study_gets_a_uid_once_and_keeps_it_when_resumed(
    tiny_space_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workbench.store.ingest as ingest_module

    per_trial: list[str | None] = []
    real = ingest_module.ingest_trial

    def recording(*args, **kwargs):
        per_trial.append(kwargs.get("study_uid"))
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest_module, "ingest_trial", recording)
    store = tmp_path / "wb.duckdb"
    run(tiny_space_file, store, trials=1)
    uid = optuna_uid(store)
    assert len(uid) == 32
    run(tiny_space_file, store, trials=2)
    assert optuna_uid(store) == uid
    assert Store.open(store, read_only=True).studies()["study_uid"].tolist() == [uid]
    assert per_trial == [uid, uid]  # each trial's own write is checked against the stored study


def test_a_new_study_under_a_stored_name_is_refused_before_it_trains(
    tiny_space_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "wb.duckdb"
    run(tiny_space_file, store, trials=2)
    old_uid = optuna_uid(store)
    before = {
        table: Store.open(store, read_only=True).sql(f"SELECT * FROM {table} ORDER BY ALL").to_csv()
        for table in table_counts(store)
    }
    journal = Path(default_storage(str(store)))
    journal.unlink()  # the user deletes the journal and runs the study again under the same name

    import workbench.trial as trial_module

    trained: list[object] = []
    message = r"different optuna study under the name 'tiny'.*workbench drop tiny"
    with monkeypatch.context() as patch, pytest.raises(StudyMismatchError, match=message):
        patch.setattr(trial_module.TrialRunner, "train_and_measure", lambda *a, **k: trained.append(a))
        run(tiny_space_file, store, trials=1)
    assert trained == []  # refused when the study opened, not after a trial trained
    reader = Store.open(store, read_only=True)
    assert {table: reader.sql(f"SELECT * FROM {table} ORDER BY ALL").to_csv() for table in before} == before
    assert reader.studies()["study_uid"].tolist() == [old_uid]
    # Refused before the study was created: the new journal is left without it.
    assert optuna.get_all_study_names(open_optuna_storage(journal)) == []

    assert Store.open(store).drop_study("tiny")["trials"] == 2
    outcome = run(tiny_space_file, store, trials=1)
    assert outcome.ran == 1  # type: ignore[attr-defined]
    new_uid = optuna_uid(store)
    assert new_uid != old_uid
    assert Store.open(store, read_only=True).studies()["study_uid"].tolist() == [new_uid]
    assert table_counts(store)["trials"] == 1
