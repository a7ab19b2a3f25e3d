"""vanilla: VanillaM, a memory of single cells read top-k by the memory's own keys (g = 1).

Paper: Liu et al. 2023, "Towards a Unified View of Sparse Feed-Forward Network in Pretraining
Large Language Model" (EMNLP), the VanillaM baseline. Every cell i has a key k_i (column of W1)
and a value v_i (row of W2). Each token scores every cell, ``s_i = x . k_i``, keeps the k
highest and reads ``y = sum_{i in topk(s)} gelu(s_i) v_i``; the weight of a cell is its own
activation, so no selector parameters exist.

Choices where the paper is unclear:
* selection is by the pre-activation score ``s_i = x . k_i`` (docs/DESIGN.md §2), not by the
  activation; GELU is increasing and positive for positive scores, so the two agree whenever
  the k-th best score is positive;
* GELU, as in the dense baseline, so that vanilla with k = d_ff equals the dense FFN;
* the value read is :func:`~workbench.memory._lookup.weighted_rows`: one ``embedding_bag``
  (gather + weighted sum) on the CPU; on CUDA, where F <= 128 k, the top-k activations
  scattered into an otherwise zero ``[N, F]`` matrix times the values, a dense GEMM (the
  dense FFN's second matmul with all but k activations zeroed; same sums, tensor cores instead
  of three memory-bound passes over N*k gathered rows);
  :meth:`VanillaMemory.memory_value_parameters` lists the values for the trainer's value
  group (no weight decay, ``train.memory_value_lr_scale``, lazy rows with
  ``train.sparse_values``), as PKM's; the keys stay in the weight-decay group.

Cost: scoring every cell is a full D x F matmul (the selector, counted); the value read is k
multiply-adds of width D (counted so, although the CUDA read runs F of them: the convention
counts the work the layer defines, not the kernel that does it). fvcore sees the scoring
matmul but not ``embedding_bag``, so the analytic count is the reported one.

Shapes: B batch, T sequence, D model width, F cells (d_ff), K cells read per token, N = B*T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workbench.memory._lookup import weighted_rows
from workbench.memory.base import ForwardContext, LayerContext, LayerCost, MemoryConfig, MemoryLayer, require
from workbench.memory.registry import register


@register
@dataclass(frozen=True, kw_only=True)
class VanillaConfig(MemoryConfig):
    """``d_ff`` cells (0 means 4*d_model), each token reads the ``k`` best-scoring cells."""

    kind = "vanilla"
    paper = "Liu et al. 2023, unified view of sparse FFN (VanillaM)"
    active_per_token = "all d_ff keys (scoring) + k values"

    d_ff: int = 0
    k: int = 32

    def width(self, ctx: LayerContext) -> int:
        return self.d_ff or 4 * ctx.d_model

    def validate(self, ctx: LayerContext) -> None:
        require(self.d_ff >= 0, "d_ff", f"must be >= 0 (0 means 4*d_model), got {self.d_ff}")
        require(
            1 <= self.k <= self.width(ctx),
            "k",
            f"must be between 1 and the number of cells ({self.width(ctx)}), got {self.k}",
        )

    def cost(self, ctx: LayerContext) -> LayerCost:
        d, f = ctx.d_model, self.width(ctx)
        # Keys: D x F scoring matmul (every key read); values: k rows of width D.
        active = d * f + self.k * d
        return LayerCost(params_total=2 * d * f, params_active=active, flops_per_token=2 * active)

    def build(self, ctx: LayerContext) -> MemoryLayer:
        return VanillaMemory(ctx.d_model, self.width(ctx), self.k)


class VanillaMemory(MemoryLayer):
    def __init__(self, d_model: int, d_ff: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.keys = nn.Linear(d_model, d_ff, bias=False)
        self.values_FD = nn.Parameter(torch.empty(d_ff, d_model))
        nn.init.normal_(self.values_FD, std=1.0 / math.sqrt(d_ff))
        self.init_routing_counters(d_ff)

    def memory_value_parameters(self) -> list[nn.Parameter]:
        """The value rows: the trainer's value group (``make_optimizer``)."""
        return [self.values_FD]

    def forward(self, x_BTD: torch.Tensor, ctx: ForwardContext) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, D = x_BTD.shape
        scores_NF = self.keys(x_BTD.reshape(B * T, D))
        top_NK, cell_NK = scores_NF.topk(self.k, dim=-1)
        y_ND = weighted_rows(self.values_FD, cell_NK, F.gelu(top_NK))
        self.count_routing(cell_NK, B * T * self.k)
        return y_ND.reshape(B, T, D), x_BTD.new_zeros((), dtype=torch.float32)
