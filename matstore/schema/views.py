"""SQL views a scientist queries directly.

The SQL here is the current definition; migrations copy it verbatim at the revision that
introduced it (a migration never imports live code), and ``tests/test_migrations.py``
checks that the views in the database equal these definitions.

- ``property_values``: every bulk, surface and per-configuration value in long form with unit
  and provenance (``configuration_key`` names the material configuration of ``configuration``
  scope values; ``configuration_id`` is the atomic structure a value was computed on).
- ``bulk_properties_wide``: one row per material × method, one column per bulk property (the
  newest unflagged value: what a fit uses; since revision 0015).
- ``surface_properties_wide``: one row per surface × method with orientation and γ, τ, S
  (likewise).
- ``model_predictions``: observed vs predicted (and out-of-fold) values per equation version,
  with the configuration key of configuration-scope targets.
"""

from __future__ import annotations

from matstore.schema.vocabulary import PROPERTY_DEFINITIONS

#: The newest unflagged value of a property (flagged ones, e.g. superseded readings, are left
#: out as fits leave them out; ``property_values`` lists them with their flag).
_NEWEST = ("(array_agg(p.value ORDER BY p.created_at DESC, p.id DESC) FILTER (WHERE d.name = '{name}' "
           "AND p.flag IS NULL))[1] AS {name}")


def _wide_columns(scopes: tuple[str, ...]) -> str:
    names = [d.name for d in PROPERTY_DEFINITIONS if d.scope in scopes]
    return ",\n    ".join(_NEWEST.format(name=n) for n in names)


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

BULK_PROPERTIES_WIDE = f"""
CREATE VIEW bulk_properties_wide AS
SELECT m.formula AS material, m.prototype, me.name AS method,
    {_wide_columns(("bulk", "defect", "mechanical"))}
FROM bulk_property p
JOIN material m ON m.id = p.material_id
JOIN method me ON me.id = p.method_id
JOIN property_definition d ON d.id = p.definition_id
GROUP BY m.formula, m.prototype, me.name
"""

SURFACE_PROPERTIES_WIDE = f"""
CREATE VIEW surface_properties_wide AS
SELECT m.formula AS material, m.prototype, me.name AS method,
    su.miller_h, su.miller_k, su.miller_l, su.theta_deg, su.phi_deg,
    su.normal_x, su.normal_y, su.normal_z,
    {_wide_columns(("surface",))}
FROM surface_property p
JOIN surface su ON su.id = p.surface_id
JOIN material m ON m.id = su.material_id
JOIN method me ON me.id = p.method_id
JOIN property_definition d ON d.id = p.definition_id
GROUP BY m.formula, m.prototype, me.name, su.id
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

#: Views in creation order (drop in reverse).
VIEWS: dict[str, str] = {
    "property_values": PROPERTY_VALUES,
    "bulk_properties_wide": BULK_PROPERTIES_WIDE,
    "surface_properties_wide": SURFACE_PROPERTIES_WIDE,
    "model_predictions": MODEL_PREDICTIONS,
}
