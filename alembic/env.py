"""Alembic environment: URL from matstore's settings, metadata from matstore.schema."""

from __future__ import annotations

from sqlalchemy import create_engine, pool

import matstore.schema  # noqa: F401 - registers every table on the metadata
from alembic import context
from matstore.schema.base import metadata

config = context.config


def _url() -> str:
    # An explicit URL (tests, `matstore db migrate --url`) wins over settings.
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from matstore.db import resolve_url

    return resolve_url()


def _include_object(obj, name, type_, reflected, compare_to):  # noqa: ANN001
    # procrastinate's tables live beside ours but are managed by its own migrations.
    if type_ == "table" and name and name.startswith("procrastinate"):
        return False
    return True


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)


def _run(connection) -> None:  # noqa: ANN001
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        include_object=_include_object,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
