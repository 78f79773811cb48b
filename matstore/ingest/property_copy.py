"""Bulk insert of property values: binary ``COPY`` into a staging table, then one
``INSERT … SELECT … ON CONFLICT DO NOTHING``.

A multi-row ``INSERT … VALUES`` pays for parsing and planning every batch; a binary COPY
streams typed rows (psycopg encodes them in C), and the single ``INSERT … SELECT`` from the
staging table lets the unique index decide which values are already stored (a re-ingested
source, or a concurrent writer), so the count of inserted rows is exact.  The staging table
is temporary and dropped at commit.  JSON details travel as text and are cast once in SQL.

When no stored row can conflict (the values of a source claimed in the same transaction,
de-duplicated by the caller) :func:`copy_rows` skips the staging table and copies straight into
the property table: the server checks foreign keys and fills indexes while the client is still
encoding rows, and no row is written twice.

Reference: PostgreSQL documentation, "COPY" (binary format) and "Populating a Database"
(section 14.4: use COPY; a staging table with INSERT … SELECT for conflict handling).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from itertools import count
from typing import Any

from psycopg import postgres
from psycopg.adapt import Dumper
from psycopg.pq import Format

_stage_names = count()
_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)

#: PostgreSQL type of every column a property table may receive through :func:`copy_insert`.
COLUMN_TYPES: dict[str, str] = {
    "material_id": "int4", "method_id": "int4", "surface_id": "int4", "configuration_id": "int8",
    "definition_id": "int4", "value": "float8", "uncertainty": "float8", "flag": "text",
    "source_id": "int4", "job_run_id": "int4", "details": "text",
}

#: The unique key of each property table (the ``ON CONFLICT`` target).
CONFLICT_KEYS: dict[str, tuple[str, ...]] = {
    "bulk_property": ("material_id", "method_id", "definition_id", "source_id"),
    "surface_property": ("surface_id", "method_id", "definition_id", "source_id"),
    "configuration_property": ("configuration_id", "definition_id", "source_id"),
}


def json_text(value: dict[str, Any]) -> str:
    """Canonical JSON text of a details dict (no NaN)."""
    return _JSON.encode(value)


class _JsonText(str):
    """Marker type: JSON text sent as binary ``jsonb`` by :class:`_JsonTextBinaryDumper`."""


class _JsonTextBinaryDumper(Dumper):
    """JSON text → binary ``jsonb`` (format version byte 1, then the UTF-8 text), not re-encoded.

    psycopg's own jsonb dumpers take Python objects and would encode a ``str`` as a JSON
    string; the server parses and checks the text exactly as it does ``CAST(text AS jsonb)``.
    """

    format = Format.BINARY
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: str) -> bytes:
        """``b"\\x01"`` + the UTF-8 bytes of ``obj``."""
        return b"\x01" + obj.encode()


def _driver_connection(session: Any) -> Any:
    """The psycopg connection under a SQLAlchemy session (same transaction)."""
    return session.connection().connection.driver_connection


def copy_insert(session: Any, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Insert ``rows`` into property ``table`` through a staging table; return how many were new.

    Parameters
    ----------
    session
        SQLAlchemy session on psycopg 3; the rows join its transaction.
    table
        ``bulk_property``, ``surface_property`` or ``configuration_property``.
    columns
        Column names, in the order of each row's fields (types from :data:`COLUMN_TYPES`;
        ``details`` as JSON text, see :func:`json_text`).
    rows
        Tuples of values, canonical units.

    Returns
    -------
    int
        Rows inserted; rows whose unique key is already stored are left as they are.

    Raises
    ------
    KeyError
        If ``table`` or a column is unknown.
    sqlalchemy.exc.DBAPIError / psycopg.Error
        A constraint violation (e.g. a non-finite value), which aborts the transaction.
    """
    conflict = CONFLICT_KEYS[table]
    types = [COLUMN_TYPES[c] for c in columns]
    stage = f"_stage_{table}_{next(_stage_names)}"
    cols = ", ".join(columns)
    select = ", ".join("CAST(details AS jsonb)" if c == "details" else c for c in columns)
    cur = _driver_connection(session).cursor()
    cur.execute(f"CREATE TEMP TABLE {stage} ({', '.join(f'{c} {t}' for c, t in zip(columns, types, strict=True))}) ON COMMIT DROP")
    with cur.copy(f"COPY {stage} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)
    cur.execute(f"INSERT INTO {table} ({cols}) SELECT {select} FROM {stage} ON CONFLICT ({', '.join(conflict)}) DO NOTHING")
    inserted = cur.rowcount
    cur.execute(f"DROP TABLE {stage}")
    return inserted


def copy_rows(session: Any, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Binary ``COPY`` of ``rows`` straight into property ``table``; return how many were copied.

    For rows of which none can conflict with a stored row or with each other (the caller
    de-duplicates on :data:`CONFLICT_KEYS`); a conflict raises a unique violation instead of
    being skipped.  ``rows`` may be a generator: it is encoded while the server inserts.

    Parameters and raises are those of :func:`copy_insert` (``details`` as JSON text).
    """
    types = [COLUMN_TYPES[c] if c != "details" else "jsonb" for c in columns]
    cur = _driver_connection(session).cursor()
    cur.adapters.register_dumper(_JsonText, _JsonTextBinaryDumper)  # this cursor only: jsonb columns take JSON text
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)
    return cur.rowcount


__all__ = ["COLUMN_TYPES", "CONFLICT_KEYS", "copy_insert", "copy_rows", "json_text"]
