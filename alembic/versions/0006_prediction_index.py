"""Index equation_prediction (version_id, material_id) for model_predictions by version and material.

Revision ID: 0006
Revises: 0005
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_equation_prediction_version_material", "equation_prediction", ["version_id", "material_id"])


def downgrade() -> None:
    op.drop_index("ix_equation_prediction_version_material", table_name="equation_prediction")
