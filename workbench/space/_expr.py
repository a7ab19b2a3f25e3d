"""Safe evaluation of the small expression language used by derived values and constraints.

Expressions are Python syntax over dotted names (``4 * model.d_model``,
``cost.flops_per_token <= 2e6``). Only arithmetic, comparisons, boolean logic, conditional
expressions and a few math functions are allowed, so a space stays declarative and its JSON
form can be re-evaluated anywhere.
"""

from __future__ import annotations

import ast
import functools
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: lambda base, exponent: _power(base, exponent),
}
# Bounds that keep an evaluation instant: ``9 ** 9 ** 9`` would otherwise compute a number of
# 370 million digits, and ``"x" * 10 ** 12`` a terabyte string.
MAX_EXPONENT = 64
MAX_MAGNITUDE = 1e308
MAX_REPEAT = 10_000
_CMPOPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "int": int,
    "float": float,
    "round": round,
    "log2": math.log2,
    "sqrt": math.sqrt,
    "ceil": math.ceil,
    "floor": math.floor,
}


class ExprError(ValueError):
    """An expression is malformed, uses a forbidden construct, or refers to an unknown name."""


class InactiveName(ExprError):
    """An expression read a parameter that is not active for this sample (a false condition)."""


class _OutOfBounds(ExprError):
    """A value past MAX_EXPONENT, MAX_MAGNITUDE or MAX_REPEAT; :func:`evaluate` names the expression."""


def _power(base: Any, exponent: Any) -> Any:
    """``base ** exponent``, refused when the exponent or the result is out of bounds."""
    if _is_number(exponent) and abs(exponent) > MAX_EXPONENT:
        raise _OutOfBounds(
            f"exponent {exponent!r} is above {MAX_EXPONENT}; ** allows |exponent| <= {MAX_EXPONENT}"
        )
    too_big = _is_number(base) and _is_number(exponent) and abs(base) > 1
    if too_big and exponent * math.log10(abs(base)) > math.log10(MAX_MAGNITUDE):
        raise _OutOfBounds(f"{base!r} ** {exponent!r} is above {MAX_MAGNITUDE:g}")
    return operator.pow(base, exponent)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _bounded(result: Any) -> Any:
    """``result`` when it is a number of magnitude at most MAX_MAGNITUDE (or a short sequence)."""
    if isinstance(result, int) and not isinstance(result, bool) and result.bit_length() > 1024:
        raise _OutOfBounds(f"an integer of {result.bit_length()} bits is above {MAX_MAGNITUDE:g}")
    if isinstance(result, str | list) and len(result) > MAX_REPEAT:
        raise _OutOfBounds(f"a value of {len(result)} items is longer than {MAX_REPEAT}")
    return result


def _check_repeat(left: Any, right: Any) -> None:
    """Refuse ``sequence * n`` whose result would be longer than MAX_REPEAT, before it is built."""
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, str | list) and isinstance(times, int) and len(seq) * times > MAX_REPEAT:
            raise _OutOfBounds(f"repeating a value {times} times is longer than {MAX_REPEAT} items")


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


# Cached: a space evaluates each of its few expressions once per sample, and once per checked
# combination when it is built (workbench/space/_buildable.py). The tree is never modified.
@functools.lru_cache(maxsize=1024)
def parse(expr: str) -> ast.Expression:
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"invalid syntax in {expr!r}: {exc.msg}") from None
    for node in ast.walk(tree):
        allowed = (
            ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.Constant,
            ast.Name, ast.Attribute, ast.Call, ast.Load, ast.Tuple, ast.List,
            ast.USub, ast.UAdd, ast.Not, ast.And, ast.Or, *_BINOPS, *_CMPOPS,
        )  # fmt: skip
        if not isinstance(node, allowed):
            raise ExprError(f"{type(node).__name__} is not allowed in {expr!r}")
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS):
            raise ExprError(f"only the functions {', '.join(FUNCTIONS)} may be called in {expr!r}")
    return tree


def names(expr: str) -> set[str]:
    """The dotted names an expression reads (function names excluded)."""
    out: set[str] = set()
    called = set()
    for node in ast.walk(parse(expr)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            called.add(id(node.func))
    for node in ast.walk(parse(expr)):
        if isinstance(node, ast.Attribute | ast.Name) and id(node) not in called:
            dotted = _dotted(node)
            if dotted and "." in dotted:
                out.add(dotted)
            elif isinstance(node, ast.Name):
                out.add(node.id)
    # Keep only maximal dotted names ("model.d_model", not also "model").
    return {n for n in out if not any(o != n and o.startswith(n + ".") for o in out)}


def evaluate(expr: str, values: Mapping[str, Any], inactive: frozenset[str] = frozenset()) -> Any:
    """Evaluate ``expr`` with dotted names looked up in ``values``."""
    tree = parse(expr)

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Tuple | ast.List):
            return [ev(e) for e in node.elts]
        dotted = _dotted(node)
        if dotted is not None:
            if dotted in values:
                return values[dotted]
            if dotted in inactive:
                raise InactiveName(f"{dotted} is not active for this sample")
            raise ExprError(f"unknown name {dotted!r} in {expr!r}")
        if isinstance(node, ast.BinOp):
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Mult):
                _check_repeat(left, right)
            return _bounded(_BINOPS[type(node.op)](left, right))
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else (+v if isinstance(node.op, ast.UAdd) else not v)
        if isinstance(node, ast.BoolOp):
            if isinstance(node.op, ast.And):
                result = True
                for v in node.values:
                    result = ev(v)
                    if not result:
                        return result
                return result
            result = False
            for v in node.values:
                result = ev(v)
                if result:
                    return result
            return result
        if isinstance(node, ast.Compare):
            left = ev(node.left)
            for op, comp in zip(node.ops, node.comparators, strict=True):
                right = ev(comp)
                if not _CMPOPS[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.IfExp):
            return ev(node.body) if ev(node.test) else ev(node.orelse)
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name)
            return FUNCTIONS[node.func.id](*[ev(a) for a in node.args])
        raise ExprError(f"cannot evaluate {ast.dump(node)} in {expr!r}")

    try:
        return ev(tree)
    except _OutOfBounds as exc:
        raise ExprError(f"{expr!r}: {exc}") from None
    except (ExprError, InactiveName):
        raise
    except (TypeError, ValueError, ZeroDivisionError, OverflowError) as exc:
        raise ExprError(f"{expr!r}: {exc}") from None
