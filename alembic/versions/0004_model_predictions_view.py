"""View model_predictions: observed vs predicted values per equation version.

Verbatim copy of matstore/schema/views.py's MODEL_PREDICTIONS at this revision.

Revision ID: 0004
Revises: 0003
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MODEL_PREDICTIONS = """
CREATE VIEW model_predictions AS
SELECT em.name AS model, v.version, v.id AS version_id, em.target, v.target_unit AS unit,
       m.formula AS material, me.name AS method,
       su.miller_h, su.miller_k, su.miller_l, su.theta_deg, su.phi_deg,
       ep.observed, ep.predicted, ep.cv_predicted,
       ep.predicted - ep.observed AS residual,
       ep.cv_predicted - ep.observed AS cv_residual,
       (SELECT string_agg(a.alias, ',' ORDER BY a.alias) FROM equation_alias a WHERE a.version_id = v.id) AS aliases
FROM equation_prediction ep
JOIN equation_version v ON v.id = ep.version_id
JOIN equation_model em ON em.id = v.model_id
JOIN material m ON m.id = ep.material_id
JOIN method me ON me.id = ep.method_id
LEFT JOIN surface su ON su.id = ep.surface_id
"""


def upgrade() -> None:
    op.execute(MODEL_PREDICTIONS)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS model_predictions")
