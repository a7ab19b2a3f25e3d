"""Train one model for its budget and measure it.

AdamW with linear warm-up and cosine decay; periodic evaluation on a fixed held-out token
set; stops at the token budget or the time budget, whichever comes first. Deterministic
under ``train.seed`` on a given device.

The GPU path keeps the device busy: the token array lives in device memory
(:class:`~workbench.data.DeviceTokens`, once per worker) and every window start of the run is
drawn up front from the same CPU generator as the CPU path (so both read the same windows) and
copied once, so a step launches work without waiting for the host; bf16 autocast (the float32
matmuls it leaves, such as routers, in TF32), matmul weights held in bf16 with their float32
masters in a fused AdamW (:mod:`workbench.train.master`), SDPA attention; the whole step
(forward, backward, clipping, AdamW) captured once as a CUDA graph and replayed, compiled or
not (:class:`TrainStep`; ``WORKBENCH_CUDA_GRAPHS=0`` turns it off); ``train.compile`` runs the
training forward and backward through ``torch.compile`` (static shapes; compiled kernels are
cached on disk under the workbench cache, so a later trial of the same shapes, in this worker
or the next, skips code generation). The loss is checked for non-finite values at every log
point (not every step) and evaluation sums its loss on the device with one read at the end.
"""

from __future__ import annotations

import functools
import math
import os
import resource
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from workbench.config import TrialConfig
from workbench.data import Batches
from workbench.errors import NonFiniteLossError
from workbench.model import GPT
from workbench.train.master import MasterAdamW, low_precision_parameters
from workbench.train.sparse_adamw import SparseRowAdamW
from workbench.train.syncs import count_host_syncs

if TYPE_CHECKING:
    from workbench.data import DeviceTokens

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
    compile_seconds: float = 0.0
    cuda_graph: bool = False
    eager_reason: str = ""
    master_weights: bool = False


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


def _hooked_parameters(model: torch.nn.Module, hook_name: str) -> list[torch.nn.Parameter]:
    """The trainable parameters that the model's modules list through their ``hook_name()``."""
    out: dict[int, torch.nn.Parameter] = {}
    for module in model.modules():
        hook = getattr(module, hook_name, None)
        if callable(hook):
            out.update((id(p), p) for p in hook() if p.requires_grad)
    return list(out.values())


def memory_value_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The value tables of the model's memory layers (each layer's ``memory_value_parameters()``)."""
    return _hooked_parameters(model, "memory_value_parameters")


def mixing_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Scalars kept in tensors of two or more dimensions (AltUp's ``mixing_parameters()``): not
    matrices, so the matrices' weight decay does not apply to them."""
    return _hooked_parameters(model, "mixing_parameters")


def make_optimizer(
    model: torch.nn.Module, cfg: TrialConfig, device: torch.device, capturable: bool = False
) -> torch.optim.Optimizer:
    """AdamW over three groups: weight decay on matrices, none on vectors and scalars
    (:func:`mixing_parameters`, unless ``train.altup_weight_decay``), and the memory value
    tables (:func:`memory_value_parameters`) without weight decay at ``lr`` times
    ``train.memory_value_lr_scale`` (the group's ``lr_scale``, which :meth:`TrainStep.set_lr`
    applies to the schedule). An empty group is left out.

    On CUDA under bf16 with ``train.master_weights``: a :class:`~workbench.train.master.MasterAdamW`
    that holds the matmul weights and the value tables in bf16 (converting them in place) and
    clips gradients itself. With ``train.sparse_values`` the value group is updated lazily, row
    by row: by MasterAdamW's kernel under master weights, else by
    :class:`~workbench.train.sparse_adamw.SparseRowAdamW`. Neither reads the device from the
    host, so the step is captured in a CUDA graph either way.
    """
    from workbench.errors import ConfigError

    t = cfg.train
    if not t.memory_value_lr_scale > 0:
        raise ConfigError(f"train.memory_value_lr_scale: must be > 0, got {t.memory_value_lr_scale}")
    values = memory_value_parameters(model)
    is_value = {id(p) for p in values}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in is_value]
    is_scalar = set() if t.altup_weight_decay else {id(p) for p in mixing_parameters(model)}
    groups: list[dict[str, Any]] = [
        {
            "params": [p for p in rest if p.dim() >= 2 and id(p) not in is_scalar],
            "weight_decay": t.weight_decay,
            "lr_scale": 1.0,
        },
        {
            "params": [p for p in rest if p.dim() < 2 or id(p) in is_scalar],
            "weight_decay": 0.0,
            "lr_scale": 1.0,
        },
        {"params": values, "weight_decay": 0.0, "lr_scale": t.memory_value_lr_scale},
    ]
    groups = [{**g, "lr": t.lr * g["lr_scale"]} for g in groups if g["params"]]
    betas = (t.beta1, t.beta2)
    lazy = values if t.sparse_values else []
    if uses_master_weights(cfg, device):
        low = low_precision_parameters(model)
        if low:
            return MasterAdamW(groups, low, lr=t.lr, betas=betas, max_grad_norm=t.grad_clip, lazy=lazy)
    if lazy:
        *dense, value_group = groups  # the value group is last and not empty
        return SparseRowAdamW(
            [value_group],
            _adamw(dense, t.lr, betas, device, capturable),
            lr=t.lr,
            betas=betas,
            capturable=capturable or device.type == "cuda",
        )
    return _adamw(groups, t.lr, betas, device, capturable)


