"""AltUp: a K-times wider residual stream of which each block computes on one sub-block.

Paper: Baykal, Cutler, Dikkala, Ghosh, Panigrahy, Wang 2023, "Alternating Updates for
Efficient Transformers" (NeurIPS). The representation of a token is K blocks x_1..x_K of
width D. Layer l computes on one block, j* = l mod K (round robin), and updates the others
by a learned predict-and-correct step:

    predict   x̂_i = sum_j p_ij x_j                 (K x K scalars per layer, init identity)
    compute   x̃  = Block(x̂_{j*})                   (the usual width-D block, memory layer included)
    correct   x_i <- x̂_i + g_i (x̃ - x̂_{j*})        (K scalars per layer, init 1)

so the blocks' FLOPs stay those of width D and AltUp adds (K^2 + K) D multiply-adds per token
per layer. It wraps whatever sits in the blocks, memory layers included (the paper combines it
with MoE). Variants (``model.altup_variant``):

* ``altup``: the token embedding is K*D wide (block i starts as columns iD..(i+1)D-1);
* ``recycled`` (Recycled-AltUp): the D-wide embedding is replicated K times, so AltUp adds only
  the (K^2 + K) L scalars;
* ``sequence`` (Sequence-AltUp): the same idea along the sequence with stride K. Layer l runs
  its block only on the anchor positions a = r, r+K, r+2K, ... (r = l mod K); each position t
  is predicted from itself and its latest anchor a(t) <= t and corrected by that anchor's update:

      x̂_t = p_1 x_t + p_2 x_{a(t)}      (init 1, 0)
      x_t <- x̂_t + g (x̃_{a(t)} - x̂_{a(t)}),  x̃ = Block(x̂ at the anchors)

Choices where the paper leaves room (or where we could not check it):
* altup_k = 1 builds the plain model (no AltUp parameters, identical numerics); for K = 1 the
  predict/correct step is the identity map up to rounding (x + (x̃ - x) vs x̃).
* Read-out: the mean of the K blocks goes to ln_f. ln_f makes the mean and the sum give the
  same logits (up to LayerNorm's eps), and at init (identity predict, unit gains) every block
  carries the same residual updates, so the mean is the plain model's stream with the mean
  embedding.
* Embedding init (``model.altup_embed_init``): the K slices drawn independently (the default,
  as stored runs trained), or replicated from one draw, so that plain AltUp starts as
  Recycled-AltUp with its head tied to the very embedding every block reads.
* LM head: tied to the mean of the K embedding slices (for ``recycled`` that is the embedding
  itself), so AltUp adds no head parameters; the learned positions stay D wide and are added to
  every block.
* Sequence-AltUp: the paper subsamples with a fixed stride; in a causal LM a fixed set of
  anchors would leave the other positions' tokens invisible to every later position (attention
  only runs among anchors), so the offset r rotates with the layer and every position is an
  anchor in some layer. The first r positions of a layer with offset r have no anchor at or
  before them: their prediction has no anchor term (x̂_t = p_1 x_t) and no correction. The
  blocks' memory layers see the anchors' token ids. Anchors attend over the anchors only, so their
  attention context is about T/K.

Analytic cost (see :func:`workbench.model.model_cost`): ``altup`` adds (K-1) V D embedding
parameters; Sequence-AltUp runs layer l's block on n_l = ceil((T - r)/K) of the T positions,
with context n_l. The predict/correct work is element-wise (scalar times stream), which fvcore
does not count: its figure is the analytic one less :func:`flops_per_token`.

Shapes: B batch, T sequence, D model width, K AltUp blocks, S anchor positions, V vocabulary,
L layers, X = K*D (or D) embedding width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from workbench.config import ModelConfig
from workbench.errors import ConfigError
from workbench.memory import ForwardContext

VARIANTS = ("altup", "recycled", "sequence")
EMBED_INITS = ("independent", "replicated")


def validate(cfg: ModelConfig) -> None:
    """Raise :class:`ConfigError` naming ``model.altup_k`` or ``model.altup_variant``."""
    if cfg.altup_variant not in VARIANTS:
        raise ConfigError(
            f"model.altup_variant: must be one of {'|'.join(VARIANTS)}, got {cfg.altup_variant!r}"
        )
    if cfg.altup_embed_init not in EMBED_INITS:
        raise ConfigError(
            f"model.altup_embed_init: must be one of {'|'.join(EMBED_INITS)}, got {cfg.altup_embed_init!r}"
        )
    if cfg.altup_k < 1:
        raise ConfigError(f"model.altup_k: must be >= 1 (1 is the plain model), got {cfg.altup_k}")
    if cfg.altup_variant == "sequence" and cfg.altup_k > cfg.seq_len:
        raise ConfigError(
            f"model.altup_k: the Sequence-AltUp stride must be <= model.seq_len={cfg.seq_len}, got {cfg.altup_k}"
        )


def embedding_width(cfg: ModelConfig) -> int:
    """Width of the token embedding table: K*D for plain AltUp, else D."""
    return cfg.d_model * (cfg.altup_k if cfg.altup_variant == "altup" else 1)


def init_embedding(cfg: ModelConfig, wte: nn.Embedding) -> None:
    """``replicated``: every slice of plain AltUp's wide embedding starts as a copy of the first."""
    if cfg.altup_k > 1 and cfg.altup_variant == "altup" and cfg.altup_embed_init == "replicated":
        with torch.no_grad():
            slices_VKD = wte.weight.view(wte.weight.shape[0], cfg.altup_k, cfg.d_model)
            slices_VKD.copy_(slices_VKD[:, :1].expand_as(slices_VKD))


