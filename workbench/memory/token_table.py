"""token_table: a per-layer table indexed by the input token id (an extra embedding at layer l).

Paper: the token-id lookup tables of the external-memory study (Baykal et al. 2023;
docs/DESIGN.md §2): layer l owns a V x D table and reads the row of each position's input token,

    m(token) = table[token_id]

so the lookup costs no matmul FLOPs, only memory traffic; its parameters grow with V.

Choices where the paper leaves room:
* the key is the token id at the same position (the current input token, as hash layers'
  best hash);
* the table is initialised N(0, 0.02^2) like the token embedding;
* ``consume``: ``add`` (default; "added to the residual") keeps the dense FFN of ``d_ff``
  and adds the row beside it, y = FFN(x) + table[id]; ``concat`` feeds [x; table[id]] to
  that FFN; ``expert`` makes the slot the lookup alone, y = table[id] (a layer whose output
  depends only on the token id);
* no routing counters: the "load" of a row is the token's corpus frequency.

Analytic cost per token, D = d_model, V = vocabulary, F = d_ff: the lookup 0 FLOPs and D
active parameters; the FFN of the mode (see workbench/memory/_lookup.py). fvcore sees the
FFN only, which is the whole analytic count.

Shapes: B batch, T sequence, D model width, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from workbench.memory._lookup import (
    Consume,
    consume_params,
    ffn_width,
    init_table,
    table_rows,
    validate_consume,
)
from workbench.memory.base import ForwardContext, LayerContext, LayerCost, MemoryConfig, MemoryLayer
from workbench.memory.registry import register


@register
@dataclass(frozen=True, kw_only=True)
class TokenTableConfig(MemoryConfig):
    """A V x d_model table read by the input token id; ``consume`` how the row is used."""

    kind = "token_table"
    paper = "Baykal et al. 2023, external memory: per-layer token-id tables"
    active_per_token = "one table row (+ the FFN of the consume mode)"

    consume: str = "add"
    d_ff: int = 0

    def validate(self, ctx: LayerContext) -> None:
        validate_consume(self.kind, self.consume, ("add", "concat", "expert"), self.d_ff)

    def cost(self, ctx: LayerContext) -> LayerCost:
        d = ctx.d_model
        ffn = consume_params(self.consume, d, ffn_width(self.d_ff, ctx))
        return LayerCost(
            params_total=ctx.vocab_size * d + ffn,
            params_active=d + ffn,
            flops_per_token=2 * ffn,
        )

    def build(self, ctx: LayerContext) -> MemoryLayer:
        return TokenTable(self, ctx)


class TokenTable(MemoryLayer):
    def __init__(self, cfg: TokenTableConfig, ctx: LayerContext) -> None:
        super().__init__()
        self.cfg = cfg
        self.table_VD = init_table(ctx.vocab_size, ctx.d_model, std=0.02)
        self.consume = Consume(cfg.consume, ctx.d_model, ffn_width(cfg.d_ff, ctx))

    def memory_value_parameters(self) -> list[nn.Parameter]:
        """The token table: the trainer's value group (``make_optimizer``)."""
        return [self.table_VD]

    def forward(self, x_BTD: torch.Tensor, ctx: ForwardContext) -> tuple[torch.Tensor, torch.Tensor]:
        if ctx.token_ids_BT is None:
            raise ValueError("token_table reads the input token ids: pass ForwardContext(token_ids_BT=...)")
        m_BTD = table_rows(self.table_VD, ctx.token_ids_BT)
        y_BTD = self.consume(x_BTD, m_BTD)
        return y_BTD, x_BTD.new_zeros((), dtype=torch.float32)
