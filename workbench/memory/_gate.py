"""The learned top-k gate shared by ``switch`` (k = 1) and ``gshard`` (k = 2): router, optional
capacity, load-balancing loss, optional always-on shared experts, dispatch through ExpertBank.

Papers: Fedus et al. 2021 (Switch Transformers), Lepikhin et al. 2020 (GShard), Dai et al. 2024
(DeepSeekMoE, shared experts). The layer files (switch.py, gshard.py) hold each layer's
registered Config and its paper-specific choices; the module lives here so both share it.

Choices written down here:
* router ``W_r`` (D x E, no bias) runs in float32 with autocast off (Switch's "selective
  precision"); ``p = softmax(x W_r)``; each token reads its top-k experts;
* gate weights are the router probabilities of the chosen experts, renormalised over the k
  chosen when the config asks for it (GShard); with k = 1 renormalising makes the gate 1 and
  the router then learns only from the load-balancing loss;
* load-balancing loss ``aux_loss_coef * E * sum_e f_e * P_e`` (Switch eq. 4), with f_e the
  fraction of the N*K routing choices that go to e, counted *before* capacity drops (the
  router's choice, as in the paper), so it is ``aux_loss_coef`` at perfect balance for any k;
  only in training mode;
* ``z_loss_coef`` > 0 adds ST-MoE's router z-loss ``z_loss_coef * mean_n (logsumexp_e logits)^2``
  (Zoph et al. 2022, eq. 5), which keeps the router's logits small so that its softmax does not
  saturate at high learning rates (docs/REPLICATION.md: Switch diverges at 4e-3 where hash
  trains); 0 (the default) is the Switch paper's layer; only in training mode;
* ``capacity_factor`` 0 is dropless; > 0 gives each expert ``ceil(capacity_factor * N * K / E)``
  slots filled in priority order "every token's first choice, in token order, then every
  token's second choice, ..." (GShard's order); a dropped read contributes zero (the token
  keeps the residual stream and any other read it has). Dropped reads are recorded;
* ``n_shared`` always-on experts of the same width (DeepSeekMoE) are added with weight 1;
* the analytic FLOPs are the dropless ones (capacity drops only lower the real count).

Shapes: B batch, T sequence, D model width, E routed experts, S shared experts, G expert width,
K experts read per token, N = B*T tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workbench.memory.base import (
    ForwardContext,
    LayerContext,
    LayerCost,
    MemoryConfig,
    MemoryLayer,
    float32_weights,
    require,
)
from workbench.memory.experts import ExpertBank, validate_bank

# How a read is weighted: ``prob`` the router probability (Switch, GShard); ``straight`` 1 in
# the forward pass with the probability's gradient in the backward (docs/REPLICATION.md: at
# small budgets a top-1 gate of ~1/E at init scales the experts' output down E-fold).
GATES = ("prob", "straight")


@dataclass(frozen=True, kw_only=True)
class TopKGateConfig(MemoryConfig):
    """Knobs shared by the learned-gate layers; subclasses say how many experts a token reads.

    ``n_experts`` routed blocks of ``expert_width`` cells (0 means 4*d_model); ``n_shared``
    always-on blocks of the same width; ``aux_loss_coef`` the load-balancing weight;
    ``capacity_factor`` 0 = dropless; ``impl`` the ExpertBank dispatch (auto|loop|sorted|grouped);
    ``gate`` how a read is weighted (:data:`GATES`); ``z_loss_coef`` the router z-loss weight.
    """

    n_experts: int = 8
    expert_width: int = 0
    n_shared: int = 0
    aux_loss_coef: float = 0.01
    capacity_factor: float = 0.0
    impl: str = "auto"
    gate: str = "prob"
    z_loss_coef: float = 0.0

    def routing(self) -> tuple[int, bool]:
        """(experts read per token, whether the gates are renormalised over them)."""
        raise NotImplementedError

    def width(self, ctx: LayerContext) -> int:
        return self.expert_width or 4 * ctx.d_model

    def validate(self, ctx: LayerContext) -> None:
        validate_bank(self.n_experts, self.expert_width, self.impl)
        require(self.n_shared >= 0, "n_shared", f"must be >= 0, got {self.n_shared}")
        require(self.aux_loss_coef >= 0, "aux_loss_coef", f"must be >= 0, got {self.aux_loss_coef}")
        require(self.z_loss_coef >= 0, "z_loss_coef", f"must be >= 0, got {self.z_loss_coef}")
        require(self.gate in GATES, "gate", f"must be one of {'|'.join(GATES)}, got {self.gate!r}")
        require(
            self.capacity_factor >= 0,
            "capacity_factor",
            f"must be >= 0 (0 = dropless), got {self.capacity_factor}",
        )

    def cost(self, ctx: LayerContext) -> LayerCost:
        d, e, g, s = ctx.d_model, self.n_experts, self.width(ctx), self.n_shared
        k, _ = self.routing()
        router = d * e
        expert = 2 * d * g
        # Router matmul D x E, then k routed and s shared experts (two D x G matmuls each);
        # every parameter read is one multiply-add per token, 2 FLOPs each.
        active = router + (k + s) * expert
        return LayerCost(
            params_total=router + (e + s) * expert,
            params_active=active,
            flops_per_token=2 * active,
        )

    def build(self, ctx: LayerContext) -> MemoryLayer:
        return TopKGateMoE(self, ctx)


class TopKGateMoE(MemoryLayer):
    def __init__(self, cfg: TopKGateConfig, ctx: LayerContext) -> None:
        super().__init__()
        self.cfg = cfg
        self.k, self.renormalize = cfg.routing()
        self.router = float32_weights(nn.Linear(ctx.d_model, cfg.n_experts, bias=False))
        self.experts = ExpertBank(cfg.n_experts, ctx.d_model, cfg.width(ctx), impl=cfg.impl)
        self.shared = ExpertBank(cfg.n_shared, ctx.d_model, cfg.width(ctx)) if cfg.n_shared else None
        self.init_routing_counters(cfg.n_experts)

    def logits(self, x_ND: torch.Tensor) -> torch.Tensor:
        """Router logits ``[N, E]``, in float32."""
        with torch.autocast(x_ND.device.type, enabled=False):
            return F.linear(x_ND.float(), self.router.weight.float())

    def route(
        self, x_ND: torch.Tensor, logits_NE: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Router probabilities ``[N, E]``, the chosen experts ``[N, K]`` and their gates ``[N, K]``."""
        if logits_NE is None:
            logits_NE = self.logits(x_ND)
        probs_NE = logits_NE.softmax(dim=-1)
        gate_NK, choice_NK = probs_NE.topk(self.k, dim=-1)
        if self.renormalize:
            gate_NK = gate_NK / gate_NK.sum(dim=-1, keepdim=True)
        if self.cfg.gate == "straight":
            # Forward value 1 (an expert's output at full scale, as a hash layer reads it); the
            # backward keeps the gate's gradient, so the router still learns from the loss.
            gate_NK = gate_NK + (1.0 - gate_NK).detach()
        return probs_NE, choice_NK, gate_NK

    def forward(self, x_BTD: torch.Tensor, ctx: ForwardContext) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, D = x_BTD.shape
        N, E, K = B * T, self.cfg.n_experts, self.k
        x_ND = x_BTD.reshape(N, D)
        logits_NE = self.logits(x_ND)
        probs_NE, choice_NK, gate_NK = self.route(x_ND, logits_NE)

        expert_NK, n_dropped = choice_NK, None
        if self.cfg.capacity_factor > 0:
            capacity = math.ceil(self.cfg.capacity_factor * N * K / E)
            # Slot of each read in its expert's queue, reads ordered first choices first (k-major).
            hit_ME = choice_NK.t().reshape(-1, 1) == torch.arange(E, device=x_ND.device)
            slot_M = ((hit_ME.cumsum(0) - 1) * hit_ME).sum(-1)
            over_NK = (slot_M >= capacity).view(K, N).t()
            n_dropped = over_NK.sum()
            expert_NK = choice_NK.masked_fill(over_NK, -1)

        y_ND = self.experts(x_ND, expert_NK, gate_NK)
        if self.shared is not None:
            y_ND = y_ND + self.shared.dense(x_ND)
        self.count_routing(expert_NK, N * K, n_dropped)

        aux = x_BTD.new_zeros((), dtype=torch.float32)
        if self.training and self.cfg.aux_loss_coef > 0:
            f_E = torch.zeros(E, device=x_ND.device).index_add_(
                0, choice_NK.reshape(-1), torch.full((N * K,), 1.0 / (N * K), device=x_ND.device)
            )
            aux = self.cfg.aux_loss_coef * E * (f_E * probs_NE.mean(0)).sum()
        if self.training and self.cfg.z_loss_coef > 0:
            aux = aux + self.cfg.z_loss_coef * logits_NE.logsumexp(dim=-1).square().mean()
        return y_ND.reshape(B, T, D), aux
