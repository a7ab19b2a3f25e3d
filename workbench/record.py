"""The trial record: what a trial writes to the optuna storage and the store reads back.

One contract between :mod:`workbench.trial` (the writer), :mod:`workbench.store.ingest` (the
copier), the space's objectives and the explorer: the ``wb.*`` user-attribute keys, and
:class:`TrialMetrics`, whose stored fields are the typed metric columns of the ``trials`` table
(``tests/test_record.py`` holds the two together). The optuna storage alone is enough to rebuild
the store (docs/DESIGN.md §6).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Trial user attributes.
STATUS = "wb.status"  # complete | failed | infeasible | pruned | interrupted | died | skipped
ERROR = "wb.error"  # the reason a trial did not complete, one line
CONFIG = "wb.config"  # the full nested config {section: {field: value}}
CONFIG_HASH = "wb.config_hash"  # TrialConfig.config_hash(): the seed included
DESIGN_HASH = "wb.design_hash"  # TrialConfig.design_hash(): the runs of one design share it
REPLICATE = (
    "wb.replicate"  # which of the design's seeds this run trains (0 = the first, which queues the rest)
)
TUNED = "wb.tuned"  # {knob: value} fit to the design by its first run, e.g. {"train.lr": 0.002}
TUNING = "wb.tuning"  # the probe runs that fit it: [{"param", "value", "val_loss", ...}, ...]
METRICS = "wb.metrics"  # TrialMetrics.to_dict()
CURVE = "wb.curve"  # [[step, metric, value], ...]
ROUTING = "wb.routing"  # [{"layer": i, "n_blocks": ..., "load": [...], ...}, ...]
PROVENANCE = "wb.provenance"  # git commit, packages, device, seed, host
OWNER = "wb.owner"  # {"host", "pid", "start", "boot"}: the process that claimed the trial (workbench.workers)
RETRY_OF = "wb.retry_of"  # the trial a re-queued run repeats (the first of the series), after its worker died
RETRIES = "wb.retries"  # how many runs of this series died before this one
FIRST_RUN = "wb.first_run"  # on a design's other seeds: the first run (its series) that queued them
RUNGS = "wb.rungs"  # early stopping: {rung: validation loss there}, e.g. {"1/9": 5.12}
# Study user attributes.
STUDY_SPACE = "wb.space"  # the space as JSON, checked on resume
STUDY_OBJECTIVES = "wb.objectives"  # [{"name": "val_ppl", "direction": "minimize"}, ...]
STUDY_UID = "wb.study_uid"  # a uuid set once, when the workbench creates the study
STUDY_TARGET = "wb.target"  # designs the study trains: set by its first process, raised by a larger --trials
STUDY_SESSIONS = "wb.sessions"  # processes that opened the study to train; seeds each one's sampler


def _stored(**kw: Any) -> Any:
    """A metric with a typed column of the same name in ``trials``."""
    return dataclasses.field(default=None, metadata={"stored": True}, **kw)


@dataclass(frozen=True, kw_only=True)
class TrialMetrics:
    """The measurements of one trial. ``None``: not measured (an infeasible or failed trial has
    only the analytic costs)."""

    val_ppl: float | None = _stored()
    val_loss: float | None = _stored()
    flops_per_token: int | None = _stored()  # analytic forward FLOPs per token (2 per multiply-add)
    flops_per_token_fvcore: int | None = _stored()  # fvcore's count of the traced model
    params_total: int | None = _stored()
    params_active: int | None = _stored()
    tokens_per_s: float | None = _stored()
    peak_mem_bytes: int | None = _stored()
    train_seconds: float | None = _stored()
    tokens_trained: int | None = _stored()
    steps: int | None = _stored()
    epochs: float | None = _stored()  # tokens trained / training tokens of the corpus
    corpus_tokens: int | None = None  # training tokens of the corpus
    wall_seconds: float | None = None
    compile_seconds: float | None = None
    cuda_graph: bool | None = None
    eager_reason: str | None = None
    master_weights: bool | None = None
    stopped_by: str | None = None  # tokens | seconds
    duplicate_of: int | None = None  # the trial whose results this one reused
    rung: str | None = None  # the early-stopping rung a stopped run reached, e.g. "1/9"

    def to_dict(self) -> dict[str, Any]:
        """The measured fields (``None`` left out), as the trial stores them."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrialMetrics:
        """Read a stored ``wb.metrics``; unknown keys (from newer or older writers) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def stored_metrics() -> dict[str, type]:
    """``{name: float | int}`` of the metrics that have a typed ``trials`` column."""
    kinds = {"float | None": float, "int | None": int}
    return {f.name: kinds[str(f.type)] for f in dataclasses.fields(TrialMetrics) if f.metadata.get("stored")}


def objective_metrics() -> tuple[str, ...]:
    """The metrics a space may optimise: the stored ones except the fvcore cross-check and counters."""
    skip = {"flops_per_token_fvcore", "tokens_trained", "steps", "epochs"}
    return tuple(name for name in stored_metrics() if name not in skip)


# Knobs added after studies were stored, as (section, memory kind or None, name): the value every
# run stored before the knob existed trained with. A knob at that value is left out of the digest,
# so those runs keep their config and design hashes (a resumed study's new seeds still join its
# old ones), while a new default (model.ffn_init became gpt2) gets hashes of its own.
LEGACY_KNOB_VALUES: dict[tuple[str, str | None, str], Any] = {
    ("model", None, "ffn_init"): "layer",
    ("train", None, "eval_windows"): "head",
    ("memory", "avgk", "block_key"): "mean",
    ("memory", "avgk", "aux_loss_coef"): 0.0,
    ("memory", "switch", "z_loss_coef"): 0.0,
    ("memory", "gshard", "z_loss_coef"): 0.0,
    ("train", None, "altup_weight_decay"): True,
    ("memory", "base", "gate"): "sigmoid",
    ("memory", "base", "train_routing"): "balanced",
    ("memory", "hash", "features"): "random",
    ("model", None, "altup_embed_init"): "independent",
}
# Knobs that cannot change a run of this config, as (section, name): predicate on the config. Left
# out of the digest there, so a knob added for one family does not rehash every other design.
INERT_KNOBS: dict[tuple[str, str], Callable[[Mapping[str, Any]], bool]] = {
    ("train", "altup_weight_decay"): lambda config: config.get("model", {}).get("altup_k", 1) == 1,
    ("model", "altup_embed_init"): lambda config: (
        config.get("model", {}).get("altup_k", 1) == 1
        or config.get("model", {}).get("altup_variant", "altup") != "altup"
    ),
}


def _without_quiet_defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for section, fields in config.items():
        if isinstance(fields, Mapping):
            kind = fields.get("kind") if section == "memory" else None
            fields = {
                k: v
                for k, v in fields.items()
                if (
                    (section, kind, k) not in LEGACY_KNOB_VALUES
                    or LEGACY_KNOB_VALUES[(section, kind, k)] != v
                )
                and not ((section, k) in INERT_KNOBS and INERT_KNOBS[(section, k)](config))
            }
        out[section] = fields
    return out


def without_legacy_constants(params: Mapping[str, Any]) -> dict[str, Any]:
    """A space's parameters (``Space.to_json()["params"]``) less the fixed ones that pin a knob of
    :data:`LEGACY_KNOB_VALUES` to its legacy value: pinning it is how a space stored before the
    knob existed keeps training what it trained, and is not a change of its search space."""
    legacy = {(f"{section}.{name}", value) for (section, _kind, name), value in LEGACY_KNOB_VALUES.items()}
    return {
        name: spec
        for name, spec in params.items()
        if not (
            isinstance(spec, Mapping)
            and spec.get("type") == "fixed"
            and spec.get("when") is None
            and (name, spec.get("value")) in legacy
        )
    }


def config_digest(config: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a nested config dict: stable across runs and machines.
    Knobs of :data:`LEGACY_KNOB_VALUES` at their legacy value are left out."""
    blob = json.dumps(_without_quiet_defaults(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def design_hash(config: Mapping[str, Any], per_design: Iterable[str] = ()) -> str:
    """The digest of the design a run trains: its config without ``train.seed`` (the runs of one
    design differ only in it) nor the ``per_design`` knobs fit to each design (``Tuned``)."""
    leave_out = {"train.seed", *per_design}
    design = {
        section: {k: v for k, v in fields.items() if f"{section}.{k}" not in leave_out}
        if isinstance(fields, Mapping)
        else fields
        for section, fields in config.items()
    }
    return config_digest(design)
