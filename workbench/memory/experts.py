"""A bank of E expert FFNs (memory blocks of G cells each) and token dispatch to them.

Every expert-style layer (switch, gshard, base, hash) reads its blocks through this bank, so
the fast paths apply to all of them. A token reads K blocks (``expert_NK``, -1 = the read was
dropped) with weights ``weight_NK``; the bank returns ``sum_k weight_k * FFN_{e_k}(x)``. The
K reads are dispatched as N*K rows (a token replicated K times) and combined by weight.

Three implementations with the same numerics:

* ``loop``: a Python loop over experts, indexing the rows routed to each (the simple
  reference most research code uses; one host synchronisation per expert);
* ``sorted``: rows sorted by expert into a zero-padded ``[E, C, D]`` buffer and one ``bmm``
  per projection (portable; reads the largest load C back to the host to size the buffer);
* ``grouped``: rows sorted by expert, one ``torch._grouped_mm`` per projection, no host
  synchronisation. ``auto`` picks ``grouped`` on CUDA in bfloat16 (the tensors' dtype, or
  autocast's where it is on: the trainer's path), ``sorted`` elsewhere on CUDA, and ``loop``
  on the CPU (host synchronisation is free there, and padding is not).

What fvcore sees: the per-expert matmuls of ``loop`` with their real row counts (so the count
is exact), the padded ``bmm`` of ``sorted`` (padding included, so it over-counts), and nothing
of ``grouped`` (no handle). This is why layers report their analytic FLOPs as the headline.

Shapes: N tokens, K reads per token, M = N*K rows, D model width, E experts, G cells per
expert, C rows per expert in the padded buffer.
"""

from __future__ import annotations

import math

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


class ExpertBank(nn.Module):
    def __init__(self, n_experts: int, d_model: int, width: int, impl: str = "auto") -> None:
        super().__init__()
        self.n_experts, self.d_model, self.width = n_experts, d_model, width
        self.w1_EDG = nn.Parameter(torch.empty(n_experts, d_model, width))
        self.w2_EGD = nn.Parameter(torch.empty(n_experts, width, d_model))
        nn.init.normal_(self.w1_EDG, std=1.0 / math.sqrt(d_model))
        nn.init.normal_(self.w2_EGD, std=1.0 / math.sqrt(width))
        self.impl = impl

    def forward(
        self, x_ND: torch.Tensor, expert_NK: torch.Tensor, weight_NK: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``sum_k weight_NK[i, k] * FFN_{expert_NK[i, k]}(x_ND[i])``; -1 entries read nothing.

        ``expert_NK`` may be ``[N]`` (one read per token); ``weight_NK`` None means weight 1.
        """
        N = x_ND.shape[0]
        expert_NK = expert_NK.reshape(N, -1)
        if weight_NK is not None:
            weight_NK = weight_NK.reshape(N, -1).to(x_ND.dtype)
        impl = self.impl
        if impl == "auto":
            bf16 = _compute_dtype(x_ND) == torch.bfloat16
            impl = (
                "grouped"
                if (x_ND.is_cuda and _has_grouped_mm() and bf16)
                else ("sorted" if x_ND.is_cuda else "loop")
            )
        if impl == "loop":
            return self._loop(x_ND, expert_NK, weight_NK)
        return self._sorted(x_ND, expert_NK, weight_NK, grouped=impl == "grouped")

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

    def _sorted(
        self, x_ND: torch.Tensor, expert_NK: torch.Tensor, weight_NK: torch.Tensor | None, grouped: bool
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
        if grouped:
            # The kernel leaves rows past the last offset undefined, in the forward and in the
            # backward; so the last group is stretched over the dropped rows (computed with the
            # last expert, then zeroed, which also zeroes their gradient).
            offs_E = ends_E.to(torch.int32)
            offs_E[-1:].fill_(e_M.shape[0])  # fill_, not item assignment: no host-to-device copy
            # autocast has no rule for _grouped_mm: cast to the compute dtype by hand.
            dt = _compute_dtype(x_ND)
            h = F.gelu(torch._grouped_mm(xs_MD.to(dt), self.w1_EDG.to(dt), offs=offs_E))
            ys_MD = torch._grouped_mm(h, self.w2_EGD.to(dt), offs=offs_E)
            ys_MD = torch.where((es_M >= 0).unsqueeze(1), ys_MD, torch.zeros_like(ys_MD))
        else:
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
