"""A bank of E expert FFNs (memory blocks of G cells each) and token dispatch to them.

Two implementations with the same numerics:

* ``loop``: a Python loop over experts, indexing the tokens routed to each (the simple
  reference most research code uses);
* ``grouped``: tokens sorted by expert, one grouped matmul per projection
  (``torch._grouped_mm`` where the build has it), no host synchronisation.

fvcore sees the per-expert matmuls of ``loop`` (with the real token counts) but not a grouped
matmul, which is why every layer reports its analytic FLOPs as the headline figure.

Shapes: N tokens, D model width, E experts, G cells per expert.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _has_grouped_mm() -> bool:
    return hasattr(torch, "_grouped_mm")


class ExpertBank(nn.Module):
    def __init__(self, n_experts: int, d_model: int, width: int, impl: str = "auto") -> None:
        super().__init__()
        self.n_experts, self.d_model, self.width = n_experts, d_model, width
        self.w1_EDG = nn.Parameter(torch.empty(n_experts, d_model, width))
        self.w2_EGD = nn.Parameter(torch.empty(n_experts, width, d_model))
        nn.init.normal_(self.w1_EDG, std=1.0 / math.sqrt(d_model))
        nn.init.normal_(self.w2_EGD, std=1.0 / math.sqrt(width))
        self.impl = impl

    def forward(self, x_ND: torch.Tensor, expert_N: torch.Tensor) -> torch.Tensor:
        """Apply expert ``expert_N[i]`` to token ``x_ND[i]``; entries equal to -1 give zeros."""
        impl = self.impl
        if impl == "auto":
            impl = (
                "grouped"
                if (x_ND.is_cuda and _has_grouped_mm() and x_ND.dtype == torch.bfloat16)
                else "sorted"
            )
        if impl == "loop":
            return self._loop(x_ND, expert_N)
        if impl == "grouped":
            return self._sorted(x_ND, expert_N, grouped=True)
        return self._sorted(x_ND, expert_N, grouped=False)

    def _loop(self, x_ND: torch.Tensor, expert_N: torch.Tensor) -> torch.Tensor:
        y_ND = torch.zeros_like(x_ND)
        for e in range(self.n_experts):
            idx = (expert_N == e).nonzero(as_tuple=True)[0]
            if idx.numel() == 0:
                continue
            h = F.gelu(x_ND[idx] @ self.w1_EDG[e])
            y_ND[idx] = h @ self.w2_EGD[e]
        return y_ND

    def _sorted(self, x_ND: torch.Tensor, expert_N: torch.Tensor, grouped: bool) -> torch.Tensor:
        # Dropped tokens (-1) sort to the front and are excluded by starting the offsets after them.
        order_N = torch.argsort(expert_N, stable=True)
        xs_ND = x_ND[order_N]
        counts_E = torch.bincount(
            expert_N.clamp_min(0), weights=(expert_N >= 0).to(x_ND.dtype), minlength=self.n_experts
        )
        counts_E = counts_E.to(torch.int32)
        n_dropped = (expert_N < 0).sum().to(torch.int32)
        ends_E = torch.cumsum(counts_E, 0, dtype=torch.int32) + n_dropped
        if grouped:
            h = F.gelu(torch._grouped_mm(xs_ND, self.w1_EDG, offs=ends_E))
            ys_ND = torch._grouped_mm(h, self.w2_EGD, offs=ends_E)
            # Rows before the first offset (dropped tokens) are left undefined by the kernel.
            keep = (torch.arange(xs_ND.shape[0], device=x_ND.device) >= n_dropped).unsqueeze(1)
            ys_ND = torch.where(keep, ys_ND, torch.zeros_like(ys_ND))
        else:
            # Portable fallback: gather each token's expert weights by segment, batched per expert
            # through one bmm over a padded [E, C, D] view (no host sync besides the padding size).
            ys_ND = self._padded_bmm(xs_ND, expert_N[order_N])
        y_ND = torch.empty_like(ys_ND)
        y_ND[order_N] = ys_ND
        return y_ND

    def _padded_bmm(self, xs_ND: torch.Tensor, es_N: torch.Tensor) -> torch.Tensor:
        n = xs_ND.shape[0]
        valid = es_N >= 0
        e_N = es_N.clamp_min(0)
        counts_E = torch.bincount(e_N[valid], minlength=self.n_experts)
        starts_E = torch.cumsum(counts_E, 0) - counts_E
        first_valid = (~valid).sum()
        pos_N = torch.arange(n, device=xs_ND.device) - first_valid - starts_E[e_N]
        cap = int(counts_E.max()) if n else 0
        buf_ECD = xs_ND.new_zeros(self.n_experts, max(cap, 1), self.d_model)
        buf_ECD[e_N[valid], pos_N[valid]] = xs_ND[valid]
        h = F.gelu(torch.bmm(buf_ECD, self.w1_EDG))
        out_ECD = torch.bmm(h, self.w2_EGD)
        ys_ND = xs_ND.new_zeros(n, self.d_model)
        ys_ND[valid] = out_ECD[e_N[valid], pos_N[valid]]
        return ys_ND
