"""The training table of a fit, built from the store by SQL, and its snapshot hash.

Rows are target values joined to their features, newest value per (entity, property) when
several sources give one, in canonical units:

- bulk-scope targets (one row per material × method) and surface-scope targets (one row per
  surface × method, with the surface's orientation descriptors) join the same (material,
  method)'s stored bulk features;
- configuration-scope targets (one row per material configuration, e.g. a defect
  arrangement) join the same configuration's configuration-scope features, plus its
  material's bulk features;
- composition descriptors (:mod:`matstore.composition`, e.g. ``mean_electronegativity``) are
  computed from each row's material composition and join any target.

``group_by`` names the cross-validation groups: ``material``, ``method`` or any column of the
table (``configuration_key``, an orientation or feature column, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy import Engine, text

from matstore.hashing import sha256_json

#: Orientation descriptor columns of surface targets (see matstore.orientation).
ORIENTATION_COLUMNS = ("miller_h", "miller_k", "miller_l", "normal_x", "normal_y", "normal_z", "theta_deg", "phi_deg")
KEY_COLUMNS = ("material", "method", "material_id", "method_id", "surface_id", "configuration_id", "configuration_key")
#: Scopes whose values are stored per material and method (``bulk_property``).
MATERIAL_SCOPES = ("bulk", "defect", "mechanical")

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

CONFIGURATION_TARGET_SQL = """
SELECT m.formula AS material, me.name AS method, m.id AS material_id, me.id AS method_id,
       NULL::int AS surface_id, mc.id AS configuration_id, mc.key AS configuration_key,
       (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC))[1] AS target
FROM configuration_property p
JOIN material_configuration mc ON mc.id = p.configuration_id
JOIN material m ON m.id = mc.material_id
JOIN method me ON me.id = mc.method_id
JOIN property_definition d ON d.id = p.definition_id
WHERE d.name = :target""" + _METHOD_FILTER + """
GROUP BY m.formula, me.name, m.id, me.id, mc.id, mc.key
"""

CONFIGURATION_FEATURES_SQL = """
SELECT p.configuration_id, d.name AS property,
       (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC))[1] AS value
