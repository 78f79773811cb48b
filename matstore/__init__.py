"""matstore: a PostgreSQL-backed materials knowledge store.

Data flows one way: ``matstore.ingest`` writes into the tables defined in
``matstore.schema``; ``matstore.models`` reads them and writes equation versions;
``matstore.dashboard`` only reads.  ``matstore.cli`` and ``matstore.jobs`` are thin
front ends over those layers.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("matstore")
except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
    __version__ = "0.0.0"

__all__ = ["__version__"]
