"""Fit reports: nested and fixed-form CV, per-fold forms, intervals (issue 11).

Adds to ``equation_version``:

- ``report`` (JSONB, default ``{}``): the honest report of the fit —
  ``cv_scheme``, ``nested_cv`` and ``fixed_form_cv`` (``r2``, ``rmse``, ``mae``,
  ``failed_folds``), ``fold_agreement`` (``agree``, ``n``, ``fraction``, ``full_form``),
  ``folds`` (per fold: ``held_out``, ``form``, ``equation``, ``same_as_full``,
  ``nested_r2/rmse``, ``fixed_form_r2/rmse``), ``per_group`` (``group``, ``n``, ``rmse``,
  ``mae``, ``r2``, ``mean_relative_error``), ``discrepancy``, ``interval`` (``method``,
  ``level``, ``half_width``, ``held_out_coverage``), ``time_budget``, ``seconds``;
- ``interval_level`` (float, e.g. 0.9) and ``interval_half_width`` (float, target unit):
  the stored prediction interval ``value ± half_width`` returned by ``matstore predict``.

Versions fitted before this revision keep an empty report and no interval.

Revision ID: 0010
Revises: 0009
"""
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("equation_version", sa.Column(
        "report", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False,
        comment="Nested and fixed-form CV, per-fold forms and agreement, per-group errors, interval"))
    op.add_column("equation_version", sa.Column(
        "interval_level", sa.Float(), nullable=True, comment="Confidence level of the prediction interval, e.g. 0.9"))
    op.add_column("equation_version", sa.Column(
        "interval_half_width", sa.Float(), nullable=True,
        comment="Half-width of the cross-conformal prediction interval, in target unit"))


def downgrade() -> None:
    op.drop_column("equation_version", "interval_half_width")
    op.drop_column("equation_version", "interval_level")
    op.drop_column("equation_version", "report")
