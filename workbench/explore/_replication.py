"""The papers' claims checked against the store: one row per claim, with our means, 95%
intervals and a verdict (docs/REPLICATION.md is written from it by ``python -m bench.replication``;
the app's Studies page shows the same table).

A claim compares *arms*: each arm is one design of one study (matched on its parameters in the
``designs`` view). Comparisons are made on the validation loss (log perplexity) averaged over
seeds. The difference between two arms gets a Welch 95% interval; a claim is

* **reproduced** when every comparison it makes holds with its interval clear of zero (for
  "level" claims: the interval lies inside ±2% perplexity, ``LEVEL_MARGIN``),
* **not reproduced** when a comparison's interval lies wholly on the wrong side,
* **inconclusive** otherwise (or with fewer than two seeds of an arm), and
* **not run** when an arm's design is not in the store.

The intervals are per comparison; a claim made of several comparisons is not corrected for
multiplicity (with three seeds the intervals are wide enough that this is the lesser worry).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from workbench.store import Store

Relation = Literal["better", "level", "not_worse", "ordered", "between", "all_better", "best_of", "report"]
Verdict = Literal["reproduced", "not reproduced", "inconclusive", "not run", "compared"]

# "About level": a gap under 2% in perplexity.
LEVEL_MARGIN = math.log(1.02)
# t(0.975, df) for df = 1..10; above, 1.96 + 2.4/df is within 0.01 of it.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


@dataclass(frozen=True)
class Arm:
    """One design: ``study``'s design whose parameters include ``where``."""

    label: str
    study: str
    where: Mapping[str, Any]


@dataclass(frozen=True)
class Claim:
    """A paper's claim as comparisons between arms (see the module docstring for ``relation``).

    ``better``: arms[0] beats arms[1]. ``level``: arms[0] ≈ arms[1]. ``not_worse``: arms[0] is at
    least as good as arms[1]. ``ordered``: each arm beats the one before it. ``between``: each
    middle arm beats arms[0] and the last arm beats each middle one. ``all_better``: every later arm beats
    arms[0]. ``best_of``: the best of the arms labelled in ``group`` beats every other arm.
    ``report``: no direction claimed; the arms are ranked. ``caveat``: what limits the verdict
    whatever the numbers say (shown beside it).
    """

    key: str
    paper: str
    text: str
    paper_figure: str
    relation: Relation
    arms: tuple[Arm, ...]
    command: str
    group: tuple[str, ...] = field(default_factory=tuple)
    caveat: str = ""


@dataclass(frozen=True)
class ArmResult:
    label: str
    study: str
    n_seeds: int
    loss_mean: float
    loss_sd: float
    ppl_mean: float
    ppl_low: float
    ppl_high: float
    flops_per_token: float
    params_total: float
    lr: float | None


@dataclass(frozen=True)
class Comparison:
    """``winner`` against ``loser`` as expected by the claim: ``gap`` is the loss difference
    loser − winner (positive: the claim's direction), with its Welch 95% interval."""

    winner: str
    loser: str
    gap: float
    low: float
    high: float

    @property
    def ppl_pct(self) -> tuple[float, float, float]:
        """The gap as "winner's perplexity lower by x%" (mean, low, high)."""
        return tuple(100 * (1 - math.exp(-v)) for v in (self.gap, self.low, self.high))  # type: ignore[return-value]


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    arms: tuple[ArmResult | None, ...]
    comparisons: tuple[Comparison, ...]
    verdict: Verdict
    why: str


def t975(df: float) -> float:
    if not df >= 1 or math.isnan(df):
        return math.inf
    whole = int(df)
    return _T975[whole - 1] if whole <= len(_T975) else 1.96 + 2.4 / df


