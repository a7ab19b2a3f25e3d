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
IMAGE_FORMAT = "wb_image_format"  # session key: the format of the figures' camera button (svg, png)
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


def forget_version() -> None:
    """Drop the cached data version, so the next run reads the store's new contents at once."""
    _version.clear()


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
def load_designs(path: str, studies: tuple[str, ...], version: tuple[Any, ...]) -> pd.DataFrame:
    """One row per design of ``studies``: seeds, means and 95% intervals (the ``designs`` view)."""
    return _store(path).designs(list(studies), with_params=False)


@st.cache_data(ttl=TTL_S, show_spinner=False, max_entries=4)
def load_claims(path: str, version: tuple[Any, ...]) -> pd.DataFrame:
    """The replication claims (docs/REPLICATION.md) evaluated on this store's replicate-* studies."""
    return explore.claims_frame(explore.evaluate_all(explore.CLAIMS, _store(path)))


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


@st.cache_data(ttl=TTL_S, show_spinner=False, max_entries=32)
def load_rerun_command(path: str, key: str, version: tuple[Any, ...]) -> str:
    return explore.trial_rerun_command(_store(path), key)


@st.cache_data(ttl=TTL_S, show_spinner=False, max_entries=16)
def load_routing_health(path: str, studies: tuple[str, ...], version: tuple[Any, ...]) -> pd.DataFrame:
    return explore.routing_health(_store(path), studies)


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


# --- filters -------------------------------------------------------------------------------------------


def filter_widgets(
    columns: list[str], infos: dict[str, explore.ParamInfo], prefix: str
) -> list[explore.Filter]:
    """A multiselect (categorical) or range slider (numeric) per column, keyed ``PREFIX<column>``;
    returns the filters that keep less than everything."""
    filters = []
    for column in columns:
        info = infos[column]
        if info.categorical:
            values = st.multiselect(
                column,
                info.values,
                default=info.values,
                key=f"{prefix}{column}",
                format_func=explore.fmt_value,
            )
            if len(values) < len(info.values):
                filters.append(explore.Filter(column=column, values=tuple(values)))
        elif info.high > info.low:
            low, high = st.slider(
                column,
                info.low,
                info.high,
                (info.low, info.high),
                step=(info.high - info.low) / 200,
                key=f"{prefix}{column}",
                format="%.4g",
            )
            if low > info.low or high < info.high:
                filters.append(explore.Filter(column=column, low=low, high=high))
    return filters


# --- tables and figures with their downloads ----------------------------------------------------------


def chart(fig: Any, key: str, **kwargs: Any) -> Any:
    """``st.plotly_chart`` whose camera button (mode bar) saves the figure as SVG or PNG, as set
    in the sidebar, under the name ``key``."""
    config = explore.figure_config(st.session_state.get(IMAGE_FORMAT, "svg"), key)
    return st.plotly_chart(fig, key=key, config=config, **kwargs)


def downloads(frame: pd.DataFrame, name: str) -> None:
    """CSV and Parquet download buttons for ``frame`` (the files are made only when clicked)."""
    with st.container(horizontal=True, key=f"dl_{name}"):
        st.download_button(
            "CSV",
            lambda: explore.csv_bytes(frame),
            file_name=f"{name}.csv",
            mime="text/csv",
            key=f"{name}_csv",
            on_click="ignore",
            icon=":material/download:",
            type="tertiary",
        )
        st.download_button(
            "Parquet",
            lambda: explore.parquet_bytes(frame),
            file_name=f"{name}.parquet",
            mime="application/vnd.apache.parquet",
            key=f"{name}_parquet",
            on_click="ignore",
            icon=":material/download:",
            type="tertiary",
        )


def table(frame: pd.DataFrame, name: str, shown: Any = None, **kwargs: Any) -> Any:
    """``st.dataframe`` of ``shown`` (default ``frame``, e.g. a Styler of it) with CSV and Parquet
    downloads of ``frame`` below it; returns the dataframe's selection state."""
    event = st.dataframe(frame if shown is None else shown, **kwargs)
    downloads(frame, name)
    return event


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
