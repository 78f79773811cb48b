"""Engine and sessions: one engine per database URL and role, created once per process.

Writers use :func:`writer_engine` (also what :func:`get_engine` gives without a URL): every
connection runs as the group role ``matstore_writer``, set at connection start (``-c
role=matstore_writer``, so ``current_user`` is the group even when the URL's login is a
superuser), and :func:`session_scope` (one transaction, committed on success, rolled back on
any error).  Only migrations and role administration use :func:`owner_engine`, the URL's own
login.  Readers (the dashboard, ``matstore sql``) connect with :func:`reader_engine` (a
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

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection
from sqlmodel import Session

from matstore.config import Settings, get_settings, normalise_database_url
from matstore.embedded import ensure_embedded_url


class DatabaseUnavailableError(RuntimeError):
    """The configured database could not be reached."""


class WriterUnavailableError(RuntimeError):
    """The database URL's login may not act as ``matstore_writer`` (or the group does not exist yet)."""


class StatementTimeoutError(RuntimeError):
    """A read-only query ran longer, in total, than its statement timeout and was cancelled."""


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


@lru_cache(maxsize=16)
def _engine_for(url: str, pid: int, role: str | None = None) -> Engine:
    # pid is part of the cache key: an engine's pool must never cross a fork.
    engine = create_engine(url, pool_pre_ping=True, future=True)
    if role is not None:
        event.listen(engine, "do_connect", _start_as(role))
    return engine


def _start_as(role: str):  # noqa: ANN202
    """A ``do_connect`` hook: check once that the login may act as ``role``, then start every connection as it.

    The role goes into the libpq ``options`` (``-c role=...``), so it also holds for any
    connection made from the same DSN (``psycopg.Connection.info.dsn``: the snapshot twin of
    :mod:`matstore.ingest.snapshot`).
    """
    checked: list[bool] = []

    def do_connect(dialect, conn_rec, cargs, cparams) -> None:  # noqa: ANN001
        if not checked:
            import psycopg

            with psycopg.connect(*cargs, **cparams) as conn:
                check_can_act_as(conn, role)
            checked.append(True)
        cparams["options"] = f"{cparams.get('options', '')} -c role={role}".strip()

    return do_connect


def check_can_act_as(conn, role: str) -> None:  # noqa: ANN001
    """Raise :class:`WriterUnavailableError` unless ``conn``'s login may ``SET ROLE`` to ``role``.

    Parameters
    ----------
    conn:
        An open psycopg connection as the database URL's login.
    role:
        A matstore group role (``matstore_writer``).

    Raises
    ------
    WriterUnavailableError
        ``role`` does not exist (the database was never migrated) or the login is not a member.
    """
    user, exists, member = conn.execute(
        "SELECT session_user::text, g.oid IS NOT NULL, coalesce(pg_has_role(session_user, g.oid, 'MEMBER'), false) "
        "FROM (SELECT 1) one LEFT JOIN pg_roles g ON g.rolname = %s", (role,)).fetchone()
    if not exists:
        raise WriterUnavailableError(f"the group role {role} does not exist: run `matstore db migrate` first")
    if not member:
        raise WriterUnavailableError(
            f"the database URL's login {user} is not a member of {role}, and matstore writes only as {role}: "
            f"as a role administrator run GRANT {role} TO {user} (docs/security.md)")


def get_engine(url: str | None = None) -> Engine:
    """Return the process-wide engine for ``url``, or without one :func:`writer_engine`.

    An explicit ``url`` connects as its login, unchanged (tests, the reader logins).
    """
    if not url:
        return writer_engine()
    return _engine_for(normalise_database_url(url), os.getpid())


def writer_engine() -> Engine:
    """The configured database (:func:`resolve_url`), every connection running as ``matstore_writer``.

    Ingest, fits, promotions, vocabulary additions, exports and queue workers use it.  The
    URL's login must be a superuser or a member of the group; the first connection checks it.

    Raises
    ------
    WriterUnavailableError
        At the first connection: the group is missing or the login is not a member of it.
    """
    from matstore.roles import WRITER

    return _engine_for(resolve_url(), os.getpid(), WRITER)


def owner_engine() -> Engine:
    """The configured database as the URL's own login: only for migrations and role administration."""
    return _engine_for(resolve_url(), os.getpid())


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


