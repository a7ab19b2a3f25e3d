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


# --- one target, dead workers, sessions (workbench.workers) ----------------------------------------


def journal_of(store: Path) -> optuna.Study:
    return optuna.load_study(study_name="tiny", storage=open_optuna_storage(default_storage(str(store))))


def test_a_trial_whose_worker_died_is_failed_and_its_run_queued_again(
    tiny_space_file: Path, tmp_path: Path
) -> None:
    """A first run (its other seed already queued) is claimed by a process that is then SIGKILLed:
    the next run fails it with the reason, trains its retry, and does not queue the seed twice."""
    import subprocess
    import sys

    from workbench.study import join_study, open_study
    from workbench.workers import StudyLock

    store = tmp_path / "wb.duckdb"
    space = apply_overrides(load_space(tiny_space_file), {}, repeats=2)
    opts = StudyOptions(trials=1, store=str(store), device="cpu", progress=False)
    journal = default_storage(str(store))
    study = open_study(space, opts, journal, Store.open(store))
    join_study(study, space, opts, StudyLock(journal, "tiny"))
    design = {"memory.kind": "dense", "train.lr": 0.01}
    study.enqueue_trial(design, user_attrs={record.REPLICATE: 0})
    study.enqueue_trial(design, user_attrs={record.REPLICATE: 1, record.TUNED: {}, record.FIRST_RUN: 0})
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, signal, sys, optuna\n"
            "from workbench.store.ingest import open_optuna_storage\n"
            "from workbench.workers import owner_record\n"
            "study = optuna.load_study(study_name='tiny', storage=open_optuna_storage(sys.argv[1]))\n"
            "trial = study.ask()\n"
            "trial.set_user_attr('wb.owner', owner_record())\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n",
            journal,
        ],
        timeout=120,
    )
    assert killed.returncode == -9

    outcome = run_study(space, opts)
    assert (outcome.target, outcome.designs, outcome.ran) == (1, 1, 2)
    frame = Store.open(store, read_only=True).sql(
        "SELECT trial_number, status, error, replicate, optuna_state FROM trials ORDER BY trial_number"
    )
    assert list(frame.status) == ["died", "complete", "complete"]
    assert frame.error.iloc[0].startswith("worker died (pid ") and frame.error.iloc[0].endswith(" is gone)")
    assert list(frame.replicate) == [0, 1, 0]  # the seed was not queued again by the retry
    retry = journal_of(store).trials[2]
    assert retry.params == design and retry.user_attrs[record.RETRY_OF] == 0
    assert retry.user_attrs[record.RETRIES] == 1


def test_an_interrupted_trial_does_not_count_and_its_design_runs_on_resume(
    tiny_space_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workbench.trial as trial_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    store = tmp_path / "wb.duckdb"
    with monkeypatch.context() as patch:
        patch.setattr(trial_module.TrialRunner, "train_and_measure", interrupted)
        outcome = run(tiny_space_file, store, trials=1)
    assert outcome.interrupted and outcome.ran == 0  # type: ignore[attr-defined]
    first, queued = journal_of(store).trials
    assert first.user_attrs[record.STATUS] == "interrupted"
    assert queued.state == optuna.trial.TrialState.WAITING and queued.params == first.params
    assert queued.user_attrs[record.RETRIES] == 0  # an interrupt is not a retry

    outcome = run(tiny_space_file, store, trials=1)
    assert outcome.ran == 1 and outcome.designs == 1  # type: ignore[attr-defined]
    assert journal_of(store).trials[1].params == first.params


def test_a_queued_design_past_the_target_is_skipped_not_trained(
    tiny_space_file: Path, tmp_path: Path
) -> None:
    store = tmp_path / "wb.duckdb"
    space = apply_overrides(load_space(tiny_space_file), {"memory.kind": "dense"}, repeats=2)
    opts = StudyOptions(trials=1, store=str(store), device="cpu", progress=False)
    run_study(space, opts)
    study = journal_of(store)
    # Once the target is reached, a design queued ahead of a seed: optuna hands out the design first.
    study.enqueue_trial({"train.lr": 0.01})
    study.enqueue_trial({"train.lr": 0.003}, user_attrs={record.REPLICATE: 1, record.TUNED: {}})
    outcome = run_study(space, opts)
    assert outcome.designs == 1 and outcome.ran == 1
    frame = Store.open(store, read_only=True).sql("SELECT status, error FROM trials ORDER BY trial_number")
    assert list(frame.status) == ["complete", "complete", "skipped", "complete"]
    assert frame.error.iloc[2].startswith("not trained: the study had reached its target of 1 designs")


def test_a_resumed_run_continues_the_sampler(
    tiny_space_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workbench.study as study_module
    from workbench.workers import session_seed

    seeds: list[int] = []
    real = study_module.make_sampler

    def recording(name: str, space: object, seed: int) -> object:
        seeds.append(seed)
        return real(name, space, seed)  # type: ignore[arg-type]

    monkeypatch.setattr(study_module, "make_sampler", recording)
    store = tmp_path / "wb.duckdb"
    run(tiny_space_file, store, trials=1, sampler="random", seed=3)
    run(tiny_space_file, store, trials=2, sampler="random", seed=3)
    # open_study's sampler (the seed), then join_study's (the session's): 3 itself, then a new stream.
    assert seeds == [3, 3, 3, session_seed(3, 1)] and session_seed(3, 1) != 3
    assert journal_of(store).user_attrs[record.STUDY_SESSIONS] == 2


def test_two_concurrent_runs_share_one_target(tiny_space_file: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    store = tmp_path / "wb.duckdb"
    command = [sys.executable, "-m", "workbench", "run", str(tiny_space_file), "--trials", "3"]
    command += ["--store", str(store), "--device", "cpu", "--no-progress"]
    runs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    for proc in runs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    study = journal_of(store)
    counted = [t for t in study.trials if t.user_attrs.get(record.STATUS) == "complete"]
    assert len(counted) == 3
    assert study.user_attrs[record.STUDY_TARGET] == 3 and study.user_attrs[record.STUDY_SESSIONS] == 2
    owners = {t.user_attrs[record.OWNER]["pid"] for t in counted}
    assert owners <= {proc.pid for proc in runs}
    frame = Store.open(store, read_only=True).sql("SELECT status FROM trials WHERE status = 'complete'")
    assert len(frame) == 3
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]


def test_a_worker_whose_trial_was_taken_for_dead_drops_it_and_goes_on(
    tiny_space_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process fails the trial mid-run (its heartbeat stalled past the grace period): the
    worker warns, drops the result and trains the re-queued run instead of crashing."""
    import workbench.trial as trial_module
    from workbench import workers

    real = trial_module.TrialRunner.train_and_measure
    reaped: list[int] = []

    def stalled(self, cfg, trial=None):
        if trial is not None and not reaped:
            frozen = trial.study._storage.get_trial(trial._trial_id)
            workers._fail_died(trial.study, frozen, "worker died: no heartbeat for 30 s", max_retry=2)
            reaped.append(trial.number)
        return real(self, cfg, trial)

    monkeypatch.setattr(trial_module.TrialRunner, "train_and_measure", stalled)
    store = tmp_path / "wb.duckdb"
    with pytest.warns(workers.WorkerDied, match="failed by another process while this worker ran it"):
        outcome = run(tiny_space_file, store, trials=1)
    assert outcome.designs == 1 and outcome.ran == 1  # type: ignore[attr-defined]
    frame = Store.open(store, read_only=True).sql("SELECT status, error FROM trials ORDER BY trial_number")
    assert list(frame.status) == ["died", "complete"]
