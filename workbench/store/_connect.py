"""Short-lived DuckDB connections that wait out another process's file lock.

DuckDB locks the database file per process: a read-write connection takes an exclusive lock
(no other process may open the file at all, not even read-only), a read-only connection takes
a shared lock (other readers may open it; a writer may not). Measured with duckdb 2.0.0 and two
processes; the error is ``duckdb.IOException: Could not set lock on file ... Conflicting lock is
held in <exe> (PID n)`` in both directions. So both sides hold connections briefly and retry:
the ingest writer for one trial's transaction, the app for one query's snapshot.

Inside one process DuckDB shares a database instance between connections, and refuses a second
connection whose ``read_only`` differs from an open one (``duckdb.ConnectionException``); with
short-lived connections that is transient too, so it is retried the same way.
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

import duckdb

from workbench.errors import StoreError

_LOCK_MESSAGES = ("Could not set lock", "different configuration")
_HOLDER = re.compile(r"Conflicting lock is held in (.*?) \(PID (\d+)\)")
_FIRST_DELAY_S = 0.01
_MAX_DELAY_S = 0.1


def is_lock_conflict(exc: BaseException) -> bool:
    """True when ``exc`` says another connection holds the file in a conflicting mode."""
    return isinstance(exc, duckdb.IOException | duckdb.ConnectionException) and any(
        m in str(exc) for m in _LOCK_MESSAGES
    )


def connect(path: Path, *, read_only: bool, timeout_s: float) -> duckdb.DuckDBPyConnection:
    """Open ``path``, retrying with jittered exponential backoff while the file is locked.

    Raises :class:`StoreError` after ``timeout_s`` of conflicts, naming the process that holds
    the lock, or at once on any other failure (missing file, newer file format, corruption).
    """
    deadline = time.monotonic() + timeout_s
    delay = _FIRST_DELAY_S
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            if not is_lock_conflict(exc):
                raise StoreError(f"cannot open store {path}: {_first_line(exc)}") from exc
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StoreError(
                    f"store {path} stayed locked for {timeout_s:g}s{_holder(exc)}; "
                    "DuckDB lets one process write, and only while no other process has the file open"
                ) from None
            time.sleep(min(delay, remaining) * random.uniform(0.5, 1.0))
            delay = min(delay * 2, _MAX_DELAY_S)


def _holder(exc: BaseException) -> str:
    match = _HOLDER.search(str(exc))
    return f" by PID {match.group(2)} ({match.group(1)})" if match else ""


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
