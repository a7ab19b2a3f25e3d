"""Does BASE lose to dense through its train/eval mismatch? (docs/REPLICATION.md, "BASE")

A BASE layer trains on a balanced assignment of the batch's tokens to experts and is evaluated
greedily, each token taking its best-scoring expert (workbench/memory/base_layer.py, as Lewis
et al. 2021 do). If the experts specialise to the balanced assignment, the greedy one sends
tokens to experts that did not train on their like, and the validation loss pays for it. This
script trains the BASE and dense designs of a space once per seed and scores each trained BASE
model on the same validation windows both ways:

* ``greedy``: the model in eval mode, what every stored run reports;
* ``balanced``: the model in training mode under ``torch.no_grad``, so each evaluation batch is
  assigned as a training batch is (it sees the whole batch, future tokens included, so it is a
  diagnostic, not a usable model).

A balanced loss well below the greedy one says the mismatch costs that much; level says it
does not, and BASE's loss to dense lies elsewhere. Dense is scored once (it has no routing).

CPU (the suite's model shrunk, about 10 minutes on two cores):
    python -m bench.base_mismatch --scale cpu --seeds 0 --out store/runs/base-mismatch-cpu
GPU, the replication suite's scale (about 2 minutes on an H200):
    python -m bench.base_mismatch --device cuda --seeds 0 1 --out /tmp/base-mismatch
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from bench.common import md_table
from bench.eval_windows import designs, scale_overrides
from workbench.data import eval_batches, prepare_tokens
from workbench.train import evaluate, train
from workbench.train.loop import resolve_dtype
from workbench.trial import build_model

KINDS = ("dense", "base")


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    overrides = scale_overrides(args)
    found = [
        (label, cfg) for label, cfg in designs(args.space, overrides, args.lr) if label.split()[0] in KINDS
    ]
    if not any(label.startswith("base") for label, _ in found):
        raise SystemExit(f"{args.space}: no BASE design (memory.kind = base) in its grid")
    data = prepare_tokens(found[0][1].data)
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    for label, cfg in found:
        t = cfg.train
        windows = eval_batches(
            data.val, cfg.model.seq_len, t.eval_tokens, t.batch_size, device, t.eval_windows
        )
        dtype = resolve_dtype(t.dtype, device)
        for seed in args.seeds:
            cfg_s = replace(cfg, train=replace(t, seed=seed))
            torch.manual_seed(seed)
            model = build_model(cfg_s.model, data).to(device)
            result = train(cfg_s, model, data.train, windows, device)
            row = {"design": label, "seed": seed, "lr": t.lr, "train_seconds": result.train_seconds}
            row["greedy"] = evaluate(model, windows, dtype)
            if label.startswith("base"):
                row["balanced"] = evaluate(model, windows, dtype, training_routing=True)
            rows.append(row)
            print(
                f"{label} seed {seed}: "
                + ", ".join(f"{k} {row[k]:.3f}" for k in ("greedy", "balanced") if k in row)
                + f" ({time.monotonic() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "command": "python -m bench.base_mismatch " + " ".join(sys.argv[1:]),
        "space": args.space,
        "overrides": overrides,
        "runs": rows,
    }


def report(result: dict[str, Any]) -> str:
    dense = [r["greedy"] for r in result["runs"] if r["design"].startswith("dense")]
    rows = []
    for r in result["runs"]:
        if "balanced" not in r:
            continue
        gap = r["greedy"] - r["balanced"]
        vs_dense = [
            f"{100 * (math.exp(r[k] - sum(dense) / len(dense)) - 1):+.1f}%" if dense else "—"
            for k in ("greedy", "balanced")
        ]
        rows.append(
            [r["design"], r["seed"], f"{r['greedy']:.3f}", f"{r['balanced']:.3f}", f"{gap:+.3f}", *vs_dense]
        )
    header = ["design", "seed", "loss, greedy (as stored)", "loss, balanced", "greedy − balanced (nats)"]
    header += ["ppl vs dense, greedy", "ppl vs dense, balanced"]
    lines = [f"{result['date']}, {result['device']}; `{result['command']}`", "", md_table(header, rows)]
    if dense:
        lines.append(f"\ndense: val loss {sum(dense) / len(dense):.3f} (mean of {len(dense)} seed(s))")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__)
    parser.add_argument("--space", default="spaces/replicate/sffn.py")
    parser.add_argument("--scale", choices=["space", "cpu"], default="space")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--tokens", type=int, help="train.tokens (default: the space's or the scale's)")
    parser.add_argument(
        "--lr", type=float, default=2e-3, help="one rate for every design (the suite fit 2e-3 for both)"
    )
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a knob")
    parser.add_argument("--out", default="/tmp/base-mismatch")
    args = parser.parse_args(argv)
    result = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "base_mismatch.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    text = report(result)
    (out / "base_mismatch.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
