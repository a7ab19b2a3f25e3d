"""Which parameters matter for each objective: optuna's importance evaluators on stored trials.

The store keeps every trial's parameters and objective values, so an in-memory optuna study is
rebuilt from them (distributions inferred from the observed values) and handed to
``optuna.importance.get_param_importances``. A parameter that some of the trials lack (the
experts of a dense layer) cannot be assessed over all of them: it is left out and named, and
filtering to one selection method brings it back.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from workbench.explore._frames import Axis, ExploreError

if TYPE_CHECKING:
    import optuna
    import plotly.graph_objects as go

MIN_TRIALS = 10
MAX_TRIALS = 3000
EVALUATORS = {
    "ped-anova": "PED-ANOVA (fast, no extra packages)",
    "fanova": "fANOVA (random forests; needs scikit-learn)",
    "mdi": "mean decrease in impurity (needs scikit-learn)",
}


class ImportanceResult(NamedTuple):
    """Importances (summing to 1 per objective) over the parameters all used trials carry."""

    table: pd.DataFrame  # objective, parameter, importance
    n_trials: int
    n_available: int  # trials with every objective before subsampling to MAX_TRIALS
    params: list[str]
    left_out: list[str]  # varying parameters that some trials lack
    evaluator: str


def evaluator_available(name: str) -> bool:
    """fANOVA and MDI need scikit-learn; PED-ANOVA needs nothing beyond optuna."""
    if name == "ped-anova":
        return True
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return False
    return True


def _evaluator(name: str, seed: int) -> optuna.importance.BaseImportanceEvaluator:
    import optuna

    if name not in EVALUATORS:
        raise ExploreError(f"unknown importance evaluator '{name}'; valid: {', '.join(EVALUATORS)}")
    if not evaluator_available(name):
        raise ExploreError(f"the {EVALUATORS[name]} evaluator needs scikit-learn: pip install scikit-learn")
    if name == "fanova":
        return optuna.importance.FanovaImportanceEvaluator(seed=seed)
    if name == "mdi":
        return optuna.importance.MeanDecreaseImpurityImportanceEvaluator(seed=seed)
    return optuna.importance.PedAnovaImportanceEvaluator()


def infer_distribution(values: pd.Series) -> optuna.distributions.BaseDistribution | None:
    """A distribution covering the observed values (None for a constant): categorical for strings
    and booleans, int or float ranges for numbers, log-scaled when positive and spanning >= 30x."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    present = values.dropna()
    distinct = present.unique()
    if len(distinct) < 2:
        return None
    if not pd.api.types.is_numeric_dtype(present) or pd.api.types.is_bool_dtype(present):
        return CategoricalDistribution(sorted(str(v) for v in distinct))
    low, high = float(present.min()), float(present.max())
    log = low > 0 and high / low >= 30
    if np.all(np.mod(present.to_numpy(dtype=float), 1) == 0):
        return IntDistribution(int(low), int(high), log=log)
    return FloatDistribution(low, high, log=log)


def param_importances(
    trials: pd.DataFrame,
    params: Sequence[str],
    objectives: Sequence[Axis],
    *,
    evaluator: str = "ped-anova",
    min_trials: int = MIN_TRIALS,
    max_trials: int = MAX_TRIALS,
    seed: int = 0,
) -> ImportanceResult:
    """Importance of ``params`` for each objective, over complete ``trials`` with all objectives.

    Raises :class:`ExploreError` with the reason when too few trials or no varying parameter remain.
    """
    import optuna

    missing = [o.column for o in objectives if o.column not in trials.columns]
    if missing:
        raise ExploreError(f"no objective column {', '.join(missing)} in these trials")
    if not objectives:
        raise ExploreError("choose at least one objective")
    done = trials[trials["status"] == "complete"] if "status" in trials else trials
    values = done[[o.column for o in objectives]].apply(pd.to_numeric, errors="coerce")
    done = done[np.isfinite(values.to_numpy(dtype=float, na_value=np.nan)).all(axis=1)]
    n_available = len(done)
    if n_available < min_trials:
        raise ExploreError(
            f"importance needs at least {min_trials} complete trials with "
            f"{', '.join(o.column for o in objectives)}; this selection has {n_available}. "
            "Run more trials or widen the filters."
        )
    if n_available > max_trials:
        done = done.sample(max_trials, random_state=seed)
    distributions: dict[str, Any] = {}
    left_out = []
    for name in params:
        if name not in done.columns:
            continue
        dist = infer_distribution(done[name])
        if dist is None:
            continue
        if done[name].isna().any():
            left_out.append(name)
            continue
        distributions[name] = dist
    if not distributions:
        reason = (
            f" ({', '.join(left_out)} are missing in some trials: filter to one selection method)"
            if left_out
            else ""
        )
        raise ExploreError(f"no parameter varies over all of these trials{reason}")
    evaluator_obj = _evaluator(evaluator, seed)
    rows = []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    records = done[[*distributions, *(o.column for o in objectives)]].to_dict("records")
    for objective in objectives:
        study = optuna.create_study(direction=objective.direction)
        study.add_trials(
            [
                optuna.trial.create_trial(
                    params={n: _param_value(row[n], d) for n, d in distributions.items()},
                    distributions=distributions,
                    value=float(row[objective.column]),
                )
                for row in records
            ]
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optuna marks the evaluators experimental
            scores = optuna.importance.get_param_importances(study, evaluator=evaluator_obj, normalize=True)
        rows += [
            {"objective": objective.column, "parameter": p, "importance": float(v)} for p, v in scores.items()
        ]
    table = pd.DataFrame(rows, columns=["objective", "parameter", "importance"])
    return ImportanceResult(table, len(done), n_available, sorted(distributions), sorted(left_out), evaluator)


def _param_value(value: Any, dist: Any) -> Any:
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return str(value)
    if isinstance(dist, IntDistribution):
        return int(value)
    return float(value)


def importance_figure(result: ImportanceResult) -> go.Figure:
    """Horizontal bars, one panel per objective, parameters sorted by their largest importance."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    objectives = list(dict.fromkeys(result.table["objective"]))
    order = result.table.groupby("parameter")["importance"].max().sort_values().index.tolist()
    fig = make_subplots(rows=1, cols=len(objectives), shared_yaxes=True, subplot_titles=objectives)
    for j, objective in enumerate(objectives, start=1):
        part = result.table[result.table["objective"] == objective].set_index("parameter").reindex(order)
        fig.add_trace(
            go.Bar(
                x=part["importance"],
                y=order,
                orientation="h",
                name=objective,
                text=[f"{v:.2f}" if not math.isnan(v) else "" for v in part["importance"]],
                textposition="auto",
                hovertemplate="%{y}: %{x:.3f}<extra>" + objective + "</extra>",
            ),
            row=1,
            col=j,
        )
        fig.update_xaxes(title_text="importance", range=[0, 1], row=1, col=j)
    fig.update_layout(
        height=120 + 36 * len(order), showlegend=False, margin={"l": 10, "r": 10, "t": 40, "b": 10}
    )
    return fig
