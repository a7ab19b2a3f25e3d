"""(b) Dense GPT model FLOPs utilisation through the workbench's own trainer (workbench/train.py).

MFU = tokens/s x 3 x forward FLOPs per token / peak, with the forward FLOPs from
:func:`workbench.model.model_cost` (2 per multiply-add; attention's two T x T products over
the full context, as nanoGPT's ``estimate_mfu`` counts them; embeddings, norms and
element-wise work not counted) and backward = 2 x forward. Two rates, both including the
optimizer step, gradient clipping and the loss reads, evaluation excluded:

* steady (the headline, as nanoGPT reports MFU): the steps replayed from the CUDA graph, from
  a few steps after the capture to the end, timed between the trainer's per-step loss reads;
* whole run: the trainer's own tokens/s (every step after the first, so the eager warm-up
  steps and the graph's capture count too): what a trial of this length gets.
"""

from __future__ import annotations

import functools
import gc
from typing import Any

import numpy as np
import torch

from bench.common import peak_flops
from workbench.config import ModelConfig, TrainConfig, TrialConfig
from workbench.data import DeviceTokens, eval_batches
from workbench.memory.dense import DenseConfig
from workbench.model import GPT, model_cost
from workbench.train import train

GPT2_SMALL = {"d_model": 768, "n_layers": 12, "n_heads": 12, "seq_len": 1024, "vocab": 50304}
SEARCH_SCALE = {"d_model": 384, "n_layers": 6, "n_heads": 6, "seq_len": 256, "vocab": 2048}


def dense_gpt(shape: dict[str, int]) -> ModelConfig:
    """The dense GPT of ``shape`` (one of the shapes above; its vocab is passed to GPT apart)."""
    return ModelConfig(
        seq_len=shape["seq_len"],
        d_model=shape["d_model"],
        n_layers=shape["n_layers"],
        n_heads=shape["n_heads"],
        memory=DenseConfig(),
    )


def measure(
    shape: dict[str, int],
    batch_size: int,
    steps: int,
    compile_: bool,
    graphs: bool = True,
    master_weights: bool = True,
) -> dict[str, Any]:
    """One training run through :func:`workbench.train.train`; ``graphs`` False trains eagerly,
    ``master_weights`` False keeps the matmul weights float32 (autocast casts them every step)."""
    import os
    import time

    from workbench.train import WARMUP_STEPS

    dev = torch.device("cuda")
    model_cfg = dense_gpt(shape)
    tokens_per_step = batch_size * shape["seq_len"]
    cfg = TrialConfig(
        model=model_cfg,
        train=TrainConfig(
            tokens=steps * tokens_per_step,
            batch_size=batch_size,
            eval_tokens=shape["seq_len"] * 2,
            eval_every=10**9,
            compile=compile_,
            master_weights=master_weights,
            lr=6e-4,
        ),
    )
    rng = np.random.default_rng(0)
    data = rng.integers(0, shape["vocab"], 4_000_000).astype(np.uint16)
    val = eval_batches(data[:100_000], shape["seq_len"], cfg.train.eval_tokens, batch_size, dev)
    torch.manual_seed(0)
    model = GPT(model_cfg, shape["vocab"]).to(dev)
    os.environ["WORKBENCH_CUDA_GRAPHS"] = "1" if graphs else "0"
    # The trainer calls back right after it reads the mean loss (a host sync), so each stamp marks
    # the end of that step's device work.
    stamps: list[tuple[int, float]] = []
    try:
        result = train(
            cfg,
            model,
            DeviceTokens(data, dev),
            val,
            dev,
            on_step=lambda step, _total, _loss: stamps.append((step, time.perf_counter())),
        )
    finally:
        os.environ.pop("WORKBENCH_CUDA_GRAPHS")
    cost = model_cost(model_cfg, shape["vocab"])
    peak, peak_src = peak_flops(dev)
    # Past the warm-up, the capture and two replays (compiled or eager, graphed or not).
    steady = [(s, t) for s, t in stamps if s >= WARMUP_STEPS + 3]
    (s0, t0), (s1, t1) = steady[0], steady[-1]
    steady_tokens_per_s = (s1 - s0) * tokens_per_step / (t1 - t0)
    achieved = steady_tokens_per_s * 3 * cost.flops_per_token
    achieved_run = result.tokens_per_s * 3 * cost.flops_per_token
    del model
    gc.collect()
    torch.cuda.empty_cache()
    return {
        "shape": shape,
        "batch_size": batch_size,
        "compiled": compile_,
        "cuda_graph": result.cuda_graph,
        "master_weights": result.master_weights,
        "eager_reason": result.eager_reason,
        "params": cost.params_total,
        "flops_per_token": cost.flops_per_token,
        "tokens_per_s": steady_tokens_per_s,
        "steady_steps": s1 - s0,
        "tflops": achieved / 1e12,
        "mfu": achieved / peak,
        "tokens_per_s_run": result.tokens_per_s,
        "mfu_run": achieved_run / peak,
        "peak": peak,
        "peak_source": peak_src,
        "compile_s": result.compile_seconds,
        "peak_mem_gb": result.peak_mem_bytes / 2**30,
        "steps": result.steps,
    }


def profile_step(shape: dict[str, int], batch_size: int, compile_: bool, steps: int = 3) -> str:
    """The CUDA kernels (by total time) of a few eager-launched training steps of the trainer."""
    from torch.profiler import ProfilerActivity, profile

    from workbench.train import TrainStep, compiled_loss, make_optimizer, model_loss

    dev = torch.device("cuda")
    model_cfg = dense_gpt(shape)
    torch.manual_seed(0)
    model = GPT(model_cfg, shape["vocab"]).to(dev)
    loss_fn = compiled_loss(model) if compile_ else functools.partial(model_loss, model)
    optimizer = make_optimizer(model, TrialConfig(model=model_cfg), dev)
    step = TrainStep(model, loss_fn, optimizer, torch.bfloat16, 1.0, graphs=False)
    x = torch.randint(0, shape["vocab"], (batch_size, shape["seq_len"]), device=dev)
    y = torch.randint(0, shape["vocab"], (batch_size, shape["seq_len"]), device=dev)
    for _ in range(3):
        step(x, y)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step(x, y)
        torch.cuda.synchronize()
    table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=40, max_name_column_width=90)
    if compile_:
        torch._dynamo.reset()
    torch.cuda.empty_cache()
    return str(table)
