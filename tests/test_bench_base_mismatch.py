"""bench/base_mismatch.py scores a BASE model with its training-time routing and with greedy."""

from __future__ import annotations

import numpy as np
import torch

from bench import base_mismatch
from workbench.config import ModelConfig
from workbench.data import eval_batches
from workbench.memory.base_layer import BaseConfig
from workbench.memory.dense import DenseConfig
from workbench.model import GPT
from workbench.train import evaluate

VOCAB = 64


def _windows() -> list[tuple[torch.Tensor, torch.Tensor]]:
    val = np.random.default_rng(0).integers(0, VOCAB, 4000).astype(np.uint16)
    return eval_batches(val, 16, 1024, 8, torch.device("cpu"))


def _model(memory: object) -> GPT:
    torch.manual_seed(0)
    cfg = ModelConfig(seq_len=16, d_model=16, n_layers=2, n_heads=2, memory=memory)  # type: ignore[arg-type]
    return GPT(cfg, VOCAB)


def test_balanced_routing_scores_a_base_model_differently_and_leaves_it_in_its_mode() -> None:
    windows = _windows()
    model = _model(BaseConfig(n_experts=4, expert_width=32)).eval()
    greedy = evaluate(model, windows, torch.float32)
    balanced = evaluate(model, windows, torch.float32, training_routing=True)
    assert not model.training  # scoring leaves the model as it found it
    assert np.isfinite(balanced) and abs(balanced - greedy) > 1e-6  # two routings, two losses


def test_without_routing_the_two_scorings_agree() -> None:
    windows = _windows()
    model = _model(DenseConfig(d_ff=32))
    greedy = evaluate(model, windows, torch.float32)
    assert abs(evaluate(model, windows, torch.float32, training_routing=True) - greedy) < 1e-5


def test_the_report_gives_the_gap_and_both_against_dense() -> None:
    result = {
        "date": "2026-12-03",
        "device": "cpu",
        "command": "python -m bench.base_mismatch",
        "runs": [
            {"design": "dense", "seed": 0, "greedy": 4.0},
            {"design": "base", "seed": 0, "greedy": 4.5, "balanced": 4.1},
        ],
    }
    text = base_mismatch.report(result)
    assert "| base | 0 | 4.500 | 4.100 | +0.400 | +64.9% | +10.5% |" in text
