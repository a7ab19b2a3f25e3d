"""docs/REPLICATION.md's claim table and plots, from the replication suite's stored runs (no GPU).

    python -m bench.replication [--journals store/runs | --store S.duckdb] [--doc docs/REPLICATION.md]
                                [--plots docs/replication | --no-plots]

Ingests every ``replicate-*.journal`` of ``--journals`` (the optuna journals the GPU runs wrote,
kept in the repository) into a temporary store, evaluates each claim of
``workbench.explore.CLAIMS`` on it (means over seeds, Welch 95% intervals, a verdict) and writes
the table between the markers of ``--doc``, with one plot per study (perplexity against active
FLOPs per token, 95% error bars) saved as PNG next to the report (plotly + kaleido:
``pip install -e .[report]``).
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import md_table, store_from_journals, write_section
from workbench import record
from workbench.explore import CLAIMS, claims_frame, evaluate_all
from workbench.store import Store

BEGIN = "<!-- bench/replication.py: begin (generated; edit bench/ or workbench/explore/_claims.py, not this block) -->"
END = "<!-- bench/replication.py: end -->"
PREFIX = "replicate-"
PLOT_ATTEMPTS = 3


def design_label(row: pd.Series) -> str:
    """A short name for a design of the suite: its kind and the knobs the suite varies."""
    kind = str(row.get("memory.kind"))
    parts = [kind]

    def known(name: str) -> object | None:
        value = row.get(name)
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else value

    if kind == "avgk" and known("memory.block_size") is not None:
        parts.append(f"g={int(row['memory.block_size'])}")
    if kind == "hash" and known("memory.variant") is not None:
        parts.append(str(row["memory.variant"]))
    if kind in ("switch", "gshard", "base", "hash") and known("memory.n_experts") is not None:
        parts.append(f"E={int(row['memory.n_experts'])}")
    if kind == "gshard" and known("memory.k") is not None:
        parts.append(f"k={int(row['memory.k'])}")
    if kind in ("switch", "gshard") and known("memory.gate") == "straight":
        parts.append("straight-through gate")
    if kind in ("switch", "gshard") and known("memory.aux_loss_coef") == 0:
        parts.append("no balancing loss")
    if kind in ("switch", "gshard") and (known("memory.z_loss_coef") or 0) > 0:
        parts.append(f"z-loss {row['memory.z_loss_coef']:g}")
    if kind == "base" and known("memory.gate") == "straight":
        parts.append("straight-through gate")
    if kind == "base" and known("memory.train_routing") == "greedy":
        parts.append("greedy training routing")
    if kind == "hash" and known("memory.features") == "cooccurrence":
        parts.append("corpus features")
    if kind == "avgk" and known("memory.block_key") == "unit":
        parts.append("unit keys")
    if kind == "avgk" and (known("memory.aux_loss_coef") or 0) > 0:
        parts.append(f"balancing loss {row['memory.aux_loss_coef']:g}")
    if kind in ("token_table", "lsh", "softmax_table", "pkm") and known("memory.consume") is not None:
        parts.append(str(row["memory.consume"]))
    # Fixed within a study but not across the suite: a study that changes them says so in its names.
    if known("model.placement") not in (None, "all"):
        parts.append(f"layers {row['model.placement']}")
    if known("data.vocab_size") not in (None, 2048):
        parts.append(f"vocab {int(row['data.vocab_size'])}")
    if (known("model.altup_k") or 1) > 1:
        replicated = " replicated embedding" if known("model.altup_embed_init") == "replicated" else ""
        parts.insert(0, f"{row['model.altup_variant']} K={int(row['model.altup_k'])}{replicated} +")
    return " ".join(parts)


# Training knobs a study may sweep as part of its designs (an ablation): named in the label.
SWEPT = {
    "train.lr": "lr",
    "train.warmup_frac": "warm-up",
    "model.ffn_init": "init",
    "train.memory_value_lr_scale": "value-table lr x",
    "train.altup_weight_decay": "mixing-scalar decay",
}


def _swept_value(value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None  # the knob does not apply to this design (e.g. AltUp's decay on a plain model)
    if isinstance(value, bool | np.bool_):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _inert(row: pd.Series, name: str) -> bool:
    """Whether the knob ``name`` cannot change this design (record.INERT_KNOBS), e.g. AltUp's
    decay on a plain model: its stored value is then not part of the design's name."""
    section, knob = name.split(".", 1)
    predicate = record.INERT_KNOBS.get((section, knob))
    if predicate is None:
        return False
    config: dict[str, dict[str, object]] = {}
    for key, value in row.items():
        if isinstance(key, str) and "." in key and _swept_value(value) is not None:
            sec, field = key.split(".", 1)
            config.setdefault(sec, {})[field] = value
    return predicate(config)


def swept_label(row: pd.Series, swept: Sequence[str]) -> str:
    extra = " ".join(
        f"{SWEPT[name]} {shown}"
        for name in swept
        if not _inert(row, name) and (shown := _swept_value(row[name])) is not None
    )
    return f"{design_label(row)} {extra}".strip()


