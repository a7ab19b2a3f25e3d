"""The GPT model: shapes, causality, gradients, placement, and its self-accounting."""

from __future__ import annotations

import pytest
import torch

from workbench.config import ModelConfig
from workbench.errors import ConfigError
from workbench.memory import config_from_dict
from workbench.memory.dense import DenseFFN
from workbench.model import GPT, memory_layers, model_cost


def tiny(kind: str = "dense", **kw) -> ModelConfig:
    memory = {"dense": {"kind": "dense"}, "switch": {"kind": "switch", "n_experts": 4, "expert_width": 64}}[
        kind
    ]
    return ModelConfig(d_model=32, n_layers=2, n_heads=2, seq_len=16, memory=config_from_dict(memory), **kw)


@pytest.mark.parametrize("kind", ["dense", "switch"])
def test_forward_shapes_and_parameter_count(kind: str) -> None:
    cfg = tiny(kind)
    model = GPT(cfg, vocab_size=100)
    logits, aux = model(torch.randint(0, 100, (3, 16)))
    assert logits.shape == (3, 16, 100)
    assert aux.shape == () and torch.isfinite(aux)
    assert sum(p.numel() for p in model.parameters()) == model_cost(cfg, 100).params_total


@pytest.mark.parametrize("kind", ["dense", "switch"])
def test_gradients_reach_every_parameter(kind: str) -> None:
    torch.manual_seed(0)
    model = GPT(tiny(kind), vocab_size=100)
    logits, aux = model(torch.randint(0, 100, (8, 16)))
    (logits.logsumexp(-1).mean() + aux).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_model_is_causal() -> None:
    torch.manual_seed(0)
    model = GPT(tiny("dense"), vocab_size=100).eval()
    x = torch.randint(0, 100, (1, 16))
    y = x.clone()
    y[0, 10] = (y[0, 10] + 1) % 100
    a, _ = model(x)
    b, _ = model(y)
    assert torch.allclose(a[0, :10], b[0, :10], atol=1e-6)
    assert not torch.allclose(a[0, 10:], b[0, 10:])


def test_same_seed_same_model() -> None:
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        outs.append(GPT(tiny("switch"), vocab_size=100)(torch.arange(16).unsqueeze(0))[0])
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize(
    ("placement", "expected"),
    [
        ("all", [True] * 4),
        ("none", [False] * 4),
        ("every:2", [False, True, False, True]),
        ("every:2:0", [True, False, True, False]),
        ("DMMD", [False, True, True, False]),
        ("0,3", [True, False, False, True]),
    ],
)
def test_placement_patterns(placement: str, expected: list[bool]) -> None:
    assert memory_layers(placement, 4) == expected


@pytest.mark.parametrize(
    ("placement", "message"),
    [
        ("DMD", "has 3 letters for 4 layers"),
        ("0,9", r"out of range"),
        ("every:x", "every:N"),
        ("odd", "not one of"),
    ],
)
def test_bad_placement_is_named(placement: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"model.placement: .*{message}"):
        memory_layers(placement, 4)


def test_placement_mixes_memory_and_dense_layers() -> None:
    cfg = tiny("switch", placement="every:2")
    model = GPT(cfg, vocab_size=100)
    assert [isinstance(b.memory, DenseFFN) for b in model.blocks] == [True, False]
    assert sum(p.numel() for p in model.parameters()) == model_cost(cfg, 100).params_total


def test_heads_must_divide_width() -> None:
    with pytest.raises(ConfigError, match=r"model\.n_heads"):
        model_cost(ModelConfig(d_model=30, n_heads=4), 100)


def test_training_set_token_counts_reach_the_memory_layers() -> None:
    import numpy as np

    counts = np.arange(100, dtype=np.int64)
    cfg = ModelConfig(
        d_model=32, n_layers=2, n_heads=2, seq_len=16, memory=config_from_dict({"kind": "dense"})
    )
    from workbench.model import layer_configs

    assert all(ctx.token_counts is counts for _, ctx in layer_configs(cfg, 100, counts))
