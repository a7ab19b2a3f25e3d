"""Replay an early-stopping study from a stored pair of runs, under another policy (issue 14).

``bench/early_stop.py`` keeps both studies of a measured pair: the full one (every design's
validation curve, five evaluations per run) and the early-stopping one (every design's loss at
the rungs it reached). This script replays the early-stopping study in simulated time, with the
workbench's own rule (:func:`workbench.early_stop.promote`), so a change of policy can be judged
before GPU time is spent on it:

* workers take the designs in trial order; a run that completes takes what the design's run
  took in the full study (training, evaluations, the fvcore count); a run reaches step s after
  its loop's set-up (``wall_seconds - train_seconds`` of the full study's run: CUDA graph
  capture, most of it in a worker's first run) and s/steps of its training time, and one
  stopped there ends then (the workbench counts FLOPs with fvcore only once a run has passed
  its rungs); each trial adds the fixed cost the measured study paid outside its runs
  (its worker time less the runs' time, per trial); the workers start as late after the first as
  they did in the measured early-stopping study (process start, CUDA set-up);
* a run is judged at each rung when it reaches it, against the designs that have reported there
  by then, and, under ``--recheck``, again at each of its later evaluations;
* a rung value is the early-stopping study's measured one where the design reached that rung
  there, else the full study's validation curve interpolated at the rung (linear in the step).

First the replay checks itself: replaying the measured policy must stop the designs the measured
study stopped (it prints any difference). Then it reports the designs per GPU-hour and the front
recall of each policy. A replay is a projection, not a measurement: the GPU run decides.

    python -m bench.early_stop_replay store/runs/early-stop-2026-12-02
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import lzma
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import md_table
from workbench import record
from workbench.early_stop import EarlyStop, RungPoint, promote
from workbench.pareto import dominance_mask


@dataclass
class Design:
    number: int
    kind: str
    flops: float
    steps: int
    train_seconds: float
    run_seconds: float  # the full study's run: training, evaluations, fvcore
    setup_seconds: float  # the training loop's own set-up before its steps
    final_loss: float
    curve: dict[int, float]  # the full study's validation loss by step
    measured_rungs: dict[str, float]  # the early-stopping study's rung values
    eval_steps: list[int] = field(default_factory=list)
    early_number: int = -1  # its trial number in the early-stopping study (the order it ran in)

    def rung_value(self, rung: str) -> float:
        if rung in self.measured_rungs:
            return self.measured_rungs[rung]
        step = float(Fraction(rung) * self.steps)
        xs = sorted(self.curve)
        if step < xs[0]:  # np.interp would clamp to the first evaluation: a made-up value
            raise Unreplayable(f"rung {rung}: design {self.number} has no loss before step {xs[0]}")
        return float(np.interp(step, xs, [self.curve[x] for x in xs]))


class Unreplayable(ValueError):
    """A policy whose rungs fall where the stored pair has no loss for some design."""


def load_trials(path: Path) -> list[Any]:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as scratch:
        journal = Path(scratch) / "study.journal"
        opener = lzma.open if path.suffix == ".xz" else open
        with opener(path, "rb") as f:
            journal.write_bytes(f.read())
        storage = JournalStorage(JournalFileBackend(str(journal)))
        (summary,) = storage.get_all_studies()
        return optuna.load_study(study_name=summary.study_name, storage=storage).trials


def load_designs(folder: Path) -> tuple[list[Design], dict[str, Any], list[float]]:
    """The designs, the bench's summary, and the workers' start offsets in the early-stopping study."""
    summary = json.loads((folder / "early_stop.json").read_text())
    run_seconds = {r["trial"]: float(r["seconds"]) for r in summary["studies"][0]["runs"]}
    full = load_trials(_journal(folder, "full"))
    early_trials = load_trials(_journal(folder, "early-stop"))
    # The twin of a full-study run is the early-stopping run of the same design: since
    # 2026-12-03 the early-stopping study may run the designs in another order (--order cost).
    early = {t.user_attrs[record.DESIGN_HASH]: t for t in early_trials}
    starts = sorted(t.datetime_start.timestamp() for t in early_trials if t.datetime_start)
    offsets = [s - starts[0] for s in starts[: int(summary["workers"])]]
    designs = []
    for trial in full:
        attrs = trial.user_attrs
        metrics = attrs[record.METRICS]
        curve = {int(s): float(v) for s, m, v in attrs[record.CURVE] if m == "val_loss"}
        twin = early.get(attrs[record.DESIGN_HASH])
        if twin is None:
            raise SystemExit(f"trial {trial.number}: the early-stopping study did not run this design")
        designs.append(
            Design(
                number=trial.number,
                kind=attrs[record.CONFIG]["memory"]["kind"],
                flops=float(metrics["flops_per_token"]),
                steps=int(metrics["steps"]),
                train_seconds=float(metrics["train_seconds"]),
                run_seconds=run_seconds[trial.number],
                setup_seconds=max(0.0, float(metrics["wall_seconds"]) - float(metrics["train_seconds"])),
                final_loss=float(metrics["val_loss"]),
                curve=curve,
                measured_rungs={k: float(v) for k, v in (twin.user_attrs.get(record.RUNGS) or {}).items()},
                eval_steps=sorted(curve),
                early_number=twin.number,
            )
        )
    return designs, summary, offsets


def _journal(folder: Path, name: str) -> Path:
    for suffix in (".journal.xz", ".journal"):
        if (folder / f"{name}{suffix}").is_file():
            return folder / f"{name}{suffix}"
    raise SystemExit(f"{folder}: no {name}.journal[.xz]")


@dataclass
class Outcome:
    wall: float
    completed: list[int]
    stopped: dict[int, tuple[str, int]]  # design: (rung, step it stopped at)


def replay(
    designs: Sequence[Design],
    policy: EarlyStop | None,
    offsets: Sequence[float],
    fixed_s: float,
    oracle: set[int] | None = None,
) -> Outcome:
    """Simulated time: each worker (starting at its offset) runs its design's events in order.

    With ``oracle`` (the designs to keep), no rule judges: every other design stops at the
    policy's first rung. That is the most any rule with those rungs can save at full recall."""
    rungs = [str(r) for r in policy.rungs()] if policy else []
    reported: dict[str, list[tuple[float, int]]] = {r: [] for r in rungs}  # (time, design) at a rung
    passed: dict[int, list[str]] = {}
    completed: list[int] = []
    stopped: dict[int, tuple[str, int]] = {}
    if untimed := [d.number for d in designs if d.run_seconds <= 0]:
        raise ValueError(f"designs without a run time: {untimed}")
    queue = list(designs)
    clock = [(offset, w) for w, offset in enumerate(offsets)]
    heapq.heapify(clock)
    wall = 0.0
    while queue:
        start, worker = heapq.heappop(clock)
        design = queue.pop(0)
        per_step = design.train_seconds / design.steps
        steps = {round(Fraction(r) * design.steps): r for r in rungs} if policy else {}
        events = sorted(set(steps) | {s for s in design.eval_steps if s < design.steps})
        t0 = start + fixed_s + design.setup_seconds
        end_step = design.steps
        for step in events:
            now = t0 + step * per_step
            verdict = None
            if oracle is not None:
                if step in steps and design.number not in oracle:
                    verdict = steps[step]
            elif step in steps:
                rung = steps[step]
                reported[rung].append((now, design.number))
                passed.setdefault(design.number, []).append(rung)
                verdict = _judge(designs, design, rung, reported[rung], now, policy)
            elif policy is not None and policy.recheck:
                for rung in passed.get(design.number, []):
                    verdict = _judge(designs, design, rung, reported[rung], now, policy)
                    if verdict is not None:
                        break
            if verdict is not None:
                stopped[design.number] = (verdict, step)
                end_step = step
                break
        else:
            completed.append(design.number)
        finish = (
            start + fixed_s + design.run_seconds if end_step == design.steps else t0 + end_step * per_step
        )
        wall = max(wall, finish)
        heapq.heappush(clock, (finish, worker))
    return Outcome(wall, completed, stopped)


