"""Lazy (sparse-row) AdamW for memory value tables: only the rows read this step are updated.

A step of a PKM or VanillaM layer reads k rows of its value table per token, so a row that no
token of the step read gets a zero gradient; dense AdamW would still move it (on its momentum)
and decay its moments. Here a row is updated only where its gradient is nonzero this step,
with torch's AdamW arithmetic (decoupled weight decay, ``lerp`` first moment, bias correction)
on the touched rows.

The choice (lazy moments, as torch's ``SparseAdam`` and TensorFlow Addons' ``LazyAdam``): a row
without gradient keeps its weight, ``exp_avg`` and ``exp_avg_sq`` unchanged. Its consequences,
against dense AdamW fed zero gradients for those rows:
* an unread row does not keep moving on its momentum, and its moments do not decay while it
  is unread, so when read again its update uses moments as old as its last read;
* it is not weight-decayed while unread (the value group has weight decay 0 anyway);
* bias correction uses the global step (the optimizer's step count), not the row's number of
  reads, so a row read for the first time at step s is corrected by 1 - beta**s, not 1 - beta.
A row whose gradient is exactly zero although it was read (a zero read weight) counts as unread.

No host synchronisation: the touched rows are a ``[R]`` mask computed on the device (no
``nonzero``, whose count the host would read), and every tensor the update touches has a
fixed shape, so a step is captured in the trainer's CUDA graph like a dense one. The update
is the dense arithmetic with the mask folded in, each factor exact on both kinds of row
(x * 1.0 = x, x + 0.0 = x, ``lerp`` by 0 returns its start): a touched row gets the same bits
as torch's single-tensor AdamW, an untouched row keeps its own. It costs about the bytes of a
dense step (the tensors are read whole), and a lazy step has little to save at the workbench's
shapes anyway: a table of V rows read R times per token by N uniformly spread tokens leaves an
expected exp(-N*R/V) of its rows untouched, and N*R/V runs from 4 (token_table, 8,192 ids) to
683 (VanillaM) over the tables of ``python -m bench.run --sections tables`` (32,768 tokens):
at most 2% of the rows. Under master weights (the CUDA default) the Triton kernel of
:mod:`workbench.train.fused_adamw` does the same update and skips the bytes of untouched rows
(:class:`~workbench.train.master.MasterAdamW` ``lazy``).

Why lazy is not the default (``train.sparse_values`` False): it saves no bytes while every row
is read every step, and it departs from the dense AdamW every other group uses exactly where
it does anything (rows left unread).

Dense groups (everything but the value tables) go to the torch AdamW given as ``rest``.

Shapes: R table rows, D row width.
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
    step: int | torch.Tensor,
    lr: float | torch.Tensor,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> torch.Tensor:
    """One AdamW step (global step count ``step``, already incremented) of the rows of
    ``param_RD`` whose gradient is nonzero, in place; the other rows and their moments keep
    their bits. Returns the ``[R]`` mask of the updated rows.

    With ``step`` and ``lr`` Python numbers the arithmetic on those rows is that of torch's
    single-tensor AdamW, op for op, so a row updated here equals torch's dense update of the same
    row from the same state. With 0-d device tensors (a captured step reads the schedule's rate
    and the step count from the device) the bias correction is computed on the device; the
    result then agrees with torch's to rounding.
    """
    touched_R1 = grad_RD.ne(0).any(dim=1, keepdim=True)
    if weight_decay != 0:
        param_RD.mul_(torch.where(touched_R1, 1 - lr * weight_decay, 1.0))
    exp_avg_RD.lerp_(grad_RD, torch.where(touched_R1, 1 - beta1, 0.0))
    exp_avg_sq_RD.mul_(torch.where(touched_R1, beta2, 1.0)).addcmul_(grad_RD, grad_RD, value=1 - beta2)
    if isinstance(step, torch.Tensor) or isinstance(lr, torch.Tensor):
        step_t = torch.as_tensor(step, dtype=torch.float32, device=param_RD.device)
        denom_RD = (exp_avg_sq_RD.sqrt() / (1 - beta2**step_t).sqrt()).add_(eps)
        param_RD.sub_((exp_avg_RD * touched_R1).div_(denom_RD).mul_(lr / (1 - beta1**step_t)))
    else:
        step_size = lr / (1 - beta1**step)
        denom_RD = (exp_avg_sq_RD.sqrt() / (1 - beta2**step) ** 0.5).add_(eps)
        param_RD.addcdiv_(exp_avg_RD * touched_R1, denom_RD, value=-step_size)
    return touched_R1.squeeze(1)


class SparseRowAdamW(torch.optim.Optimizer):
    """AdamW whose own groups (2-D value tables) are updated lazily, row by row
    (:func:`lazy_adamw_rows`), and whose other parameters go to ``rest`` (a dense optimizer
    stepped and zeroed with it).

    ``groups`` are torch param groups (``params``, ``weight_decay``, optionally ``lr_scale``);
    ``lr`` is a float (the trainer's ``set_lr`` sets each group's, scaled). ``capturable``
    keeps each group's rate and the step count as device tensors, so a step can be captured in
    a CUDA graph and replayed with the schedule's rate (the trainer sets it on CUDA); without
    it they are Python numbers (torch's arithmetic bit for bit). Gradients are clipped by the
    trainer before the step, as for torch's AdamW.
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
        capturable: bool = False,
    ) -> None:
        super().__init__(groups, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(
                        f"SparseRowAdamW updates rows of 2-D tables, got a {p.dim()}-D parameter"
                    )
            if capturable:
                device = group["params"][0].device
                group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=device)
        self.rest = rest
        self.capturable = capturable

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
                    state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                lazy_adamw_rows(
                    p,
                    p.grad,
                    state["exp_avg"],
                    state["exp_avg_sq"],
                    step=state["step"] if self.capturable else int(state["step"]),
                    lr=group["lr"],
                    beta1=beta1,
                    beta2=beta2,
                    eps=group["eps"],
                    weight_decay=group["weight_decay"],
                )
