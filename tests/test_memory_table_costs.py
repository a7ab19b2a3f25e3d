"""Golden costs of the table layers: hand-derived parameters and FLOPs per token, held against
the analytic count, the built module, and fvcore where fvcore sees the ops.

Context: d = 32, V = 64. FLOPs = 2 per multiply-add (MAC). fvcore counts one per MAC of the
matmul-like ops it has handles for (linear, matmul, mm, bmm, addmm, einsum); it has none for
``embedding_bag``, ``embedding``, ``topk`` or ``index_add``, so where a layer reads rows with a
weighted sum, 2*fvcore falls short of the analytic count by exactly that read.

pkm, n_keys=8 (N=64 slots), H=2 heads, k=4, d_key=16, layernorm, consume=expert:
  query d*H*d_key = 1024 MACs/params; norm affine 2*H*d_key = 64 params;
  sub-keys H*2*8*(16/2) = 256 params, scoring them H*8*16 = 256 MACs;
  values N*d = 2048 params; read H*k*d = 256 MACs (embedding_bag, unseen by fvcore).
  params 1024+64+256+2048 = 3392, active 1024+64+256+256 = 1600,
  FLOPs 2*(1024+256+256) = 3072; 2*fvcore = 2*(1024+256) = 2560 = 3072 - 2*256.
pkm as above, consume=add, d_ff=64: + FFN 2*d*64 = 4096 MACs/params.
  params 7488, active 5696, FLOPs 3072 + 8192 = 11264; 2*fvcore = 11264 - 512 = 10752.
avgk, d_ff=128, g=16 (8 blocks), k=2:
  selector d*8 = 256 MACs; two blocks of two d x g matmuls 2*2*32*16 = 2048 MACs.
  params 2*32*128 = 8192, active 2048, FLOPs 2*(256+2048) = 4608 = 2*fvcore (loop dispatch).
lsh, n_bits=4, n_tables=2, consume=add, d_ff=64:
  hashing 2*4*32 = 256 MACs; rows 2*16*32 = 1024 params (read: additions, 0 FLOPs); FFN 4096.
  params 5120, active 2*32 + 4096 = 4160, FLOPs 2*(256+4096) = 8704 = 2*fvcore.
lsh, n_bits=2 (4 experts), n_tables=2, consume=expert, expert_width=16:
  hashing 2*2*32 = 128 MACs; an expert 2*32*16 = 1024 params/MACs, two read per token.
  params 4*1024 = 4096, active 2048, FLOPs 2*(128+2048) = 4352 = 2*fvcore (loop dispatch).
token_table, consume=add, d_ff=64: table V*d = 2048 params, lookup 0 FLOPs; FFN 4096.
  params 6144, active 32 + 4096 = 4128, FLOPs 8192 = 2*fvcore.
token_table, consume=expert: params 2048, active 32, FLOPs 0 = 2*fvcore.
token_table, consume=concat, d_ff=64: FFN (2d)*64 + 64*d = 6144 params/MACs.
  params 2048 + 6144 = 8192, active 32 + 6144 = 6176, FLOPs 12288 = 2*fvcore.
softmax_table, n_entries=32, k=4, consume=expert:
  keys and values 2*32*32 = 2048 params; scores 32*32 = 1024 MACs; read k*d = 128 MACs.
  params 2048, active 1024+128 = 1152, FLOPs 2*(1024+128) = 2304; 2*fvcore = 2048.
"""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
from torch import nn

from workbench.memory import ForwardContext, LayerContext, config_from_dict
from workbench.memory.experts import ExpertBank

CTX = LayerContext(d_model=32, vocab_size=64, seq_len=16)
MATMUL_OPS = {"linear", "matmul", "mm", "bmm", "addmm", "einsum"}

