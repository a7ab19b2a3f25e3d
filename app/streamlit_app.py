"""Sparse Memory Workbench: explore perplexity-versus-compute Pareto fronts of sparse memory designs.

Run with ``workbench app [--store PATH]``. Pages hold only UI; the analyses are in
:mod:`workbench.explore` and :mod:`workbench.sqlguard`.
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
        st.Page(
            VIEWS / "importance.py", title="Importance", icon=":material/insights:", url_path="importance"
        ),
    ],
    "Trials": [
        st.Page(VIEWS / "trial.py", title="Trial detail", icon=":material/search:", url_path="trial"),
        st.Page(VIEWS / "compare.py", title="Compare", icon=":material/compare_arrows:", url_path="compare"),
    ],
    "Data": [st.Page(VIEWS / "sql.py", title="SQL", icon=":material/terminal:", url_path="sql")],
}
page = st.navigation(pages)


@st.fragment(run_every=5)
def _live() -> None:
    """Rerun the whole app when a study has ingested new trials (checked every 5 s)."""
    if not st.session_state.get("wb_live", True):
        return
    try:
        now = explore.data_version(common.store())
    except StoreError:
        return  # busy or missing: the page says so; try again in 5 s
    seen = st.session_state.setdefault("wb_seen_version", now)
    if now != seen:
        st.session_state["wb_seen_version"] = now
        st.rerun(scope="app")


with st.sidebar:
    st.caption(f"Store: `{common.store_path()}` (read-only)")
    left, right = st.columns(2)
    if left.button("Refresh", help="Reload every table from the store now"):
        common.refresh()
    right.toggle(
        "Live", key="wb_live", value=True, help="Reload when a running study adds trials (checks every 5 s)"
    )
    _live()

common.run_page(page)
