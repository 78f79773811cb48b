"""Database administration: migrate and seed, describe, and create the read-only role."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from matstore import migrations
from matstore.crud import seed_vocabulary
from matstore.db import session_scope

_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def migrate(engine: Engine) -> str | None:
    """Upgrade the database to the newest schema and seed the property vocabulary.

    Returns the revision the database is at afterwards.  Idempotent.
    """
    migrations.upgrade(engine.url.render_as_string(hide_password=False))
    with session_scope(engine) as session:
        seed_vocabulary(session=session)
    return migrations.current_revision(engine)


@dataclass(frozen=True)
class DatabaseInfo:
    """What ``matstore db info`` reports."""

    url: str
    embedded: bool
    server_version: str
    database: str
    revision: str | None
    head: str | None
    counts: dict[str, int]


def describe(engine: Engine, *, embedded: bool) -> DatabaseInfo:
    """Server version, schema revision and row counts of the database behind ``engine``.

    The URL is returned with its password masked.
    """
    url = engine.url.render_as_string(hide_password=True)
    with engine.connect() as conn:
        version = conn.execute(text("SHOW server_version")).scalar_one()
        database = conn.execute(text("SELECT current_database()")).scalar_one()
    revision = migrations.current_revision(engine)
    counts: dict[str, int] = {}
    if revision is not None:
        with engine.connect() as conn:
            for table in ("material", "method", "source", "bulk_property", "surface", "surface_property",
                          "configuration", "equation_version", "job_run"):
                counts[table] = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    return DatabaseInfo(url, embedded, version, database, revision,
                        migrations.head_revision(engine.url.render_as_string(hide_password=False)), counts)


def grant_reader(engine: Engine, name: str, *, password: str | None = None) -> None:
    """Create (or update) a login role that can only SELECT from matstore's tables and views.

    The role gets ``default_transaction_read_only = on``, CONNECT on the database, USAGE on
    the schema, SELECT on every existing table/view and on tables created later.

    Raises
    ------
    ValueError
        If ``name`` is not a plain lower-case SQL identifier.
    """
    if not _ROLE_NAME.match(name):
        raise ValueError(f"role name {name!r} must be a lower-case SQL identifier ([a-z_][a-z0-9_]*)")
    database = make_url(engine.url).database
    with engine.begin() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name}).scalar()
        if not exists:
            conn.execute(text(f'CREATE ROLE "{name}" LOGIN'))
        if password is not None:
            conn.execute(text(f"ALTER ROLE \"{name}\" PASSWORD {_literal(conn, password)}"))
        conn.execute(text(f'ALTER ROLE "{name}" SET default_transaction_read_only = on'))
        conn.execute(text(f'GRANT CONNECT ON DATABASE "{database}" TO "{name}"'))
        conn.execute(text(f'GRANT USAGE ON SCHEMA public TO "{name}"'))
        conn.execute(text(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{name}"'))
        conn.execute(text(f'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO "{name}"'))


def _literal(conn, value: str) -> str:  # noqa: ANN001
    return conn.execute(text("SELECT quote_literal(:v)"), {"v": value}).scalar_one()
