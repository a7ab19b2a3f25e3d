"""One command for the GPU benchmarks; writes its section of docs/PERFORMANCE.md.

    python -m bench.run                       # everything (about 9 minutes on an H100)
    python -m bench.run --sections layers     # one part: layers, mfu, study
    python -m bench.run --sections tables     # (a′) table layers' training step, ~2-3 minutes

(a) memory layers against a dense FFN of equal active FLOPs, fast dispatch beside the simple
loop (bench/layers.py); (b) dense GPT MFU at GPT-2 small and at the search scale
(bench/mfu.py); (c) study throughput and GPU busy fraction, (d) peak memory per trial
(bench/study_throughput.py); (a′) the table layers' whole training step (optimizer included)
before and after the reads of issue 14, against its goals (bench/tables.py; not in the
default sections: it has a block of its own in the document). Raw results go to ``$OUT`` (or
/tmp/bench-out) as JSON; the Markdown tables replace the generated block of the document
(other sections are kept).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from bench import layers, mfu, study_throughput, tables
from bench.common import Deadline, environment, md_table, save_json, save_text, write_section

TABLES_BEGIN = "<!-- bench/run.py tables: begin (generated; edit bench/, not this block) -->"
TABLES_END = "<!-- bench/run.py tables: end -->"


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--sections", default="layers,mfu,study")
    parser.add_argument("--doc", default="docs/PERFORMANCE.md")
    parser.add_argument("--dims", default="256,512,768", help="layer widths d of part (a)")
    parser.add_argument("--blocks", default="16,64", help="block (expert) counts of part (a)")
    parser.add_argument("--layer-tokens", type=int, default=32768, help="tokens per layer step in (a)")
    parser.add_argument(
        "--compiled-layers",
        default="",
        help="d:layer:blocks rows of (a) also timed under torch.compile (e.g. 512:switch:16)",
    )
    parser.add_argument(
        "--mfu",
        default="gpt2:16:eager,gpt2:16:compiled,gpt2:32:compiled,search:64:eager,search:64:compiled",
        help="shape:batch:mode runs of (b); mode eager|compiled, +nographs (no CUDA graph), "
        "+f32w (float32 matmul weights, train.master_weights=false), e.g. gpt2:32:compiled+f32w",
    )
    parser.add_argument("--study", default="1:eager,2:eager", help="workers:mode study runs of (c)")
    parser.add_argument("--study-tokens", type=int, default=20_000_000)
    parser.add_argument(
        "--study-timeout", type=float, default=100, help="seconds after which a study run starts no new trial"
    )
    parser.add_argument("--study-trials", type=int, default=6)
    parser.add_argument("--budget", type=float, default=530, help="seconds for the whole run")
    parser.add_argument("--no-simple", action="store_true", help="skip the simple implementations in (a)")
    parser.add_argument("--kinds", default="", help="only these layer names in (a), comma-separated")
    parser.add_argument(
        "--layer-weights",
        default="bf16",
        choices=("bf16", "float32"),
        help="matmul weights of (a): bf16 with float32 masters (the trainer's default) or float32",
    )
    parser.add_argument(
        "--profile-mfu", default="", help="shape:batch:mode runs to profile (kernel tables to $OUT)"
    )
    parser.add_argument(
        "--layers-budget", type=float, default=170, help="seconds for (a); 0: 45%% of --budget"
    )
    parser.add_argument("--table-dims", default="768", help="layer widths d of (a′)")
    parser.add_argument("--table-kinds", default="", help="only these table layer names in (a′)")
    parser.add_argument("--tables-budget", type=float, default=200, help="seconds for (a′)")
    args = parser.parse_args(argv)

    if not torch.cuda.is_available():
        print("bench.run needs a CUDA device", file=sys.stderr)
        return 2
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True  # as workbench/train.py sets it under bf16 autocast
    deadline = Deadline(args.budget)
    env = environment(dev)
    command = "python -m bench.run " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    sections = args.sections.split(",")
    results: dict[str, Any] = {"env": env, "command": command}

    if "study" in sections:
        results["study"] = []
        for run in args.study.split(","):
            workers, mode = run.split(":")
            if deadline.left() < 60:
                results["study"].append({"skipped": run})
                continue
            try:
                row = study_throughput.run(
                    args.study_tokens,
                    args.study_trials,
                    int(workers),
                    mode == "compiled",
                    timeout=min(args.study_timeout, max(30.0, deadline.left() - 45)),
                )
                row["extrapolated_20m"] = study_throughput.extrapolate(row)
                results["study"].append(row)
                print(
                    f"study {run}: {row['completed']} trials in {row['wall_s']:.0f}s, "
                    f"{row['trials_per_hour']:.0f}/h measured, {row['extrapolated_20m'] or 0:.0f}/h at 20M tokens, "
                    f"busy {row['gpu_busy'] or 0:.0%}",
                    flush=True,
                )
            except Exception:
                results["study"].append({"error": traceback.format_exc()[-2000:], "run": run})
                print(results["study"][-1]["error"], flush=True)
        save_json("results.json", results)

    if "layers" in sections:
        started = time.monotonic()
        compiled = tuple(
            (int(d), name, int(b))
            for d, name, b in (c.split(":") for c in args.compiled_layers.split(",") if c)
        )
        try:
            results["layers"] = layers.run(
                dims=_ints(args.dims),
                blocks=_ints(args.blocks),
                tokens=args.layer_tokens,
                compiled=compiled,
                deadline=Deadline(
                    args.layers_budget or (deadline.left() * 0.45 if len(sections) > 1 else deadline.left())
                ),
                profile=(512, "switch", 16),
                simple=not args.no_simple,
                kinds=tuple(k for k in args.kinds.split(",") if k),
                weights=args.layer_weights,
            )
        except Exception:
            results["layers_error"] = traceback.format_exc()
        results["layers_s"] = time.monotonic() - started
        save_json("results.json", results)
        _print_layers(results.get("layers") or [])

    if "tables" in sections:
        started = time.monotonic()
        try:
            results["tables"] = tables.run(
                dims=_ints(args.table_dims),
                tokens=args.layer_tokens,
                deadline=Deadline(min(args.tables_budget, deadline.left())),
                kinds=tuple(k for k in args.table_kinds.split(",") if k),
            )
        except Exception:
            results["tables_error"] = traceback.format_exc()
            print(results["tables_error"], flush=True)
        results["tables_s"] = time.monotonic() - started
        save_json("results.json", results)
        _print_tables(results.get("tables") or [])

    for run in (r for r in args.profile_mfu.split(",") if r):
        shape_name, batch, mode = run.split(":")
        shape = mfu.GPT2_SMALL if shape_name == "gpt2" else mfu.SEARCH_SCALE
        try:
            table = mfu.profile_step(shape, int(batch), mode == "compiled")
        except Exception:
            table = traceback.format_exc()
        save_text(f"profile_{shape_name}_{batch}_{mode}.txt", table)
        print(table[:6000], flush=True)

    if "mfu" in sections:
        results["mfu"] = []
        for run in args.mfu.split(","):
            shape_name, batch, mode = run.split(":")
            if deadline.left() < (150 if mode.startswith("compiled") else 40):
                results["mfu"].append({"skipped": run})
                continue
            shape = mfu.GPT2_SMALL if shape_name == "gpt2" else mfu.SEARCH_SCALE
            steps = 60 if shape_name == "gpt2" else 200
            try:
                row = mfu.measure(
                    shape,
                    int(batch),
                    steps,
                    mode.startswith("compiled"),
                    graphs="nographs" not in mode,
                    master_weights="f32w" not in mode,
                )
                row["name"] = shape_name
                results["mfu"].append(row)
                print(
                    f"mfu {run}: {row['mfu']:.1%} steady, {row['mfu_run']:.1%} whole run "
                    f"({row['tokens_per_s']:,.0f} tok/s, compile {row['compile_s']:.0f}s)",
                    flush=True,
                )
            except Exception:
                results["mfu"].append({"error": traceback.format_exc()[-2000:], "run": run})
                print(results["mfu"][-1]["error"], flush=True)

    save_json("results.json", results)
    if {"layers", "mfu", "study"} & set(sections):
        body = render(results, args)
        write_section(Path(args.doc), body)
        save_text("PERFORMANCE.section.md", body)
        print(body)
    if results.get("tables"):
        body = render_tables(results, args)
        write_section(Path(args.doc), body, TABLES_BEGIN, TABLES_END)
        save_text("PERFORMANCE.tables.md", body)
        print(body)
    return 0


def _print_tables(rows: list[dict[str, Any]]) -> None:
    nan = float("nan")
    for r in rows:
        g = tables.goal(r)
        verdict = (
            ""
            if g is None or "after_x" not in r
            else f"goal ≤{g}x: {'met' if r['after_x'] <= g else 'missed'}"
        )
        print(
            f"{r['d']:4d} {r['layer']:18s} {r['read']:6s} before {r.get('before_x', nan):6.2f}x "
            f"after {r.get('after_x', nan):6.2f}x lazy {r.get('lazy_x', nan):6.2f}x "
            f"other read {r.get('other_x', nan):6.2f}x fwd+bwd {r.get('fwd_bwd_x', nan):6.2f}x {verdict} "
            f"{r.get('error', '')}{' not run' if r.get('skipped') else ''}",
            flush=True,
        )


def render_tables(results: dict[str, Any], args: argparse.Namespace) -> str:
    env = results["env"]
    rows = []
    for r in results["tables"]:
        g = tables.goal(r)
        eager = "; ".join(f"{v}: eager ({r[f'{v}_eager']})" for v in tables.VARIANTS if f"{v}_eager" in r)
        status = "not run" if r.get("skipped") else r.get("error")
        rows.append(
            [
                r["d"],
                r["layer"],
                r["knobs"],
                r["dense_d_ff"],
                r["read"],
                r["rows_read"],
                r.get("dense_ms"),
                r.get("before_ms"),
                r.get("before_x"),
                r.get("after_ms"),
                r.get("after_x"),
                r.get("lazy_x"),
                r.get("other_x"),
                r.get("fwd_bwd_x"),
                f"≤ {g}x" if g else None,
                status
                or (None if g is None or "after_x" not in r else ("yes" if r["after_x"] <= g else "no")),
                eager or None,
            ]
        )
    return "\n".join(
        [
            f"Generated by `{results['command']}` on {env['date']}: {env['device']}, torch {env['torch']} "
            f"(CUDA {env['cuda']}). One table layer, {args.layer_tokens} tokens per step, the trainer's whole "
            "step (`TrainStep`: bf16 autocast, backward, clipping, the optimizer `make_optimizer` builds with "
            "master weights) replayed from a CUDA graph; median device time; × = over the dense FFN of equal "
            "active FLOPs stepped the same way (bench/tables.py: *before* = float32 EmbeddingBag reads and "
            "float32 tables, *after* = the defaults, *lazy* = after with `train.sparse_values`, *other read* = "
            "after with the read the defaults do not pick, *fwd+bwd* = after without the optimizer; *reads per "
            "row* = N·R/V).",
            "",
            md_table(
                [
                    "d",
                    "layer",
                    "knobs",
                    "dense d_ff",
                    "read",
                    "reads per row",
                    "dense step ms",
                    "before ms",
                    "before ×",
                    "after ms",
                    "after ×",
                    "lazy ×",
                    "other read ×",
                    "fwd+bwd ×",
                    "goal",
                    "meets (after)",
                    "note",
                ],
                rows,
            ),
        ]
    )


def _print_layers(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        print(
            f"{r['d']:4d} {r['layer']:18s} {r.get('blocks') or '':>3} fast {r.get('fast_x', float('nan')):6.2f}x "
            f"graph {r.get('graph_x') or float('nan'):5.2f}x loop {r.get('loop_x', float('nan')):7.2f}x comp {r.get('compiled_x', float('nan')):5.2f}x "
            f"syncs {r.get('syncs', '')} {r.get('error', '')}",
            flush=True,
        )


def render(results: dict[str, Any], args: argparse.Namespace) -> str:
    env = results["env"]
    out = [
        "## GPU benchmarks (bench/)",
        "",
        f"Generated by `{results['command']}` on {env['date']}: {env['device']}, torch {env['torch']} "
        f"(CUDA {env['cuda']}), Python {env['python']}. Raw numbers: `$OUT/*.json` of that run.",
        "",
    ]
    if results.get("layers"):
        out += [
            "### (a) Memory layers against a dense FFN of equal active FLOPs",
            "",
            f"One layer, forward + backward, {args.layer_tokens} tokens per step, bf16 autocast, matmul "
            + (
                "weights held in bf16 (float32 masters in the optimizer)"
                if args.layer_weights == "bf16"
                else "weights in float32 (cast by autocast every step)"
            )
            + ", TF32 for the float32 matmuls autocast leaves (as the trainer); median device time. Baseline of an expert-style layer: the dense FFN of width 4d "
            "(each routes 4d active cells per token); of a table layer: the dense FFN whose FLOPs equal the "
            "layer's analytic active FLOPs (`dense d_ff`). *fast* = `impl=auto` (grouped dispatch) or "
            "EmbeddingBag reads; *graphed* = the fast step replayed from a CUDA graph against the graphed dense "
            "FFN (the GPU's time without launch overhead; — where the step cannot be captured because it "
            "synchronises); *simple* = the per-expert Python loop, or gather-then-sum rows; *compiled* = "
            "the fast layer and the dense FFN both under `torch.compile`, replayed from a CUDA graph (as "
            "`train.compile` trains). *syncs* = host synchronisations "
            "per fast step (CUDA sync debug mode).",
            "",
        ]
        rows = []
        for r in results["layers"]:
            g = layers.goal(r)

            def meets(x: float | None, g: float | None = g) -> str | None:
                return None if g is None or x is None else ("yes" if x <= g else "no")

            status = "not run" if r.get("skipped") else r.get("error")
            rows.append(
                [
                    r["d"],
                    r["layer"],
                    r.get("blocks"),
                    r.get("knobs"),
                    r.get("dense_d_ff", 4 * r["d"]),
                    r.get("dense_ms"),
                    r.get("fast_ms"),
                    r.get("fast_x"),
                    r.get("graph_x"),
                    r.get("compiled_x"),
                    r.get("loop_x"),
                    r.get("syncs"),
                    f"≤ {g}x" if g else None,
                    status
                    or " / ".join(str(meets(r.get(k)) or "—") for k in ("fast_x", "graph_x", "compiled_x")),
                ]
            )
        out += [
            md_table(
                [
                    "d",
                    "layer",
                    "blocks",
                    "knobs",
                    "dense d_ff",
                    "dense ms",
                    "fast ms",
                    "fast ×dense",
                    "graphed ×dense",
                    "compiled ×dense",
                    "simple ×dense",
                    "syncs",
                    "goal",
                    "meets: fast / graphed / compiled",
                ],
                rows,
            ),
            "",
        ]
    if results.get("mfu"):
        out += [
            "### (b) Dense GPT MFU (workbench trainer: bf16 autocast, bf16 matmul weights with float32 masters in a "
            "fused AdamW unless noted, SDPA, grad clipping)",
            "",
            "MFU = tokens/s × 3 × analytic forward FLOPs per token / peak (H100 SXM dense bf16 989 TFLOP/s); "
            "attention counted over the full context as nanoGPT does. *Steady* (the headline, as nanoGPT reports it): "
            "the steps replayed from the CUDA graph, from a few steps after the capture to the end of the run; "
            "*whole run*: the trainer's tokens/s over every step after the first, so the eager warm-up steps and "
            "the capture count too (what a trial of this many steps gets). GPT-2 small: d=768, 12 layers, 12 "
            "heads, seq 1024, vocab 50304; search scale: d=384, 6 layers, seq 256, vocab 2048.",
            "",
        ]
        rows = [
            [
                r.get("name"),
                r.get("params", 0) / 1e6 if r.get("params") else None,
                r.get("batch_size"),
                r.get("steps"),
                ("compiled" if r.get("compiled") else "eager")
                + (" + CUDA graph" if r.get("cuda_graph") else "")
                + ("" if r.get("master_weights", True) else ", float32 weights"),
                r.get("tokens_per_s"),
                r.get("tflops"),
                f"{r['mfu']:.1%}" if r.get("mfu") else None,
                f"{r['mfu_run']:.1%}" if r.get("mfu_run") else None,
                r.get("compile_s"),
                r.get("peak_mem_gb"),
                (r.get("skipped") and "not run")
                or (r.get("error", "")[-120:] if r.get("error") else None)
                or (r.get("eager_reason") if r.get("eager_reason") not in (None, "", "off") else None),
            ]
            for r in results["mfu"]
        ]
        out += [
            md_table(
                [
                    "model",
                    "params (M)",
                    "batch",
                    "steps",
                    "mode",
                    "tokens/s (steady)",
                    "TFLOP/s (steady)",
                    "MFU (steady)",
                    "MFU (whole run)",
                    "compile s",
                    "peak mem GB",
                    "note",
                ],
                rows,
            ),
            "",
        ]
    if results.get("study"):
        out += [
            "### (c) Study throughput and (d) peak memory per trial",
            "",
            f"The standard small space of bench/study_throughput.py (8-11.5M parameters: 6 layers, d 320|384, "
            f"seq 256, batch 64, dense | 4-expert switch | 4-expert hash, KJV BPE-2048, random sampler) run by "
            f"`workbench.study.run_study` exactly as `workbench run --workers N` runs it, {args.study_tokens:,} "
            "tokens per trial, eager training with whole-step CUDA graphs. Trials/GPU-hour = completed trials / "
            "wall time of the study (start-up, fvcore, evaluation, storage included). "
            + (
                "The 20M column equals the measured rate (the run used the 20M budget). "
                if args.study_tokens >= 20_000_000
                else "The 20M column extrapolates: the measured per-trial overhead is kept and the training "
                "time scaled to 20M tokens. "
            )
            + "GPU busy = mean of nvidia-smi utilization.gpu (share of time a kernel was running) sampled "
            "every 200 ms over the whole study.",
            "",
        ]
        rows = []
        for r in results["study"]:
            if "completed" not in r:
                rows.append(
                    [
                        r.get("run") or r.get("skipped"),
                        None,
                        None,
                        None,
                        None,
                        None,
                        None,
                        None,
                        "not run" if r.get("skipped") else r.get("error", "")[-120:],
                    ]
                )
                continue
            rows.append(
                [
                    r["workers"],
                    "compiled" if r["compiled"] else "eager",
                    r["completed"],
                    r["wall_s"],
                    r["trials_per_hour"],
                    r.get("extrapolated_20m"),
                    f"{r['gpu_busy']:.0%}" if r.get("gpu_busy") is not None else None,
                    r.get("tokens_per_s_mean"),
                    r.get("peak_mem_gb_max"),
                ]
            )
        out += [
            md_table(
                [
                    "workers",
                    "mode",
                    "completed",
                    "wall s",
                    "trials/GPU-h (measured)",
                    "trials/GPU-h at 20M tokens",
                    "GPU busy",
                    "tokens/s per trial (mean)",
                    "peak mem GB (max trial)",
                ],
                rows,
            ),
            "",
        ]
        trial_rows = []
        for r in results["study"]:
            for t in r.get("per_trial", []) or []:
                trial_rows.append(
                    [
                        r["workers"],
                        t["trial_number"],
                        t["memory_kind"],
                        t["status"],
                        (t["params_total"] or 0) / 1e6,
                        (t["peak_mem_bytes"] or 0) / 2**20,
                        t["tokens_per_s"],
                        t["train_seconds"],
                    ]
                )
        out += [
            "Peak memory per trial (`torch.cuda.max_memory_allocated`):",
            "",
            md_table(
                ["workers", "trial", "memory", "status", "params (M)", "peak MB", "tokens/s", "train s"],
                trial_rows,
            ),
            "",
        ]
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
