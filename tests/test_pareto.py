"""workbench.pareto against a brute-force definition of dominance."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from workbench.pareto import Direction, non_dominated_mask, pareto_front


def brute_force(df: pd.DataFrame, objectives: list[tuple[str, Direction]]) -> list[bool]:
    """Straight from the definition: no other complete row is no worse everywhere and better somewhere."""
    sign = {"minimize": 1.0, "maximize": -1.0}

    def cost(i: int) -> list[float]:
        return [sign[d] * float(df[c].iloc[i]) for c, d in objectives]

    complete = [i for i in range(len(df)) if not any(np.isnan(cost(i)))]
    mask = []
    for i in range(len(df)):
        if i not in complete:
            mask.append(False)
            continue
        a = cost(i)
        dominated = any(
            all(b <= x for b, x in zip(cost(j), a, strict=True))
            and any(b < x for b, x in zip(cost(j), a, strict=True))
            for j in complete
            if j != i
        )
        mask.append(not dominated)
    return mask


@pytest.mark.parametrize(("n_objectives", "seed"), itertools.product([1, 2, 3, 4], range(5)))
def test_mask_matches_brute_force_with_ties_and_nan(n_objectives: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 60
    # Few distinct values make many ties; some NaN rows must drop out.
    data = rng.integers(0, 5, size=(n, n_objectives)).astype(float)
    data[rng.random((n, n_objectives)) < 0.1] = np.nan
    df = pd.DataFrame(data, columns=[f"o{i}" for i in range(n_objectives)])
    directions: list[Direction] = ["minimize", "maximize"]
    objectives = [(f"o{i}", directions[(i + seed) % 2]) for i in range(n_objectives)]
    assert non_dominated_mask(df, objectives).tolist() == brute_force(df, objectives)


def test_identical_points_both_stay_and_nan_never_dominates() -> None:
    df = pd.DataFrame({"x": [1.0, 1.0, 2.0, np.nan, 0.0], "y": [1.0, 1.0, 0.5, 0.0, np.nan]})
    assert non_dominated_mask(df, [("x", "minimize"), ("y", "minimize")]).tolist() == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_infinity_is_an_ordinary_value() -> None:
    df = pd.DataFrame({"x": [1.0, 2.0], "y": [np.inf, 1.0]})
    assert non_dominated_mask(df, [("x", "minimize"), ("y", "minimize")]).tolist() == [True, True]
    assert non_dominated_mask(df, [("y", "minimize")]).tolist() == [False, True]


def test_nullable_and_empty_columns() -> None:
    df = pd.DataFrame({"x": pd.array([1, None, 3], dtype="Int64"), "y": [3.0, 0.0, 1.0]})
    assert non_dominated_mask(df, [("x", "minimize"), ("y", "minimize")]).tolist() == [True, False, True]
    empty = df.iloc[:0]
    assert non_dominated_mask(empty, [("x", "minimize")]).tolist() == []
    assert pareto_front(empty, "x", "y").empty


def test_pareto_front_is_sorted_for_a_step_line() -> None:
    df = pd.DataFrame({"flops": [3, 1, 2, 2, 4], "ppl": [10.0, 30.0, 20.0, 25.0, 10.0], "id": list("abcde")})
    front = pareto_front(df, "flops", "ppl")
    assert front["id"].tolist() == ["b", "c", "a"]
    acc = pareto_front(df, "flops", "ppl", y_direction="maximize")
    assert acc["id"].tolist() == ["b"]


def test_bad_arguments() -> None:
    df = pd.DataFrame({"x": [1.0]})
    with pytest.raises(ValueError, match="direction 'up'"):
        non_dominated_mask(df, [("x", "up")])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="at least one objective"):
        non_dominated_mask(df, [])
