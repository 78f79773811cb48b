"""Import the dashboard's heavy libraries in the background once per server process.

The first visit of the Surfaces page would otherwise wait for pymatgen (the Wulff
construction) to import, and the Equations page for SymPy's printing and lambdify machinery:
seconds on a loaded machine.  :func:`start` is called by the router on every run and starts
one daemon thread per process; imports are thread-safe (the import lock), so a page that
needs a module meanwhile simply waits for it.
"""

from __future__ import annotations

import importlib
import logging
import threading

log = logging.getLogger(__name__)

#: Modules imported ahead of the first page that needs them.
MODULES = ("pymatgen.analysis.wulff", "pymatgen.core", "sympy.printing.latex", "sympy.utilities.lambdify",
           "matstore.models.expressions", "plotly.express")

_started = threading.Event()


def _import_all() -> None:
    for name in MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:  # a missing optional library shows up on its page instead
            log.info("warm-up could not import %s: %s", name, exc)


def start() -> None:
    """Start the background imports (once per process; later calls return at once)."""
    if _started.is_set():
        return
    _started.set()
    threading.Thread(target=_import_all, name="matstore-dashboard-warmup", daemon=True).start()
