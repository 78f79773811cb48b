"""Engine and sessions: one engine per database URL, created once per process.

Writers use :func:`session_scope` (one transaction, committed on success, rolled back on
any error).  Readers (the dashboard, ``matstore sql``) use :func:`read_only_connection`, which
opens a ``READ ONLY`` transaction with a statement timeout.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
