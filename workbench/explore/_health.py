"""Study health: why trials did not complete (grouped by reason), and whether routers collapsed.

A router has collapsed when it sends most tokens to a few blocks (experts, memory slots). Two
per-layer signals flag it, with thresholds chosen for the small studies of this workbench:

* ``entropy_ratio < ENTROPY_COLLAPSE`` (0.5): the entropy of the load over blocks is less than
  half its maximum ``log(n_blocks)``; e.g. 8 blocks with all tokens on 2 of them give 0.33;
* ``unused_frac > UNUSED_COLLAPSE`` (0.5): more than half of the blocks received no token.

Dropped tokens (over capacity) are reported beside them but do not flag a collapse: capacity
limits drop tokens by design.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from workbench.explore._frames import sql
from workbench.explore._pareto import category_colors
from workbench.store import Store

if TYPE_CHECKING:
    import plotly.graph_objects as go

ENTROPY_COLLAPSE = 0.5
UNUSED_COLLAPSE = 0.5
NOT_COMPLETED = ("failed", "died", "infeasible", "interrupted", "pruned", "skipped")
EXAMPLES = 5  # trial numbers listed per reason
NO_REASON = "no reason recorded"
_NUMBER = re.compile(r"(?<![A-Za-z_])\d+(?:\.\d+)?")  # 2.00 GiB, 1234 MiB, step 17; not cuda0 or fp16


def reason_of(error: object) -> str:
    """A failure message reduced to what trials with the same cause share: the first line, with
    numbers (sizes, steps, addresses) written as ``#``."""
    if not isinstance(error, str) or not error.strip():
        return NO_REASON
    first = error.strip().splitlines()[0].strip()
    return _NUMBER.sub("#", first)[:300]


def failure_reasons(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials that failed, were infeasible, interrupted or pruned, grouped by status and reason.

    Columns: ``status, reason, count, studies, examples`` (``study#n`` of up to :data:`EXAMPLES`
    trials, newest first) and ``example_error`` (one message in full); most frequent first.
    """
    columns = ["status", "reason", "count", "studies", "examples", "example_error"]
    bad = trials[trials["status"].isin(NOT_COMPLETED)]
    if bad.empty:
        return pd.DataFrame(columns=columns)
    errors = bad["error"] if "error" in bad else pd.Series([None] * len(bad), index=bad.index)
    bad = bad.assign(
        reason=errors.map(reason_of),
        key=bad["study_name"].astype(str) + "#" + bad["trial_number"].astype("int64").astype(str),
    ).sort_values(["trial_number"], ascending=False, kind="stable")
    rows = []
    for (status, reason), part in bad.groupby(["status", "reason"], sort=False):
        messages = part["error"].dropna() if "error" in part else pd.Series(dtype=object)
        rows.append(
            {
                "status": status,
                "reason": reason,
                "count": len(part),
                "studies": ", ".join(sorted(part["study_name"].astype(str).unique())),
                "examples": ", ".join(part["key"].head(EXAMPLES))
                + (f" (+{len(part) - EXAMPLES})" if len(part) > EXAMPLES else ""),
                "example_error": str(messages.iloc[0]) if len(messages) else "",
            }
        )
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(["count", "status"], ascending=[False, True], kind="stable").reset_index(
        drop=True
    )


def routing_health(store: Store, studies: Sequence[str]) -> pd.DataFrame:
    """Every routed memory layer of the studies' trials, with a ``collapsed`` flag and ``why``."""
    frame = store.sql(sql("routing_health"), {"study_names": list(studies)})
    return flag_collapse(frame)


def flag_collapse(routing: pd.DataFrame) -> pd.DataFrame:
    """``routing`` (entropy_ratio, unused_frac per layer) with ``collapsed`` and a ``why`` text."""
    ratio = pd.to_numeric(routing["entropy_ratio"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    unused = pd.to_numeric(routing["unused_frac"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    low, idle = ratio < ENTROPY_COLLAPSE, unused > UNUSED_COLLAPSE
    why = [
        "; ".join(
            ([f"entropy ratio {r:.2f} < {ENTROPY_COLLAPSE}"] if lo else [])
            + ([f"{u:.0%} of blocks unused > {UNUSED_COLLAPSE:.0%}"] if id_ else [])
        )
        for r, u, lo, id_ in zip(ratio, unused, low, idle, strict=True)
    ]
    return routing.assign(collapsed=low | idle, why=why)


def routing_health_figure(health: pd.DataFrame) -> go.Figure:
    """Each routed layer as a point: load balance (x) against unused blocks (y), coloured by
    memory kind; the collapse thresholds as dashed lines, collapsed layers ringed in red."""
    import plotly.graph_objects as go

    fig = go.Figure()
    keys = health["study_name"].astype(str) + "#" + health["trial_number"].astype("int64").astype(str)
    kinds = health["memory_kind"].fillna("?").astype(str)
    colors = category_colors(kinds.unique())
    for kind in sorted(colors):
        part = health[kinds == kind]
        fig.add_trace(
            go.Scatter(
                x=part["entropy_ratio"],
                y=part["unused_frac"],
                mode="markers",
                name=kind,
                marker={"color": colors[kind], "size": 9, "opacity": 0.8},
                customdata=np.column_stack([keys[kinds == kind], part["layer"], part["dropped_frac"]]),
                hovertemplate="%{customdata[0]} layer %{customdata[1]}<br>entropy ratio %{x:.2f}, "
                "unused %{y:.0%}, dropped %{customdata[2]:.1%}<extra></extra>",
            )
        )
    bad = health[health["collapsed"]]
    if len(bad):
        fig.add_trace(
            go.Scatter(
                x=bad["entropy_ratio"],
                y=bad["unused_frac"],
                mode="markers",
                name="collapsed",
                marker={"size": 16, "symbol": "circle-open", "color": "#d62728", "line": {"width": 2}},
                hoverinfo="skip",
            )
        )
    fig.add_vline(
        x=ENTROPY_COLLAPSE,
        line={"dash": "dash", "color": "#999"},
        annotation={"text": f"collapsed left of {ENTROPY_COLLAPSE}", "font": {"color": "#777"}},
        annotation_position="top left",
    )
    fig.add_hline(
        y=UNUSED_COLLAPSE,
        line={"dash": "dash", "color": "#999"},
        annotation={"text": f"collapsed above {UNUSED_COLLAPSE:.0%} unused", "font": {"color": "#777"}},
        annotation_position="top right",
    )
    fig.update_layout(
        height=360,
        margin={"l": 10, "r": 10, "t": 20, "b": 10},
        xaxis={"title": "load balance (entropy ratio; 1 = even)", "range": [-0.02, 1.05]},
        yaxis={"title": "blocks unused", "range": [-0.03, 1.05], "tickformat": ".0%"},
        legend={"title": {"text": "memory kind"}},
    )
    return fig
