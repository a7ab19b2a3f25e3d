"""workbench.explore._replication and bench/replication.py: claims, intervals and verdicts."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from bench import replication
from workbench.explore import CLAIMS, Arm, Claim, claims_frame, evaluate
from workbench.explore._replication import ArmResult, compare

ROOT = Path(__file__).resolve().parents[1]
JOURNALS = ROOT / "store" / "runs"


class FakeStore:
    """The two Store methods the claims read, over a frame of designs."""

    def __init__(self, designs: list[dict]) -> None:
        self.frame = pd.DataFrame(designs)

    def studies(self) -> pd.DataFrame:
        return pd.DataFrame({"study_name": sorted(set(self.frame["study_name"]))})

    def designs(self, names: list[str]) -> pd.DataFrame:
        return self.frame[self.frame["study_name"].isin(names)]


def design(kind: str, losses: list[float], study: str = "s", **params: object) -> dict:
    mean = sum(losses) / len(losses)
    sd = math.sqrt(sum((x - mean) ** 2 for x in losses) / (len(losses) - 1)) if len(losses) > 1 else math.nan
    return {
        "study_name": study,
        "memory.kind": kind,
        "n_seeds": len(losses),
        "val_loss_mean": mean,
        "val_loss_sd": sd,
        "val_ppl_mean": math.exp(mean),
        "val_ppl_ci95_low": math.exp(mean - 0.1),
        "val_ppl_ci95_high": math.exp(mean + 0.1),
        "flops_per_token": 1e6,
        "params_total": 1e6,
        "train.lr": 1e-3,
        **params,
    }


def claim(relation: str, *kinds: str, group: tuple[str, ...] = ()) -> Claim:
    arms = tuple(Arm(k, "s", {"memory.kind": k}) for k in kinds)
    return Claim("c", "paper", "text", "qualitative", relation, arms, "cmd", group=group)  # type: ignore[arg-type]


def arm(label: str, losses: list[float]) -> ArmResult:
    d = design(label, losses)
    return ArmResult(label, "s", d["n_seeds"], d["val_loss_mean"], d["val_loss_sd"], 0, 0, 0, 0, 0, None)


def test_the_welch_interval_of_a_gap_matches_the_textbook_formula() -> None:
    a, b = arm("a", [3.0, 3.1, 3.2]), arm("b", [3.5, 3.6, 3.4])
    c = compare(a, b)
    assert c.gap == pytest.approx(0.4)
    # Equal sds of 0.1 and three seeds each: se = 0.1*sqrt(2/3), df = 4, t = 2.776.
    half = 2.776 * 0.1 * math.sqrt(2 / 3)
    assert (c.low, c.high) == pytest.approx((0.4 - half, 0.4 + half), abs=1e-9)


def test_verdicts_follow_the_interval_of_the_gap() -> None:
    store = FakeStore(
        [
            design("dense", [3.60, 3.62, 3.58]),
            design("hash", [3.401, 3.400, 3.399]),  # clearly better than dense
            design("switch", [3.35, 3.50, 3.45]),  # overlapping hash
            design("base", [3.401, 3.399, 3.400]),  # level with hash, tight
            design("pkm", [3.2]),  # one seed
        ]
    )
    assert evaluate(claim("better", "hash", "dense"), store).verdict == "reproduced"
    assert evaluate(claim("better", "dense", "hash"), store).verdict == "not reproduced"
    assert evaluate(claim("better", "switch", "hash"), store).verdict == "inconclusive"
    assert evaluate(claim("level", "hash", "base"), store).verdict == "reproduced"
    assert evaluate(claim("level", "hash", "dense"), store).verdict == "not reproduced"
    assert evaluate(claim("ordered", "dense", "hash"), store).verdict == "reproduced"
    assert evaluate(claim("all_better", "dense", "hash", "base"), store).verdict == "reproduced"
    assert evaluate(claim("between", "dense", "hash", "base"), store).verdict == "inconclusive"
    assert (
        evaluate(claim("best_of", "hash", "base", "dense", group=("hash", "base")), store).verdict
        == "reproduced"
    )
    one = evaluate(claim("better", "pkm", "dense"), store)
    assert one.verdict == "inconclusive" and "one seed" in one.why
    missing = evaluate(claim("better", "avgk", "dense"), store)
    assert missing.verdict == "not run" and "avgk" in missing.why
    report = evaluate(claim("report", "dense", "hash", "base"), store)
    assert report.verdict == "compared" and report.why.startswith("perplexity, best first: hash")


def test_every_suite_claim_names_designs_of_the_replication_spaces() -> None:
    from workbench.space import load_space

    studies = {load_space(p).name: load_space(p) for p in (ROOT / "spaces" / "replicate").glob("*.py")}
    # bench/trust_gpu.sh runs switch_gate.py at 24M tokens under its own study name.
    studies["replicate-24M"] = studies["replicate-switch-gate"]
    for c in CLAIMS:
        for a in c.arms:
            assert a.study in studies, f"{c.key}: {a.study} is not a space in spaces/replicate"
            names = set(studies[a.study].params) | {"memory.n_experts", "memory.variant"}
            assert set(a.where) <= names, f"{c.key}: {a.label} filters on {set(a.where) - names}"
    frame = claims_frame([evaluate(c, FakeStore([design("dense", [3.0, 3.1])])) for c in CLAIMS])
    assert set(frame["verdict"]) <= {"not run", "inconclusive", "compared"}
    assert frame["command"].str.contains("spaces/replicate/").all()


def test_the_report_regenerates_from_the_stored_runs(tmp_path: Path) -> None:
    if not list(JOURNALS.glob("replicate-*.journal")):
        pytest.skip("no replication runs in store/runs yet")
    doc = tmp_path / "REPLICATION.md"
    assert replication.main(["--journals", str(JOURNALS), "--doc", str(doc), "--no-plots"]) == 0
    text = doc.read_text(encoding="utf-8")
    assert "| S-FFN 1 |" in text and "### `replicate-hash`" in text
    committed = (ROOT / "docs" / "REPLICATION.md").read_text(encoding="utf-8")
    table = text[text.index(replication.BEGIN) : text.index("### `")]
    assert table in committed, "docs/REPLICATION.md is stale: run python -m bench.replication"


def test_a_design_is_named_by_the_knobs_its_ablation_sweeps_and_not_by_inert_ones() -> None:
    base = pd.Series(
        {
            "memory.kind": "base",
            "memory.n_experts": 16,
            "memory.gate": "straight",
            "memory.train_routing": "greedy",
        }
    )
    assert replication.design_label(base) == "base E=16 straight-through gate greedy training routing"
    clustered = pd.Series(
        {
            "memory.kind": "hash",
            "memory.variant": "clustered",
            "memory.n_experts": 16,
            "memory.features": "cooccurrence",
        }
    )
    assert replication.design_label(clustered) == "hash clustered E=16 corpus features"
    # The Hash 5 isolations fix these within a study; the table must still tell them apart.
    one_layer = pd.concat([clustered, pd.Series({"model.placement": "DDMD", "data.vocab_size": 8192.0})])
    assert replication.design_label(one_layer) == "hash clustered E=16 corpus features layers DDMD vocab 8192"
    suite = pd.concat([clustered, pd.Series({"model.placement": "all", "data.vocab_size": 2048.0})])
    assert replication.design_label(suite) == "hash clustered E=16 corpus features"
    decay = ["train.altup_weight_decay"]
    altup = pd.Series(
        {
            "memory.kind": "dense",
            "model.altup_k": 2,
            "model.altup_variant": "altup",
            "model.altup_embed_init": "replicated",
            "train.altup_weight_decay": True,
        }
    )
    assert (
        replication.swept_label(altup, decay)
        == "altup K=2 replicated embedding + dense mixing-scalar decay on"
    )
    # AltUp's decay cannot change a plain model: its stored value is not part of the name.
    plain = pd.Series({"memory.kind": "dense", "model.altup_k": 1, "train.altup_weight_decay": False})
    assert replication.swept_label(plain, decay) == "dense"
