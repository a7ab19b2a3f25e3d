"""Parameter kinds of a search space: what to sample, and when.

Each parameter validates itself when constructed, so a bad definition fails as soon as the
space file is loaded, naming the parameter (once the space assigns it a name) and the fix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from workbench import record
from workbench.errors import SpaceError

Scalar = int | float | str | bool | None


def _as_condition(when: Mapping[str, Any] | None) -> dict[str, tuple[Scalar, ...]]:
    if when is None:
        return {}
    if not isinstance(when, Mapping):
        raise SpaceError(f"when= must be a mapping like {{'memory.kind': 'switch'}}, got {when!r}")
    out = {}
    for parent, allowed in when.items():
        values = tuple(allowed) if isinstance(allowed, list | tuple | set | frozenset) else (allowed,)
        if not values:
            raise SpaceError(f"when={{{parent!r}: []}} can never hold; list at least one value")
        out[str(parent)] = values
    return out


@dataclass(frozen=True)
class Param:
    """Base of sampled, fixed and derived parameters. ``when`` makes it conditional."""

    when: dict[str, tuple[Scalar, ...]] = field(default_factory=dict, kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "when", _as_condition(self.when))

    def check(self, name: str) -> None:
        """Raise :class:`SpaceError` naming ``name`` if the definition cannot be sampled."""

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    def grid_values(self, name: str) -> list[Any]:
        raise NotImplementedError


class Categorical(Param):
    """One of a list of values (numbers, strings, booleans)."""

    def __init__(self, choices: Sequence[Scalar], *, when: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "when", _as_condition(when))
        if isinstance(choices, str) or not isinstance(choices, Sequence):
            raise SpaceError(f"Categorical choices must be a list, got {choices!r}")
        object.__setattr__(self, "choices", tuple(choices))

    choices: tuple[Scalar, ...]

    def check(self, name: str) -> None:
        if not self.choices:
            raise SpaceError(f"parameter {name!r}: Categorical has no choices; list at least one value")
        if len(set(map(repr, self.choices))) != len(self.choices):
            raise SpaceError(f"parameter {name!r}: duplicate choices in {list(self.choices)}; list each once")
        for c in self.choices:
            if not isinstance(c, int | float | str | bool) and c is not None:
                raise SpaceError(f"parameter {name!r}: choice {c!r} is not a number, string, bool or None")

    def to_json(self) -> dict[str, Any]:
        return {"type": "categorical", "choices": list(self.choices), "when": _when_json(self.when)}

    def grid_values(self, name: str) -> list[Any]:
        return list(self.choices)

    def __repr__(self) -> str:
        return f"Categorical({list(self.choices)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Categorical) and (self.choices, self.when) == (other.choices, other.when)

    def __hash__(self) -> int:
        return hash(("categorical", self.choices))


@dataclass(frozen=True)
class _Range(Param):
    low: float
    high: float
    step: float | None = None
    log: bool = False
    grid: tuple[Any, ...] | None = None

    def check(self, name: str) -> None:
        kind = type(self).__name__
        for bound in ("low", "high"):
            v = getattr(self, bound)
            if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
                raise SpaceError(f"parameter {name!r}: {kind} {bound}={v!r} must be a finite number")
        if self.low > self.high:
            raise SpaceError(
                f"parameter {name!r}: {kind} low ({self.low}) > high ({self.high}); swap them or fix the bounds"
            )
        if self.log and self.low <= 0:
            raise SpaceError(f"parameter {name!r}: log scale needs low > 0, got low={self.low}")
        if self.log and self.step not in (None, 1):
            raise SpaceError(f"parameter {name!r}: step and log=True cannot be combined (optuna forbids it)")
        if self.step is not None and self.step <= 0:
            raise SpaceError(f"parameter {name!r}: step must be > 0, got {self.step}")

    def to_json(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__.lower(),
            "low": self.low,
            "high": self.high,
            "step": self.step,
            "log": self.log,
            "grid": list(self.grid) if self.grid is not None else None,
            "when": _when_json(self.when),
        }


class Int(_Range):
    """An integer in [low, high] (inclusive), optionally on a log scale or with a step."""

    def __init__(
        self,
        low: int,
        high: int,
        *,
        step: int = 1,
        log: bool = False,
        grid: Sequence[int] | None = None,
        when: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            low, high, step, log, tuple(grid) if grid is not None else None, when=_as_condition(when)
        )

    def check(self, name: str) -> None:
        for bound in ("low", "high", "step"):
            v = getattr(self, bound)
            if not isinstance(v, int) or isinstance(v, bool):
                raise SpaceError(
                    f"parameter {name!r}: Int {bound}={v!r} must be an integer (use Float for reals)"
                )
        super().check(name)

    def grid_values(self, name: str) -> list[Any]:
        if self.grid is not None:
            return list(self.grid)
        if self.log:
            # A log-scale integer enumerates its powers of two inside the range.
            values, v = [], 1
            while v <= self.high:
                if v >= self.low:
                    values.append(v)
                v *= 2
            return values or [int(self.low)]
        values = list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if len(values) > 64:
            raise SpaceError(
                f"parameter {name!r}: {len(values)} grid values; give grid=[...] or a larger step"
            )
        return values


class Float(_Range):
    """A real in [low, high], optionally on a log scale or with a step."""

    def __init__(
        self,
        low: float,
        high: float,
        *,
        step: float | None = None,
        log: bool = False,
        grid: Sequence[float] | None = None,
        when: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            low, high, step, log, tuple(grid) if grid is not None else None, when=_as_condition(when)
        )

    def grid_values(self, name: str) -> list[Any]:
        if self.grid is not None:
            return list(self.grid)
        if self.step is not None:
            n = round((self.high - self.low) / self.step)
            return [self.low + i * self.step for i in range(n + 1)]
        raise SpaceError(
            f"parameter {name!r}: a continuous Float cannot be enumerated; give grid=[...] or step="
        )


@dataclass(frozen=True)
class Fixed(Param):
    """A constant; plain values in a space's ``params`` mapping are wrapped in Fixed."""

    value: Any = None

    def to_json(self) -> dict[str, Any]:
        return {"type": "fixed", "value": self.value, "when": _when_json(self.when)}

    def grid_values(self, name: str) -> list[Any]:
        return [self.value]


