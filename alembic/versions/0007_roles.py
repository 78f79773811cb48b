"""Database roles: reader, writer and owner groups (issue 13).

Creates the NOLOGIN groups ``matstore_reader``, ``matstore_writer`` and ``matstore_owner``
when the cluster lacks them (they are cluster-wide: a second database on the same server
reuses them), grants them their privileges in this database (see :mod:`matstore.roles`),
and revokes the large-object functions (``lo_*``) and ``TEMPORARY`` from ``PUBLIC`` here.

Revoking ``lo_*`` changes ``pg_catalog`` functions, which only a superuser may do; a
non-superuser migrating role skips that step with a warning (``docs/security.md`` gives the
statement to run once as a superuser).  The downgrade revokes this database's grants and
restores PostgreSQL's defaults; it leaves the cluster-wide groups in place, since other
databases on the server may use them.

Revision ID: 0007
Revises: 0006
"""
import logging
from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from matstore import roles

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

#: Large-object functions PostgreSQL itself keeps from PUBLIC (server-side file access).
_SUPERUSER_ONLY = ("lo_import(text)", "lo_import(text,oid)", "lo_export(oid,text)")


def _database(bind) -> str:  # noqa: ANN001
    return bind.execute(sa.text("SELECT quote_ident(current_database())")).scalar_one()


def _large_objects(bind, action: str) -> None:  # noqa: ANN001
    if not bind.execute(sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar_one():
        log.warning("large-object functions stay executable by PUBLIC: only a superuser may revoke them "
                    "(see docs/security.md)")
        return
    for function in bind.execute(sa.text(roles.LARGE_OBJECT_FUNCTIONS)).scalars():
        if action == "GRANT" and function.replace(" ", "") in _SUPERUSER_ONLY:
            continue
        verb = "FROM" if action == "REVOKE" else "TO"
        op.execute(f"{action} EXECUTE ON FUNCTION {function} {verb} PUBLIC")


def upgrade() -> None:
    bind = op.get_bind()
    for group in roles.GROUPS:
        op.execute(roles.ensure_group_sql(group))
    for statement in roles.grant_sql(_database(bind)):
        op.execute(statement)
    _large_objects(bind, "REVOKE")


def downgrade() -> None:
    bind = op.get_bind()
    for statement in roles.revoke_sql(_database(bind)):
        op.execute(statement)
    _large_objects(bind, "GRANT")
