"""Early stopping for multi-objective studies: asynchronous successive halving over Pareto fronts.

optuna prunes single-objective studies only (``trial.report`` takes one value; optuna issue
#3450), so the workbench keeps its own rungs, as ASHA does (Li et al., "A System for Massively
Parallel Hyperparameter Tuning", MLSys 2020). A run evaluates at fractions of its token budget,
the rungs ``min_fraction * eta**i`` below 1 (2/9 and 2/3 for eta 3), and records its validation
loss there in the trial user attr ``wb.rungs`` (``{"2/9": 5.12}``). Every worker reads the
others' from the study, and a run is judged against the designs that have reported at its rung
so far: no barrier, so any number of workers share one study.

The rule at a rung (:func:`promote`):

1. The peers are the designs with a value at the rung (running, complete or stopped), one point
   each: the mean of its seeds' rung losses, and the objectives known before training (the
   analytic ``flops_per_token`` and ``params_*``), signed so that lower is better. The loss
   stands for a ``val_loss`` or ``val_ppl`` objective (perplexity is monotone in it).
2. With fewer than ``min_peers`` designs at the rung (default ``eta``), the run goes on.
3. Non-dominated sorting ranks the designs into fronts. ``keep = max(1, n // eta)``; the
   promoted fronts are the first ones up to the front where the count reaches ``keep``. Whole
   fronts: the first front always goes on, and designs that tie are never split.
4. A design off the promoted fronts has a cut: the lowest rung loss among the designs of the last
   promoted front and later ones that are no worse on every other objective (with a loss below
   it, none of them would dominate it). It stops only when its loss exceeds the cut by more than
   the seed noise of the difference, ``1.96 * sd * sqrt(1/n + 1/n_cut)`` (n, n_cut: the seeds
   behind each mean). ``sd`` is the pooled seed sd of the rung losses of the designs with two or
   more seeds at the rung; without any, the declared ``noise_sd`` (0.02 nats by default: at the
   GPU search scale the dense model's final validation loss has a seed sd of 0.018,
   docs/METHODOLOGY.md).

Judged again (``recheck``, on by default): at every later evaluation of a run (the loop's
``eval_every`` ones, five per run by default), each rung it passed is judged again by the same
rule, its value there against every design that has reported there by now. Without it, the first
designs of a study pass their rungs with few peers (fewer than ``min_peers``, or a handful with
two workers) and train to the end however they compare later: in the 30-design H200 run of
2026-12-02, four of the first six designs completed though the first rung, judged with all 30
peers, stops them (docs/PERFORMANCE.md, "Designs per GPU-hour"). Judged again, a run stops as soon as the
rung says so, so the study's outcome comes closer to synchronous successive halving's, which
judges each rung with every design, without its barrier.

Designs stop, not runs: a design with a completed seed goes on (a design is never half on the
front); once one seed of a design is stopped, its other running seeds stop at their next rung
and its queued seeds are pruned as they start, untrained.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from workbench import record
from workbench.errors import WorkbenchError
from workbench.pareto import dominance_mask

if TYPE_CHECKING:
    import optuna

    from workbench.config import TrialConfig
    from workbench.space import Objective, Sample

METHODS = ("asha",)
LOSS_METRICS = ("val_loss", "val_ppl")  # judged by the rung's validation loss
# Known before a run trains (the trial records its analytic costs first), so comparable at a rung.
RUNG_METRICS = ("flops_per_token", "params_total", "params_active")
NOISE_Z = 1.96  # a difference inside 1.96 standard errors is inside the seed noise
DEFAULT_NOISE_SD = 0.02


@dataclass(frozen=True, kw_only=True)
class EarlyStop:
    """How a study stops runs early (``workbench run --early-stop asha``)."""

    method: str = "asha"
    eta: int = 3  # keep the best 1/eta at each rung; rungs are eta times apart
    # The first rung, as a fraction of the token budget. Not 1/9: in the H200 pair of 2026-12-03
    # a token table 0.07 nats behind at 1/9 of its budget was 0.3 ahead at 1/5 and ended the
    # study's best design (docs/PERFORMANCE.md, "Designs per GPU-hour").
    min_fraction: float = 2 / 9
    min_peers: int = 0  # designs needed at a rung before any stops there; 0: eta
    noise_sd: float = DEFAULT_NOISE_SD  # seed sd of a rung loss until designs with seeds measure it
    recheck: bool = True  # judge passed rungs again at later evaluations, against the peers by then

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise WorkbenchError(f"--early-stop {self.method!r}: expected one of {', '.join(METHODS)}")
        if isinstance(self.eta, bool) or not isinstance(self.eta, int) or self.eta < 2:
            raise WorkbenchError(f"--early-stop-eta {self.eta!r}: expected an integer >= 2")
        if not 0 < self.min_fraction < 1:
            raise WorkbenchError(
                f"--early-stop-min-fraction {self.min_fraction!r}: expected a fraction in (0, 1)"
            )
        if self.min_peers < 0 or not math.isfinite(self.noise_sd) or self.noise_sd < 0:
            raise WorkbenchError(
                f"early stopping: min_peers {self.min_peers} and noise_sd {self.noise_sd} must be >= 0"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def peers_needed(self) -> int:
        return self.min_peers or self.eta

    def rungs(self) -> tuple[Fraction, ...]:
        """The rungs as fractions of the token budget, e.g. ``(2/9, 2/3)``."""
        first = Fraction(self.min_fraction).limit_denominator(1000)
        out: list[Fraction] = []
        while first * self.eta ** len(out) < 1:
            out.append(first * self.eta ** len(out))
        return tuple(out)

    def rung_steps(self, total_steps: int) -> dict[int, str]:
        """``{step: rung}``: the step after which a run of ``total_steps`` reports each rung. A rung
        that falls on the first step, the last, or the step of an earlier rung is left out."""
        steps: dict[int, str] = {}
        for fraction in self.rungs():
            step = round(fraction * total_steps)
            if 1 <= step < total_steps and step not in steps:
                steps[step] = str(fraction)
        return steps

    def check(self, objectives: Sequence[Objective]) -> None:
        """Refuse objectives a rung cannot compare: a run's loss must be one, and the others must be
        known before it trains."""
        metrics = [o.metric for o in objectives]
        if not any(m in LOSS_METRICS for m in metrics):
            raise WorkbenchError(
                f"--early-stop: the objectives {metrics} include no validation loss "
                f"({' or '.join(LOSS_METRICS)}), which is what a rung compares"
            )
        late = [m for m in metrics if m not in LOSS_METRICS + RUNG_METRICS]
        if late:
            raise WorkbenchError(
                f"--early-stop: objective {late[0]} is measured only when a run ends, so a rung cannot "
                f"compare it; early stopping takes {', '.join(LOSS_METRICS + RUNG_METRICS)}"
            )

    def judge(self, trial: optuna.Trial, objectives: Sequence[Objective], cfg: TrialConfig) -> RungJudge:
        """The rungs of one run of ``cfg`` (its step count as :func:`workbench.train.train` sets it)."""
        tokens_per_step = cfg.train.batch_size * cfg.model.seq_len
        total_steps = max(1, cfg.train.tokens // tokens_per_step)
        return RungJudge(self, trial, objectives, self.rung_steps(total_steps), tokens_per_step)

    def check_design(self, trial: optuna.Trial, design: str) -> None:
        """Before a run trains: prune it, untrained, when a run of its design was stopped."""
        import optuna

        stopped = stopped_run(trial.study.get_trials(deepcopy=False), design)
        if stopped is not None:
            reason = f"design stopped at rung {stopped[1]} by trial {stopped[0]}: not trained"
            trial.set_user_attr(record.ERROR, reason)
            raise optuna.TrialPruned(reason)


class RungPoint(NamedTuple):
    """One design at a rung: its seeds' rung losses and its other objectives (lower is better)."""

    design: str
    losses: tuple[float, ...]
    costs: tuple[float, ...] = ()

    @property
    def loss(self) -> float:
        return float(np.mean(self.losses))


