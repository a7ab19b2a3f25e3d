"""(a) Per memory layer: forward+backward step time against a dense FFN of equal active FLOPs.

One layer alone (no attention, no optimizer: bench/tables.py times the table layers' whole
training step) on N = B*T tokens of a LayerNorm-scale input, bf16 autocast with the matmul
weights and value tables held in bf16 (float32 masters live in the optimizer,
workbench/train/master.py; ``weights="float32"`` keeps them float32, the trainer's
``train.master_weights=false``), as the trainer runs it: forward, then backward of the
output against a fixed random gradient (plus the auxiliary loss). Each expert-style layer is
timed with its fast dispatch (``impl=auto``: the grouped path on CUDA) and, in the same run,
with the simple per-expert ``loop``; table layers with their EmbeddingBag reads and, where one
exists, the simple gather-and-sum read. The dense baseline of an expert-style layer is the
FFN of width 4*d (what one expert of width 4*d, or k experts of width 4*d/k, compute); that of
a table layer is the FFN whose 4*d*d_ff FLOPs equal the layer's analytic active FLOPs.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable
from typing import Any

import torch

from bench.common import Deadline, host_syncs, time_cuda
from workbench.memory import ForwardContext, LayerContext, config_from_dict
from workbench.train import side_stream
from workbench.train.master import cast_to

EXPERT_KINDS = ("switch", "gshard", "base", "hash", "avgk", "lsh")


def expert_specs(d: int, blocks: int) -> list[tuple[str, dict[str, Any]]]:
    """Expert-style layers with ``blocks`` blocks, each reading 4*d cells per token in all."""
    w = 4 * d
    return [
        ("switch", {"kind": "switch", "n_experts": blocks, "expert_width": w}),
        ("gshard", {"kind": "gshard", "n_experts": blocks, "expert_width": w // 2, "k": 2}),
        ("base", {"kind": "base", "n_experts": blocks, "expert_width": w}),
        ("hash", {"kind": "hash", "n_experts": blocks, "expert_width": w}),
        # k = 4 blocks of g = d cells: 4*d cells read, d_ff = blocks * d in all.
        ("avgk", {"kind": "avgk", "d_ff": blocks * d, "block_size": d, "k": 4}),
        (
            "lsh",
            {
                "kind": "lsh",
                "n_bits": int(math.log2(blocks)),
                "n_tables": 1,
                "consume": "expert",
                "expert_width": w,
            },
        ),
    ]


def table_specs(d: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("pkm", {"kind": "pkm", "n_keys": 128, "n_heads": 4, "k": 16, "d_key": 128}),
        ("pkm", {"kind": "pkm", "n_keys": 256, "n_heads": 4, "k": 32, "d_key": 256}),
        ("pkm add", {"kind": "pkm", "n_keys": 128, "n_heads": 4, "k": 16, "d_key": 128, "consume": "add"}),
        ("vanilla", {"kind": "vanilla", "k": 64}),
        ("softmax_table", {"kind": "softmax_table", "n_entries": 4096, "k": 16, "consume": "expert"}),
        ("softmax_table add", {"kind": "softmax_table", "n_entries": 1024, "k": 16, "consume": "add"}),
        ("token_table add", {"kind": "token_table", "consume": "add"}),
        ("lsh add", {"kind": "lsh", "n_bits": 10, "n_tables": 4, "consume": "add"}),
    ]


def _knobs(spec: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in spec.items() if k not in ("kind", "impl"))


def build(
    spec: dict[str, Any], ctx: LayerContext, dev: torch.device, weights: str = "bf16"
) -> torch.nn.Module:
    """The layer of ``spec``, initialised on ``dev`` where it can be (large banks init slowly on a CPU),
    its matmul weights in bf16 unless ``weights`` is ``"float32"``."""
    cfg = config_from_dict(spec)
    torch.manual_seed(0)
    try:
        with dev:
            layer = cfg.build(ctx)
    except RuntimeError:  # a layer that draws its tables from a CPU generator (hash)
        torch.manual_seed(0)
        layer = cfg.build(ctx)
    layer = layer.to(dev).train()
    if weights == "bf16":
        cast_to(layer, torch.bfloat16)
    return layer


def _step(layer: torch.nn.Module, x: torch.Tensor, ids: torch.Tensor, gy: torch.Tensor) -> Callable[[], None]:
    ctx = ForwardContext(token_ids_BT=ids)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y, aux = layer(x, ctx)
        if aux.requires_grad:
            torch.autograd.backward([y, aux], [gy.to(y.dtype), torch.ones_like(aux)])
        else:
            y.backward(gy.to(y.dtype))
        x.grad = None
        for p in layer.parameters():
            p.grad = None

    return step


def graph_step(
    layer: torch.nn.Module, x: torch.Tensor, ids: torch.Tensor, gy: torch.Tensor
) -> Callable[[], None]:
    """The layer's forward and backward captured in a CUDA graph: ``replay`` runs it without launch
    overhead (what the step costs the GPU; torch.compile's reduce-overhead mode and whole-step
    graphs in the trainer get there). Raises where the step synchronises with the host."""
    ctx = ForwardContext(token_ids_BT=ids)

    def fwd_bwd() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
            y, aux = layer(x, ctx)
        if aux.requires_grad:
            torch.autograd.backward([y, aux], [gy.to(y.dtype), torch.ones_like(aux)])
        else:
            y.backward(gy.to(y.dtype))

    side = side_stream(x.device)
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            fwd_bwd()
    torch.cuda.current_stream().wait_stream(side)
    x.grad = None
    for p in layer.parameters():
        p.grad = None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fwd_bwd()
    return graph.replay


def time_step(step: Callable[[], None], budget_s: float = 0.1) -> float:
    """Median ms of ``step``; repetitions sized so one timed batch takes about ``budget_s``."""
    step()
    torch.cuda.synchronize()
    est = time_cuda(step, warmup=1, iters=1, repeats=1)
    iters = max(1, min(50, int(budget_s * 1e3 / max(est, 1e-3))))
    return time_cuda(step, warmup=1, iters=iters, repeats=3)


class _SimpleRows:
    """The simple read of table rows (gather ``[N, R, D]``, multiply, sum) in place of EmbeddingBag."""

    def __enter__(self) -> None:
        import workbench.memory.pkm as pkm
        import workbench.memory.softmax_table as softmax_table

        self.mods = (pkm, softmax_table)
        self.saved = [m.weighted_rows for m in self.mods]
        for m in self.mods:
            m.weighted_rows = lambda values, idx, w: (values[idx] * w.unsqueeze(-1).to(values.dtype)).sum(1)

    def __exit__(self, *exc: object) -> None:
        for m, f in zip(self.mods, self.saved, strict=True):
            m.weighted_rows = f


class _Width:
    """Inputs of one width d (shared by its rows) and its dense baselines, timed once each."""

    def __init__(self, d: int, tokens: int, seq_len: int, dev: torch.device, weights: str) -> None:
        self.ctx = LayerContext(d_model=d, vocab_size=8192, seq_len=seq_len)
        self.dev, self.weights = dev, weights
        gen = torch.Generator(device=dev).manual_seed(0)
        batch = tokens // seq_len
        self.x = torch.randn(batch, seq_len, d, device=dev, generator=gen).requires_grad_(True)
        self.ids = torch.randint(0, self.ctx.vocab_size, (batch, seq_len), device=dev, generator=gen)
        self.gy = torch.randn(batch, seq_len, d, device=dev, generator=gen)
        self.dense_ms: dict[tuple[int, bool], float] = {}
        self.dense_graph_ms: dict[int, float | None] = {}

    def timed(self, spec: dict[str, Any], compile_: bool = False) -> tuple[float, int]:
        """(median ms per step, host syncs per step) of the layer of ``spec``."""
        layer = build(spec, self.ctx, self.dev, self.weights)
        fn = torch.compile(layer, dynamic=False) if compile_ else layer
        step = _step(fn, self.x, self.ids, self.gy)
        if compile_:
            # As the trainer runs train.compile: the compiled step replayed from a CUDA graph.
            try:
                step = graph_step(fn, self.x, self.ids, self.gy)
            except Exception:
                self.x.grad = None
        ms = time_step(step)
        syncs = host_syncs(step) if not compile_ else 0
        del layer, fn, step
        self._free(compile_)
        return ms, syncs

    def graphed(self, spec: dict[str, Any]) -> float | None:
        """Median ms of the step replayed from a CUDA graph; None where it cannot be captured."""
        layer = build(spec, self.ctx, self.dev, self.weights)
        try:
            replay = graph_step(layer, self.x, self.ids, self.gy)
            ms: float | None = time_step(replay)
        except Exception:
            ms = None
        self.x.grad = None
        del layer
        self._free(False)
        return ms

    def _free(self, compile_: bool) -> None:
        if compile_:
            torch._dynamo.reset()
        gc.collect()
        torch.cuda.empty_cache()

    def dense_graphed(self, d_ff: int) -> float | None:
        if d_ff not in self.dense_graph_ms:
            self.dense_graph_ms[d_ff] = self.graphed({"kind": "dense", "d_ff": d_ff})
        return self.dense_graph_ms[d_ff]

    def dense(self, d_ff: int, compile_: bool = False) -> float:
        key = (d_ff, compile_)
        if key not in self.dense_ms:
            self.dense_ms[key] = self.timed({"kind": "dense", "d_ff": d_ff}, compile_)[0]
        return self.dense_ms[key]


def run(
    dims: tuple[int, ...] = (256, 512, 768),
    blocks: tuple[int, ...] = (16, 64),
    tokens: int = 32768,
    seq_len: int = 512,
    compiled: tuple[tuple[int, str, int], ...] = (),
    deadline: Deadline | None = None,
    profile: tuple[int, str, int] | None = None,
    simple: bool = True,
    kinds: tuple[str, ...] = (),
    weights: str = "bf16",
) -> list[dict[str, Any]]:
    """Rows of the per-layer table (one per layer, width and block count), times in ms.

    ``simple`` False skips the simple implementations; ``kinds`` keeps only those layer names;
    ``weights`` is the matmul weights' dtype, ``bf16`` (the trainer's default) or ``float32``.
    """
    dev = torch.device("cuda")
    rows: list[dict[str, Any]] = []
    for d in dims:
        w = _Width(d, tokens, seq_len, dev, weights)
        base_ms = w.dense(4 * d)
        base_graph = w.dense_graphed(4 * d)
        rows.append(
            {
                "d": d,
                "layer": "dense",
                "blocks": 1,
                "knobs": f"d_ff={4 * d}",
                "dense_ms": base_ms,
                "fast_ms": base_ms,
                "fast_x": 1.0,
                "syncs": 0,
                "graph_ms": base_graph,
                "dense_graph_ms": base_graph,
                "graph_x": 1.0,
            }
        )
        for n_blocks in blocks:
            for name, spec in expert_specs(d, n_blocks):
                if kinds and name not in kinds:
                    continue
                row: dict[str, Any] = {"d": d, "layer": name, "blocks": n_blocks, "knobs": _knobs(spec)}
                rows.append(row)
                if deadline and deadline.left() < 20:
                    row["skipped"] = True
                    continue
                row["dense_ms"] = base_ms
                try:
                    row["fast_ms"], row["syncs"] = w.timed({**spec, "impl": "auto"})
                    row["fast_x"] = row["fast_ms"] / base_ms
                    row["graph_ms"], row["dense_graph_ms"] = w.graphed({**spec, "impl": "auto"}), base_graph
                    if row["graph_ms"] and base_graph:
                        row["graph_x"] = row["graph_ms"] / base_graph
                    if simple:
                        row["loop_ms"], row["loop_syncs"] = w.timed({**spec, "impl": "loop"})
                        row["loop_x"] = row["loop_ms"] / base_ms
                    if (d, name, n_blocks) in compiled:
                        row["compiled_dense_ms"] = w.dense(4 * d, compile_=True)
                        row["compiled_ms"], _ = w.timed({**spec, "impl": "auto"}, compile_=True)
                        row["compiled_x"] = row["compiled_ms"] / row["compiled_dense_ms"]
                    if profile == (d, name, n_blocks):
                        row["profile"] = profile_table({**spec, "impl": "auto"}, w)
                except Exception as exc:  # a failing layer is reported, not fatal to the table
                    row["error"] = f"{type(exc).__name__}: {exc}"[:200]
        for name, spec in table_specs(d):
            if kinds and name not in kinds:
                continue
            flops = config_from_dict(spec).cost(w.ctx).flops_per_token
            d_ff_eq = max(64, round(flops / (4 * d) / 64) * 64)
            row = {
                "d": d,
                "layer": name,
                "blocks": None,
                "knobs": _knobs(spec),
                "flops": flops,
                "dense_d_ff": d_ff_eq,
            }
            rows.append(row)
            if deadline and deadline.left() < 20:
                row["skipped"] = True
                continue
            try:
                row["dense_ms"] = w.dense(d_ff_eq)
                row["fast_ms"], row["syncs"] = w.timed(spec)
                row["fast_x"] = row["fast_ms"] / row["dense_ms"]
                row["graph_ms"], row["dense_graph_ms"] = w.graphed(spec), w.dense_graphed(d_ff_eq)
                if row["graph_ms"] and row["dense_graph_ms"]:
                    row["graph_x"] = row["graph_ms"] / row["dense_graph_ms"]
                if simple and spec["kind"] in ("pkm", "softmax_table"):
                    with _SimpleRows():
                        row["loop_ms"], _ = w.timed(spec)
                    row["loop_x"] = row["loop_ms"] / row["dense_ms"]
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"[:200]
        del w
        gc.collect()
        torch.cuda.empty_cache()
    return rows


def profile_table(spec: dict[str, Any], w: _Width) -> str:
    """The CUDA kernels of a few fast steps of one layer, by total device time."""
    from torch.profiler import ProfilerActivity, profile

    layer = build(spec, w.ctx, w.dev, w.weights)
    step = _step(layer, w.x, w.ids, w.gy)
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            step()
        torch.cuda.synchronize()
    return str(prof.key_averages().table(sort_by="cuda_time_total", row_limit=30, max_name_column_width=70))


def goal(row: dict[str, Any]) -> float | None:
    """The issue's goal for a row: expert-style ≤ 1.15x (d ≥ 512), ≤ 1.5x (d = 256, 64 blocks); tables ≤ 1.3x."""
    kind = row["layer"].split()[0]
    if row["layer"] == "dense":
        return None
    if kind in EXPERT_KINDS and row["blocks"]:
        if row["d"] >= 512:
            return 1.15
        return 1.5 if row["blocks"] >= 64 else None
    return 1.3
