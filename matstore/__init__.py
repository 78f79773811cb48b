"""matstore: a PostgreSQL-backed materials knowledge store.

Data flows one way: ``matstore.ingest`` writes into the tables defined in
``matstore.schema``; ``matstore.models`` reads them and writes equation versions;
``matstore.dashboard`` only reads.  ``matstore.cli`` and ``matstore.jobs`` are thin
front ends over those layers.
"""

import os
from importlib.metadata import PackageNotFoundError, version

# SQLAlchemy's compiled (Cython) result rows are switched off before SQLAlchemy is first
# imported: with them the test suite crashed with a segmentation fault in freed ORM attribute
# dicts in 3 of 9 runs on 2.1.9 (bisected to ``engine._result_cy``; hence the < 2.1 pin) and
# in 1 of 8 runs on 2.0.59 (its ``cyextension.resultproxy``), and in none of the runs without
# them (gc off, or the compiled modules removed or disabled).  The pure-Python rows cost ~10 %
# on a 300,000-row fetch.  An explicit empty value turns them back on.
os.environ.setdefault("DISABLE_SQLALCHEMY_CEXT_RUNTIME", "1")

try:
    __version__ = version("matstore")
except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
    __version__ = "0.0.0"

__all__ = ["__version__"]
