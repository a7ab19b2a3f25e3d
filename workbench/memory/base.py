"""The contract every memory layer implements: its config, its module, and its analytic cost.

In the unified view (docs/DESIGN.md §1) an FFN slot holds a memory of cells grouped into blocks of
size ``g``; a selection method reads ``k`` blocks per token. Each layer file defines

* a frozen, keyword-only ``Config`` dataclass (subclass of :class:`MemoryConfig`) whose
  fields are the layer's knobs, with ``validate``, ``cost`` and ``build``;
* the ``nn.Module`` (subclass of :class:`MemoryLayer`) returning ``(y, aux_loss)``.

Shape legend: B batch, T sequence, D model width, E blocks (experts), G block size (cells
per block), K blocks read per token, N tokens (B*T), V vocabulary.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from workbench.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class LayerContext:
    """What a memory layer may know about the model around it.

    ``token_counts`` (length-V array of training-set token frequencies, or None) lets
    frequency-aware layers (balanced hash) be built from the corpus; ``token_features`` (a
    ``[V, F]`` array of distributional token features, :mod:`workbench.data.features`, or None)
    lets similarity-aware ones (clustered and dispersed hash) group tokens by their neighbours.
    Neither enters a hash. A layer that needs the features says so
    (:meth:`MemoryConfig.needs_token_features`), so they are computed only for it.
    """

    d_model: int
    vocab_size: int
    seq_len: int
    layer_index: int = 0
    n_layers: int = 1
    token_counts: Any = field(default=None, compare=False, repr=False)
    token_features: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, kw_only=True)
class LayerCost:
    """Analytic cost of one memory layer, per token, forward pass.

    ``flops_per_token`` counts 2 FLOPs per multiply-add of the matmuls (selector included);
    element-wise work (activations, softmax, norms) is not counted, by the usual convention.
    """

    params_total: int
    params_active: int
    flops_per_token: int


@dataclass(frozen=True)
class ForwardContext:
    """Per-batch side information some selection methods read (hash layers read token ids)."""

    token_ids_BT: torch.Tensor | None = None


@dataclass(frozen=True, kw_only=True)
class MemoryConfig:
    """Base of every memory layer config. ``kind`` is the registry name of the layer."""

    kind: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    active_per_token: ClassVar[str] = ""

    @classmethod
    def example(cls, ctx: LayerContext) -> MemoryConfig:
        """A small valid config for ``ctx``: the conformance suite builds every registered layer
        from it. A layer whose defaults do not fit a small context (say d_model=32) overrides it."""
        return cls()

    def validate(self, ctx: LayerContext) -> None:
        """Raise :class:`ConfigError` naming the field and the fix when the knobs are inconsistent."""

    def needs_token_features(self) -> bool:
        """Whether :meth:`build` reads ``LayerContext.token_features`` (the trial computes them)."""
        return False

    def cost(self, ctx: LayerContext) -> LayerCost:
        raise NotImplementedError

    def build(self, ctx: LayerContext) -> MemoryLayer:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}

    def config_hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


FLOAT32_WEIGHTS = "workbench_float32_weights"
ModuleT = TypeVar("ModuleT", bound=nn.Module)


def float32_weights(module: ModuleT) -> ModuleT:
    """Mark ``module``'s weights to stay float32 when the trainer holds matmul weights in bf16.

    For modules that compute in float32 on purpose (routers: Switch's selective precision);
    see :mod:`workbench.train.master`.
    """
    setattr(module, FLOAT32_WEIGHTS, True)
    return module


def keeps_float32(module: nn.Module) -> bool:
    return bool(getattr(module, FLOAT32_WEIGHTS, False))


def require(condition: bool, field: str, message: str) -> None:
    """Raise a :class:`ConfigError` for ``memory.<field>`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(f"memory.{field}: {message}")


class MemoryLayer(nn.Module):
    """A memory layer in an FFN slot: ``forward(x_BTD, ctx) -> (y_BTD, aux_loss)``.

    Layers that route tokens to blocks count per-block load in buffers (``load_E``) that the
    trainer reads and resets outside the forward pass, so no host synchronisation is needed
    inside a step.

    ``causal_in_training`` is False for a layer whose training-mode output at one position
    depends on other positions of the batch (BASE layers solve an assignment over the whole
    batch); such a layer must still be causal in eval mode, and the conformance suite checks
    causality in eval mode only.
    """

    n_blocks: int = 1
    # Routing counters, registered as buffers by init_routing_counters.
    load_E: torch.Tensor
    dropped: torch.Tensor
    routed: torch.Tensor
    causal_in_training: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()

    def init_routing_counters(self, n_blocks: int) -> None:
        self.n_blocks = n_blocks
        self.register_buffer("load_E", torch.zeros(n_blocks, dtype=torch.float64), persistent=False)
        self.register_buffer("dropped", torch.zeros((), dtype=torch.float64), persistent=False)
        self.register_buffer("routed", torch.zeros((), dtype=torch.float64), persistent=False)

    @torch.no_grad()
    def count_routing(
        self, block_ids: torch.Tensor, n_tokens: int, n_dropped: torch.Tensor | None = None
    ) -> None:
        """Accumulate the blocks read by ``n_tokens`` reads (``block_ids`` of any shape).

        A layer reading K blocks per token passes N*K reads, so ``dropped_frac`` is the fraction
        of reads dropped. Negative ids (dropped reads) are skipped. ``index_add_`` rather than
        ``bincount`` keeps this free of a host synchronisation on CUDA.
        """
        if not hasattr(self, "load_E"):
            return
        ids = block_ids.reshape(-1)
        self.load_E.index_add_(0, ids.clamp_min(0), (ids >= 0).to(self.load_E.dtype))
        self.routed += n_tokens
        if n_dropped is not None:
            self.dropped += n_dropped.to(torch.float64)

    def routing_stats(self) -> dict[str, Any] | None:
        """Load per block (fraction of reads), load entropy, dropped and unused fractions."""
        if not hasattr(self, "load_E") or float(self.routed) == 0:
            return None
        load = self.load_E / self.load_E.sum().clamp_min(1)
        nz = load[load > 0]
        entropy = float(-(nz * nz.log()).sum())
        return {
            "n_blocks": self.n_blocks,
            "load": [float(v) for v in load],
            "load_entropy": entropy,
            "load_entropy_max": float(torch.log(torch.tensor(float(self.n_blocks)))),
            "dropped_frac": float(self.dropped / self.routed),
            "unused_frac": float((self.load_E == 0).sum()) / self.n_blocks,
        }

    def reset_routing(self) -> None:
        if hasattr(self, "load_E"):
            self.load_E.zero_()
            self.dropped.zero_()
            self.routed.zero_()
