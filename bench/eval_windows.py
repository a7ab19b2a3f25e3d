"""Where the validation windows lie, and whether it changes a comparison (docs/METHODOLOGY.md).

A named corpus is its sources one after another (en-mix: Wikipedia, then the kernel's docs, ...),
and its validation chunks are every twentieth chunk, in order. Until 2026-12-03 a run scored the
first ``train.eval_tokens`` of that split (``train.eval_windows=head``): on en-mix, Wikipedia
alone at 65,536 tokens, Wikipedia and kernel docs at 262,144. This script trains each design of
a space once per seed and scores the same trained model three ways:

* ``head``: the first ``eval_tokens`` of the split, as before;
* ``spread``: ``eval_tokens`` spread evenly over the whole split (the default now);
* per source: ``eval_tokens / n_sources`` spread over each source's part of the split (a
  corpus without named sources is cut into ten equal parts instead).

Reported: each design's loss under each; its perplexity against the space's first dense design
under head and under spread (mean over seeds); and whether the order of the designs changes.

CPU, about 15 minutes on two cores (the replication suite's external-memory space, shrunk):
    python -m bench.eval_windows --space spaces/replicate/external.py --scale cpu --seeds 0 1 \\
        --out store/runs/eval-windows
GPU, the suite's own scale (about 5 minutes on an H200 for six designs and two seeds):
    python -m bench.eval_windows --space spaces/replicate/external.py --device cuda --seeds 0 1
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import md_table
from workbench.cli._commands import _parse_override
from workbench.config import DataConfig, TrialConfig
from workbench.data import eval_batches, get_tokenizer, load_text, prepare_tokens
from workbench.data.corpus import cache_root
from workbench.data.sources import CORPORA
from workbench.data.sources._corpora import corpus_folder
from workbench.data.tokens import split_chunks
from workbench.space import load_space
from workbench.train import evaluate, train
from workbench.train.loop import resolve_dtype
from workbench.trial import build_model

# The replication scale shrunk to what two CPU cores train in about a minute per run.
CPU_SCALE: dict[str, Any] = {
    "model.n_layers": 2,
    "model.d_model": 128,
    "model.n_heads": 4,
    "model.seq_len": 128,
    "train.batch_size": 32,
    "train.tokens": 1_500_000,
    "train.eval_tokens": 65_536,
}


def source_spans(cfg: DataConfig, n_val: int) -> list[tuple[str, int, int]]:
    """``(source, first, end)`` token ranges of the validation split, one per source of a named
    corpus (from its manifest), or ten equal parts for any other corpus."""
    manifest_path = (
        corpus_folder(cfg.corpus, cache_root(cfg)) / "manifest.json" if cfg.corpus in CORPORA else None
    )
    if manifest_path is None or not manifest_path.is_file():
        edges = np.linspace(0, n_val, 11).astype(int)
        return [(f"part {i + 1}/10", int(a), int(b)) for i, (a, b) in enumerate(itertools.pairwise(edges))]
    sources = json.loads(manifest_path.read_text())["sources"]
    corpus = load_text(cfg)
    text = corpus.text
    # Source boundaries in characters: the sources' sizes, scaled to the text (blank lines join them).
    sizes = np.array([s["characters"] for s in sources], dtype=float)
    char_edges = np.concatenate([[0.0], np.cumsum(sizes) * len(text) / sizes.sum()])
    chunks, is_val = split_chunks(text, cfg.val_fraction)
    tokenizer = get_tokenizer(cfg, corpus)
    val_chunks, val_starts, offset = [], [], 0
    for chunk, in_val in zip(chunks, is_val, strict=True):
        if in_val:
            val_chunks.append(chunk)
            val_starts.append(offset)
        offset += len(chunk)
    lengths = [len(ids) for ids in tokenizer.encode_batch(val_chunks)]
    token_starts = np.concatenate([[0], np.cumsum(lengths)])
    if token_starts[-1] != n_val:
        raise RuntimeError(
            f"re-tokenized validation chunks hold {token_starts[-1]} tokens, the split {n_val}"
        )
    chunk_source = np.searchsorted(char_edges, np.array(val_starts), side="right") - 1
    spans = []
    for i, source in enumerate(sources):
        mine = np.flatnonzero(chunk_source == i)
        if mine.size:
            spans.append((source["key"], int(token_starts[mine[0]]), int(token_starts[mine[-1] + 1])))
    return spans


def designs(space_path: str, overrides: dict[str, Any], lr: float | None) -> list[tuple[str, TrialConfig]]:
    """The space's grid designs with ``overrides``, each named by its memory kind and knobs."""
    space = load_space(space_path).with_overrides(overrides) if overrides else load_space(space_path)
    out = []
    for sample in space.iter_grid_samples():
        if sample.config is None:
            continue
        cfg = sample.config
        if lr is not None:
            cfg = replace(cfg, train=replace(cfg.train, lr=lr))
        knobs = {k: v for k, v in sample.values.items() if k.startswith("memory.") and k != "memory.kind"}
        varying = [f"{k.removeprefix('memory.')}={v}" for k, v in knobs.items() if _varies(space, k)]
        label = " ".join([str(sample.values.get("memory.kind", "dense")), *varying])
        out.append((label, cfg))
    return out


