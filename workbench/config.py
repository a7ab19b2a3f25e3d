"""Typed configs of one trial: data, model, training. Frozen, keyword-only, hashable.

A sampled point of a search space is a flat mapping of dotted names (``model.d_model``,
``memory.n_experts``, ``train.lr``, ``data.vocab_size``); :func:`trial_config_from_flat`
turns it into a :class:`TrialConfig`, naming any unknown field.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from workbench import record
from workbench.errors import ConfigError, DataError
from workbench.memory import MemoryConfig, config_from_dict
from workbench.memory.dense import DenseConfig

TOKENIZERS = ("byte", "bpe")
MIN_BPE_VOCAB = 257
MAX_VOCAB = 65536  # token files store ids as uint16
EVAL_WINDOWS = ("spread", "head")


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Where tokens come from.

    ``corpus``: ``"kjv"`` (the embedded King James Bible), a path to a text file or a folder of
    ``.txt`` files, or a pre-tokenized ``.bin`` of little-endian uint16 ids.
    ``tokenizer``: ``"byte"`` (256 ids) or ``"bpe"`` (trained offline on the corpus, ``vocab_size``).
    """

    corpus: str = "kjv"
    tokenizer: str = "bpe"
    vocab_size: int = 2048
    val_fraction: float = 0.05
    cache_dir: str = ""


