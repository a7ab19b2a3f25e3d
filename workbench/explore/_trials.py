"""One trial in full (config, metrics, curves, routing, provenance) and several trials side by side."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from workbench.explore._frames import METRICS, ExploreError, param_columns, parse_trial_key, sql, trial_key
from workbench.explore._pareto import PALETTE
from workbench.store import Store

if TYPE_CHECKING:
    import plotly.graph_objects as go

LOSS_METRICS = ("train_loss", "val_loss")


class TrialDetail(NamedTuple):
    """Everything the store holds about one trial."""

    key: str
    row: dict[str, Any]  # the trial's columns from trial_overview (status, metrics, error, ...)
    config: dict[str, Any]  # nested config as trained
    params: pd.DataFrame  # name, value, sampled
    metrics: pd.DataFrame  # metric, label, value (non-null known metrics, then extra wb.metrics)
    curves: pd.DataFrame  # step, metric, value
    routing: pd.DataFrame  # per layer: n_blocks, entropy_ratio, dropped_frac, unused_frac
    routing_load: pd.DataFrame  # layer, block, load
    provenance: dict[str, Any]
    packages: dict[str, str]


def load_trial_detail(store: Store, key: str) -> TrialDetail:
    """Read one trial (``study#n``) from ``store``; an unknown trial is an :class:`ExploreError`."""
    study, number = parse_trial_key(key)
    where = {"study_name": study, "trial_number": number}
    match = store.sql(sql("trial_row"), where)
    if match.empty:
        raise ExploreError(f"no trial {key} in the store")
    row = match.iloc[0]
    long = store.sql(sql("trial_config"), where)
    params = pd.DataFrame(
        {
            "name": long["name"],
            "value": [json.loads(v) if v is not None else None for v in long["value_json"]],
            "sampled": long["sampled"].astype(bool),
        }
    )
    config = json.loads(row["config_json"]) if isinstance(row["config_json"], str) else {}
    prov = store.provenance(study, [number])
    provenance = {k: _plain(v) for k, v in prov.iloc[0].items()} if len(prov) else {}
    packages = json.loads(provenance.pop("packages_json", None) or "{}")
    base = {str(k): _plain(v) for k, v in row.items()}
    return TrialDetail(
        key=key,
        row=base,
        config=config,
        params=params,
        metrics=_metrics(base),
        curves=store.curves(study, [number])[["step", "metric", "value"]],
        routing=store.routing(study, number),
        routing_load=store.routing_load(study, number),
        provenance=provenance,
        packages=packages,
    )


def _metrics(row: dict[str, Any]) -> pd.DataFrame:
    rows = [(m, a.label, float(row[m])) for m, a in METRICS.items() if row.get(m) is not None]
    known = {m for m, _, _ in rows}
    extra = json.loads(row["metrics_json"]) if isinstance(row.get("metrics_json"), str) else {}
    rows += [
        (k, k, float(v)) for k, v in sorted(extra.items()) if k not in known and isinstance(v, int | float)
    ]
    return pd.DataFrame(rows, columns=["metric", "label", "value"])


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if value is pd.NA or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value


def curves_figure(curves: pd.DataFrame, title: str = "") -> go.Figure:
    """Training and validation loss against step; the learning rate on a second axis."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, (metric, part) in enumerate(curves.groupby("metric", sort=True)):
        on_lr = metric == "lr"
        fig.add_trace(
            go.Scatter(
                x=part["step"],
                y=part["value"],
                name=metric,
                mode="lines+markers" if len(part) < 30 else "lines",
                yaxis="y2" if on_lr else "y",
                line={"dash": "dot" if on_lr else "solid", "color": PALETTE[i % len(PALETTE)]},
            )
        )
    fig.update_layout(
        title=title or None,
        height=380,
        margin={"l": 10, "r": 10, "t": 40 if title else 20, "b": 10},
        xaxis={"title": "step"},
        yaxis={"title": "loss"},
        yaxis2={"title": "learning rate", "overlaying": "y", "side": "right", "showgrid": False},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def routing_load_figure(routing_load: pd.DataFrame) -> go.Figure:
    """Load per block (fraction of routed tokens) of each memory layer, as a layer x block heatmap."""
    import plotly.graph_objects as go

    grid = routing_load.pivot_table(index="layer", columns="block", values="load", aggfunc="mean")
    fig = go.Figure(
        go.Heatmap(
            z=grid.to_numpy(),
            x=[str(b) for b in grid.columns],
            y=[f"layer {int(v)}" for v in grid.index],
            colorscale="Viridis",
            colorbar={"title": "load"},
            hovertemplate="%{y}, block %{x}: load %{z:.3g}<extra></extra>",
        )
    )
    fig.update_layout(
        height=120 + 40 * len(grid), margin={"l": 10, "r": 10, "t": 20, "b": 10}, xaxis={"title": "block"}
    )
    return fig


# --- comparing trials --------------------------------------------------------------------------------


def trial_labels(trials: pd.DataFrame, keys: Sequence[str]) -> dict[str, str]:
    """``key -> "study#n (kind)"`` for the trials in ``keys`` that ``trials`` holds."""
    kind = dict(zip(_keys(trials), trials.get("memory_kind", pd.Series([None] * len(trials))), strict=True))
    return {k: f"{k} ({kind[k]})" if kind.get(k) else k for k in keys if k in kind}


def _keys(trials: pd.DataFrame) -> list[str]:
    return [trial_key(s, n) for s, n in zip(trials["study_name"], trials["trial_number"], strict=True)]


def select_trials(trials: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """The rows of ``keys`` in that order (unknown keys are skipped), indexed by key."""
    all_keys = pd.Index(_keys(trials), name="key")
    # Cut the rows first: indexing a wide frame of 10^4 trials copies every column.
    rows = all_keys.isin(list(keys))
    chosen = trials[rows].set_axis(all_keys[rows], axis=0)
    return chosen.loc[[k for k in dict.fromkeys(keys) if k in chosen.index]]


def param_differences(
    trials: pd.DataFrame, keys: Sequence[str], *, only_different: bool = False
) -> pd.DataFrame:
    """Parameters (rows) of the trials (columns, one per key), with ``differs`` marking the rows
    whose values are not all equal. A parameter a trial lacks shows as None."""
    chosen = select_trials(trials, keys)
    params = [c for c in param_columns(trials) if chosen[c].notna().any()]
    table = chosen[params].T.astype(object)
    table = table.where(table.notna(), None)
    table.columns = list(chosen.index)
    differs = table.apply(lambda r: len({json.dumps(_plain(v), default=str) for v in r}) > 1, axis=1)
    table.insert(0, "differs", differs.astype(bool))
    table.index.name = "parameter"
    if only_different:
        table = table[table["differs"]]
    return table.sort_values("differs", ascending=False, kind="stable")


def metric_table(trials: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Known metrics (rows) of the trials (columns), plus which trial is best on each."""
    chosen = select_trials(trials, keys)
    rows = []
    for metric, axis in METRICS.items():
        if metric not in chosen or chosen[metric].isna().all():
            continue
        values = pd.to_numeric(chosen[metric], errors="coerce")
        best = values.idxmin() if axis.direction == "minimize" else values.idxmax()
        rows.append({"metric": axis.label, **values.to_dict(), "best": best})
    return pd.DataFrame(rows).set_index("metric") if rows else pd.DataFrame()


CURVE_DASHES = {"val_loss": "solid", "train_loss": "dot"}


def compare_curves_figure(
    curves: pd.DataFrame,
    labels: dict[str, str],
    metric: str | Sequence[str],
    *,
    x: str = "step",
    log_x: bool = False,
) -> go.Figure:
    """One line per trial and metric against ``x`` (``step``, or ``tokens`` from :func:`with_tokens`).

    ``curves`` has a ``key`` column. A trial keeps one colour; its metrics differ by dash
    (validation solid, training dotted), so training and validation curves overlay readably.
    """
    import plotly.graph_objects as go

    metrics = [metric] if isinstance(metric, str) else list(metric)
    fig = go.Figure()
    for i, key in enumerate(labels):
        for j, name in enumerate(metrics):
            line = curves[(curves["key"] == key) & (curves["metric"] == name)]
            if x != "step":
                line = line[line[x].notna()]
            if line.empty:
                continue
            fig.add_trace(
                go.Scatter(
                    x=line[x],
                    y=line["value"],
                    name=labels[key] + (f" · {name}" if len(metrics) > 1 else ""),
                    legendgroup=key,
                    mode="lines+markers" if len(line) < 30 else "lines",
                    line={
                        "color": PALETTE[i % len(PALETTE)],
                        "dash": CURVE_DASHES.get(name, ("dash", "dashdot", "longdash")[j % 3]),
                    },
                    marker={"size": 5},
                    hovertemplate=f"{labels[key]}<br>{name} %{{y:.4g}} at {x} %{{x:,}}<extra></extra>",
                )
            )
    fig.update_layout(
        height=420,
        margin={"l": 10, "r": 10, "t": 20, "b": 10},
        xaxis={"title": "training tokens" if x == "tokens" else x, "type": "log" if log_x else "linear"},
        yaxis={"title": metrics[0] if len(metrics) == 1 else " / ".join(metrics)},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def with_tokens(curves: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """``curves`` (with ``key``) plus ``tokens``: the tokens trained by each step, from the trial's
    ``tokens_trained / steps`` (a fixed number of tokens per step); NaN when the trial lacks them."""
    if not {"tokens_trained", "steps"} <= set(trials.columns) or curves.empty:
        return curves.assign(tokens=np.nan)
    chosen = select_trials(trials, list(dict.fromkeys(curves["key"])))
    tokens = pd.to_numeric(chosen["tokens_trained"], errors="coerce")
    steps = pd.to_numeric(chosen["steps"], errors="coerce")
    rate = curves["key"].map((tokens / steps.where(steps > 0)).to_dict())
    return curves.assign(tokens=curves["step"] * pd.to_numeric(rate, errors="coerce"))


def curves_of(store: Store, keys: Sequence[str]) -> pd.DataFrame:
    """Long-form curves of trials from any studies, with a ``key`` column."""
    by_study: dict[str, list[int]] = {}
    for key in keys:
        study, number = parse_trial_key(key)
        by_study.setdefault(study, []).append(number)
    parts = [store.curves(study, numbers) for study, numbers in by_study.items()]
    if not parts:
        return pd.DataFrame(columns=["study_name", "trial_number", "step", "metric", "value", "key"])
    curves = pd.concat(parts, ignore_index=True)
    return curves.assign(key=_keys(curves) if len(curves) else [])
