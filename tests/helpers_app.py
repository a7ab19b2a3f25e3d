"""Fixture stores for the app: a real tiny study, a study with a failed trial, an empty store, and
a synthetic store of any size written straight into the schema with DuckDB (for speed tests).

The real stores run :func:`workbench.study.run_study` on the tiny byte-level CPU space of
``tests/conftest.py`` (a few seconds); the synthetic one fakes a plausible unified-memory study
(selection method x block size x k x width) so filters, grids and importances have work to do.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.store import Store


def tiny_space_file(root: Path, name: str = "tiny") -> Path:
    """The tiny space of ``tests/conftest.py`` (byte-level corpus of a few sentences) under ``root``."""
    from conftest import SENTENCES, TINY_SPACE

    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES[i % len(SENTENCES)] for i in range(600)), encoding="utf-8")
    path = root / f"{name}.py"
    path.write_text(TINY_SPACE.format(corpus=str(corpus), constraints=""), encoding="utf-8")
    return path


TINY_TOKENS = 2048  # training tokens per trial: the app needs real trials, not good ones


def run_tiny_study(
    root: Path,
    store: Path,
    trials: int,
    study_name: str = "tiny",
    sampler: str = "grid",
    repeats: int | None = None,
) -> None:
    """Train ``trials`` designs of the tiny space on CPU into ``store`` (a second or two a trial).

    Token caches go under ``root`` (or ``$WORKBENCH_TEST_CACHE``), never to the user's cache.
    """
    import pytest

    from workbench.space import load_space
    from workbench.study import StudyOptions, apply_overrides, run_study

    space = apply_overrides(
        load_space(tiny_space_file(root, study_name)), {"train.tokens": TINY_TOKENS}, repeats=repeats
    )
    opts = StudyOptions(
        trials=trials, store=str(store), device="cpu", sampler=sampler, progress=False, study_name=study_name
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_CACHE", os.environ.get("WORKBENCH_TEST_CACHE") or str(root / "cache"))
        run_study(space, opts)


# Built once per test session, shared by every app test module (a fixture imported into several
# modules would be built once per module).
_BUILT: dict[str, Path] = {}


def session_store(name: str, factory: Any) -> Path:
    """One of the fixture stores, built on first use: ``real`` (a 6-trial tiny study, dense and
    switch), ``failed`` (a study whose first trial crashed), ``empty``, ``synthetic`` (2 studies
    of 400 synthetic trials), ``repeats`` (2 tiny designs, 3 seeds each)."""
    if name not in _BUILT:
        root = factory.mktemp(f"app-{name}")
        path = root / "wb.duckdb"
        if name == "real":
            run_tiny_study(root, path, trials=6)
        elif name == "failed":
            with first_trial_crashes():
                run_tiny_study(root, path, trials=2, study_name="crashy", sampler="random")
        elif name == "empty":
            empty_store(path)
        elif name == "repeats":
            run_tiny_study(root, path, trials=2, study_name="seeds", repeats=3)
        elif name == "synthetic":
            write_synthetic_store(path, 400, studies=("synth-a", "synth-b"))
        else:
            raise ValueError(f"unknown fixture store '{name}'")
        _BUILT[name] = path
    return _BUILT[name]


@contextmanager
def first_trial_crashes() -> Iterator[None]:
    """The first trial trained inside the block raises, as an out-of-memory error would."""
    import pytest

    import workbench.trial as trial_module

    real = trial_module.TrialRunner.train_and_measure
    calls = {"n": 0}

    def flaky(self: Any, cfg: Any, trial: Any = None) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(self, cfg, trial)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trial_module.TrialRunner, "train_and_measure", flaky)
        yield


def empty_store(path: Path) -> Path:
    """A migrated store with no studies."""
    Store.open(path)
    return path


# --- synthetic stores ------------------------------------------------------------------------------

KINDS = ["dense", "switch", "pkm", "avgk", "hash"]
BLOCK_SIZES = [1, 4, 16, 64]
TOP_K = [1, 2, 4]
D_MODELS = [64, 128, 256]
N_LAYERS = [2, 4, 6]


def synthetic_trials(n_trials: int, study_name: str, seed: int = 0) -> pd.DataFrame:
    """``n_trials`` plausible trials (wide form): design parameters, costs, perplexity, timings."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(KINDS, n_trials)
    d_model = rng.choice(D_MODELS, n_trials)
    n_layers = rng.choice(N_LAYERS, n_trials)
    block = rng.choice(BLOCK_SIZES, n_trials)
    k = rng.choice(TOP_K, n_trials)
    lr = np.exp(rng.uniform(np.log(3e-4), np.log(3e-2), n_trials))
    n_blocks = rng.choice([8, 32, 128, 512], n_trials)
    dense = kind == "dense"
    ffn = 8 * d_model * d_model  # 2 FLOPs per MAC, 4x FFN: in + out
    active_mem = np.where(dense, ffn, 2 * d_model * block * k * 2)
    select = np.select(
        [kind == "switch", kind == "pkm", kind == "avgk"],
        [2 * d_model * n_blocks, 4 * d_model * np.sqrt(n_blocks), 2 * d_model * n_blocks],
        0,
    )
    attn = 8 * d_model * d_model + 4 * 256 * d_model
    flops = (n_layers * (attn + active_mem + select)).astype(np.int64)
    params_mem = np.where(dense, 8 * d_model * d_model, 2 * d_model * block * n_blocks)
    params_total = (n_layers * (4 * d_model * d_model + params_mem) + 2048 * d_model).astype(np.int64)
    params_active = (n_layers * (4 * d_model * d_model + active_mem / 2) + 2048 * d_model).astype(np.int64)
    quality = {"dense": 0.0, "switch": -0.08, "pkm": -0.05, "avgk": -0.1, "hash": 0.02}
    log_ppl = (
        4.6
        - 0.18 * np.log(params_active / 1e5)
        - 0.05 * np.log(params_total / params_active)
        + np.array([quality[x] for x in kind])
        + 0.04 * np.abs(np.log(lr / 3e-3))
        + rng.normal(0, 0.03, n_trials)
    )
    val_loss = log_ppl
    tokens_per_s = 4e9 / flops * rng.uniform(0.8, 1.2, n_trials)
    start = dt.datetime(2025, 1, 1) + pd.to_timedelta(np.arange(n_trials) * 60, unit="s")
    train_seconds = 200_000 / tokens_per_s
    return pd.DataFrame(
        {
            "study_name": study_name,
            "trial_number": np.arange(n_trials, dtype=np.int64),
            "memory.kind": kind,
            "memory.block_size": np.where(dense, np.nan, block),
            "memory.k": np.where(dense, np.nan, k),
            "memory.n_blocks": np.where(dense, np.nan, n_blocks),
            "model.d_model": d_model,
            "model.n_layers": n_layers,
            "train.lr": lr,
            "val_loss": val_loss,
            "val_ppl": np.exp(val_loss),
            "flops_per_token": flops,
            "params_total": params_total,
            "params_active": params_active,
            "tokens_per_s": tokens_per_s,
            "train_seconds": train_seconds,
            "started_at": start,
            "finished_at": start + pd.to_timedelta(train_seconds, unit="s"),
        }
    )