def _judge(
    designs: Sequence[Design],
    design: Design,
    rung: str,
    at_rung: list[tuple[float, int]],
    now: float,
    policy: EarlyStop | None,
) -> str | None:
    assert policy is not None
    by_number = {d.number: d for d in designs}
    peers = {n for t, n in at_rung if t <= now}
    points = [
        RungPoint(str(n), (by_number[n].rung_value(rung),), (by_number[n].flops,)) for n in sorted(peers)
    ]
    decision = promote(
        str(design.number),
        points,
        eta=policy.eta,
        min_peers=policy.peers_needed,
        noise_sd=policy.noise_sd,
        rung=rung,
    )
    return None if decision.promote else rung


def front(designs: Sequence[Design], numbers: Sequence[int]) -> set[int]:
    chosen = [d for d in designs if d.number in set(numbers)]
    costs = np.array([(d.final_loss, d.flops) for d in chosen])
    return {d.number for d, on in zip(chosen, dominance_mask(costs), strict=True) if on}


def _row(name: str, out: Outcome, n_designs: int, full_wall: float, recall: str) -> list[Any]:
    return [
        name,
        f"{out.wall:.1f} s",
        len(out.completed),
        len(out.stopped),
        f"{3600 * n_designs / out.wall:.0f}",
        f"{full_wall / out.wall:.2f}×",
        recall,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__)
    parser.add_argument(
        "folder", type=Path, help="a bench/early_stop.py output folder (early_stop.json, journals)"
    )
    parser.add_argument("--etas", type=int, nargs="+", default=[3, 4])
    parser.add_argument("--min-peers", type=int, nargs="+", default=[0, 2], help="0: eta (the default)")
    parser.add_argument(
        "--min-fractions",
        type=Fraction,
        nargs="+",
        help="first rungs to try, as fractions of the budget (default: the measured policy's); a rung "
        "before the full study's first evaluation is replayable only where the pair measured it",
    )
    parser.add_argument(
        "--order",
        choices=["trial", "cost"],
        default="trial",
        help="replay the designs in the measured trial order, or cheapest first by active FLOPs "
        "(what bench/early_stop.py and grid studies under early stopping do since 2026-12-03)",
    )
    args = parser.parse_args(argv)
    designs, summary, offsets = load_designs(args.folder)
    workers = int(summary["workers"])
    studies = {s["name"]: s for s in summary["studies"]}
    measured = summary["early_stop"]
    base = EarlyStop(
        **{k: v for k, v in measured.items() if k in EarlyStop.__dataclass_fields__ and k != "recheck"}
    )

    def fixed_cost(study: dict[str, Any]) -> float:
        trained = sum(r["seconds"] for r in study["runs"])
        return max(0.0, (workers * study["wall_s"] - trained) / len(study["runs"]))

    fixed_full, fixed_early = fixed_cost(studies["full"]), fixed_cost(studies["early-stop"])
    full = replay(designs, None, offsets, fixed_full)
    full_front = front(designs, full.completed)
    # The stopped runs, named by their full-study trial number as every design is here.
    early_to_full = {d.early_number: d.number for d in designs}
    measured_stops = {
        early_to_full[r["trial"]] for r in studies["early-stop"]["runs"] if r["status"] == "pruned"
    }
    # A pair measured before 2026-12-03 has no "recheck": it ran without.
    as_measured = EarlyStop(**{**base.to_dict(), "recheck": bool(measured.get("recheck", False))})
    check = replay(sorted(designs, key=lambda d: d.early_number), as_measured, offsets, fixed_early)
    agree = set(check.stopped) == measured_stops
    rows = [
        [
            "full (replayed)",
            f"{full.wall:.1f} s",
            len(full.completed),
            0,
            f"{3600 * len(designs) / full.wall:.0f}",
            "1.00×",
            "—",
        ]
    ]
    if args.order == "cost":
        # Only the early-stopping study is reordered: the full study keeps the measured order, so
        # the speed-up is not inflated by the tail a cheapest-first full study would have.
        designs = sorted(designs, key=lambda d: d.flops)
    fractions = args.min_fractions or [Fraction(base.min_fraction).limit_denominator(1000)]
    for fraction, eta, min_peers, recheck in itertools.product(
        fractions, args.etas, args.min_peers, (False, True)
    ):
        policy = EarlyStop(
            **{
                **base.to_dict(),
                "eta": eta,
                "min_fraction": float(fraction),
                "min_peers": min_peers,
                "recheck": recheck,
            }
        )
        name = f"first rung {fraction}, eta {eta}, min peers {policy.peers_needed}" + (
            ", recheck" if recheck else ""
        )
        try:
            out = replay(designs, policy, offsets, fixed_early)
        except Unreplayable as exc:
            rows.append([name, "—", "—", "—", "—", "—", f"not replayable: {exc}"])
            continue
        recall = len(full_front & front(designs, out.completed)) / len(full_front)
        kept = f"{100 * recall:.0f}% ({len(full_front & set(out.completed))} of {len(full_front)})"
        rows.append(_row(name, out, len(designs), full.wall, kept))
    for fraction in fractions:
        first = EarlyStop(**{**base.to_dict(), "min_fraction": float(fraction)})
        try:
            out = replay(designs, first, offsets, fixed_early, oracle=full_front)
        except Unreplayable:
            continue
        name = f"oracle: all but the final front stop at {fraction}"
        rows.append(_row(name, out, len(designs), full.wall, "100% (by construction)"))
    print(f"Replay of {args.folder} ({summary['device']}, {len(designs)} designs, {workers} workers).")
    print(
        f"Measured: full {studies['full']['wall_s']:.1f} s, early stop {studies['early-stop']['wall_s']:.1f} s "
        f"({summary['speedup']:.2f}×); fixed cost per trial {fixed_full:.2f} s (full), {fixed_early:.2f} s (early)."
    )
    print(
        "Self-check, the measured policy replayed: "
        + (
            f"stops the same {len(measured_stops)} designs as the measured study."
            if agree
            else f"stops {sorted(check.stopped)}, the measured study stopped {sorted(measured_stops)}."
        )
    )
    print()
    print(
        md_table(
            ["policy", "wall", "completed", "stopped", "designs per GPU-hour", "speed-up", "front recall"],
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
