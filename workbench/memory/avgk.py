"""avgk: a sparse FFN whose blocks are selected by the mean of their own keys (Avg-K).

Paper: Liu, Dettmers, Lin, Stoyanov, Li 2023, "Towards A Unified View of Sparse Feed-Forward
Network in Pretraining Large Language Model" (EMNLP).
A dense FFN of ``d_ff`` cells (key k_i = column i of W1, value v_i = row i of W2) is grouped
into B = d_ff / g blocks of g consecutive cells. A token scores each block with the mean of
the block's keys and reads the top k blocks with the cells' own activations:

    y(x) = sum_{b in TopK_b(x . mean_{i in b} k_i)} sum_{i in b} gelu(x . k_i) v_i

Choices where the paper leaves room:
* the block keys are recomputed from W1 at every forward (no extra parameters, as in the
  paper); their gradient flows into W1 only through the selected cells, the top-k itself is
  not differentiable, so the mean keys get no gradient of their own;
* no load-balancing loss by default (the paper's Avg-K has none); routing counters record the
  load. Two knobs for the collapse ablation of docs/REPLICATION.md: ``aux_loss_coef`` > 0 adds
  Switch's balancing loss with P_e the mean softmax of the block scores (so the mean keys, and
  through them W1, learn from it), and ``block_key = "unit"`` scores with the block means
  scaled to unit length (a block whose cells grew does not win on norm alone);
* activation gelu, as the workbench's dense FFN, so k = B gives exactly the dense FFN;
* the selected blocks are run through :class:`ExpertBank` (blocks are experts of width g,
  read with weight 1), so ``impl`` has the same meaning as for switch;
* ``consume`` accepts only ``expert``: Avg-K is itself the slot's memory, there is no lookup
  to add beside or concatenate to an FFN.

Analytic cost per token, D = d_model, F = d_ff, g = block_size, B = F/g:
  selector D*B MACs (x . mean keys; the means themselves, F*D additions per batch, are not
  per-token work); k blocks of two D x g matmuls, 2*D*k*g MACs. Active parameters: the
  2*D*k*g weights of the read blocks.

Shapes: B batch, T sequence, D model width, N tokens, E blocks, G cells per block, K blocks
read per token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from workbench.memory.base import ForwardContext, LayerContext, LayerCost, MemoryConfig, MemoryLayer, require
from workbench.memory.experts import IMPLS, ExpertBank
from workbench.memory.registry import register

BLOCK_KEYS = ("mean", "unit")


@register
@dataclass(frozen=True, kw_only=True)
class AvgKConfig(MemoryConfig):
    """``d_ff`` cells (0 means 4*d_model) in blocks of ``block_size``; ``k`` blocks read per token."""

    kind = "avgk"
    paper = "Liu et al. 2023, Towards a Unified View of Sparse Feed-Forward Network (Avg-K)"
    active_per_token = "k blocks of block_size cells, selected by mean block keys"

    d_ff: int = 0
    block_size: int = 16
    k: int = 4
    impl: str = "auto"
    consume: str = "expert"
    block_key: str = "mean"
    aux_loss_coef: float = 0.0

    def width(self, ctx: LayerContext) -> int:
        return self.d_ff or 4 * ctx.d_model

    def n_blocks(self, ctx: LayerContext) -> int:
        return self.width(ctx) // self.block_size

    def validate(self, ctx: LayerContext) -> None:
        require(self.d_ff >= 0, "d_ff", f"must be >= 0 (0 means 4*d_model), got {self.d_ff}")
        require(self.block_size >= 1, "block_size", f"must be >= 1, got {self.block_size}")
        width = self.width(ctx)
        if width % self.block_size:
            small = [g for g in range(1, math.isqrt(width) + 1) if width % g == 0]
            nearest = min(small + [width // g for g in small], key=lambda g: abs(g - self.block_size))
            require(
                False,
                "block_size",
                f"must divide d_ff={width}, got {self.block_size}; the nearest that does is {nearest}",
            )
        n_blocks = self.n_blocks(ctx)
        require(
            1 <= self.k <= n_blocks,
            "k",
            f"must be in [1, n_blocks={n_blocks}] (d_ff / block_size), got {self.k}",
        )
        require(
            self.block_key in BLOCK_KEYS,
            "block_key",
            f"must be one of {'|'.join(BLOCK_KEYS)}, got {self.block_key!r}",
        )
        require(self.aux_loss_coef >= 0, "aux_loss_coef", f"must be >= 0, got {self.aux_loss_coef}")
        require(self.impl in IMPLS, "impl", f"must be one of {'|'.join(IMPLS)}, got {self.impl!r}")
        require(
            self.consume == "expert",
            "consume",
            f"avgk is itself the slot's memory and supports consume=expert only, got {self.consume!r}",
        )

    def cost(self, ctx: LayerContext) -> LayerCost:
        d, g = ctx.d_model, self.block_size
        selector = d * self.n_blocks(ctx)
        read = 2 * d * self.k * g
        return LayerCost(
            params_total=2 * d * self.width(ctx),
            params_active=read,
            flops_per_token=2 * (selector + read),
        )

    def build(self, ctx: LayerContext) -> MemoryLayer:
        return AvgK(self, ctx)


class AvgK(MemoryLayer):
    def __init__(self, cfg: AvgKConfig, ctx: LayerContext) -> None:
        super().__init__()
        self.cfg = cfg
        n_blocks = cfg.n_blocks(ctx)
        self.blocks = ExpertBank(n_blocks, ctx.d_model, cfg.block_size, impl=cfg.impl)
        self.init_routing_counters(n_blocks)

    def block_keys(self) -> torch.Tensor:
        """``[E, D]``: each block's mean cell key (the mean of its columns of W1), of unit length
        under ``block_key = "unit"``."""
        keys_ED = self.blocks.w1_EDG.mean(dim=2)
        return F.normalize(keys_ED, dim=1) if self.cfg.block_key == "unit" else keys_ED

    def scores(self, x_ND: torch.Tensor) -> torch.Tensor:
        """``[N, E]``: each token's score of each block."""
        return x_ND @ self.block_keys().to(x_ND.dtype).t()

    def select(self, x_ND: torch.Tensor) -> torch.Tensor:
        """``[N, K]`` ids of the blocks whose mean key has the largest dot product with x."""
        return self.scores(x_ND).topk(self.cfg.k, dim=-1).indices

    def forward(self, x_BTD: torch.Tensor, ctx: ForwardContext) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, D = x_BTD.shape
        N, K = B * T, self.cfg.k
        x_ND = x_BTD.reshape(N, D)
        scores_NE = self.scores(x_ND)
        block_NK = scores_NE.topk(K, dim=-1).indices
        self.count_routing(block_NK, N * K)
        y_ND = self.blocks(x_ND, block_NK)
        aux = x_BTD.new_zeros((), dtype=torch.float32)
        if self.training and self.cfg.aux_loss_coef > 0:
            E = scores_NE.shape[1]
            # index_add_, not bincount: on CUDA bincount sizes its output by a max read on the
            # host, a synchronisation that keeps the step out of a CUDA graph (the cause of the
            # 10x slower runs with this loss on the H200; re-measured level, docs/REPLICATION.md).
            ids = block_NK.reshape(-1)
            f_E = scores_NE.new_zeros(E, dtype=torch.float32).index_add_(
                0, ids, torch.ones_like(ids, dtype=torch.float32)
            ) / (N * K)
            probs_E = scores_NE.float().softmax(dim=-1).mean(0)
            aux = self.cfg.aux_loss_coef * E * (f_E * probs_E).sum()
        return y_ND.view(B, T, D), aux
