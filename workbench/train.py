"""Train one model for its budget and measure it.

AdamW with linear warm-up and cosine decay; periodic evaluation on a fixed held-out token
set; stops at the token budget or the time budget, whichever comes first. Deterministic
under ``train.seed`` on a given device. The loss is checked for non-finite values at every
log point (not every step, so the GPU is not synchronised each step).
"""

from __future__ import annotations

import math
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from workbench.config import TrialConfig
from workbench.errors import NonFiniteLossError
from workbench.model import GPT

StepCallback = Callable[[int, int, float], None]
EvalCallback = Callable[[int, float], None]


@dataclass
class TrainResult:
    val_loss: float
    val_ppl: float
    steps: int
    tokens_trained: int
    train_seconds: float
    tokens_per_s: float
    peak_mem_bytes: int
    curve: list[tuple[int, str, float]] = field(default_factory=list)
    routing: list[dict[str, Any]] = field(default_factory=list)
    stopped_by: str = "tokens"


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    except KeyError:
        from workbench.errors import ConfigError

        raise ConfigError(f"train.dtype: {name!r} is not auto, float32, bfloat16 or float16") from None


def lr_at(step: int, total: int, warmup: int, peak: float, min_ratio: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model: torch.nn.Module, cfg: TrialConfig, device: torch.device) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.train.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups,
        lr=cfg.train.lr,
        betas=(cfg.train.beta1, cfg.train.beta2),
        fused=device.type == "cuda",
    )


@torch.no_grad()
def evaluate(model: GPT, batches: list[tuple[torch.Tensor, torch.Tensor]], dtype: torch.dtype) -> float:
    """Mean cross-entropy per token over the fixed evaluation batches."""
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=batches[0][0].device)
    count = 0
    for x, y in batches:
        with torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32):
            logits, _ = model(x)
        total += F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum")
        count += y.numel()
    model.train(was_training)
    return float(total) / count


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    # CPU: the process's peak resident set (kilobytes on Linux, bytes on macOS).
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def train(
    cfg: TrialConfig,
    model: GPT,
    train_tokens: np.ndarray,
    eval_batches: list[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    on_step: StepCallback | None = None,
    on_eval: EvalCallback | None = None,
) -> TrainResult:
    """Train ``model`` in place for the budget of ``cfg.train`` and evaluate it."""
    from workbench.data import random_batch

    t = cfg.train
    dtype = resolve_dtype(t.dtype, device)
    tokens_per_step = t.batch_size * cfg.model.seq_len
    total_steps = max(1, t.tokens // tokens_per_step)
    warmup = max(1, int(t.warmup_frac * total_steps))
    eval_every = t.eval_every or max(1, total_steps // 5)
    log_every = max(1, total_steps // 50)
    generator = torch.Generator().manual_seed(t.seed)
    optimizer = make_optimizer(model, cfg, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    curve: list[tuple[int, str, float]] = []
    train_seconds = 0.0
    step = 0
    stopped_by = "tokens"
    model.train()
    running = torch.zeros((), device=device)
    for step in range(total_steps):
        started = time.perf_counter()
        lr = lr_at(step, total_steps, warmup, t.lr, t.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = random_batch(train_tokens, t.batch_size, cfg.model.seq_len, generator, device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            logits, aux = model(x)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
        (loss + aux).backward()
        if t.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        running += loss.detach()
        if (step + 1) % log_every == 0 or step + 1 == total_steps:
            mean_loss = float(running) / (
                log_every if (step + 1) % log_every == 0 else (step + 1) % log_every
            )
            running.zero_()
            if not math.isfinite(mean_loss):
                raise NonFiniteLossError(f"training loss became {mean_loss} at step {step + 1} (lr {lr:.2e})")
            curve += [(step + 1, "train_loss", mean_loss), (step + 1, "lr", lr)]
            if on_step:
                on_step(step + 1, total_steps, mean_loss)
        if device.type == "cuda" and ((step + 1) % log_every == 0):
            torch.cuda.synchronize(device)
        train_seconds += time.perf_counter() - started
        if (step + 1) % eval_every == 0 and step + 1 < total_steps:
            val_loss = evaluate(model, eval_batches, dtype)
            if not math.isfinite(val_loss):
                raise NonFiniteLossError(f"validation loss became {val_loss} at step {step + 1}")
            curve.append((step + 1, "val_loss", val_loss))
            if on_eval:
                on_eval(step + 1, val_loss)
        if t.seconds and train_seconds >= t.seconds:
            stopped_by = "seconds"
            break
    if device.type == "cuda":
        torch.cuda.synchronize(device)

    steps = step + 1
    model.reset_routing()
    val_loss = evaluate(model, eval_batches, dtype)
    if not math.isfinite(val_loss):
        raise NonFiniteLossError(f"final validation loss is {val_loss}")
    curve.append((steps, "val_loss", val_loss))
    tokens_trained = steps * tokens_per_step
    return TrainResult(
        val_loss=val_loss,
        val_ppl=math.exp(min(val_loss, 50.0)),
        steps=steps,
        tokens_trained=tokens_trained,
        train_seconds=train_seconds,
        tokens_per_s=tokens_trained / max(train_seconds, 1e-9),
        peak_mem_bytes=peak_memory_bytes(device),
        curve=curve,
        routing=model.routing_stats(),
        stopped_by=stopped_by,
    )
