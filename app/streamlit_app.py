"""Sparse Memory Workbench: explore perplexity-versus-compute Pareto fronts of sparse memory designs.

Run with ``workbench app [--store PATH]``. Pages hold only UI; the analyses are in
:mod:`workbench.explore`.
"""

from __future__ import annotations

from pathlib import Path

import common
import streamlit as st

from workbench import explore
from workbench.errors import StoreError

st.set_page_config(page_title="Sparse Memory Workbench", page_icon=":material/memory:", layout="wide")

# Not "pages/": a folder of that name next to the main script turns on Streamlit's legacy
# multipage mode, which runs a page without this script (no navigation, no sidebar) on a deep link.
VIEWS = Path(__file__).resolve().parent / "views"
pages = {
    "Explore": [
        st.Page(VIEWS / "studies.py", title="Studies", icon=":material/table_chart:", default=True),
        st.Page(
            VIEWS / "pareto.py", title="Pareto explorer", icon=":material/scatter_plot:", url_path="pareto"
        ),
        st.Page(VIEWS / "grid.py", title="Grid analysis", icon=":material/grid_on:", url_path="grid"),
        st.Page(VIEWS / "params.py", title="Parameters", icon=":material/tune:", url_path="params"),
        st.Page(
            VIEWS / "importance.py", title="Importance", icon=":material/insights:", url_path="importance"
        ),
        st.Page(VIEWS / "health.py", title="Health", icon=":material/health_and_safety:", url_path="health"),
    ],
    "Trials": [
        st.Page(VIEWS / "trial.py", title="Trial detail", icon=":material/search:", url_path="trial"),
        st.Page(VIEWS / "compare.py", title="Compare", icon=":material/compare_arrows:", url_path="compare"),
    ],
    "Data": [st.Page(VIEWS / "sql.py", title="SQL", icon=":material/terminal:", url_path="sql")],
}
page = st.navigation(pages)


LIVE_EVERY = {"off": None, "2 s": 2, "5 s": 5, "10 s": 10, "30 s": 30, "1 min": 60}


def _live() -> None:
    """Rerun the whole app when a study has ingested new trials; otherwise do nothing, so a
    live page costs one fingerprint query per interval, not a reload."""
    try:
        now = explore.data_version(common.store())
    except StoreError:
        return  # busy or missing: the page says so; try again at the next tick
    seen = st.session_state.setdefault("wb_seen_version", now)
    if now != seen:
        st.session_state["wb_seen_version"] = now
        common.forget_version()
        st.rerun(scope="app")


def _new_trials_note(page_key: str) -> None:
    """Say how many trials were stored since this session last showed this page."""
    try:
        n_now = explore.trials_in(common.version())
    except StoreError:
        return
    viewed = st.session_state.setdefault("wb_viewed_trials", {})
    before = viewed.get(page_key)
    viewed[page_key] = n_now
    if before is not None and n_now > before:
        new = n_now - before
        st.success(f"**{new}** new trial{'s' if new > 1 else ''} since your last view of this page")


with st.sidebar:
    st.caption(f"Store: `{common.store_path()}` (read-only)")
    if st.button("Refresh", help="Reload every table from the store now"):
        common.refresh()
    every = st.select_slider(
        "Live refresh",
        list(LIVE_EVERY),
        value="5 s",
        key="wb_live_every",
        help="While a study writes to the store, check it at this interval and reload the page only "
        "when trials were added.",
    )
    if LIVE_EVERY[every]:
        st.fragment(run_every=LIVE_EVERY[every])(_live)()
    _new_trials_note(page.url_path or "studies")
    st.radio(
        "Figure downloads",
        ["svg", "png"],
        format_func=str.upper,
        horizontal=True,
        key=common.IMAGE_FORMAT,
        help="The camera button of a figure's toolbar saves it in this format (SVG for papers).",
    )

common.run_page(page)
