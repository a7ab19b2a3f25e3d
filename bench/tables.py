"""(a′) Table layers: the trainer's whole step against the dense FFN's, before and after.

Each table layer of bench/layers.py (PKM, VanillaM, softmax-routed, token-id and LSH tables)
alone on N = B*T tokens, stepped as the trainer steps a model: :class:`workbench.train.TrainStep`
(forward under bf16 autocast, backward, clipping, the optimizer ``make_optimizer`` builds for
the layer, with the value tables in their own group), captured once as a CUDA graph and
replayed; median device time per step. The baseline is the dense FFN whose FLOPs equal the
layer's analytic active FLOPs, stepped the same way. Per layer, in one run:

* *before*: the reads of 2026-11 (float32 tables read by EmbeddingBag in float32, VanillaM
  too; the tables in the optimizer's float32 AdamW, every row every step); PKM's top-k
  backward, lighter since, is not put back;
* *after*: the defaults (tables read in bf16 and held in bf16 with float32 masters; the
  masked dense read where workbench/memory/_lookup.py picks it), dense AdamW on the tables;
* *lazy*: after, with ``train.sparse_values`` (only the rows with a gradient are updated);
* *other read*: after, with the read the defaults do not pick (dense for EmbeddingBag tables,
  EmbeddingBag for dense ones): what ``DENSE_READ_RATIO`` should say;
* *fwd+bwd*: after, without the optimizer (bench (a)'s graphed step).

The input gradient is computed (a layer's input is the residual stream). *rows read* is
N*R/V, a table's reads per row per step, and exp(-N*R/V) the expected share of rows a lazy
step skips (for uniformly spread reads).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math
from collections.abc import Iterator
from typing import Any
from unittest import mock

import torch

from bench.common import Deadline
from bench.layers import _knobs, _Width, build, table_specs, time_step
from workbench.config import TrainConfig, TrialConfig
from workbench.memory import ForwardContext, LayerContext, _lookup, config_from_dict
from workbench.train import TrainStep, make_optimizer, master
from workbench.train import loop as train_loop

GOALS = {"pkm": 2.5, "vanilla": 3.0, "softmax_table": 1.5}
"""Issue 14's goals at d=768: the layer's training step over the dense FFN's at equal active FLOPs."""

VARIANTS = ("before", "after", "lazy", "other")


def goal(row: dict[str, Any]) -> float | None:
    return GOALS.get(row["layer"].split()[0])


def reads_per_token(spec: dict[str, Any]) -> int:
    """R: the table rows one token reads (all heads and tables)."""
    kind = spec["kind"]
    if kind == "pkm":
        return int(spec["n_heads"]) * int(spec["k"])
    if kind in ("vanilla", "softmax_table"):
        return int(spec["k"])
    if kind == "lsh":
        return int(spec["n_tables"])
    return 1


@contextlib.contextmanager
def variant(name: str, dense_default: bool) -> Iterator[None]:
    """The code paths of one variant (module docstring), patched in for the ``with`` block."""
    with contextlib.ExitStack() as stack:
        if name == "before":
            stack.enter_context(mock.patch.object(_lookup, "AUTOCAST_READS", False))
            stack.enter_context(mock.patch.object(_lookup, "DENSE_READ_RATIO", 0))
            stack.enter_context(
                mock.patch.object(
                    train_loop,
                    "low_precision_parameters",
                    functools.partial(master.low_precision_parameters, tables=False),
                )
            )
        elif name == "other":
            stack.enter_context(mock.patch.object(_lookup, "DENSE_READ_RATIO", 0 if dense_default else 2**40))
        yield


def train_step_ms(spec: dict[str, Any], w: _Width, sparse: bool = False) -> tuple[float, bool, str]:
    """(median ms, captured, why eager) of the trainer's step of the layer of ``spec``."""
    result = _train_step_ms(spec, w, sparse)
    gc.collect()  # the layer, its optimizer state and the graph's pool go before the next
    torch.cuda.empty_cache()
    return result


