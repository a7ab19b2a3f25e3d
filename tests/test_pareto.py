"""workbench.pareto against a brute-force definition of dominance."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from workbench.pareto import Direction, dominance_mask, front_mask, non_dominated_mask


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
    assert non_dominated_mask(empty, [("x", "minimize"), ("y", "minimize")]).tolist() == []


def test_bad_arguments() -> None:
    df = pd.DataFrame({"x": [1.0]})
    with pytest.raises(ValueError, match="direction 'up'"):
        non_dominated_mask(df, [("x", "up")])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="at least one objective"):
        non_dominated_mask(df, [])


# --- the sweep against the definition ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("x_dir", ["minimize", "maximize"])
@pytest.mark.parametrize("seed", range(4))
def test_front_mask_matches_the_quadratic_definition(seed: int, x_dir: str) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    # Few distinct values: many ties in x, in y and in both; some NaN.
    df = pd.DataFrame({"x": rng.integers(0, 25, n).astype(float), "y": rng.integers(0, 25, n).astype(float)})
    df.loc[rng.choice(n, 10, replace=False), "x"] = np.nan
    sign = 1.0 if x_dir == "minimize" else -1.0
    expected = dominance_mask(np.column_stack([sign * df["x"].to_numpy(), df["y"].to_numpy()]))
    got = front_mask(df["x"], df["y"], x_dir, "minimize")  # type: ignore[arg-type]
    assert got.tolist() == expected.tolist()


def test_front_mask_edge_cases() -> None:
    assert front_mask([], [], "minimize", "minimize").tolist() == []
    assert front_mask([np.nan], [1.0], "minimize", "minimize").tolist() == [False]
    assert front_mask([1, 1], [2, 2], "minimize", "minimize").tolist() == [True, True]
    assert front_mask([1, 2, 3], [3, 2, 1], "minimize", "minimize").tolist() == [True] * 3