def compare(winner: ArmResult, loser: ArmResult) -> Comparison:
    """The loss gap loser − winner with a Welch 95% interval (infinite below two seeds each)."""
    gap = loser.loss_mean - winner.loss_mean
    if winner.n_seeds < 2 or loser.n_seeds < 2:
        return Comparison(winner.label, loser.label, gap, -math.inf, math.inf)
    va, vb = winner.loss_sd**2 / winner.n_seeds, loser.loss_sd**2 / loser.n_seeds
    se = math.sqrt(va + vb)
    if se == 0:
        return Comparison(winner.label, loser.label, gap, gap, gap)
    df = (va + vb) ** 2 / (va**2 / (winner.n_seeds - 1) + vb**2 / (loser.n_seeds - 1))
    half = t975(df) * se
    return Comparison(winner.label, loser.label, gap, gap - half, gap + half)


def _direction(c: Comparison) -> Verdict:
    if c.low > 0:
        return "reproduced"
    if c.high < 0:
        return "not reproduced"
    return "inconclusive"


def _level(c: Comparison) -> Verdict:
    if -LEVEL_MARGIN < c.low and c.high < LEVEL_MARGIN:
        return "reproduced"
    if c.low > LEVEL_MARGIN or c.high < -LEVEL_MARGIN:
        return "not reproduced"
    return "inconclusive"


def _not_worse(c: Comparison) -> Verdict:
    if c.low > -LEVEL_MARGIN:
        return "reproduced"
    if c.high < 0:
        return "not reproduced"
    return "inconclusive"


def _combine(verdicts: Sequence[Verdict]) -> Verdict:
    if any(v == "not reproduced" for v in verdicts):
        return "not reproduced"
    if verdicts and all(v == "reproduced" for v in verdicts):
        return "reproduced"
    return "inconclusive"


def arm_results(store: Store, arms: Sequence[Arm]) -> list[ArmResult | None]:
    """Each arm's design in the store (None where it is not there)."""
    studies = sorted({a.study for a in arms})
    known = set(store.studies()["study_name"]) if studies else set()
    designs = store.designs([s for s in studies if s in known]) if known & set(studies) else pd.DataFrame()
    out: list[ArmResult | None] = []
    for arm in arms:
        rows = designs[designs["study_name"] == arm.study] if len(designs) else designs
        for name, value in arm.where.items():
            if not len(rows):
                break
            if name not in rows.columns:
                rows = rows.iloc[0:0]
                break
            rows = rows[rows[name].map(lambda v, want=value: _same(v, want))]
        if len(rows) > 1:
            raise ValueError(
                f"arm {arm.label!r} matches {len(rows)} designs of study {arm.study!r}; narrow its where"
            )
        if not len(rows):
            out.append(None)
            continue
        d = rows.iloc[0]
        lr = d.get("train.lr")
        out.append(
            ArmResult(
                label=arm.label,
                study=arm.study,
                n_seeds=int(d["n_seeds"]),
                loss_mean=float(d["val_loss_mean"]),
                loss_sd=float(d["val_loss_sd"]) if pd.notna(d["val_loss_sd"]) else math.nan,
                ppl_mean=float(d["val_ppl_mean"]),
                ppl_low=float(d["val_ppl_ci95_low"]) if pd.notna(d["val_ppl_ci95_low"]) else math.nan,
                ppl_high=float(d["val_ppl_ci95_high"]) if pd.notna(d["val_ppl_ci95_high"]) else math.nan,
                flops_per_token=float(d["flops_per_token"]),
                params_total=float(d["params_total"]),
                lr=float(lr) if lr is not None and pd.notna(lr) else None,
            )
        )
    return out


def _same(value: Any, want: Any) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return want is None
    if isinstance(want, (int, float)) and not isinstance(want, bool):
        try:
            return math.isclose(float(value), float(want))
        except (TypeError, ValueError):
            return False
    return str(value) == str(want)


