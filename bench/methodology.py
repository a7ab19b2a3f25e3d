"""The tables of docs/METHODOLOGY.md, from the store the methodology study wrote (no GPU needed).

    python -m bench.methodology [--journals store/runs | --store S.duckdb] [--doc docs/METHODOLOGY.md]

Reads the study ``methodology`` (spaces/methodology.py: a tuned learning rate per design, then
five seeds each) and the studies ``methodology-lr-<rate>`` (the same designs at each rate of
the grid, full budget, seed 0) and writes: the seed spread of each design; how many seeds a
comparison needs to separate designs 2% apart in perplexity; the rate the short probes chose
against the full grid's best. By default the store is rebuilt from the optuna journals the GPU
runs wrote (``store/runs/methodology*.journal``, kept in the repository: the source of truth,
readable by any DuckDB version) into a temporary DuckDB file.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from bench import common
from bench.common import md_table, write_section
from workbench.store import Store

BEGIN = "<!-- bench/methodology.py: begin (generated; edit bench/, not this block) -->"
END = "<!-- bench/methodology.py: end -->"
STUDY = "methodology"
GRID_PREFIX = "methodology-lr-"
# A 2% perplexity difference is a loss difference of ln(1.02).
DELTA_LOSS = math.log(1.02)
Z_95, Z_80 = 1.959964, 0.841621


def design_label(row: pd.Series) -> str:
    kind = str(row["memory.kind"])
    experts = row.get("memory.n_experts")
    if kind in ("switch", "hash") and experts is not None and not pd.isna(experts):
        return f"{kind} E={int(experts)}"
    return kind


def seeds_to_separate(sd: float) -> tuple[int, int]:
    """Seeds per design so that a 2% perplexity gap is (a) found by a two-sided t-test at 5% with
    80% power, (b) wide enough that the two 95% intervals do not overlap."""
    if not sd or math.isnan(sd):
        return 0, 0
    power = math.ceil(2 * (Z_95 + Z_80) ** 2 * sd**2 / DELTA_LOSS**2)
    apart = math.ceil((2 * Z_95 * sd / DELTA_LOSS) ** 2)
    return max(power, 2), max(apart, 2)


def spread_table(store: Store) -> tuple[str, pd.DataFrame]:
    designs = store.designs(STUDY)
    rows = []
    for _, d in designs.iterrows():
        lr = d.get("train.lr")
        power, apart = seeds_to_separate(float(d["val_loss_sd"]))
        rows.append(
            [
                design_label(d),
                int(d["n_seeds"]),
                lr,
                d["val_loss_mean"],
                d["val_loss_sd"],
                f"{d['val_ppl_mean']:.2f} [{d['val_ppl_ci95_low']:.2f}, {d['val_ppl_ci95_high']:.2f}]",
                100 * d["val_ppl_sd"] / d["val_ppl_mean"],
                d["epochs"],
                power,
                apart,
            ]
        )
    header = [
        "design",
        "seeds",
        "fitted lr",
        "val loss mean",
        "val loss sd",
        "val ppl mean [95% CI]",
        "ppl sd (%)",
        "epochs",
        "seeds for 2% (test, 80% power)",
        "seeds for 2% (CIs apart)",
    ]
    return md_table(header, rows), designs


def lr_table(store: Store) -> str:
    studies = [s for s in store.studies()["study_name"] if s.startswith(GRID_PREFIX)]
    if not studies:
        return "_No full-budget learning-rate grid in this store._"
    grid = store.trials(studies, "complete")
    grid = grid.assign(design=grid.apply(design_label, axis=1))
    probes = store.sql(
        "SELECT t.config_json, u.value, u.val_loss, u.chosen FROM tuning AS u "
        "JOIN trials AS t USING (study_name, trial_number) WHERE u.study_name = $study",
        {"study": STUDY},
    )
    probes = probes.assign(
        design=[design_label(pd.Series(_flat(json.loads(c)))) for c in probes["config_json"]]
    )
    rows = []
    for design, runs in grid.groupby("design"):
        full = runs.set_index("train.lr")["val_loss"].sort_index()
        mine = probes[probes["design"] == design].set_index("value")["val_loss"].sort_index()
        chosen = probes[(probes["design"] == design) & probes["chosen"]]["value"]
        best = float(full.idxmin())
        pick = float(chosen.iloc[0]) if len(chosen) else math.nan
        regret = float(full.get(pick, math.nan) - full.min()) if len(chosen) else math.nan
        rows.append(
            [
                design,
                " / ".join(f"{v:.3f}" for v in full),
                " / ".join(f"{v:.3f}" for v in mine) if len(mine) else "—",
                best,
                pick,
                "yes" if pick == best else "no",
                regret,
            ]
        )
    rates = " / ".join(f"{r:g}" for r in sorted(grid["train.lr"].unique()))
    header = [
        "design",
        f"full budget val loss at lr {rates}",
        "probe (1/4 budget) val loss",
        "best lr (full grid)",
        "lr the probes chose",
        "same",
        "loss given up",
    ]
    return md_table(header, rows)


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    return {f"{s}.{k}": v for s, fields in config.items() for k, v in fields.items()}


def provenance_line(store: Store) -> str:
    frame = store.sql(
        "SELECT min(t.finished_at) AS first, max(t.finished_at) AS last, any_value(p.device_name) AS device "
        "FROM trials AS t LEFT JOIN provenance AS p USING (study_name, trial_number) "
        "WHERE t.study_name = $study OR t.study_name LIKE $grid",
        {"study": STUDY, "grid": GRID_PREFIX + "%"},
    ).iloc[0]
    return f"Runs finished {frame['first']:%Y-%m-%d %H:%M} to {frame['last']:%H:%M} UTC on {frame['device']}."


def store_from_journals(folder: Path, into: Path) -> Store:
    """A store holding every ``methodology*.journal`` study of ``folder`` (ingested into ``into``)."""
    return common.store_from_journals(folder, into, STUDY)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.methodology", description=__doc__.split("\n")[0])
    parser.add_argument("--journals", default="store/runs", help="folder of the studies' optuna journals")
    parser.add_argument(
        "--store", default=None, help="read this store instead of rebuilding one from --journals"
    )
    parser.add_argument("--doc", default="docs/METHODOLOGY.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.store:
            store = Store.open(args.store, read_only=True)
        else:
            store = store_from_journals(Path(args.journals), Path(tmp) / "methodology.duckdb")
        body = report(store)
    write_section(Path(args.doc), body, BEGIN, END)
    print(body)
    return 0


def report(store: Store) -> str:
    spread, _ = spread_table(store)
    body = "\n\n".join(
        [
            provenance_line(store),
            "**Seed spread** (study `methodology`, every design at its fitted rate):",
            spread,
            "**Short probes against the full grid** (seed 0; the probes are the tuned study's, the grid "
            "one study per rate):",
            lr_table(store),
        ]
    )
    return body


if __name__ == "__main__":
    raise SystemExit(main())
