"""The search-space DSL: sampling, conditionals, derived values, constraints, grid, JSON, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import optuna
import pytest

from workbench.errors import ConfigError, SpaceError
from workbench.space import (
    Budget,
    Categorical,
    Constraint,
    Derived,
    Fixed,
    Float,
    Int,
    Objective,
    Space,
    load_space,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

# Anchored at the repository root so the shipped-space tests check the same files from any directory.
ROOT = Path(__file__).resolve().parents[1]


def shipped_spaces() -> list[Path]:
    """The space files under ``spaces/``; never empty, so a moved folder fails instead of passing."""
    paths = sorted((ROOT / "spaces").glob("*.py"))
    assert paths, f"no space files under {ROOT / 'spaces'}"
    return paths


def moe_space(**kw) -> Space:
    return Space(
        "moe",
        {
            "model.d_model": Categorical([32, 64]),
            "memory.kind": Categorical(["dense", "switch"]),
            "memory.n_experts": Int(2, 16, log=True, when={"memory.kind": "switch"}),
            "memory.expert_width": Derived("2 * model.d_model", when={"memory.kind": "switch"}),
            "train.lr": Float(1e-4, 1e-2, log=True),
            "train.batch_size": 8,
        },
        **kw,
    )


def sample_many(space: Space, n: int = 40) -> list:
    study = optuna.create_study(directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=1))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(space.sample(trial))
        study.tell(trial, [1.0] * len(space.directions))
    return out


def test_conditional_parameters_are_sampled_only_when_their_condition_holds() -> None:
    samples = sample_many(moe_space())
    kinds = {s.values["memory.kind"] for s in samples}
    assert kinds == {"dense", "switch"}
    for s in samples:
        has_experts = "memory.n_experts" in s.values
        assert has_experts == (s.values["memory.kind"] == "switch")
        if has_experts:
            assert 2 <= s.values["memory.n_experts"] <= 16
            assert s.values["memory.expert_width"] == 2 * s.values["model.d_model"]
            assert s.config.model.memory.n_experts == s.values["memory.n_experts"]


def test_sampled_values_respect_bounds_and_types() -> None:
    for s in sample_many(moe_space()):
        assert 1e-4 <= s.values["train.lr"] <= 1e-2
        assert s.values["train.batch_size"] == 8
        assert s.config.train.lr == s.values["train.lr"]


def test_constraint_marks_samples_infeasible_with_its_name() -> None:
    space = moe_space(constraints=[Constraint("cost.params_total < 150_000", name="small")])
    samples = sample_many(space)
    infeasible = [s for s in samples if not s.feasible]
    feasible = [s for s in samples if s.feasible]
    assert infeasible and feasible
    assert all("small" in s.infeasible_reason for s in infeasible)


def test_constraint_reading_an_inactive_parameter_asks_for_a_guard() -> None:
    space = moe_space(constraints=["memory.n_experts <= 8"])
    with pytest.raises(ConfigError, match="guard it"):
        space.resolve({"model.d_model": 32, "memory.kind": "dense", "train.lr": 1e-3, "train.batch_size": 8})


def test_guarded_constraint_evaluates_with_short_circuit() -> None:
    space = moe_space(constraints=["memory.kind != 'switch' or memory.n_experts <= 4"])
    assert space.resolve({"model.d_model": 32, "memory.kind": "dense", "train.lr": 1e-3}).feasible
    values = {"model.d_model": 32, "memory.kind": "switch", "memory.n_experts": 8, "memory.expert_width": 64}
    assert not space.resolve({**values, "train.lr": 1e-3}).feasible


def test_grid_enumerates_conditionals() -> None:
    space = Space(
        "g",
        {
            "memory.kind": Categorical(["dense", "switch"]),
            "memory.n_experts": Int(2, 8, log=True, when={"memory.kind": "switch"}),
            "train.lr": Float(1e-3, 1e-2, grid=[1e-3, 1e-2]),
        },
    )
    points = space.grid()
    # dense: 2 lrs; switch: {2,4,8} x 2 lrs.
    assert len(points) == 2 + 3 * 2
    assert all(("memory.n_experts" in p) == (p["memory.kind"] == "switch") for p in points)
    assert len({json.dumps(p, sort_keys=True) for p in points}) == len(points)


def test_json_round_trip_preserves_the_space_and_its_hash() -> None:
    space = moe_space(
        constraints=[Constraint("cost.flops_per_token < 1e9", name="cap")], budget=Budget(tokens=1234)
    )
    restored = Space.from_json(json.loads(json.dumps(space.to_json())))
    assert restored.to_json() == space.to_json()
    assert restored.space_hash() == space.space_hash()


def test_config_hash_is_stable_and_distinguishes_configs() -> None:
    space = moe_space()
    a = space.resolve({"model.d_model": 32, "memory.kind": "dense", "train.lr": 1e-3})
    b = space.resolve({"model.d_model": 32, "memory.kind": "dense", "train.lr": 1e-3})
    c = space.resolve({"model.d_model": 64, "memory.kind": "dense", "train.lr": 1e-3})
    assert a.config.config_hash() == b.config.config_hash() != c.config.config_hash()
    assert len(a.config.config_hash()) == 16


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"memory.kind": Categorical([])}, "'memory.kind': Categorical has no choices"),
        ({"train.lr": Float(1e-2, 1e-4)}, r"'train.lr': Float low \(0.01\) > high \(0.0001\); swap them"),
        ({"model.d_model": Int(64, 32)}, r"'model.d_model': Int low \(64\) > high \(32\)"),
        (
            {"memory.kind": Categorical(["dense", "swtich"])},
            "unknown memory layer 'swtich' .*did you mean 'switch'",
        ),
        ({"memory.kind": "nope"}, "unknown memory layer 'nope'"),
        ({"model.d_modle": 3}, "did you mean 'model.d_model'"),
        ({"lr": 3}, "names are '<section>.<field>'"),
        ({"train.lr": Float(0, 1, log=True)}, "log scale needs low > 0"),
        (
            {"memory.n_experts": Int(2, 4, when={"memory.kind": "switch"})},
            "condition on 'memory.kind', which is not declared before it",
        ),
        (
            {
                "memory.kind": Categorical(["dense"]),
                "memory.n_experts": Int(2, 4, when={"memory.kind": "switch"}),
            },
            "can never hold",
        ),
        ({"memory.kind": "dense", "memory.n_experts": 4}, "memory layer 'dense' has no knob 'n_experts'"),
        ({"model.d_model": Derived("2 * model.d_ff")}, "unknown name 'model.d_ff'"),
        ({"model.d_model": Derived("__import__('os')")}, "may be called"),
    ],
)
def test_definition_errors_name_the_parameter_and_the_fix(params: dict, message: str) -> None:
    with pytest.raises(SpaceError, match=message):
        Space("bad", params)


def test_unknown_objective_and_constraint_names_are_rejected() -> None:
    with pytest.raises(SpaceError, match="unknown metric"):
        Space("bad", {}, objectives=[Objective("accuracy")])
    with pytest.raises(SpaceError, match=r"unknown name 'cost\.flops'"):
        Space("bad", {"train.lr": 1e-3}, constraints=["cost.flops < 3"])


def test_overrides_fix_parameters_and_budget() -> None:
    space = moe_space().with_overrides({"model.d_model": 64, "train.tokens": 999})
    assert space.params["model.d_model"] == Fixed(64)
    assert (
        space.resolve({"model.d_model": 64, "memory.kind": "dense", "train.lr": 1e-3}).config.train.tokens
        == 999
    )


def test_load_space_reports_file_errors_in_one_line(tmp_path) -> None:
    with pytest.raises(SpaceError, match="does not exist"):
        load_space(tmp_path / "missing.py")
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from workbench.space import Space, Categorical\nspace = Space('x', {'memory.kind': Categorical([])})\n"
    )
    with pytest.raises(SpaceError, match=r"bad.py: parameter 'memory.kind'"):
        load_space(bad)
    broken = tmp_path / "broken.py"
    broken.write_text("x = 1\ny = 1 / 0\n")
    with pytest.raises(SpaceError, match=r"broken.py:2: ZeroDivisionError"):
        load_space(broken)
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(SpaceError, match="defines no `space = Space"):
        load_space(empty)


def test_shipped_spaces_load() -> None:
    for path in shipped_spaces():
        assert load_space(path).name


def test_fixing_a_parent_drops_children_whose_condition_cannot_hold() -> None:
    space = moe_space().with_overrides({"memory.kind": "dense"})
    assert "memory.n_experts" not in space.params and "memory.expert_width" not in space.params
    kept = moe_space().with_overrides({"memory.kind": "switch"})
    assert "memory.n_experts" in kept.params


def test_every_shipped_space_accepts_each_of_its_methods_fixed_with_set() -> None:
    """``--set memory.kind=K`` on a space whose conditions list several kinds: the conditions that
    still hold narrow to K (they once failed the definition check as "can never hold")."""
    for path in shipped_spaces():
        space = load_space(path)
        kinds = space.params.get("memory.kind")
        if not isinstance(kinds, Categorical):
            continue
        for kind in kinds.choices:
            fixed = Space.from_json(space.with_overrides({"memory.kind": kind}).to_json())
            for name, param in fixed.params.items():
                assert param.when.get("memory.kind", (kind,)) == (kind,), (path, kind, name)
            trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
            sample = fixed.sample(trial)
            assert sample.config is not None and sample.config.model.memory.kind == kind, (path, kind)


def test_cover_lists_one_point_per_value_and_survives_json() -> None:
    space = Space(
        "c", {"memory.kind": Categorical(["dense", "switch"]), "train.lr": 1e-3}, cover=["memory.kind"]
    )
    assert space.cover_points() == [{"memory.kind": "dense"}, {"memory.kind": "switch"}]
    assert Space.from_json(space.to_json()).cover == ("memory.kind",)
    with pytest.raises(SpaceError, match="only a Categorical parameter"):
        Space("c", {"train.lr": Float(1e-3, 1e-2)}, cover=["train.lr"])


def test_cover_of_a_conditional_parameter_sets_its_parents() -> None:
    space = Space(
        "c",
        {
            "memory.kind": Categorical(["switch", "hash"]),
            "memory.variant": Categorical(["random", "multihash"], when={"memory.kind": "hash"}),
            "memory.n_hashes": Categorical([2], when={"memory.variant": "multihash"}),
        },
        cover=["memory.variant"],
    )
    assert space.cover_points() == [
        {"memory.kind": "hash", "memory.variant": "random"},
        {"memory.kind": "hash", "memory.variant": "multihash"},
    ]


# --- crash-proof inputs (docs/RELIABILITY.md) ------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train.tokens": "abc"}, "--set train.tokens='abc': train.tokens takes an integer, not str 'abc'"),
        (
            {"model.d_model": "abc"},
            "--set model.d_model='abc': model.d_model takes an integer, not str 'abc'",
        ),
        ({"train.lr": "fast"}, "train.lr takes a number, not str 'fast'"),
        ({"train.compile": 1}, "train.compile takes true or false, not int 1"),
        ({"memory.n_experts": "many"}, "memory.n_experts takes an integer, not str 'many'"),
        ({"memory.kind": 3}, "memory.kind takes a string, not int 3"),
    ],
)
def test_set_values_are_checked_against_the_field_type(overrides: dict, message: str) -> None:
    with pytest.raises(SpaceError, match=re.escape(message)):
        moe_space().with_overrides(overrides)


def test_set_values_are_converted_to_the_field_type() -> None:
    space = moe_space().with_overrides({"train.tokens": 5e4, "train.lr": 1, "memory.n_experts": 8.0})
    assert space.params["train.tokens"] == Fixed(50000) and type(space.params["train.tokens"].value) is int
    assert space.budget.tokens == 50000
    assert type(space.params["train.lr"].value) is float
    assert type(space.params["memory.n_experts"].value) is int


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("9 ** 9 ** 9", "exponent 387420489 is above 64"),
        ("(2 ** 64) ** 64", "is above 1e\\+308"),
        ("'x' * 10 ** 12", "longer than 10000 items"),
        (
            "2 ** 60 * 2 ** 60 * 2 ** 60 * 2 ** 60 * 2 ** 60 * 2 ** 60 * 2 ** 60 * 2 ** 60 * 2 ** 60 * 2 ** 60"
            " * 2 ** 60 * 2 ** 60 * 2 ** 60 * 2 ** 60 * 2 ** 60 * 2 ** 60 * 2 ** 60 * 2 ** 60",
            "bits is above",
        ),
    ],
)
def test_expressions_refuse_huge_powers_and_values_at_once(expr: str, message: str) -> None:
    from workbench.space._expr import ExprError, evaluate

    with pytest.raises(ExprError, match=message):
        evaluate(expr, {})
    assert evaluate("2 ** 64 + 2 ** -3", {}) == 2**64 + 0.125


def test_a_space_file_with_two_spaces_names_both(tmp_path) -> None:
    two = tmp_path / "two.py"
    two.write_text(
        "from workbench.space import Space\n"
        "space = Space('a', {'memory.kind': 'dense'})\n"
        "other = Space('b', {'memory.kind': 'dense'})\n"
    )
    with pytest.raises(
        SpaceError, match=r"two.py: defines 2 Space objects at module level \(`space`, `other`\)"
    ):
        load_space(two)


# --- knob values that can never build a model are refused when the space is built ----------------

AVGK = {"memory.kind": "avgk", "memory.d_ff": 1024}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {**AVGK, "memory.block_size": 48},
            "no design with memory.kind='avgk' can be built: memory.block_size: must divide d_ff=1024, "
            "got 48; the nearest that does is 32; change memory.block_size",
        ),
        (
            {**AVGK, "memory.block_size": 64, "memory.k": 32},
            "memory.k: must be in [1, n_blocks=16] (d_ff / block_size), got 32; change memory.k",
        ),
        (
            {"memory.kind": "gshard", "memory.n_experts": 4, "memory.k": 8},
            "memory.k: must be between 1 and memory.n_experts=4, got 8",
        ),
        (
            {"memory.kind": "switch", "memory.capacity_factor": -1.0},
            "memory.capacity_factor: must be >= 0 (0 = dropless), got -1.0; change memory.capacity_factor",
        ),
        (
            {"model.d_model": 100, "model.n_heads": 8},
            "no design can be built: model.n_heads: 8 does not divide model.d_model=100; change model.n_heads",
        ),
        (  # the default block size (16) does not divide 1000 cells
            {"memory.kind": "avgk", "memory.d_ff": 1000},
            "got 16; the nearest that does is 20; set memory.block_size (its default does not fit)",
        ),
        (  # every choice fails: the kind cannot be built, and may be dropped
            {
                "memory.kind": Categorical(["dense", "avgk"]),
                "memory.d_ff": 1024,
                "memory.block_size": Categorical([48, 96], when={"memory.kind": "avgk"}),
            },
            "no design with memory.kind='avgk' can be built: memory.block_size: must divide d_ff=1024, got 48; "
            "the nearest that does is 32; change memory.block_size or drop 'avgk' from memory.kind's choices",
        ),
        (  # a derived value that cannot be computed for one choice
            {**AVGK, "aux.blocks": Categorical([0, 16]), "memory.block_size": Derived("1024 // aux.blocks")},
            "aux.blocks=0 can never be built with memory.kind='avgk': memory.block_size: derived value",
        ),
    ],
)
def test_knob_values_that_never_build_a_model_are_refused_naming_the_knob(params: dict, message: str) -> None:
    with pytest.raises(SpaceError, match=re.escape(message)) as refused:
        Space("bad", params)
    assert "\n" not in str(refused.value)


def test_a_bad_categorical_choice_is_refused_by_name_and_value() -> None:
    params = {
        "memory.kind": Categorical(["dense", "avgk"]),
        "memory.d_ff": 1024,
        "memory.block_size": Categorical([32, 48, 96], when={"memory.kind": "avgk"}),
    }
    with pytest.raises(
        SpaceError,
        match=re.escape(
            "space 'bad': memory.block_size=48, 96 can never be built with memory.kind='avgk': "
            "memory.block_size: must divide d_ff=1024, got 48"
        )
        + ".*drop them from memory.block_size's choices",
    ):
        Space("bad", params)
    with pytest.raises(SpaceError, match=r"model.d_model=66 can never be built: model.n_heads: 4 does not"):
        Space(
            "bad", {"model.d_model": Categorical([64, 66]), "memory.kind": Categorical(["dense", "switch"])}
        )


def test_a_bad_choice_of_an_inactive_parameter_is_not_refused() -> None:
    """Its condition never holds, so it never reaches a trial (here: fixed off by --set)."""
    space = Space(
        "ok",
        {
            "memory.kind": Categorical(["dense", "avgk"]),
            "memory.d_ff": 1024,
            "memory.block_size": Categorical([32, 64], when={"memory.kind": "avgk"}),
        },
    )
    assert "memory.block_size" not in space.with_overrides({"memory.kind": "dense"}).params
    assert (
        "memory.block_size"
        not in space.with_overrides({"memory.kind": "dense", "memory.block_size": 48}).params
    )


@pytest.mark.parametrize(
    ("param", "message"),
    [
        (
            {"memory.kind": "switch", "memory.n_experts": Int(0, 8)},
            "memory.n_experts=0 (the low end of Int(0, 8)) can never be built with memory.kind='switch': "
            "memory.n_experts: must be >= 1, got 0; raise its low bound",
        ),
        (
            {"memory.kind": "gshard", "memory.n_experts": 8, "memory.k": Int(2, 16)},
            "memory.k=16 (the high end of Int(2, 16)) can never be built",
        ),
        (
            {"memory.kind": "switch", "memory.capacity_factor": Float(-1.0, 2.0)},
            "memory.capacity_factor=-1.0 (the low end of Float(-1.0, 2.0))",
        ),
        (  # the failure does not depend on the other range (one message at both of its ends)
            {**AVGK, "memory.block_size": Categorical([48, 64]), "memory.k": Int(1, 4)},
            "memory.block_size=48 can never be built",
        ),
    ],
)
def test_range_ends_that_never_build_a_model_are_refused(param: dict, message: str) -> None:
    with pytest.raises(SpaceError, match=re.escape(message)):
        Space("bad", param)


def test_values_that_work_in_some_combination_or_inside_a_range_are_left_to_the_trial() -> None:
    # 100 fails (it does not divide 1024) but only the ends 8 and 128 are tried.
    Space("ok", {**AVGK, "memory.block_size": Int(8, 128)})
    # k=32 with block_size=128 fails, but each value works in another pairing.
    Space("ok", {**AVGK, "memory.k": Categorical([4, 32]), "memory.block_size": Categorical([32, 128])})


def test_set_that_makes_the_space_impossible_is_refused_naming_the_setting() -> None:
    space = Space(
        "s",
        {
            "memory.kind": Categorical(["dense", "avgk"]),
            "memory.d_ff": 1024,
            "memory.block_size": Categorical([32, 64], when={"memory.kind": "avgk"}),
        },
    )
    with pytest.raises(
        SpaceError, match=r"^--set memory.block_size=48: space 's': no design with memory.kind='avgk'"
    ):
        space.with_overrides({"memory.block_size": 48})
    with pytest.raises(SpaceError, match=r"^--set memory.d_ff=1000: .*must divide d_ff=1000, got 32"):
        space.with_overrides({"memory.d_ff": 1000})
    # The tokenizer is checked when the space is built too, not by every trial failing in turn.
    with pytest.raises(
        SpaceError, match=r"^--set data.tokenizer='bytes': .*unknown tokenizer 'bytes'; valid: byte, bpe"
    ):
        space.with_overrides({"data.tokenizer": "bytes"})


def test_shipped_spaces_build_fast() -> None:
    """Every shipped space passes the check; building the largest stays far below 0.2 s."""
    import time

    for path in shipped_spaces() + sorted((ROOT / "spaces" / "replicate").glob("*.py")):
        data = load_space(path).to_json()
        start = time.perf_counter()
        Space.from_json(data)
        assert time.perf_counter() - start < 0.2, path


def test_cli_run_with_an_impossible_set_exits_2_in_one_line_and_creates_no_store(tmp_path: Path) -> None:
    import subprocess
    import sys

    space = tmp_path / "space.py"
    space.write_text(
        "from workbench.space import Categorical, Space\n"
        "space = Space('s', {'memory.kind': 'avgk', 'memory.d_ff': 1024,"
        " 'memory.block_size': Categorical([32, 64])})\n"
    )
    store = tmp_path / "wb.duckdb"
    result = subprocess.run(
        [sys.executable, "-m", "workbench", "run", str(space), "--set", "memory.block_size=48",
         "--store", str(store), "--device", "cpu"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith(
        "error: --set memory.block_size=48: space 's': no design with memory.kind='avgk'"
    )
    assert "memory.block_size: must divide d_ff=1024, got 48" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["space.py"]


def test_a_kind_with_too_many_combinations_is_left_to_its_trials(monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench.space import _buildable

    params = {**AVGK, "memory.block_size": Categorical([32, 48]), "memory.k": Categorical([1, 2])}
    with pytest.raises(SpaceError, match=re.escape("memory.block_size=48 can never be built")):
        Space("bad", params)
    monkeypatch.setattr(_buildable, "MAX_COMBINATIONS", 3)
    Space("unchecked", params)
