"""A GPT-style decoder whose FFN slots hold memory layers from the registry.

Reads top to bottom: attention -> block -> placement -> model -> analytic cost.
Pre-norm (LayerNorm without bias), causal SDPA attention, learned positions, tied embeddings.
``model.altup_k`` > 1 runs the blocks inside AltUp (workbench/model/altup.py).

Shapes: B batch, T sequence, D model width, H heads, V vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from workbench.config import ModelConfig
from workbench.errors import ConfigError
from workbench.memory import ForwardContext, LayerContext, MemoryConfig, MemoryLayer
from workbench.memory.dense import DenseConfig, DenseFFN
from workbench.memory.experts import ExpertBank
from workbench.model import altup


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.proj = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        B, T, D = x_BTD.shape
        q, k, v = self.qkv(x_BTD).split(D, dim=2)
        q, k, v = (t.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (q, k, v))
        y_BHTd = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y_BHTd.transpose(1, 2).reshape(B, T, D))


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, memory: MemoryLayer) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model, bias=False)
        self.attn = CausalSelfAttention(d_model, n_heads)
        self.ln2 = nn.LayerNorm(d_model, bias=False)
        self.memory = memory

    def forward(self, x_BTD: torch.Tensor, ctx: ForwardContext) -> tuple[torch.Tensor, torch.Tensor]:
        x_BTD = x_BTD + self.attn(self.ln1(x_BTD))
        y_BTD, aux = self.memory(self.ln2(x_BTD), ctx)
        return x_BTD + y_BTD, aux


def memory_layers(placement: str, n_layers: int) -> list[bool]:
    """Which layers hold the memory layer (the rest hold a dense FFN).

    ``all`` | ``none`` | ``every:N`` (layers N-1, 2N-1, ... as in GShard's every-other-layer) |
    ``every:N:OFFSET`` | a comma-separated list of layer indices (``"1,3"``) | a string of
    ``M``/``D`` per layer (``"DMDM"``).
    """
    p = placement.strip()
    if p == "all":
        return [True] * n_layers
    if p == "none":
        return [False] * n_layers
    if p.startswith("every:"):
        parts = p.split(":")
        try:
            step = int(parts[1])
            offset = int(parts[2]) if len(parts) > 2 else step - 1
        except (IndexError, ValueError):
            raise ConfigError(
                f"model.placement: {placement!r} is not 'every:N' or 'every:N:OFFSET'"
            ) from None
        if step < 1:
            raise ConfigError(f"model.placement: step must be >= 1 in {placement!r}")
        return [i >= offset and (i - offset) % step == 0 for i in range(n_layers)]
    if set(p) <= {"M", "D"} and p:
        if len(p) != n_layers:
            raise ConfigError(
                f"model.placement: pattern {placement!r} has {len(p)} letters for {n_layers} layers"
            )
        return [c == "M" for c in p]
    try:
        idx = {int(s) for s in p.split(",") if s.strip()}
    except ValueError:
        raise ConfigError(
            f"model.placement: {placement!r} is not one of all, none, every:N, 'MDMD' or a list of layer indices"
        ) from None
    bad = sorted(i for i in idx if not 0 <= i < n_layers)
    if bad:
        raise ConfigError(f"model.placement: layer indices {bad} out of range for {n_layers} layers")
    return [i in idx for i in range(n_layers)]


FFN_INITS = ("layer", "gpt2", "fan_in")
GPT2_STD = 0.02


def init_ffn_slots(model: nn.Module, scheme: str) -> None:
    """Re-draw the FFN slots' matrices under ``model.ffn_init`` (see :class:`ModelConfig`).

    ``layer`` leaves them as built. A matrix of fan-in f gets N(0, 1/f) under ``fan_in``: for an
    expert bank's second matrix that is the cells behind one read (its block width; a hash
    expert's full width under MultiHash).
    """
    if scheme == "layer":
        return
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, DenseFFN):
                if scheme == "gpt2":
                    # nn.Linear drew them so already; drawing again would only move the random
                    # stream, and a dense model stays bit-identical to its runs stored under "layer".
                    continue
                pairs = [
                    (module.up.weight, module.up.in_features),
                    (module.down.weight, module.down.in_features),
                ]
            elif isinstance(module, ExpertBank):
                pairs = [(module.w1_EDG, module.d_model), (module.w2_EGD, module.value_fan_in)]
            else:
                continue
            for weight, fan_in in pairs:
                weight.normal_(0.0, GPT2_STD if scheme == "gpt2" else 1.0 / math.sqrt(fan_in))


def layer_configs(
    cfg: ModelConfig, vocab_size: int, token_counts: Any = None, token_features: Any = None
) -> list[tuple[MemoryConfig, LayerContext]]:
    """The memory config and context of every layer's FFN slot, validated."""
    if cfg.d_model % cfg.n_heads:
        raise ConfigError(f"model.n_heads: {cfg.n_heads} does not divide model.d_model={cfg.d_model}")
    for name in ("seq_len", "d_model", "n_layers", "n_heads"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"model.{name}: must be >= 1, got {getattr(cfg, name)}")
    altup.validate(cfg)
    if cfg.ffn_init not in FFN_INITS:
        raise ConfigError(f"model.ffn_init: must be one of {'|'.join(FFN_INITS)}, got {cfg.ffn_init!r}")
    dense = DenseConfig(d_ff=cfg.d_ff)
    out = []
    for i, is_memory in enumerate(memory_layers(cfg.placement, cfg.n_layers)):
        ctx = LayerContext(
            d_model=cfg.d_model,
            vocab_size=vocab_size,
            seq_len=cfg.seq_len,
            layer_index=i,
            n_layers=cfg.n_layers,
            token_counts=token_counts,
            token_features=token_features,
        )
        layer_cfg = cfg.memory if is_memory else dense
        layer_cfg.validate(ctx)
        out.append((layer_cfg, ctx))
    return out


@dataclass(frozen=True)
class ModelCost:
    """Analytic cost of the whole model per token (forward). See :func:`model_cost`."""

    params_total: int
    params_active: int
    flops_per_token: int
    memory_params_total: int
    memory_flops_per_token: int


def model_cost(cfg: ModelConfig, vocab_size: int) -> ModelCost:
    """Parameters and forward FLOPs per token without building the model (constraints use it).

    FLOPs count 2 per multiply-add: per layer the QKV and output projections (4 D^2 MACs),
    the attention scores and weighted sum over the full context (2 T D MACs, no causal
    discount, as fvcore counts it), the memory layer's own analytic count, plus the LM head
    (D V MACs). Embedding lookups, norms and element-wise work are not counted.

    AltUp adds its wider embedding, its predict/correct scalars and their multiply-adds;
    Sequence-AltUp runs layer l's block on n_l of the T positions (context n_l), so the
    per-token figures average n_l / T of each block's work (rounded down).
    """
    d, t = cfg.d_model, cfg.seq_len
    layers = layer_configs(cfg, vocab_size)
    costs = [lc.cost(ctx) for lc, ctx in layers]
    n_tokens = altup.tokens_per_layer(cfg)
    mem_total = sum(c.params_total for c in costs)
    mem_active = sum(c.params_active for c in costs)
    mem_flops = sum(n * c.flops_per_token for n, c in zip(n_tokens, costs, strict=True)) // t
    per_layer_params = 4 * d * d + 2 * d  # attention + two norms
    embeddings = vocab_size * altup.embedding_width(cfg) + t * d
    shared = embeddings + cfg.n_layers * per_layer_params + d + altup.params(cfg)  # + final norm
    attn_flops = sum(n * 2 * (4 * d * d + 2 * n * d) for n in n_tokens) // t
    return ModelCost(
        params_total=shared + mem_total,
        params_active=shared + mem_active,
        flops_per_token=attn_flops + mem_flops + altup.flops_per_token(cfg) + 2 * d * vocab_size,
        memory_params_total=mem_total,
        memory_flops_per_token=mem_flops,
    )


class GPT(nn.Module):
    def __init__(
        self, cfg: ModelConfig, vocab_size: int, token_counts: Any = None, token_features: Any = None
    ) -> None:
        super().__init__()
        self.cfg, self.vocab_size = cfg, vocab_size
        self.wte = nn.Embedding(vocab_size, altup.embedding_width(cfg))
        self.wpe = nn.Embedding(cfg.seq_len, cfg.d_model)
        self.blocks = nn.ModuleList(
            [
                Block(cfg.d_model, cfg.n_heads, lc.build(ctx))
                for lc, ctx in layer_configs(cfg, vocab_size, token_counts, token_features)
            ]
        )
        self.ln_f = nn.LayerNorm(cfg.d_model, bias=False)
        self.altup = altup.build(cfg)
        self.apply(self._init_weights)
        # GPT-2's scaled init of residual projections keeps the residual stream's variance flat in depth.
        for block in self.blocks:
            assert isinstance(block, Block)
            nn.init.normal_(block.attn.proj.weight, std=0.02 / math.sqrt(2 * cfg.n_layers))
        init_ffn_slots(self, cfg.ffn_init)
        altup.init_embedding(cfg, self.wte)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def forward(self, idx_BT: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[B, T, V]`` and the summed auxiliary loss of the memory layers."""
        T = idx_BT.shape[1]
        if T > self.cfg.seq_len:
            raise ValueError(f"sequence of {T} tokens exceeds model.seq_len={self.cfg.seq_len}")
        ctx = ForwardContext(token_ids_BT=idx_BT)
        if self.altup is not None:
            pos_TD = self.wpe(torch.arange(T, device=idx_BT.device))
            x_BTD, aux = self.altup(self.wte(idx_BT), pos_TD, self.blocks, ctx)
            logits_BTV = F.linear(self.ln_f(x_BTD), self.altup.head_weight(self.wte.weight))
            return logits_BTV, aux
        x_BTD = self.wte(idx_BT) + self.wpe(torch.arange(T, device=idx_BT.device))
        aux = x_BTD.new_zeros((), dtype=torch.float32)
        for block in self.blocks:
            x_BTD, layer_aux = block(x_BTD, ctx)
            aux = aux + layer_aux
        logits_BTV = F.linear(self.ln_f(x_BTD), self.wte.weight)
        return logits_BTV, aux

    def memory_modules(self) -> list[tuple[int, MemoryLayer]]:
        return [(i, b.memory) for i, b in enumerate(self.blocks) if isinstance(b.memory, MemoryLayer)]

    def routing_stats(self) -> list[dict]:
        out = []
        for i, layer in self.memory_modules():
            stats = layer.routing_stats()
            if stats is not None:
                out.append({"layer": i, **stats})
        return out

    def reset_routing(self) -> None:
        for _, layer in self.memory_modules():
            layer.reset_routing()
