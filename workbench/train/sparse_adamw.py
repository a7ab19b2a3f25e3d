"""Lazy (sparse-row) AdamW for memory value tables: only the rows read this step are updated.

A step of a PKM or VanillaM layer reads k rows of its value table per token, so most rows get
a zero gradient; dense AdamW still reads and writes every row's weight and both moments. Here a
row is updated only where its gradient is nonzero this step, with torch's AdamW arithmetic
(decoupled weight decay, ``lerp`` first moment, bias correction) on the gathered rows.

The choice (lazy moments, as torch's ``SparseAdam`` and TensorFlow Addons' ``LazyAdam``): a row without gradient keeps its weight, ``exp_avg`` and ``exp_avg_sq`` unchanged. Its
consequences, against dense AdamW fed zero gradients for those rows:
* an unread row does not keep moving on its momentum, and its moments do not decay while it
  is unread, so when read again its update uses moments as old as its last read;
* it is not weight-decayed while unread (the value group has weight decay 0 anyway);
* bias correction uses the global step (the optimizer's step count), not the row's number of
  reads, so a row read for the first time at step s is corrected by 1 - beta**s, not 1 - beta.
A row whose gradient is exactly zero although it was read (a zero read weight) counts as unread.

Dense groups (everything but the value tables) go to the torch AdamW given as ``rest``.
Selecting the rows (``nonzero``) reads a count back to the host, so a step with this optimizer
is not captured in a CUDA graph (the trainer detects the synchronisation and runs eagerly).

Shapes: R table rows, D row width, U rows updated this step.
"""

from __future__ import annotations

from typing import Any

import torch


@torch.no_grad()
def lazy_adamw_rows(
    param_RD: torch.Tensor,
    grad_RD: torch.Tensor,
    exp_avg_RD: torch.Tensor,
    exp_avg_sq_RD: torch.Tensor,
    *,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> torch.Tensor:
    """One AdamW step (global step count ``step``, already incremented) of the rows of
    ``param_RD`` whose gradient is nonzero, in place; the other rows and their moments are left
    as they are. Returns the updated row ids ``[U]``.

    On those rows the arithmetic is that of torch's single-tensor AdamW, op for op, so a row
    updated here equals torch's dense update of the same row from the same state.
    """
    rows_U = grad_RD.ne(0).any(dim=1).nonzero().squeeze(1)
    if rows_U.numel() == 0:
        return rows_U
    w_UD, g_UD = param_RD.index_select(0, rows_U), grad_RD.index_select(0, rows_U)
    m_UD, v_UD = exp_avg_RD.index_select(0, rows_U), exp_avg_sq_RD.index_select(0, rows_U)
    if weight_decay != 0:
        w_UD.mul_(1 - lr * weight_decay)
    m_UD.lerp_(g_UD, 1 - beta1)
    v_UD.mul_(beta2).addcmul_(g_UD, g_UD, value=1 - beta2)
    step_size = lr / (1 - beta1**step)
    denom_UD = (v_UD.sqrt() / (1 - beta2**step) ** 0.5).add_(eps)
    w_UD.addcdiv_(m_UD, denom_UD, value=-step_size)
    param_RD.index_copy_(0, rows_U, w_UD)
    exp_avg_RD.index_copy_(0, rows_U, m_UD)
    exp_avg_sq_RD.index_copy_(0, rows_U, v_UD)
    return rows_U


class SparseRowAdamW(torch.optim.Optimizer):
    """AdamW whose own groups (2-D value tables) are updated lazily, row by row
    (:func:`lazy_adamw_rows`), and whose other parameters go to ``rest`` (a dense optimizer
    stepped and zeroed with it).

    ``groups`` are torch param groups (``params``, ``weight_decay``, optionally ``lr_scale``);
    ``lr`` is a float (the trainer's ``set_lr`` sets each group's, scaled). Gradients are
    clipped by the trainer before the step, as for torch's AdamW.
    """

    def __init__(
        self,
        groups: list[dict[str, Any]],
        rest: torch.optim.Optimizer | None = None,
        *,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(groups, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(
                        f"SparseRowAdamW updates rows of 2-D tables, got a {p.dim()}-D parameter"
                    )
        self.rest = rest

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none)
        if self.rest is not None:
            self.rest.zero_grad(set_to_none)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        if self.rest is not None:
            self.rest.step()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise ValueError("SparseRowAdamW reads dense gradients (embedding_bag's default)")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                lazy_adamw_rows(
                    p,
                    p.grad,
                    state["exp_avg"],
                    state["exp_avg_sq"],
                    step=state["step"],
                    lr=float(group["lr"]),
                    beta1=beta1,
                    beta2=beta2,
                    eps=group["eps"],
                    weight_decay=group["weight_decay"],
                )
