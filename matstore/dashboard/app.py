"""Router of the matstore dashboard: ``st.navigation`` over the pages, grouped by section.

Run with ``matstore dashboard`` (or ``streamlit run matstore/dashboard/app.py``).  Pages
live in ``pages/``, one file each, and read the store only through
:mod:`matstore.dashboard.queries` (READ ONLY transactions with a statement timeout).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from sqlalchemy.exc import DBAPIError, OperationalError

from matstore.provenance import scrub_text

PAGES = Path(__file__).resolve().parent / "pages"

st.set_page_config(page_title="matstore", page_icon=":material/science:", layout="wide")

navigation = st.navigation(
    {
        "Store": [
            st.Page(PAGES / "overview.py", title="Overview", icon=":material/dashboard:", default=True),
            st.Page(PAGES / "jobs.py", title="Jobs", icon=":material/schedule:"),
        ],
        "Properties": [
            st.Page(PAGES / "bulk.py", title="Bulk properties", icon=":material/scatter_plot:"),
            st.Page(PAGES / "surfaces.py", title="Surfaces", icon=":material/hexagon:"),
            st.Page(PAGES / "compare.py", title="Compare methods", icon=":material/compare:"),
            st.Page(PAGES / "configurations.py", title="Configurations", icon=":material/grid_view:"),
            st.Page(PAGES / "provenance.py", title="Provenance", icon=":material/fingerprint:"),
        ],
        "Models": [
            st.Page(PAGES / "equations.py", title="Equations", icon=":material/function:"),
        ],
    }
)

with st.sidebar:
    st.caption("matstore · read-only view of the store")
    if st.button("Reload data", help="Forget cached query results and read the database again"):
        from matstore.dashboard.queries import clear_caches

        clear_caches()

try:
    navigation.run()
except OperationalError as exc:
    # Statement timeout, lost connection: say so instead of a traceback.
    st.error(f"The database did not answer this page's query: {scrub_text(str(exc.orig or exc)).splitlines()[0]}")
except DBAPIError as exc:
    st.error(f"Database error: {scrub_text(str(exc.orig or exc)).splitlines()[0]}")
