"""A bank of E expert FFNs (memory blocks of G cells each) and token dispatch to them.

Every expert-style layer (switch, gshard, base, hash, avgk, lsh's expert mode) reads its
blocks through this bank, so the fast paths apply to all of them. A token reads K blocks
(``expert_NK``, -1 = the read was dropped) with weights ``weight_NK``; the bank returns
``sum_k weight_k * FFN_{e_k}(x)``. The K reads are dispatched as M = N*K rows (a token
replicated K times) and combined by weight.

Three implementations with the same numerics:

* ``loop``: a Python loop over experts, indexing the rows routed to each (the simple
  reference most research code uses; one host synchronisation per expert);
* ``sorted``: rows sorted by expert into a zero-padded ``[E, C, D]`` buffer and one ``bmm``
  per projection (portable; reads the largest load C back to the host to size the buffer);
* ``grouped``: rows sorted by expert, one ``torch._grouped_mm`` per projection, no host
  synchronisation. ``auto`` picks ``grouped`` on CUDA in bfloat16 (the tensors' dtype, or
  autocast's where it is on: the trainer's path), ``sorted`` elsewhere on CUDA, and ``loop``
  on the CPU (host synchronisation is free there, and padding is not).

The grouped path (see ``docs/PERFORMANCE.md`` for its speed against a dense FFN):

1. one stable sort of the M expert ids (int32) gives the sorted order and, by ``searchsorted``
   on the sorted ids, the group ends (no counting pass, no host read). Dropped reads (-1) sort
   first, into the first group: they are computed with expert 0 and weighted 0, which also
   zeroes their gradient (the kernel needs every row inside a group);
2. the rows are gathered into expert order once, already cast to the compute dtype (half the
   bytes of gathering float32 and casting after); :class:`_ToSorted`'s backward is a gather
   by the inverse permutation and a fixed-order sum over the K copies: no atomics, no sort,
   deterministic;
3. after the two grouped matmuls, :class:`_Combine` gathers the rows back to token order and
   sums each token's K rows weighted by the gate (the dropped-read mask folded into it); its
   backward is again a gather, and the gate's gradient a row-wise dot product.

What fvcore sees: the per-expert matmuls of ``loop`` with their real row counts (so the count
is exact), the padded ``bmm`` of ``sorted`` (padding included, so it over-counts), and nothing
of ``grouped`` (no handle). This is why layers report their analytic FLOPs as the headline.

Shapes: N tokens, K reads per token, M = N*K rows, D model width, E experts, G cells per
expert, C rows per expert in the padded buffer.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from workbench.memory.base import require

IMPLS = ("auto", "loop", "sorted", "grouped")


def validate_bank(n_experts: int, expert_width: int, impl: str) -> None:
    """The checks every expert-style config shares (knobs ``n_experts``, ``expert_width``, ``impl``)."""
    require(n_experts >= 1, "n_experts", f"must be >= 1, got {n_experts}")
    require(expert_width >= 0, "expert_width", f"must be >= 0 (0 means 4*d_model), got {expert_width}")
    require(impl in IMPLS, "impl", f"must be one of {'|'.join(IMPLS)}, got {impl!r}")


def _has_grouped_mm() -> bool:
    return hasattr(torch, "_grouped_mm")


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype matmuls on ``x`` run in: autocast's where it is on (the trainer's bf16 path)."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def resolve_impl(impl: str, x: torch.Tensor) -> str:
    """The implementation ``auto`` stands for on ``x``'s device and compute dtype."""
    if impl != "auto":
        return impl
    if not x.is_cuda:
        return "loop"
    return "grouped" if _has_grouped_mm() and _compute_dtype(x) == torch.bfloat16 else "sorted"


def _sum_copies(r_MD: torch.Tensor, inv_M: torch.Tensor, k: int) -> torch.Tensor:
    """Rows in token order (``r[inv]``), each token's K copies summed in a fixed order: ``[N, D]``."""
    y_MD = r_MD.index_select(0, inv_M)
    return y_MD if k == 1 else y_MD.view(-1, k, y_MD.shape[1]).sum(1)


