"""Least privilege, round two: a narrower writer group and no CONNECT for PUBLIC.

Ingest, fits and workers now run as ``matstore_writer`` (``matstore.db.writer_engine``), so
its grants matter.  This revision takes from it what no writer path needs
(:func:`matstore.roles.narrow_writer_sql`):

- ``alembic_version``: ``SELECT`` only (migrations run as the owner);
- ``job_run``, the audit trail: ``SELECT, INSERT`` and ``UPDATE`` of the outcome columns
  (``status, finished_at, error, summary``) only; no ``DELETE``;
- ``procrastinate_events``: ``SELECT, INSERT`` (the queue's triggers append; the cascade
  from a deleted job runs as the table owner);
- the views: ``SELECT`` only.

It also revokes ``CONNECT`` on this database from ``PUBLIC``: only the three groups (granted
in 0007), the owner and superusers may connect, so a login of another application on the
same server does not get in by default.

The downgrade restores the grants of revision 0007 and ``CONNECT`` for ``PUBLIC``.

Revision ID: 0014
Revises: 0013
"""
from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from matstore import roles

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _views(bind) -> list[str]:  # noqa: ANN001
    return list(bind.execute(sa.text(
        "SELECT quote_ident(relname) FROM pg_class WHERE relnamespace = 'public'::regnamespace "
        "AND relkind IN ('v', 'm') ORDER BY 1")).scalars())


def _database(bind) -> str:  # noqa: ANN001
    return bind.execute(sa.text("SELECT quote_ident(current_database())")).scalar_one()


def upgrade() -> None:
    bind = op.get_bind()
    for statement in roles.narrow_writer_sql(_views(bind)):
        op.execute(statement)
    op.execute(f"REVOKE CONNECT ON DATABASE {_database(bind)} FROM PUBLIC")


def downgrade() -> None:
    bind = op.get_bind()
    op.execute(f"GRANT CONNECT ON DATABASE {_database(bind)} TO PUBLIC")
    for statement in roles.widen_writer_sql(_views(bind)):
        op.execute(statement)
