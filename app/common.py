"""What every page shares: the store, cached loaders, the trial selection, and store errors.

The app caches the :class:`Store` (it holds a path, never a DuckDB connection: a connection held
open would lock a running study out of the file) and query results (``st.cache_data``). Every
loader takes the store's data version, a cheap fingerprint read on each run, so new trials show
up as soon as a study ingests them; ``ttl`` bounds what stale entries cost.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pandas as pd
import streamlit as st

from workbench import explore
from workbench.errors import StoreError, WorkbenchError
from workbench.store import Store

DEFAULT_STORE = "store/workbench.duckdb"
TTL_S = 30
BUSY_RETRIES = 5
SELECTED = "wb_selected"  # session key: trial keys picked on the Pareto page (or elsewhere)
T = TypeVar("T")


def store_path() -> str:
    """``--store PATH`` after ``--`` on the streamlit command line, else ``$WORKBENCH_STORE``, else the default."""
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg == "--store" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--store="):
            return arg.split("=", 1)[1]
    return os.environ.get(explore.STORE_ENV) or DEFAULT_STORE


@st.cache_resource(show_spinner=False)
def _store(path: str) -> Store:
    return Store.open(path, read_only=True, lock_timeout_s=5.0)


def store() -> Store:
    """The read-only store of this app (raises :class:`StoreError` when it is missing)."""
    return _store(store_path())


@st.cache_data(ttl=2, show_spinner=False, max_entries=4)
def _version(path: str) -> tuple[Any, ...]:
    return explore.data_version(_store(path))


def version() -> tuple[Any, ...]:
    """The store's data version (re-read at most every 2 s): part of every loader's cache key."""
    return _version(store_path())


# --- cached loaders: every argument is part of the cache key ------------------------------------------


@st.cache_data(ttl=TTL_S, show_spinner=False, max_entries=8)
def load_studies(path: str, version: tuple[Any, ...]) -> pd.DataFrame:
    return _store(path).studies()


@st.cache_data(ttl=TTL_S, show_spinner=False, max_entries=8)
def load_trial_index(path: str, version: tuple[Any, ...]) -> pd.DataFrame:
    """Every trial of every study, without parameter columns (small and fast)."""
    return _store(path).trials(with_params=False)


@st.cache_data(ttl=TTL_S, show_spinner=False, max_entries=16)
def load_trials(
    path: str, studies: tuple[str, ...], status: str | None, version: tuple[Any, ...]
) -> pd.DataFrame:
    return _store(path).trials(list(studies), status)


@st.cache_data(ttl=TTL_S, show_spinner=False, max_entries=16)
def load_sampled(path: str, studies: tuple[str, ...], version: tuple[Any, ...]) -> list[str]:
    """Parameters sampled in any of ``studies`` (the others were fixed by the space)."""
    summary = _store(path).param_summary(list(studies))
    return sorted(summary.loc[summary["sampled"], "name"].unique())


@st.cache_data(ttl=TTL_S, show_spinner=False, max_entries=32)
def load_trial_detail(path: str, key: str, version: tuple[Any, ...]) -> explore.TrialDetail:
    return explore.load_trial_detail(_store(path), key)


@st.cache_data(ttl=TTL_S, show_spinner=False, max_entries=16)
def load_curves(path: str, keys: tuple[str, ...], version: tuple[Any, ...]) -> pd.DataFrame:
    return explore.curves_of(_store(path), keys)


@st.cache_data(ttl=TTL_S, show_spinner=False, max_entries=16)
def load_grid(
    path: str,
    studies: tuple[str, ...],
    metric: str,
    dims: tuple[str, ...],
    reduce: str,
    version: tuple[Any, ...],
) -> Any:
    return _store(path).to_xarray(list(studies), metric, list(dims), reduce)


def cached(loader: Callable[..., T], *args: Any) -> T:
    """``loader(path, *args, version)`` for this app's store."""
    return loader(store_path(), *args, version())


def refresh() -> None:
    """Drop every cached query result (the Store object stays: it is only a path)."""
    st.cache_data.clear()


# --- the trial selection shared by the Pareto, trial and compare pages ---------------------------------


def selected() -> list[str]:
    return list(st.session_state.get(SELECTED, []))


def set_selected(keys: list[str]) -> None:
    st.session_state[SELECTED] = list(dict.fromkeys(keys))


# --- errors ----------------------------------------------------------------------------------------


def is_busy(exc: BaseException) -> bool:
    return isinstance(exc, StoreError) and "stayed locked" in str(exc)


def run_page(page: Any) -> None:
    """Run the current page; a store that a study is writing to is retried, other errors explained."""
    try:
        page.run()
        st.session_state["wb_busy_retries"] = 0
    except StoreError as exc:
        if is_busy(exc):
            tries = st.session_state.get("wb_busy_retries", 0)
            if tries < BUSY_RETRIES:
                st.session_state["wb_busy_retries"] = tries + 1
                st.warning(
                    f"The store is busy: a study is writing to it. Retrying ({tries + 1}/{BUSY_RETRIES})…"
                )
                time.sleep(1.0)
                st.rerun()
            st.session_state["wb_busy_retries"] = 0
            st.error(f"The store stayed busy: {exc}")
            st.button("Retry")
        else:
            no_store(exc)
    except WorkbenchError as exc:
        st.error(str(exc))


def no_store(exc: BaseException) -> None:
    st.error(f"Cannot read the store: {exc}")
    st.markdown(
        "Start a study with `workbench run spaces/quickstart.py`, or point the app at another store "
        "with `workbench app --store PATH`."
    )


def fmt_columns(frame: pd.DataFrame) -> dict[str, Any]:
    """st.column_config for the metric columns of a trials table."""
    config: dict[str, Any] = {}
    for col in frame.columns:
        if col == "val_ppl":
            config[col] = st.column_config.NumberColumn("val ppl", format="%.3f")
        elif col in ("flops_per_token", "params_total", "params_active", "peak_mem_bytes"):
            config[col] = st.column_config.NumberColumn(col, format="compact")
        elif col in ("tokens_per_s", "train_seconds"):
            config[col] = st.column_config.NumberColumn(col, format="%.1f")
    return config
