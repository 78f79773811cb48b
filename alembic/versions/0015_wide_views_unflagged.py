"""The wide views show the values a fit uses: the newest *unflagged* value of each property.

``bulk_properties_wide`` and ``surface_properties_wide`` took the newest value whatever its
flag.  Since ``ingest table --supersede`` flags a replaced reading's values (never deleting
them), a superseding mapping that leaves out a column left the old, flagged value showing in
the wide view, though no fit would use it.  Both views now take the newest value with no flag
(validation flags and superseded readings alike); ``property_values`` still lists every
value with its flag.  The writer keeps ``SELECT`` only on the recreated views (revision 0014).

The SQL is a verbatim copy of ``matstore/schema/views.py`` at this revision; the downgrade
restores revision 0002's.

Revision ID: 0015
Revises: 0014
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BULK_PROPERTIES_WIDE = """CREATE VIEW bulk_properties_wide AS
SELECT m.formula AS material, m.prototype, me.name AS method,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'lattice_constant' AND p.flag IS NULL))[1] AS lattice_constant,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'cohesive_energy' AND p.flag IS NULL))[1] AS cohesive_energy,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'c11' AND p.flag IS NULL))[1] AS c11,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'c12' AND p.flag IS NULL))[1] AS c12,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'c44' AND p.flag IS NULL))[1] AS c44,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'bulk_modulus' AND p.flag IS NULL))[1] AS bulk_modulus,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'shear_modulus_prime' AND p.flag IS NULL))[1] AS shear_modulus_prime,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'shear_modulus_c44' AND p.flag IS NULL))[1] AS shear_modulus_c44,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'zener_ratio' AND p.flag IS NULL))[1] AS zener_ratio,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'stacking_fault_energy' AND p.flag IS NULL))[1] AS stacking_fault_energy,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'extrinsic_stacking_fault_energy' AND p.flag IS NULL))[1] AS extrinsic_stacking_fault_energy,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'unstable_stacking_fault_energy' AND p.flag IS NULL))[1] AS unstable_stacking_fault_energy,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'unstable_twinning_energy' AND p.flag IS NULL))[1] AS unstable_twinning_energy,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'vacancy_formation_energy' AND p.flag IS NULL))[1] AS vacancy_formation_energy,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'vacancy_migration_energy' AND p.flag IS NULL))[1] AS vacancy_migration_energy,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'thermal_expansion_coefficient' AND p.flag IS NULL))[1] AS thermal_expansion_coefficient,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'surface_energy_100' AND p.flag IS NULL))[1] AS surface_energy_100,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'surface_energy_110' AND p.flag IS NULL))[1] AS surface_energy_110,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'surface_energy_111' AND p.flag IS NULL))[1] AS surface_energy_111,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'surface_energy_121' AND p.flag IS NULL))[1] AS surface_energy_121,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'strength' AND p.flag IS NULL))[1] AS strength
FROM bulk_property p
JOIN material m ON m.id = p.material_id
JOIN method me ON me.id = p.method_id
JOIN property_definition d ON d.id = p.definition_id
GROUP BY m.formula, m.prototype, me.name
"""

SURFACE_PROPERTIES_WIDE = """CREATE VIEW surface_properties_wide AS
SELECT m.formula AS material, m.prototype, me.name AS method,
    su.miller_h, su.miller_k, su.miller_l, su.theta_deg, su.phi_deg,
    su.normal_x, su.normal_y, su.normal_z,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'surface_energy' AND p.flag IS NULL))[1] AS surface_energy,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'surface_stress' AND p.flag IS NULL))[1] AS surface_stress,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'surface_stress_11' AND p.flag IS NULL))[1] AS surface_stress_11,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'surface_stress_22' AND p.flag IS NULL))[1] AS surface_stress_22,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'surface_stress_12' AND p.flag IS NULL))[1] AS surface_stress_12,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'surface_stiffness' AND p.flag IS NULL))[1] AS surface_stiffness,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'surface_stiffness_11' AND p.flag IS NULL))[1] AS surface_stiffness_11,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'surface_stiffness_22' AND p.flag IS NULL))[1] AS surface_stiffness_22,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'surface_stiffness_12' AND p.flag IS NULL))[1] AS surface_stiffness_12,
    (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = 'surface_stiffness_66' AND p.flag IS NULL))[1] AS surface_stiffness_66
FROM surface_property p
JOIN surface su ON su.id = p.surface_id
JOIN material m ON m.id = su.material_id
JOIN method me ON me.id = p.method_id
JOIN property_definition d ON d.id = p.definition_id
GROUP BY m.formula, m.prototype, me.name, su.id
"""

OLD_BULK_PROPERTIES_WIDE = """CREATE VIEW bulk_properties_wide AS
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

OLD_SURFACE_PROPERTIES_WIDE = """CREATE VIEW surface_properties_wide AS
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


def _recreate(bulk: str, surface: str) -> None:
    op.execute("DROP VIEW IF EXISTS surface_properties_wide")
    op.execute("DROP VIEW IF EXISTS bulk_properties_wide")
    op.execute(bulk)
    op.execute(surface)
    # New views get the default privileges (writer: all); 0014 left the writer SELECT on views.
    for view in ("bulk_properties_wide", "surface_properties_wide"):
        op.execute(f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {view} FROM matstore_writer")


def upgrade() -> None:
    _recreate(BULK_PROPERTIES_WIDE, SURFACE_PROPERTIES_WIDE)


def downgrade() -> None:
    _recreate(OLD_BULK_PROPERTIES_WIDE, OLD_SURFACE_PROPERTIES_WIDE)
