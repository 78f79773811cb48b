"""General store: user vocabulary, per-configuration values, compositions (issue 12).

- ``property_definition``: any pint unit (validated in code) instead of a fixed list, the
  scopes ``configuration`` and ``composition``, and ``builtin`` (seeded, not redefinable);
  ``vocabulary_addition`` records the job run that added each user definition.
- ``material.composition``: element amounts of the reduced formula (filled for existing rows).
- ``material_configuration`` and ``configuration_property``: identified configurations of a
  material by a method and their values; ``equation_prediction.configuration_id``.
- Views ``property_values`` and ``model_predictions`` re-created with ``configuration_key``
  (verbatim copies of matstore/schema/views.py at this revision).

Revision ID: 0008
Revises: 0007
"""
import json
import re
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_UNITS = "('angstrom', 'eV', 'eV/atom', 'GPa', 'MPa', 'J/m^2', 'N/m', '1/K', 'dimensionless', 'percent')"
OLD_SCOPES = "('bulk', 'surface', 'defect', 'mechanical')"
NEW_SCOPES = "('bulk', 'surface', 'configuration', 'composition', 'defect', 'mechanical')"

PROPERTY_VALUES = """
CREATE VIEW property_values AS
SELECT 'bulk'::text AS scope, p.id AS value_id, m.formula AS material, m.prototype,
       me.name AS method, d.name AS property, p.value, d.unit, p.uncertainty, p.flag,
       NULL::int AS miller_h, NULL::int AS miller_k, NULL::int AS miller_l,
       NULL::float8 AS theta_deg, NULL::float8 AS phi_deg,
       s.kind AS source_kind, s.uri AS source_uri, s.sha256 AS source_sha256, s.doi AS source_doi,
       p.job_run_id, p.configuration_id, p.created_at, NULL::text AS configuration_key
FROM bulk_property p
JOIN material m ON m.id = p.material_id
JOIN method me ON me.id = p.method_id
JOIN property_definition d ON d.id = p.definition_id
JOIN source s ON s.id = p.source_id
UNION ALL
SELECT 'surface'::text, p.id, m.formula, m.prototype, me.name, d.name, p.value, d.unit,
       p.uncertainty, p.flag, su.miller_h, su.miller_k, su.miller_l, su.theta_deg, su.phi_deg,
       s.kind, s.uri, s.sha256, s.doi, p.job_run_id, p.configuration_id, p.created_at, NULL::text
FROM surface_property p
JOIN surface su ON su.id = p.surface_id
JOIN material m ON m.id = su.material_id
JOIN method me ON me.id = p.method_id
JOIN property_definition d ON d.id = p.definition_id
JOIN source s ON s.id = p.source_id
UNION ALL
SELECT 'configuration'::text, p.id, m.formula, m.prototype, me.name, d.name, p.value, d.unit,
       p.uncertainty, p.flag, NULL::int, NULL::int, NULL::int, NULL::float8, NULL::float8,
       s.kind, s.uri, s.sha256, s.doi, p.job_run_id, mc.structure_id, p.created_at, mc.key
FROM configuration_property p
JOIN material_configuration mc ON mc.id = p.configuration_id
JOIN material m ON m.id = mc.material_id
JOIN method me ON me.id = mc.method_id
JOIN property_definition d ON d.id = p.definition_id
JOIN source s ON s.id = p.source_id
"""

MODEL_PREDICTIONS = """
CREATE VIEW model_predictions AS
SELECT em.name AS model, v.version, v.id AS version_id, em.target, v.target_unit AS unit,
       m.formula AS material, me.name AS method,
       su.miller_h, su.miller_k, su.miller_l, su.theta_deg, su.phi_deg,
       ep.observed, ep.predicted, ep.cv_predicted,
       ep.predicted - ep.observed AS residual,
       ep.cv_predicted - ep.observed AS cv_residual,
       (SELECT string_agg(a.alias, ',' ORDER BY a.alias) FROM equation_alias a WHERE a.version_id = v.id) AS aliases,
       mc.key AS configuration_key
FROM equation_prediction ep
JOIN equation_version v ON v.id = ep.version_id
JOIN equation_model em ON em.id = v.model_id
JOIN material m ON m.id = ep.material_id
JOIN method me ON me.id = ep.method_id
LEFT JOIN surface su ON su.id = ep.surface_id
LEFT JOIN material_configuration mc ON mc.id = ep.configuration_id
"""