@dataclass(frozen=True)
class Derived(Param):
    """A value computed from others by an expression, e.g. ``Derived("4 * model.d_model")``."""

    expr: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"type": "derived", "expr": self.expr, "when": _when_json(self.when)}


class Tuned(Param):
    """A training knob fit to each design rather than searched, typically ``train.lr``.

    Before a design trains, it runs once at each value for ``fraction`` of the budget (the same
    decay compressed, the warm-up as many steps as the full run's) under its first seed; the value with the lowest validation loss is the
    design's, for every seed. The probe runs are stored (table ``tuning``). docs/METHODOLOGY.md
    says why short runs and what they were checked against.
    """

    def __init__(
        self, values: Sequence[float], *, fraction: float = 0.25, when: Mapping[str, Any] | None = None
    ) -> None:
        object.__setattr__(self, "when", _as_condition(when))
        if isinstance(values, str) or not isinstance(values, Sequence):
            raise SpaceError(f"Tuned values must be a list of numbers, got {values!r}")
        object.__setattr__(self, "values", tuple(values))
        object.__setattr__(self, "fraction", fraction)

    values: tuple[float, ...]
    fraction: float

    def check(self, name: str) -> None:
        if not name.startswith("train."):
            raise SpaceError(
                f"parameter {name!r}: only train.* knobs can be Tuned (they do not change the design)"
            )
        if name == "train.seed":
            raise SpaceError(
                "parameter 'train.seed': seeds are repeats, not tuned; use Space(..., repeats=N)"
            )
        if len(self.values) < 2 or len(self.values) > MAX_TUNED_VALUES:
            raise SpaceError(
                f"parameter {name!r}: Tuned takes 2 to {MAX_TUNED_VALUES} values, got {list(self.values)}"
            )
        if any(not isinstance(v, int | float) or isinstance(v, bool) for v in self.values):
            raise SpaceError(f"parameter {name!r}: Tuned values must be numbers, got {list(self.values)}")
        if len(set(self.values)) != len(self.values):
            raise SpaceError(f"parameter {name!r}: duplicate Tuned values in {list(self.values)}")
        if not 0 < self.fraction <= 1:
            raise SpaceError(
                f"parameter {name!r}: Tuned fraction={self.fraction} must be in (0, 1] (of the token budget)"
            )

    @property
    def default(self) -> float:
        """The value a design is described with before it is tuned (the middle one)."""
        return sorted(self.values)[len(self.values) // 2]

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "tuned",
            "values": list(self.values),
            "fraction": self.fraction,
            "when": _when_json(self.when),
        }

    def grid_values(self, name: str) -> list[Any]:
        return [self.default]

    def __repr__(self) -> str:
        return f"Tuned({list(self.values)!r}, fraction={self.fraction})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tuned) and (self.values, self.fraction, self.when) == (
            other.values,
            other.fraction,
            other.when,
        )

    def __hash__(self) -> int:
        return hash(("tuned", self.values, self.fraction))


