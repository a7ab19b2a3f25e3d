"""Build optuna studies whose trials carry the workbench's user-attr contract (see workbench/ingest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from workbench import record

OBJECTIVES = [
    {"name": "val_ppl", "direction": "minimize"},
    {"name": "flops_per_token", "direction": "minimize"},
]
SPACE = {"name": "demo-space", "params": {"memory.kind": ["dense", "switch"], "model.d_model": [64, 128]}}
DISTRIBUTIONS = {
    "memory.kind": CategoricalDistribution(["dense", "switch"]),
    "model.d_model": CategoricalDistribution([64, 128]),
    "train.lr": FloatDistribution(1e-4, 1e-2, log=True),
}
# Grid of complete trials in build_study: (kind, d_model, val_ppl).
GRID = [
    ("dense", 64, 30.0),
    ("dense", 128, 25.0),
    ("switch", 64, 27.0),
    ("switch", 128, 22.0),
    ("switch", 128, 24.0),
]

optuna.logging.set_verbosity(optuna.logging.WARNING)


def trial_config(kind: str = "switch", d_model: int = 64, lr: float = 3e-3) -> dict[str, Any]:
    """A nested trial config as the trial code writes it: a dense memory has no ``n_experts``."""
    memory: dict[str, Any] = {"kind": kind}
    if kind == "switch":
        memory |= {"n_experts": 4, "capacity_factor": 0.0, "impl": "auto"}
    return {
        "data": {"corpus": "kjv", "tokenizer": "byte", "vocab_size": 256},
        "model": {"seq_len": 32, "d_model": d_model, "n_layers": 2, "n_heads": 2},
        "memory": memory,
        "train": {"tokens": 1000, "lr": lr, "compile": False},
    }


def flops(kind: str, d_model: int) -> int:
    """A stand-in for analytic FLOPs per token: a 4x FFN (16 d^2), plus a 4-expert router for switch."""
    return 16 * d_model * d_model + (2 * 4 * d_model if kind == "switch" else 0)


def contract_attrs(
    *, kind: str, d_model: int, lr: float = 3e-3, status: str = "complete", val_ppl: float | None = 20.0
) -> dict[str, Any]:
    """User attrs of a trial that trained (``status="complete"``) or stopped early."""
    trained = status == "complete"
    metrics: dict[str, Any] = {
        "flops_per_token": flops(kind, d_model),
        "params_total": 1000 * d_model,
        "params_active": 500 * d_model,
    }
    if trained:
        metrics |= {
            "val_ppl": val_ppl,
            "val_loss": None if val_ppl is None else 3.0,
            "flops_per_token_fvcore": float(flops(kind, d_model)),
            "tokens_per_s": 12345.6,
            "peak_mem_bytes": 2**20,
            "train_seconds": 1.5,
            "tokens_trained": 1000,
            "steps": 20,
        }
    routing = [
        {
            "layer": layer,
            "n_blocks": 4,
            "load": [0.4, 0.3, 0.2, 0.1],
            "load_entropy": 1.28,
            "load_entropy_max": 1.386,
            "dropped_frac": 0.01 * layer,
            "unused_frac": 0.0,
        }
        for layer in range(2)
    ]
    return {
        "wb.status": status,
        "wb.config": trial_config(kind, d_model, lr),
        "wb.config_hash": f"{kind}-{d_model}-{lr}",
        "wb.metrics": metrics,
        "wb.curve": [[10, "train_loss", 5.1], [20, "train_loss", 4.9], [20, "val_loss", 4.8], [20, "lr", lr]]
        if trained
        else [],
        "wb.routing": routing if trained and kind == "switch" else [],
        # The design's first run fitted its learning rate with two short probes.
        "wb.tuning": [
            {"values": {"train.lr": lr / 2}, "val_loss": 5.3, "tokens_trained": 100, "train_seconds": 0.1},
            {"values": {"train.lr": lr}, "val_loss": 5.2, "tokens_trained": 100, "train_seconds": 0.1},
        ]
        if trained
        else [],
        "wb.tuned": {"train.lr": lr},
        "wb.provenance": {
            "git_commit": "0123abc",
            "git_dirty": False,
            "packages": {"torch": "2.4.0", "optuna": "5.0.0"},
            "device": "cpu",
            "device_name": "test cpu",
            "seed": 7,
            "python": "3.11",
            "torch": "2.4.0",
            "hostname": "testhost",
        },
    }


def make_study(
    name: str = "demo", storage: str | BaseStorage | None = None, *, uid: str | None = None
) -> optuna.Study:
    """An empty two-objective study with the workbench's study attrs (``wb.study_uid`` when ``uid``)."""
    study = optuna.create_study(study_name=name, storage=storage, directions=["minimize", "minimize"])
    study.set_user_attr(record.STUDY_SPACE, SPACE)
    study.set_user_attr(record.STUDY_OBJECTIVES, OBJECTIVES)
    if uid is not None:
        study.set_user_attr(record.STUDY_UID, uid)
    return study


def add_trial(
    study: optuna.Study,
    *,
    kind: str,
    d_model: int,
    val_ppl: float | None = 20.0,
    lr: float = 3e-3,
    status: str = "complete",
    state: TrialState = TrialState.COMPLETE,
    error: str | None = None,
) -> FrozenTrial:
    """Add a finished trial sampled at (kind, d_model, lr)."""
    attrs = contract_attrs(kind=kind, d_model=d_model, lr=lr, status=status, val_ppl=val_ppl)
    if error is not None:
        attrs["wb.error"] = error
    values = (
        [val_ppl, float(flops(kind, d_model))]
        if state == TrialState.COMPLETE and val_ppl is not None
        else None
    )
    study.add_trial(
        optuna.trial.create_trial(
            state=state,
            values=values,
            params={"memory.kind": kind, "model.d_model": d_model, "train.lr": lr},
            distributions=DISTRIBUTIONS,
            user_attrs=attrs,
        )
    )
    return study.trials[-1]


def build_study(
    name: str = "demo", storage: str | BaseStorage | None = None, *, uid: str | None = None
) -> optuna.Study:
    """GRID as complete trials, then one failed, one infeasible, one pruned and one hard-crashed trial."""
    study = make_study(name, storage, uid=uid)
    for kind, d_model, ppl in GRID:
        add_trial(study, kind=kind, d_model=d_model, val_ppl=ppl)
    add_trial(study, kind="switch", d_model=64, status="failed", state=TrialState.FAIL, error="CUDA OOM")
    add_trial(
        study,
        kind="switch",
        d_model=128,
        status="infeasible",
        state=TrialState.FAIL,
        error="memory.n_experts: 4 does not divide d_ff",
    )
    add_trial(study, kind="dense", d_model=64, status="pruned", state=TrialState.PRUNED)
    # A worker killed before it wrote any wb.* attr: only optuna's state and fail_reason remain.
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.FAIL,
            params={"memory.kind": "dense"},
            distributions={"memory.kind": DISTRIBUTIONS["memory.kind"]},
            system_attrs={"fail_reason": "worker lost"},
        )
    )
    return study


def downgrade_to_001(path: Path) -> None:
    """Make ``path`` the store that code from before migration 002 wrote: no ``studies.study_uid``, nor
    what later migrations added."""
    con = duckdb.connect(str(path))
    con.execute("ALTER TABLE studies DROP COLUMN study_uid")
    for column in ("design_hash", "seed", "replicate", "epochs"):  # migration 003
        con.execute(f"ALTER TABLE trials DROP COLUMN {column}")
    con.execute("DROP TABLE tuning")
    con.execute("DELETE FROM schema_migrations WHERE version > 1")
    con.close()
