"""A second connection that sees exactly what the first one sees (a shared snapshot).

PostgreSQL sends one ``COPY ... TO STDOUT`` from one backend, and read-back of
configurations is bound by that backend's ``array_send`` of ``float8[]`` columns
(docs/benchmarks.md §6).  Splitting a large read into two halves, each read by its own
backend, uses a second core.  Both halves must come from the same snapshot, or a row
committed between the two statements could appear in one half only: the first connection
runs ``REPEATABLE READ`` and exports its snapshot (``pg_export_snapshot()``), the second
imports it (``SET TRANSACTION SNAPSHOT``; PostgreSQL manual, "Snapshot Synchronization
Functions", §9.28.5).

Only a connection with no transaction open is used this way: the helper opens the
transaction, and an uncommitted change of a transaction already open would be invisible to
the second connection.  The second connection logs in with the first one's parameters
(host, port, database, user, password), so it has the same role and rights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def can_share_snapshot(raw: Any) -> bool:
    """Whether ``raw`` (a psycopg connection) has no transaction open, so a snapshot can be shared.

    Returns
    -------
    bool
        False inside a transaction (its uncommitted changes would be lost to the second
        connection) or on a broken connection.
    """
    from psycopg.pq import TransactionStatus

    return not raw.closed and raw.info.transaction_status == TransactionStatus.IDLE


@contextmanager
def repeatable_read(raw: Any) -> Iterator[None]:
    """A ``REPEATABLE READ, READ ONLY`` transaction on ``raw`` for the block (ended at exit).

    Raises
    ------
    ValueError
        When ``raw`` has a transaction open (:func:`can_share_snapshot`).
    """
    if not can_share_snapshot(raw):
        raise ValueError("a snapshot can only be shared from a connection with no transaction open")
    with raw.transaction():
        raw.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


@contextmanager
def snapshot_twin(raw: Any) -> Iterator[Any]:
    """A second connection in a transaction on the snapshot of ``raw``'s, for the block.

    Call inside :func:`repeatable_read` on ``raw``.  Yields None when the second connection
    cannot be opened (too many connections, a login that works once...): the caller then
    reads on ``raw`` alone.  The second connection is closed at exit.
    """
    import psycopg
    from psycopg import sql

    snapshot = raw.execute("SELECT pg_export_snapshot()").fetchone()[0]
    try:
        other = psycopg.connect(raw.info.dsn, password=raw.info.password, autocommit=True)
    except psycopg.Error:
        yield None
        return
    with other, repeatable_read(other):
        other.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        yield other


__all__ = ["can_share_snapshot", "repeatable_read", "snapshot_twin"]
