"""switch: top-1 learned-gate mixture of experts with the load-balancing loss.

Paper: Fedus, Zoph, Shazeer 2021, "Switch Transformers" (JMLR 2022). In the unified view the
experts are memory blocks of g = ``expert_width`` cells, B = ``n_experts``, k = 1, selected by
a learned gate ``x . e_b``; the output is scaled by the router probability of the chosen expert.

Choices written down here:
* load-balancing loss ``aux_loss_coef * E * sum_e f_e * P_e`` over the batch's tokens (f_e:
  fraction routed to e, P_e: mean router probability of e), as in the paper's eq. 4;
* ``capacity_factor`` 0 means dropless (the modern default); > 0 gives each expert
  ``ceil(capacity_factor * N / E)`` slots, in token order, and a dropped token contributes
  zero (it passes through on the residual stream);
* the router runs in float32 (the paper's "selective precision").

Shapes: B batch, T sequence, D model width, E experts, G expert width, N = B*T tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workbench.memory.base import ForwardContext, LayerContext, LayerCost, MemoryConfig, MemoryLayer, require
from workbench.memory.experts import ExpertBank
from workbench.memory.registry import register


@register
@dataclass(frozen=True, kw_only=True)
class SwitchConfig(MemoryConfig):
    """``n_experts`` blocks of ``expert_width`` cells (0 means 4*d_model); top-1 learned gate."""

    kind = "switch"
    paper = "Fedus et al. 2021, Switch Transformers"
    active_per_token = "router + 1 expert of expert_width cells"

    n_experts: int = 8
    expert_width: int = 0
    aux_loss_coef: float = 0.01
    capacity_factor: float = 0.0
    impl: str = "auto"

    def width(self, ctx: LayerContext) -> int:
        return self.expert_width or 4 * ctx.d_model

    def validate(self, ctx: LayerContext) -> None:
        require(self.n_experts >= 1, "n_experts", f"must be >= 1, got {self.n_experts}")
        require(
            self.expert_width >= 0,
            "expert_width",
            f"must be >= 0 (0 means 4*d_model), got {self.expert_width}",
        )
        require(self.aux_loss_coef >= 0, "aux_loss_coef", f"must be >= 0, got {self.aux_loss_coef}")
        require(
            self.capacity_factor >= 0,
            "capacity_factor",
            f"must be >= 0 (0 = dropless), got {self.capacity_factor}",
        )
        require(
            self.impl in ("auto", "loop", "sorted", "grouped"),
            "impl",
            f"must be auto|loop|sorted|grouped, got {self.impl!r}",
        )

    def cost(self, ctx: LayerContext) -> LayerCost:
        d, e, g = ctx.d_model, self.n_experts, self.width(ctx)
        router = d * e
        expert = 2 * d * g
        # Router matmul D x E plus one expert (two D x G matmuls), 2 FLOPs per multiply-add.
        return LayerCost(
            params_total=router + e * expert,
            params_active=router + expert,
            flops_per_token=2 * (router + expert),
        )

    def build(self, ctx: LayerContext) -> MemoryLayer:
        return SwitchMoE(self, ctx)


class SwitchMoE(MemoryLayer):
    def __init__(self, cfg: SwitchConfig, ctx: LayerContext) -> None:
        super().__init__()
        self.cfg = cfg
        self.router = nn.Linear(ctx.d_model, cfg.n_experts, bias=False)
        self.experts = ExpertBank(cfg.n_experts, ctx.d_model, cfg.width(ctx), impl=cfg.impl)
        self.init_routing_counters(cfg.n_experts)

    def forward(self, x_BTD: torch.Tensor, ctx: ForwardContext) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, D = x_BTD.shape
        E = self.cfg.n_experts
        x_ND = x_BTD.reshape(B * T, D)
        logits_NE = self.router(x_ND.float()) if x_ND.dtype != torch.float32 else self.router(x_ND)
        probs_NE = logits_NE.float().softmax(dim=-1)
        gate_N, expert_N = probs_NE.max(dim=-1)

        n_dropped = None
        if self.cfg.capacity_factor > 0:
            capacity = math.ceil(self.cfg.capacity_factor * B * T / E)
            onehot_NE = F.one_hot(expert_N, E)
            position_N = ((onehot_NE.cumsum(0) - 1) * onehot_NE).sum(-1)
            over = position_N >= capacity
            n_dropped = over.sum()
            expert_N = torch.where(over, torch.full_like(expert_N, -1), expert_N)

        y_ND = self.experts(x_ND, expert_N) * gate_N.unsqueeze(1).to(x_ND.dtype)
        self.count_routing(expert_N[expert_N >= 0], B * T, n_dropped)

        aux = x_BTD.new_zeros((), dtype=torch.float32)
        if self.training and self.cfg.aux_loss_coef > 0:
            f_E = torch.bincount(expert_N.clamp_min(0), minlength=E).float() / (B * T)
            p_E = probs_NE.mean(0)
            aux = self.cfg.aux_loss_coef * E * (f_E * p_E).sum()
        return y_ND.reshape(B, T, D), aux
