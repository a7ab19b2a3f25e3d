"""The DuckDB analysis store of studies and trials (docs/DESIGN.md §6).

Optuna storage coordinates trials; :mod:`workbench.store.ingest` copies them here idempotently. The
schema lives in ``store/migrations``, views in ``store/views``, queries in ``store/queries``.
"""

from workbench.store._connect import is_lock_conflict
from workbench.store._frames import REDUCERS, Reduce
from workbench.store._migrate import latest_version
from workbench.store._store import READ_LOCK_TIMEOUT_S, WRITE_LOCK_TIMEOUT_S, Store

__all__ = [
    "READ_LOCK_TIMEOUT_S",
    "REDUCERS",
    "WRITE_LOCK_TIMEOUT_S",
    "Reduce",
    "Store",
    "is_lock_conflict",
    "latest_version",
]