FROM configuration_property p
JOIN material_configuration mc ON mc.id = p.configuration_id
JOIN method me ON me.id = mc.method_id
JOIN property_definition d ON d.id = p.definition_id
WHERE d.name = ANY(CAST(:configuration_features AS text[]))""" + _METHOD_FILTER + """
GROUP BY p.configuration_id, d.name
"""

COMPOSITION_SQL = "SELECT id AS material_id, composition FROM material WHERE id = ANY(CAST(:material_ids AS int[]))"

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
    """The training table cannot be built (unknown property, no rows, an impossible join)."""


@dataclass
class TrainingSet:
    """A training table with its provenance.

    Attributes
    ----------
    table: one row per target value: key columns (``configuration_id`` and
        ``configuration_key`` for configuration-scope targets), orientation descriptors
        (surface targets), feature columns (named as the property definitions), ``target``
    target_scope: ``surface``, ``configuration`` or the target definition's scope
    units: canonical unit per feature and for ``target``
    query: the SQL text used (recorded with the version)
    sha256: sha256 over the sorted rows and the query text
    dropped: rows dropped for missing features, with the missing names
    group_by: the column naming the cross-validation groups
    groups: (n_rows,) group label of every row (``table[group_by]``)
    """

    table: pd.DataFrame
    target_scope: str
    units: dict[str, str]
    query: str
    sha256: str
    dropped: list[dict] = field(default_factory=list)
    group_by: str = "material"
    groups: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))

    @property
    def n_rows(self) -> int:
        """Number of training rows."""
        return len(self.table)


def _units(conn, names: list[str]) -> dict[str, tuple[str, str]]:  # noqa: ANN001
    rows = conn.execute(text("SELECT name, unit, scope FROM property_definition WHERE name = ANY(:n)"),
                        {"n": names}).all()
    return {r.name: (r.unit, r.scope) for r in rows}


def _feature_kinds(known: dict[str, tuple[str, str]], target: str, features: list[str]) -> dict[str, list[str]]:
    """Features by where they come from: ``material`` (bulk_property), ``configuration``, ``composition``.

    Raises
    ------
    DatasetError
        A surface-scope feature, or a configuration-scope feature of a target that is not
        per configuration (there is no configuration to join it to).
    """
    kinds: dict[str, list[str]] = {"material": [], "configuration": [], "composition": []}
    target_scope = known[target][1]
    for name in features:
        scope = known[name][1]
        if scope == "surface":
            raise DatasetError(f"feature {name!r} is a surface property; features are bulk, configuration or composition properties")
        if scope == "configuration" and target_scope != "configuration":
            raise DatasetError(f"feature {name!r} is per configuration but the target {target!r} is {target_scope}-scope; "
                               "configuration features join configuration-scope targets only")
        kinds["material" if scope in MATERIAL_SCOPES else scope].append(name)
    return kinds


def _check_names(conn, known: dict[str, tuple[str, str]], names: list[str]) -> None:  # noqa: ANN001
    unknown = [n for n in names if n not in known]
    if unknown:
        from matstore.crud import unknown_definition_message

        vocabulary = conn.execute(text("SELECT name FROM property_definition")).scalars().all()
        with_hint = unknown_definition_message(unknown[0], vocabulary)
        raise DatasetError(f"{with_hint}{'; also unknown: ' + ', '.join(unknown[1:]) if unknown[1:] else ''}")


def build_training_set(
    engine: Engine,
    *,
    target: str,
    features: list[str],
    methods: list[str] | None = None,
    include_flagged: bool = False,
    group_by: str = "material",
) -> TrainingSet:
    """Build the training table for ``target`` from ``features`` out of the store.

    Parameters
    ----------
    engine
        The store.
    target
        A property definition of scope bulk, defect, mechanical, surface or configuration.
    features
        Bulk-scope properties of the same material and method, configuration-scope
        properties of the same configuration (configuration-scope targets only), or
        composition descriptors (:data:`matstore.composition.DESCRIPTORS`).
    methods
        Method names or SQL ``LIKE`` patterns to keep (default: all).
    include_flagged
        Also use values stored with a validation flag.
    group_by
        Column whose values are the cross-validation groups: ``material``, ``method`` or
        any column of the table (e.g. ``configuration_key``, ``miller_h``, a feature).

    Raises
    ------
    DatasetError
        If a property name is not in the vocabulary, a feature cannot join the target, no
        complete row exists, or ``group_by`` is not a column of the table.
    """
    with engine.connect() as conn:
        known = _units(conn, [target, *features])
        _check_names(conn, known, [target, *features])
        kinds = _feature_kinds(known, target, features)
        scope = known[target][1]
        # ``features`` binds the material-level names only; the snapshot records the full list.
        params = {"target": target, "features": kinds["material"], "methods": methods, "include_flagged": include_flagged,
                  "configuration_features": kinds["configuration"]}
        target_sql = {"surface": SURFACE_TARGET_SQL, "configuration": CONFIGURATION_TARGET_SQL}.get(scope, BULK_TARGET_SQL)
        targets, long, per_config, compositions = _fetch_stored(conn, target_sql, params, kinds)
    targets = _with_composition(targets, kinds["composition"], compositions)
    table, dropped = _join_features(targets, long, per_config, features, kinds)
    if table.empty:
        raise DatasetError(f"no row of {target!r} has all features {features}; first missing: {dropped[:3]}")
    if group_by not in table.columns:
        raise DatasetError(f"group_by {group_by!r} is not a column of the training table (columns: {', '.join(table.columns)})")
    query = _training_query(target_sql, bool(kinds["configuration"]))
    units = {n: known[n][0] for n in features} | {"target": known[target][0]}
    snapshot_params = {"target": target, "features": features, "methods": methods, "include_flagged": include_flagged}
    return TrainingSet(table, scope, units, query, snapshot_sha256(table, query, snapshot_params), dropped,
                       group_by, table[group_by].to_numpy())


def _fetch_stored(
    conn, target_sql: str, params: dict, kinds: dict[str, list[str]]  # noqa: ANN001
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """Target rows, long feature rows, per-configuration feature rows and compositions by material id."""
    from sqlalchemy import bindparam

    targets = pd.DataFrame(conn.execute(text(target_sql), params).mappings().all())
    if targets.empty:
        raise DatasetError(f"no stored values of {params['target']!r} for methods {params['methods'] or 'any'}")
    long = pd.DataFrame(conn.execute(text(FEATURES_SQL), params).mappings().all())
    per_config = pd.DataFrame(conn.execute(text(CONFIGURATION_FEATURES_SQL), params).mappings().all()) \
        if kinds["configuration"] else pd.DataFrame()
    compositions = dict(conn.execute(text(COMPOSITION_SQL).bindparams(bindparam("material_ids")),
                                     {"material_ids": sorted({int(i) for i in targets["material_id"]})}).all()) \
        if kinds["composition"] else {}
    return targets, long, per_config, compositions


def _training_query(target_sql: str, configuration_features: bool) -> str:
    """The SQL text recorded with a training set: target query, feature query(ies)."""
    return target_sql + "\n-- features:\n" + FEATURES_SQL + (
        "\n-- configuration features:\n" + CONFIGURATION_FEATURES_SQL if configuration_features else "")


def _with_composition(targets: pd.DataFrame, names: list[str], compositions: dict[int, dict]) -> pd.DataFrame:
    """Target rows with the composition descriptors ``names`` of their material (NaN if undefined)."""
    from matstore.composition import composition_descriptor

    for name in names:
        values = {mid: composition_descriptor(name, comp or {}) for mid, comp in compositions.items()}
        targets[name] = targets["material_id"].map(values).astype(float)
    return targets


def _join_features(targets: pd.DataFrame, long: pd.DataFrame, per_config: pd.DataFrame, features: list[str],
                   kinds: dict[str, list[str]]) -> tuple[pd.DataFrame, list[dict]]:
    merged = targets.merge(_wide(long, ["material_id", "method_id"], kinds["material"]),
                           on=["material_id", "method_id"], how="left")
    if kinds["configuration"]:
        merged = merged.merge(_wide(per_config, ["configuration_id"], kinds["configuration"]), on="configuration_id", how="left")
    missing = merged[features].isna()
    dropped = [
        {"material": r.material, "method": r.method, "missing": [f for f in features if missing.loc[i, f]],
         **({"configuration_key": r.configuration_key} if "configuration_key" in merged.columns else {})}
        for i, r in merged[missing.any(axis=1)].iterrows()
    ]
    complete = merged[~missing.any(axis=1)].copy()
    complete["target"] = complete["target"].astype(float)
    order = [c for c in (*KEY_COLUMNS, *ORIENTATION_COLUMNS) if c in complete.columns]
    complete = complete[order + list(features) + ["target"]]
    sort = ["material", "method", "configuration_key" if "configuration_key" in complete.columns else "surface_id"]
    return complete.sort_values(sort, na_position="first").reset_index(drop=True), dropped


def _wide(long: pd.DataFrame, index: list[str], names: list[str]) -> pd.DataFrame:
    """Long (index…, property, value) rows pivoted to one column per name (NaN where absent)."""
    if long.empty:
        wide = pd.DataFrame(columns=[*index, *names])
    else:
        wide = long.pivot_table(index=index, columns="property", values="value", aggfunc="first").reset_index()
    for name in names:
        if name not in wide.columns:
            wide[name] = float("nan")
    return wide[[*index, *names]]


STORED_INPUTS_SQL = """
SELECT d.name, (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC))[1] AS value
FROM bulk_property p JOIN material m ON m.id = p.material_id JOIN method me ON me.id = p.method_id
JOIN property_definition d ON d.id = p.definition_id
WHERE m.formula = :material AND me.name = :method AND d.name = ANY(CAST(:names AS text[])) AND p.flag IS NULL
GROUP BY d.name
UNION ALL
SELECT d.name, (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC))[1]
FROM configuration_property p JOIN material_configuration mc ON mc.id = p.configuration_id
JOIN material m ON m.id = mc.material_id JOIN method me ON me.id = mc.method_id
JOIN property_definition d ON d.id = p.definition_id
WHERE m.formula = :material AND me.name = :method AND mc.key = :key AND d.name = ANY(CAST(:names AS text[]))
  AND p.flag IS NULL