def _train_step_ms(spec: dict[str, Any], w: _Width, sparse: bool) -> tuple[float, bool, str]:
    layer = build(spec, w.ctx, w.dev, weights="float32")  # make_optimizer holds what it should in bf16
    cfg = TrialConfig(train=TrainConfig(lr=1e-4, sparse_values=sparse))
    optimizer = make_optimizer(layer, cfg, w.dev, capturable=True)
    ctx = ForwardContext(token_ids_BT=w.ids)

    def loss_fn(_x: torch.Tensor, _y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = w.x.detach().requires_grad_()  # a fresh leaf: the input gradient is computed, not summed
        y, aux = layer(x, ctx)
        return (y.float() * w.gy).sum(), aux

    step = TrainStep(layer, loss_fn, optimizer, torch.bfloat16, cfg.train.grad_clip, graphs=True)  # type: ignore[arg-type]
    ids = w.ids[:1]
    try:
        return time_step(lambda: step(ids, ids)), step.captured, step.why_eager
    finally:
        step.close()


def run(
    dims: tuple[int, ...] = (768,),
    tokens: int = 32768,
    seq_len: int = 512,
    deadline: Deadline | None = None,
    kinds: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """One row per table layer and width, times in ms (module docstring)."""
    dev = torch.device("cuda")
    rows: list[dict[str, Any]] = []
    for d in dims:
        w = _Width(d, tokens, seq_len, dev, "bf16")
        dense: dict[int, float] = {}
        for name, spec in table_specs(d):
            if kinds and name not in kinds:
                continue
            cfg = config_from_dict(spec)
            flops = cfg.cost(w.ctx).flops_per_token
            d_ff_eq = max(64, round(flops / (4 * d) / 64) * 64)
            reads = reads_per_token(spec)
            n_rows = _table_rows(spec, w.ctx)
            dense_default = spec["kind"] != "token_table" and n_rows <= _lookup.DENSE_READ_RATIO * reads
            row: dict[str, Any] = {
                "d": d,
                "layer": name,
                "knobs": _knobs(spec),
                "dense_d_ff": d_ff_eq,
                "read": "dense" if dense_default else "gather",
                "rows_read": tokens * reads / n_rows,
            }
            rows.append(row)
            if deadline and deadline.left() < 15:
                row["skipped"] = True
                continue
            try:
                if d_ff_eq not in dense:
                    dense[d_ff_eq] = train_step_ms({"kind": "dense", "d_ff": d_ff_eq}, w)[0]
                row["dense_ms"] = dense[d_ff_eq]
                for var in VARIANTS:
                    if var == "other" and spec["kind"] == "token_table":
                        continue  # one read only (an embedding lookup)
                    with variant(var, dense_default):
                        ms, captured, why = train_step_ms(spec, w, sparse=var == "lazy")
                    row[f"{var}_ms"], row[f"{var}_x"] = ms, ms / row["dense_ms"]
                    if not captured:
                        row[f"{var}_eager"] = why
                fwd_bwd, dense_fwd_bwd = w.graphed(spec), w.dense_graphed(d_ff_eq)
                if fwd_bwd and dense_fwd_bwd:
                    row["fwd_bwd_x"] = fwd_bwd / dense_fwd_bwd
            except Exception as exc:  # a failing layer is reported, not fatal to the table
                row["error"] = f"{type(exc).__name__}: {exc}"[:200]
        del w
        gc.collect()
        torch.cuda.empty_cache()
    return rows


def _table_rows(spec: dict[str, Any], ctx: LayerContext) -> int:
    """V: rows of the layer's value table (analytic, so nothing is built)."""
    kind = spec["kind"]
    if kind == "pkm":
        return int(spec["n_keys"]) ** 2
    if kind == "vanilla":
        return int(spec.get("d_ff") or 4 * ctx.d_model)
    if kind == "softmax_table":
        return int(spec["n_entries"])
    if kind == "lsh":
        return int(spec["n_tables"]) * 2 ** int(spec["n_bits"])
    return int(ctx.vocab_size)


def untouched(row: dict[str, Any]) -> float:
    """Expected share of a table's rows no token reads in a step (uniform reads)."""
    return math.exp(-row["rows_read"])
