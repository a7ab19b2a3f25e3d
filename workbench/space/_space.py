"""The search space: parameters, constraints, objectives and budget, compiled to optuna.

A space is declared in a Python file (``spaces/*.py``) as a module-level ``space = Space(...)``.
It validates itself when built, samples through optuna's define-by-run API (conditional
parameters are only suggested when their condition holds), enumerates a grid, round-trips to
JSON (stored with the study) and turns every sample into a typed :class:`TrialConfig`.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workbench.config import DataConfig, ModelConfig, TrainConfig, TrialConfig, trial_config_from_flat
from workbench.errors import ConfigError, SpaceError
from workbench.space import _expr
from workbench.space._buildable import check_buildable
from workbench.space._params import (
    Budget,
    Categorical,
    Constraint,
    Derived,
    Fixed,
    Float,
    Int,
    Objective,
    Param,
    Tuned,
    param_from_json,
)

if TYPE_CHECKING:
    import optuna

    from workbench.model import ModelCost

# Parameters named "aux.<name>" are sampled or derived like any other but are not config
# fields: they let one sampled quantity drive several knobs (e.g. k and block size).
AUX = "aux."
# The seed is the repeat axis of a design, never a searched knob (see Space.seeds).
SEED = "train.seed"
MAX_REPEATS = 64
COST_NAMES = (
    "cost.flops_per_token",
    "cost.params_total",
    "cost.params_active",
    "cost.memory_params_total",
    "cost.memory_flops_per_token",
)
_SECTION_CLASSES: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
_SECTION_FIELDS = {
    section: {f.name for f in dataclasses.fields(cls) if f.name != "memory"}
    for section, cls in _SECTION_CLASSES.items()
}


@dataclass(frozen=True)
class Sample:
    """One sampled design: its flat values, typed config, analytic cost, and feasibility.

    ``cost`` is computed with the vocabulary size known before data is prepared (see
    :func:`_vocab_size_hint`); the trial recomputes it with the prepared vocabulary.
    """

    values: dict[str, Any]
    config: TrialConfig | None
    infeasible_reason: str | None = None
    cost: ModelCost | None = None

    @property
    def feasible(self) -> bool:
        return self.infeasible_reason is None


class Space:
    """A declarative search space over workbench trial configs.

    ``params`` maps dotted names (``model.d_model``, ``memory.kind``, ``train.lr``) to a
    :class:`Categorical`, :class:`Int`, :class:`Float`, :class:`Fixed`, :class:`Derived`, or a
    plain value (fixed). Order matters: a conditional parameter's parent and a derived value's
    inputs must come before it.

    Building checks the definition, then the knob values the space can produce: a memory kind,
    a choice or a range end that can never build a model is refused here rather than failing
    every trial it is sampled into (workbench/space/_buildable.py says what is checked).
    """

    def __init__(
        self,
        name: str,
        params: Mapping[str, Param | Any],
        *,
        constraints: Sequence[Constraint | str] = (),
        objectives: Sequence[Objective | tuple[str, str] | str] = (
            Objective("val_ppl", "minimize"),
            Objective("flops_per_token", "minimize"),
        ),
        budget: Budget | None = None,
        trials: int = 20,
        cover: Sequence[str] = (),
        description: str = "",
        dropped: Sequence[str] = (),
        repeats: int | None = None,
    ) -> None:
        if not name or not isinstance(name, str):
            raise SpaceError("Space name must be a non-empty string")
        self.name = name
        self.description = description
        self.params: dict[str, Param] = {
            str(k): v if isinstance(v, Param) else Fixed(v) for k, v in params.items()
        }
        self.constraints = tuple(Constraint(c) if isinstance(c, str) else c for c in constraints)
        self.objectives = tuple(_as_objective(o) for o in objectives)
        self.budget = budget or Budget()
        if trials < 1:
            raise SpaceError(f"space {name!r}: trials must be >= 1, got {trials}")
        self.trials = trials
        self.cover = tuple(cover)
        # Parameters that --set overrides switched off (a parent fixed to a value that disables
        # them): Derived expressions may still name them in branches that are no longer taken.
        self.dropped = tuple(dropped)
        self.repeats = self._check_repeats(repeats)
        self._validate()

    # ----------------------------------------------------------------- validation
    def _validate(self) -> None:
        from workbench import memory

        if not self.objectives:
            raise SpaceError(f"space {self.name!r}: declare at least one objective")
        metrics = [o.metric for o in self.objectives]
        if len(set(metrics)) != len(metrics):
            raise SpaceError(f"space {self.name!r}: objective listed twice in {metrics}")
        seen: list[str] = []
        for name, param in self.params.items():
            self._check_name(name)
            param.check(name)
            for parent, allowed in param.when.items():
                if parent not in seen:
                    raise SpaceError(
                        f"parameter {name!r}: condition on {parent!r}, which is not declared before it; "
                        "declare the parent first"
                    )
                possible = self._possible_values(parent)
                if possible is not None:
                    impossible = [a for a in allowed if a not in possible]
                    if impossible:
                        raise SpaceError(
                            f"parameter {name!r}: condition {parent}={impossible[0]!r} can never hold; "
                            f"{parent} takes {possible}"
                        )
            if isinstance(param, Derived):
                self._check_expr(f"parameter {name!r}", param.expr, allowed=set(seen) | set(self.dropped))
            seen.append(name)
        kinds = self._possible_values("memory.kind")
        for kind in kinds or ["dense"]:
            try:
                memory.get(str(kind))
            except ConfigError as exc:
                raise SpaceError(f"parameter 'memory.kind': {exc}".replace("memory.kind: ", "")) from None
        for name, param in self.params.items():
            if name.startswith("memory.") and name != "memory.kind":
                self._check_memory_knob(name, param, kinds or ["dense"])
        for c in self.constraints:
            self._check_expr(
                f"constraint {c.label()!r}",
                c.expr,
                allowed=set(self.params) | set(COST_NAMES) | set(self.dropped),
            )
        for name in self.cover:
            covered = self.params.get(name)
            if not isinstance(covered, Categorical) or self._enabling_values(covered) is None:
                raise SpaceError(
                    f"cover={name!r}: only a Categorical parameter whose conditions name categorical "
                    "parents can be covered (each of its values is tried once before the sampler takes over)"
                )
        check_buildable(self)

    def _declared_seeds(self) -> tuple[Any, ...] | None:
        """The seeds a ``train.seed`` parameter lists (Categorical or Fixed); None without one."""
        seed = self.params.get(SEED)
        if isinstance(seed, Categorical):
            return seed.choices
        if isinstance(seed, Fixed):
            return (seed.value,)
        return None

    def _check_repeats(self, repeats: int | None) -> int:
        """Seeds per design: ``repeats``, or as many as a declared ``train.seed`` lists."""
        seed = self.params.get(SEED)
        declared = self._declared_seeds()
        if seed is not None and declared is None:
            raise SpaceError(
                f"parameter {SEED!r}: seeds are the repeats of a design, not a searched knob; declare "
                "Categorical([0, 1, 2]) for those seeds, a fixed seed, or Space(..., repeats=N)"
            )
        if declared is not None:
            if seed is not None and seed.when:
                raise SpaceError(
                    f"parameter {SEED!r}: the seeds of a design cannot be conditional; drop when="
                )
            bad = [v for v in declared if not isinstance(v, int) or isinstance(v, bool)]
            if bad:
                raise SpaceError(f"parameter {SEED!r}: seed {bad[0]!r} is not an integer")
            if repeats is not None and repeats != len(declared):
                raise SpaceError(
                    f"space {self.name!r}: repeats={repeats} but {SEED} lists {len(declared)} seeds "
                    f"{list(declared)}; drop repeats (the declared seeds are the repeats) or list {repeats} seeds"
                )
            return len(declared)
        if repeats is None:
            return 1
        if isinstance(repeats, bool) or not isinstance(repeats, int) or not 1 <= repeats <= MAX_REPEATS:
            raise SpaceError(
                f"space {self.name!r}: repeats={repeats!r} must be an integer from 1 to {MAX_REPEATS}"
            )
        return repeats

    def seeds(self, base: int) -> tuple[int, ...]:
        """The seeds every design trains under: the declared ``train.seed`` values, else
        ``base, base + 1, ...`` (``base`` is the study's ``--seed``)."""
        declared = self._declared_seeds()
        if declared is not None:
            return tuple(int(v) for v in declared)
        return tuple(base + r for r in range(self.repeats))

    def max_tokens(self) -> int:
        """The largest token budget a run of this space can have."""
        tokens = self.params.get("train.tokens")
        if isinstance(tokens, Fixed):
            return int(tokens.value)
        if isinstance(tokens, Categorical):
            return max(int(v) for v in tokens.choices)  # type: ignore[arg-type]
        if isinstance(tokens, Int | Float):
            return int(tokens.high)
        return self.budget.tokens

    @property
    def tuned(self) -> dict[str, Tuned]:
        """The knobs fit to each design (``Tuned`` parameters), by name."""
        return {n: p for n, p in self.params.items() if isinstance(p, Tuned)}

    def with_repeats(self, repeats: int) -> Space:
        """A copy that trains every design under ``repeats`` seeds (``workbench run --repeats``)."""
        if SEED in self.params:
            if repeats == self.repeats:
                return self
            raise SpaceError(
                f"--repeats {repeats}: the space declares {SEED} ({self.repeats} seeds), which are its repeats; "
                f"drop --repeats, or --set {SEED}=N to train one seed"
            )
        data = self.to_json()
        data["repeats"] = repeats
        return Space.from_json(data)

    def _check_name(self, name: str) -> None:
        section, _, field = name.partition(".")
        if section in ("memory", "aux") and field:
            return
        if section not in _SECTION_FIELDS or not field:
            raise SpaceError(
                f"parameter {name!r}: names are '<section>.<field>' with section data, model, memory or train "
                "(or 'aux.<name>' for a helper value that is not a config field)"
            )
        if field not in _SECTION_FIELDS[section]:
            close = difflib.get_close_matches(field, _SECTION_FIELDS[section], n=1)
            hint = f" (did you mean '{section}.{close[0]}'?)" if close else ""
            raise SpaceError(
                f"parameter {name!r}: {section} has no field {field!r}{hint}; "
                f"valid: {', '.join(sorted(_SECTION_FIELDS[section]))}"
            )

    def _check_memory_knob(self, name: str, param: Param, kinds: list[Any]) -> None:
        from workbench import memory

        knob = name.split(".", 1)[1]
        applicable = [k for k in kinds if k in self._kinds_where_active(param, kinds)]
        lacking = [k for k in applicable if knob not in memory.knobs(str(k))]
        if lacking:
            hint = (
                f"; make it conditional with when={{'memory.kind': {[k for k in applicable if k not in lacking]}}}"
                if len(lacking) < len(applicable)
                else ""
            )
            raise SpaceError(
                f"parameter {name!r}: memory layer {lacking[0]!r} has no knob {knob!r} "
                f"(its knobs: {', '.join(memory.knobs(str(lacking[0]))) or 'none'}){hint}"
            )

    def _kinds_where_active(self, param: Param, kinds: list[Any]) -> list[Any]:
        """The memory kinds under which ``param`` can be active, following conditions transitively."""
        possible = list(kinds)
        for parent, allowed in param.when.items():
            if parent == "memory.kind":
                possible = [k for k in possible if k in allowed]
            elif parent in self.params:
                possible = [k for k in possible if k in self._kinds_where_active(self.params[parent], kinds)]
        return possible

    def _check_expr(self, what: str, expr: str, allowed: set[str]) -> None:
        try:
            used = _expr.names(expr)
        except _expr.ExprError as exc:
            raise SpaceError(f"{what}: {exc}") from None
        for n in used:
            if n not in allowed:
                close = difflib.get_close_matches(n, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise SpaceError(
                    f"{what}: unknown name {n!r}{hint}; it must be a parameter declared before it"
                )

    def _possible_values(self, name: str) -> list[Any] | None:
        param = self.params.get(name)
        if isinstance(param, Categorical):
            return list(param.choices)
        if isinstance(param, Fixed):
            return [param.value]
        return None

    # ----------------------------------------------------------------- sampling
    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample one point through optuna's define-by-run calls (derived values included)."""
        values: dict[str, Any] = {}
        inactive: set[str] = set()
        for name, param in self.params.items():
            if not _condition_holds(param, values):
                inactive.add(name)
                continue
            if name == SEED:
                continue  # the trial sets it: the seed is the design's repeat, not a sample
            if isinstance(param, Tuned):
                values[name] = param.default  # the trial replaces it with the design's fitted value
            elif isinstance(param, Categorical):
                values[name] = trial.suggest_categorical(name, list(param.choices))
            elif isinstance(param, Int):
                values[name] = trial.suggest_int(
                    name, int(param.low), int(param.high), step=int(param.step or 1), log=param.log
                )
            elif isinstance(param, Float):
                values[name] = trial.suggest_float(
                    name, param.low, param.high, step=param.step, log=param.log
                )
            elif isinstance(param, Fixed):
                values[name] = param.value
            elif isinstance(param, Derived):
                values[name] = self._derive(name, param, values, inactive)
        return values

    def _derive(self, name: str, param: Derived, values: dict[str, Any], inactive: set[str]) -> Any:
        try:
            return _expr.evaluate(param.expr, values, frozenset(inactive))
        except _expr.ExprError as exc:
            raise ConfigError(f"{name}: derived value {param.expr!r} failed: {exc}") from None

    def resolve(self, values: Mapping[str, Any]) -> Sample:
        """Turn sampled values into a typed config and check the constraints (no training)."""
        from workbench.model import model_cost

        config_values = {k: v for k, v in values.items() if not k.startswith(AUX)}
        flat = {"train.tokens": self.budget.tokens, "train.seconds": self.budget.seconds, **config_values}
        config = trial_config_from_flat(flat)
        cost = model_cost(config.model, _vocab_size_hint(config))
        scope = {**values, **{f"cost.{k}": v for k, v in dataclasses.asdict(cost).items()}}
        inactive = frozenset(n for n in self.params if n not in values)
        for c in self.constraints:
            try:
                ok = _expr.evaluate(c.expr, scope, inactive)
            except _expr.InactiveName as exc:
                raise ConfigError(
                    f"constraint {c.label()!r}: {exc}; guard it, e.g. \"memory.kind != 'switch' or ...\""
                ) from None
            except _expr.ExprError as exc:
                raise ConfigError(f"constraint {c.label()!r}: {exc}") from None
            if not ok:
                return Sample(dict(values), config, f"constraint violated: {c.label()}", cost)
        return Sample(dict(values), config, None, cost)

    def sample(self, trial: optuna.Trial) -> Sample:
        return self.resolve(self.suggest(trial))

    # ----------------------------------------------------------------- grid
    def grid(self, limit: int = 10_000) -> list[dict[str, Any]]:
        """Every combination of the sampled parameters' grid values (conditionals respected)."""
        points: list[dict[str, Any]] = [{}]
        for name, param in self.params.items():
            if isinstance(param, Derived | Fixed | Tuned) or name == SEED:
                continue
            grown = []
            for point in points:
                full = self._with_fixed(point)
                if not _condition_holds(param, full):
                    grown.append(point)
                    continue
                grown.extend({**point, name: v} for v in param.grid_values(name))
            points = grown
            if len(points) > limit:
                raise SpaceError(
                    f"space {self.name!r}: grid exceeds {limit} points; narrow it or use a sampler"
                )
        return points

    def _with_fixed(self, point: Mapping[str, Any]) -> dict[str, Any]:
        full = dict(point)
        for name, param in self.params.items():
            if isinstance(param, Fixed) and name not in full and _condition_holds(param, full):
                full[name] = param.value
        return full

    def iter_grid_samples(self) -> Iterator[Sample]:
        """Grid points resolved into configs (derived values and constraints applied)."""
        for point in self.grid():
            yield self.grid_sample(point)

    def grid_sample(self, point: Mapping[str, Any]) -> Sample:
        """One grid point resolved into its config (derived values and constraints applied)."""
        values: dict[str, Any] = {}
        inactive: set[str] = set()
        for name, param in self.params.items():
            if not _condition_holds(param, values):
                inactive.add(name)
            elif name == SEED:
                continue
            elif isinstance(param, Fixed):
                values[name] = param.value
            elif isinstance(param, Tuned):
                values[name] = param.default
            elif isinstance(param, Derived):
                values[name] = self._derive(name, param, values, inactive)
            else:
                values[name] = point[name]
        return self.resolve(values)

    # ----------------------------------------------------------------- overrides and JSON
    def with_overrides(self, overrides: Mapping[str, Any]) -> Space:
        """A copy with some parameters fixed (``workbench run --set name=value``).

        Each value is checked against its config field's type (a number for an int field, and so
        on; an int-valued float such as ``5e4`` becomes an int) and refused naming the field.
        """
        overrides = {name: self._typed_override(name, value, overrides) for name, value in overrides.items()}
        params = dict(self.params)
        for name, value in overrides.items():
            when = params[name].when if name in params else {}
            params[name] = Fixed(value, when=when)
        # Fixing a parent drops the parameters whose condition can no longer hold (and theirs, in
        # turn), and narrows the conditions that still hold to the fixed value: ``when={kind: [a,
        # b]}`` with kind fixed to ``a`` becomes ``{kind: (a,)}``, since the definition check
        # rejects values a parent can never take.
        dropped = list(self.dropped)
        for name, param in list(params.items()):
            if any(parent not in params for parent in param.when):  # its parent was just dropped
                del params[name]
                dropped.append(name)
                continue
            narrowed = dict(param.when)
            for parent, allowed in param.when.items():
                fixed = params.get(parent)
                if parent in overrides and isinstance(fixed, Fixed):
                    if fixed.value not in allowed:
                        del params[name]
                        dropped.append(name)
                        break
                    narrowed[parent] = (fixed.value,)
            else:
                if narrowed != param.when:
                    params[name] = copy.copy(param)
                    object.__setattr__(params[name], "when", narrowed)
        budget = self.budget
        if "train.tokens" in overrides and "train.tokens" not in self.params:
            budget = Budget(tokens=int(overrides["train.tokens"]), seconds=budget.seconds)
        if "train.seconds" in overrides and "train.seconds" not in self.params:
            budget = Budget(tokens=budget.tokens, seconds=float(overrides["train.seconds"]))
        try:
            return Space(
                self.name,
                params,
                constraints=self.constraints,
                objectives=self.objectives,
                budget=budget,
                trials=self.trials,
                cover=[c for c in self.cover if isinstance(params.get(c), Categorical) and c in params],
                description=self.description,
                dropped=dropped,
                repeats=None if SEED in params else self.repeats,
            )
        except SpaceError as exc:  # this space was built, so the overrides broke it: say so
            settings = " ".join(f"{n}={v!r}" for n, v in overrides.items())
            raise SpaceError(f"--set {settings}: {exc}") from None

    def _typed_override(self, name: str, value: Any, overrides: Mapping[str, Any]) -> Any:
        """``value`` as the type of config field ``name`` (taken from its default); unknown names
        are left to the space's own checks."""
        section, _, key = name.partition(".")
        defaults: list[Any] = []
        if name == "memory.kind":
            defaults = ["dense"]
        elif section == "memory":
            from workbench import memory

            kinds = [overrides["memory.kind"]] if "memory.kind" in overrides else None
            for kind in kinds or self._possible_values("memory.kind") or ["dense"]:
                if str(kind) in memory.names() and key in memory.knobs(str(kind)):
                    defaults.append(memory.knobs(str(kind))[key])
        elif section in _SECTION_CLASSES:
            fields = {f.name: f.default for f in dataclasses.fields(_SECTION_CLASSES[section])}
            defaults = [fields[key]] if key in fields else []
        types = {type(d) for d in defaults if d is not None}
        if len(types) != 1:
            return value
        (kind_of,) = types
        typed = _coerce(value, kind_of)
        if typed is _NOT_COERCED:
            what = {int: "an integer", float: "a number", bool: "true or false"}.get(kind_of, "a string")
            example = defaults[0] if isinstance(defaults[0], str) else json.dumps(defaults[0])
            raise SpaceError(
                f"--set {name}={value!r}: {name} takes {what}, not {type(value).__name__} {value!r} "
                f"(e.g. --set {name}={example})"
            )
        return typed

    def cover_points(self) -> list[dict[str, Any]]:
        """One partial point per value of each covered parameter, tried before sampling.

        A conditional parameter's point also sets its parents to values that activate it.
        """
        points: list[dict[str, Any]] = []
        for name in self.cover:
            param = self.params[name]
            assert isinstance(param, Categorical)
            parents = self._enabling_values(param) or {}
            points.extend({**parents, name: value} for value in param.choices)
        return points

    def _enabling_values(self, param: Param) -> dict[str, Any] | None:
        """Sampled parent values that make ``param`` active, or None if not expressible."""
        values: dict[str, Any] = {}
        for parent, allowed in param.when.items():
            parent_param = self.params.get(parent)
            if isinstance(parent_param, Fixed):
                continue
            if not isinstance(parent_param, Categorical):
                return None
            upstream = self._enabling_values(parent_param)
            if upstream is None:
                return None
            values.update(upstream)
            values[parent] = next(v for v in parent_param.choices if v in allowed)
        return values

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "name": self.name,
            "description": self.description,
            "params": {n: p.to_json() for n, p in self.params.items()},
            "constraints": [c.to_json() for c in self.constraints],
            "objectives": [o.to_json() for o in self.objectives],
            "budget": self.budget.to_json(),
            "trials": self.trials,
            "cover": list(self.cover),
            **({"dropped": list(self.dropped)} if self.dropped else {}),
            **({"repeats": self.repeats} if self.repeats != 1 and SEED not in self.params else {}),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | str) -> Space:
        data = json.loads(d) if isinstance(d, str) else d
        return cls(
            data["name"],
            {n: param_from_json(p) for n, p in data["params"].items()},
            constraints=[Constraint(c["expr"], c.get("name", "")) for c in data["constraints"]],
            objectives=[Objective(o["name"], o["direction"]) for o in data["objectives"]],
            budget=Budget(**data["budget"]),
            trials=data.get("trials", 20),
            cover=data.get("cover", ()),
            description=data.get("description", ""),
            dropped=data.get("dropped", ()),
            repeats=data.get("repeats"),
        )

    def space_hash(self) -> str:
        blob = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"Space({self.name!r}, {len(self.params)} params, {len(self.constraints)} constraints)"


def _condition_holds(param: Param, values: Mapping[str, Any]) -> bool:
    return all(parent in values and values[parent] in allowed for parent, allowed in param.when.items())


def _as_objective(o: Objective | tuple[str, str] | str) -> Objective:
    if isinstance(o, Objective):
        return o
    if isinstance(o, str):
        return Objective(o)
    metric, direction = o
    # The direction is checked in Objective.__post_init__.
    return Objective(metric, direction)  # type: ignore[arg-type]


def _vocab_size_hint(config: TrialConfig) -> int:
    """Vocabulary size known before any data is prepared (byte: 256; bpe: as configured)."""
    return 256 if config.data.tokenizer == "byte" else config.data.vocab_size


_NOT_COERCED = object()


def _coerce(value: Any, kind: type) -> Any:
    """``value`` as ``kind`` (int, float, bool or str) when it is one, else ``_NOT_COERCED``."""
    if kind is bool:
        return value if isinstance(value, bool) else _NOT_COERCED
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value if isinstance(value, int) and not isinstance(value, bool) else _NOT_COERCED
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if ok else _NOT_COERCED
    if kind is str:
        return value if isinstance(value, str) else _NOT_COERCED
    return value
