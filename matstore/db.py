"""Engine and sessions: one engine per database URL, created once per process.

Writers use :func:`session_scope` (one transaction, committed on success, rolled back on
any error).  Readers (the dashboard, ``matstore sql``) connect with :func:`reader_engine` (a
login that is a member of ``matstore_reader`` only, see :mod:`matstore.readers`) and use
:func:`read_only_connection`, which opens a ``READ ONLY`` transaction with a statement
timeout; :func:`stream_statement` runs a user's query through a server-side cursor.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import Connection
from sqlmodel import Session

from matstore.config import Settings, get_settings, normalise_database_url
from matstore.embedded import ensure_embedded_url


class DatabaseUnavailableError(RuntimeError):
    """The configured database could not be reached."""


def resolve_url(settings: Settings | None = None) -> str:
    """Return the SQLAlchemy URL in use: the configured server or the embedded one.

    Raises
    ------
    matstore.embedded.EmbeddedServerError
        If no URL is configured and the embedded server cannot start.
    """
    settings = settings or get_settings()
    if settings.database_url:
        return settings.database_url
    return ensure_embedded_url(settings.embedded_dir)


@lru_cache(maxsize=8)
def _engine_for(url: str, pid: int) -> Engine:
    # pid is part of the cache key: an engine's pool must never cross a fork.
    return create_engine(url, pool_pre_ping=True, future=True)


def get_engine(url: str | None = None) -> Engine:
    """Return the process-wide engine for ``url`` (default: :func:`resolve_url`)."""
    url = normalise_database_url(url) if url else resolve_url()
    return _engine_for(url, os.getpid())


def reader_engine(*, dashboard: bool = False) -> Engine:
    """The engine of a login that can only read (:func:`matstore.readers.reader_url`).

    Raises
    ------
    matstore.readers.ReaderUnavailableError
        If no such login is configured and none can be created.
    """
    from matstore.readers import reader_url

    return get_engine(reader_url(dashboard=dashboard))


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """Yield a SQLModel session in one transaction: commit on success, roll back on error."""
    engine = engine or get_engine()
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@contextmanager
def read_only_connection(
    engine: Engine | None = None, *, timeout_ms: int | None = None
) -> Iterator[Connection]:
    """Yield a connection inside a ``READ ONLY`` transaction bounded by a statement timeout.

    Any INSERT/UPDATE/DELETE/DDL issued through it fails with PostgreSQL's
    ``cannot execute ... in a read-only transaction``.  The transaction is always rolled back.
    """
    engine = engine or get_engine()
    timeout_ms = timeout_ms if timeout_ms is not None else get_settings().statement_timeout_ms
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            conn.execute(text("SET TRANSACTION READ ONLY"))
            conn.execute(text(f"SET LOCAL statement_timeout = {int(timeout_ms)}"))
            yield conn
        finally:
            trans.rollback()


def wait_for_database(engine: Engine, *, timeout_s: float = 60.0, interval_s: float = 1.0) -> None:
    """Retry ``SELECT 1`` until the database answers (start-up of services in compose).

    Raises
    ------
    DatabaseUnavailableError
        If the database did not answer within ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return
        except Exception as exc:  # noqa: BLE001 - any connection error means "not yet"
            if time.monotonic() > deadline:
                raise DatabaseUnavailableError(
                    f"database did not answer within {timeout_s:.0f} s: {exc.__class__.__name__}"
                ) from exc
            time.sleep(interval_s)


@dataclass
class StatementRows:
    """The result of :func:`stream_statement`: column names and an iterator of row batches.

    Attributes
    ----------
    columns:
        Column names, in order.
    batches:
        Lists of at most ``batch_rows`` tuples each, fetched from the server as they are consumed.
    truncated:
        Set once the batches are exhausted: ``True`` if the statement had more rows than ``limit``.
    """

    columns: list[str]
    batches: Iterator[list[tuple]]
    truncated: bool = False


def stream_statement(conn: Connection, statement: str, *, limit: int = 1000, batch_rows: int = 1000) -> StatementRows:
    """Run one user query in ``conn``'s read-only transaction and stream its rows.

    A query (``SELECT``, ``VALUES``, ``TABLE``, ``WITH``) runs through a server-side cursor
    (``DECLARE ... NO SCROLL CURSOR``): at most ``batch_rows`` rows are held in memory, and the
    server computes no more rows than are fetched.  Other statements that return rows
    (``SHOW``, ``EXPLAIN``) run on a client cursor (their results are small).  Both use the
    extended query protocol, which refuses several commands in one string (otherwise
    ``"COMMIT; DELETE FROM source"`` would end the read-only transaction).

    Parameters
    ----------
    conn:
        A connection inside :func:`read_only_connection`.
    statement:
        The statement, passed as is (no parameter parsing).
    limit:
        Most rows returned; ``0`` returns all rows (still streamed).
    batch_rows:
        Rows fetched per round trip.

    Raises
    ------
    ValueError
        If the string holds several statements, or the statement returns no rows (``SET``,
        ``INSERT``...: ``matstore sql`` runs queries; the transaction is rolled back).
    psycopg.Error
        Whatever the server refuses (permission denied, read-only transaction, timeout).
    """
    raw = conn.connection.driver_connection
    raw.execute("SAVEPOINT matstore_statement")
    cursor = raw.cursor(name="matstore_statement", scrollable=False, withhold=False)
    try:
        _execute_refusing_several(cursor, statement)
    except _NotACursorQuery:
        raw.execute("ROLLBACK TO SAVEPOINT matstore_statement")
        cursor = raw.cursor()
        _execute_refusing_several(cursor, statement, prepare=True)
    if cursor.description is None:
        raise ValueError("matstore sql runs queries that return rows (SELECT, WITH, TABLE, VALUES, SHOW, EXPLAIN); "
                         "this statement returns none, and nothing it did was kept (the transaction is rolled back)")
    rows = StatementRows([d.name for d in cursor.description], iter(()))
    rows.batches = _batches(cursor, rows, limit=limit, batch_rows=batch_rows)
    return rows


class _NotACursorQuery(Exception):
    pass


def _execute_refusing_several(cursor, statement: str, **kwargs) -> None:  # noqa: ANN001
    import psycopg

    try:
        cursor.execute(statement, **kwargs)
    except psycopg.errors.SyntaxError as exc:
        if "multiple commands" in str(exc):
            raise ValueError("matstore sql runs exactly one statement, in a read-only transaction; "
                             "give one statement without ';' between commands") from None
        if getattr(cursor, "name", None):  # DECLARE accepts only queries: try a plain cursor
            raise _NotACursorQuery from None
        raise


def _batches(cursor, rows: StatementRows, *, limit: int, batch_rows: int) -> Iterator[list[tuple]]:  # noqa: ANN001
    sent = 0
    while limit == 0 or sent < limit:
        want = batch_rows if limit == 0 else min(batch_rows, limit - sent)
        batch = cursor.fetchmany(want)
        if not batch:
            return
        sent += len(batch)
        yield batch
    rows.truncated = bool(cursor.fetchmany(1))
