"""Database administration: migrate and seed (and make the managed reader login), describe, grant readers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import Engine, text

from matstore import migrations
from matstore.crud import seed_vocabulary
from matstore.db import session_scope

_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class Migration(NamedTuple):
    """What :func:`migrate` did: the schema revision now, and the reader login's status line."""

    revision: str | None
    reader: str


def migrate(engine: Engine) -> Migration:
    """Upgrade the database to the newest schema, seed the vocabulary, and make the reader login.

    ``engine`` is the store owner's (``matstore db migrate`` and the pipeline pass the main
    URL's).  The managed reader login that read-only commands use is created or repaired here
    (:func:`matstore.readers.ensure_managed_reader`), so no read path ever connects with the
    owner's power to make it.  Idempotent.

    Raises
    ------
    matstore.readers.ReaderUnavailableError
        If the reader login cannot be checked or, once made, can do more than read.  A role
        that may not create roles does not fail the migration: ``reader`` says what to set.
    """
    from matstore.readers import ensure_managed_reader

    migrations.upgrade(engine.url.render_as_string(hide_password=False))
    with session_scope(engine) as session:
        seed_vocabulary(session=session)
    return Migration(migrations.current_revision(engine), ensure_managed_reader(engine.url))


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


def describe(engine: Engine, *, embedded: bool, shown: Engine | None = None) -> DatabaseInfo:
    """Server version, schema revision and row counts of the database behind ``engine``.

    ``engine`` only reads (``matstore db info`` passes the reader login's); ``shown`` is the
    engine whose URL is reported (default ``engine``), returned with its password masked.
    """
    shown = shown or engine
    url = shown.url.render_as_string(hide_password=True)
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
                        migrations.head_revision(shown.url.render_as_string(hide_password=False)), counts)


def grant_reader(engine: Engine, name: str, *, password: str | None = None) -> str:
    """Make ``name`` a login member of the ``matstore_reader`` group, and nothing more.

    The login gets ``default_transaction_read_only = on``; its privileges come from the group
    (``SELECT`` on the store's tables and views, see :mod:`matstore.roles`).  An existing role
    is accepted only if it holds no other privilege (not a superuser, no other group, no write
    privilege): a role that can write stays able to, so calling it a reader would be a lie.
    The statements go through psycopg directly, so an error can never echo the password.

    Parameters
    ----------
    engine:
        Engine of a role that may create roles (a superuser or ``CREATEROLE``).
    name:
        Login role to create or update.
    password:
        Its password; ``None`` keeps an existing login's password and makes a new login
        without one (it can log in only where ``pg_hba.conf`` trusts it), which the CLI
        reports loudly.

    Returns
    -------
    str
        ``"set"`` (``password`` was set), ``"kept"`` (an existing login kept its password)
        or ``"none"`` (a new login without a password).

    Raises
    ------
    ValueError
        If ``name`` is not a plain lower-case SQL identifier, names a group role of matstore,
        or is an existing role with privileges beyond reading.
    matstore.readers.ReaderUnavailableError
        If the ``matstore_reader`` group is missing (run ``matstore db migrate``).
    """
    import psycopg

    from matstore import roles
    from matstore.readers import (
        ReaderUnavailableError,
        create_reader_login,
        libpq_url,
        privilege_violations,
    )

    if not _ROLE_NAME.match(name):
        raise ValueError(f"role name {name!r} must be a lower-case SQL identifier ([a-z_][a-z0-9_]*)")
    if name in roles.GROUPS:
        raise ValueError(f"{name} is one of matstore's group roles; give a login name, e.g. {name}_login")
    with psycopg.connect(libpq_url(engine.url), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (roles.READER,)).fetchone():
            raise ReaderUnavailableError(f"the group role {roles.READER} does not exist: run `matstore db migrate`")
        existed = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is not None
        if existed and (reasons := privilege_violations(conn, name)):
            raise ValueError(f"role {name} {'; '.join(reasons)}: grant-reader makes SELECT-only logins and "
                             "will not call this one a reader; choose a new name")
        create_reader_login(conn, name, password)
    return "set" if password is not None else "kept" if existed else "none"
