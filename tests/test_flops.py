"""FLOP and parameter golden numbers, derived by hand, against the analytic count and fvcore.

Model: d=32, L=2 layers, T=16, V=100, tied embeddings, no biases.
Per token, per layer (multiply-adds): QKV + output projection 4*d^2 = 4096; attention
scores and weighted sum over the full context 2*T*d = 1024. LM head: d*V = 3200.

dense, d_ff=128: FFN 2*d*d_ff = 8192 MACs/layer.
  MACs = 2*(4096 + 1024 + 8192) + 3200 = 29824  ->  59648 FLOPs per token.
  params = V*d 3200 + T*d 512 + 2*(4*d^2 4096 + 2 norms 64 + FFN 8192) + final norm 32 = 28448.
switch, E=4 experts of g=64 cells: router d*E = 128, one expert 2*d*g = 4096 MACs/layer.
  MACs = 2*(4096 + 1024 + 128 + 4096) + 3200 = 21888  ->  43776 FLOPs per token.
  params total = 3200 + 512 + 2*(4096 + 64 + 128 + 4*4096) + 32 = 45088;
  params active = 3200 + 512 + 2*(4096 + 64 + 128 + 4096) + 32 = 20512.
"""

from __future__ import annotations

import pytest
import torch

from workbench.config import ModelConfig
from workbench.memory import config_from_dict
from workbench.model import GPT, model_cost
from workbench.model.flops import fvcore_flops_per_token

GOLDEN = {
    "dense": ({"kind": "dense", "d_ff": 128}, 59648, 28448, 28448),
    "switch": ({"kind": "switch", "n_experts": 4, "expert_width": 64}, 43776, 45088, 20512),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_analytic_and_fvcore_match_hand_derived_numbers(name: str) -> None:
    memory, flops, params_total, params_active = GOLDEN[name]
    cfg = ModelConfig(d_model=32, n_layers=2, n_heads=2, seq_len=16, memory=config_from_dict(memory))
    cost = model_cost(cfg, 100)
    assert (cost.flops_per_token, cost.params_total, cost.params_active) == (
        flops,
        params_total,
        params_active,
    )
    torch.manual_seed(0)
    model = GPT(cfg, 100)
    assert sum(p.numel() for p in model.parameters()) == params_total
    # Dropless top-1 routing sends every token to exactly one expert, so fvcore's trace of the
    # per-expert matmuls sums to the analytic count whatever the routing.
    assert fvcore_flops_per_token(model, 16, 100) == flops


def test_switch_at_equal_active_width_costs_the_dense_flops_plus_its_router() -> None:
    dense = model_cost(ModelConfig(d_model=32, memory=config_from_dict({"kind": "dense", "d_ff": 128})), 100)
    moe = model_cost(
        ModelConfig(
            d_model=32, memory=config_from_dict({"kind": "switch", "n_experts": 8, "expert_width": 128})
        ),
        100,
    )
    n_layers = 2
    assert moe.flops_per_token - dense.flops_per_token == n_layers * 2 * 32 * 8
    assert moe.params_total > 7 * dense.memory_params_total
