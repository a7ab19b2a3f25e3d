"""Counting the host synchronisations a piece of GPU work makes (CUDA's sync debug mode).

The count decides whether a training step may be captured as a CUDA graph (a step that reads
the device from the host cannot be), and the benchmarks report it per layer. Only torch's
own per-operation warning counts: the first time the debug mode is switched on, torch also
warns that the mode "is a prototype feature", and counting that notice once made every
compiled step look like it synchronised.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import TypeVar

import torch

SYNC_WARNING = "called a synchronizing CUDA operation"

R = TypeVar("R")


def count_sync_warnings(messages: Iterable[object]) -> int:
    """How many of ``messages`` (warnings or their texts) report a synchronising CUDA operation."""
    return sum(SYNC_WARNING in str(getattr(m, "message", m)) for m in messages)


def count_host_syncs(fn: Callable[[], R]) -> tuple[R, int]:
    """``(fn(), host synchronisations it made)``, under CUDA's sync debug mode (warn)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            result = fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return result, count_sync_warnings(caught)
