"""Start Streamlit with the dashboard's heavy libraries already imported.

``matstore dashboard`` runs ``python -m matstore.dashboard.warmup run app.py …``: this module
imports pymatgen (the Wulff construction), SymPy's printers and lambdify, and Plotly Express
in the main thread, then hands over to Streamlit's own command line in the same process.
Every session's pages then find them in ``sys.modules`` instead of waiting seconds on the
first visit.  (Importing them from a background thread while a page imports SymPy races on
SymPy's circular imports, so it is done here, before any session exists.)
"""

from __future__ import annotations

import importlib
import logging
import sys

log = logging.getLogger(__name__)

#: Modules imported before the server starts.
MODULES = ("pymatgen.analysis.wulff", "pymatgen.core", "sympy", "sympy.printing.latex", "sympy.utilities.lambdify",
           "matstore.models.expressions", "plotly.express", "pandas")


def preload() -> None:
    """Import :data:`MODULES`; a missing optional library shows up on its page instead."""
    for name in MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            log.info("could not preload %s: %s", name, exc)


def main() -> None:
    """Preload, then run Streamlit's command line with this process's arguments."""
    preload()
    from streamlit.web import cli

    sys.argv = ["streamlit", *sys.argv[1:]]
    sys.exit(cli.main())


if __name__ == "__main__":
    main()
