"""hash: Hash layers, experts chosen by a fixed function of the token id (no router, no aux loss).

Paper: Roller, Sukhbaatar, Szlam, Weston 2021, "Hash Layers For Large Sparse Models"
(NeurIPS). Experts are memory blocks of g = ``expert_width`` cells, B = ``n_experts``, k = 1,
weight 1; the block a token reads is fixed before training by ``variant``:

* ``random``: a fixed random lookup table token -> expert (uniform, independent per token);
* ``balanced``: tokens sorted by training-set frequency (``ctx.token_counts``), each given in
  turn to the expert with the least total frequency so far (greedy longest-processing-time
  scheduling), so expected loads are even. Without ``token_counts`` every token counts the
  same and this becomes ``token_id % n_experts`` (balanced over the vocabulary, not the corpus);
* ``previous``: the random table applied to the previous token;
* ``bigram``: ``(h1(current) + h2(previous)) % E`` with two independent random tables, a hash of
  the pair whose collisions between two different pairs have probability 1/E;
* ``position``: ``position % E`` (position in the sequence; balanced over positions);
* ``clustered`` / ``dispersed``: k-means (E clusters, 20 Lloyd iterations) over token features;
  ``clustered`` gives each cluster one expert, ``dispersed`` lists tokens cluster by cluster
  and deals them round-robin to experts, so a cluster's members are spread over all experts;
* ``multihash``: ``n_hashes`` = m independent random tables; hash j picks the expert whose j-th
  slice of ``expert_width / m`` cells the token reads. Equivalently a bank of E*m sub-blocks of
  G/m cells, of which a token reads m (parameters and FLOPs as one expert of G cells).

Choices where the paper is unclear, and what is not reproduced:
* token features for clustered/dispersed (``features``). The paper clusters a pretrained
  model's token embeddings; the workbench has no pretrained model. ``cooccurrence`` (16
  dimensions) takes similarity from the training split instead: each token's left and right
  neighbours, PPMI-weighted and reduced by SVD (:mod:`workbench.data.features`), so tokens that
  occur in the same contexts share a cluster, as they would under learned embeddings.
  ``random`` (the default, kept because stored runs used it) is a seeded Gaussian vector per
  token: it has the mechanism but no semantics, so its "clustered" is a random hash with
  unequal cluster sizes and its "dispersed" a vocabulary-balanced random hash;
* the first position has no previous token: ``previous`` and ``bigram`` use a reserved id V
  there (its own random expert);
* each layer gets its own tables: the generator is seeded with ``seed`` and the layer index;
* the tables are persistent buffers, so a checkpoint carries them (balanced depends on the
  corpus's counts);
* the oracle "future token" hash of the paper (analysis only, not causal) is not built.

fvcore sees the expert matmuls of the ``loop`` dispatch exactly (FLOPs = 2 x fvcore); the
table lookups are gathers, not counted.

Shapes: B batch, T sequence, D model width, E experts, G expert width, M hashes (reads per
token), V vocabulary, N = B*T tokens.
"""

from __future__ import annotations

import heapq
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workbench.memory.base import ForwardContext, LayerContext, LayerCost, MemoryConfig, MemoryLayer, require
from workbench.memory.experts import ExpertBank, validate_bank
from workbench.memory.registry import register

VARIANTS = ("random", "balanced", "bigram", "previous", "position", "clustered", "dispersed", "multihash")
FEATURES = ("random", "cooccurrence")
CLUSTER_VARIANTS = ("clustered", "dispersed")  # the variants built from token features
_FEATURE_DIM = 16
_KMEANS_ITERS = 20


