"""dense: the baseline feed-forward layer, a memory whose every cell is read by every token.

Paper: Vaswani et al. 2017 (the Transformer FFN); in the unified view (Liu et al. 2023) it is
the point g = d_ff, B = 1, k = 1.

Shapes: B batch, T sequence, D model width, F hidden width (cells).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workbench.memory.base import ForwardContext, LayerContext, LayerCost, MemoryConfig, MemoryLayer, require
from workbench.memory.registry import register


@register
@dataclass(frozen=True, kw_only=True)
class DenseConfig(MemoryConfig):
    """``d_ff``: hidden width (number of memory cells); 0 means 4 * d_model."""

    kind = "dense"
    paper = "Vaswani et al. 2017 (Transformer FFN)"
    active_per_token = "all d_ff cells"

    d_ff: int = 0

    def width(self, ctx: LayerContext) -> int:
        return self.d_ff or 4 * ctx.d_model

    def validate(self, ctx: LayerContext) -> None:
        require(self.d_ff >= 0, "d_ff", f"must be >= 0 (0 means 4*d_model), got {self.d_ff}")

    def cost(self, ctx: LayerContext) -> LayerCost:
        # Two matmuls D x F: 2*D*F parameters, 2*D*F multiply-adds = 4*D*F FLOPs per token.
        params = 2 * ctx.d_model * self.width(ctx)
        return LayerCost(params_total=params, params_active=params, flops_per_token=2 * params)

    def build(self, ctx: LayerContext) -> MemoryLayer:
        return DenseFFN(ctx.d_model, self.width(ctx))


class DenseFFN(MemoryLayer):
    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.up = nn.Linear(d_model, d_ff, bias=False)
        self.down = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x_BTD: torch.Tensor, ctx: ForwardContext) -> tuple[torch.Tensor, torch.Tensor]:
        y_BTD = self.down(F.gelu(self.up(x_BTD)))
        return y_BTD, x_BTD.new_zeros(())