def check_tokenizer_config(cfg: DataConfig) -> None:
    """Raise :class:`DataError` if ``cfg.tokenizer`` or, for BPE, ``cfg.vocab_size`` is unusable.

    It lives with the config, not the data path, so a space can refuse such a value when it is
    built, before any corpus is read.
    """
    if cfg.tokenizer not in TOKENIZERS:
        raise DataError(
            f"data.tokenizer: unknown tokenizer '{cfg.tokenizer}'; valid: {', '.join(TOKENIZERS)}"
        )
    if cfg.tokenizer == "bpe" and not MIN_BPE_VOCAB <= cfg.vocab_size <= MAX_VOCAB:
        raise DataError(
            f"data.vocab_size: {cfg.vocab_size} is out of range for bpe; give {MIN_BPE_VOCAB}..{MAX_VOCAB} "
            "(256 byte ids plus at least one merge; token files store uint16 ids)"
        )


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """A GPT-style decoder; ``memory`` fills the FFN slot of the layers ``placement`` selects.

    ``altup_k`` > 1 wraps the blocks in AltUp (workbench/model/altup.py): a K-times wider residual
    stream (``altup_variant`` ``altup`` or ``recycled``) or a stride-K sequence
    (``sequence``); 1 is the plain model. ``altup_embed_init`` (plain AltUp only): the K slices
    of the K-times wider embedding drawn ``independent`` of each other, or ``replicated`` (one
    draw copied K times, so the model starts as Recycled-AltUp and the slices part in training).

    ``ffn_init`` sets the initial scale of the FFN slot's matrices (the dense FFN's two and every
    expert bank's, the blocks of switch, gshard, base, hash, avgk and lsh's experts): ``gpt2``
    (the default) is N(0, 0.02) for all of them, as the rest of the model; ``layer`` keeps each
    layer's own (nn.Linear's N(0, 0.02) for the dense FFN, N(0, 1/fan_in) for expert banks, as
    each was first written and as every study stored before 2026-12-03 ran); ``fan_in`` is
    N(0, 1/fan_in) for all of them. docs/REPLICATION.md ("Initial scale") measures the three:
    under ``layer`` Avg-K ends 12-40% worse than under ``gpt2``, which is why ``gpt2`` is the
    default.
    """

    seq_len: int = 128
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 0
    placement: str = "all"
    altup_k: int = 1
    altup_variant: str = "altup"
    altup_embed_init: str = "independent"
    ffn_init: str = "gpt2"
    memory: MemoryConfig = field(default_factory=DenseConfig)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Optimisation and budget. The run stops at ``tokens`` or ``seconds``, whichever comes first.

    ``master_weights`` (CUDA under bf16 only): matmul weights and memory value tables are held
    in bf16 and the optimizer keeps their float32 masters (workbench/train/master.py), the same
    numerics as autocast's per-step casts without their traffic; false keeps float32 weights.

    ``memory_value_lr_scale``: the value tables of the memory layers (what their
    ``memory_value_parameters()`` list: PKM, VanillaM, the lookup tables) train in an AdamW group
    of their own, without weight decay (decay would also shrink rows that are not read) and at
    ``lr`` times this factor. The PKM paper trains values at a larger rate; 1.0 is the default
    because it changes the least (only the weight decay), so a study opts into a larger rate.
    ``sparse_values``: that group uses a lazy AdamW that updates only the rows with a nonzero
    gradient this step, moments included (workbench/train/sparse_adamw.py says why it is off by
    default: at the workbench's shapes every row is read every step).

    ``altup_weight_decay``: whether AltUp's predict and correct scalars (identity and ones at
    init) get the weight decay of the matrices. False, the default: decay would pull the mixing
    towards zero, away from the identity, which is not a regulariser of a scalar's size. True is
    what every AltUp run stored before 2026-12-03 trained with (the optimizer then decayed every
    parameter of two or more dimensions) and stays out of the digest; no effect without AltUp.

    ``eval_windows``: where the ``eval_tokens`` validation windows lie in the validation split,
    ``spread`` evenly over all of it (the default) or ``head`` at its start, which, for a corpus
    made of sources one after another, is the first source alone (``workbench.data.eval_batches``).
    """

    tokens: int = 200_000
    seconds: float = 0.0
    batch_size: int = 16
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_frac: float = 0.05
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_every: int = 0
    eval_tokens: int = 32_768
    eval_windows: str = "spread"
    dtype: str = "auto"
    compile: bool = False
    master_weights: bool = True
    memory_value_lr_scale: float = 1.0
    sparse_values: bool = False
    altup_weight_decay: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.eval_windows not in EVAL_WINDOWS:
            raise ConfigError(
                f"train.eval_windows: {self.eval_windows!r} is not one of {', '.join(EVAL_WINDOWS)}"
            )


@dataclass(frozen=True, kw_only=True)
class TrialConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": dataclasses.asdict(self.data),
            "model": {**{k: v for k, v in dataclasses.asdict(self.model).items() if k != "memory"}},
            "memory": self.model.memory.to_dict(),
            "train": dataclasses.asdict(self.train),
        }

    def config_hash(self) -> str:
        """Stable across runs and machines: sha256 of the canonical JSON of the config."""
        return record.config_digest(self.to_dict())

    def design_hash(self, per_design: Iterable[str] = ()) -> str:
        """The hash of the design this run trains: the config without ``train.seed`` (runs of
        one design differ only in it) nor the ``per_design`` knobs fit to each design."""
        return record.design_hash(self.to_dict(), per_design)


_SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


def _build_section(section: str, cls: type, values: dict[str, Any]) -> Any:
    valid = {f.name for f in dataclasses.fields(cls) if f.name != "memory"}
    for key in values:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean '{section}.{close[0]}'?)" if close else ""
            raise ConfigError(f"{section}.{key}: unknown field{hint}; valid: {', '.join(sorted(valid))}")
    return values


def trial_config_from_flat(flat: Mapping[str, Any]) -> TrialConfig:
    """Build a :class:`TrialConfig` from dotted names; an unknown section or field is named."""
    sections: dict[str, dict[str, Any]] = {"data": {}, "model": {}, "train": {}, "memory": {}}
    for name, value in flat.items():
        section, _, key = name.partition(".")
        if section not in sections or not key:
            raise ConfigError(
                f"{name}: parameter names are '<section>.<field>' with section one of data, model, memory, train"
            )
        sections[section][key] = value
    memory_values = sections.pop("memory")
    memory_values.setdefault("kind", "dense")
    memory = config_from_dict(memory_values)
    built = {s: _build_section(s, _SECTIONS[s], v) for s, v in sections.items()}
    try:
        return TrialConfig(
            data=DataConfig(**built["data"]),
            model=ModelConfig(**built["model"], memory=memory),
            train=TrainConfig(**built["train"]),
        )
    except TypeError as exc:
        raise ConfigError(f"config: {exc}") from None
