"""Matmul weights held in bf16, their float32 master copies in the optimizer.

Under bf16 autocast every matmul casts its float32 weight to bf16 on every forward, and the
weight's bf16 gradient back to float32 in the backward. For a sparse memory the weights are
many times the active ones (16 experts: 16x a dense FFN's), so these casts move bytes in
proportion to the memory's size, not to the work done: a third of the gap between a switch
layer and the dense FFN of equal active FLOPs at d=768 (docs/PERFORMANCE.md). Holding those
weights in bf16 and giving the optimizer the float32 copy removes the casts; the fused update
(:mod:`workbench.train.fused_adamw`) reads the bf16 gradient and writes the bf16 weight in the same
pass as the float32 AdamW update, so the optimizer moves no more bytes than before.

The numerics are autocast's: the forward reads the same bf16 rounding of the same float32
master, the gradient is the same bf16 matmul output, and the update runs in float32 with the
clipping coefficient computed from float32 norms. Two differences: a weight used twice in a
step (AvgK's block keys are the mean of its expert weights) sums its two gradients in bf16,
and AvgK's keys are averaged from the bf16 weights.

Which weights: those autocast would cast, i.e. the weights of ``nn.Linear`` modules and of
expert banks, and the memory layers' value tables (their ``memory_value_parameters()``), which
the layers read in the autocast dtype as autocast reads a matmul weight
(workbench/memory/_lookup.py); not embeddings (the residual stream stays float32), norms, nor
a Linear marked :func:`~workbench.memory.base.float32_weights` (routers, which run in float32
by design). A table's rows are read many times a step (each row of a 256^2-slot PKM table ~64
times by 32,768 tokens of 4 heads reading 32 slots each), so its bf16 copy halves the bytes
the reads move, forward and backward, where a Linear's saves only the casts.

``lazy`` tables (``train.sparse_values``) are updated row by row: a row whose gradient is zero
this step keeps its master, weight and moments (the kernel skips its bytes), see
:mod:`workbench.train.sparse_adamw` for the choice.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from workbench.memory.base import keeps_float32
from workbench.memory.experts import ExpertBank
from workbench.train.fused_adamw import adamw_master_update


def low_precision_parameters(model: nn.Module, tables: bool = True) -> list[torch.Tensor]:
    """The parameters that only ever feed autocast matmuls or autocast-dtype table reads (see
    the module docstring); ``tables`` False leaves the value tables out (bench/layers.py's
    "before")."""
    out: dict[int, torch.Tensor] = {}
    for module in model.modules():
        if keeps_float32(module):
            continue
        if isinstance(module, nn.Linear):
            out[id(module.weight)] = module.weight
        elif isinstance(module, ExpertBank):
            out.update((id(w), w) for w in (module.w1_EDG, module.w2_EGD))
        hook = getattr(module, "memory_value_parameters", None)
        if tables and callable(hook):
            out.update((id(p), p) for p in hook())
    return [p for p in out.values() if p.requires_grad]


def cast_to(model: nn.Module, dtype: torch.dtype) -> list[torch.Tensor]:
    """Store :func:`low_precision_parameters` in ``dtype`` in place; returns them (bench, tests)."""
    params = low_precision_parameters(model)
    for p in params:
        p.data = p.data.to(dtype)
    return params


class MasterAdamW(torch.optim.Optimizer):
    """AdamW with gradient clipping in which some weights are bf16 and have float32 masters.

    ``groups`` are torch param groups (``params``, ``weight_decay``, optionally ``lr_scale``:
    the group's learning rate as a multiple of the schedule's, 1 if absent). The parameters
    listed in ``low_precision`` are converted to ``dtype`` in place here (after their float32 values are
    copied to the masters) and updated by the fused kernel; the rest go through torch's fused
    AdamW. Clipping (``max_grad_norm`` > 0) is part of ``step``: the norm of all gradients is
    taken in float32 and the coefficient applied in the update, so the trainer does not clip.
    The learning rate is one device tensor per ``lr_scale`` (``lr`` is the one of scale 1),
    shared by the bf16 and the float32 part of a group; the trainer's ``set_lr`` fills each with
    the schedule's rate times its scale. Nothing is read back to the host: a step can be
    captured in a CUDA graph.
    """

    clips_gradients = True

    def __init__(
        self,
        groups: list[dict[str, Any]],
        low_precision: Iterable[torch.Tensor],
        *,
        lr: float,
        betas: tuple[float, float],
        eps: float = 1e-8,
        max_grad_norm: float = 0.0,
        dtype: torch.dtype = torch.bfloat16,
        lazy: Iterable[torch.Tensor] = (),
    ) -> None:
        low = {id(p) for p in low_precision}
        tables = list(lazy)
        self.lazy = {id(p) for p in tables}
        if not self.lazy <= low or any(p.dim() != 2 for p in tables):
            raise ValueError("MasterAdamW: lazy parameters must be 2-D tables among the low-precision ones")
        params = [p for g in groups for p in g["params"]]
        device = params[0].device
        self.lr = torch.tensor(float(lr), dtype=torch.float32, device=device)
        scales = [float(g.get("lr_scale", 1.0)) for g in groups]
        rates = {1.0: self.lr}
        for scale in scales:
            if scale not in rates:
                rates[scale] = torch.tensor(float(lr) * scale, dtype=torch.float32, device=device)
        master_groups = [
            {**g, "params": [p for p in g["params"] if id(p) in low], "lr": rates[scale]}
            for g, scale in zip(groups, scales, strict=True)
        ]
        rest_groups = [
            {**g, "params": [p for p in g["params"] if id(p) not in low], "lr": rates[scale]}
            for g, scale in zip(groups, scales, strict=True)
        ]
        super().__init__(
            [g for g in master_groups if g["params"]], {"lr": self.lr, "betas": betas, "eps": eps}
        )
        rest_groups = [g for g in rest_groups if g["params"]]
        cuda = device.type == "cuda"
        # A tensor learning rate needs the fused (CUDA) or the single-tensor (CPU) implementation.
        self.rest = (
            torch.optim.AdamW(
                rest_groups,
                lr=self.lr,
                betas=betas,
                eps=eps,
                fused=cuda,
                foreach=False if not cuda else None,
                capturable=cuda,
            )
            if rest_groups
            else None
        )
        self.max_grad_norm = max_grad_norm
        self.step_count = torch.zeros((), dtype=torch.float32, device=device)
        self.one = torch.ones((), dtype=torch.float32, device=device)
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                state["master"] = p.detach().to(torch.float32, copy=True)
                state["exp_avg"] = torch.zeros_like(state["master"])
                state["exp_avg_sq"] = torch.zeros_like(state["master"])
                p.data = p.data.to(dtype)

    def all_parameters(self) -> list[nn.Parameter]:
        groups = self.param_groups + (self.rest.param_groups if self.rest else [])
        return [p for g in groups for p in g["params"]]

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none)
        if self.rest is not None:
            self.rest.zero_grad(set_to_none)

    def clip_coefficient(self) -> torch.Tensor:
        """``min(1, max_norm / (norm + 1e-6))`` over every gradient, norms taken in float32."""
        grads = [p.grad for p in self.all_parameters() if p.grad is not None]
        if self.max_grad_norm <= 0 or not grads:
            return self.one
        norms = torch._foreach_norm(grads, 2, dtype=torch.float32)
        total = torch.linalg.vector_norm(torch.stack(norms))
        return torch.clamp(self.max_grad_norm / (total + 1e-6), max=1.0)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        coef = self.clip_coefficient()
        if self.rest is not None:
            rest_grads = [p.grad for g in self.rest.param_groups for p in g["params"] if p.grad is not None]
            if rest_grads and self.max_grad_norm > 0:
                torch._foreach_mul_(rest_grads, coef)
            self.rest.step()
        self.step_count += 1
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                adamw_master_update(
                    p.data,
                    state["master"],
                    p.grad,
                    state["exp_avg"],
                    state["exp_avg_sq"],
                    lr=group["lr"],
                    step=self.step_count,
                    coef=coef,
                    beta1=beta1,
                    beta2=beta2,
                    eps=group["eps"],
                    weight_decay=group["weight_decay"],
                    touched_R=p.grad.ne(0).any(dim=1) if id(p) in self.lazy else None,
                )