def _adamw(
    groups: list[dict[str, Any]],
    lr: float,
    betas: tuple[float, float],
    device: torch.device,
    capturable: bool,
) -> torch.optim.AdamW:
    """torch's AdamW over ``groups`` (each with its scaled ``lr``)."""
    if capturable:
        # CUDA-graph capture needs the step counts on the device and the learning rate as a
        # tensor: one per group, so that each keeps its own scale.
        groups = [{**g, "lr": torch.tensor(g["lr"], device=device)} for g in groups]
        return torch.optim.AdamW(
            groups, lr=torch.tensor(lr, device=device), betas=betas, fused=True, capturable=True
        )
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=device.type == "cuda")


def all_param_groups(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """The optimizer's param groups and those of the optimizer it delegates to (``rest``)."""
    inner = getattr(optimizer, "rest", None)
    return list(optimizer.param_groups) + (all_param_groups(inner) if inner is not None else [])


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate to ``lr`` times its ``lr_scale`` (1 if absent).

    A tensor rate (CUDA-graph capture, master weights) is filled in place; groups may share one
    tensor only where they share the scale.
    """
    for group in all_param_groups(optimizer):
        value = lr * group.get("lr_scale", 1.0)
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(value)
        else:
            group["lr"] = value


def uses_master_weights(cfg: TrialConfig, device: torch.device) -> bool:
    """bf16 matmul weights with float32 masters: on CUDA, under bf16, unless turned off."""
    return (
        cfg.train.master_weights
        and device.type == "cuda"
        and resolve_dtype(cfg.train.dtype, device) == torch.bfloat16
    )


@torch.no_grad()
def evaluate(
    model: GPT,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    dtype: torch.dtype,
    training_routing: bool = False,
) -> float:
    """Mean cross-entropy per token over the fixed evaluation batches (one host read at the end).

    ``training_routing`` scores with the layers in training mode, so a BASE layer assigns each
    batch as it does in training (it sees the whole batch: a diagnostic, bench/base_mismatch.py)."""
    was_training = model.training
    model.train(training_routing)
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


def compile_cache_dir() -> str:
    """Where inductor keeps compiled kernels: ``$TORCHINDUCTOR_CACHE_DIR``, else the workbench cache."""
    from workbench.config import DataConfig
    from workbench.data import cache_root

    return os.environ.get("TORCHINDUCTOR_CACHE_DIR") or str(cache_root(DataConfig()) / "inductor")


LossFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def model_loss(model: GPT, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean next-token cross-entropy, auxiliary loss) of ``model`` on a batch."""
    logits, aux = model(x)
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1)), aux


def compiled_loss(model: GPT) -> LossFn:
    """:func:`model_loss` through ``torch.compile`` (forward and loss in one graph, so the
    float32 logits and the softmax are fused, never materialised), static shapes, on-disk cache.

    The caches (inductor's FX graph cache, AOTAutograd's cache) are keyed by the traced graph,
    so trials of the same shapes reuse the kernels; dynamo's in-memory cache is reset per
    trial by :func:`train` (designs differ from trial to trial, and a long-lived worker would
    otherwise hit dynamo's recompile limit and fall back to eager).
    """
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", compile_cache_dir())
    import torch._inductor.config as inductor_config

    inductor_config.fx_graph_cache = True
    return torch.compile(functools.partial(model_loss, model), dynamic=False)


WARMUP_STEPS = 3  # eager steps before a CUDA graph is captured (lazy initialisation, compilation)