class Decision(NamedTuple):
    """Whether a design goes on past a rung, and why."""

    promote: bool
    reason: str
    peers: int = 0
    front: int = 0  # the design's front, 0 the first
    cut_front: int = 0  # the last promoted front
    cut: float | None = None
    band: float = 0.0


def front_ranks(costs_NM: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Non-dominated sorting, minimising every column: 0 for the first front, 1 for the next, ..."""
    ranks_N = np.zeros(len(costs_NM), dtype=np.int64)
    remaining = np.arange(len(costs_NM))
    rank = 0
    while remaining.size:
        on_front = dominance_mask(costs_NM[remaining])
        if not on_front.any():  # only rows with a NaN are left: they share the last front
            on_front[:] = True
        ranks_N[remaining[on_front]] = rank
        remaining = remaining[~on_front]
        rank += 1
    return ranks_N


def pooled_sd(points: Iterable[RungPoint]) -> float | None:
    """The pooled seed sd of the designs with two or more seeds; None without any."""
    squares = dof = 0.0
    for point in points:
        if len(point.losses) >= 2:
            squares += float(np.var(point.losses, ddof=1)) * (len(point.losses) - 1)
            dof += len(point.losses) - 1
    return math.sqrt(squares / dof) if dof else None


def cheapest_first(samples: Sequence[Sample], objectives: Sequence[Objective]) -> list[int]:
    """The order in which to run known designs under early stopping: by the objectives known
    before training (analytic FLOPs, parameters), the cheapest first; samples without a cost last.

    A design stops at a rung only when one no worse on those objectives beats its rung loss, so
    the cheap designs are the ones that can stop others. Run first, they have reported when the
    costly ones reach the rung, instead of the costly ones passing it against few peers and
    training to the end. Measured on the H200 (bench/early_stop.py, docs/PERFORMANCE.md) it takes
    the default policy from 1.81x to 2.35x the full study's designs per GPU-hour on the same 30
    designs, at full front recall.
    """
    keys = [
        (o.metric, 1.0 if o.direction == "minimize" else -1.0) for o in objectives if o.metric in RUNG_METRICS
    ]

    def key(i: int) -> tuple[float, ...]:
        cost = samples[i].cost
        if cost is None or not samples[i].feasible:
            return (math.inf,) * max(1, len(keys))
        return tuple(sign * float(getattr(cost, metric)) for metric, sign in keys) or (0.0,)

    return sorted(range(len(samples)), key=key)


def promote(
    design: str,
    points: Sequence[RungPoint],
    *,
    eta: int,
    min_peers: int,
    noise_sd: float,
    rung: str = "",
) -> Decision:
    """Whether ``design`` goes on past the rung at which ``points`` reported (the module's rule)."""
    index = {p.design: i for i, p in enumerate(points)}
    if design not in index:
        raise ValueError(f"design {design} has no value at rung {rung}")
    n = len(points)
    if n < min_peers:
        return Decision(True, f"{n} of {min_peers} designs needed at rung {rung}", peers=n)
    costs_NM = np.array([(p.loss, *p.costs) for p in points], dtype=float)
    ranks_N = front_ranks(costs_NM)
    keep = max(1, n // eta)
    counts = np.bincount(ranks_N)
    cut_front = int(np.searchsorted(np.cumsum(counts), keep))
    me = index[design]
    front = int(ranks_N[me])
    promoted = int(counts[: cut_front + 1].sum())
    where = f"front {front + 1}; fronts 1-{cut_front + 1} go on, {promoted} of {n} designs"
    if front <= cut_front:
        return Decision(True, f"promoted at rung {rung}: {where}", n, front, cut_front)
    # The designs at or past the last promoted front that could dominate it (no worse elsewhere).
    blockers = np.flatnonzero((ranks_N >= cut_front) & (costs_NM[:, 1:] <= costs_NM[me, 1:]).all(axis=1))
    if not blockers.size:  # a missing objective (NaN) ranked it last: nothing to compare against
        return Decision(True, f"incomparable at rung {rung}: {where}", n, front, cut_front)
    blocker = int(blockers[np.argmin(costs_NM[blockers, 0])])
    cut = float(costs_NM[blocker, 0])
    sd = pooled_sd(points)
    sd = noise_sd if sd is None else sd
    band = NOISE_Z * sd * math.sqrt(1 / len(points[me].losses) + 1 / len(points[blocker].losses))
    loss = float(costs_NM[me, 0])
    gap = f"val loss {loss:.3f} vs cut {cut:.3f}"
    if loss - cut <= band:
        return Decision(
            True,
            f"within seed noise at rung {rung}: {gap} (band {band:.3f}; {where})",
            n,
            front,
            cut_front,
            cut,
            band,
        )
    return Decision(
        False, f"dominated at rung {rung}: {gap} (band {band:.3f}; {where})", n, front, cut_front, cut, band
    )


def rung_points(
    trials: Iterable[optuna.trial.FrozenTrial], rung: str, objectives: Sequence[Objective]
) -> list[RungPoint]:
    """The designs with a value at ``rung`` among ``trials``: their seeds' losses (a seed's latest
    run counts) and their other objectives, from the analytic costs each run records first."""
    losses: dict[str, dict[Any, float]] = defaultdict(dict)
    costs: dict[str, tuple[float, ...]] = {}
    for trial in sorted(trials, key=lambda t: t.number):
        attrs = trial.user_attrs
        rungs, design = attrs.get(record.RUNGS), attrs.get(record.DESIGN_HASH)
        if not isinstance(rungs, Mapping) or rung not in rungs or not isinstance(design, str):
            continue
        config = attrs.get(record.CONFIG)
        seed = config.get("train", {}).get("seed") if isinstance(config, Mapping) else None
        losses[design][trial.number if seed is None else seed] = float(rungs[rung])
        costs[design] = objective_costs(attrs.get(record.METRICS) or {}, objectives)
    return [RungPoint(d, tuple(by_seed.values()), costs[d]) for d, by_seed in losses.items()]


def objective_costs(metrics: Mapping[str, Any], objectives: Sequence[Objective]) -> tuple[float, ...]:
    """The objectives other than the loss, from a run's ``wb.metrics``, lower is better."""
    out = []
    for objective in objectives:
        if objective.metric in LOSS_METRICS:
            continue
        value = metrics.get(objective.metric)
        value = math.nan if value is None else float(value)
        out.append(value if objective.direction == "minimize" else -value)
    return tuple(out)


def stopped_run(trials: Iterable[optuna.trial.FrozenTrial], design: str) -> tuple[int, str] | None:
    """``(trial number, rung)`` of a run of ``design`` stopped at a rung, if any."""
    from optuna.trial import TrialState

    for trial in trials:
        metrics = trial.user_attrs.get(record.METRICS)
        if (
            trial.state == TrialState.PRUNED
            and trial.user_attrs.get(record.DESIGN_HASH) == design
            and isinstance(metrics, Mapping)
            and metrics.get("rung")
        ):
            return trial.number, str(metrics["rung"])
    return None


class RungJudge:
    """The rungs of one run: records its loss at each and says whether it goes on."""

    def __init__(
        self,
        policy: EarlyStop,
        trial: optuna.Trial,
        objectives: Sequence[Objective],
        steps: Mapping[int, str],
        tokens_per_step: int,
    ) -> None:
        self.policy = policy
        self.trial = trial
        self.objectives = tuple(objectives)
        self.steps = dict(steps)
        self.tokens_per_step = tokens_per_step

    def at_eval(self, step: int, val_loss: float) -> str | None:
        """After an evaluation: None to go on; where the design stops, the reason (the trial's
        ``wb.error``, ``wb.metrics`` rung, tokens and steps are recorded).

        At a rung, the run records its loss there and is judged; at a later evaluation (with
        ``recheck``), each rung it passed is judged again against the peers there by now."""
        rung = self.steps.get(step)
        trial = self.trial
        if rung is not None:
            trial.set_user_attr(record.RUNGS, {**(trial.user_attrs.get(record.RUNGS) or {}), rung: val_loss})
            decision = self.decide(rung, val_loss)
            if decision.promote:
                return None
            return self._stop(step, rung, decision.reason)
        if not self.policy.recheck:
            return None
        passed = trial.user_attrs.get(record.RUNGS) or {}
        for rung in sorted(passed, key=Fraction):
            decision = self.decide(rung, float(passed[rung]))
            if not decision.promote:
                return self._stop(step, rung, f"judged again at step {step}: {decision.reason}")
        return None

    def _stop(self, step: int, rung: str, reason: str) -> str:
        trial = self.trial
        metrics = dict(trial.user_attrs.get(record.METRICS) or {})
        metrics.update(rung=rung, tokens_trained=step * self.tokens_per_step, steps=step)
        trial.set_user_attr(record.METRICS, metrics)
        trial.set_user_attr(record.ERROR, reason)
        return reason

    def decide(self, rung: str, val_loss: float) -> Decision:
        from optuna.trial import TrialState

        trial = self.trial
        design = str(trial.user_attrs.get(record.DESIGN_HASH))
        others = [t for t in trial.study.get_trials(deepcopy=False) if t.number != trial.number]
        stopped = stopped_run(others, design)
        if stopped is not None:
            return Decision(False, f"design stopped at rung {stopped[1]} by trial {stopped[0]}")
        mine = [t for t in others if t.user_attrs.get(record.DESIGN_HASH) == design]
        if any(t.state == TrialState.COMPLETE for t in mine):
            return Decision(True, "a seed of the design completed")
        points = rung_points(others, rung, self.objectives)
        # This run's own value, whether or not the storage already shows it to get_trials.
        own = {p.design: p for p in points}.get(design)
        costs = objective_costs(trial.user_attrs.get(record.METRICS) or {}, self.objectives)
        points = [p for p in points if p.design != design]
        points.append(RungPoint(design, (*(own.losses if own else ()), val_loss), costs))
        return promote(
            design,
            points,
            eta=self.policy.eta,
            min_peers=self.policy.peers_needed,
            noise_sd=self.policy.noise_sd,
            rung=rung,
        )
