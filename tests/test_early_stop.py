"""Early stopping (workbench/early_stop.py): the promotion rule, the rungs a run keeps in the
optuna storage, and tiny CPU studies whose stopped runs are stored as pruned and left off the front."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import duckdb
import numpy as np
import optuna
import pandas as pd
import pytest
from conftest import write_space

from workbench import record
from workbench.early_stop import (
    EarlyStop,
    RungJudge,
    RungPoint,
    front_ranks,
    promote,
)
from workbench.errors import WorkbenchError
from workbench.pareto import dominance_mask
from workbench.space import Objective, load_space
from workbench.store import Store
from workbench.study import StudyOptions, apply_overrides, run_study

OBJECTIVES = (Objective("val_ppl"), Objective("flops_per_token"))
TOKENS = 2304  # 9 steps of the tiny space: rungs after steps 1 and 3


def decide(design: str, points: list[RungPoint], noise_sd: float = 0.0, eta: int = 3, min_peers: int = 3):
    return promote(design, points, eta=eta, min_peers=min_peers, noise_sd=noise_sd, rung="1/9")


# --------------------------------------------------------------------------- the rule


def test_rungs_are_eta_apart_and_fall_on_steps_before_the_last() -> None:
    policy = EarlyStop()
    assert policy.rungs() == (Fraction(2, 9), Fraction(2, 3))
    assert policy.rung_steps(90) == {20: "2/9", 60: "2/3"}
    assert policy.rung_steps(2) == {1: "2/3"}  # 2/9 of 2 steps rounds to step 0: no rung there
    assert EarlyStop(eta=2, min_fraction=0.1).rungs() == tuple(Fraction(k, 10) for k in (1, 2, 4, 8))
    for bad in ({"eta": 1}, {"min_fraction": 1.0}, {"method": "hyperband"}, {"noise_sd": -1.0}):
        with pytest.raises(WorkbenchError):
            EarlyStop(**bad)


def test_objectives_must_be_known_at_a_rung() -> None:
    EarlyStop().check(OBJECTIVES)
    EarlyStop().check((Objective("val_loss"),))
    with pytest.raises(WorkbenchError, match="tokens_per_s is measured only when a run ends"):
        EarlyStop().check((Objective("val_ppl"), Objective("tokens_per_s", "maximize")))
    with pytest.raises(WorkbenchError, match="no validation loss"):
        EarlyStop().check((Objective("flops_per_token"), Objective("params_total")))


def test_front_ranks_peel_non_dominated_fronts() -> None:
    rng = np.random.default_rng(0)
    costs = rng.integers(0, 6, size=(40, 2)).astype(float)  # many ties
    ranks = front_ranks(costs)
    remaining = np.ones(len(costs), dtype=bool)
    for rank in range(ranks.max() + 1):  # each front is the non-dominated set of what is left
        front = np.zeros(len(costs), dtype=bool)
        front[remaining] = dominance_mask(costs[remaining])
        assert (front == (ranks == rank)).all()
        remaining &= ~front
    assert not remaining.any()


def test_too_few_peers_go_on() -> None:
    points = [RungPoint("a", (4.0,), (1.0,)), RungPoint("b", (9.0,), (2.0,))]
    decision = decide("b", points)
    assert decision.promote and "2 of 3 designs" in decision.reason


def test_the_first_front_goes_on_whole_and_the_dominated_stop() -> None:
    # Five designs on the first front (loss falls as FLOPs rise), keep = 7 // 3 = 2: all five go on.
    front = [RungPoint(f"f{i}", (5.0 - 0.2 * i,), (float(i),)) for i in range(5)]
    dominated = [RungPoint("d1", (5.5,), (2.0,)), RungPoint("d2", (6.0,), (4.0,))]
    points = front + dominated
    assert all(decide(p.design, points).promote for p in front)
    decision = decide("d1", points)
    assert not decision.promote and decision.front == 1 and decision.cut_front == 0
    # Its cut: the lowest loss among front designs no worse on FLOPs (f0..f2, at 2.0 or less).
    assert decision.cut == pytest.approx(4.6)
    assert decision.reason.startswith("dominated at rung 1/9: val loss 5.500 vs cut 4.600")


def test_ties_are_never_split() -> None:
    # keep = 6 // 3 = 2; the first front has one design, the second two identical ones: both go on.
    points = [
        RungPoint("best", (4.0,), (1.0,)),
        RungPoint("twin-a", (4.5,), (1.0,)),
        RungPoint("twin-b", (4.5,), (1.0,)),
        *(RungPoint(f"w{i}", (6.0 + i,), (1.0,)) for i in range(3)),
    ]
    assert decide("twin-a", points).promote and decide("twin-b", points).promote
    assert not decide("w0", points).promote


def test_a_gap_inside_the_seed_noise_does_not_stop() -> None:
    points = [RungPoint("a", (4.0,), (1.0,)), RungPoint("b", (4.05,), (1.0,)), RungPoint("c", (4.5,), (1.0,))]
    band = 1.96 * 0.02 * math.sqrt(2)  # one seed each
    inside = decide("b", points, noise_sd=0.02)
    assert inside.promote and inside.band == pytest.approx(band) and "within seed noise" in inside.reason
    outside = decide("c", points, noise_sd=0.02)
    assert not outside.promote and outside.cut == 4.0 and outside.band == pytest.approx(band)
    assert not decide("b", points, noise_sd=0.0).promote


def test_designs_are_judged_on_their_seed_mean_and_the_measured_seed_noise() -> None:
    # The designs with two seeds measure the noise (pooled variance (0.09 + 0.02) / 2); "b" is
    # 0.4 off the cut "a" on a mean of two seeds: inside 1.96 * 0.235 * sqrt(1/2 + 1) = 0.56,
    # although the declared noise is zero.
    points = [
        RungPoint("a", (4.0,), (1.0,)),
        RungPoint("noisy", (5.0, 5.42426), (1.0,)),
        RungPoint("b", (4.3, 4.5), (1.0,)),
    ]
    decision = decide("b", points, noise_sd=0.0)
    assert decision.promote and decision.cut == 4.0
    assert decision.band == pytest.approx(1.96 * math.sqrt(0.055 * 1.5), rel=1e-3)
    # Without the noisy design, b's own seeds (sd 0.14) put the band at 0.34: it stops.
    assert not decide("b", [points[0], points[2], RungPoint("c", (9.0,), (1.0,))]).promote


def test_a_single_objective_keeps_the_best_third() -> None:
    points = [RungPoint(str(i), (float(i),)) for i in range(9)]
    assert [decide(p.design, points).promote for p in points] == [True] * 3 + [False] * 6


# --------------------------------------------------------------------------- rungs in the storage


def _peer(
    study: optuna.Study, design: str, seed: int, loss: float, flops: int, state: str = "RUNNING"
) -> None:
    attrs = {
        record.DESIGN_HASH: design,
        record.CONFIG: {"train": {"seed": seed}},
        record.METRICS: {"flops_per_token": flops, **({"rung": "1/9"} if state == "PRUNED" else {})},
        record.RUNGS: {"1/9": loss},
    }
    values = [math.exp(loss), flops] if state == "COMPLETE" else None
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState[state],
            values=values,
            user_attrs=attrs,
            params={},
            distributions={},
        )
    )


def _run(
    study: optuna.Study, design: str, seed: int = 0, flops: int = 100, recheck: bool = True
) -> RungJudge:
    trial = study.ask()
    trial.set_user_attr(record.DESIGN_HASH, design)
    trial.set_user_attr(record.CONFIG, {"train": {"seed": seed}})
    trial.set_user_attr(record.METRICS, {"flops_per_token": flops})
    policy = EarlyStop(noise_sd=0.0, recheck=recheck)
    return RungJudge(policy, trial, OBJECTIVES, {10: "1/9"}, tokens_per_step=64)


def _study(peers: list[tuple[str, int, float, int]]) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["minimize", "minimize"])
    for design, seed, loss, flops in peers:
        _peer(study, design, seed, loss, flops)
    return study


def test_a_run_records_its_rung_and_a_stopped_one_says_why() -> None:
    study = _study([("a", 0, 4.0, 100), ("b", 0, 4.2, 100)])
    judge = _run(study, "c")
    assert judge.at_eval(5, 9.0) is None  # not a rung step
    reason = judge.at_eval(10, 5.0)
    assert reason is not None and reason.startswith("dominated at rung 1/9: val loss 5.000 vs cut 4.000")
    attrs = judge.trial.user_attrs
    assert attrs[record.RUNGS] == {"1/9": 5.0} and attrs[record.ERROR] == reason
    assert attrs[record.METRICS] == {
        "flops_per_token": 100,
        "rung": "1/9",
        "tokens_trained": 640,
        "steps": 10,
    }


def test_a_run_passed_with_few_peers_is_judged_again_once_more_have_reported() -> None:
    # The first designs of a study reach a rung before their peers: judged again at each later
    # evaluation, such a run stops once the peers that have reported since dominate it.
    for recheck in (True, False):
        study = _study([("a", 0, 4.0, 100)])
        judge = _run(study, "c", recheck=recheck)
        assert judge.at_eval(10, 5.0) is None  # 2 designs at the rung, fewer than eta: on
        assert judge.at_eval(20, 4.6) is None  # still too few
        _peer(study, "b", 0, 4.2, 100)
        _peer(study, "d", 0, 4.1, 100)
        reason = judge.at_eval(30, 4.5)
        if not recheck:
            assert reason is None
            continue
        assert reason is not None
        assert reason.startswith(
            "judged again at step 30: dominated at rung 1/9: val loss 5.000 vs cut 4.000"
        )
        metrics = judge.trial.user_attrs[record.METRICS]
        assert (metrics["rung"], metrics["steps"], metrics["tokens_trained"]) == ("1/9", 30, 30 * 64)
        assert judge.trial.user_attrs[record.RUNGS] == {"1/9": 5.0}  # the value it was judged on


def test_a_run_judged_again_goes_on_while_it_stays_on_a_promoted_front() -> None:
    study = _study([("a", 0, 4.0, 100)])
    judge = _run(study, "c", flops=50)  # cheaper than every peer: on the first front
    assert judge.at_eval(10, 5.0) is None
    for design, loss in (("b", 4.2), ("d", 4.1), ("e", 3.9)):
        _peer(study, design, 0, loss, 100)
    assert judge.at_eval(30, 4.5) is None


def test_the_design_is_stopped_not_the_run() -> None:
    # A design with a completed seed goes on, however it compares.
    study = _study([("a", 0, 4.0, 100), ("b", 0, 4.2, 100)])
    _peer(study, "c", 0, 5.0, 100, state="COMPLETE")
    assert _run(study, "c", seed=1).at_eval(10, 5.0) is None
    # A design with a stopped seed stops at its other seeds' next rung, whatever their loss...
    study = _study([("a", 0, 4.0, 100), ("b", 0, 4.2, 100)])
    _peer(study, "c", 0, 5.0, 100, state="PRUNED")
    stopped_trial = study.get_trials()[-1].number
    reason = _run(study, "c", seed=1).at_eval(10, 1.0)
    assert reason == f"design stopped at rung 1/9 by trial {stopped_trial}"
    # ...and its queued seeds are pruned before they train.
    with pytest.raises(optuna.TrialPruned, match="not trained"):
        EarlyStop().check_design(_run(study, "c", seed=2).trial, "c")
    EarlyStop().check_design(_run(study, "a", seed=1).trial, "a")


def test_seeds_already_at_the_rung_count_in_the_design_mean() -> None:
    # Seed 0 of "c" reported 4.0 (running); seed 1 reports 4.3: mean 4.15, against "a" at 4.1 and
    # a peer "d" measuring a seed sd of 0.1; the gap 0.05 is inside the noise of the difference.
    study = _study([("a", 0, 4.1, 100), ("c", 0, 4.0, 100), ("d", 0, 6.0, 100), ("d", 1, 6.14142, 100)])
    judge = _run(study, "c", seed=1)
    decision = judge.decide("1/9", 4.3)
    assert decision.promote and "within seed noise" in decision.reason
    assert "val loss 4.150 vs cut 4.100" in decision.reason


# --------------------------------------------------------------------------- tiny CPU studies


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workbench", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=600,
    )


@pytest.fixture(scope="module")
def stopped_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The six designs of the tiny space, one worker, ``workbench run --early-stop asha``."""
    from conftest import SENTENCES, TINY_SPACE

    root = tmp_path_factory.mktemp("early-stop")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES[i % len(SENTENCES)] for i in range(600)))
    space = root / "space.py"
    space.write_text(TINY_SPACE.format(corpus=str(corpus), constraints=""))
    store = root / "wb.duckdb"
    result = _cli(
        "run", str(space), "--trials", "6", "--sampler", "grid", "--device", "cpu", "--store", str(store),
        "--no-progress", "--early-stop", "asha", "--early-stop-eta", "3", "--set", f"train.tokens={TOKENS}",
        env={"WORKBENCH_CACHE": str(root / "cache")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return store


def test_stopped_runs_are_stored_pruned_with_their_curve_and_rung(stopped_study: Path) -> None:
    con = duckdb.connect(str(stopped_study), read_only=True)
    rows = con.execute(
        "SELECT trial_number, status, optuna_state, error, val_ppl, tokens_trained, "
        "json_extract_string(metrics_json, '$.rung') FROM trials ORDER BY trial_number"
    ).fetchall()
    assert len(rows) == 6 and {r[1] for r in rows} <= {"complete", "pruned"}
    pruned = [r for r in rows if r[1] == "pruned"]
    assert pruned, "no design was stopped"
    for number, _, state, error, ppl, tokens, rung in pruned:
        assert state == "PRUNED" and ppl is None and rung in {str(r) for r in EarlyStop().rungs()}
        assert error.startswith(f"dominated at rung {rung}: val loss ")
        step = EarlyStop().rung_steps(TOKENS // (8 * 32))
        at = {v: k for k, v in step.items()}[rung]
        assert tokens == at * 8 * 32
        curve = con.execute(
            "SELECT step, metric FROM curves WHERE trial_number = ? ORDER BY step", [number]
        ).fetchall()
        assert (at, "val_loss") in curve and any(m == "train_loss" for _, m in curve)
        assert max(s for s, _ in curve) == at
    # fvcore's count waits until a run has passed its rungs: completed runs have it, stopped ones not.
    counts = con.execute("SELECT status, flops_per_token, flops_per_token_fvcore FROM trials").fetchall()
    assert all((fv == flops) if status == "complete" else fv is None for status, flops, fv in counts)
    con.close()


def test_the_front_uses_completed_designs_only(stopped_study: Path) -> None:
    store = Store.open(stopped_study, read_only=True)
    trials = store.trials("tiny")
    complete = set(trials.loc[trials["status"] == "complete", "design_hash"])
    pruned = set(trials.loc[trials["status"] == "pruned", "design_hash"])
    designs = store.designs("tiny")
    assert set(designs["design_hash"]) == complete and not (pruned & complete)
    front = store.pareto("tiny")
    assert len(front) and set(front["design_hash"]) <= complete


def test_with_repeats_a_stopped_design_trains_no_more_seeds(tiny_corpus: Path, tmp_path: Path) -> None:
    space = apply_overrides(
        load_space(write_space(tmp_path, tiny_corpus)), {"train.tokens": TOKENS}, repeats=2
    )
    store = tmp_path / "wb.duckdb"
    opts = StudyOptions(
        trials=6, store=str(store), device="cpu", sampler="grid", progress=False, early_stop=EarlyStop()
    )
    outcome = run_study(space, opts)
    assert sum(outcome.counts.values()) == 12
    trials = Store.open(store, read_only=True).trials("tiny")
    for _, runs in trials.groupby("design_hash"):
        assert len(runs) == 2 and runs["status"].nunique() == 1, runs[["trial_number", "status", "error"]]
        if runs["status"].iloc[0] == "pruned":
            later = runs.sort_values("trial_number").iloc[1]
            assert "not trained" in later["error"] and pd.isna(later["tokens_trained"])
    assert (trials["status"] == "pruned").any()
    # Every stop was outside the band its reason states.
    for error in trials.loc[trials["status"] == "pruned", "error"]:
        if error.startswith("dominated"):
            loss, cut, band = _numbers(error)
            assert loss - cut > band


def _numbers(reason: str) -> tuple[float, float, float]:
    """(loss, cut, band) of a 'dominated at rung r: val loss L vs cut C (band B; ...' reason."""
    words = reason.replace("(", " ").replace(";", " ").split()
    return (
        float(words[words.index("loss") + 1]),
        float(words[words.index("cut") + 1]),
        float(words[words.index("band") + 1]),
    )


def test_two_workers_share_the_rungs(tiny_space_file: Path, tmp_path: Path) -> None:
    store = tmp_path / "wb.duckdb"
    opts = StudyOptions(
        trials=6,
        store=str(store),
        device="cpu",
        sampler="grid",
        progress=False,
        workers=2,
        early_stop=EarlyStop(),
    )
    outcome = run_study(apply_overrides(load_space(tiny_space_file), {"train.tokens": TOKENS}), opts)
    assert sum(outcome.counts.values()) >= 6 and set(outcome.counts) <= {"complete", "pruned"}
    trials = Store.open(store, read_only=True).trials("tiny")
    pruned = trials[trials["status"] == "pruned"]
    assert len(pruned) and pruned["error"].str.startswith("dominated at rung").all()
    rungs = [json.loads(m).get("rung") for m in pruned["metrics_json"]]
    assert all(r in {str(r) for r in EarlyStop().rungs()} for r in rungs)


def test_bench_runs_both_studies_over_the_same_designs(
    tiny_space_file: Path, tiny_corpus: Path, tmp_path: Path
) -> None:
    from bench import early_stop as bench

    out = tmp_path / "bench"
    argv = ["--space", str(tiny_space_file), "--designs", "6", "--device", "cpu", "--scale", "tiny"]
    argv += ["--tokens", str(TOKENS), "--corpus", str(tiny_corpus), "--out", str(out)]
    assert bench.main(argv) == 0
    result = json.loads((out / "early_stop.json").read_text())
    full, early = result["studies"]
    assert full["counts"] == {"complete": 6} and sum(early["counts"].values()) == 6
    assert 0 <= result["front_recall"] <= 1 and result["front_designs"] >= 1
    assert 0 <= result["hypervolume_ratio"] <= 1 + 1e-9
    trials = {
        name: Store.open(out / f"{name}.duckdb", read_only=True).trials(name).sort_values("trial_number")
        for name in ("full", "early-stop")
    }
    hashes = {name: t["config_hash"].tolist() for name, t in trials.items()}
    assert sorted(hashes["full"]) == sorted(hashes["early-stop"])  # the same designs
    # The early-stopping study runs them cheapest first, as a grid study under early stopping does.
    flops = trials["early-stop"]["flops_per_token"].tolist()
    assert flops == sorted(flops)


def test_the_cli_flags_build_the_policy() -> None:
    from workbench.cli._commands import _early_stop

    assert _early_stop(None, 3, 1 / 9, 0.02, 0, True) is None  # off without --early-stop
    policy = _early_stop("asha", 4, 1 / 9, 0.02, 2, False)
    assert (policy.eta, policy.peers_needed, policy.recheck) == (4, 2, False)
    assert _early_stop("asha", 3, 1 / 9, 0.02, 0, True).peers_needed == 3  # 0: eta
    with pytest.raises(WorkbenchError, match="min_peers -1"):
        _early_stop("asha", 3, 1 / 9, 0.02, -1, True)


def test_the_cli_defaults_are_the_policy_defaults() -> None:
    import inspect

    from workbench.cli import _commands

    policy = EarlyStop()
    for command in (_commands.run, _commands.worker):
        defaults = {k: p.default for k, p in inspect.signature(command).parameters.items()}
        assert defaults["early_stop_eta"] == policy.eta
        assert defaults["early_stop_min_fraction"] == pytest.approx(policy.min_fraction)
        assert defaults["early_stop_noise_sd"] == policy.noise_sd
        assert defaults["early_stop_min_peers"] == policy.min_peers
        assert defaults["early_stop_recheck"] == policy.recheck


def test_the_bench_runs_the_policy_its_flags_name() -> None:
    from bench.early_stop import build_parser, policy_of

    assert policy_of(build_parser().parse_args([])) == EarlyStop()
    assert build_parser().parse_args([]).order == "cost"
    flags = ["--eta", "4", "--min-fraction", "1/5", "--min-peers", "2", "--noise-sd", "0.03", "--no-recheck"]
    assert policy_of(build_parser().parse_args(flags)) == EarlyStop(
        eta=4, min_fraction=0.2, min_peers=2, noise_sd=0.03, recheck=False
    )


def test_cheapest_first_orders_by_the_costs_known_before_training() -> None:
    from workbench.early_stop import cheapest_first
    from workbench.model.gpt import ModelCost
    from workbench.space import Objective, Sample

    def sample(flops: int, params: int, infeasible: bool = False) -> Sample:
        cost = ModelCost(params, params, flops, 0, 0)
        return Sample({}, None, "constraint violated: x" if infeasible else None, cost)

    samples = [sample(30, 1), sample(10, 3), sample(5, 9, infeasible=True), sample(10, 2), sample(20, 1)]
    loss = Objective("val_loss", "minimize")
    by_flops = [loss, Objective("flops_per_token", "minimize")]
    assert cheapest_first(samples, by_flops) == [1, 3, 4, 0, 2]  # ties keep their order; infeasible last
    by_params = [loss, Objective("params_total", "maximize")]
    assert cheapest_first(samples, by_params) == [1, 3, 0, 4, 2]
    assert cheapest_first(samples, [loss]) == [0, 1, 3, 4, 2]  # nothing known before training


def test_a_grid_study_under_early_stopping_queues_the_cheapest_designs_first(tiny_space_file: Path) -> None:
    from workbench.study import grid_order

    space = load_space(tiny_space_file)
    assert grid_order(space, None) == space.grid()
    ordered = grid_order(space, EarlyStop())
    assert sorted(map(repr, ordered)) == sorted(map(repr, space.grid()))
    cost_of = {
        json.dumps(point, sort_keys=True): sample.cost.flops_per_token if sample.cost else math.inf
        for point, sample in zip(space.grid(), space.iter_grid_samples(), strict=True)
    }
    costs = [cost_of[json.dumps(point, sort_keys=True)] for point in ordered]
    assert costs == sorted(costs) and len(set(costs)) > 1