def _varies(space: Any, name: str) -> bool:
    param = space.params.get(name)
    return param is not None and hasattr(param, "choices") and len(param.choices) > 1


def scale_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The knobs ``--scale``, ``--set`` and ``--tokens`` fix (later ones win)."""
    overrides = dict(CPU_SCALE) if args.scale == "cpu" else {}
    overrides.update(_parse_override(item) for item in args.set)
    if args.tokens:
        overrides["train.tokens"] = args.tokens
    return overrides


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    overrides = scale_overrides(args)
    found = designs(args.space, overrides, args.lr)
    if args.only:
        found = [(label, cfg) for label, cfg in found if any(o in label for o in args.only)]
    if not found:
        raise SystemExit("no designs: check --space, --set and --only")
    data_cfg = found[0][1].data
    data = prepare_tokens(data_cfg)
    spans = source_spans(data_cfg, len(data.val))
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    for label, cfg in found:
        # The scoring sets depend on the design's shape only: built once, scored under every seed.
        t, seq_len = cfg.train, cfg.model.seq_len
        batch = t.batch_size
        sets = {
            "head": eval_batches(data.val, seq_len, t.eval_tokens, batch, device, "head"),
            "spread": eval_batches(data.val, seq_len, t.eval_tokens, batch, device, "spread"),
        }
        per_source = max(seq_len, t.eval_tokens // len(spans))
        for name, lo, hi in spans:
            if hi - lo > seq_len + 1:
                sets[name] = eval_batches(data.val[lo:hi], seq_len, per_source, batch, device)
        dtype = resolve_dtype(t.dtype, device)
        for seed in args.seeds:
            cfg_s = replace(cfg, train=replace(t, seed=seed, eval_windows="spread"))
            torch.manual_seed(seed)
            model = build_model(cfg_s.model, data).to(device)
            result = train(cfg_s, model, data.train, sets["spread"], device)
            losses = {name: evaluate(model, batches, dtype) for name, batches in sets.items()}
            rows.append(
                {"design": label, "seed": seed, "lr": t.lr, "train_seconds": result.train_seconds, **losses}
            )
            done = len(rows)
            total = len(found) * len(args.seeds)
            print(
                f"[{done}/{total}] {label} seed {seed}: head {losses['head']:.3f} spread {losses['spread']:.3f} "
                f"({time.monotonic() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "command": "python -m bench.eval_windows " + " ".join(sys.argv[1:]),
        "space": args.space,
        "overrides": overrides,
        "sources": [{"source": s, "first": a, "end": b} for s, a, b in spans],
        "val_tokens": len(data.val),
        "runs": rows,
    }


def report(result: dict[str, Any]) -> str:
    """Markdown: the mean loss of each design under each scoring, and its ppl against dense."""
    runs = result["runs"]
    labels = list(dict.fromkeys(r["design"] for r in runs))
    sources = [s["source"] for s in result["sources"] if any(s["source"] in r for r in runs)]

    def mean(label: str, key: str) -> float:
        return float(np.mean([r[key] for r in runs if r["design"] == label and key in r]))

    n_seeds = len({r["seed"] for r in runs})
    head_rank = sorted(labels, key=lambda d: mean(d, "head"))
    spread_rank = sorted(labels, key=lambda d: mean(d, "spread"))
    dense = next((d for d in labels if d.startswith("dense")), labels[0])
    rows = []
    for d in labels:
        vs = [f"{100 * (math.exp(mean(d, key) - mean(dense, key)) - 1):+.1f}%" for key in ("head", "spread")]
        rows.append(
            [
                d,
                f"{mean(d, 'head'):.3f}",
                f"{mean(d, 'spread'):.3f}",
                *vs,
                head_rank.index(d) + 1,
                spread_rank.index(d) + 1,
            ]
        )
    out = [
        f"{result['date']}, {result['device']}, {n_seeds} seed(s) per design; `{result['command']}`",
        "",
        md_table(
            [
                "design",
                "loss head",
                "loss spread",
                "ppl vs dense, head",
                "ppl vs dense, spread",
                "rank head",
                "rank spread",
            ],
            rows,
        ),
        "",
        "Loss per source (mean over seeds; each source's validation part, windows spread over it):",
        "",
        md_table(["design", *sources], [[d, *(f"{mean(d, s):.3f}" for s in sources)] for d in labels]),
    ]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument(
        "--space", default="spaces/replicate/external.py", help="a space file; its grid designs run"
    )
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a knob")
    parser.add_argument("--scale", choices=("space", "cpu"), default="space", help="cpu: shrink to CPU_SCALE")
    parser.add_argument(
        "--tokens", type=int, default=0, help="training tokens per run (default: the space's)"
    )
    parser.add_argument(
        "--lr", type=float, default=None, help="one learning rate for all (default: the space's)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument(
        "--only", nargs="*", default=[], help="keep designs whose label contains one of these"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=None, help="folder for eval_windows.json and .md")
    args = parser.parse_args(argv)
    result = run(args)
    text = report(result)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "eval_windows.json").write_text(json.dumps(result, indent=1))
        (args.out / "eval_windows.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
