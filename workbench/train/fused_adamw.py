"""AdamW on a float32 master copy that writes the low-precision weight in the same pass.

One update of one parameter: the gradient (bf16, the dtype of the weight autograd saw) is
read once, scaled by the clipping coefficient in float32, and the float32 master weight and
moments are updated as torch's fused AdamW updates a float32 parameter (decoupled weight
decay, then ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``, bias corrections from the
step count); the new master weight is written back together with its bf16 rounding, the
weight the next forward reads. Per element that is 28 bytes of traffic, the same as torch's
fused AdamW on a float32 weight, and it replaces the two casts autocast makes every step
(float32 weight to bf16 in the forward, the bf16 gradient to float32 in the backward, 12
bytes per element).

With ``touched_R`` (a ``[R]`` bool per row of a 2-D table, the lazy update of
workbench/train/sparse_adamw.py) only the rows marked touched are read and written; the others
keep master, moments and weight bit for bit, and their bytes are never loaded.

Two implementations with the same arithmetic: a Triton kernel (CUDA, one launch per
parameter, nothing read back to the host: the learning rate, step count and clipping
coefficient are device tensors, so the update can be captured in a CUDA graph) and a
reference in torch operations, used where Triton is missing (CPU) and by the tests.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch

BLOCK = 2048  # elements per Triton program: 8 warps, 8 elements each, 16-byte loads of the moments


@functools.cache
def _kernel() -> Any:
    """The Triton kernel, compiled lazily (importing triton costs ~1 s and is CUDA-only)."""
    import triton
    import triton.language as tl

    @triton.jit
    def adamw_master(
        weight_ptr,
        master_ptr,
        grad_ptr,
        exp_avg_ptr,
        exp_avg_sq_ptr,
        lr_ptr,
        step_ptr,
        coef_ptr,
        touched_ptr,
        n_elements,
        row_len,
        beta1,
        beta2,
        log_beta1,
        log_beta2,
        eps,
        weight_decay,
        BLOCK: tl.constexpr,
        LAZY: tl.constexpr,
    ):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n_elements
        if LAZY:  # masked loads and stores: an untouched row's bytes are neither read nor written
            mask = mask & (tl.load(touched_ptr + offs // row_len, mask=mask, other=0) != 0)
        lr = tl.load(lr_ptr).to(tl.float32)
        step = tl.load(step_ptr).to(tl.float32)
        coef = tl.load(coef_ptr).to(tl.float32)
        g = tl.load(grad_ptr + offs, mask=mask, other=0.0).to(tl.float32) * coef
        w = tl.load(master_ptr + offs, mask=mask, other=0.0)
        m = tl.load(exp_avg_ptr + offs, mask=mask, other=0.0)
        v = tl.load(exp_avg_sq_ptr + offs, mask=mask, other=0.0)
        w = w * (1.0 - lr * weight_decay)
        m = beta1 * m + (1.0 - beta1) * g
        v = beta2 * v + (1.0 - beta2) * g * g
        bias_correction1 = 1.0 - tl.exp(step * log_beta1)
        bias_correction2 = 1.0 - tl.exp(step * log_beta2)
        denom = tl.sqrt(v) / tl.sqrt(bias_correction2) + eps
        w = w - (lr / bias_correction1) * (m / denom)
        tl.store(master_ptr + offs, w, mask=mask)
        tl.store(exp_avg_ptr + offs, m, mask=mask)
        tl.store(exp_avg_sq_ptr + offs, v, mask=mask)
        tl.store(weight_ptr + offs, w.to(weight_ptr.dtype.element_ty), mask=mask)

    return adamw_master


@functools.cache
def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def adamw_master_update(
    weight: torch.Tensor,
    master: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    *,
    lr: torch.Tensor,
    step: torch.Tensor,
    coef: torch.Tensor,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    use_triton: bool | None = None,
    touched_R: torch.Tensor | None = None,
) -> None:
    """One AdamW step of ``master`` (float32) in place, then ``weight.copy_(master)`` (rounded).

    ``lr``, ``step`` (already incremented) and ``coef`` (the clipping coefficient, 1 for
    none) are 0-d float32 tensors on the weight's device. ``touched_R`` (a bool per row of a
    2-D weight) limits the step to those rows. ``use_triton`` None picks the Triton kernel on
    CUDA when Triton imports.
    """
    if use_triton is None:
        use_triton = weight.is_cuda and triton_available()
    if not use_triton:  # the reference: the kernel's arithmetic in torch operations
        kept = None if touched_R is None else [t.clone() for t in (master, exp_avg, exp_avg_sq)]
        g = grad.float() * coef
        master.mul_(1 - lr * weight_decay)
        exp_avg.mul_(beta1).add_(g, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        denom = exp_avg_sq.sqrt() / (1 - beta2**step).sqrt() + eps
        master.sub_((lr / (1 - beta1**step)) * (exp_avg / denom))
        if kept is not None and touched_R is not None:
            for new, old in zip((master, exp_avg, exp_avg_sq), kept, strict=True):
                new.copy_(torch.where(touched_R.unsqueeze(1), new, old))
        weight.copy_(master)
        return
    if not all(t.is_contiguous() for t in (weight, master, grad, exp_avg, exp_avg_sq)):
        raise ValueError("adamw_master_update: the Triton kernel needs contiguous tensors")
    n = weight.numel()
    _kernel()[(_cdiv(n, BLOCK),)](
        weight,
        master,
        grad,
        exp_avg,
        exp_avg_sq,
        lr,
        step,
        coef,
        step if touched_R is None else touched_R.view(torch.uint8),  # any pointer when not lazy
        n,
        1 if touched_R is None else weight.shape[-1],
        beta1,
        beta2,
        math.log(beta1) if beta1 > 0 else -math.inf,
        math.log(beta2) if beta2 > 0 else -math.inf,
        eps,
        weight_decay,
        BLOCK=BLOCK,
        LAZY=touched_R is not None,
        num_warps=8,
    )


def _cdiv(n: int, block: int) -> int:
    return (n + block - 1) // block