def evaluate(claim: Claim, store: Store) -> ClaimResult:
    """The claim's comparisons and verdict on ``store``'s designs."""
    arms = tuple(arm_results(store, claim.arms))
    missing = [a.label for a, r in zip(claim.arms, arms, strict=True) if r is None]
    if missing:
        return ClaimResult(claim, arms, (), "not run", f"not in the store: {', '.join(missing)}")
    results = [r for r in arms if r is not None]
    by_label = {r.label: r for r in results}
    pairs: list[tuple[ArmResult, ArmResult]]
    check = _direction
    rel = claim.relation
    if rel in ("better", "level", "not_worse"):
        pairs = [(results[0], results[1])]
        check = {"better": _direction, "level": _level, "not_worse": _not_worse}[rel]
    elif rel == "ordered":
        pairs = [(results[i + 1], results[i]) for i in range(len(results) - 1)]
    elif rel == "between":
        mids = results[1:-1]
        pairs = [(m, results[0]) for m in mids] + [(results[-1], m) for m in mids]
    elif rel == "all_better":
        pairs = [(r, results[0]) for r in results[1:]]
    elif rel == "best_of":
        group = [by_label[g] for g in claim.group]
        best = min(group, key=lambda r: r.loss_mean)
        pairs = [(best, r) for r in results if r.label not in claim.group]
    elif rel == "report":
        ranked = sorted(results, key=lambda r: r.loss_mean)
        comparisons = tuple(compare(ranked[0], r) for r in ranked[1:])
        order = " < ".join(f"{r.label} {r.ppl_mean:.2f}" for r in ranked)
        return ClaimResult(claim, arms, comparisons, "compared", f"perplexity, best first: {order}")
    else:  # pragma: no cover - Relation is closed
        raise ValueError(f"unknown relation {rel!r}")
    comparisons = tuple(compare(w, lo) for w, lo in pairs)
    verdicts = [check(c) for c in comparisons]
    few = [r.label for r in results if r.n_seeds < 2]
    verdict = _combine(verdicts)
    if few and verdict != "not reproduced":
        return ClaimResult(claim, arms, comparisons, "inconclusive", f"one seed only: {', '.join(few)}")
    held = sum(v == "reproduced" for v in verdicts)
    why = f"{held} of {len(verdicts)} comparisons hold" if len(verdicts) > 1 else ""
    return ClaimResult(claim, arms, comparisons, verdict, why)


def evaluate_all(claims: Sequence[Claim], store: Store) -> list[ClaimResult]:
    return [evaluate(c, store) for c in claims]


def claims_frame(results: Sequence[ClaimResult]) -> pd.DataFrame:
    """One row per claim: paper, claim, the paper's figure, ours (means and gaps with 95%
    intervals), verdict, command."""
    rows = []
    for r in results:
        rows.append(
            {
                "claim": r.claim.key,
                "paper": r.claim.paper,
                "statement": r.claim.text,
                "paper's figure": r.claim.paper_figure,
                "ours (val ppl, mean [95% CI], seeds)": arms_text(r),
                "gaps (winner's ppl lower by %, 95% CI)": gaps_text(r),
                "verdict": r.verdict,
                "note": "; ".join(p for p in (r.why, r.claim.caveat) if p),
                "command": r.claim.command,
            }
        )
    return pd.DataFrame(rows)


def arms_text(r: ClaimResult) -> str:
    parts = []
    for arm, res in zip(r.claim.arms, r.arms, strict=True):
        if res is None:
            parts.append(f"{arm.label}: not run")
        elif res.n_seeds < 2:
            parts.append(f"{arm.label}: {res.ppl_mean:.2f} (1 seed)")
        else:
            parts.append(
                f"{arm.label}: {res.ppl_mean:.2f} [{res.ppl_low:.2f}, {res.ppl_high:.2f}] ({res.n_seeds})"
            )
    return "; ".join(parts)


def gaps_text(r: ClaimResult) -> str:
    parts = []
    for c in r.comparisons:
        mean, low, high = c.ppl_pct
        if math.isinf(c.low):
            parts.append(f"{c.winner} vs {c.loser}: {mean:+.1f}%")
        else:
            parts.append(f"{c.winner} vs {c.loser}: {mean:+.1f}% [{low:+.1f}, {high:+.1f}]")
    return "; ".join(parts)
