"""The training table of a fit, built from the store by SQL, and its snapshot hash.

Rows are target values (surface or bulk scope) joined to the same (material, method)'s bulk
features, newest value per (material, method, property) when several sources give one, and,
for surface targets, the surface's orientation descriptors.  Values are in canonical units.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy import Engine, text

from matstore.hashing import sha256_json

#: Orientation descriptor columns of surface targets (see matstore.orientation).
ORIENTATION_COLUMNS = ("miller_h", "miller_k", "miller_l", "normal_x", "normal_y", "normal_z", "theta_deg", "phi_deg")
KEY_COLUMNS = ("material", "method", "material_id", "method_id", "surface_id")

_METHOD_FILTER = """
  AND (CAST(:methods AS text[]) IS NULL
       OR me.name = ANY(CAST(:methods AS text[]))
       OR EXISTS (SELECT 1 FROM unnest(CAST(:methods AS text[])) pat WHERE pat LIKE '%\\%%' AND me.name LIKE pat))
  AND (:include_flagged OR p.flag IS NULL)"""

SURFACE_TARGET_SQL = """
SELECT m.formula AS material, me.name AS method, m.id AS material_id, me.id AS method_id,
       su.id AS surface_id, su.miller_h, su.miller_k, su.miller_l, su.normal_x, su.normal_y, su.normal_z,
       su.theta_deg, su.phi_deg,
       (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC))[1] AS target
FROM surface_property p
JOIN surface su ON su.id = p.surface_id
JOIN material m ON m.id = su.material_id
JOIN method me ON me.id = p.method_id
JOIN property_definition d ON d.id = p.definition_id
WHERE d.name = :target""" + _METHOD_FILTER + """
GROUP BY m.formula, me.name, m.id, me.id, su.id
"""

BULK_TARGET_SQL = """
SELECT m.formula AS material, me.name AS method, m.id AS material_id, me.id AS method_id,
       NULL::int AS surface_id,
       (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC))[1] AS target
FROM bulk_property p
JOIN material m ON m.id = p.material_id
JOIN method me ON me.id = p.method_id
JOIN property_definition d ON d.id = p.definition_id
WHERE d.name = :target""" + _METHOD_FILTER + """
GROUP BY m.formula, me.name, m.id, me.id
"""

FEATURES_SQL = """
SELECT p.material_id, p.method_id, d.name AS property,
       (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC))[1] AS value
FROM bulk_property p
JOIN method me ON me.id = p.method_id
JOIN property_definition d ON d.id = p.definition_id
WHERE d.name = ANY(CAST(:features AS text[]))""" + _METHOD_FILTER + """
GROUP BY p.material_id, p.method_id, d.name
"""


class DatasetError(ValueError):
    """The training table cannot be built (unknown property, no rows)."""


@dataclass
class TrainingSet:
    """A training table with its provenance.

    Attributes
    ----------
    table: one row per target value: key columns, orientation descriptors (surface targets),
        feature columns (named as the property definitions), ``target``
    target_scope: ``surface`` or the target definition's scope
    units: canonical unit per feature and for ``target``
    query: the SQL text used (recorded with the version)
    sha256: sha256 over the sorted rows and the query text
    dropped: rows dropped for missing features, with the missing names
    """

    table: pd.DataFrame
    target_scope: str
    units: dict[str, str]
    query: str
    sha256: str
    dropped: list[dict] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        """Number of training rows."""
        return len(self.table)


def _units(conn, names: list[str]) -> dict[str, tuple[str, str]]:  # noqa: ANN001
    rows = conn.execute(text("SELECT name, unit, scope FROM property_definition WHERE name = ANY(:n)"),
                        {"n": names}).all()
    return {r.name: (r.unit, r.scope) for r in rows}


def build_training_set(
    engine: Engine,
    *,
    target: str,
    features: list[str],
    methods: list[str] | None = None,
    include_flagged: bool = False,
) -> TrainingSet:
    """Build the training table for ``target`` from ``features`` out of the store.

    Raises
    ------
    DatasetError
        If a property name is not in the vocabulary or no complete row exists.
    """
    params = {"target": target, "features": features, "methods": methods, "include_flagged": include_flagged}
    with engine.connect() as conn:
        known = _units(conn, [target, *features])
        unknown = [n for n in [target, *features] if n not in known]
        if unknown:
            raise DatasetError(f"unknown property name(s): {', '.join(unknown)} (see `matstore sql \"SELECT name FROM property_definition\"`)")
        scope = known[target][1]
        target_sql = SURFACE_TARGET_SQL if scope == "surface" else BULK_TARGET_SQL
        targets = pd.DataFrame(conn.execute(text(target_sql), params).mappings().all())
        long = pd.DataFrame(conn.execute(text(FEATURES_SQL), params).mappings().all())
    if targets.empty:
        raise DatasetError(f"no stored values of {target!r} for methods {methods or 'any'}")
    table, dropped = _join_features(targets, long, features)
    if table.empty:
        raise DatasetError(f"no row of {target!r} has all features {features}; first missing: {dropped[:3]}")
    query = target_sql + "\n-- features:\n" + FEATURES_SQL
    units = {n: known[n][0] for n in features} | {"target": known[target][0]}
    return TrainingSet(table, "surface" if scope == "surface" else scope, units, query,
                       snapshot_sha256(table, query, params), dropped)


def _join_features(targets: pd.DataFrame, long: pd.DataFrame, features: list[str]) -> tuple[pd.DataFrame, list[dict]]:
    if long.empty:
        wide = pd.DataFrame(columns=["material_id", "method_id", *features])
    else:
        wide = long.pivot_table(index=["material_id", "method_id"], columns="property", values="value", aggfunc="first").reset_index()
    for name in features:
        if name not in wide.columns:
            wide[name] = float("nan")
    merged = targets.merge(wide[["material_id", "method_id", *features]], on=["material_id", "method_id"], how="left")
    missing = merged[features].isna()
    dropped = [
        {"material": r.material, "method": r.method, "missing": [f for f in features if missing.loc[i, f]]}
        for i, r in merged[missing.any(axis=1)].iterrows()
    ]
    complete = merged[~missing.any(axis=1)].copy()
    complete["target"] = complete["target"].astype(float)
    order = [c for c in (*KEY_COLUMNS, *ORIENTATION_COLUMNS) if c in complete.columns]
    complete = complete[order + list(features) + ["target"]]
    return complete.sort_values(["material", "method", "surface_id"], na_position="first").reset_index(drop=True), dropped


def snapshot_sha256(table: pd.DataFrame, query: str, params: dict) -> str:
    """sha256 over the sorted rows (rounded to 12 significant digits), the query and its parameters."""
    data_columns = [c for c in table.columns if c not in ("material_id", "method_id", "surface_id")]
    rows = table[data_columns].astype(object).where(table[data_columns].notna(), None).values.tolist()
    canonical = sorted(
        [[(float(f"{v:.12g}") if isinstance(v, float) else v) for v in row] for row in rows], key=repr
    )
    return sha256_json({"columns": data_columns, "rows": canonical, "query": query, "params": params})
