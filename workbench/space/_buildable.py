"""Refuse, when a space is built, knob values that can never build a model.

A trial validates its config (``workbench.model.layer_configs``: the model's checks and every
memory layer's ``validate``) before it trains. A value that fails there in every design would
fail each trial it is sampled into, one at a time, while the study burns its budget and exits
0. :func:`check_buildable` runs the same validation, and the tokenizer's
(``check_tokenizer_config``), on the space's combinations when the space
is built (``Space(...)``, ``Space.from_json``, and ``Space.with_overrides`` for ``--set``):

* For each memory kind the space allows, the parameters that reach validation (``model.*``,
  ``memory.*``, ``data.vocab_size``, ``data.tokenizer``, ``train.eval_windows``, and those their derived values and
  conditions read) are enumerated as ``Space.suggest`` samples them: Fixed values, every choice
  of a Categorical, both ends of an Int or Float range, derived values computed, conditions
  followed (an inactive parameter's choices are not checked: they never reach a trial).
* Refused, in one line naming the knob, its value, the check it fails and the fix: a kind none
  of whose combinations validates; a choice, or a range end, that validates in no combination
  of a kind under which it is active (a user who lists a choice wants it to run).

Not checked, and why:

* The inside of a range: only its ends are tried, so ``Int(8, 128)`` for a block size that must
  divide 1024 passes (8 and 128 divide it) though 100 fails its trial. A failure is blamed on a
  value only where the inside of another range cannot change it: the failed combinations read
  no other range, or they all fail with one message (the checks name the values they read).
* Pairs of values that each work somewhere: ``k`` in ``[4, 32]`` with ``block_size`` in
  ``[32, 128]`` and 1024 cells passes, though ``k=32, block_size=128`` fails its trial; a space
  pairs such knobs with a derived value (``spaces/unified.py``) or a constraint.
* A kind with more than :data:`MAX_COMBINATIONS` combinations (building would be slow); its
  trials still validate. ``train.*`` knobs never reach validation and are not enumerated, so
  real spaces stay far below the bound (``spaces/unified.py``: 15 combinations, ~5 ms).
* Checks made only while training (``train.dtype``, the corpus): the trial reports them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workbench.errors import ConfigError, DataError, SpaceError
from workbench.space import _expr
from workbench.space._params import Categorical, Derived, Fixed, Float, Int, Param, Tuned

if TYPE_CHECKING:
    from workbench.space._space import Space

MAX_COMBINATIONS = 4096
KIND = "memory.kind"
# The fields validation reads besides model.* and memory.*: the vocabulary size (tables, hashes),
# the tokenizer and where the validation windows lie.
_DATA_FIELDS = ("data.vocab_size", "data.tokenizer", "train.eval_windows")
_FIELD = re.compile(r"^((?:data|model|memory|train)\.\w+):")


@dataclass
class _Point:
    """One combination in the making: its values, inactive names, and the picks that made it."""

    values: dict[str, Any]
    inactive: set[str] = field(default_factory=set)
    picks: tuple[tuple[str, Any], ...] = ()
    error: str | None = None

    def branch(self, name: str, value: Any, pick: bool) -> _Point:
        return _Point(
            {**self.values, name: value},
            set(self.inactive),
            (*self.picks, (name, value)) if pick else self.picks,
            self.error,
        )


def check_buildable(space: Space) -> None:
    """Raise :class:`SpaceError` if a memory kind, a choice or a range end of ``space`` can never
    build a model (see the module docstring for what is checked and what is left to trials)."""
    params = _relevant(space.params)
    kind_param = space.params.get(KIND)
    if isinstance(kind_param, Categorical):
        kinds: list[Any] = list(kind_param.choices)
    elif isinstance(kind_param, Fixed):
        kinds = [kind_param.value]
    else:
        kinds = [None]  # memory.kind is derived (or absent: dense); it is not forced
    # (name, value) -> the kinds it appears under, and those under which it never validates.
    seen: dict[tuple[str, Any], list[Any]] = {}
    bad: dict[tuple[str, Any], list[tuple[Any, str]]] = {}
    for kind in kinds:
        points = _combinations(params, kind)
        if points is None:
            continue
        never, first_reason = _never_valid(points, {n for n, p in params if isinstance(p, Int | Float)})
        if first_reason is not None:
            raise SpaceError(_kind_message(space, kind, first_reason, len(kinds) > 1))
        for pick, reason in never.items():
            bad.setdefault(pick, []).append((kind, reason))
        for p in points:
            for pick in p.picks:
                if kind not in seen.setdefault(pick, []):
                    seen[pick].append(kind)
    for name in space.params:
        values = [(n, v) for n, v in bad if n == name]
        if values:
            raise SpaceError(_pick_message(space, name, values, bad, seen))


def _never_valid(points: list[_Point], ranged: set[str]) -> tuple[dict[tuple[str, Any], str], str | None]:
    """The picks of ``points`` that never validate, each with the reason of its first failure;
    and, when no point validates, the first reason (the kind itself can never be built).

    Only a range's ends are tried, so a failure is proven only where it cannot depend on the
    inside of a range: the failed points read no range (other than the pick's own), or they all
    fail with one message (the checks name the values they read, so a message that stays the
    same from one end of a range to the other does not depend on it).
    """
    working: set[tuple[str, Any]] = set()  # the picks of points that validate
    failed: list[tuple[_Point, str]] = []
    any_valid = False
    for p in points:
        # Once a point validates, one whose picks all validate elsewhere decides nothing.
        if any_valid and working.issuperset(p.picks):
            continue
        reason = _failure(p)
        if reason is None:
            any_valid = True
            working.update(p.picks)
        else:
            failed.append((p, reason))
    if not any_valid:
        reads_range = any(n in ranged for p in points for n, _ in p.picks)
        if not reads_range or len({r for _, r in failed}) == 1:
            return {}, failed[0][1]
    reasons: dict[tuple[str, Any], list[str]] = {}
    unproven: set[tuple[str, Any]] = set()
    for p, reason in failed:
        ranges = {n for n, _ in p.picks if n in ranged}
        for pick in p.picks:
            if pick not in working:
                reasons.setdefault(pick, []).append(reason)
                if ranges - {pick[0]}:
                    unproven.add(pick)
    return {
        pick: found[0] for pick, found in reasons.items() if pick not in unproven or len(set(found)) == 1
    }, None


def _relevant(params: Mapping[str, Param]) -> list[tuple[str, Param]]:
    """The parameters validation depends on, in declaration order: config fields it reads and,
    transitively, the parameters their derived values and conditions read."""
    needed = {n for n in params if n.startswith(("model.", "memory.")) or n in _DATA_FIELDS}
    for name in reversed(list(params)):  # a parameter only reads those declared before it
        if name not in needed:
            continue
        param = params[name]
        needed.update(param.when)
        if isinstance(param, Derived):
            needed.update(_expr.names(param.expr))
    return [(n, p) for n, p in params.items() if n in needed]


def _combinations(params: list[tuple[str, Param]], kind: Any) -> list[_Point] | None:
    """Every combination of ``params`` with ``memory.kind`` set to ``kind`` (unless None), as
    ``Space.suggest`` would build them; None past :data:`MAX_COMBINATIONS`."""
    points = [_Point({})]
    for name, param in params:
        grown: list[_Point] = []
        for p in points:
            if p.error is not None or not all(
                parent in p.values and p.values[parent] in allowed for parent, allowed in param.when.items()
            ):
                p.inactive.add(name)
                grown.append(p)
            elif name == KIND and kind is not None:
                grown.append(p.branch(name, kind, isinstance(param, Categorical)))
            elif isinstance(param, Categorical):
                grown.extend(p.branch(name, v, True) for v in param.choices)
            elif isinstance(param, Int | Float):
                grown.extend(p.branch(name, v, True) for v in _range_ends(param))
            elif isinstance(param, Fixed):
                grown.append(p.branch(name, param.value, False))
            elif isinstance(param, Tuned):
                grown.append(p.branch(name, param.default, False))
            elif isinstance(param, Derived):
                try:
                    value = _expr.evaluate(param.expr, p.values, frozenset(p.inactive))
                except _expr.ExprError as exc:
                    p.error = f"{name}: derived value {param.expr!r} failed: {exc}"
                    grown.append(p)
                else:
                    grown.append(p.branch(name, value, False))
        points = grown
        if len(points) > MAX_COMBINATIONS:
            return None
    return points


def _range_ends(param: Int | Float) -> list[Any]:
    """The lowest and highest values the sampler can draw (the high end on the step grid)."""
    low, high = param.low, param.high
    if param.step is not None and not param.log:
        high = low + math.floor((high - low) / param.step + 1e-9) * param.step
    if isinstance(param, Int):
        low, high = int(low), int(high)
    return [low] if high == low else [low, high]


def _failure(point: _Point) -> str | None:
    """Why ``point`` cannot build a model (the trial's own message), or None if it can."""
    from workbench.config import check_tokenizer_config, trial_config_from_flat
    from workbench.model import layer_configs

    if point.error is not None:
        return point.error
    flat = {n: v for n, v in point.values.items() if not n.startswith("aux.")}
    try:
        config = trial_config_from_flat(flat)
        check_tokenizer_config(config.data)
        vocab = 256 if config.data.tokenizer == "byte" else config.data.vocab_size
        layer_configs(config.model, vocab)
    except (ConfigError, DataError) as exc:
        return str(exc)
    except (TypeError, ValueError, ArithmeticError) as exc:  # a value of the wrong type for its knob
        return f"{type(exc).__name__}: {exc}"
    return None


def _fix(space: Space, reason: str) -> str:
    """What to change: the field the reason names, if any."""
    match = _FIELD.match(reason)
    if match is None:
        return "fix the value it names"
    name = match.group(1)
    if name in space.params:
        return f"change {name}"
    return f"set {name} (its default does not fit)"


def _kind_message(space: Space, kind: Any, reason: str, several: bool) -> str:
    what = f"with memory.kind={kind!r} " if kind is not None else ""
    drop = f" or drop {kind!r} from memory.kind's choices" if several else ""
    return f"space {space.name!r}: no design {what}can be built: {reason}; {_fix(space, reason)}{drop}"


def _pick_message(
    space: Space,
    name: str,
    values: list[tuple[str, Any]],
    bad: Mapping[tuple[str, Any], list[tuple[Any, str]]],
    seen: Mapping[tuple[str, Any], list[Any]],
) -> str:
    param = space.params[name]
    kinds_bad, reason = [k for k, _ in bad[values[0]]], bad[values[0]][0][1]
    values = [v for v in values if [k for k, _ in bad[v]] == kinds_bad]
    everywhere = len(kinds_bad) == len(seen[values[0]]) > 1
    where = "" if kinds_bad == [None] or everywhere else f" with memory.kind={kinds_bad[0]!r}"
    listed = ", ".join(repr(v) for _, v in values)
    if isinstance(param, Int | Float):
        bounds = f"{type(param).__name__}({param.low}, {param.high})"
        if len(values) > 1:
            label, fix = f"{name}={listed} (both ends of {bounds})", "narrow its range"
        elif values[0][1] == _range_ends(param)[0]:
            label, fix = f"{name}={listed} (the low end of {bounds})", "raise its low bound"
        else:
            label, fix = f"{name}={listed} (the high end of {bounds})", "lower its high bound"
    else:
        label = f"{name}={listed}"
        fix = f"drop {'it' if len(values) == 1 else 'them'} from {name}'s choices"
    return f"space {space.name!r}: {label} can never be built{where}: {reason}; {fix}"