class _ToSorted(torch.autograd.Function):
    """``x[src]`` (token rows into expert order, each token K times); backward gathers, no atomics."""

    @staticmethod
    def forward(
        ctx: Any, x_ND: torch.Tensor, src_M: torch.Tensor, inv_M: torch.Tensor, k: int
    ) -> torch.Tensor:
        ctx.save_for_backward(inv_M)
        ctx.k = k
        return x_ND.index_select(0, src_M)

    @staticmethod
    def backward(ctx: Any, g_MD: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (inv_M,) = ctx.saved_tensors
        return _sum_copies(g_MD, inv_M, ctx.k), None, None, None


class _Combine(torch.autograd.Function):
    """``y[n] = sum_k w[n, k] * r[inv[n*K + k]]``: sorted rows back to tokens, weighted and summed."""

    @staticmethod
    def forward(
        ctx: Any, r_MD: torch.Tensor, w_NK: torch.Tensor, order_M: torch.Tensor, inv_M: torch.Tensor
    ) -> torch.Tensor:
        N, K = w_NK.shape
        r_NKD = r_MD.index_select(0, inv_M).view(N, K, -1)
        ctx.save_for_backward(w_NK, order_M, r_NKD if ctx.needs_input_grad[1] else None)
        if K == 1:
            return r_NKD.view(N, -1) * w_NK
        return (r_NKD * w_NK.unsqueeze(-1)).sum(1)

    @staticmethod
    def backward(ctx: Any, g_ND: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        w_NK, order_M, r_NKD = ctx.saved_tensors
        N, K = w_NK.shape
        # Row m of r belongs to token row order[m] = n*K + k: its gradient is w[n, k] * g[n].
        gw_MD = (g_ND.unsqueeze(1) * w_NK.unsqueeze(-1)).view(N * K, -1)
        g_r = gw_MD.index_select(0, order_M)
        g_w = (r_NKD * g_ND.unsqueeze(1)).sum(-1) if r_NKD is not None else None
        return g_r, g_w, None, None


def _to_sorted(x_ND: torch.Tensor, src_M: torch.Tensor, inv_M: torch.Tensor, k: int) -> torch.Tensor:
    if torch.jit.is_tracing():  # fvcore's trace is forward-only and cannot record a custom Function
        return x_ND.index_select(0, src_M)
    return _ToSorted.apply(x_ND, src_M, inv_M, k)


def _combine(
    r_MD: torch.Tensor, w_NK: torch.Tensor, order_M: torch.Tensor, inv_M: torch.Tensor
) -> torch.Tensor:
    if torch.jit.is_tracing():
        N, K = w_NK.shape
        return (r_MD.index_select(0, inv_M).view(N, K, -1) * w_NK.unsqueeze(-1)).sum(1)
    return _Combine.apply(r_MD, w_NK, order_M, inv_M)


class ExpertBank(nn.Module):
    def __init__(self, n_experts: int, d_model: int, width: int, impl: str = "auto") -> None:
        super().__init__()
        self.n_experts, self.d_model, self.width = n_experts, d_model, width
        self.w1_EDG = nn.Parameter(torch.empty(n_experts, d_model, width))
        self.w2_EGD = nn.Parameter(torch.empty(n_experts, width, d_model))
        nn.init.normal_(self.w1_EDG, std=1.0 / math.sqrt(d_model))
        nn.init.normal_(self.w2_EGD, std=1.0 / math.sqrt(width))
        self.impl = impl
        # Cells behind one read of weight 1 (model.ffn_init = "fan_in" scales w2 by it); a layer
        # whose reads sum several blocks (MultiHash's slices) raises it.
        self.value_fan_in = width

    def forward(
        self, x_ND: torch.Tensor, expert_NK: torch.Tensor, weight_NK: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``sum_k weight_NK[i, k] * FFN_{expert_NK[i, k]}(x_ND[i])``; -1 entries read nothing.

        ``expert_NK`` may be ``[N]`` (one read per token); ``weight_NK`` None means weight 1.
        """
        N = x_ND.shape[0]
        expert_NK = expert_NK.reshape(N, -1)
        impl = resolve_impl(self.impl, x_ND)
        if impl == "grouped":
            return self._grouped(x_ND, expert_NK, weight_NK)
        if weight_NK is not None:
            weight_NK = weight_NK.reshape(N, -1).to(x_ND.dtype)
        if impl == "loop":
            return self._loop(x_ND, expert_NK, weight_NK)
        return self._sorted(x_ND, expert_NK, weight_NK)

    def dense(self, x_ND: torch.Tensor) -> torch.Tensor:
        """Every token reads every expert with weight 1 (shared experts): ``sum_e FFN_e(x)``.

        A sum of E FFNs of G cells is one FFN of E*G cells, so this is two plain matmuls.
        """
        w1_DF = self.w1_EDG.permute(1, 0, 2).reshape(self.d_model, -1)
        return F.gelu(x_ND @ w1_DF) @ self.w2_EGD.reshape(-1, self.d_model)

    def _loop(
        self, x_ND: torch.Tensor, expert_NK: torch.Tensor, weight_NK: torch.Tensor | None
    ) -> torch.Tensor:
        y_ND = torch.zeros_like(x_ND)
        for e in range(self.n_experts):
            tok, slot = (expert_NK == e).nonzero(as_tuple=True)
            if tok.numel() == 0:
                continue
            out = F.gelu(x_ND[tok] @ self.w1_EDG[e]) @ self.w2_EGD[e]
            if weight_NK is not None:
                out = out * weight_NK[tok, slot].unsqueeze(1)
            y_ND = y_ND.index_add(0, tok, out.to(y_ND.dtype))
        return y_ND

    def _grouped(
        self, x_ND: torch.Tensor, expert_NK: torch.Tensor, weight_NK: torch.Tensor | None
    ) -> torch.Tensor:
        N, K = expert_NK.shape
        E = self.n_experts
        M = N * K
        dev = x_ND.device
        skey_M, order_M = torch.sort(expert_NK.reshape(-1).to(torch.int32), stable=True)
        # Group e ends after the last row whose id is <= e; dropped rows (-1) lead group 0.
        bounds_E = torch.arange(1, E + 1, device=dev, dtype=torch.int32)
        offs_E = torch.searchsorted(skey_M, bounds_E, out_int32=True)
        inv_M = torch.empty_like(order_M).scatter_(0, order_M, torch.arange(M, device=dev))
        src_M = order_M // K if K > 1 else order_M
        # autocast has no rule for _grouped_mm: cast to the compute dtype by hand, before the gather.
        dt = _compute_dtype(x_ND)
        xs_MD = _to_sorted(x_ND.to(dt), src_M, inv_M, K)
        h_MG = F.gelu(torch._grouped_mm(xs_MD, self.w1_EDG.to(dt), offs=offs_E))
        ys_MD = torch._grouped_mm(h_MG, self.w2_EGD.to(dt), offs=offs_E)
        valid_NK = expert_NK >= 0
        if weight_NK is None:
            w_NK = valid_NK.to(dt)
        else:
            w_NK = torch.where(
                valid_NK, weight_NK.reshape(N, K).to(dt), torch.zeros((), dtype=dt, device=dev)
            )
        return _combine(ys_MD, w_NK, order_M, inv_M)

    def _sorted(
        self, x_ND: torch.Tensor, expert_NK: torch.Tensor, weight_NK: torch.Tensor | None
    ) -> torch.Tensor:
        N, K = expert_NK.shape
        E = self.n_experts
        e_M = expert_NK.reshape(-1)
        valid_M = e_M >= 0
        # Dropped rows get the key E so they sort after every expert's rows, outside every group.
        order_M = torch.argsort(torch.where(valid_M, e_M, E), stable=True)
        es_M = e_M[order_M]
        xs_MD = x_ND[order_M // K]
        counts_E = torch.zeros(E, dtype=torch.int64, device=x_ND.device)
        counts_E.index_add_(0, e_M.clamp_min(0), valid_M.to(torch.int64))
        ends_E = torch.cumsum(counts_E, 0)
        ys_MD = self._padded_bmm(xs_MD, es_M, ends_E - counts_E, counts_E)
        if weight_NK is not None:
            ys_MD = ys_MD * weight_NK.reshape(-1)[order_M].unsqueeze(1)
        # Unsort and sum each token's K rows (a fixed-order sum, so the result is deterministic).
        y_MD = torch.empty_like(ys_MD)
        y_MD[order_M] = ys_MD
        return y_MD.view(N, K, self.d_model).sum(1)

    def _padded_bmm(
        self, xs_MD: torch.Tensor, es_M: torch.Tensor, starts_E: torch.Tensor, counts_E: torch.Tensor
    ) -> torch.Tensor:
        M = xs_MD.shape[0]
        valid_M = es_M >= 0
        e_M = es_M.clamp_min(0)
        # Row i of the sorted order sits at slot i - start(e) of its expert's buffer; dropped rows
        # are routed to a spare slot C that is sliced away.
        cap = int(counts_E.max()) if M else 0
        pos_M = torch.where(valid_M, torch.arange(M, device=xs_MD.device) - starts_E[e_M], cap)
        buf_ECD = xs_MD.new_zeros(self.n_experts, cap + 1, self.d_model)
        buf_ECD[e_M, pos_M] = xs_MD
        h = F.gelu(torch.bmm(buf_ECD[:, :cap], self.w1_EDG))
        out_ECD = F.pad(torch.bmm(h, self.w2_EGD), (0, 0, 0, 1))
        return out_ECD[e_M, pos_M]
