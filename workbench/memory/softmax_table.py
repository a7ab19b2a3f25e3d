"""softmax_table: learnable softmax routing to the entries of a key-value table.

Paper: the learnable-routing tables of the external-memory study (Baykal et al. 2023;
docs/DESIGN.md §2). ``n_entries`` entries each hold a key and a value; a token scores every
key, keeps the top k and reads their values weighted by the softmax over the selected scores:

    m(x) = sum_{e in TopK(x . key_e)} softmax_{TopK}(x . key)_e value_e

In the unified view it is a memory of ``n_entries`` one-cell blocks with a learned key per
cell, like PKM with flat (not product) keys: every key is scored, so the selector's cost
grows with the table.

Choices where the paper leaves room:
* softmax over the k selected scores, which equals the full softmax renormalised over the
  top k (the factor exp(s_e) / sum over all cancels), so no full softmax is formed;
* keys and values initialised N(0, 1/D), so scores of a LayerNorm-ed input are O(1);
* no load-balancing loss; routing counters record the reads per entry;
* ``consume``: ``add`` (default) reads the table beside a dense FFN of ``d_ff``; ``concat``
  feeds [x; m(x)] to that FFN; ``expert`` makes the read the slot's output (entries are
  value-only experts; learned-gate FFN experts are switch/gshard);
* values are read with ``F.embedding_bag``; :meth:`SoftmaxTable.memory_value_parameters`
  lists them for the trainer's value group (no weight decay, ``train.memory_value_lr_scale``;
  the keys stay in the weight-decay group).

Analytic cost per token, D = d_model, E = n_entries, F = d_ff: scores E*D MACs, the weighted
read k*D MACs, plus the FFN of the mode. fvcore sees the scores and the FFN, not the
``embedding_bag`` read: 2*fvcore = analytic - 2*k*D.

Shapes: B batch, T sequence, D model width, N tokens, E entries, K entries read per token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workbench.memory._lookup import (
    Consume,
    consume_params,
    ffn_width,
    init_table,
    validate_consume,
    weighted_rows,
)
from workbench.memory.base import ForwardContext, LayerContext, LayerCost, MemoryConfig, MemoryLayer, require
from workbench.memory.registry import register


@register
@dataclass(frozen=True, kw_only=True)
class SoftmaxTableConfig(MemoryConfig):
    """``n_entries`` key-value entries; each token reads the top ``k`` by softmax over their scores."""

    kind = "softmax_table"
    paper = "Baykal et al. 2023, external memory: learnable softmax routing to table entries"
    active_per_token = "all n_entries keys + k values (+ the FFN of the consume mode)"

    n_entries: int = 256
    k: int = 8
    consume: str = "add"
    d_ff: int = 0

    def validate(self, ctx: LayerContext) -> None:
        require(self.n_entries >= 1, "n_entries", f"must be >= 1, got {self.n_entries}")
        require(
            1 <= self.k <= self.n_entries,
            "k",
            f"must be in [1, n_entries={self.n_entries}], got {self.k}",
        )
        validate_consume(self.kind, self.consume, ("add", "concat", "expert"), self.d_ff)

    def cost(self, ctx: LayerContext) -> LayerCost:
        d, e = ctx.d_model, self.n_entries
        ffn = consume_params(self.consume, d, ffn_width(self.d_ff, ctx))
        return LayerCost(
            params_total=2 * e * d + ffn,
            params_active=e * d + self.k * d + ffn,
            flops_per_token=2 * (e * d + self.k * d + ffn),
        )

    def build(self, ctx: LayerContext) -> MemoryLayer:
        return SoftmaxTable(self, ctx)


class SoftmaxTable(MemoryLayer):
    def __init__(self, cfg: SoftmaxTableConfig, ctx: LayerContext) -> None:
        super().__init__()
        self.cfg = cfg
        self.keys_ED = init_table(cfg.n_entries, ctx.d_model)
        self.values_ED = init_table(cfg.n_entries, ctx.d_model)
        self.consume = Consume(cfg.consume, ctx.d_model, ffn_width(cfg.d_ff, ctx))
        self.init_routing_counters(cfg.n_entries)

    def memory_value_parameters(self) -> list[nn.Parameter]:
        """The value table: the trainer's value group (``make_optimizer``)."""
        return [self.values_ED]

    def select(self, x_ND: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax weights ``[N, K]`` (summing to 1) and entry ids ``[N, K]`` of the top-k keys."""
        scores_NE = x_ND @ self.keys_ED.to(x_ND.dtype).t()
        top_NK, entry_NK = scores_NE.topk(self.cfg.k, dim=-1)
        return F.softmax(top_NK.float(), dim=-1), entry_NK

    def forward(self, x_BTD: torch.Tensor, ctx: ForwardContext) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, D = x_BTD.shape
        x_ND = x_BTD.reshape(B * T, D)
        w_NK, entry_NK = self.select(x_ND)
        self.count_routing(entry_NK, B * T * self.cfg.k)
        m_ND = weighted_rows(self.values_ED, entry_NK, w_NK)
        y_ND = self.consume(x_ND, m_ND)
        return y_ND.view(B, T, D), x_BTD.new_zeros((), dtype=torch.float32)