@register
@dataclass(frozen=True, kw_only=True)
class HashConfig(MemoryConfig):
    """``n_experts`` blocks of ``expert_width`` cells (0 means 4*d_model) chosen by ``variant``
    (a fixed function of token ids); ``seed`` seeds the tables; ``n_hashes`` only for multihash;
    ``features`` what clustered and dispersed cluster (:data:`FEATURES`)."""

    kind = "hash"
    paper = "Roller et al. 2021, Hash Layers"
    active_per_token = "1 expert of expert_width cells (multihash: n_hashes slices of width/n_hashes)"

    n_experts: int = 8
    expert_width: int = 0
    variant: str = "random"
    seed: int = 0
    n_hashes: int = 1
    impl: str = "auto"
    features: str = "random"

    def width(self, ctx: LayerContext) -> int:
        return self.expert_width or 4 * ctx.d_model

    def validate(self, ctx: LayerContext) -> None:
        validate_bank(self.n_experts, self.expert_width, self.impl)
        require(
            self.variant in VARIANTS,
            "variant",
            f"unknown hash variant {self.variant!r}; valid: {', '.join(VARIANTS)}",
        )
        require(self.n_hashes >= 1, "n_hashes", f"must be >= 1, got {self.n_hashes}")
        if self.variant == "multihash":
            require(
                self.width(ctx) % self.n_hashes == 0,
                "n_hashes",
                f"must divide the expert width {self.width(ctx)}, got {self.n_hashes}",
            )
        else:
            require(
                self.n_hashes == 1,
                "n_hashes",
                f"only the multihash variant reads n_hashes; leave it 1 for {self.variant!r}",
            )
        if self.variant == "position":
            require(
                self.n_experts <= ctx.seq_len,
                "n_experts",
                f"the position hash uses at most seq_len={ctx.seq_len} experts, got {self.n_experts}",
            )
        require(
            self.features in FEATURES,
            "features",
            f"must be one of {'|'.join(FEATURES)}, got {self.features!r}",
        )
        require(
            self.features == "random" or self.variant in CLUSTER_VARIANTS,
            "features",
            f"only the clustered and dispersed variants read features; leave it 'random' for {self.variant!r}",
        )
        if self.variant in CLUSTER_VARIANTS:
            require(
                self.n_experts <= ctx.vocab_size,
                "n_experts",
                f"k-means needs at most vocab_size={ctx.vocab_size} clusters, got {self.n_experts}",
            )

    def needs_token_features(self) -> bool:
        return self.features == "cooccurrence" and self.variant in CLUSTER_VARIANTS

    def cost(self, ctx: LayerContext) -> LayerCost:
        d, e, g = ctx.d_model, self.n_experts, self.width(ctx)
        # No selector matmul; one expert's worth of cells (two D x G matmuls) per token.
        expert = 2 * d * g
        return LayerCost(params_total=e * expert, params_active=expert, flops_per_token=2 * expert)

    def build(self, ctx: LayerContext) -> MemoryLayer:
        return HashLayer(self, ctx)


def hash_table(cfg: HashConfig, ctx: LayerContext) -> torch.Tensor:
    """The fixed lookup table of a variant (``position`` has none: an empty tensor).

    Rows are token ids (plus row V, "no previous token", for previous/bigram); columns are the
    M hashes (multihash), or (current, previous) for bigram.
    """
    V, E = ctx.vocab_size, cfg.n_experts
    gen = torch.Generator().manual_seed(cfg.seed + 1_000_003 * ctx.layer_index)
    v = cfg.variant
    if v == "position":
        return torch.zeros(0, 1, dtype=torch.long)
    if v in ("random", "multihash"):
        # Drawn hash by hash, so multihash's first hash is the random variant's table.
        return torch.randint(E, (cfg.n_hashes, V), generator=gen).T.contiguous()
    if v == "previous":
        return torch.randint(E, (V + 1, 1), generator=gen)
    if v == "bigram":
        return torch.randint(E, (V + 1, 2), generator=gen)
    if v == "balanced":
        return _balanced_table(ctx.token_counts, V, E).unsqueeze(1)
    cluster_V = _kmeans(_token_features(cfg, ctx, gen), E, gen)
    if v == "clustered":
        return cluster_V.unsqueeze(1)
    # dispersed: deal tokens round-robin, cluster by cluster.
    table_V = torch.empty(V, dtype=torch.long)
    table_V[torch.argsort(cluster_V, stable=True)] = torch.arange(V) % E
    return table_V.unsqueeze(1)


def _token_features(cfg: HashConfig, ctx: LayerContext, gen: torch.Generator) -> torch.Tensor:
    if cfg.features == "random":
        return torch.randn(ctx.vocab_size, _FEATURE_DIM, generator=gen)
    if ctx.token_features is None:
        raise ValueError(
            "hash features 'cooccurrence' need LayerContext.token_features; build the model with "
            "workbench.trial.build_model (it computes them from the corpus) or pass them"
        )
    features = torch.as_tensor(np.asarray(ctx.token_features), dtype=torch.float32)
    if features.shape[0] != ctx.vocab_size:
        raise ValueError(f"token_features has {features.shape[0]} rows, expected vocab_size={ctx.vocab_size}")
    return features


