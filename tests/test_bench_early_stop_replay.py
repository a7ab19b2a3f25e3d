"""bench/early_stop_replay.py replays the stored H200 pair closely enough to judge a policy by."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import early_stop_replay as replay_bench
from workbench.early_stop import EarlyStop

RUNS = Path(__file__).resolve().parents[1] / "store" / "runs" / "early-stop-2026-12-02"
# The second pair: 30 other designs (--seed 1), where a first rung at 1/9 lost the best design.
RUNS_SEED1 = RUNS.with_name("early-stop-2026-12-03-seed1")


@pytest.fixture(scope="module")
def stored() -> tuple[list[replay_bench.Design], dict, list[float]]:
    return replay_bench.load_designs(RUNS)


def test_the_replay_reproduces_the_measured_studies(stored) -> None:
    designs, summary, offsets = stored
    studies = {s["name"]: s for s in summary["studies"]}
    full = replay_bench.replay(designs, None, offsets, fixed_s=0.77)
    assert len(full.completed) == 30
    assert full.wall == pytest.approx(studies["full"]["wall_s"], rel=0.1)
    measured = EarlyStop(**summary["early_stop"], recheck=False)
    early = replay_bench.replay(designs, measured, offsets, fixed_s=0.65)
    stopped = {r["trial"] for r in studies["early-stop"]["runs"] if r["status"] == "pruned"}
    assert len(set(early.stopped) & stopped) >= len(stopped) - 1  # the timing of one peer may differ
    assert set(early.stopped) <= stopped
    assert early.wall == pytest.approx(studies["early-stop"]["wall_s"], rel=0.15)


def test_judging_again_stops_at_least_as_many_and_keeps_the_front(stored) -> None:
    designs, _, offsets = stored
    full_front = replay_bench.front(designs, list(range(30)))
    once = replay_bench.replay(designs, EarlyStop(recheck=False), offsets, fixed_s=0.65)
    again = replay_bench.replay(designs, EarlyStop(recheck=True), offsets, fixed_s=0.65)
    assert set(once.stopped) <= set(again.stopped)
    assert again.wall <= once.wall
    assert full_front <= set(again.completed)


def test_the_cli_prints_the_self_check_and_the_policies(capsys: pytest.CaptureFixture[str]) -> None:
    assert replay_bench.main([str(RUNS), "--etas", "3", "--min-peers", "0"]) == 0
    out = capsys.readouterr().out
    assert "Self-check" in out and "| first rung 1/9, eta 3, min peers 3, recheck |" in out


def test_a_first_rung_at_one_ninth_loses_a_late_starter_that_two_ninths_keeps() -> None:
    designs, _, offsets = replay_bench.load_designs(RUNS_SEED1)
    full_front = replay_bench.front(designs, [d.number for d in designs])
    early_rung = replay_bench.replay(designs, EarlyStop(min_fraction=1 / 9), offsets, fixed_s=0.64)
    lost = full_front - set(early_rung.completed)
    assert [designs[n].kind for n in lost] == ["token_table"]  # the study's best design
    assert replay_bench.front(designs, early_rung.completed) != full_front
    later_rung = replay_bench.replay(designs, EarlyStop(min_fraction=2 / 9), offsets, fixed_s=0.64)
    assert full_front <= set(later_rung.completed)
    assert later_rung.wall < 0.6 * replay_bench.replay(designs, None, offsets, fixed_s=0.82).wall


def test_a_rung_before_the_first_evaluation_is_not_made_up() -> None:
    designs, _, offsets = replay_bench.load_designs(RUNS_SEED1)
    with pytest.raises(replay_bench.Unreplayable, match="no loss before step"):
        replay_bench.replay(designs, EarlyStop(min_fraction=1 / 27), offsets, fixed_s=0.64)


def test_a_pair_run_cheapest_first_is_matched_by_design_and_replayed_in_its_order() -> None:
    """The seed-3 pair ran its early-stopping study cheapest first (--order cost), so its trial
    numbers are not the full study's: twins are matched by design, and the self-check replays
    the designs in the order they ran, stopping within two of the designs the study stopped."""
    folder = RUNS.with_name("early-stop-2026-12-03-seed3")
    designs, summary, offsets = replay_bench.load_designs(folder)
    assert summary["order"] == "cost"
    ran = sorted(designs, key=lambda d: d.early_number)
    assert [d.flops for d in ran] == sorted(d.flops for d in designs)
    assert [d.number for d in ran] != sorted(d.number for d in designs)
    early_to_full = {d.early_number: d.number for d in designs}
    studies = {s["name"]: s for s in summary["studies"]}
    stopped = {early_to_full[r["trial"]] for r in studies["early-stop"]["runs"] if r["status"] == "pruned"}
    measured = EarlyStop(**summary["early_stop"])
    replayed = replay_bench.replay(ran, measured, offsets, fixed_s=0.66)
    assert len(set(replayed.stopped) ^ stopped) <= 2
    assert replayed.wall == pytest.approx(studies["early-stop"]["wall_s"], rel=0.15)
