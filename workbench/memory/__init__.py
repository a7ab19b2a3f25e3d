"""Memory layers for the FFN slot, one file each, all in one registry.

Adding a layer: write ``workbench/memory/<name>.py`` with a registered Config and a module,
then import it below. The conformance suite (tests/test_memory_conformance.py) covers it
with no test edits.
"""

from workbench.memory import (  # noqa: F401  (explicit imports fill the registry)
    avgk,
    base_layer,
    dense,
    gshard,
    hash_layer,
    lsh,
    pkm,
    softmax_table,
    switch,
    token_table,
    vanilla,
)
from workbench.memory.base import ForwardContext, LayerContext, LayerCost, MemoryConfig, MemoryLayer
from workbench.memory.registry import config_from_dict, get, knobs, names, register

__all__ = [
    "ForwardContext",
    "LayerContext",
    "LayerCost",
    "MemoryConfig",
    "MemoryLayer",
    "config_from_dict",
    "get",
    "knobs",
    "names",
    "register",
]