MAX_TUNED_VALUES = 8


@dataclass(frozen=True)
class Constraint:
    """A condition every sample must satisfy before it is trained.

    ``expr`` reads parameters and the analytic cost of the sampled design:
    ``cost.flops_per_token``, ``cost.params_total``, ``cost.params_active``,
    ``cost.memory_params_total``, ``cost.memory_flops_per_token``. A sample that violates it
    is recorded as infeasible with ``name`` (or the expression) as the reason.
    """

    expr: str
    name: str = ""

    def label(self) -> str:
        return self.name or self.expr

    def to_json(self) -> dict[str, Any]:
        return {"expr": self.expr, "name": self.name}


METRICS = record.objective_metrics()


@dataclass(frozen=True)
class Objective:
    """A metric to optimise: one of :data:`METRICS`, ``minimize`` or ``maximize``."""

    metric: str
    direction: Literal["minimize", "maximize"] = "minimize"

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise SpaceError(f"objective {self.metric!r}: unknown metric; valid: {', '.join(METRICS)}")
        if self.direction not in ("minimize", "maximize"):
            raise SpaceError(f"objective {self.metric!r}: direction must be 'minimize' or 'maximize'")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.metric, "direction": self.direction}


@dataclass(frozen=True)
class Budget:
    """The training budget of every trial: stop at ``tokens`` or ``seconds`` (0 = no limit)."""

    tokens: int = 200_000
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.tokens <= 0:
            raise SpaceError(f"budget tokens must be > 0, got {self.tokens}")
        if self.seconds < 0:
            raise SpaceError(f"budget seconds must be >= 0 (0 = no time limit), got {self.seconds}")

    def to_json(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "seconds": self.seconds}


def _when_json(when: Mapping[str, tuple[Scalar, ...]]) -> dict[str, list[Scalar]] | None:
    return {k: list(v) for k, v in when.items()} or None


def param_from_json(d: Mapping[str, Any]) -> Param:
    when = d.get("when") or None
    kind = d["type"]
    if kind == "categorical":
        return Categorical(d["choices"], when=when)
    if kind == "int":
        return Int(d["low"], d["high"], step=d.get("step") or 1, log=d["log"], grid=d.get("grid"), when=when)
    if kind == "float":
        return Float(d["low"], d["high"], step=d.get("step"), log=d["log"], grid=d.get("grid"), when=when)
    if kind == "fixed":
        return Fixed(d["value"], when=_as_condition(when))
    if kind == "derived":
        return Derived(expr=d["expr"], when=_as_condition(when))
    if kind == "tuned":
        return Tuned(d["values"], fraction=d.get("fraction", 0.25), when=when)
    raise SpaceError(f"unknown parameter type {kind!r} in space JSON")
