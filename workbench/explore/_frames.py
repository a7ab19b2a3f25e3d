"""Trial tables for the app: compute axes, parameter descriptions, filters, trial keys, studies.

Shape suffix: N trials. Every function takes and returns plain pandas/numpy, so it is tested
without a browser and cached by the app as it likes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd

from workbench.errors import WorkbenchError
from workbench.pareto import Direction
from workbench.store import Store

STORE_ENV = "WORKBENCH_STORE"  # the store the app reads, set by `workbench app`
MISSING = "n/a"  # the filter value of a trial that lacks the parameter (a dense layer has no n_experts)
MAX_CATEGORIES = 12  # a numeric parameter with at most this many values is filtered like a category
_SQL = Path(__file__).resolve().parent / "sql"


class ExploreError(WorkbenchError):
    """An analysis cannot be made from this selection; the message says what to change."""


@dataclass(frozen=True, kw_only=True)
class Axis:
    """A numeric trial column drawn on an axis, with the direction that is better."""

    column: str
    label: str
    direction: Direction = "minimize"


PERPLEXITY = Axis(column="val_ppl", label="validation perplexity")
COMPUTE_AXES: dict[str, Axis] = {
    a.column: a
    for a in (
        Axis(column="flops_per_token", label="active FLOPs per token"),
        Axis(column="params_total", label="total parameters"),
        Axis(column="params_active", label="active parameters"),
        Axis(column="tokens_per_s", label="training tokens/s", direction="maximize"),
        Axis(column="train_seconds", label="train time (s)"),
        Axis(column="peak_mem_bytes", label="peak memory (bytes)"),
    )
}
# Trial columns worth plotting or comparing, in display order, with the better direction.
METRICS: dict[str, Axis] = {
    PERPLEXITY.column: PERPLEXITY,
    "val_loss": Axis(column="val_loss", label="validation loss"),
    **COMPUTE_AXES,
    "flops_per_token_fvcore": Axis(column="flops_per_token_fvcore", label="FLOPs per token (fvcore)"),
    "mean_entropy_ratio": Axis(
        column="mean_entropy_ratio", label="routing balance (entropy ratio)", direction="maximize"
    ),
    "max_dropped_frac": Axis(column="max_dropped_frac", label="dropped tokens (max over layers)"),
}


def sql(name: str) -> str:
    """The text of ``workbench/explore/sql/<name>.sql``."""
    return (_SQL / f"{name}.sql").read_text(encoding="utf-8")


def data_version(store: Store) -> tuple[Any, ...]:
    """A fingerprint of the store's contents that changes whenever a trial is (re)ingested."""
    row = store.sql(sql("data_version")).iloc[0]
    return tuple(None if pd.isna(v) else str(v) for v in row)


def trials_in(version: tuple[Any, ...]) -> int:
    """The number of stored trials (any status) in a :func:`data_version` fingerprint."""
    return int(version[1])


# --- trial keys ------------------------------------------------------------------------------------


def trial_key(study_name: str, trial_number: int) -> str:
    """``"study#7"``: one string naming a trial across studies (selections, URLs, widgets)."""
    return f"{study_name}#{int(trial_number)}"


def parse_trial_key(key: str) -> tuple[str, int]:
    """Inverse of :func:`trial_key`; raises :class:`ExploreError` on a malformed key."""
    study, sep, number = str(key).rpartition("#")
    if not sep or not study or not number.isdigit():
        raise ExploreError(f"'{key}' does not name a trial; expected STUDY#NUMBER, e.g. quickstart#3")
    return study, int(number)


def with_keys(trials: pd.DataFrame) -> pd.DataFrame:
    """``trials`` with a ``key`` column (see :func:`trial_key`) in front."""
    keys = trials["study_name"].astype(str) + "#" + trials["trial_number"].astype("int64").astype(str)
    return trials.assign(key=keys.to_numpy())


def keys_from_selection(selection: Mapping[str, Any] | None) -> list[str]:
    """Trial keys of the points in a plotly selection event (``customdata[0]`` of each point)."""
    if not selection:
        return []
    points = selection.get("points") or []
    keys: list[str] = []
    for point in points:
        custom = point.get("customdata") if isinstance(point, Mapping) else None
        key = custom[0] if isinstance(custom, list | tuple) and custom else custom
        if isinstance(key, str) and "#" in key and key not in keys:
            keys.append(key)
    return keys


# --- parameters and filters ------------------------------------------------------------------------


