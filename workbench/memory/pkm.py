"""pkm: product-key memory, N = n_keys**2 value slots addressed through two sets of sub-keys.

Paper: Lample, Sablayrolles, Ranzato, Denoyer, Jégou 2019, "Large Memory Layers with Product
Keys" (NeurIPS). In the unified view (docs/DESIGN.md §1) it is a memory of N blocks of one cell
(g = 1) whose keys are the N sums ``c1_i + c2_j`` of two sub-key sets, read with weights
softmax(scores) over the top k.

Per head h (of ``n_heads``), for a token x:
  q = norm(W_q x) split into halves q1, q2 (``d_key/2`` each);
  s1 = q1 . c1 (n_keys scores), s2 = q2 . c2 (n_keys scores); top-k of each, sorted;
  the candidate sums s1_a + s2_b of the a-th and b-th best halves (pruned: "Candidates"
  below); their top k are the top k of all N products;
  w = softmax over the k selected scores; the head reads sum w * v[i*n_keys + j].
The heads' reads are summed (the paper's multi-head memory: heads share the values).

Choices where the paper leaves room:
* ``query_norm``: the paper batch-normalises the query. BatchNorm in training mode mixes the
  statistics of every token of the batch, later positions included, so a causal LM leaks a
  little of the future through it; the default here is ``layernorm`` (per head, over d_key,
  with a learned per-head affine), ``batchnorm`` is the paper's option (running statistics in
  eval mode), ``none`` skips it. Both norms have 2*H*d_key affine parameters.
* The query network is one bias-free linear map D -> H*d_key (the paper's has a bias; the
  norm's shift plays that role here).
* Init: sub-keys N(0, 1/(d_key/2)), values N(0, 1/D) (the paper's value init).
* Values are read with ``F.embedding_bag(mode="sum", per_sample_weights=...)``
  (workbench/memory/_lookup.py: in bf16 under autocast, the table held in bf16 with a float32
  master under ``train.master_weights``);
  :meth:`ProductKeyMemory.memory_value_parameters` lists them and the trainer gives them an
  optimizer group of their own: no weight decay, ``lr`` times ``train.memory_value_lr_scale``
  (the paper trains values at a larger lr), updated row by row with ``train.sparse_values``
  (the paper's sparse updates; workbench/train/sparse_adamw.py).
* ``consume``: ``expert`` (default) replaces the FFN with the memory as in the paper; ``add``
  and ``concat`` keep an FFN of ``d_ff`` beside / around it (see workbench/memory/_lookup.py).
* Routing counters count reads per slot (N bins): their ``unused_frac`` is the paper's
  "memory usage" complement.
* Candidates: only the pairs (a, b) with (a+1)(b+1) <= k of the sorted top-k lists are
  summed (about k ln k of the paper's k*k; 119 of 1024 for k = 32). Any other pair is beaten
  or tied by the (a+1)(b+1) - 1 >= k pairs (a' <= a, b' <= b), so the top k is unchanged
  (up to the choice among tied scores) and the second top-k runs over ~8x fewer candidates.

Analytic cost per token (2 FLOPs per multiply-add), D = d_model, H heads, d = d_key, n = n_keys:
  query D*H*d MACs; sub-key scores H*2*n*(d/2) = H*n*d MACs; value read H*k*D MACs (a
  weighted sum of H*k rows). Top-k, the candidate sums and softmax are element-wise and not
  counted. On a GPU the cost is the value read, not the FLOPs: each token reads H*k rows of D
  values (1 FLOP per byte in bf16), forward and twice more in the backward (the table's
  gradient, the read weights' gradient); docs/PERFORMANCE.md derives the floor. fvcore sees
  the query and score matmuls but not ``embedding_bag`` or ``topk``, so
  2*fvcore = analytic - 2*H*k*D.

Shapes: B batch, T sequence, D model width, N tokens (B*T), H heads, S = 2 sub-key sets,
C sub-keys per set (n_keys), Q = d_key/2 (half-query width), K selected slots per head,
P candidate pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workbench.memory._lookup import (
    Consume,
    consume_params,
    ffn_width,
    init_table,
    top_k,
    validate_consume,
    weighted_rows,
)
from workbench.memory.base import ForwardContext, LayerContext, LayerCost, MemoryConfig, MemoryLayer, require
from workbench.memory.registry import register

QUERY_NORMS = ("layernorm", "batchnorm", "none")


@register
@dataclass(frozen=True, kw_only=True)
class PKMConfig(MemoryConfig):
    """``n_keys**2`` slots, ``n_heads`` heads each reading ``k`` slots; ``d_key`` 0 means d_model."""

    kind = "pkm"
    paper = "Lample et al. 2019, Large Memory Layers with Product Keys"
    active_per_token = "query net + all 2*n_keys sub-keys per head + n_heads*k value rows"

    n_keys: int = 32
    n_heads: int = 4
    k: int = 8
    d_key: int = 0
    query_norm: str = "layernorm"
    consume: str = "expert"
    d_ff: int = 0

    def key_width(self, ctx: LayerContext) -> int:
        return self.d_key or ctx.d_model

    def validate(self, ctx: LayerContext) -> None:
        require(self.n_keys >= 1, "n_keys", f"must be >= 1, got {self.n_keys}")
        require(self.n_heads >= 1, "n_heads", f"must be >= 1, got {self.n_heads}")
        require(
            1 <= self.k <= self.n_keys,
            "k",
            f"must be in [1, n_keys={self.n_keys}] (top-k is taken over each sub-key set), got {self.k}",
        )
        require(self.d_key >= 0, "d_key", f"must be >= 0 (0 means d_model), got {self.d_key}")
        require(
            self.key_width(ctx) % 2 == 0,
            "d_key",
            f"must be even (the query is split in two halves), got {self.key_width(ctx)}",
        )
        require(
            self.query_norm in QUERY_NORMS,
            "query_norm",
            f"must be one of {'|'.join(QUERY_NORMS)}, got {self.query_norm!r}",
        )
        validate_consume(self.kind, self.consume, ("expert", "add", "concat"), self.d_ff)

    def cost(self, ctx: LayerContext) -> LayerCost:
        d, h, dk, n = ctx.d_model, self.n_heads, self.key_width(ctx), self.n_keys
        query = d * h * dk
        norm = 0 if self.query_norm == "none" else 2 * h * dk
        keys = h * 2 * n * (dk // 2)
        values = n * n * d
        ffn = consume_params(self.consume, d, ffn_width(self.d_ff, ctx))
        read = h * self.k * d
        return LayerCost(
            params_total=query + norm + keys + values + ffn,
            params_active=query + norm + keys + read + ffn,
            # MACs: query + sub-key scores + weighted value read + the FFN of the mode.
            flops_per_token=2 * (query + keys + read + ffn),
        )

    def build(self, ctx: LayerContext) -> MemoryLayer:
        if self.query_norm == "batchnorm":
            return _BatchNormPKM(self, ctx)
        return ProductKeyMemory(self, ctx)


class ProductKeyMemory(MemoryLayer):
    pair_a_P: torch.Tensor
    pair_b_P: torch.Tensor

    def __init__(self, cfg: PKMConfig, ctx: LayerContext) -> None:
        super().__init__()
        self.cfg = cfg
        D, H, dk, C = ctx.d_model, cfg.n_heads, cfg.key_width(ctx), cfg.n_keys
        self.query = nn.Linear(D, H * dk, bias=False)
        if cfg.query_norm == "batchnorm":
            self.norm: nn.Module | None = nn.BatchNorm1d(H * dk)
        elif cfg.query_norm == "layernorm":
            self.norm = _HeadLayerNorm(H, dk)
        else:
            self.norm = None
        self.keys_HSCQ = nn.Parameter(torch.randn(H, 2, C, dk // 2) / math.sqrt(dk // 2))
        self.values_VD = init_table(C * C, D)
        self.consume = Consume(cfg.consume, D, ffn_width(cfg.d_ff, ctx))
        pairs = [(a, b) for a in range(cfg.k) for b in range(cfg.k) if (a + 1) * (b + 1) <= cfg.k]
        self.register_buffer("pair_a_P", torch.tensor([a for a, _ in pairs]), persistent=False)
        self.register_buffer("pair_b_P", torch.tensor([b for _, b in pairs]), persistent=False)
        self.init_routing_counters(C * C)

    def memory_value_parameters(self) -> list[nn.Parameter]:
        """The value table: the trainer's value group (no weight decay, scaled lr; ``make_optimizer``)."""
        return [self.values_VD]

    def select(self, x_ND: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores ``[N, H, K]`` and slot ids ``[N, H, K]`` of the top k product keys per head."""
        N = x_ND.shape[0]
        H, C, K = self.cfg.n_heads, self.cfg.n_keys, self.cfg.k
        q = self.query(x_ND)
        if self.norm is not None:
            q = self.norm(q)
        q_HSNQ = q.view(N, H, 2, -1).permute(1, 2, 0, 3)
        s_HSNC = torch.matmul(q_HSNQ, self.keys_HSCQ.transpose(-1, -2))
        top_HSNK, idx_HSNK = top_k(s_HSNC, K)
        # Candidate sums of the pairs (a, b) with (a+1)(b+1) <= K (module docstring): their top
        # K are the top K of all C*C products.
        shape_HNP = (H, N, self.pair_a_P.shape[0])
        cand_HNP = top_HSNK[:, 0].gather(-1, self.pair_a_P.expand(shape_HNP)) + top_HSNK[:, 1].gather(
            -1, self.pair_b_P.expand(shape_HNP)
        )
        score_HNK, pair_HNK = top_k(cand_HNP, K)
        i_HNK = idx_HSNK[:, 0].gather(-1, self.pair_a_P[pair_HNK])
        j_HNK = idx_HSNK[:, 1].gather(-1, self.pair_b_P[pair_HNK])
        return score_HNK.permute(1, 0, 2), (i_HNK * C + j_HNK).permute(1, 0, 2)

    def forward(self, x_BTD: torch.Tensor, ctx: ForwardContext) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, D = x_BTD.shape
        x_ND = x_BTD.reshape(B * T, D)
        score_NHK, slot_NHK = self.select(x_ND)
        w_NHK = F.softmax(score_NHK.float(), dim=-1)
        m_ND = weighted_rows(self.values_VD, slot_NHK.flatten(1), w_NHK.flatten(1))
        self.count_routing(slot_NHK, B * T * self.cfg.n_heads * self.cfg.k)
        y_ND = self.consume(x_ND, m_ND)
        return y_ND.view(B, T, D), x_BTD.new_zeros((), dtype=torch.float32)


class _BatchNormPKM(ProductKeyMemory):
    """With the paper's BatchNorm, training-mode statistics span the batch (later positions too)."""

    causal_in_training = False


class _HeadLayerNorm(nn.Module):
    """LayerNorm of each head's query over its d_key features, with a per-head affine."""

    def __init__(self, n_heads: int, d_key: int) -> None:
        super().__init__()
        self.n_heads, self.d_key = n_heads, d_key
        self.weight = nn.Parameter(torch.ones(n_heads, d_key))
        self.bias = nn.Parameter(torch.zeros(n_heads, d_key))

    def forward(self, q_NX: torch.Tensor) -> torch.Tensor:
        q_NHd = F.layer_norm(q_NX.view(-1, self.n_heads, self.d_key), (self.d_key,))
        return (q_NHd * self.weight + self.bias).flatten(1)
