"""lsh: random-hyperplane hashing of the hidden vector into bucket tables (external memory).

Paper: Baykal et al. 2023, external memory with LSH routing (docs/DESIGN.md §2); the routing
is the one analysed in Baykal, Dikkala, Panigrahy, Rashtchian, Wang 2022, "A Theoretical View
on Sparsely Activated Networks" (NeurIPS). Each of ``n_tables`` hashes takes the signs of
``n_bits`` fixed random projections of the token's hidden vector, ``bucket = sum_i
[h_i . x > 0] 2**i`` (one of 2**n_bits buckets), and reads that bucket's learned row; the rows
of the tables are summed:

    m(x) = sum_{t < n_tables} table_t[bucket_t(x)]

Nearby hidden vectors (small angle) share buckets with high probability, so the memory is a
learned function of a coarse, fixed quantisation of the hidden state.

Choices where the paper leaves room:
* hyperplanes are N(0, I) directions drawn at build time from torch's RNG (so a seed fixes
  them) and kept as persistent buffers: saved with the model, never trained;
* the hashed vector is the slot input (the block's pre-FFN LayerNorm output);
* tables are initialised N(0, 0.02^2) like the token embedding, since their rows are added to
  the residual stream;
* ``consume``: ``add`` (default) adds m(x) beside a dense FFN of ``d_ff``; ``concat`` feeds
  [x; m(x)] to that FFN; ``expert`` makes each bucket an expert FFN of ``expert_width`` cells
  (the paper's "or expert per bucket"): every table's hash picks one expert of one shared
  bank of 2**n_bits experts and the n_tables expert outputs are summed with weight 1 (two
  tables may pick the same expert; it is then read twice);
* the hash is not differentiable: gradients reach the tables (or experts), not the
  hyperplanes, and no gradient flows to x through the bucket choice.

Analytic cost per token, D = d_model, L = n_tables, b = n_bits, F = d_ff, W = expert_width:
  hashing L*b*D MACs; table modes read L rows and add them (element-wise, not counted; so a
  lookup is zero matmul FLOPs); ``expert`` runs L experts, 2*L*D*W MACs. fvcore sees the hash
  matmul and the FFN, not ``embedding_bag``; for the table modes 2*fvcore equals the analytic.

Shapes: B batch, T sequence, D model width, N tokens, L tables, P = L*b hyperplanes,
R = L * 2**b table rows, E = 2**b experts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from workbench.memory._lookup import (
    Consume,
    consume_params,
    ffn_width,
    init_table,
    validate_consume,
    weighted_rows,
)
from workbench.memory.base import ForwardContext, LayerContext, LayerCost, MemoryConfig, MemoryLayer, require
from workbench.memory.experts import IMPLS, ExpertBank
from workbench.memory.registry import register


@register
@dataclass(frozen=True, kw_only=True)
class LSHConfig(MemoryConfig):
    """``n_tables`` hashes of ``n_bits`` random hyperplanes each, one table row per bucket."""

    kind = "lsh"
    paper = "Baykal et al. 2023, external memory with LSH routing"
    active_per_token = "n_tables rows (or n_tables bucket experts)"

    n_bits: int = 6
    n_tables: int = 2
    consume: str = "add"
    d_ff: int = 0
    expert_width: int = 0
    impl: str = "auto"

    def n_buckets(self) -> int:
        return 2**self.n_bits

    def validate(self, ctx: LayerContext) -> None:
        require(1 <= self.n_bits <= 20, "n_bits", f"must be in [1, 20], got {self.n_bits}")
        require(self.n_tables >= 1, "n_tables", f"must be >= 1, got {self.n_tables}")
        validate_consume(self.kind, self.consume, ("add", "concat", "expert"), self.d_ff)
        require(
            self.expert_width >= 0,
            "expert_width",
            f"must be >= 0 (0 means 4*d_model), got {self.expert_width}",
        )
        require(self.impl in IMPLS, "impl", f"must be one of {'|'.join(IMPLS)}, got {self.impl!r}")

    def cost(self, ctx: LayerContext) -> LayerCost:
        d, n_tables = ctx.d_model, self.n_tables
        hashing = n_tables * self.n_bits * d
        if self.consume == "expert":
            expert = 2 * d * (self.expert_width or 4 * d)
            return LayerCost(
                params_total=self.n_buckets() * expert,
                params_active=n_tables * expert,
                flops_per_token=2 * (hashing + n_tables * expert),
            )
        ffn = consume_params(self.consume, d, ffn_width(self.d_ff, ctx))
        return LayerCost(
            params_total=n_tables * self.n_buckets() * d + ffn,
            params_active=n_tables * d + ffn,
            flops_per_token=2 * (hashing + ffn),
        )

    def build(self, ctx: LayerContext) -> MemoryLayer:
        return LSHMemory(self, ctx)


class LSHMemory(MemoryLayer):
    planes_PD: torch.Tensor
    bit_values: torch.Tensor

    def __init__(self, cfg: LSHConfig, ctx: LayerContext) -> None:
        super().__init__()
        self.cfg = cfg
        D, L, E = ctx.d_model, cfg.n_tables, cfg.n_buckets()
        self.register_buffer("planes_PD", torch.randn(L * cfg.n_bits, D))
        self.register_buffer("bit_values", 2 ** torch.arange(cfg.n_bits), persistent=False)
        if cfg.consume == "expert":
            self.experts = ExpertBank(E, D, cfg.expert_width or 4 * D, impl=cfg.impl)
            self.init_routing_counters(E)
        else:
            self.table_RD = init_table(L * E, D, std=0.02)
            self.consume = Consume(cfg.consume, D, ffn_width(cfg.d_ff, ctx))
            self.init_routing_counters(L * E)

    def memory_value_parameters(self) -> list[torch.nn.Parameter]:
        """The bucket tables (table modes only): the trainer's value group (``make_optimizer``)."""
        return [self.table_RD] if self.cfg.consume != "expert" else []

    def buckets(self, x_ND: torch.Tensor) -> torch.Tensor:
        """``[N, L]`` bucket of each table: bit i is set where hyperplane i has x on its positive side."""
        N = x_ND.shape[0]
        bits_NLb = (x_ND @ self.planes_PD.to(x_ND.dtype).t() > 0).view(N, self.cfg.n_tables, -1)
        return (bits_NLb.long() * self.bit_values).sum(-1)

    def forward(self, x_BTD: torch.Tensor, ctx: ForwardContext) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, D = x_BTD.shape
        x_ND = x_BTD.reshape(B * T, D)
        bucket_NL = self.buckets(x_ND)
        if self.cfg.consume == "expert":
            self.count_routing(bucket_NL, B * T * self.cfg.n_tables)
            y_ND = self.experts(x_ND, bucket_NL)
        else:
            # Table t's rows are rows t*E .. (t+1)*E - 1 of one [L*E, D] table.
            offset_L = torch.arange(self.cfg.n_tables, device=x_ND.device) * self.cfg.n_buckets()
            row_NL = bucket_NL + offset_L
            self.count_routing(row_NL, B * T * self.cfg.n_tables)
            m_ND = weighted_rows(self.table_RD, row_NL)
            y_ND = self.consume(x_ND, m_ND)
        return y_ND.view(B, T, D), x_BTD.new_zeros((), dtype=torch.float32)