SAMPLED = [
    "memory.kind",
    "memory.block_size",
    "memory.k",
    "memory.n_blocks",
    "model.d_model",
    "model.n_layers",
    "train.lr",
]
FIXED = {
    "data.corpus": "kjv",
    "data.tokenizer": "bpe",
    "model.seq_len": 256,
    "train.tokens": 200_000,
    "train.seed": 0,
}


def write_synthetic_store(
    path: Path, n_trials: int, studies: tuple[str, ...] = ("synth",), seed: int = 0
) -> Path:
    """A store with ``n_trials`` complete trials per study (long-form params, curves, routing, provenance)."""
    store = Store.open(path)
    now = dt.datetime.now()
    space = {"name": "synthetic", "params": {name: "sampled" for name in SAMPLED}}
    objectives = [
        {"name": "val_ppl", "direction": "minimize"},
        {"name": "flops_per_token", "direction": "minimize"},
    ]
    with store.write() as con:
        for i, study in enumerate(studies):
            wide = synthetic_trials(n_trials, study, seed + i)
            _insert(con, study, wide, space, objectives, now)
    return path


def _insert(
    con: Any, study: str, wide: pd.DataFrame, space: dict, objectives: list, now: dt.datetime
) -> None:
    n = len(wide)
    con.execute(
        "INSERT INTO studies (study_name, space_name, space_json, objectives_json, n_trials, created_at, "
        "updated_at) VALUES ($s, 'synthetic', $space::JSON, $obj::JSON, $n, $now, $now)",
        {"s": study, "space": json.dumps(space), "obj": json.dumps(objectives), "n": n, "now": now},
    )
    trials = pd.DataFrame(
        {
            "study_name": study,
            "trial_number": wide["trial_number"],
            "status": "complete",
            "optuna_state": "COMPLETE",
            "config_json": None,
            "config_hash": [f"h{i}" for i in range(n)],
            "memory_kind": wide["memory.kind"],
            "val_ppl": wide["val_ppl"],
            "val_loss": wide["val_loss"],
            "flops_per_token": wide["flops_per_token"],
            "flops_per_token_fvcore": wide["flops_per_token"],
            "params_total": wide["params_total"],
            "params_active": wide["params_active"],
            "tokens_per_s": wide["tokens_per_s"],
            "peak_mem_bytes": (wide["params_total"] * 16).astype(np.int64),
            "train_seconds": wide["train_seconds"],
            "tokens_trained": 200_000,
            "steps": 100,
            "metrics_json": None,
            "objective_values_json": [
                json.dumps({"val_ppl": p, "flops_per_token": float(f)})
                for p, f in zip(wide["val_ppl"], wide["flops_per_token"], strict=True)
            ],
            "error": None,
            "started_at": wide["started_at"],
            "finished_at": wide["finished_at"],
            "ingested_at": now,
        }
    )
    configs = _configs(wide)
    trials["config_json"] = [json.dumps(c) for c in configs]
    con.register("new_trials", trials)
    con.execute("INSERT INTO trials BY NAME SELECT * FROM new_trials")  # later columns stay NULL
    con.unregister("new_trials")

    long = _long_params(wide)
    con.register("new_params", long)
    con.execute(
        "INSERT INTO params SELECT study_name, trial_number, name, value_json::JSON, value_num, value_str, sampled "
        "FROM new_params"
    )
    con.unregister("new_params")

    steps = np.array([20, 40, 60, 80, 100])
    curves = []
    for metric, scale in (("train_loss", 1.15), ("val_loss", 1.1)):
        decay = scale ** (1 - steps / 100)
        values = np.outer(wide["val_loss"].to_numpy(), decay)
        curves.append(
            pd.DataFrame(
                {
                    "study_name": study,
                    "trial_number": np.repeat(wide["trial_number"].to_numpy(), len(steps)),
                    "step": np.tile(steps, n),
                    "metric": metric,
                    "value": values.ravel(),
                }
            )
        )
    con.register("new_curves", pd.concat(curves, ignore_index=True))
    con.execute("INSERT INTO curves SELECT * FROM new_curves")
    con.unregister("new_curves")

    sparse = wide[wide["memory.kind"] != "dense"]
    rng = np.random.default_rng(len(sparse))
    layers = []
    for layer in range(2):
        blocks = 8
        ent_max = np.log(blocks)
        layers.append(
            pd.DataFrame(
                {
                    "study_name": study,
                    "trial_number": sparse["trial_number"].to_numpy(),
                    "layer": layer,
                    "n_blocks": blocks,
                    "load_entropy": ent_max * rng.uniform(0.6, 1.0, len(sparse)),
                    "load_entropy_max": ent_max,
                    "dropped_frac": rng.uniform(0, 0.05, len(sparse)),
                    "unused_frac": rng.uniform(0, 0.2, len(sparse)),
                }
            )
        )
    con.register("new_routing", pd.concat(layers, ignore_index=True))
    con.execute("INSERT INTO routing SELECT * FROM new_routing")
    con.unregister("new_routing")
    head = sparse["trial_number"].to_numpy()[:50]
    load = pd.DataFrame(
        {
            "study_name": study,
            "trial_number": np.repeat(head, 16),
            "layer": np.tile(np.repeat([0, 1], 8), len(head)),
            "block": np.tile(np.arange(8), 2 * len(head)),
            "load": np.tile(np.linspace(0.2, 0.05, 8), 2 * len(head)),
        }
    )
    con.register("new_load", load)
    con.execute("INSERT INTO routing_load SELECT * FROM new_load")
    con.unregister("new_load")
    con.execute(
        "INSERT INTO provenance SELECT $s, trial_number, 'synthetic', false, '{\"torch\":\"2.13.0\"}'::JSON, "
        "'cpu', 'synthetic cpu', 0, '3.11', '2.13.0', 'synth' FROM trials WHERE study_name = $s",
        {"s": study},
    )


