"""SQL views: property_values, bulk_properties_wide, surface_properties_wide.

The SQL is a verbatim copy of matstore/schema/views.py at this revision; a later change to
a view gets a new migration that drops and re-creates it.

Revision ID: 0002
Revises: 0001
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PROPERTY_VALUES = """
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

BULK_PROPERTIES_WIDE = """
CREATE VIEW bulk_properties_wide AS
SELECT m.formula AS material, m.prototype, me.name AS method,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'lattice_constant'))[1] AS lattice_constant,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'cohesive_energy'))[1] AS cohesive_energy,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'c11'))[1] AS c11,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'c12'))[1] AS c12,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'c44'))[1] AS c44,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'bulk_modulus'))[1] AS bulk_modulus,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'shear_modulus_prime'))[1] AS shear_modulus_prime,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'shear_modulus_c44'))[1] AS shear_modulus_c44,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'zener_ratio'))[1] AS zener_ratio,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'stacking_fault_energy'))[1] AS stacking_fault_energy,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'extrinsic_stacking_fault_energy'))[1] AS extrinsic_stacking_fault_energy,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'unstable_stacking_fault_energy'))[1] AS unstable_stacking_fault_energy,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'unstable_twinning_energy'))[1] AS unstable_twinning_energy,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'vacancy_formation_energy'))[1] AS vacancy_formation_energy,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'vacancy_migration_energy'))[1] AS vacancy_migration_energy,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'thermal_expansion_coefficient'))[1] AS thermal_expansion_coefficient,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'surface_energy_100'))[1] AS surface_energy_100,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'surface_energy_110'))[1] AS surface_energy_110,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'surface_energy_111'))[1] AS surface_energy_111,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'surface_energy_121'))[1] AS surface_energy_121,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'strength'))[1] AS strength
FROM bulk_property p
JOIN material m ON m.id = p.material_id
JOIN method me ON me.id = p.method_id
JOIN property_definition d ON d.id = p.definition_id
GROUP BY m.formula, m.prototype, me.name
"""

SURFACE_PROPERTIES_WIDE = """
CREATE VIEW surface_properties_wide AS
SELECT m.formula AS material, m.prototype, me.name AS method,
    su.miller_h, su.miller_k, su.miller_l, su.theta_deg, su.phi_deg,
    su.normal_x, su.normal_y, su.normal_z,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'surface_energy'))[1] AS surface_energy,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'surface_stress'))[1] AS surface_stress,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'surface_stress_11'))[1] AS surface_stress_11,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'surface_stress_22'))[1] AS surface_stress_22,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'surface_stress_12'))[1] AS surface_stress_12,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'surface_stiffness'))[1] AS surface_stiffness,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'surface_stiffness_11'))[1] AS surface_stiffness_11,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'surface_stiffness_22'))[1] AS surface_stiffness_22,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'surface_stiffness_12'))[1] AS surface_stiffness_12,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'surface_stiffness_66'))[1] AS surface_stiffness_66
FROM surface_property p
JOIN surface su ON su.id = p.surface_id
JOIN material m ON m.id = su.material_id
JOIN method me ON me.id = p.method_id
JOIN property_definition d ON d.id = p.definition_id
GROUP BY m.formula, m.prototype, me.name, su.id
"""


def upgrade() -> None:
    op.execute(PROPERTY_VALUES)
    op.execute(BULK_PROPERTIES_WIDE)
    op.execute(SURFACE_PROPERTIES_WIDE)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS surface_properties_wide")
    op.execute("DROP VIEW IF EXISTS bulk_properties_wide")
    op.execute("DROP VIEW IF EXISTS property_values")
