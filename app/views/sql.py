"""SQL: a read-only query box over the store, results as a table and a CSV download."""

import common
import streamlit as st

from workbench import explore
from workbench.errors import StoreError

st.title("SQL")
st.caption(
    explore.ALLOWED_HELP
    + " Tables: studies, trials, params, curves, routing, routing_load, provenance; views: trial_overview, routing_summary."
)
EXAMPLE = (
    "SELECT memory_kind, count(*) AS trials, min(val_ppl) AS best_ppl, median(flops_per_token) AS flops\n"
    "FROM trials WHERE status = 'complete'\nGROUP BY memory_kind ORDER BY best_ppl"
)
query = st.text_area("Query", value=EXAMPLE, height=140, key="sql_query")
if st.button("Run", type="primary", key="sql_run") or "sql_result" not in st.session_state:
    try:
        st.session_state["sql_result"] = explore.run_query(common.store_path(), query)
        st.session_state["sql_error"] = None
    except (explore.SqlRefused, StoreError) as exc:
        st.session_state["sql_result"] = None
        st.session_state["sql_error"] = str(exc)

if st.session_state.get("sql_error"):
    st.error(st.session_state["sql_error"])
result = st.session_state.get("sql_result")
if result is not None:
    more = f" (first {len(result.frame):,} rows)" if result.truncated else ""
    st.caption(f"{len(result.frame):,} rows{more} in {result.seconds * 1000:.0f} ms")
    common.table(result.frame, "query", hide_index=True)