def cuda_graphs_enabled() -> bool:
    """Whole-step CUDA graphs on GPUs unless ``WORKBENCH_CUDA_GRAPHS=0``."""
    return os.environ.get("WORKBENCH_CUDA_GRAPHS", "1") != "0"


@functools.cache
def side_stream(device: torch.device) -> torch.cuda.Stream:
    """One side stream per device for warm-ups before a capture, reused by every trial.

    A new stream per warm-up made cuBLAS allocate a new workspace for it (64 MiB on an H100,
    kept for the life of the process): a long-lived worker's allocated memory and each trial's
    reported peak grew by 192 MiB per trial until torch's pool of 32 streams was used up.
    """
    return torch.cuda.Stream(device)


class TrainStep:
    """One optimisation step: forward under autocast, loss, backward, clipping, AdamW.

    On a GPU the whole step is captured once as a CUDA graph and replayed, so a step costs one
    launch instead of hundreds (small models are otherwise limited by the host launching
    kernels, not by the GPU). The first :data:`WARMUP_STEPS` steps run eagerly on a side stream
    (lazy initialisation, compilation); the second is watched for host synchronisations, and a
    model that has any (a ``loop`` dispatch) keeps running eagerly, as does one whose capture
    fails. Replays run the captured kernels on the step's batch, copied
    into the graph's input buffers, with the learning rate read from a device tensor.
    """

    def __init__(
        self,
        model: GPT,
        loss_fn: LossFn,
        optimizer: torch.optim.Optimizer,
        dtype: torch.dtype,
        grad_clip: float,
        graphs: bool,
    ) -> None:
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.dtype, self.grad_clip, self.graphs = dtype, grad_clip, graphs
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.captured = False
        self.inputs: tuple[torch.Tensor, torch.Tensor] | None = None
        self.loss: torch.Tensor | None = None
        self.why_eager = "" if graphs else "off"

    def close(self) -> None:
        """Drop the captured graph (its private memory pool goes back to the allocator)."""
        self.graph = self.inputs = self.loss = None

    def set_lr(self, lr: float) -> None:
        """The schedule's rate ``lr``, scaled per group (:func:`set_lr`)."""
        set_lr(self.optimizer, lr)

    def _body(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # No autocast weight cache: a captured graph must not keep it, and the same autocast
        # state in every step spares a compiled loss a recompilation at capture.
        with torch.autocast(
            x.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32, cache_enabled=False
        ):
            loss, aux = self.loss_fn(x, y)
        (loss + aux).backward()
        if self.grad_clip > 0 and not getattr(self.optimizer, "clips_gradients", False):
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        return loss.detach()

    def eager(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = self._body(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        return loss

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The step on batch ``(x, y)``; returns its (detached) loss."""
        self.calls += 1
        if not self.graphs:
            return self.eager(x, y)
        if self.inputs is None:
            # One pair of input buffers for warm-up, capture and replay: a compiled loss sees the
            # same tensors in every call. (x and y are views of one window; fresh copies at
            # capture would fail dynamo's aliasing guard and recompile inside the capture.)
            self.inputs = (x.clone(), y.clone())
        sx, sy = self.inputs
        sx.copy_(x)
        sy.copy_(y)
        if self.graph is not None and self.loss is not None:
            self.graph.replay()
            return self.loss
        if self.calls <= WARMUP_STEPS:
            return self._warmup(sx, sy)
        return self._capture(sx, sy)

    def _warmup(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        side = side_stream(x.device)
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            if self.calls == 2:  # after the first step's lazy work (and compilation)
                loss, syncs = count_host_syncs(lambda: self.eager(x, y))
                if syncs:
                    self.graphs, self.why_eager = False, f"{syncs} host synchronisations per step"
            else:
                loss = self.eager(x, y)
        torch.cuda.current_stream().wait_stream(side)
        return loss

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                loss = self._body(x, y)
        except Exception as exc:  # a capture-unsafe op: this model trains eagerly
            torch.cuda.synchronize()
            self.graphs, self.why_eager = False, f"capture failed: {type(exc).__name__}: {exc}"[:300]
            self.optimizer.zero_grad(set_to_none=True)
            return self.eager(x, y)
        self.graph, self.loss, self.captured = graph, loss, True
        graph.replay()
        return loss


def train(
    cfg: TrialConfig,
    model: GPT,
    train_tokens: np.ndarray | DeviceTokens,
    eval_batches: list[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    on_step: StepCallback | None = None,
    on_eval: EvalCallback | None = None,
    eval_at: Collection[int] = (),
) -> TrainResult:
    """Train ``model`` in place for the budget of ``cfg.train`` and evaluate it; ``eval_at``
    adds evaluations after those steps (early stopping's rungs) to every ``eval_every``."""
    t = cfg.train
    dtype = resolve_dtype(t.dtype, device)
    tokens_per_step = t.batch_size * cfg.model.seq_len
    total_steps = max(1, t.tokens // tokens_per_step)
    warmup = max(1, int(t.warmup_frac * total_steps))
    eval_every = t.eval_every or max(1, total_steps // 5)
    log_every = max(1, total_steps // 50)
    generator = torch.Generator().manual_seed(t.seed)
    batches = Batches(train_tokens, t.batch_size, cfg.model.seq_len, total_steps, generator, device)
    # Compiled or not: the compiled forward and backward are plain kernel launches, so they are
    # captured with the rest of the step (the compilation itself happens in the eager warm-up).
    graphs = device.type == "cuda" and cuda_graphs_enabled() and total_steps > WARMUP_STEPS + 1
    optimizer = make_optimizer(model, cfg, device, capturable=graphs)
    loss_fn = compiled_loss(model) if t.compile else functools.partial(model_loss, model)
    train_step = TrainStep(model, loss_fn, optimizer, dtype, t.grad_clip, graphs)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    curve: list[tuple[int, str, float]] = []
    train_seconds = compile_seconds = 0.0
    step = 0
    stopped_by = "tokens"
    model.train()
    running = torch.zeros((), device=device)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    if device.type == "cuda" and dtype != torch.float32:
        # The float32 matmuls left under autocast (routers, selector scores) use the tensor cores.
        torch.backends.cuda.matmul.allow_tf32 = True
    try:
        for step in range(total_steps):
            started = time.perf_counter()
            lr = lr_at(step, total_steps, warmup, t.lr, t.min_lr_ratio)
            train_step.set_lr(lr)
            x, y = batches.next()
            running += train_step(x, y)
            if step == 0 and t.compile and total_steps > 1:
                # The first step traces and compiles: timed apart, so tokens/s is the steady rate.
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                compile_seconds = time.perf_counter() - started
                started = time.perf_counter()
            if (step + 1) % log_every == 0 or step + 1 == total_steps:
                mean_loss = float(running) / (
                    log_every if (step + 1) % log_every == 0 else (step + 1) % log_every
                )
                running.zero_()
                if not math.isfinite(mean_loss):
                    raise NonFiniteLossError(
                        f"training loss became {mean_loss} at step {step + 1} (lr {lr:.2e})"
                    )
                curve += [(step + 1, "train_loss", mean_loss), (step + 1, "lr", lr)]
                if on_step:
                    on_step(step + 1, total_steps, mean_loss)
            train_seconds += time.perf_counter() - started
            if ((step + 1) % eval_every == 0 or step + 1 in eval_at) and step + 1 < total_steps:
                val_loss = evaluate(model, eval_batches, dtype)
                if not math.isfinite(val_loss):
                    raise NonFiniteLossError(f"validation loss became {val_loss} at step {step + 1}")
                curve.append((step + 1, "val_loss", val_loss))
                if on_eval:
                    on_eval(step + 1, val_loss)
            if t.seconds and train_seconds >= t.seconds:
                stopped_by = "seconds"
                break
    finally:
        train_step.close()
        torch.backends.cuda.matmul.allow_tf32 = tf32
        if t.compile:
            torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.synchronize(device)

    steps = step + 1
    model.reset_routing()
    val_loss = evaluate(model, eval_batches, dtype)
    if not math.isfinite(val_loss):
        raise NonFiniteLossError(f"final validation loss is {val_loss}")
    curve.append((steps, "val_loss", val_loss))
    tokens_trained = steps * tokens_per_step
    timed_tokens = tokens_trained - (tokens_per_step if compile_seconds else 0)
    return TrainResult(
        val_loss=val_loss,
        val_ppl=math.exp(min(val_loss, 50.0)),
        steps=steps,
        tokens_trained=tokens_trained,
        train_seconds=train_seconds,
        tokens_per_s=timed_tokens / max(train_seconds, 1e-9),
        peak_mem_bytes=peak_memory_bytes(device),
        curve=curve,
        routing=model.routing_stats(),
        stopped_by=stopped_by,
        compile_seconds=compile_seconds,
        cuda_graph=train_step.captured,
        eager_reason="" if train_step.captured else train_step.why_eager,
        master_weights=isinstance(optimizer, MasterAdamW),
    )
