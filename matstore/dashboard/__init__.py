"""The matstore dashboard: a read-only Streamlit app over the store.

- :mod:`~matstore.dashboard.app`: the router (``st.navigation`` over the pages)
- :mod:`~matstore.dashboard.pages`: one file per page (Overview, Bulk properties, Surfaces,
  Provenance, Equations, Jobs)
- :mod:`~matstore.dashboard.queries`: every SQL statement of the dashboard, bound parameters
  only, each run in a ``READ ONLY`` transaction with a statement timeout, results cached
- :mod:`~matstore.dashboard.charts`: Plotly figures, pure functions of DataFrames
- :mod:`~matstore.dashboard.expressions`: safe loading and evaluation of stored SymPy
  expressions (equation versions, orientation functions)

Start it with ``matstore dashboard``.
"""

from pathlib import Path

#: The Streamlit entry point passed to ``streamlit run``.
APP_PATH = Path(__file__).resolve().parent / "app.py"

__all__ = ["APP_PATH"]
