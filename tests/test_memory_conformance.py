"""The contract every registered memory layer must meet, parametrised over the registry.

A newly registered layer is covered with no edits here: it is built from its Config's
``example(ctx)`` (the defaults unless the layer overrides the hook) at a small context.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workbench import memory
from workbench.memory import ForwardContext, LayerContext, MemoryLayer
from workbench.train.master import cast_to, low_precision_parameters

D, V, T, B = 32, 64, 16, 8
# A skewed (Zipf-like) training-set frequency table, for frequency-aware layers.
CTX = LayerContext(d_model=D, vocab_size=V, seq_len=T, token_counts=1000.0 / np.arange(1, V + 1))
KINDS = memory.names()


def _build(kind: str, seed: int = 0) -> MemoryLayer:
    cfg = memory.get(kind).example(CTX)
    cfg.validate(CTX)
    torch.manual_seed(seed)
    return cfg.build(CTX)


def _inputs(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, D, generator=gen), torch.randint(0, V, (B, T), generator=gen)


def _run(layer: MemoryLayer, x: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return layer(x, ForwardContext(token_ids_BT=ids))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("training", [True, False])
def test_output_shape_and_finite_aux(kind: str, training: bool) -> None:
    layer = _build(kind).train(training)
    y, aux = _run(layer, *_inputs())
    assert y.shape == (B, T, D)
    assert torch.isfinite(y).all()
    assert aux.shape == () and torch.isfinite(aux)


@pytest.mark.parametrize("kind", KINDS)
def test_runs_under_bf16_autocast(kind: str) -> None:
    # The trainer's CUDA path: float32 weights, bf16 autocast; ops without an autocast rule
    # (grouped matmul, embedding_bag, index_add) must not meet mixed dtypes.
    layer = _build(kind).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, aux = _run(layer, *_inputs())
    (y.float().sum() + aux).backward()
    assert y.shape == (B, T, D) and torch.isfinite(y).all() and torch.isfinite(aux)


@pytest.mark.parametrize("kind", KINDS)
def test_causal(kind: str) -> None:
    layer = _build(kind)
    # A layer that solves an assignment over the whole batch in training is checked in eval.
    layer.train(layer.causal_in_training)
    x, ids = _inputs()
    t = T // 2
    x2, ids2 = x.clone(), ids.clone()
    x2[:, t + 1] += torch.randn(B, D)
    ids2[:, t + 1] = (ids2[:, t + 1] + 1) % V
    y, _ = _run(layer, x, ids)
    y2, _ = _run(layer, x2, ids2)
    torch.testing.assert_close(y2[:, : t + 1], y[:, : t + 1], rtol=0, atol=1e-6)
    assert not torch.allclose(y2[:, t + 1], y[:, t + 1]), "the perturbation must reach position t+1"


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic_under_seed(kind: str) -> None:
    x, ids = _inputs()
    y1, aux1 = _run(_build(kind, seed=3).train(), x, ids)
    y2, aux2 = _run(_build(kind, seed=3).train(), x, ids)
    assert torch.equal(y1, y2) and torch.equal(aux1, aux2)


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_reaches_every_parameter(kind: str) -> None:
    layer = _build(kind).train()
    # B*T = 128 tokens: enough that every default expert is read by some token, so every
    # parameter tensor is reachable and must get a non-zero gradient.
    y, aux = _run(layer, *_inputs())
    (y.sum() + aux).backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None, f"{kind}: no gradient reaches {name}"
        assert torch.isfinite(p.grad).all(), f"{kind}: non-finite gradient in {name}"
        assert p.grad.abs().sum() > 0, f"{kind}: zero gradient in {name}"


@pytest.mark.parametrize("kind", KINDS)
def test_analytic_params_equal_built(kind: str) -> None:
    cfg = memory.get(kind).example(CTX)
    layer = _build(kind)
    cost = cfg.cost(CTX)
    assert cost.params_total == sum(p.numel() for p in layer.parameters())
    assert 0 < cost.params_active <= cost.params_total
    assert cost.flops_per_token > 0


@pytest.mark.parametrize("kind", KINDS)
def test_routing_stats_are_recorded(kind: str) -> None:
    layer = _build(kind).train()
    _run(layer, *_inputs())
    stats = layer.routing_stats()
    if not hasattr(layer, "load_E"):
        assert stats is None
        return
    assert stats is not None
    assert math.isclose(sum(stats["load"]), 1.0, rel_tol=1e-9)
    assert 0 <= stats["load_entropy"] <= stats["load_entropy_max"] + 1e-9
    assert stats["dropped_frac"] == 0.0  # example configs are dropless
    assert 0 <= stats["unused_frac"] < 1
    layer.reset_routing()
    assert layer.routing_stats() is None


@pytest.mark.parametrize("kind", KINDS)
def test_config_round_trips(kind: str) -> None:
    cfg = memory.get(kind).example(CTX)
    again = memory.config_from_dict(cfg.to_dict())
    assert again == cfg and again.config_hash() == cfg.config_hash()


@pytest.mark.parametrize("kind", KINDS)
def test_bf16_weights_change_nothing_under_autocast(kind: str) -> None:
    # The trainer holds the weights workbench.train.master selects in bf16 (float32 masters in the
    # optimizer). That must be exactly what autocast does with float32 weights: a router or
    # any float32-by-design weight that got selected would change the output here.
    x, ids = _inputs()
    outputs, grads = [], []
    for bf16 in (False, True):
        layer = _build(kind).train()
        low = cast_to(layer, torch.bfloat16) if bf16 else low_precision_parameters(layer)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y, aux = _run(layer, x, ids)
        (y.float().square().sum() + aux).backward()
        outputs.append(y.float())
        grads.append([p.grad.to(torch.bfloat16) for p in low])
    if kind == "avgk":
        # AvgK's block keys are the mean of its W1 columns, averaged from the bf16 weights here
        # (workbench/master.py): a near-tie between two blocks may flip for a few tokens.
        moved = (outputs[1] - outputs[0]).abs().amax(-1) > 2e-2
        assert moved.float().mean() < 0.05
        for got, want in zip(grads[1], grads[0], strict=True):
            assert (got.float() - want.float()).norm() < 0.1 * want.float().norm()
        return
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0, atol=0)
    for got, want in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