def param_columns(trials: pd.DataFrame) -> list[str]:
    """The parameter columns of a :meth:`Store.trials` frame (``<section>.<field>``)."""
    return [c for c in trials.columns if "." in c and not c.startswith("param.")]


class ParamInfo(NamedTuple):
    """How a column varies over some trials, which decides its filter widget."""

    name: str
    categorical: bool
    values: list[Any]  # distinct values, sorted (categorical only; MISSING last if any trial lacks it)
    low: float  # numeric range (NaN for a categorical column)
    high: float
    n_missing: int
    sampled: bool

    @property
    def varies(self) -> bool:
        """More than one value (counting 'missing' as one): worth a filter or a dimension."""
        if self.categorical:
            return len(self.values) > 1
        return self.high > self.low or (self.n_missing > 0 and not math.isnan(self.low))


def describe_columns(
    trials: pd.DataFrame, columns: Iterable[str], sampled: Iterable[str] = (), ranges: Iterable[str] = ()
) -> dict[str, ParamInfo]:
    """A :class:`ParamInfo` per column: categorical when non-numeric or with few distinct values,
    except the ``ranges`` columns (metrics), which are numeric ranges whenever they are numbers."""
    sampled, ranges = set(sampled), set(ranges)
    infos = {}
    for name in columns:
        col = trials[name]
        missing = int(col.isna().sum())
        present = col.dropna()
        numeric = pd.api.types.is_numeric_dtype(present) and not pd.api.types.is_bool_dtype(present)
        distinct = present.unique()
        if not numeric or (len(distinct) <= MAX_CATEGORIES and name not in ranges):
            values = sorted(distinct.tolist(), key=_sort_key) + ([MISSING] if missing else [])
            infos[name] = ParamInfo(name, True, values, math.nan, math.nan, missing, name in sampled)
        else:
            low, high = float(present.min()), float(present.max())
            infos[name] = ParamInfo(name, False, [], low, high, missing, name in sampled)
    return infos


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int | float | np.number) else (1, str(value))


class ExplorerOptions(NamedTuple):
    """What the Pareto explorer offers for some trials."""

    design: list[str]  # parameters named in the one-line design (and filtered by default)
    shapes: list[str]  # categorical parameters with few values, to shape points by
    default_shape: str | None


def explorer_options(infos: dict[str, ParamInfo], max_shapes: int = 9) -> ExplorerOptions:
    """The sampled, varying parameters make the design (any varying ones if none was sampled);
    the first sampled categorical one besides ``memory.kind`` (the colour) shapes the points."""
    varying = [name for name, info in infos.items() if info.varies]
    design = [p for p in varying if infos[p].sampled] or varying[:6]
    shapes = [
        p
        for p in varying
        if infos[p].categorical and p != "memory.kind" and len(infos[p].values) <= max_shapes
    ]
    return ExplorerOptions(design, shapes, next((p for p in shapes if infos[p].sampled), None))


@dataclass(frozen=True, kw_only=True)
class Filter:
    """Keep trials whose ``column`` is one of ``values`` (categorical) or in [low, high] (numeric).

    A numeric filter keeps trials that lack the parameter; a categorical one keeps them when
    ``MISSING`` is among ``values``.
    """

    column: str
    values: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None

    def mask(self, trials: pd.DataFrame) -> npt.NDArray[np.bool_]:
        col = trials[self.column]
        if self.values is not None:
            wanted = [v for v in self.values if not (isinstance(v, str) and v == MISSING)]
            keep = col.isin(wanted).to_numpy()
            if MISSING in self.values:
                keep = keep | col.isna().to_numpy()
            return keep
        values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        keep_N = np.isnan(values)
        inside = np.ones(len(values), dtype=bool)
        if self.low is not None:
            inside &= values >= self.low
        if self.high is not None:
            inside &= values <= self.high
        return keep_N | inside


def apply_filters(trials: pd.DataFrame, filters: Sequence[Filter]) -> pd.DataFrame:
    """The trials that pass every filter (an unknown column is an :class:`ExploreError`)."""
    keep_N = np.ones(len(trials), dtype=bool)
    for f in filters:
        if f.column not in trials.columns:
            raise ExploreError(f"cannot filter on '{f.column}': no such column in these trials")
        keep_N &= f.mask(trials)
    return trials[keep_N]


