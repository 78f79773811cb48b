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

Every table has a ``chemical_system`` column, the sorted elements of the row's material
(pymatgen's ``Composition.chemical_system``, e.g. ``Ce-La-O-P`` for ``La0.5Ce0.5PO4``): all
compositions of a solid-solution series share it.  It is derived from ``material`` and so is
left out of the snapshot hash.  Every table has a ``prototype`` column too, the material's
stored crystal prototype (``material.prototype``: ``Fm-3m``, ``fcc``, ``unknown``…); it labels
the rows and is left out of the snapshot hash (so versions stored before it keep theirs),
while a ``prototypes`` filter is part of the recorded query and its parameters.

``group_by`` names the cross-validation groups (:data:`GROUP_BY_CHOICES`): ``material``,
``method``, ``chemical_system``, ``configuration_key`` (per-configuration targets; the folds
hold out one configuration of one material, :func:`matstore.models.service._cv_groups`), any
feature or orientation column, or any stored property name.  A property that is not a
feature is fetched as one more column, for grouping only: it is never an input of the
equation, and a row without its value is dropped (listed in ``dropped``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy import Engine, text

from matstore.hashing import sha256_json
from matstore.schema.properties import CONFLICT_RTOL

#: Orientation descriptor columns of surface targets (see matstore.orientation).
ORIENTATION_COLUMNS = ("miller_h", "miller_k", "miller_l", "normal_x", "normal_y", "normal_z", "theta_deg", "phi_deg")
KEY_COLUMNS = ("material", "method", "material_id", "method_id", "surface_id", "configuration_id", "configuration_key",
               "chemical_system", "prototype")
#: What ``group_by`` accepts, in words (the one-line error of an unknown grouping lists it).
GROUP_BY_CHOICES = ("material, method, chemical_system, configuration_key (per-configuration targets), "
                    "a feature or orientation column, or a stored property name (matstore vocab list)")
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
PROTOTYPE_SQL = "SELECT id AS material_id, prototype FROM material WHERE id = ANY(CAST(:material_ids AS int[]))"

#: Restricts a target query to the materials of the given prototypes; added (before its
#: ``GROUP BY``) only when a fit names prototypes, so the recorded query of every other fit,
#: and with it its snapshot hash, is what it was before prototypes could be chosen.
PROTOTYPE_FILTER = "\n  AND m.prototype = ANY(CAST(:prototypes AS text[]))"
#: The same filter where ``:prototypes`` may be NULL (every prototype): the conflicts query.
_PROTOTYPES_OR_ANY = "\n  AND (CAST(:prototypes AS text[]) IS NULL OR m.prototype = ANY(CAST(:prototypes AS text[])))"


def _with_prototype_filter(target_sql: str, prototypes: list[str] | None) -> str:
    """``target_sql`` with :data:`PROTOTYPE_FILTER` before its ``GROUP BY`` when ``prototypes`` is given."""
    if not prototypes:
        return target_sql
    head, sep, tail = target_sql.rpartition("\nGROUP BY ")
    return head + PROTOTYPE_FILTER + sep + tail

FEATURES_SQL = """
SELECT p.material_id, p.method_id, d.name AS property,
       (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC))[1] AS value
FROM bulk_property p
JOIN method me ON me.id = p.method_id
JOIN property_definition d ON d.id = p.definition_id
WHERE d.name = ANY(CAST(:features AS text[]))""" + _METHOD_FILTER + """
GROUP BY p.material_id, p.method_id, d.name
"""


#: Unflagged values of one key that disagree (relative 1e-6): a store filled before table
#: ingest refused cross-source conflicts, or by ``ingest compute`` and a table under one
#: method name.  Checked apart from the recorded training query (its text is hashed).
CONFLICTS_SQL = """
SELECT key, property, min(value) AS low, max(value) AS high, count(*) AS n,
       array_agg(DISTINCT source_id ORDER BY source_id) AS sources
FROM (
  SELECT m.formula || coalesce(' (' || m.prototype || ')', '') || ' by ' || me.name AS key, d.name AS property, p.value, p.source_id
  FROM bulk_property p JOIN material m ON m.id = p.material_id JOIN method me ON me.id = p.method_id
  JOIN property_definition d ON d.id = p.definition_id
  WHERE d.name = ANY(CAST(:names AS text[]))""" + _METHOD_FILTER + _PROTOTYPES_OR_ANY + """
  UNION ALL
  SELECT m.formula || coalesce(' (' || m.prototype || ')', '') || ' ' || su.orientation_key || ' by ' || me.name, d.name, p.value, p.source_id
  FROM surface_property p JOIN surface su ON su.id = p.surface_id JOIN material m ON m.id = su.material_id
  JOIN method me ON me.id = p.method_id JOIN property_definition d ON d.id = p.definition_id
  WHERE d.name = ANY(CAST(:names AS text[]))""" + _METHOD_FILTER + _PROTOTYPES_OR_ANY + """
  UNION ALL
  SELECT m.formula || coalesce(' (' || m.prototype || ')', '') || ' [' || mc.key || '] by ' || me.name, d.name, p.value, p.source_id
  FROM configuration_property p JOIN material_configuration mc ON mc.id = p.configuration_id
  JOIN material m ON m.id = mc.material_id JOIN method me ON me.id = mc.method_id
  JOIN property_definition d ON d.id = p.definition_id
  WHERE d.name = ANY(CAST(:names AS text[]))""" + _METHOD_FILTER + _PROTOTYPES_OR_ANY + """
) AS v
GROUP BY key, property
HAVING max(value) - min(value) > """ + repr(CONFLICT_RTOL) + """ * greatest(abs(max(value)), abs(min(value)))
ORDER BY property, key
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
    groups: (n_rows,) value of that column in every row (``table[group_by]``); the folds'
        groups are chosen from it by :func:`matstore.models.service._cv_groups` (the bulk
        default rule; ``configuration_key`` holds out one configuration of one material,
        ``MoS2 [3v:17]``, not the bare key shared by every host)
    grouping: stored properties fetched only to group by (not features, never inputs)
    conflicts: keys whose unflagged values disagree, one line each (the newest is used)
    descriptor_notes: composition descriptors of training rows computed from a fallback, one
        line per material (:func:`_descriptor_notes`)

    The table's ``prototype`` column holds each row's ``material.prototype``
    (:func:`matstore.models.service._materials_per_prototype` counts them).
    """

    table: pd.DataFrame
    target_scope: str
    units: dict[str, str]
    query: str
    sha256: str
    dropped: list[dict] = field(default_factory=list)
    group_by: str = "material"
    groups: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    grouping: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    descriptor_notes: list[str] = field(default_factory=list)

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
    prototypes: list[str] | None = None,
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
        What the cross-validation folds hold out together (:data:`GROUP_BY_CHOICES`):
        ``material``, ``method``, ``chemical_system``, a column of the table (e.g.
        ``configuration_key``, ``miller_h``, ``prototype``, a feature) or a stored property
        that is not a feature, fetched for grouping only.
    prototypes
        Exact ``material.prototype`` names whose materials to keep (default: all), e.g.
        ``["Fm-3m"]``; a filter of the target query (:data:`PROTOTYPE_FILTER`).

    Raises
    ------
    DatasetError
        If a property name is not in the vocabulary, a feature cannot join the target, no
        value of the target passes the method and prototype filters (the message lists the
        methods, or the prototypes with their materials, that hold values), no complete row
        exists, or ``group_by`` is none of the accepted groupings (one line listing them).
    """
    with engine.connect() as conn:
        known = _units(conn, [target, *features, group_by])
        _check_names(conn, known, [target, *features])
        _feature_kinds(known, target, features)  # a feature's own error before the grouping's
        grouping = _grouping_properties(conn, known, target, features, group_by)
        fetched = _feature_kinds(known, target, [*features, *grouping])
        scope = known[target][1]
        # ``features`` binds the material-level names only; the snapshot records the full list.
        params = {"target": target, "features": fetched["material"], "methods": methods,
                  "include_flagged": include_flagged, "configuration_features": fetched["configuration"],
                  "prototypes": prototypes}
        target_sql = _with_prototype_filter(
            {"surface": SURFACE_TARGET_SQL, "configuration": CONFIGURATION_TARGET_SQL}.get(scope, BULK_TARGET_SQL),
            prototypes)
        conflicts = _conflicts(conn, [target, *fetched["material"], *fetched["configuration"]], params)
        targets, long, per_config, compositions = _fetch_stored(conn, target_sql, params, fetched)
    targets = _with_chemical_system(_with_composition(targets, fetched["composition"], compositions), compositions)
    table, dropped = _join_features(targets, long, per_config, [*features, *grouping], fetched)
    if table.empty:
        raise DatasetError(f"no row of {target!r} has all features {features}; first missing: {dropped[:3]}")
    table = distinct_material_labels(table)
    if group_by not in table.columns:
        raise DatasetError(f"group_by {group_by!r} is not a column of this {scope}-scope training table; "
                           f"give {GROUP_BY_CHOICES}")
    query = _training_query(target_sql, bool(fetched["configuration"]))
    units = {n: known[n][0] for n in [*features, *grouping]} | {"target": known[target][0]}
    snapshot_params = {"target": target, "features": features, "methods": methods, "include_flagged": include_flagged}
    if grouping:
        snapshot_params["grouping"] = grouping
    if prototypes:
        snapshot_params["prototypes"] = prototypes
    return TrainingSet(table, scope, units, query, snapshot_sha256(table, query, snapshot_params), dropped,
                       group_by, table[group_by].to_numpy(), grouping, conflicts,
                       _descriptor_notes(table, fetched["composition"], compositions))


def distinct_material_labels(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with one ``material`` label per stored material: ``Fe (Im-3m)``, ``Fe (Fm-3m)``.

    A material is a formula *and* a crystal prototype (``material`` is unique by both), but
    ``material`` holds the formula.  Where one formula names several stored materials in the
    table (``material_id``), its rows are labelled ``formula (prototype)``, or ``formula
    (material ID)`` where the prototypes do not tell them apart, so that per-material
    coefficients, cross-validation groups and per-group errors never merge two structures
    (a new-user trial's BCC and FCC Fe became one material of averaged bulk values).  Other
    rows keep the bare formula, so labels, groups and snapshots of other tables are unchanged.
    """
    ids = table.groupby("material")["material_id"].nunique()
    shared = table["material"].isin(ids[ids > 1].index)
    if not shared.any():
        return table
    prototype = table["prototype"] if "prototype" in table.columns else pd.Series(None, index=table.index)
    labels = table["material"] + " (" + prototype.fillna("").astype(str) + ")"
    ambiguous = (table.groupby(labels)["material_id"].transform("nunique") > 1) | prototype.isna()
    labels = labels.where(~ambiguous, table["material"] + " (material " + table["material_id"].astype(str) + ")")
    return table.assign(material=table["material"].where(~shared, labels))


def _descriptor_notes(table: pd.DataFrame, names: list[str], compositions: dict[int, dict]) -> list[str]:
    """One line per training material whose ``cation_size_mismatch`` (if among ``names``) uses averaged radii.

    E.g. ``"Fe7Ni3: cation_size_mismatch uses averaged ionic radii of Fe, Ni (an alloy: no
    element has a negative oxidation state, so none balance)"``
    (:func:`matstore.composition.cation_radius_note`): δ_M is then not the charge-balanced
    Shannon radii's, and a user comparing it with a published δ_M should know.
    """
    from matstore.composition import cation_radii, cation_radius_note

    if "cation_size_mismatch" not in names or table.empty:
        return []
    lines = []
    for material_id, material in table[["material_id", "material"]].drop_duplicates().itertuples(index=False):
        radii = cation_radii(compositions.get(material_id) or {})
        note = cation_radius_note(radii) if len(radii) > 1 else None
        if note:
            lines.append(f"{material}: cation_size_mismatch uses {note}")
    return sorted(lines)


def _grouping_properties(conn, known: dict[str, tuple[str, str]], target: str, features: list[str],  # noqa: ANN001
                         group_by: str) -> list[str]:
    """The stored property to fetch for grouping only: ``[group_by]``, or ``[]`` when no fetch is needed.

    Nothing is fetched for ``material``, ``method``, ``chemical_system``, key and
    orientation columns and features (already columns of the table).

    Raises
    ------
    DatasetError
        ``group_by`` is the target, a surface property, a per-configuration property of a
        target that is not per configuration, or none of :data:`GROUP_BY_CHOICES` (with the
        closest vocabulary name, if any).
    """
    if group_by in (*KEY_COLUMNS, *ORIENTATION_COLUMNS, *features):
        return []
    if group_by not in known:
        import difflib

        vocabulary = conn.execute(text("SELECT name FROM property_definition")).scalars().all()
        near = difflib.get_close_matches(group_by, [*vocabulary, "material", "method", "chemical_system"], n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise DatasetError(f"group_by {group_by!r} is unknown{hint}: give {GROUP_BY_CHOICES}")
    scope, target_scope = known[group_by][1], known[target][1]
    if group_by == target:
        raise DatasetError(f"group_by {group_by!r} is the target; group by material, chemical_system or another property")
    if scope == "surface" or (scope == "configuration" and target_scope != "configuration"):
        raise DatasetError(f"group_by {group_by!r} is a {scope} property and cannot group {target_scope}-scope rows; "
                           "give a bulk property, a composition descriptor or chemical_system")
    return [group_by]


def _conflicts(conn, names: list[str], params: dict) -> list[str]:  # noqa: ANN001
    """The keys whose unflagged values of ``names`` disagree (beyond ``CONFLICT_RTOL``), one line each.

    The training queries take the newest value of each key: where two disagree, the newest
    decides the fit.  Table ingest refuses such a value from another source; a store filled
    before that check, or by ``ingest compute`` recomputing under one method name, can still
    hold them.  They are reported with the fit (job run summary, CLI), not refused.
    """
    rows = conn.execute(text(CONFLICTS_SQL), {**params, "names": names, "include_flagged": False}).all()
    return [f"{r.property} of {r.key}: {r.n} values from {r.low:.6g} to {r.high:.6g} (sources "
            f"{', '.join(map(str, r.sources))}); the newest is used" for r in rows]


def _fetch_stored(
    conn, target_sql: str, params: dict, kinds: dict[str, list[str]]  # noqa: ANN001
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """Target rows (with their material's ``prototype``), long feature rows, per-configuration feature rows
    and compositions by material id.

    Raises
    ------
    DatasetError
        No target value passes the filters (:func:`_no_target_values_message`).
    """
    from sqlalchemy import bindparam

    targets = pd.DataFrame(conn.execute(text(target_sql), params).mappings().all())
    if targets.empty:
        raise DatasetError(_no_target_values_message(conn, params))
    long = pd.DataFrame(conn.execute(text(FEATURES_SQL), params).mappings().all())
    per_config = pd.DataFrame(conn.execute(text(CONFIGURATION_FEATURES_SQL), params).mappings().all()) \
        if kinds["configuration"] else pd.DataFrame()
    ids = {"material_ids": sorted({int(i) for i in targets["material_id"]})}
    compositions = dict(conn.execute(text(COMPOSITION_SQL).bindparams(bindparam("material_ids")), ids).all())
    prototypes = dict(conn.execute(text(PROTOTYPE_SQL).bindparams(bindparam("material_ids")), ids).all())
    targets["prototype"] = targets["material_id"].map(prototypes)
    return targets, long, per_config, compositions


#: Methods with a stored value of ``:target`` (any scope) and whether one of them is unflagged.
TARGET_METHODS_SQL = """
SELECT me.name, bool_or(p.flag IS NULL) AS unflagged
FROM (SELECT method_id, definition_id, flag FROM bulk_property
      UNION ALL SELECT method_id, definition_id, flag FROM surface_property
      UNION ALL SELECT mc.method_id, cp.definition_id, cp.flag
                FROM configuration_property cp JOIN material_configuration mc ON mc.id = cp.configuration_id) AS p
JOIN method me ON me.id = p.method_id JOIN property_definition d ON d.id = p.definition_id
WHERE d.name = :target
GROUP BY me.name
"""

#: How many method names the "no stored values" error lists before "... N more".
LISTED_METHODS = 8

#: Prototypes of the materials with a stored value of ``:target`` (any scope) that passes the
#: method and flag filters, with their number of materials.
TARGET_PROTOTYPES_SQL = """
SELECT m.prototype, count(DISTINCT m.id) AS n
FROM (SELECT material_id, method_id, definition_id, flag FROM bulk_property
      UNION ALL SELECT su.material_id, sp.method_id, sp.definition_id, sp.flag
                FROM surface_property sp JOIN surface su ON su.id = sp.surface_id
      UNION ALL SELECT mc.material_id, mc.method_id, cp.definition_id, cp.flag
                FROM configuration_property cp JOIN material_configuration mc ON mc.id = cp.configuration_id) AS p
JOIN material m ON m.id = p.material_id JOIN method me ON me.id = p.method_id
JOIN property_definition d ON d.id = p.definition_id
WHERE d.name = :target""" + _METHOD_FILTER + """
GROUP BY m.prototype
"""


#: Space groups of the elements' common structures, for the hint of an unmatched ``--prototype``
#: (``fcc`` given where ``Fm-3m`` is stored, or the reverse); a hint only, never a match:
#: Fm-3m is also rock salt's space group.
ELEMENT_SPACE_GROUPS = {"fcc": "Fm-3m", "bcc": "Im-3m", "hcp": "P6_3/mmc", "diamond": "Fd-3m", "sc": "Pm-3m"}


def prototype_hint(given: list[str], stored: list[str]) -> str:
    """`` (did you mean 'Fm-3m'? …)`` for a given name that is another stored name but for case, or an element
    structure stored under its space group (:data:`ELEMENT_SPACE_GROUPS`) or the reverse; empty otherwise."""
    lowered = {name.casefold(): name for name in stored}
    pairs = {**ELEMENT_SPACE_GROUPS, **{v: k for k, v in ELEMENT_SPACE_GROUPS.items()}}
    near = []
    for name in given:
        if name.casefold() in lowered and lowered[name.casefold()] != name:
            near.append(lowered[name.casefold()])
        elif pairs.get(name) in stored:
            near.append(pairs[name])
    near = list(dict.fromkeys(near))
    return f" (did you mean {' or '.join(map(repr, near))}?)" if near else ""


def _no_prototype_message(conn, params: dict) -> str | None:  # noqa: ANN001
    """The one-line error when values of the target pass the method filter but none the prototype filter.

    E.g. ``no stored values of 'surface_energy' for prototypes ['fcc'] (methods any); prototypes
    with values of 'surface_energy': 'Fm-3m' (7 materials), 'Im-3m' (4); --prototype takes exact
    names (case-sensitive) (did you mean 'Fm-3m'?)``, the names closest to the given ones first (a
    name containing one, case ignored, then :class:`difflib.SequenceMatcher` ratio), the hint
    from :func:`prototype_hint`.  None when no value
    passes the method filter either (the methods' message says why,
    :func:`_no_target_values_message`).
    """
    rows = conn.execute(text(TARGET_PROTOTYPES_SQL), params).all()
    if not rows:
        return None
    counts = {r.prototype: int(r.n) for r in rows}
    ranked = sorted(counts, key=lambda name: _closeness(name, params["prototypes"]))
    listed = ", ".join(f"{name!r} ({counts[name]}{' materials' if i == 0 else ''})"
                       for i, name in enumerate(ranked[:LISTED_METHODS])) + _more(ranked)
    target, methods = params["target"], params["methods"]
    return (f"no stored values of {target!r} for prototypes {params['prototypes']} (methods {methods or 'any'}); "
            f"prototypes with values of {target!r}{', closest first' if len(ranked) > 1 else ''}: {listed}; "
            f"--prototype takes exact names (case-sensitive){prototype_hint(params['prototypes'], ranked)}")


def _no_target_values_message(conn, params: dict) -> str:  # noqa: ANN001
    """The one-line error when no value of the target passed the method (and flag) filter.

    Names the methods that do hold values of the target, closest to the given ``--method``
    first (a name containing it, then :class:`difflib.SequenceMatcher` ratio), at most
    :data:`LISTED_METHODS` of them, and says that names are exact while SQL ``LIKE`` patterns
    (with ``%``, case-sensitive) are accepted, with a pattern that would match, e.g. ``'DFT%'``
    for ``--method dft`` when ``DFT-PBE (Tran 2016)`` is stored.  Only-flagged values are
    named as such (``include_flagged: true`` in a fit spec uses them).  With a prototype
    filter whose names match no material of the values that pass the method filter, the
    prototypes holding values are listed instead (:func:`_no_prototype_message`).
    """
    if params.get("prototypes"):
        message = _no_prototype_message(conn, params)
        if message is not None:
            return message
    target, methods = params["target"], params["methods"]
    rows = conn.execute(text(TARGET_METHODS_SQL), {"target": target}).all()
    usable = [r.name for r in rows if r.unflagged or params["include_flagged"]]
    flagged_only = sorted(r.name for r in rows if not r.unflagged and not params["include_flagged"])
    head = f"no stored values of {target!r} for methods {methods or 'any'}"
    if not usable:
        if flagged_only:
            return (f"{head}: only flagged values, under {', '.join(map(repr, flagged_only[:LISTED_METHODS]))}"
                    f"{_more(flagged_only)} (include_flagged: true in a fit spec uses them)")
        return f"{head}: no method has a value of {target!r}"
    if not methods:
        return head
    ranked = sorted(usable, key=lambda name: _closeness(name, methods))
    listed = ", ".join(map(repr, ranked[:LISTED_METHODS])) + _more(ranked)
    patterns = list(dict.fromkeys(p for m in methods if (p := _pattern_for(m, usable)) and p != m))
    hint = f" (did you mean {' or '.join(map(repr, patterns))}?)" if patterns else ""
    return (f"{head}; methods with values of {target!r}, closest first: {listed}; --method takes exact names "
            f"or SQL LIKE patterns with % (case-sensitive){hint}")


def _more(names: list[str]) -> str:
    return f" and {len(names) - LISTED_METHODS} more" if len(names) > LISTED_METHODS else ""


def _closeness(name: str, methods: list[str]) -> tuple[bool, float, str]:
    """Sort key of a stored method name: containing a given name (case-insensitive) first, then difflib ratio."""
    import difflib

    lowered = name.lower()
    literals = [m.lower().replace("%", "") for m in methods]
    ratio = max(difflib.SequenceMatcher(None, m, lowered).ratio() for m in literals)
    return (not any(m and m in lowered for m in literals), -ratio, name)


def _pattern_for(method: str, names: list[str]) -> str | None:
    """A ``LIKE`` pattern, in the stored names' case, matching the names that ``method`` starts or is part of.

    ``'dft'`` or ``'DFT'`` (or the miscased pattern ``'dft%'``) with ``DFT-PBE (Tran 2016)``
    stored gives ``'DFT%'``; ``'pbe'`` gives ``'%PBE%'``; ``None`` when no name contains the
    literal part (case-insensitive) or it holds an inner ``%`` (a ``_`` matches itself too).
    """
    literal = method.strip("%")
    if not literal or "%" in literal:
        return None
    low = literal.lower()
    for name in sorted(names):
        if name.lower().startswith(low) and not method.startswith("%"):
            return name[:len(literal)] + "%"
    for name in sorted(names):
        at = name.lower().find(low)
        if at >= 0:
            return "%" + name[at:at + len(literal)] + "%"
    return None


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


def _with_chemical_system(targets: pd.DataFrame, compositions: dict[int, dict]) -> pd.DataFrame:
    """Target rows with ``chemical_system``: the sorted elements of each material, e.g. ``Ce-La-O-P``.

    From the stored composition (pymatgen's ``Composition.chemical_system``), else from the
    formula (:func:`matstore.composition.parse_formula`); a material whose name is no
    formula is its own system.
    """
    from pymatgen.core import Composition

    from matstore.composition import FormulaError, parse_formula

    def system(material_id: int, formula: str) -> str:
        composition = compositions.get(material_id)
        if not composition:
            try:
                composition = parse_formula(formula).composition
            except FormulaError:
                return formula
        return Composition(composition).chemical_system

    pairs = targets[["material_id", "material"]].drop_duplicates("material_id")
    systems = {mid: system(int(mid), formula) for mid, formula in pairs.itertuples(index=False)}
    return targets.assign(chemical_system=targets["material_id"].map(systems))


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
  AND (CAST(:prototype AS text) IS NULL OR m.prototype = CAST(:prototype AS text))
GROUP BY d.name
UNION ALL
SELECT d.name, (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC))[1]
FROM configuration_property p JOIN material_configuration mc ON mc.id = p.configuration_id
JOIN material m ON m.id = mc.material_id JOIN method me ON me.id = mc.method_id
JOIN property_definition d ON d.id = p.definition_id
WHERE m.formula = :material AND me.name = :method AND mc.key = :key AND d.name = ANY(CAST(:names AS text[]))
  AND p.flag IS NULL AND (CAST(:prototype AS text) IS NULL OR m.prototype = CAST(:prototype AS text))
GROUP BY d.name
"""


def stored_inputs(engine: Engine, *, material: str, method: str, features: list[str],
                  configuration_key: str | None = None, prototype: str | None = None) -> dict[str, float]:
    """Feature values of one row as a training set would join them (for ``predict``).

    Newest unflagged value of each material-level feature of (material, method), of each
    configuration-scope feature of the configuration ``configuration_key``, and the
    composition descriptors (:data:`matstore.composition.DESCRIPTORS`) of the material.
    Features with no value are absent.

    Composition descriptors are computed as :func:`_with_composition` computes them for
    training: from the stored composition of ``material`` when it is in the store, else from
    the formula itself (:func:`matstore.composition.parse_formula`, the same amounts a stored
    material would have), so a new composition such as ``La0.5Y0.5PO4`` needs no ``--set``.
    A descriptor an element lacks the datum for (NaN) is absent.

    Parameters
    ----------
    material
        Formula (any spelling pymatgen reduces to the stored one, e.g. ``Mo2S4``).
    method
        Method name.
    features
        Property names (any scope but surface).
    configuration_key
        Key of a configuration of (material, method), for configuration-scope features.
    prototype
        ``material.prototype`` of the one stored material to read (e.g. ``Im-3m`` of Fe stored
        as Im-3m and Fm-3m); None reads the newest values of any material of the formula.

    Returns
    -------
    dict of feature name to value (canonical units).

    Raises
    ------
    DatasetError
        ``configuration_key`` is not a configuration of (material, method), or
        configuration-scope features are asked for without a key (the message lists the
        closest stored keys); or a composition descriptor is asked for and ``material`` is
        neither stored nor a chemical formula.
    """
    formula = _stored_formula(material)
    with engine.connect() as conn:
        known = _units(conn, features)
        per_configuration = [f for f in features if known.get(f, ("", ""))[1] == "configuration"]
        if configuration_key is not None or per_configuration:
            _check_configuration(conn, formula, method, configuration_key, per_configuration, prototype)
        rows = conn.execute(text(STORED_INPUTS_SQL), {"material": formula, "method": method, "names": features,
                                                      "key": configuration_key, "prototype": prototype}).all()
        composition = conn.execute(text("SELECT composition FROM material WHERE formula = :f AND (CAST(:p AS text) "
                                        "IS NULL OR prototype = CAST(:p AS text)) ORDER BY id LIMIT 1"),
                                   {"f": formula, "p": prototype}).scalar()
    out = {r.name: float(r.value) for r in rows}
    return out | _descriptor_inputs(material, composition, features)


#: Prototypes of the stored materials of one formula: those with a bulk value under ``:method``
#: when there are any (the rows ``predict`` reads), else all of them.
STORED_PROTOTYPES_SQL = """
WITH of_formula AS (SELECT id, prototype FROM material WHERE formula = :material),
     measured AS (SELECT DISTINCT f.prototype FROM of_formula f
                  JOIN bulk_property p ON p.material_id = f.id JOIN method me ON me.id = p.method_id
                  WHERE me.name = :method)
SELECT prototype FROM measured
UNION
SELECT prototype FROM of_formula WHERE NOT EXISTS (SELECT 1 FROM measured)
ORDER BY prototype
"""


def stored_prototypes(engine: Engine, *, material: str, method: str | None) -> list[str]:
    """The ``material.prototype`` names under which ``material`` is stored (sorted; ``[]`` when it is not).

    Those of the materials with a bulk value under ``method`` when there are any (the
    material ``predict`` reads its inputs from), else every prototype of the formula (inputs
    given with ``--set`` for a stored material).  ``material`` in any spelling pymatgen
    reduces to the stored formula.
    """
    with engine.connect() as conn:
        rows = conn.execute(text(STORED_PROTOTYPES_SQL), {"material": _stored_formula(material), "method": method})
        return [r.prototype for r in rows]


def _stored_formula(material: str) -> str:
    """The reduced formula ``material`` is stored under (the text itself when it is no formula)."""
    from matstore.composition import FormulaError, parse_formula

    try:
        return parse_formula(material).formula
    except FormulaError:
        return material


def _descriptor_inputs(material: str, composition: dict | None, features: list[str]) -> dict[str, float]:
    """Finite composition descriptors among ``features``: of the stored ``composition``, else of the formula.

    Raises
    ------
    DatasetError
        A descriptor is asked for and ``material`` is neither stored nor a chemical formula.
    """
    from matstore.composition import (
        DESCRIPTORS,
        FormulaError,
        composition_descriptor,
        parse_formula,
    )

    names = [f for f in features if f in DESCRIPTORS]
    if names and not composition:
        try:
            composition = parse_formula(material).composition
        except FormulaError as exc:
            raise DatasetError(f"cannot compute {', '.join(names)} of {material!r}: {exc}") from None
    values = {name: composition_descriptor(name, composition) for name in names}
    return {name: value for name, value in values.items() if np.isfinite(value)}


def _check_configuration(conn, formula: str, method: str, key: str | None,  # noqa: ANN001
                         per_configuration: list[str], prototype: str | None = None) -> None:
    """Refuse a key that is no configuration of (formula, method), or a missing key that is needed.

    With ``prototype``, only the configurations of the material of that prototype count.

    The message lists up to five stored keys, the closest to ``key`` first (:mod:`difflib`).

    Raises
    ------
    DatasetError
        One line naming the key, material and method, and the stored keys.
    """
    import difflib

    keys = conn.execute(text(
        "SELECT DISTINCT mc.key FROM material_configuration mc JOIN material m ON m.id = mc.material_id "
        "JOIN method me ON me.id = mc.method_id WHERE m.formula = :f AND me.name = :method "
        "AND (CAST(:p AS text) IS NULL OR m.prototype = CAST(:p AS text)) ORDER BY mc.key"),
        {"f": formula, "method": method, "p": prototype}).scalars().all()
    if key is not None and key in keys:
        return
    near = [k for k in keys if key.lower() in k.lower()] + difflib.get_close_matches(key, keys, n=5, cutoff=0.3) \
        if key is not None else []
    shown = list(dict.fromkeys([*near, *keys]))[:5]
    listed = f"stored keys: {', '.join(shown)}{f', … ({len(keys)} in all)' if len(keys) > 5 else ''}" \
        if keys else "none is stored"
    where = f"for {formula}{f' ({prototype})' if prototype else ''} under method {method!r}"
    if key is None:
        raise DatasetError(f"{', '.join(per_configuration)} {'are' if len(per_configuration) > 1 else 'is'} "
                           f"per configuration: give a configuration key (--configuration); {where} {listed}")
    raise DatasetError(f"no configuration {key!r} {where}; {listed}")


def snapshot_sha256(table: pd.DataFrame, query: str, params: dict) -> str:
    """sha256 over the sorted rows (rounded to 12 significant digits), the query and its parameters.

    Database ids, ``chemical_system`` (a function of ``material``) and ``prototype`` (a label of
    the material; a ``prototypes`` filter is in ``params``) are left out, so a snapshot hash does
    not depend on them and versions stored before these columns keep their hash.
    """
    data_columns = [c for c in table.columns if c not in ("material_id", "method_id", "surface_id", "configuration_id",
                                                          "chemical_system", "prototype")]
    rows = table[data_columns].astype(object).where(table[data_columns].notna(), None).values.tolist()
    canonical = sorted(
        [[(float(f"{v:.12g}") if isinstance(v, float) else v) for v in row] for row in rows], key=repr
    )
    return sha256_json({"columns": data_columns, "rows": canonical, "query": query, "params": params})