#: The one-line refusal of a ``COPY`` statement by :func:`stream_statement` (``matstore sql``).
COPY_REFUSAL = ("COPY is not supported by matstore sql: run the query itself and add --csv, "
                "e.g. matstore sql \"SELECT * FROM material\" --csv > material.csv")


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
        If the string holds several statements, the statement returns no rows (``SET``,
        ``INSERT``...: ``matstore sql`` runs queries; the transaction is rolled back), or it is
        a ``COPY`` the server started (``TO STDOUT``: :data:`COPY_REFUSAL`; ``--csv`` writes
        CSV); its connection is closed, the transaction rolled back.
    StatementTimeoutError
        If the query, all its fetches together, ran past the transaction's ``statement_timeout``
        (see :class:`_Deadline`); the server cancels it.
    psycopg.Error
        Whatever the server refuses (permission denied, read-only transaction).
    """
    import psycopg

    raw = conn.connection.driver_connection
    timeout_ms = int(raw.execute("SELECT setting FROM pg_settings WHERE name = 'statement_timeout'").fetchone()[0])
    deadline = _Deadline(timeout_ms)
    raw.execute("SAVEPOINT matstore_statement")
    cursor = raw.cursor(name="matstore_statement", scrollable=False, withhold=False)
    try:
        with deadline.translating():
            _execute_refusing_several(cursor, statement)
    except _NotACursorQuery:
        raw.execute("ROLLBACK TO SAVEPOINT matstore_statement")
        cursor = raw.cursor()
        try:
            with deadline.translating():
                _execute_refusing_several(cursor, statement, prepare=True)
        except psycopg.ProgrammingError as exc:
            # A COPY the server accepted (TO STDOUT, FROM STDIN): it is in COPY mode and the
            # connection takes no other command, not even the rollback, so it is closed (the
            # server ends the COPY and rolls back).  A COPY the server refuses (TO PROGRAM,
            # to a file, FROM in a read-only transaction) keeps the server's reason.
            if exc.sqlstate is not None or not str(exc).startswith("COPY cannot be used"):
                raise  # the server's own refusal, or not psycopg's "use copy() instead"
            conn.invalidate()
            raise ValueError(COPY_REFUSAL) from None
    if cursor.description is None:
        raise ValueError("matstore sql runs queries that return rows (SELECT, WITH, TABLE, VALUES, SHOW, EXPLAIN); "
                         "this statement returns none, and nothing it did was kept (the transaction is rolled back)")
    rows = StatementRows([d.name for d in cursor.description], iter(()))
    rows.batches = _batches(cursor, rows, limit=limit, batch_rows=batch_rows, deadline=deadline)
    return rows


class _Deadline:
    """The whole query's time bound: each FETCH gets what is left of the statement timeout.

    PostgreSQL's ``statement_timeout`` bounds each statement, and every ``FETCH`` of a cursor
    is one: without this a query streamed in many batches could run for any time.  Before each
    fetch the transaction's timeout is lowered (``SET LOCAL``) to the time left, so the server
    cancels the query at the deadline even inside one fetch.
    """

    def __init__(self, timeout_ms: int) -> None:
        self.timeout_ms = timeout_ms
        self.end = time.monotonic() + timeout_ms / 1000 if timeout_ms > 0 else None

    def error(self) -> StatementTimeoutError:
        return StatementTimeoutError(
            f"query cancelled: it ran longer than the statement timeout of {self.timeout_ms} ms in total "
            "(MATSTORE_STATEMENT_TIMEOUT_MS); add a LIMIT or a narrower WHERE, or raise the timeout")

    def bound(self, raw) -> None:  # noqa: ANN001
        """Give the next statement on ``raw`` only the time left; raise if none is."""
        if self.end is None:
            return
        left_ms = int((self.end - time.monotonic()) * 1000)
        if left_ms <= 0:
            raise self.error()
        raw.execute(f"SET LOCAL statement_timeout = {left_ms}")

    @contextmanager
    def translating(self) -> Iterator[None]:
        """Turn the server's statement-timeout cancellation into :class:`StatementTimeoutError`."""
        import psycopg

        try:
            yield
        except psycopg.errors.QueryCanceled as exc:
            if "statement timeout" not in str(exc):
                raise
            raise self.error() from None


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


def _batches(cursor, rows: StatementRows, *, limit: int, batch_rows: int,  # noqa: ANN001
             deadline: _Deadline) -> Iterator[list[tuple]]:
    sent = 0
    while limit == 0 or sent < limit:
        want = batch_rows if limit == 0 else min(batch_rows, limit - sent)
        batch = _fetch(cursor, want, deadline)
        if not batch:
            return
        sent += len(batch)
        yield batch
    rows.truncated = bool(_fetch(cursor, 1, deadline))


def _fetch(cursor, n: int, deadline: _Deadline) -> list[tuple]:  # noqa: ANN001
    if getattr(cursor, "name", None):  # a server-side cursor: each fetch is a statement
        deadline.bound(cursor.connection)
    with deadline.translating():
        return cursor.fetchmany(n)