PROPERTY_VALUES_0002 = """
CREATE VIEW property_values AS
SELECT 'bulk'::text AS scope, p.id AS value_id, m.formula AS material, m.prototype,
       me.name AS method, d.name AS property, p.value, d.unit, p.uncertainty, p.flag,
       NULL::int AS miller_h, NULL::int AS miller_k, NULL::int AS miller_l,
       NULL::float8 AS theta_deg, NULL::float8 AS phi_deg,
       s.kind AS source_kind, s.uri AS source_uri, s.sha256 AS source_sha256, s.doi AS source_doi,
       p.job_run_id, p.configuration_id, p.created_at
FROM bulk_property p
JOIN material m ON m.id = p.material_id
JOIN method me ON me.id = p.method_id
JOIN property_definition d ON d.id = p.definition_id
JOIN source s ON s.id = p.source_id
UNION ALL
SELECT 'surface'::text, p.id, m.formula, m.prototype, me.name, d.name, p.value, d.unit,
       p.uncertainty, p.flag, su.miller_h, su.miller_k, su.miller_l, su.theta_deg, su.phi_deg,
       s.kind, s.uri, s.sha256, s.doi, p.job_run_id, p.configuration_id, p.created_at
FROM surface_property p
JOIN surface su ON su.id = p.surface_id
JOIN material m ON m.id = su.material_id
JOIN method me ON me.id = p.method_id
JOIN property_definition d ON d.id = p.definition_id
JOIN source s ON s.id = p.source_id
"""

