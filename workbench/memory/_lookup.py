"""Shared by the lookup-table layers (pkm, lsh, token_table, softmax_table): how the looked-up
vector is consumed in the FFN slot, and the weighted read of table rows.

Consumption modes (knob ``consume``; docs/DESIGN.md §3):

* ``add``: the slot keeps a dense FFN of width ``d_ff`` and the lookup is added beside it,
  ``y = FFN(x) + m(x)``, so the block adds both to the residual stream;
* ``concat``: the lookup widens the FFN's input, ``y = W2 gelu(W1 [x; m(x)])`` with
  ``W1: 2D -> d_ff``; widening the residual stream itself is AltUp's job
  (workbench/model/altup.py);
* ``expert``: the lookup alone fills the slot, ``y = m(x)`` (no dense FFN): the selected
  entries are the slot's only memory (PKM as in its paper; LSH buckets select expert FFNs).

Costs of the modes, D = d_model, F = d_ff, per token (2 FLOPs per multiply-add):
``add`` 2DF params, 4DF FLOPs; ``concat`` 3DF params, 6DF FLOPs; ``expert`` nothing.

Shapes: N tokens, D model width, F FFN width, R rows read per token, V table rows.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from workbench.memory.base import LayerContext, require

CONSUME_MODES = ("add", "concat", "expert")


def validate_consume(kind: str, consume: str, allowed: tuple[str, ...], d_ff: int) -> None:
    """The checks of the knobs ``consume`` and ``d_ff`` (the FFN beside or around the lookup)."""
    require(
        consume in allowed,
        "consume",
        f"{kind} supports consume={'|'.join(allowed)}, got {consume!r}"
        + ("" if consume in CONSUME_MODES else f" (modes: {'|'.join(CONSUME_MODES)})"),
    )
    require(d_ff >= 0, "d_ff", f"must be >= 0 (0 means 4*d_model), got {d_ff}")


def ffn_width(d_ff: int, ctx: LayerContext) -> int:
    return d_ff or 4 * ctx.d_model


def consume_params(consume: str, d_model: int, d_ff: int) -> int:
    """Parameters of the FFN a consumption mode keeps in the slot (all active)."""
    return {"add": 2 * d_model * d_ff, "concat": 3 * d_model * d_ff, "expert": 0}[consume]


class Consume(nn.Module):
    """Combines the slot input ``x`` and the lookup ``m`` by mode (see the module docstring)."""

    def __init__(self, consume: str, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.consume = consume
        if consume != "expert":
            d_in = 2 * d_model if consume == "concat" else d_model
            self.up = nn.Linear(d_in, d_ff, bias=False)
            self.down = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x_ND: torch.Tensor, m_ND: torch.Tensor) -> torch.Tensor:
        m_ND = m_ND.to(x_ND.dtype)
        if self.consume == "expert":
            return m_ND
        if self.consume == "add":
            return self.down(F.gelu(self.up(x_ND))) + m_ND
        return self.down(F.gelu(self.up(torch.cat([x_ND, m_ND], dim=-1))))


def weighted_rows(values_VD: torch.Tensor, idx_NR: torch.Tensor, w_NR: torch.Tensor) -> torch.Tensor:
    """``y[n] = sum_r w[n, r] * values[idx[n, r]]`` without materialising the ``[N, R, D]`` rows.

    ``F.embedding_bag`` reads the rows and sums them in one kernel (Lample et al.'s choice);
    fvcore has no handle for it, so the R*D multiply-adds per token are counted analytically.
    """
    return F.embedding_bag(idx_NR, values_VD, per_sample_weights=w_NR.to(values_VD.dtype), mode="sum")


def init_table(rows: int, width: int, std: float | None = None) -> nn.Parameter:
    """A ``[rows, width]`` table as a plain Parameter (GPT's init of nn.Embedding does not touch it)."""
    return nn.Parameter(torch.randn(rows, width) * (std if std is not None else 1.0 / math.sqrt(width)))


SORT_TOPK_MAX = 128


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``scores.topk(k, dim=-1)`` (sorted, descending), by a full sort of short CUDA rows.

    On an H100 sorting rows of at most 128 scores and keeping the first k is faster than
    ``topk``'s radix selection (262,144 rows of 128: 0.95 ms against 1.72 ms; of 119: 0.49 against
    0.90 ms); from 256 scores on ``topk`` wins. Ties may come out in another order.
    """
    if scores.is_cuda and scores.shape[-1] <= SORT_TOPK_MAX:
        values, indices = scores.sort(dim=-1, descending=True)
        return values[..., :k], indices[..., :k]
    return scores.topk(k, dim=-1)