def _configs(wide: pd.DataFrame) -> list[dict[str, dict[str, Any]]]:
    rows = wide[SAMPLED].to_dict("records")
    configs = []
    for row in rows:
        config: dict[str, dict[str, Any]] = {}
        for name, value in {**FIXED, **row}.items():
            if isinstance(value, float) and np.isnan(value):
                continue
            section, field = name.split(".", 1)
            config.setdefault(section, {})[field] = _plain(value)
        configs.append(config)
    return configs


def _long_params(wide: pd.DataFrame) -> pd.DataFrame:
    parts = []
    for name in SAMPLED + list(FIXED):
        values = wide[name] if name in wide else pd.Series([FIXED[name]] * len(wide))
        present = values.notna().to_numpy()
        vals = values[present].tolist()
        parts.append(
            pd.DataFrame(
                {
                    "study_name": wide["study_name"].to_numpy()[present],
                    "trial_number": wide["trial_number"].to_numpy()[present],
                    "name": name,
                    "value_json": [json.dumps(_plain(v)) for v in vals],
                    "value_num": [float(v) if not isinstance(v, str) else None for v in vals],
                    "value_str": [v if isinstance(v, str) else None for v in vals],
                    "sampled": name in SAMPLED,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def _plain(value: Any) -> Any:
    """numpy scalars to Python; integral floats (block sizes stored as float for NaN) to int."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


# Debian's Chromium, launched headless by Playwright (never a downloaded browser). The
# background-networking flags keep it from dialling out on a machine with no network.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"`workbench app` exited with {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"`workbench app` did not answer at {url} within {timeout_s:g}s")


@contextmanager
def serve_app(store: Path) -> Iterator[str]:
    """`workbench app` on ``store`` at a free port of 127.0.0.1; yields its URL once healthy."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench", "app", "--store", str(store), "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()  # workbench app passes SIGTERM on to streamlit
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