MODEL_PREDICTIONS_0004 = """
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

_FINITE = "{c} <> 'NaN'::float8 AND {c} <> 'Infinity'::float8 AND {c} <> '-Infinity'::float8"


def _drop_views() -> None:
    op.execute("DROP VIEW IF EXISTS model_predictions")
    op.execute("DROP VIEW IF EXISTS property_values")


def _vocabulary_upgrade() -> None:
    op.drop_constraint(op.f("ck_property_definition_unit_known"), "property_definition", type_="check")
    op.create_check_constraint(op.f("ck_property_definition_unit_given"), "property_definition", "unit <> ''")
    op.drop_constraint(op.f("ck_property_definition_scope_known"), "property_definition", type_="check")
    op.create_check_constraint(op.f("ck_property_definition_scope_known"), "property_definition", f"scope IN {NEW_SCOPES}")
    op.add_column("property_definition", sa.Column("builtin", sa.Boolean(), server_default="true", nullable=False,
                                                   comment="Seeded with matstore (not redefinable); false: added by a user"))
    op.alter_column("property_definition", "scope", existing_type=sa.TEXT(), existing_nullable=False,
                    comment="bulk | surface | configuration | composition | defect | mechanical",
                    existing_comment="bulk | surface | defect | mechanical")
    op.create_table(
        "vocabulary_addition",
        sa.Column("definition_id", sa.Integer(), nullable=False),
        sa.Column("job_run_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["definition_id"], ["property_definition.id"], name=op.f("fk_vocabulary_addition_definition_id_property_definition"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["job_run_id"], ["job_run.id"], name=op.f("fk_vocabulary_addition_job_run_id_job_run")),
        sa.PrimaryKeyConstraint("definition_id", name=op.f("pk_vocabulary_addition")),
        comment="Which job run added each user-defined property definition.",
    )
    op.create_index(op.f("ix_vocabulary_addition_job_run_id"), "vocabulary_addition", ["job_run_id"], unique=False)


def _material_composition_upgrade() -> None:
    op.add_column("material", sa.Column("composition", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False,
                                        comment='Element amounts of the reduced formula, e.g. {"Mo": 1, "S": 2}'))
    # Existing formulas are reduced element strings (the old CHECK): split them here rather
    # than importing live code into a migration.
    conn = op.get_bind()
    for material_id, formula in conn.execute(sa.text("SELECT id, formula FROM material")).all():
        amounts: dict[str, float] = {}
        for symbol, amount in re.findall(r"([A-Z][a-z]?)([0-9.]*)", formula):
            amounts[symbol] = amounts.get(symbol, 0.0) + (float(amount) if amount else 1.0)
        conn.execute(sa.text("UPDATE material SET composition = CAST(:c AS jsonb) WHERE id = :i"),
                     {"c": json.dumps(amounts), "i": material_id})


def _configuration_tables_upgrade() -> None:
    op.create_table(
        "material_configuration",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("material_id", sa.Integer(), nullable=False),
        sa.Column("method_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False, comment="Identifier within (material, method), e.g. a table's row id"),
        sa.Column("structure_id", sa.BigInteger(), nullable=True, comment="Atomic structure, when stored"),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("job_run_id", sa.Integer(), nullable=False),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False, comment="Anything the source says about the configuration"),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("length(key) BETWEEN 1 AND 200", name=op.f("ck_material_configuration_key_given")),
        sa.ForeignKeyConstraint(["job_run_id"], ["job_run.id"], name=op.f("fk_material_configuration_job_run_id_job_run")),
        sa.ForeignKeyConstraint(["material_id"], ["material.id"], name=op.f("fk_material_configuration_material_id_material")),
        sa.ForeignKeyConstraint(["method_id"], ["method.id"], name=op.f("fk_material_configuration_method_id_method")),
        sa.ForeignKeyConstraint(["source_id"], ["source.id"], name=op.f("fk_material_configuration_source_id_source")),
        sa.ForeignKeyConstraint(["structure_id"], ["configuration.id"], name=op.f("fk_material_configuration_structure_id_configuration")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_material_configuration")),
        sa.UniqueConstraint("material_id", "method_id", "key", name=op.f("uq_material_configuration_material_id_method_id_key")),
        comment="Identified configurations (defect arrangements, supercells, samples) of a material by a method.",
    )
    for column in ("job_run_id", "material_id", "method_id", "source_id", "structure_id"):
        op.create_index(op.f(f"ix_material_configuration_{column}"), "material_configuration", [column], unique=False)
    op.create_table(
        "configuration_property",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("configuration_id", sa.BigInteger(), nullable=False),
        sa.Column("definition_id", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False, comment="Value in the definition's canonical unit"),
        sa.Column("uncertainty", sa.Float(), nullable=True),
        sa.Column("flag", sa.Text(), nullable=True, comment="Validation failure kept on purpose, else NULL"),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("job_run_id", sa.Integer(), nullable=False),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False, comment="Original column, row, raw text and unit"),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("uncertainty IS NULL OR (uncertainty >= 0 AND " + _FINITE.format(c="uncertainty") + ")", name=op.f("ck_configuration_property_uncertainty_valid")),
        sa.CheckConstraint(_FINITE.format(c="value"), name=op.f("ck_configuration_property_value_finite")),
        sa.ForeignKeyConstraint(["configuration_id"], ["material_configuration.id"], name=op.f("fk_configuration_property_configuration_id_material_configuration")),
        sa.ForeignKeyConstraint(["definition_id"], ["property_definition.id"], name=op.f("fk_configuration_property_definition_id_property_definition")),
        sa.ForeignKeyConstraint(["job_run_id"], ["job_run.id"], name=op.f("fk_configuration_property_job_run_id_job_run")),
        sa.ForeignKeyConstraint(["source_id"], ["source.id"], name=op.f("fk_configuration_property_source_id_source")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_configuration_property")),
        sa.UniqueConstraint("configuration_id", "definition_id", "source_id", name=op.f("uq_configuration_property_configuration_id_definition_id_source_id")),
        comment="Per-configuration property values in canonical units, with source and job run.",
    )
    for column in ("configuration_id", "definition_id", "job_run_id", "source_id"):
        op.create_index(op.f(f"ix_configuration_property_{column}"), "configuration_property", [column], unique=False)
    op.add_column("equation_prediction", sa.Column("configuration_id", sa.BigInteger(), nullable=True,
                                                   comment="Material configuration of a configuration-scope target"))
    op.create_foreign_key(op.f("fk_equation_prediction_configuration_id_material_configuration"), "equation_prediction",
                          "material_configuration", ["configuration_id"], ["id"])


def upgrade() -> None:
    _drop_views()
    _vocabulary_upgrade()
    _material_composition_upgrade()
    _configuration_tables_upgrade()
    op.execute(PROPERTY_VALUES)
    op.execute(MODEL_PREDICTIONS)


def downgrade() -> None:
    _drop_views()
    op.drop_constraint(op.f("fk_equation_prediction_configuration_id_material_configuration"), "equation_prediction", type_="foreignkey")
    op.drop_column("equation_prediction", "configuration_id")
    op.drop_table("configuration_property")
    op.drop_table("material_configuration")
    op.drop_column("material", "composition")
    # Values of user definitions and definitions the old schema cannot hold go with the downgrade.
    unfit = f"SELECT id FROM property_definition WHERE NOT builtin OR unit NOT IN {OLD_UNITS} OR scope NOT IN {OLD_SCOPES}"
    for table in ("bulk_property", "surface_property"):
        op.execute(f"DELETE FROM {table} WHERE definition_id IN ({unfit})")
    op.drop_table("vocabulary_addition")
    op.execute(f"DELETE FROM property_definition WHERE id IN ({unfit})")
    op.drop_column("property_definition", "builtin")
    op.drop_constraint(op.f("ck_property_definition_scope_known"), "property_definition", type_="check")
    op.create_check_constraint(op.f("ck_property_definition_scope_known"), "property_definition", f"scope IN {OLD_SCOPES}")
    op.drop_constraint(op.f("ck_property_definition_unit_given"), "property_definition", type_="check")
    op.create_check_constraint(op.f("ck_property_definition_unit_known"), "property_definition", f"unit IN {OLD_UNITS}")
    op.alter_column("property_definition", "scope", existing_type=sa.TEXT(), existing_nullable=False,
                    comment="bulk | surface | defect | mechanical",
                    existing_comment="bulk | surface | configuration | composition | defect | mechanical")
    op.execute(PROPERTY_VALUES_0002)
    op.execute(MODEL_PREDICTIONS_0004)