def study_table(store: Store, study: str) -> str:
    designs = store.designs(study).sort_values("val_ppl_mean")
    tuned = bool(len(store.sql("SELECT 1 FROM tuning WHERE study_name = $s LIMIT 1", {"s": study})))
    swept = [
        n for n in SWEPT if n in designs and designs[n].nunique() > 1 and not (tuned and n == "train.lr")
    ]
    rows = []
    for _, d in designs.iterrows():
        interval = (
            f"[{d['val_ppl_ci95_low']:.2f}, {d['val_ppl_ci95_high']:.2f}]"
            if pd.notna(d["val_ppl_ci95_low"])
            else "—"
        )
        seeds = " / ".join(f"{v:.2f}" for v in d["val_ppl_seeds"])
        rows.append(
            [
                swept_label(d, swept),
                int(d["n_seeds"]),
                d.get("train.lr"),
                f"{d['val_ppl_mean']:.2f} {interval}",
                seeds,
                d["flops_per_token"] / 1e6,
                d["params_total"] / 1e6,
                d["tokens_per_s"] / 1e6,
            ]
        )
    header = [
        "design",
        "seeds",
        "lr (fit)" if tuned else "lr",
        "val ppl mean [95% CI]",
        "per seed",
        "MFLOPs/token",
        "params (M)",
        "Mtok/s",
    ]
    return md_table(header, rows)


def provenance_line(store: Store, study: str) -> str:
    frame = store.sql(
        "SELECT min(t.finished_at) AS first, max(t.finished_at) AS last, any_value(p.device_name) AS device, "
        "any_value(p.git_commit) AS commit, count(*) AS runs "
        "FROM trials AS t LEFT JOIN provenance AS p USING (study_name, trial_number) "
        "WHERE t.study_name = $study AND t.status = 'complete'",
        {"study": study},
    ).iloc[0]
    if not frame["runs"]:
        return f"`{study}`: no completed runs."
    commit = f", commit {str(frame['commit'])[:9]}" if frame["commit"] else ""
    return (
        f"`{study}`: {int(frame['runs'])} runs finished {frame['first']:%Y-%m-%d %H:%M} to "
        f"{frame['last']:%H:%M} UTC on {frame['device']}{commit}."
    )


def plot_study(store: Store, study: str, path: Path) -> None:
    import plotly.graph_objects as go

    designs = store.designs(study)
    labels = [design_label(d) for _, d in designs.iterrows()]
    err_hi = (designs["val_ppl_ci95_high"] - designs["val_ppl_mean"]).fillna(0)
    err_lo = (designs["val_ppl_mean"] - designs["val_ppl_ci95_low"]).fillna(0)
    figure = go.Figure(
        go.Scatter(
            x=designs["flops_per_token"] / 1e6,
            y=designs["val_ppl_mean"],
            mode="markers+text",
            text=labels,
            textposition="top center",
            error_y={"type": "data", "array": err_hi, "arrayminus": err_lo, "visible": True},
        )
    )
    figure.update_layout(
        title=f"{study}: validation perplexity (mean over seeds, 95% CI) against active FLOPs",
        xaxis_title="forward FLOPs per token (M)",
        yaxis_title="validation perplexity",
        template="plotly_white",
        width=900,
        height=560,
        showlegend=False,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    # kaleido drives a headless Chrome whose start-up sometimes races on a loaded machine
    # ("kaleido_scopes is not defined"): a second attempt starts it afresh.
    for attempt in range(PLOT_ATTEMPTS):
        try:
            figure.write_image(str(path))
            return
        except Exception as exc:  # kaleido raises its own JavascriptError and RuntimeErrors
            if attempt == PLOT_ATTEMPTS - 1:
                raise SystemExit(
                    f"{path}: kaleido could not render the plot ({exc}); rerun, or pass --no-plots"
                ) from exc


def report(store: Store, plots: Path | None, doc: Path) -> str:
    results = evaluate_all(CLAIMS, store)
    frame = claims_frame(results)
    counts = frame["verdict"].value_counts()
    summary = ", ".join(f"{n} {v}" for v, n in counts.items())
    table = md_table(frame.columns.tolist(), frame.drop(columns=[]).values.tolist())
    studies = [s for s in store.studies()["study_name"] if s.startswith(PREFIX)]
    sections = [f"**{len(frame)} claims:** {summary}.", table]
    for study in studies:
        sections.append(f"### `{study}`")
        sections.append(provenance_line(store, study))
        sections.append(study_table(store, study))
        if plots is not None:
            image = plots / f"{study}.png"
            plot_study(store, study, image)
            sections.append(f"![{study}]({image.relative_to(doc.parent).as_posix()})")
    return "\n\n".join(sections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replication", description=__doc__.split("\n")[0])
    parser.add_argument("--journals", default="store/runs", help="folder of the studies' optuna journals")
    parser.add_argument(
        "--store", default=None, help="read this store instead of rebuilding one from --journals"
    )
    parser.add_argument("--doc", default="docs/REPLICATION.md")
    parser.add_argument("--plots", default="docs/replication", help="folder for the PNG plots")
    parser.add_argument("--no-plots", action="store_true", help="write the tables only (no kaleido needed)")
    args = parser.parse_args(argv)
    doc = Path(args.doc)
    with tempfile.TemporaryDirectory() as tmp:
        if args.store:
            store = Store.open(args.store, read_only=True)
        else:
            store = store_from_journals(Path(args.journals), Path(tmp) / "replication.duckdb", PREFIX)
        body = report(store, None if args.no_plots else Path(args.plots), doc)
    write_section(doc, body, BEGIN, END)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
