"""Golden parameter and FLOP counts of the expert-style layers, derived by hand, held against the
analytic cost and against fvcore on the layer alone.

Context: d = 32, V = 64, T = 16; expert_width 0 means 4*d = 128. One "expert" of g cells is
two d x g matrices: 2*d*g parameters, 2*d*g multiply-adds per token. FLOPs = 2 per multiply-add.

switch, E=8, g=128:   router d*E = 256; expert 2*32*128 = 8192.
  total 256 + 8*8192 = 65792; active 256 + 8192 = 8448; FLOPs 2*8448 = 16896.
switch, E=16, g=32, n_shared=2 (fine-grained + shared): router 32*16 = 512; expert 2*32*32 = 2048.
  total 512 + (16+2)*2048 = 37376; active 512 + (1+2)*2048 = 6656; FLOPs 13312.
gshard, E=8, k=2, g=128: total 256 + 8*8192 = 65792; active 256 + 2*8192 = 16640; FLOPs 33280.
gshard, E=8, k=2, g=64, n_shared=1: expert 2*32*64 = 4096.
  total 256 + 9*4096 = 37120; active 256 + 3*4096 = 12544; FLOPs 25088.
base, E=8, g=128: as switch: 65792 / 8448 / 16896.
hash, E=8, g=128: no router. total 8*8192 = 65536; active 8192; FLOPs 16384.
hash multihash m=4, E=8, g=128: 32 slices of 32 cells, 4 read: same 65536 / 8192 / 16384.
vanilla, d_ff=128, k=32: keys 32*128 = 4096 all read (the selector); values k*d = 1024 read.
  total 2*32*128 = 8192; active 4096 + 1024 = 5120; FLOPs 10240.

fvcore counts one "flop" per multiply-add of the ops it has handles for (linear, matmul, bmm),
so FLOPs = 2 x fvcore. What it sees:
* ``loop`` dispatch, dropless: every expert matmul with its real row count, so the count equals
  the analytic one exactly for switch, gshard, base and hash, whatever the routing;
* ``sorted`` dispatch: a bmm over the zero-padded [E, C, D] buffer, padding included, so it
  counts at least the analytic figure;
* ``grouped`` dispatch: nothing of torch._grouped_mm (no handle), only the router;
* vanilla: the scoring matmul, not the embedding_bag that reads the k values.
Hence the analytic count is the reported one.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn

from workbench.memory import ForwardContext, LayerContext, LayerCost, MemoryLayer, config_from_dict

D, V, T, B = 32, 64, 16, 4
N = B * T
CTX = LayerContext(d_model=D, vocab_size=V, seq_len=T, token_counts=1000.0 / np.arange(1, V + 1))

GOLDEN: dict[str, tuple[dict, LayerCost]] = {
    "switch": ({"kind": "switch"}, LayerCost(params_total=65792, params_active=8448, flops_per_token=16896)),
    "switch_fine_shared": (
        {"kind": "switch", "n_experts": 16, "expert_width": 32, "n_shared": 2},
        LayerCost(params_total=37376, params_active=6656, flops_per_token=13312),
    ),
    "gshard": ({"kind": "gshard"}, LayerCost(params_total=65792, params_active=16640, flops_per_token=33280)),
    "gshard_shared": (
        {"kind": "gshard", "expert_width": 64, "n_shared": 1},
        LayerCost(params_total=37120, params_active=12544, flops_per_token=25088),
    ),
    "base": ({"kind": "base"}, LayerCost(params_total=65792, params_active=8448, flops_per_token=16896)),
    "hash": ({"kind": "hash"}, LayerCost(params_total=65536, params_active=8192, flops_per_token=16384)),
    "hash_multihash": (
        {"kind": "hash", "variant": "multihash", "n_hashes": 4},
        LayerCost(params_total=65536, params_active=8192, flops_per_token=16384),
    ),
    "vanilla": ({"kind": "vanilla"}, LayerCost(params_total=8192, params_active=5120, flops_per_token=10240)),
}
EXPERT_STYLE = [name for name in GOLDEN if not name.startswith("vanilla")]

# fvcore's jit handles call torch.jit.script, deprecated in recent torch.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


class _Tensors(nn.Module):
    """fvcore traces modules taking tensors; the layer takes a ForwardContext dataclass."""

    def __init__(self, layer: MemoryLayer) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x_BTD: torch.Tensor, token_ids_BT: torch.Tensor) -> torch.Tensor:
        return self.layer(x_BTD, ForwardContext(token_ids_BT=token_ids_BT))[0]


def _fvcore_flops_per_token(knobs: dict, impl: str | None = None, training: bool = False) -> float:
    if impl is not None:
        knobs = {**knobs, "impl": impl}
    torch.manual_seed(0)
    layer = config_from_dict(knobs).build(CTX).train(training)
    gen = torch.Generator().manual_seed(1)
    inputs = (torch.randn(B, T, D, generator=gen), torch.randint(0, V, (B, T), generator=gen))
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = (
            FlopCountAnalysis(_Tensors(layer), inputs)
            .unsupported_ops_warnings(False)
            .uncalled_modules_warnings(False)
            .tracer_warnings("none")
        )
        return 2 * analysis.total() / N


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_analytic_cost_matches_the_hand_derived_numbers(name: str) -> None:
    knobs, golden = GOLDEN[name]
    cfg = config_from_dict(knobs)
    cfg.validate(CTX)
    assert cfg.cost(CTX) == golden
    assert sum(p.numel() for p in cfg.build(CTX).parameters()) == golden.params_total


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("name", EXPERT_STYLE)
def test_fvcore_on_the_loop_dispatch_equals_the_analytic_flops(name: str, training: bool) -> None:
    knobs, golden = GOLDEN[name]
    assert _fvcore_flops_per_token(knobs, "loop", training) == golden.flops_per_token


@pytest.mark.parametrize("name", ["switch", "gshard", "hash_multihash"])
def test_fvcore_counts_the_padding_of_the_sorted_dispatch(name: str) -> None:
    knobs, golden = GOLDEN[name]
    assert _fvcore_flops_per_token(knobs, "sorted") >= golden.flops_per_token


def test_fvcore_sees_only_the_router_of_the_grouped_dispatch() -> None:
    knobs, _ = GOLDEN["gshard"]
    assert _fvcore_flops_per_token(knobs, "grouped") == 2 * D * 8


def test_fvcore_sees_only_vanillas_scoring_matmul() -> None:
    knobs, golden = GOLDEN["vanilla"]
    k = 32
    assert _fvcore_flops_per_token(knobs) == golden.flops_per_token - 2 * k * D == 2 * D * 128