def _balanced_table(token_counts: object, V: int, E: int) -> torch.Tensor:
    if token_counts is None:
        warnings.warn(
            "hash variant 'balanced' built without LayerContext.token_counts: every token counts "
            "the same, so the table is token_id % n_experts (balanced over the vocabulary only)",
            stacklevel=3,
        )
    counts = np.ones(V) if token_counts is None else np.asarray(token_counts, dtype=np.float64)
    if counts.shape != (V,):
        raise ValueError(f"token_counts has shape {counts.shape}, expected ({V},)")
    table = np.empty(V, dtype=np.int64)
    heap = [(0.0, e) for e in range(E)]
    for tok in np.argsort(-counts, kind="stable"):
        load, e = heapq.heappop(heap)
        table[tok] = e
        heapq.heappush(heap, (load + counts[tok], e))
    return torch.from_numpy(table)


def _kmeans(feat_VF: torch.Tensor, n_clusters: int, gen: torch.Generator) -> torch.Tensor:
    centroids_CF = feat_VF[torch.randperm(feat_VF.shape[0], generator=gen)[:n_clusters]].clone()
    for _ in range(_KMEANS_ITERS):
        cluster_V = torch.cdist(feat_VF, centroids_CF).argmin(dim=1)
        sums_CF = torch.zeros_like(centroids_CF).index_add_(0, cluster_V, feat_VF)
        sizes_C = torch.bincount(cluster_V, minlength=n_clusters).unsqueeze(1)
        # An emptied cluster keeps its centroid.
        centroids_CF = torch.where(sizes_C > 0, sums_CF / sizes_C.clamp_min(1), centroids_CF)
    return torch.cdist(feat_VF, centroids_CF).argmin(dim=1)


class HashLayer(MemoryLayer):
    table: torch.Tensor

    def __init__(self, cfg: HashConfig, ctx: LayerContext) -> None:
        super().__init__()
        self.cfg, self.vocab_size = cfg, ctx.vocab_size
        m, width = cfg.n_hashes, cfg.width(ctx)
        # Sub-block (e, j) = cells [j*G/m, (j+1)*G/m) of expert e, stored at index e*m + j.
        self.experts = ExpertBank(cfg.n_experts * m, ctx.d_model, width // m, impl=cfg.impl)
        if m > 1:
            # Scale the value init to the full expert width: m slices sum to one expert's output.
            nn.init.normal_(self.experts.w2_EGD, std=1.0 / math.sqrt(width))
            self.experts.value_fan_in = width
        self.register_buffer("table", hash_table(cfg, ctx))
        self.init_routing_counters(cfg.n_experts)

    def route(self, token_ids_BT: torch.Tensor) -> torch.Tensor:
        """The expert of each of the M reads of each token, ``[B, T, M]``."""
        E, v = self.cfg.n_experts, self.cfg.variant
        if v == "position":
            T = token_ids_BT.shape[1]
            pos_T1 = (torch.arange(T, device=token_ids_BT.device) % E).unsqueeze(1)
            return pos_T1.expand(token_ids_BT.shape[0], T, 1)
        if v in ("previous", "bigram"):
            prev_BT = F.pad(token_ids_BT[:, :-1], (1, 0), value=self.vocab_size)
            if v == "previous":
                return self.table[prev_BT]
            return ((self.table[token_ids_BT, 0] + self.table[prev_BT, 1]) % E).unsqueeze(-1)
        return self.table[token_ids_BT]

    def forward(self, x_BTD: torch.Tensor, ctx: ForwardContext) -> tuple[torch.Tensor, torch.Tensor]:
        if ctx.token_ids_BT is None:
            raise ValueError("hash layers route by token id: pass ForwardContext(token_ids_BT=...)")
        B, T, D = x_BTD.shape
        m = self.cfg.n_hashes
        expert_BTM = self.route(ctx.token_ids_BT)
        block_NM = (expert_BTM * m + torch.arange(m, device=x_BTD.device)).reshape(B * T, m)
        y_ND = self.experts(x_BTD.reshape(B * T, D), block_NM)
        self.count_routing(expert_BTM, B * T * m)
        return y_ND.reshape(B, T, D), x_BTD.new_zeros((), dtype=torch.float32)
