"""Relative prediction intervals: ``equation_version.interval_relative_half_width`` (issue 11).

The cross-conformal interval of a version is built with one of two conformity scores
(``matstore.models.report.conformity_score``): the absolute residual ``|y − ŷ|`` (interval
``value ± interval_half_width``, target unit) or, for factorised fits ``C(bulk)·g(orientation)``
with strictly positive targets and predictions, the relative residual ``|y − ŷ|/ŷ`` (MAPIE's
``GammaConformityScore(sym=True)``; interval ``value·(1 ± q)``).  So that no column has two
meanings, this revision adds:

- ``interval_relative_half_width`` (float, nullable, dimensionless fraction ``q``), next to
  ``interval_half_width`` (target unit);
- ``CHECK (interval_half_width IS NULL OR interval_relative_half_width IS NULL)``
  (``ck_equation_version_interval_one_width``): at most one width is set; both NULL for a
  version without an interval.  ``report['interval']['score']`` names the score.

Nothing stored changes: existing versions keep their absolute ``interval_half_width`` and get
NULL.  ``downgrade`` drops the column only when no row uses it (a relative width has no
absolute equivalent without the predictions); otherwise it refuses with a one-line error.

Revision ID: 0012
Revises: 0011
"""
from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RELATIVE_COMMENT = ("Relative half-width q of the prediction interval value*(1 ± q), a dimensionless "
                    "fraction (relative conformity score); NULL when interval_half_width is set")


def upgrade() -> None:
    op.add_column("equation_version", sa.Column(
        "interval_relative_half_width", sa.Float(), nullable=True, comment=RELATIVE_COMMENT))
    op.create_check_constraint(
        op.f("ck_equation_version_interval_one_width"), "equation_version",
        "interval_half_width IS NULL OR interval_relative_half_width IS NULL")


def downgrade() -> None:
    used = op.get_bind().execute(sa.text(
        "SELECT count(*) FROM equation_version WHERE interval_relative_half_width IS NOT NULL")).scalar_one()
    if used:
        raise RuntimeError(f"{used} equation versions store a relative interval width; downgrading below 0012 "
                           "would lose it (delete or refit those versions first)")
    op.drop_constraint(op.f("ck_equation_version_interval_one_width"), "equation_version", type_="check")
    op.drop_column("equation_version", "interval_relative_half_width")
