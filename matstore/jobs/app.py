"""The procrastinate :class:`~procrastinate.App` that every matstore worker and client shares.

The queue lives in matstore's own PostgreSQL database (procrastinate's tables are created by
Alembic revision 0003), so the database is the only service a deployment needs.  The
connection string is resolved lazily, when the app is opened, so importing this module
never starts the embedded server or touches the network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import procrastinate
from sqlalchemy.engine import make_url

#: Modules whose tasks every worker imports (procrastinate's ``import_paths``).
TASK_MODULES: tuple[str, ...] = ("matstore.jobs.tasks",)

#: Queues used by matstore's tasks; a worker started without ``--queue`` listens to all.
QUEUES: tuple[str, ...] = ("ingest", "compute", "models", "maintenance")


def libpq_url(url: str) -> str:
    """Return ``url`` as a libpq connection URI (``postgresql://...``).

    SQLAlchemy URLs name the driver (``postgresql+psycopg://``); libpq, and therefore
    psycopg's connection pool, only understands ``postgresql://`` or ``postgres://``.  The URL
    is parsed the way SQLAlchemy parses it (so the worker connects where matstore's engine
    does) and written back with RFC 3986 percent-encoding, which libpq decodes: query
    parameters such as ``host=/socket/dir`` of the embedded server's URL keep working, even
    with spaces or ``+`` in the path.

    Parameters
    ----------
    url:
        A PostgreSQL URL with or without a driver suffix.

    Returns
    -------
    str
        An equivalent URI with the scheme ``postgresql://``.

    Raises
    ------
    ValueError
        If ``url`` is not a PostgreSQL URL.
    """
    scheme = url.partition("://")[0]
    if not (scheme in ("postgres", "postgresql") or scheme.startswith("postgresql+")):
        raise ValueError(f"not a PostgreSQL URL (scheme {scheme!r})")
    parsed = make_url("postgresql://" + url.partition("://")[2])
    userinfo = ""
    if parsed.username is not None:
        userinfo = quote(parsed.username, safe="")
        if parsed.password is not None:
            userinfo += ":" + quote(str(parsed.password), safe="")
        userinfo += "@"
    host = parsed.host or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = f":{parsed.port}" if parsed.port else ""
    database = "/" + quote(parsed.database, safe="") if parsed.database else "/"
    query = urlencode(sorted(parsed.query.items()), doseq=True, quote_via=quote)
    return f"postgresql://{userinfo}{host}{port}{database}" + (f"?{query}" if query else "")


def database_conninfo() -> str:
    """The libpq URI of matstore's database (settings, or the embedded server).

    Called by the connection pool each time it opens a connection, so a worker follows
    ``MATSTORE_DATABASE_URL`` as it is when the app is opened, not when it is imported.
    Every queue connection runs as ``matstore_writer`` (``options=-c role=matstore_writer``),
    like :func:`matstore.db.writer_engine`'s; the first call checks that the login may.

    Raises
    ------
    matstore.db.WriterUnavailableError
        If the group is missing or the URL's login is not a member of it.
    """
    from matstore.db import resolve_url, writer_engine
    from matstore.roles import WRITER

    with writer_engine().connect():  # checks membership once per process, with a clear message
        pass
    url = make_url(resolve_url())
    options = f"{url.query.get('options', '')} -c role={WRITER}".strip()
    return libpq_url(url.update_query_dict({"options": options}).render_as_string(hide_password=False))


def make_connector(
    conninfo: str | Callable[[], str] | None = None, *, max_size: int = 10
) -> procrastinate.PsycopgConnector:
    """A procrastinate connector with a small psycopg pool on matstore's database.

    Parameters
    ----------
    conninfo:
        libpq connection string or a callable returning one; default
        :func:`database_conninfo` (resolved at connection time).
    max_size:
        Upper bound of the pool.  A worker needs its job concurrency plus about three
        connections (LISTEN/NOTIFY, heartbeat, periodic deferrer).

    Returns
    -------
    procrastinate.PsycopgConnector
        An unopened connector; open it with ``app.open()`` / ``app.open_async()``.
    """
    if isinstance(conninfo, str):
        conninfo = libpq_url(conninfo)
    pool_args: dict[str, Any] = {
        "conninfo": conninfo or database_conninfo,
        "min_size": 1,
        "max_size": max(2, max_size),
    }
    return procrastinate.PsycopgConnector(**pool_args)


def make_app(conninfo: str | Callable[[], str] | None = None) -> procrastinate.App:
    """A new procrastinate app on ``conninfo`` that imports matstore's task modules.

    Parameters
    ----------
    conninfo:
        See :func:`make_connector`.

    Returns
    -------
    procrastinate.App
        The app (not yet opened).
    """
    return procrastinate.App(connector=make_connector(conninfo), import_paths=list(TASK_MODULES))


#: The application: tasks are registered on it by :mod:`matstore.jobs.tasks`.
app: procrastinate.App = make_app()