def tokens_per_layer(cfg: ModelConfig) -> list[int]:
    """How many of the ``seq_len`` positions each layer's block computes on (and attends over)."""
    t, k = cfg.seq_len, cfg.altup_k
    if cfg.altup_variant != "sequence":
        return [t] * cfg.n_layers
    return [math.ceil((t - layer % k) / k) for layer in range(cfg.n_layers)]


def params(cfg: ModelConfig) -> int:
    """AltUp's predict/correct scalars (the wider embedding is in :func:`embedding_width`)."""
    k = cfg.altup_k
    if k == 1:
        return 0
    per_layer = 3 if cfg.altup_variant == "sequence" else k * k + k
    return cfg.n_layers * per_layer


def flops_per_token(cfg: ModelConfig) -> int:
    """Predict and correct multiply-adds per token, 2 FLOPs each."""
    k, d = cfg.altup_k, cfg.d_model
    if k == 1:
        return 0
    macs = 3 * d if cfg.altup_variant == "sequence" else (k * k + k) * d
    return cfg.n_layers * 2 * macs


class AltUp(nn.Module):
    """Plain and Recycled AltUp: runs the blocks on K contiguous ``[B, T, D]`` streams.

    The predict and correct steps are K^2 + K scalar multiply-adds over whole streams
    (``addcmul``); a ``[K, K]`` matmul over the streams would contract over K <= 4 only, which
    cuBLAS runs (and differentiates) far slower than these memory-bound element-wise kernels.
    """

    def __init__(self, k: int, d_model: int, n_layers: int, recycled: bool) -> None:
        super().__init__()
        self.k, self.d_model, self.recycled = k, d_model, recycled
        self.predict_LKK = nn.Parameter(torch.eye(k).repeat(n_layers, 1, 1))
        self.correct_LK = nn.Parameter(torch.ones(n_layers, k))

    def forward(
        self, tok_BTX: torch.Tensor, pos_TD: torch.Tensor, blocks: Sequence[nn.Module], ctx: ForwardContext
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The read-out ``[B, T, D]`` (mean of the K blocks) and the blocks' summed aux loss."""
        K, D = self.k, self.d_model
        if self.recycled:
            xs = [tok_BTX + pos_TD] * K
        else:
            xs = [tok_BTX[..., i * D : (i + 1) * D] + pos_TD for i in range(K)]
        aux = tok_BTX.new_zeros((), dtype=torch.float32)
        for layer, block in enumerate(blocks):
            j = layer % K
            p_KK, g_K = self.predict_LKK[layer], self.correct_LK[layer]
            xhat = [_combine(p_KK[i], xs) for i in range(K)]
            xtilde_BTD, layer_aux = block(xhat[j], ctx)
            delta_BTD = xtilde_BTD - xhat[j]
            xs = [torch.addcmul(xhat[i], g_K[i], delta_BTD) for i in range(K)]
            aux = aux + layer_aux
        return torch.stack(xs).mean(0), aux

    def mixing_parameters(self) -> list[nn.Parameter]:
        """The predict and correct scalars: no weight decay unless ``train.altup_weight_decay``."""
        return [self.predict_LKK, self.correct_LK]

    def head_weight(self, wte_VX: torch.Tensor) -> torch.Tensor:
        """The tied LM head ``[V, D]``: the mean of the K embedding slices."""
        if self.recycled:
            return wte_VX
        return wte_VX.view(wte_VX.shape[0], self.k, self.d_model).mean(1)


def _combine(w_K: torch.Tensor, xs: list[torch.Tensor]) -> torch.Tensor:
    """``sum_j w_j xs[j]`` as a chain of multiply-adds (one kernel per term)."""
    out = w_K[0] * xs[0]
    for w, x in zip(w_K[1:], xs[1:], strict=True):
        out = torch.addcmul(out, w, x)
    return out


class SequenceAltUp(nn.Module):
    """Sequence-AltUp: layer l runs its block on positions r, r+K, ... (r = l mod K) only.

    Positions are grouped K at a time after a left pad of s = (K - r) mod K zeros, so each
    group starts with its anchor and the predict/correct steps broadcast within groups (no
    gathers). With s > 0 the first group's anchor is padding: its positions (t < r) have no
    anchor, so the anchor term of their prediction is zero and they get no correction.
    """

    def __init__(self, stride: int, n_layers: int) -> None:
        super().__init__()
        self.stride = stride
        self.predict_L2 = nn.Parameter(torch.tensor([[1.0, 0.0]]).repeat(n_layers, 1))
        self.correct_L = nn.Parameter(torch.ones(n_layers))

    def forward(
        self, tok_BTD: torch.Tensor, pos_TD: torch.Tensor, blocks: Sequence[nn.Module], ctx: ForwardContext
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x_BTD = tok_BTD + pos_TD
        B, T, D = x_BTD.shape
        K = self.stride
        aux = tok_BTD.new_zeros((), dtype=torch.float32)
        for layer, block in enumerate(blocks):
            r = layer % K
            if r >= T:
                continue
            s = (K - r) % K
            G = math.ceil((T + s) / K)
            first = 1 if s else 0  # the first group's anchor is padding when s > 0
            x_BGKD = F.pad(x_BTD, (0, 0, s, G * K - T - s)).view(B, G, K, D)
            p = self.predict_L2[layer]
            xhat_BGKD = p[0] * x_BGKD + p[1] * x_BGKD[:, :, :1]
            xhat_BSD = xhat_BGKD[:, first:, 0]
            ids = ctx.token_ids_BT[:, r::K] if ctx.token_ids_BT is not None else None
            xtilde_BSD, layer_aux = block(xhat_BSD.contiguous(), ForwardContext(token_ids_BT=ids))
            delta_BGD = F.pad(xtilde_BSD - xhat_BSD, (0, 0, first, 0))
            x_BGKD = xhat_BGKD + self.correct_L[layer] * delta_BGD.unsqueeze(2)
            x_BTD = x_BGKD.view(B, G * K, D)[:, s : s + T]
            aux = aux + layer_aux
        return x_BTD, aux

    def mixing_parameters(self) -> list[nn.Parameter]:
        return [self.predict_L2, self.correct_L]

    def head_weight(self, wte_VD: torch.Tensor) -> torch.Tensor:
        return wte_VD


def build(cfg: ModelConfig) -> AltUp | SequenceAltUp | None:
    """The AltUp wrapper of ``cfg``, or None for the plain model (``altup_k == 1``)."""
    validate(cfg)
    if cfg.altup_k == 1:
        return None
    if cfg.altup_variant == "sequence":
        return SequenceAltUp(cfg.altup_k, cfg.n_layers)
    return AltUp(cfg.altup_k, cfg.d_model, cfg.n_layers, recycled=cfg.altup_variant == "recycled")
