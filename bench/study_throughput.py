"""(c, d) Study throughput: completed trials per GPU-hour, GPU busy fraction, peak memory per trial.

A standard small space of ~10M-parameter GPTs (6 layers, d 320 or 384, seq 256, the en-mix corpus
with its 2048-token BPE, so 20M-token trials stay under one epoch) whose FFN slots hold a dense FFN, a 4-expert Switch MoE or a 4-expert
hash layer of equal total parameters, run through :func:`workbench.study.run_study` exactly
as ``workbench run`` runs it (journal storage, DuckDB ingest after every trial), with 1 or
several workers on the one GPU. The GPU busy fraction is nvidia-smi's ``utilization.gpu``
(the share of each sample period in which a kernel was running) sampled every 200 ms over the
whole run, trial set-up and storage included.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from workbench.space import Budget, Categorical, Derived, Float, Objective, Space

TOKENS_20M = 20_000_000


def small_space(tokens: int, compile_: bool) -> Space:
    return Space(
        "bench-small",
        {
            "data.corpus": "en-mix",
            "data.tokenizer": "bpe",
            "data.vocab_size": 2048,
            "model.seq_len": 256,
            "model.n_layers": 6,
            "model.d_model": Categorical([320, 384]),
            "model.n_heads": Derived("model.d_model // 64"),
            "memory.kind": Categorical(["dense", "switch", "hash"]),
            "memory.d_ff": Derived("4 * model.d_model", when={"memory.kind": "dense"}),
            "memory.n_experts": Categorical([4], when={"memory.kind": ["switch", "hash"]}),
            # Four experts of width d: the dense FFN's parameters, a quarter of its active FLOPs.
            "memory.expert_width": Derived("model.d_model", when={"memory.kind": ["switch", "hash"]}),
            "train.batch_size": 64,
            "train.lr": Float(1e-3, 3e-3, log=True, grid=[2e-3]),
            "train.eval_tokens": 65_536,
            "train.compile": compile_,
        },
        objectives=[Objective("val_ppl", "minimize"), Objective("flops_per_token", "minimize")],
        budget=Budget(tokens=tokens),
        trials=8,
    )


class Utilisation:
    """Samples nvidia-smi's utilization.gpu every ``period_ms`` in the background."""

    def __init__(self, period_ms: int = 200) -> None:
        self.samples: list[float] = []
        self.period_ms = period_ms
        self.proc: subprocess.Popen[str] | None = None
        self.thread: threading.Thread | None = None

    def __enter__(self) -> Utilisation:
        if shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(
                [
                    "nvidia-smi",
                    "--query-gpu=utilization.gpu",
                    "--format=csv,noheader,nounits",
                    f"-lms={self.period_ms}",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.samples.append(float(line.strip().split(",")[0]))
            except ValueError:
                continue

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=5)

    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) / 100 if self.samples else None


def run(
    tokens: int, trials: int, workers: int, compile_: bool, timeout: float | None = None, device: str = "cuda"
) -> dict[str, Any]:
    """One study of ``trials`` trials; per-trial metrics and the study's rates."""
    from workbench.config import DataConfig
    from workbench.data import prepare_tokens
    from workbench.store import Store
    from workbench.study import StudyOptions, apply_overrides, run_study

    # The corpus and its BPE are prepared once per machine (cached), not per study: outside the clock.
    prepare_tokens(DataConfig(corpus="en-mix", tokenizer="bpe", vocab_size=2048))
    tmp = Path(tempfile.mkdtemp(prefix="wb-bench-"))
    space = apply_overrides(small_space(tokens, compile_), {})
    opts = StudyOptions(
        trials=trials,
        store=str(tmp / "wb.duckdb"),
        device=device,
        sampler="random",
        progress=False,
        workers=workers,
        timeout=timeout,
    )
    started = time.monotonic()
    with Utilisation() as util:
        outcome = run_study(space, opts)
    wall = time.monotonic() - started
    frame = Store.open(opts.store, read_only=True).sql(
        "SELECT trial_number, status, memory_kind, params_total, val_ppl, tokens_per_s, train_seconds, "
        "peak_mem_bytes FROM trials ORDER BY trial_number"
    )
    done = frame[frame.status == "complete"]
    per_trial = frame.to_dict(orient="records")
    return {
        "tokens": tokens,
        "trials": trials,
        "workers": workers,
        "compiled": compile_,
        "ran": outcome.ran,
        "completed": len(done),
        "wall_s": wall,
        "trials_per_hour": len(done) / wall * 3600 if wall else None,
        "gpu_busy": util.mean(),
        "tokens_per_s_mean": float(done.tokens_per_s.mean()) if len(done) else None,
        "train_s_mean": float(done.train_seconds.mean()) if len(done) else None,
        "params_mean": float(done.params_total.mean()) if len(done) else None,
        "peak_mem_gb_max": float(done.peak_mem_bytes.max()) / 2**30 if len(done) else None,
        "per_trial": per_trial,
    }


def extrapolate(result: dict[str, Any], tokens: int = TOKENS_20M) -> float | None:
    """Trials per GPU-hour at ``tokens`` per trial from a shorter run: the per-trial overhead
    (wall per trial minus training time) is kept, the training time scaled by the budget.

    With W workers sharing the GPU the measured aggregate rate is scaled the same way.
    """
    if not result["completed"] or not result["train_s_mean"]:
        return None
    wall_per_trial = result["wall_s"] * result["workers"] / result["completed"]
    overhead = max(0.0, wall_per_trial - result["train_s_mean"])
    scaled = overhead + result["train_s_mean"] * tokens / result["tokens"]
    return 3600 * result["workers"] / scaled
