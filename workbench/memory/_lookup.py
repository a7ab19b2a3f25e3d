"""Shared by the lookup-table layers (pkm, lsh, token_table, softmax_table; vanilla reads its
values here too): how the looked-up vector is consumed in the FFN slot, and the read of table
rows.

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

Reading table rows (:func:`weighted_rows`, :func:`table_rows`), as the trainer runs it:

* under autocast a float32 table is read in the autocast dtype (bf16), as autocast reads a
  matmul weight, so a table held in bf16 with a float32 master in the optimizer
  (workbench/train/master.py) reads the same bits; the read is memory-bound, so this halves
  its bytes (forward, and both halves of the backward);
* on CUDA a table of at most :data:`DENSE_READ_RATIO` times as many rows as a token reads is
  read by a masked dense matmul, ``y = S @ values`` with ``S[n, idx[n, r]] = w[n, r]`` and
  zeros elsewhere (VanillaM, small softmax tables): three tensor-core GEMMs of N*V*D
  multiply-adds (forward, the weights' and the table's gradients) cost less than EmbeddingBag's
  three passes over N*R gathered rows (forward, the sort-based table gradient, the read
  weights' gradient) once V/R is small (PKM included, up to 512). A larger table keeps EmbeddingBag. The CPU
  always keeps EmbeddingBag: it is what fvcore counts (the dense read would count N*V*D) and
  what the CPU tests pin.

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


AUTOCAST_READS = True
"""Read float32 tables in the autocast dtype under autocast (off: the float32 reads of before,
which bench/tables.py times beside)."""

DENSE_READ_RATIO = 512
"""On CUDA, a table of at most this many rows per row a token reads is read densely (module
docstring). Per token the dense read costs 6*V*D FLOPs (~1e-14 s * V*D at ~600 TFLOP/s) and
EmbeddingBag's three passes 3*R*D*2 bytes of bf16 rows (~4e-12 s * R*D at the ~1.5 TB/s its
gathers reach; docs/PERFORMANCE.md measured ~2 TB/s on float32 rows), so the estimate has them
meet near V/R = 400 whatever D. Measured on an H200 at d=768 (bench/tables.py, 2026-12-02) the
dense read won at every table of the bench: PKM 128^2 (V/R = 256) 10.3x the dense FFN step
against 22.3x gathered, PKM 256^2 (512) 23x against 37x, a 4,096-entry softmax table (256)
2.3x against 3.7x; hence 512, which covers them. The dense read holds an [N, V] matrix of
read weights (N = 16k tokens, V = 16k rows: 0.5 GB in bf16). ``python -m bench.run --sections
tables`` times both reads of every table."""


def read_table(table_VD: torch.Tensor) -> torch.Tensor:
    """``table_VD`` as a read sees it: in the autocast dtype under autocast on its device
    (:data:`AUTOCAST_READS`), else as it is stored."""
    device = table_VD.device.type
    if AUTOCAST_READS and torch.is_autocast_enabled(device):
        return table_VD.to(torch.get_autocast_dtype(device))
    return table_VD


def table_rows(table_VD: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``table[idx]`` (any index shape), read as :func:`read_table` says."""
    return F.embedding(idx, read_table(table_VD))


def weighted_rows(
    values_VD: torch.Tensor, idx_NR: torch.Tensor, w_NR: torch.Tensor | None = None, dense: bool | None = None
) -> torch.Tensor:
    """``y[n] = sum_r w[n, r] * values[idx[n, r]]`` (``w`` None: all ones) without materialising
    the ``[N, R, D]`` rows.

    ``dense`` None picks the read (module docstring): the masked dense matmul on CUDA for a
    table of at most :data:`DENSE_READ_RATIO` * R rows, else ``F.embedding_bag``, which reads
    the rows and sums them in one kernel (Lample et al.'s choice). fvcore has no handle for
    ``embedding_bag``, so the R*D multiply-adds per token are counted analytically.
    """
    values = read_table(values_VD)
    w = None if w_NR is None else w_NR.to(values.dtype)
    if dense is None:
        dense = values.is_cuda and values.shape[0] <= DENSE_READ_RATIO * idx_NR.shape[1]
    if not dense:
        if w is not None and values.is_cuda and values.dtype != torch.float32:
            # CUDA has no bf16/fp16 backward for per_sample_weights (torch 2.11): weighted gathers
            # read float32 rows.
            values, w = values.float(), w.float()
        return F.embedding_bag(idx_NR, values, per_sample_weights=w, mode="sum")
    if w is None:
        w = torch.ones(idx_NR.shape, dtype=values.dtype, device=values.device)
    # scatter_add: two reads of one row by a token (PKM heads may pick the same slot) both
    # count; in place into fresh zeros, so S is written once.
    s_NV = w.new_zeros(idx_NR.shape[0], values.shape[0]).scatter_add_(1, idx_NR, w)
    return s_NV @ values


def init_table(rows: int, width: int, std: float | None = None) -> nn.Parameter:
    """A ``[rows, width]`` table as a plain Parameter (GPT's init of nn.Embedding does not touch it)."""
    return nn.Parameter(torch.randn(rows, width) * (std if std is not None else 1.0 / math.sqrt(width)))


SORT_TOPK_MAX = 128


def top_k(scores: torch.Tensor, k: int, by_sort: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``scores.topk(k, dim=-1)`` (sorted, descending); on CUDA rows of at most
    :data:`SORT_TOPK_MAX` scores are sorted whole instead (``by_sort`` None picks).

    On an H100 sorting rows of at most 128 scores and keeping the first k is faster than
    ``topk``'s radix selection (262,144 rows of 128: 0.95 ms against 1.72 ms; of 119: 0.49 against
    0.90 ms); from 256 scores on ``topk`` wins. Ties may come out in another order. The sort runs
    outside autograd and the k kept scores are gathered again, so the backward is one scatter of
    k values per row, as ``topk``'s: a sort in the graph would keep its ``[..., C]`` int64
    permutation for a backward that scatters every score.
    """
    if by_sort is None:
        by_sort = scores.is_cuda and scores.shape[-1] <= SORT_TOPK_MAX
    if by_sort:
        indices = scores.detach().sort(dim=-1, descending=True).indices[..., :k]
        return scores.gather(-1, indices), indices
    return scores.topk(k, dim=-1)
