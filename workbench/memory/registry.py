"""The one registry of memory layers: name -> Config class. Filled by explicit imports in
``workbench.memory.__init__``; an unknown or duplicate name fails loudly and lists the valid ones."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from typing import Any, TypeVar

from workbench.errors import ConfigError
from workbench.memory.base import MemoryConfig

_REGISTRY: dict[str, type[MemoryConfig]] = {}

C = TypeVar("C", bound=type[MemoryConfig])


def register(config_cls: C) -> C:
    """Class decorator: register a memory layer's Config under its ``kind``."""
    name = config_cls.kind
    if not name:
        raise TypeError(f"{config_cls.__qualname__} must set the class attribute 'kind'")
    if name in _REGISTRY:
        raise KeyError(
            f"memory layer {name!r} is registered twice ({_REGISTRY[name].__module__} and {config_cls.__module__})"
        )
    _REGISTRY[name] = config_cls
    return config_cls


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(kind: str) -> type[MemoryConfig]:
    """The Config class registered as ``kind``; an unknown name lists the valid ones."""
    try:
        return _REGISTRY[kind]
    except KeyError:
        close = difflib.get_close_matches(str(kind), _REGISTRY, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"memory.kind: unknown memory layer {kind!r}{hint}; valid: {', '.join(names())}"
        ) from None


def knobs(kind: str) -> dict[str, Any]:
    """The knobs of a layer and their defaults (``dataclasses.MISSING`` shown as ``None``)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(get(kind)):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = None
    return out


def config_from_dict(values: Mapping[str, Any]) -> MemoryConfig:
    """Build a layer config from ``{"kind": ..., knob: value}``; unknown knobs name the field."""
    values = dict(values)
    kind = values.pop("kind", None)
    if kind is None:
        raise ConfigError(f"memory.kind: missing; set it to one of: {', '.join(names())}")
    cls = get(kind)
    valid = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean 'memory.{close[0]}'?)" if close else ""
            raise ConfigError(
                f"memory.{key}: not a knob of memory layer {kind!r}{hint}; its knobs: {', '.join(sorted(valid)) or 'none'}"
            )
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"memory: cannot build {kind!r} config: {exc}") from None
