"""Named training sets for export (issue 16): ``training_set`` and ``training_set_member``.

``matstore export structures OUT --name NAME`` records the selection, the members in file
order and the sha256 over their content hashes, so the same training set can be written
again by name (``matstore.export``).

Revision ID: 0009
Revises: 0008
"""
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "training_set",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("selection", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False,
                  comment="Filters that chose the members: method, source, material"),
        sa.Column("content_sha256", sa.Text(), nullable=False, comment="sha256 over the members' content hashes, in order"),
        sa.Column("n_configurations", sa.Integer(), nullable=False),
        sa.Column("job_run_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("length(name) BETWEEN 1 AND 200", name=op.f("ck_training_set_name_given")),
        sa.CheckConstraint("n_configurations >= 0", name=op.f("ck_training_set_n_configurations_nonnegative")),
        sa.ForeignKeyConstraint(["job_run_id"], ["job_run.id"], name=op.f("fk_training_set_job_run_id_job_run")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_set")),
        sa.UniqueConstraint("name", name=op.f("uq_training_set_name")),
        comment="Named training sets (selection + content hash) for reproducible export.",
    )
    op.create_index(op.f("ix_training_set_job_run_id"), "training_set", ["job_run_id"], unique=False)
    op.create_table(
        "training_set_member",
        sa.Column("training_set_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("configuration_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["training_set_id"], ["training_set.id"],
                                name=op.f("fk_training_set_member_training_set_id_training_set"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["configuration_id"], ["configuration.id"],
                                name=op.f("fk_training_set_member_configuration_id_configuration")),
        sa.PrimaryKeyConstraint("training_set_id", "position", name=op.f("pk_training_set_member")),
        comment="Members of a training set, in file order.",
    )
    op.create_index(op.f("ix_training_set_member_configuration_id"), "training_set_member", ["configuration_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_training_set_member_configuration_id"), table_name="training_set_member")
    op.drop_table("training_set_member")
    op.drop_index(op.f("ix_training_set_job_run_id"), table_name="training_set")
    op.drop_table("training_set")