# name: knobs, params_total, params_active, flops_per_token, flops fvcore cannot see
GOLDEN = {
    "pkm": (
        {"kind": "pkm", "n_keys": 8, "n_heads": 2, "k": 4, "d_key": 16},
        3392,
        1600,
        3072,
        512,
    ),
    "pkm_add": (
        {"kind": "pkm", "n_keys": 8, "n_heads": 2, "k": 4, "d_key": 16, "consume": "add", "d_ff": 64},
        7488,
        5696,
        11264,
        512,
    ),
    "avgk": ({"kind": "avgk", "d_ff": 128, "block_size": 16, "k": 2}, 8192, 2048, 4608, 0),
    "lsh_add": ({"kind": "lsh", "n_bits": 4, "n_tables": 2, "d_ff": 64}, 5120, 4160, 8704, 0),
    "lsh_expert": (
        {"kind": "lsh", "n_bits": 2, "n_tables": 2, "consume": "expert", "expert_width": 16},
        4096,
        2048,
        4352,
        0,
    ),
    "token_table_add": ({"kind": "token_table", "d_ff": 64}, 6144, 4128, 8192, 0),
    "token_table_expert": ({"kind": "token_table", "consume": "expert"}, 2048, 32, 0, 0),
    "token_table_concat": ({"kind": "token_table", "consume": "concat", "d_ff": 64}, 8192, 6176, 12288, 0),
    "softmax_table": (
        {"kind": "softmax_table", "n_entries": 32, "k": 4, "consume": "expert"},
        2048,
        1152,
        2304,
        256,
    ),
}


class _Traced(nn.Module):
    """fvcore traces tensors only: wrap the layer so token ids come in as a tensor."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x_BTD: torch.Tensor, ids_BT: torch.Tensor) -> torch.Tensor:
        return self.layer(x_BTD, ForwardContext(token_ids_BT=ids_BT))[0]


def fvcore_matmul_flops_per_token(layer: nn.Module, n_tokens: int = 64) -> tuple[float, set[str]]:
    """2 x fvcore's matmul multiply-adds per token, and the ops fvcore had no handle for."""
    for module in layer.modules():
        if isinstance(module, ExpertBank):
            module.impl = "loop"  # exposes each block's matmul with its real row count
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, n_tokens, CTX.d_model, generator=gen)
    ids = torch.randint(0, CTX.vocab_size, (1, n_tokens), generator=gen)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore's import scripts a function (deprecated in torch)
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(_Traced(layer.eval()), (x, ids)).unsupported_ops_warnings(False)
        by_op = analysis.by_operator()
        unsupported = set(analysis.unsupported_ops())
    return 2 * sum(v for k, v in by_op.items() if k in MATMUL_OPS) / n_tokens, unsupported


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_costs(name: str) -> None:
    knobs, params_total, params_active, flops, unseen = GOLDEN[name]
    cfg = config_from_dict(knobs)
    cfg.validate(CTX)
    cost = cfg.cost(CTX)
    assert (cost.params_total, cost.params_active, cost.flops_per_token) == (
        params_total,
        params_active,
        flops,
    )
    torch.manual_seed(0)
    layer = cfg.build(CTX)
    assert sum(p.numel() for p in layer.parameters()) == params_total
    fv, unsupported = fvcore_matmul_flops_per_token(layer)
    assert fv == flops - unseen
    if unseen:
        assert "aten::embedding_bag" in unsupported


def test_fvcore_cannot_see_the_selectors_topk() -> None:
    layer = config_from_dict({"kind": "pkm", "n_keys": 8, "k": 4}).build(CTX)
    _, unsupported = fvcore_matmul_flops_per_token(layer)
    assert {"aten::topk", "aten::embedding_bag"} <= unsupported


def test_pkm_selector_is_cheaper_than_scoring_every_slot() -> None:
    """Product keys score 2*n_keys sub-keys per head instead of n_keys**2 keys."""
    flat = config_from_dict({"kind": "softmax_table", "n_entries": 1024, "k": 8, "consume": "expert"})
    product = config_from_dict({"kind": "pkm", "n_keys": 32, "n_heads": 1, "k": 8, "query_norm": "none"})
    d = CTX.d_model
    # Same slot count (1024) and reads; flat scores 1024*d MACs, product d*d (query) + 32*d.
    assert flat.cost(CTX).flops_per_token == 2 * (1024 * d + 8 * d)
    assert product.cost(CTX).flops_per_token == 2 * (d * d + 32 * d + 8 * d)