GROUP BY d.name
"""


def stored_inputs(engine: Engine, *, material: str, method: str, features: list[str],
                  configuration_key: str | None = None) -> dict[str, float]:
    """Feature values of one row as a training set would join them (for ``predict``).

    Newest unflagged value of each material-level feature of (material, method), of each
    configuration-scope feature of the configuration ``configuration_key`` (when given),
    and the composition descriptors of the material.  Features with no value are absent.

    Parameters
    ----------
    material
        Formula (any spelling pymatgen reduces to the stored one, e.g. ``Mo2S4``).
    method
        Method name.
    features
        Property names (any scope but surface).
    configuration_key
        Key of a material configuration, for configuration-scope features.
    """
    from matstore.composition import (
        DESCRIPTORS,
        FormulaError,
        composition_descriptor,
        parse_formula,
    )

    try:
        formula = parse_formula(material).formula
    except FormulaError:
        formula = material
    with engine.connect() as conn:
        rows = conn.execute(text(STORED_INPUTS_SQL), {"material": formula, "method": method, "names": features,
                                                      "key": configuration_key}).all()
        composition = conn.execute(text("SELECT composition FROM material WHERE formula = :f ORDER BY id LIMIT 1"),
                                   {"f": formula}).scalar()
    out = {r.name: float(r.value) for r in rows}
    for name in features:
        if name in DESCRIPTORS and composition:
            out[name] = composition_descriptor(name, composition)
    return out


def snapshot_sha256(table: pd.DataFrame, query: str, params: dict) -> str:
    """sha256 over the sorted rows (rounded to 12 significant digits), the query and its parameters."""
    data_columns = [c for c in table.columns if c not in ("material_id", "method_id", "surface_id", "configuration_id")]
    rows = table[data_columns].astype(object).where(table[data_columns].notna(), None).values.tolist()
    canonical = sorted(
        [[(float(f"{v:.12g}") if isinstance(v, float) else v) for v in row] for row in rows], key=repr
    )
    return sha256_json({"columns": data_columns, "rows": canonical, "query": query, "params": params})