def short_names(columns: Sequence[str]) -> dict[str, str]:
    """``memory.n_experts`` -> ``n_experts`` where the field name is unambiguous among ``columns``."""
    fields = [c.split(".", 1)[-1] for c in columns]
    return {c: f if fields.count(f) == 1 else c for c, f in zip(columns, fields, strict=True)}


def design_lines(trials: pd.DataFrame, params: Sequence[str]) -> pd.Series:
    """One line per trial naming its design: ``switch · d_model=64 · n_experts=8 · lr=0.003``.

    ``memory.kind`` comes first, bare; parameters the trial lacks are skipped. Each distinct value
    is formatted once, so this stays fast for 10^5 trials.
    """
    names = short_names(list(params))
    columns = []
    for name in sorted(params, key=lambda p: p != "memory.kind"):
        col = trials[name]
        prefix = "" if name == "memory.kind" else f"{names[name]}="
        text = {v: prefix + fmt_value(v) for v in col.dropna().unique()}
        columns.append(col.map(text).to_numpy(dtype=object))  # missing stays NaN, a float
    lines = [" · ".join(part for part in row if isinstance(part, str)) for row in zip(*columns, strict=True)]
    return pd.Series(lines if columns else [""] * len(trials), index=trials.index, dtype=object)


def fmt_value(value: Any) -> str:
    """A parameter value as short text: integral floats as ints (64.0 -> 64), others to 3 digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float | np.floating):
        number = float(value)
        return f"{int(number)}" if number.is_integer() and abs(number) < 1e15 else f"{number:.3g}"
    return str(value)


def value_label(value: object) -> str:
    """A parameter value as a category label: integral floats without ".0", missing as MISSING."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return MISSING
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def natural_key(label: str) -> tuple[int, float, str]:
    """Sort key of category labels: numbers in numeric order, then text, then MISSING last."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (2 if label == MISSING else 1, 0.0, label)


def fmt_number(value: Any) -> str:
    """Compact engineering notation for tables and hover text: 1.23M, 45.6k, 0.0031."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    v = float(value)
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.4g}"


# --- studies ---------------------------------------------------------------------------------------


def studies_overview(studies: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """One row per study: space, trial counts by status, best perplexity (and its trial), last update.

    ``studies`` is :meth:`Store.studies`; ``trials`` is :meth:`Store.trials` of every status
    (``with_params=False`` is enough).
    """
    columns = [
        "study_name",
        "space_name",
        "n_trials",
        "n_complete",
        "n_failed",
        "n_infeasible",
        "n_pruned",
        "n_running",
        "best_val_ppl",
        "best_trial",
        "last_update",
    ]
    if studies.empty:
        return pd.DataFrame(columns=columns)
    done = trials[(trials["status"] == "complete") & trials["val_ppl"].notna()]
    best = done.sort_values("val_ppl", kind="stable").drop_duplicates("study_name")
    best = best.set_index("study_name")
    out = studies.assign(
        best_val_ppl=studies["study_name"].map(best["val_ppl"]),
        best_trial=studies["study_name"].map(best["trial_number"]).astype("Int64"),
        last_update=studies[["updated_at", "last_finished_at"]].max(axis=1),
        n_trials=studies["n_stored"],
    )
    return out[columns].reset_index(drop=True)


def study_objectives(studies: pd.DataFrame, study_name: str) -> list[Axis]:
    """The study's declared objectives as axes (``val_ppl`` when none are declared)."""
    row = studies[studies["study_name"] == study_name]
    raw = row["objectives_json"].iloc[0] if len(row) else None
    declared = json.loads(raw) if isinstance(raw, str) else []
    axes = []
    for o in declared:
        name, direction = str(o.get("name")), o.get("direction", "minimize")
        base = METRICS.get(name)
        axes.append(Axis(column=name, label=base.label if base else name, direction=direction))
    return axes or [PERPLEXITY]


def failed_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials that did not complete, with their reason, newest first."""
    bad = trials[~trials["status"].isin(["complete", "running", "waiting"])]
    cols = [
        c for c in ["study_name", "trial_number", "status", "memory_kind", "error", "finished_at"] if c in bad
    ]
    return bad.sort_values(["study_name", "trial_number"], ascending=[True, False])[cols].reset_index(
        drop=True
    )


def space_params(space_json: str | None) -> dict[str, Any]:
    """The parameters of a stored space JSON, as written by the Space DSL ({} when absent)."""
    if not isinstance(space_json, str):
        return {}
    params = json.loads(space_json).get("params")
    return params if isinstance(params, dict) else {}
