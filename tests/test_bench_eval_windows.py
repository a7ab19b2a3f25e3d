"""bench/eval_windows.py: one trained model scored at the head, spread, and per part of the split."""

from __future__ import annotations

import json
from pathlib import Path

from bench import eval_windows

TINY = [
    "data.tokenizer=byte",
    "model.d_model=16",
    "model.n_heads=2",
    "model.seq_len=32",
    "train.batch_size=8",
    "train.eval_tokens=2048",
]


def test_the_same_model_is_scored_at_the_head_spread_and_per_part(tmp_path: Path) -> None:
    sets = [arg for item in TINY for arg in ("--set", item)]
    argv = ["--space", "spaces/quickstart.py", *sets, "--tokens", "8192", "--seeds", "0", "--only", "dense"]
    assert eval_windows.main([*argv, "--device", "cpu", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "eval_windows.json").read_text())
    parts = [s["source"] for s in result["sources"]]
    assert parts == [f"part {i}/10" for i in range(1, 11)]  # kjv has no named sources
    assert result["sources"][0]["first"] == 0 and result["sources"][-1]["end"] == result["val_tokens"]
    for row in result["runs"]:
        assert row["design"].startswith("dense")
        losses = [row[k] for k in ("head", "spread", *parts)]
        assert all(2.0 < v < 6.0 for v in losses), losses  # a byte model, barely trained: near ln 256
        assert row["head"] != row["spread"]  # different windows, so a different number
    report = (tmp_path / "eval_windows.md").read_text()
    assert "ppl vs dense, spread" in report and "part 10/10" in report
