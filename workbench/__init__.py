"""Sparse Memory Workbench: search, train, measure and compare sparse neural memory layers.

Heavy modules (torch, optuna, duckdb) are imported lazily by the submodules that need them,
so ``import workbench`` and ``workbench --help`` stay fast.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
