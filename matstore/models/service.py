"""Fit, refit and predict against the store: the functions behind ``matstore fit/refit/predict``.

Data flows one way: the training set is read from the store (:mod:`.dataset`), the equation
is fitted without the database (:mod:`.fitting`), and the version is written back
(:mod:`.versioning`) with a ``job_run`` row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select
from sqlmodel import Session

from matstore.crud import job_run
from matstore.models.dataset import (
    ORIENTATION_COLUMNS,
    TrainingSet,
    build_training_set,
    stored_inputs,
    stored_prototypes,
)
from matstore.models.spec import FitSpec
from matstore.models.versioning import VersionOutcome, load_spec, resolve, store_version
from matstore.orientation import Orientation, from_angles, from_miller, from_normal
from matstore.schema import EquationModel, EquationVersion, PropertyDefinition

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitOutcome:
    """What a fit or refit did: the version (new or unchanged), why, the training set size, any
    keys whose stored values conflict (:attr:`~matstore.models.dataset.TrainingSet.conflicts`),
    the training rows per method (:func:`_rows_per_method`, e.g. ``{"DFT-PBE": 45, "EAM": 18}``),
    the materials whose composition descriptors used a fallback
    (:attr:`~matstore.models.dataset.TrainingSet.descriptor_notes`) and the training materials
    per crystal prototype (:func:`_materials_per_prototype`, e.g. ``{"Fm-3m": 7, "Im-3m": 4}``)."""

    version: Any
    created: bool
    reason: str
    n_rows: int
    dropped: int
    conflicts: tuple[str, ...] = ()
    rows_per_method: dict[str, int] = field(default_factory=dict)
    descriptor_notes: tuple[str, ...] = ()
    materials_per_prototype: dict[str, int] = field(default_factory=dict)


def fit_model(engine: Engine, spec: FitSpec, *, kind: str = "fit") -> FitOutcome:
    """Build the training set for ``spec``, fit it, and store a new version if anything changed.

    The fit is skipped (no engine run) when the latest version already has the same data
    snapshot and spec.  Recorded as a ``job_run`` of ``kind``.

    Raises
    ------
    matstore.models.dataset.DatasetError
        If the training table cannot be built.
    matstore.models.engines.base.EngineSetupError
        If the engine is unavailable (e.g. PySR without Julia).
    """
    with job_run(engine=engine, kind=kind, parameters=spec.model_dump(mode="json")) as run:
        training = build_training_set(engine, target=spec.target, features=spec.features, methods=spec.methods,
                                      include_flagged=spec.include_flagged, group_by=spec.group_by,
                                      prototypes=spec.prototypes)
        run.summary.update(n_rows=training.n_rows, dropped=len(training.dropped), dataset_sha256=training.sha256)
        if training.conflicts:
            run.summary["conflicting_values"] = training.conflicts[:50]
            log.warning("%d keys hold conflicting values; the newest is used: %s", len(training.conflicts),
                        training.conflicts[0])
        conflicts = tuple(training.conflicts)
        if training.descriptor_notes:
            run.summary["descriptor_notes"] = training.descriptor_notes[:50]
        notes = tuple(training.descriptor_notes)
        methods, prototypes = _rows_per_method(training.table), _materials_per_prototype(training.table)
        run.summary.update(rows_per_method=methods, materials_per_prototype=prototypes)
        unchanged = _unchanged(engine, spec, training)
        if unchanged is not None:
            run.status = "skipped"
            run.summary["reason"] = unchanged.reason
            return FitOutcome(unchanged.version, False, unchanged.reason, training.n_rows, len(training.dropped),
                              conflicts, methods, notes, prototypes)
        values, predictions = _fit_values(spec, training)
        outcome = store_version(engine, spec=spec, training=training, values=values,
                                predictions=predictions, job_run_id=run.id)
        run.summary.update(version=outcome.version.version, created=outcome.created, reason=outcome.reason,
                           metrics=outcome.version.metrics)
        if not outcome.created:
            run.status = "skipped"
        return FitOutcome(outcome.version, outcome.created, outcome.reason, training.n_rows, len(training.dropped),
                          conflicts, methods, notes, prototypes)


def refit_model(engine: Engine, name: str) -> FitOutcome:
    """Re-run the stored spec of model ``name``; a new version only if data or spec changed."""
    return fit_model(engine, load_spec(engine, name), kind="refit")


def _unchanged(engine: Engine, spec: FitSpec, training: TrainingSet) -> VersionOutcome | None:
    from matstore.models.versioning import latest_version, unchanged_reason
    with Session(engine) as session:
        model = session.execute(select(EquationModel).where(EquationModel.name == spec.name)).scalar_one_or_none()
        if model is None:
            return None
        latest = latest_version(session, model.id)
        reason = unchanged_reason(latest, spec, training)
        return VersionOutcome(latest, False, reason) if reason else None


def _fit_values(spec: FitSpec, training: TrainingSet) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the fitting core and map its result onto EquationVersion columns and prediction rows."""
    from matstore.models.fitting import fit_equation

    table, coefficient_key = _coefficient_key(_with_configuration_groups(training.table, spec), spec)
    groups, grouping = _cv_grouping(table, spec, training)
    result = fit_equation(
        table, "target", spec.features, **spec.fit_options(), groups=groups,
        material=coefficient_key if spec.factorize else None,
        feature_units={n: training.units[n] for n in spec.features}, target_unit=training.units["target"])
    kept = table.loc[result.row_index]
    report = _jsonable(result.report | {"domain": _domain(table, spec.features), "seconds": result.timings,
                                        "cv_grouping": grouping, "rows_per_method": _rows_per_method(kept),
                                        "materials_per_prototype": _materials_per_prototype(kept)})
    values = {
        "engine": result.engine,  # the engine that ran: sparse for a direct scaling-law fit
        "engine_versions": result.versions,
        "hyperparameters": _jsonable(spec.fit_options() | {"engine_params": result.engine_params,
                                                           "group_by": spec.group_by}),
        "pareto_front": result.front,
        "equation_srepr": result.srepr,
        "equation_text": result.text,
        "equation_latex": result.latex,
        "equation_sha256": result.canonical_hash,
        "parts": _jsonable(result.parts or {}),
        "selection_criterion": result.selection,
        "metrics": {**_jsonable(result.metrics), "cv_scheme": result.cv.get("scheme", "")},
        "residual_std": _finite(result.residual_std),
        "dimension_check": result.dimension_check,
        "report": report,
        "interval_level": result.interval.get("level"),
        "interval_half_width": _finite(result.interval.get("half_width")),
        "interval_relative_half_width": _finite(result.interval.get("relative_half_width")),
    }
    predictions = [
        {"material_id": int(r.material_id), "method_id": int(r.method_id),
         "surface_id": None if pd.isna(r.surface_id) else int(r.surface_id),
         "configuration_id": None if pd.isna(getattr(r, "configuration_id", None)) else int(r.configuration_id),
         "observed": float(r.target), "predicted": _finite(p), "cv_predicted": _finite(c)}
        for r, p, c in zip(kept.itertuples(), result.predictions, result.oof_predictions, strict=True)
    ]
    return values, predictions


#: Column of the groups of ``--group-by configuration_key``: one configuration of one material,
#: labelled ``MoS2 [3v:17]`` (:func:`_with_configuration_groups`).
CONFIGURATION_GROUP = "configuration"


def _cv_groups(table: pd.DataFrame, spec: FitSpec, training: TrainingSet) -> str | None:
    """Column whose values the CV folds hold out together, or ``None`` for shuffled KFold.

    The column of :func:`_cv_grouping` (which also says why).

    Raises
    ------
    ValueError
        ``spec.group_by`` is not a column of ``table`` (one line listing the accepted ones).
    """
    return _cv_grouping(table, spec, training)[0]


def _cv_grouping(table: pd.DataFrame, spec: FitSpec, training: TrainingSet) -> tuple[str | None, str]:
    """Column whose values the CV folds hold out together (``None``: shuffled KFold), and why, in words.

    ``spec.group_by`` names a column of the training table (``material``, ``method``,
    ``chemical_system``, a key, feature or orientation column, or a stored property fetched
    for grouping only; :func:`matstore.models.dataset.build_training_set`).  Any value but
    the default ``material`` is used as asked, except that ``configuration_key`` holds out
    one configuration of one material (column :data:`CONFIGURATION_GROUP`, added by
    :func:`_with_configuration_groups`): a key such as ``3v:17`` names an arrangement that
    every host material may have, and grouping by the bare key would hold out the 3v:17 of
    all hosts together.  With ``material``:

    - surface and configuration targets and factorised fits are grouped by material (many
      rows per material; the honest score is that of an unseen material);
    - a bulk target whose table has several compositions of one chemical system (a solid
      solution series such as La1-xCexPO4) is grouped by ``chemical_system``: shuffled folds
      would train on x = 0.25 and 0.75 and test on 0.5 of the same series, an optimistic
      score for a scientist predicting an unseen system (docs/models.md, "Groups");
    - a bulk target where some material (composition and prototype, ``material_id``) has
      more than one row — several methods or potentials, DFT beside EAM and experiment — is
      grouped by material: shuffled folds would test a metal's EAM row with its DFT and
      MEAM rows in training (a user's 34 rows of 10 metals scored nested R² 0.87 shuffled,
      0.29 holding metals out);
    - only a bulk target whose every material has exactly one row keeps shuffled KFold
      (each fold then holds out whole materials anyway).

    A table of one group falls back to shuffled folds, and says so.

    Returns
    -------
    column : str or None
    why : str
        Stored as ``report['cv_grouping']`` and printed after the ``cv_scheme``, e.g. ``"the
        default for a bulk target whose materials have several rows (10 of 10 materials, e.g.
        one per method): each fold holds out every row of its materials"``.

    Raises
    ------
    ValueError
        ``spec.group_by`` is not a column of ``table`` (one line listing the accepted ones).
    """
    from matstore.models.dataset import GROUP_BY_CHOICES

    column = next((c for c in ("cv_group", spec.group_by) if c in table.columns), None)
    if column is None:
        raise ValueError(f"--group-by {spec.group_by!r} is not a column of the training table; give {GROUP_BY_CHOICES}")
    if column == "configuration_key" and CONFIGURATION_GROUP in table.columns:
        column, why = CONFIGURATION_GROUP, "one configuration of one material per group (--group-by configuration_key)"
    elif column != "material":
        why = f"as asked (--group-by {spec.group_by})"
    elif training.target_scope in ("surface", "configuration") or spec.factorize:
        what = "a factorised fit" if spec.factorize else f"a {training.target_scope} target"
        why = f"the default for {what}: many rows per material, each fold holds out every row of its materials"
    elif _several_per_system(table):
        column, why = "chemical_system", "the default for a bulk target whose chemical systems hold several compositions"
    else:
        repeated, n_materials = _materials_with_several_rows(table)
        if repeated:
            why = (f"the default for a bulk target whose materials have several rows ({repeated} of {n_materials} "
                   "materials, e.g. one per method): each fold holds out every row of its materials")
        else:
            column, why = None, "every material has one row, so each fold holds out whole materials"
    if column is not None and table[column].nunique() < 2:
        only = str(table[column].iloc[0]) if len(table) else ""
        return None, (f"one {column} only ({only}): nothing to hold out as a group, so shuffled folds "
                      "(its rows are in training and test folds)")
    return column, why


def _materials_with_several_rows(table: pd.DataFrame) -> tuple[int, int]:
    """(materials with more than one row, materials) of ``table``; a material is a ``material_id``
    (composition and prototype), or a ``material`` label where the table has no ids."""
    key = "material_id" if "material_id" in table.columns else "material"
    counts = table[key].value_counts()
    return int((counts > 1).sum()), int(len(counts))


def _rows_per_method(table: pd.DataFrame) -> dict[str, int]:
    """Training rows per method, by method name (``report['rows_per_method']``), e.g. ``{"DFT-PBE": 45, "EAM": 18}``."""
    if "method" not in table.columns:
        return {}
    return {str(k): int(v) for k, v in sorted(table["method"].value_counts().items())}


def _materials_per_prototype(table: pd.DataFrame) -> dict[str, int]:
    """Training materials per crystal prototype (``report['materials_per_prototype']``), e.g. ``{"Fm-3m": 7, "Im-3m": 4}``.

    A material is a ``material_id`` (formula and prototype); ``prototype`` is
    ``material.prototype`` as stored, ``unknown`` counted as a prototype of its own.  Empty for
    a table without a ``prototype`` column.
    """
    if "prototype" not in table.columns or "material_id" not in table.columns:
        return {}
    counts = table.drop_duplicates("material_id")["prototype"].astype(str).value_counts()
    return {str(k): int(v) for k, v in sorted(counts.items())}


def _with_configuration_groups(table: pd.DataFrame, spec: FitSpec) -> pd.DataFrame:
    """``table`` with column :data:`CONFIGURATION_GROUP` = ``material [key]`` when grouped by ``configuration_key``.

    One group per configuration of one material, e.g. ``MoS2 [3v:17]``: the rows of that
    configuration under every method are held out together (the same arrangement computed
    twice is one configuration), while the 3v:17 of another host is another group.  Any
    other grouping, or a table without configuration keys, is returned unchanged.
    """
    if spec.group_by != "configuration_key" or "configuration_key" not in table.columns:
        return table
    return table.assign(**{CONFIGURATION_GROUP: table["material"] + " [" + table["configuration_key"].astype(str) + "]"})


def _several_per_system(table: pd.DataFrame) -> bool:
    """Whether some chemical system holds more than one composition (material) of the table."""
    if "chemical_system" not in table.columns or table["chemical_system"].nunique() < 2:
        return False
    return bool(table.groupby("chemical_system")["material"].nunique().max() > 1)


#: Key of the training orientations in a version's ``report['domain']`` (beside one entry per feature).
ORIENTATIONS = "orientations"
#: Key of the training materials' crystal prototypes in a version's ``report['domain']``.
PROTOTYPES = "prototypes"
#: Most training orientation keys a version's domain lists (``report['domain']['orientations']['keys']``).
DOMAIN_ORIENTATION_KEYS = 500


def _domain(table: pd.DataFrame, features: list[str]) -> dict[str, Any]:
    """Training range of each feature (``min``, ``max``, canonical units) and the training orientations.

    Stored as ``report['domain']``; ``predict`` refuses a sign the training data never had
    (:func:`check_inputs`) and flags a value outside a range or an orientation not trained on
    (:func:`extrapolation`).  A table with orientation columns (a surface target) adds
    ``domain["orientations"]`` (:func:`_orientation_domain`), and one with a ``prototype``
    column ``domain["prototypes"]``, the sorted distinct ``material.prototype`` of its rows
    (``predict`` flags a stored material of another, :func:`prototype_extrapolation`); neither
    where a feature has that name.
    """
    domain: dict[str, Any] = {f: {"min": float(table[f].min()), "max": float(table[f].max())} for f in features
                              if f in table.columns and table[f].notna().any()}
    orientations = _orientation_domain(table)
    if orientations is not None and ORIENTATIONS not in domain:
        domain[ORIENTATIONS] = orientations
    if "prototype" in table.columns and PROTOTYPES not in domain and table["prototype"].notna().any():
        domain[PROTOTYPES] = sorted(map(str, table["prototype"].dropna().unique()))
    return domain


def _orientation_domain(table: pd.DataFrame) -> dict[str, Any] | None:
    """The distinct orientations of the training rows, or None for a table without any.

    Returns
    -------
    dict or None
        ``count`` (distinct orientations, reduced to the standard triangle), ``keys`` (their
        :attr:`~matstore.orientation.Orientation.key`, θ then φ ascending; the first
        :data:`DOMAIN_ORIENTATION_KEYS` when there are more) and ``descriptors``: the
        ``min``/``max`` of ``normal_x, normal_y, normal_z`` and ``theta_deg, phi_deg``
        (degrees) over them; with two or more materials, :data:`UNSEEN_WHEN_HELD_OUT` (the
        share of rows at an orientation of their material alone).  None when no row has an
        orientation, or a row's cannot be read (the fit itself reports that).
    """
    from matstore.models.factorize import DESCRIPTOR_COLUMNS, orientation_descriptors
    from matstore.orientation import OrientationError

    columns = [c for c in ORIENTATION_COLUMNS if c in table.columns]
    given = table[columns].dropna(how="all") if columns else pd.DataFrame()
    if given.empty:
        return None
    try:
        desc = orientation_descriptors(given)  # one row per row of given, computed once per distinct entry
    except OrientationError:
        return None
    distinct = desc.drop_duplicates("orientation_key").sort_values(["theta_deg", "phi_deg"])
    domain = {"count": len(distinct), "keys": distinct["orientation_key"].head(DOMAIN_ORIENTATION_KEYS).tolist(),
              "descriptors": {c: {"min": float(distinct[c].min()), "max": float(distinct[c].max())}
                              for c in DESCRIPTOR_COLUMNS}}
    unseen = _unseen_when_held_out(desc["orientation_key"], table)
    return domain if unseen is None else domain | {UNSEEN_WHEN_HELD_OUT: unseen}


#: Key of ``domain['orientations']``: the share of training rows whose orientation no other
#: material has (:func:`_unseen_when_held_out`).
UNSEEN_WHEN_HELD_OUT = "unseen_when_held_out"

#: From this share of :data:`UNSEEN_WHEN_HELD_OUT` on, the folds measured the interval at
#: orientations their training rows lacked, so ``predict`` flags only orientations outside the
#: training descriptors' ranges, not every new key.
UNSEEN_SHARE_CALIBRATED = 0.5


def _unseen_when_held_out(keys: pd.Series, table: pd.DataFrame) -> float | None:
    """Share of the training rows at an orientation that no other material has (0 to 1).

    ``keys``: the orientation key of each row with an orientation, indexed like ``table``.
    The folds hold out materials: a held-out row at such an orientation was predicted at an
    orientation its fold never trained on, so the interval's coverage was measured there too
    (normals drawn per material, rather than one set of facets shared by all).  None without a
    ``material`` column or with fewer than two materials.
    """
    if "material" not in table.columns or table["material"].nunique() < 2:
        return None
    owners = pd.DataFrame({"key": keys, "material": table.loc[keys.index, "material"]})
    materials_per_key = owners.groupby("key")["material"].nunique()
    return round(float((owners["key"].map(materials_per_key) == 1).mean()), 4)


def _coefficient_key(table: pd.DataFrame, spec: FitSpec) -> tuple[pd.DataFrame, str]:
    """The column whose values each get one coefficient C in a factorised fit.

    One C per material when each material has one method (e.g. EMT, or one LAMMPS potential
    file per element); one C per (material, method) pair when a material was computed with
    several potentials (e.g. OpenKIM's 144 potentials), since each potential is its own
    "material" with its own bulk properties.  Cross-validation folds stay grouped by material.
    """
    if not spec.factorize or table.groupby("material")["method"].nunique().max() <= 1:
        return table, "material"
    return table.assign(material_method=table["material"] + " | " + table["method"]), "material_method"


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def _jsonable(value: Any) -> Any:
    """Plain JSON types (floats with NaN/inf as None) for JSONB columns."""
    import json

    from matstore.hashing import canonical_json

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not np.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return clean(json.loads(canonical_json(clean(value))))


@dataclass(frozen=True)
class Prediction:
    """A prediction with its unit, residual σ and stored prediction interval.

    Attributes
    ----------
    value : float
        Target unit.
    uncertainty : float or None
        Residual standard deviation of the nested cross-validation (one σ), target unit.
    unit, model : str
    version : int
    inputs : dict of str to float
        Feature values used (canonical units).
    lower, upper : float or None
        The cross-conformal interval of the version, target unit: ``value ∓ interval_half_width``
        (absolute score) or ``value·(1 ∓ interval_relative_half_width)`` (relative score, see
        :func:`interval_columns`).
    level : float or None
        Its confidence level (e.g. 0.9).
    relative_width : float or None
        The relative half-width ``q`` (a fraction) when the interval is relative, else None.
    orientation : matstore.orientation.Orientation or None
        The surface orientation predicted at, reduced to the standard triangle; None for a
        prediction that does not depend on one.
    method : str or None
        The method whose stored values were read; None when every input was given or
        computed from the formula (no ``method``, or one that is not stored).
    extrapolated : tuple of str
        The inputs outside the version's training domain (:func:`extrapolation`): feature
        names beyond their training range, ``"orientation"`` for an orientation the fit
        never saw, and ``"prototype"`` for a stored material of a prototype the fit did not
        train on (:func:`prototype_extrapolation`).  The interval is not calibrated there (it
        was measured on held-out training rows); empty inside the domain.
    warnings : tuple of str
        One line per extrapolated input (by how much), one for a ``method`` that is not stored
        and was not used, and one for a formula stored under several prototypes when none was
        chosen (:func:`several_prototypes`).
    """

    value: float
    uncertainty: float | None
    unit: str
    model: str
    version: int
    inputs: dict[str, float]
    lower: float | None = None
    upper: float | None = None
    level: float | None = None
    relative_width: float | None = None
    orientation: Orientation | None = None
    method: str | None = None
    extrapolated: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


#: Features that are positive for every mechanically stable crystal (a > 0; Born stability of
#: a cubic crystal: C11 − C12 > 0, C11 + 2 C12 > 0, C44 > 0 — M. Born & K. Huang, *Dynamical
#: Theory of Crystal Lattices* (1954); F. Mouhat & F.-X. Coudert, Phys. Rev. B 90, 224104 (2014)).
POSITIVE_FEATURES = frozenset({"lattice_constant", "c11", "c44", "bulk_modulus", "shear_modulus_prime",
                               "shear_modulus_c44", "cohesive_energy"})


def positive_lower(target: str | None, lower: np.ndarray | float) -> np.ndarray:
    """Lower interval ends (shape (n,) or scalar, target unit) at least 0 for a ``target`` in :data:`POSITIVE_FEATURES`.

    A stable crystal's value is positive, so the clipped interval covers every value the
    unclipped one covers; NaN ends (no interval) and other targets are returned as they are.
    """
    lower = np.asarray(lower, dtype=float)
    return np.where(np.isfinite(lower), np.maximum(lower, 0.0), lower) if target in POSITIVE_FEATURES else lower


class PredictionInputError(ValueError):
    """An input of ``predict`` is not finite or outside the range the equation can take."""


def check_inputs(version: EquationVersion, frame: pd.DataFrame) -> None:
    """Refuse non-finite inputs, and values of a sign the training data never had.

    Only the features the equation uses (:func:`equation_inputs`) are checked: an input it
    ignores cannot make its value unphysical.  A feature in :data:`POSITIVE_FEATURES`, or
    whose training values were all positive (``version.report['domain']``), must be > 0; one
    whose training values were all negative, < 0.

    Raises
    ------
    PredictionInputError
        Naming the row, the feature, the value and the allowed range (one line).
    """
    domain = (version.report or {}).get("domain", {})
    for name in equation_inputs(version):
        if name not in frame.columns:
            continue
        values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)
        lo = domain.get(name, {}).get("min")
        hi = domain.get(name, {}).get("max")
        positive = name in POSITIVE_FEATURES or (lo is not None and lo > 0)
        negative = hi is not None and hi < 0
        for label, v in zip(frame.index, values, strict=True):
            where = f"row {label!r}: " if len(frame) > 1 else ""
            if not np.isfinite(v):
                raise PredictionInputError(f"{where}{name} = {v} is not a finite number")
            if (positive and v <= 0) or (negative and v >= 0):
                rng = f"training range {lo:g} … {hi:g}" if lo is not None else "a physical value"
                raise PredictionInputError(f"{where}{name} = {v:g} is out of range: must be "
                                           f"{'> 0' if positive else '< 0'} ({rng})")


def predict(
    engine: Engine,
    ref: str,
    *,
    material: str,
    method: str | None = None,
    miller: tuple[int, int, int] | None = None,
    normal: tuple[float, float, float] | None = None,
    angles: tuple[float, float] | None = None,
    configuration: str | None = None,
    overrides: dict[str, float] | None = None,
    prototype: str | None = None,
) -> Prediction:
    """Evaluate a stored equation (from its SymPy form) for a material/method (and surface).

    Only the features the equation uses (:func:`equation_inputs`) are needed: each is taken
    from ``overrides`` when given there, else read from the store as a training set joins it
    (:func:`matstore.models.dataset.stored_inputs`): the newest unflagged bulk value of
    ``material`` computed with ``method``, the configuration ``configuration``'s value for
    per-configuration features, and composition descriptors from the material's stored
    composition or, for a material not in the store, from its formula.  ``method`` is needed
    only when some input is read from the store (:func:`_stored_method`).  An orientation-dependent
    equation needs exactly one of ``miller``, ``normal`` (any length and octant) or ``angles``
    (θ, φ in degrees in the standard triangle, :func:`matstore.orientation.from_angles`).

    A formula may be stored under several crystal prototypes (``material.prototype``, e.g. Fe
    as Im-3m and Fm-3m): ``prototype`` names the one whose stored values are read (an exact
    stored name, as ``fit --prototype`` takes).  Without it, reading stored inputs is refused
    (they could mix structures, :func:`_refuse_mixed_prototypes`); inputs all given with
    ``overrides`` are predicted with a warning that the prototype check is ambiguous
    (:func:`several_prototypes`).

    An input outside the version's training range, an orientation the fit never saw, or a
    stored material of a crystal prototype the fit did not train on, is predicted all the same
    and flagged (``Prediction.extrapolated``, one line each in ``Prediction.warnings``,
    :func:`extrapolation`, :func:`prototype_extrapolation`): the interval is not calibrated there.

    Raises
    ------
    matstore.models.versioning.ModelNotFoundError
        If ``ref`` names no version.
    PredictionInputError
        A used feature's value is not finite or out of range, or the equation is undefined there.
    matstore.orientation.OrientationError
        The normal is zero or the angles lie outside the standard triangle.
    matstore.models.dataset.DatasetError
        ``configuration`` is no configuration of (material, method), or one is needed and missing.
    ValueError
        ``prototype`` is not one ``material`` is stored under (one line listing the stored ones,
        :func:`_chosen_prototypes`), or is needed to read inputs of a formula stored under several
        (:func:`_refuse_mixed_prototypes`); an override names no input of the equation, a used feature has no value, the
        orientation is missing, given twice, or given to a model that does not depend on it;
        or an input must be read from the store and ``method`` is missing or not stored (the
        message lists the stored methods, the closest first).
    """
    with Session(engine) as session:
        version = resolve(session, ref)
        model = session.get(EquationModel, version.model_id)
        target_scope = session.execute(select(PropertyDefinition.scope)
                                       .where(PropertyDefinition.name == model.target)).scalar()
    label = f"{model.name}:{version.version}"
    needed = equation_inputs(version)
    overrides = dict(overrides or {})
    _check_overrides(label, needed, overrides)
    orientation = _orientation(label, version, target_scope, miller=miller, normal=normal, angles=angles)
    from_store = [f for f in needed if f not in overrides]
    used, notes = _stored_method(engine, label, material, method, from_store, configuration)
    prototypes = _chosen_prototypes(engine, material, used, prototype)
    _refuse_mixed_prototypes(material, prototypes, used)
    inputs = stored_inputs(engine, material=material, method=used or "", configuration_key=configuration,
                           features=from_store, prototype=prototype) | overrides
    missing = [f for f in needed if f not in inputs]
    if missing:
        where = (f" ({prototype})" if prototype else "") + (f" with method {used!r}" if used is not None else "")
        raise ValueError(f"no stored {', '.join(missing)} for {material}{where} "
                         f"(needed by {label}); give them with --set NAME=VALUE")
    row = dict(inputs)
    if orientation is not None:
        row.update(zip(ORIENTATION_COLUMNS, [*(orientation.miller or (np.nan,) * 3), *orientation.normal,
                                              orientation.theta_deg, orientation.phi_deg], strict=True))
    rows, domain_notes = _predict_rows(version, pd.DataFrame([row]), model.target)
    out = rows.iloc[0]
    flags = tuple(out["extrapolated"].split(", ")) if out["extrapolated"] else ()
    several = several_prototypes(material, prototypes)  # none when --prototype chose one, or when inputs are read
    unseen = prototype_extrapolation(version, prototypes)
    flags += ("prototype",) if unseen else ()
    return Prediction(float(out["value"]), version.residual_std, version.target_unit, model.name, version.version,
                      inputs, _finite(out["lower"]), _finite(out["upper"]), version.interval_level,
                      _finite(version.interval_relative_half_width), orientation, used, flags,
                      tuple(notes + domain_notes[0] + several + unseen))


def _chosen_prototypes(engine: Engine, material: str, method: str | None, prototype: str | None) -> list[str]:
    """The prototypes of the stored material(s) ``predict`` reads and checks: ``[prototype]`` when given, else
    :func:`~matstore.models.dataset.stored_prototypes` (those with values under ``method``, else all).

    Names are matched exactly, as ``fit --prototype`` matches them; an unmatched one gets its
    hint (:func:`~matstore.models.dataset.prototype_hint`: another case, fcc for Fm-3m…).

    Raises
    ------
    ValueError
        ``prototype`` is none of the prototypes ``material`` is stored under, e.g. ``--prototype fcc:
        Fe is not stored as fcc (stored as Fm-3m, Im-3m); --prototype takes exact names (case-sensitive)
        (did you mean 'Fm-3m'?)``, or ``material`` is not stored at all.
    """
    from matstore.models.dataset import prototype_hint

    if prototype is None:
        return stored_prototypes(engine, material=material, method=method)
    stored = stored_prototypes(engine, material=material, method=None)  # every prototype of the formula
    if prototype in stored:
        return [prototype]
    if not stored:
        raise ValueError(f"--prototype {prototype}: {material} is not stored (under any prototype); leave "
                         "--prototype out to predict a material that is not stored from --set and its formula")
    raise ValueError(f"--prototype {prototype}: {material} is not stored as {prototype} (stored as "
                     f"{', '.join(stored)}); --prototype takes exact names (case-sensitive)"
                     f"{prototype_hint([prototype], stored)}")


def _refuse_mixed_prototypes(material: str, prototypes: list[str], method: str | None) -> None:
    """Refuse to read inputs of a formula stored under several prototypes when none was chosen.

    The newest value of each input could come from a different structure (Fe's lattice
    constant from Fm-3m, its cohesive energy from Im-3m), which describes no material.

    Raises
    ------
    ValueError
        ``method`` is not None (inputs are read) and ``prototypes`` holds two or more, e.g.
        ``"Fe is stored as Fm-3m and Im-3m with values under emt: give --prototype NAME (Fm-3m
        or Im-3m) to choose whose stored inputs are read (they would otherwise mix structures)"``.
    """
    if method is None or len(prototypes) < 2:
        return
    stored, either = _prototype_lists(prototypes)
    raise ValueError(f"{material} is stored as {stored} with values under {method}: give --prototype NAME "
                     f"({either}) to choose whose stored inputs are read (they would otherwise mix structures)")


def several_prototypes(material: str, prototypes: list[str]) -> list[str]:
    """A warning line when ``material`` is stored under several prototypes, none was chosen and nothing is read.

    ``prototypes``: those of :func:`_chosen_prototypes`.  Every input was given or computed
    from the formula (reading stored inputs is refused instead, :func:`_refuse_mixed_prototypes`),
    so only the prototype check of :func:`prototype_extrapolation` is ambiguous.  E.g. ``"Fe is
    stored as Fm-3m and Im-3m, its prototype checked as any of them: give --prototype NAME (Fm-3m
    or Im-3m) to check one"``.

    Returns
    -------
    list of str
        One line, or none (one prototype or fewer).
    """
    if len(prototypes) < 2:
        return []
    stored, either = _prototype_lists(prototypes)
    return [f"{material} is stored as {stored}, its prototype checked as any of them: give --prototype NAME "
            f"({either}) to check one"]


def _prototype_lists(prototypes: list[str]) -> tuple[str, str]:
    """``("Fm-3m, Im-3m and P6_3/mmc", "Fm-3m, Im-3m or P6_3/mmc")`` for two or more prototypes."""
    head, last = ", ".join(prototypes[:-1]), prototypes[-1]
    return f"{head} and {last}", f"{head} or {last}"


#: Stored method names an error lists before ``…``.
LISTED_METHODS = 8


def _stored_method(engine: Engine, label: str, material: str, method: str | None, from_store: list[str],
                   configuration: str | None) -> tuple[str | None, list[str]]:
    """The method whose stored values ``predict`` reads (None: it reads none), and warning lines.

    ``from_store`` are the used inputs not given with ``--set``: composition descriptors
    (:data:`matstore.composition.DESCRIPTORS`) come from the formula, the others are read
    from the store under ``method``, as is a ``configuration``.  When nothing is read, a
    ``method`` may be left out; one given that is not stored is not used, and said so.

    Raises
    ------
    ValueError
        Something must be read and ``method`` is None or names no stored method; the one
        line lists the stored methods (:func:`_methods_text`, the closest first).
    """
    from sqlalchemy import text

    from matstore.composition import DESCRIPTORS

    stored = [f for f in from_store if f not in DESCRIPTORS]
    reads = ", ".join(stored) if stored else f"configuration {configuration!r}" if configuration is not None else ""
    if method is None:
        if reads:
            raise ValueError(f"give --method: {label} reads {reads} of {material} from the store "
                             f"({_methods_text(engine, None)}), or give {'each' if len(stored) > 1 else 'it'} "
                             "with --set NAME=VALUE")
        return None, []
    with engine.connect() as conn:
        known = conn.execute(text("SELECT 1 FROM method WHERE name = :name LIMIT 1"), {"name": method}).first()
    if known is not None:
        return method, []
    if reads:
        raise ValueError(f"method {method!r} is not stored ({_methods_text(engine, method)}); "
                         f"{label} reads {reads} of {material} under it")
    return None, [f"method {method!r} is not stored and was not used: every input of {label} was given with --set "
                  "or computed from the formula"]


def _methods_text(engine: Engine, near: str | None) -> str:
    """``stored methods, closest first: emt, lammps:Cu_u3.eam, …`` (at most :data:`LISTED_METHODS`, then the count).

    Closest to ``near``: names containing it (case-insensitive), then :func:`difflib.get_close_matches`;
    then the rest by name.
    """
    import difflib

    from sqlalchemy import text

    with engine.connect() as conn:
        names = conn.execute(text("SELECT DISTINCT name FROM method ORDER BY name")).scalars().all()
    if not names:
        return "no method is stored"
    close = [] if near is None else ([n for n in names if near.lower() in n.lower()]
                                     + difflib.get_close_matches(near, names, n=LISTED_METHODS, cutoff=0.3))
    shown = list(dict.fromkeys([*close, *names]))[:LISTED_METHODS]
    more = f", … ({len(names)} in all)" if len(names) > len(shown) else ""
    return f"stored methods{', closest first' if close else ''}: {', '.join(shown)}{more}"


def equation_inputs(version: EquationVersion) -> list[str]:
    """The features of ``version`` that its equation uses, in the fit spec's order.

    A fit spec may list features the selected equation does not use (e.g. c11, c12, c44 beside
    4.49·E_c·(1.16 n_x + 0.57 n_y)/a²); ``predict`` needs and range-checks only these.
    """
    from matstore.models.expressions import parse_srepr

    used = {str(s) for s in parse_srepr(version.equation_srepr).free_symbols}
    return [f["name"] for f in version.features if f["name"] in used]


def _uses_orientation(version: EquationVersion) -> bool:
    """Whether the equation has an orientation descriptor (normal_x … phi_deg) among its symbols."""
    from matstore.models.expressions import parse_srepr

    return bool({str(s) for s in parse_srepr(version.equation_srepr).free_symbols} & set(ORIENTATION_COLUMNS))


def _check_overrides(label: str, needed: list[str], overrides: dict[str, float]) -> None:
    """Refuse an override that is not an input of the equation (one line, with the accepted names)."""
    unknown = next((name for name in overrides if name not in needed), None)
    if unknown is None:
        return
    hint = "; give the orientation with --hkl, --normal or --angles" if unknown in ORIENTATION_COLUMNS else ""
    raise ValueError(f"--set {unknown}: not an input of {label}'s equation (accepted: {', '.join(needed) or 'none'}){hint}")


def _orientation(label: str, version: EquationVersion, target_scope: str | None, *,
                 miller: tuple[int, int, int] | None, normal: tuple[float, float, float] | None,
                 angles: tuple[float, float] | None) -> Orientation | None:
    """The one orientation given, reduced to the standard triangle, or None for a bulk prediction.

    Raises
    ------
    ValueError
        More than one of ``miller``, ``normal``, ``angles``; none for an equation that depends on
        the orientation; one for a model of a target that is not a surface property and whose
        equation does not depend on it.
    matstore.orientation.OrientationError
        A zero or non-finite normal, angles outside the standard triangle.
    """
    given = {flag: value for flag, value in (("--hkl", miller), ("--normal", normal), ("--angles", angles))
             if value is not None}
    if len(given) > 1:
        raise ValueError(f"give one orientation, not {' and '.join(given)}")
    uses = _uses_orientation(version)
    if not given:
        if uses:
            raise ValueError(f"model {label} predicts a surface property: give --hkl, --normal or --angles")
        return None
    if not uses and target_scope != "surface":
        raise ValueError(f"model {label} predicts a {target_scope or 'non-surface'} property that does not depend "
                         f"on orientation: {next(iter(given))} does not apply")
    if miller is not None:
        return from_miller(*miller)
    return from_normal(list(normal)) if normal is not None else from_angles(*angles)


def _predict_rows(version: EquationVersion, frame: pd.DataFrame,
                  target: str | None = None) -> tuple[pd.DataFrame, list[list[str]]]:
    """Checked values with their interval and domain flags, and each row's warning lines.

    The interval of a ``target`` in :data:`POSITIVE_FEATURES` (C44, a lattice constant …)
    starts at 0 at the lowest: a stable crystal's value is positive, so the clipped interval
    covers whatever the unclipped one covered (a trial printed C44 "80.14 ± 111 GPa (… −30.59
    to 190.9)").

    Returns
    -------
    DataFrame, shape (n, 4), indexed like ``frame``
        ``value, lower, upper`` and ``extrapolated`` (:func:`extrapolation`'s names, joined
        by ``", "``; ``""`` inside the training domain).
    list of list of str, length n
        The warning lines of each row.
    """
    from matstore.models.fitting import predict as evaluate

    check_inputs(version, frame)
    values = np.asarray(evaluate(version.equation_srepr, frame), dtype=float).reshape(-1)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        where = f"row {frame.index[bad[0]]!r}: " if len(frame) > 1 else ""
        raise PredictionInputError(f"{where}the equation is not a finite real number at these inputs")
    lower, upper = interval_columns(version, values)
    lower = positive_lower(target, lower)
    flags, notes = extrapolation(version, frame)
    return pd.DataFrame({"value": values, "lower": lower, "upper": upper,
                         "extrapolated": [", ".join(f) for f in flags]}, index=frame.index), notes


#: Relative slack of the training-range test: a stored value read back, or a composition
#: descriptor computed again, may differ from the training one in its last bits.
RANGE_RTOL = 1e-9
#: Slack of the orientation descriptors' range test (unit normal components; degrees).
ORIENTATION_ATOL = 1e-6


def extrapolation(version: EquationVersion, frame: pd.DataFrame) -> tuple[list[list[str]], list[list[str]]]:
    """The inputs of each row of ``frame`` outside the version's training domain, and why (one line each).

    The domain is ``version.report['domain']`` (:func:`_domain`); the interval was calibrated
    on held-out training rows, so it says nothing outside it.  Flagged:

    - a used feature (:func:`equation_inputs`) below its training minimum or above its
      maximum (slack :data:`RANGE_RTOL`); the line says by how much, in the feature's unit
      and in widths of the training range;
    - ``"orientation"``, for a row with an orientation (Miller, normal or angle columns) not
      among the training orientations (all of them stored), or, where the version lists
      only some (more than :data:`DOMAIN_ORIENTATION_KEYS`), outside the descriptors'
      ranges.  Also where the equation ignores the orientation (a constant g, fitted on
      (111) alone, would print the (111) value relabelled (110)).

    Versions stored without a domain, or without orientations in it, flag nothing of it.

    Returns
    -------
    (flags, lines) : two lists of length n
        Per row, the flagged names and the warning lines.
    """
    domain = (version.report or {}).get("domain") or {}
    units = {f["name"]: f.get("unit") or "" for f in version.features or []}
    flags: list[list[str]] = [[] for _ in range(len(frame))]
    lines: list[list[str]] = [[] for _ in range(len(frame))]
    for name in equation_inputs(version):
        lo, hi = (domain.get(name) or {}).get("min"), (domain.get(name) or {}).get("max")
        if name not in frame.columns or lo is None or hi is None:
            continue
        slack = RANGE_RTOL * max(abs(lo), abs(hi))
        for i, v in enumerate(pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)):
            if not lo - slack <= v <= hi + slack:
                flags[i].append(name)
                lines[i].append(_range_line(name, float(v), lo, hi, units.get(name, "")))
    orientations = domain.get(ORIENTATIONS)
    if orientations and orientations.get("count"):
        if (version.hyperparameters or {}).get("factorize"):
            what = "g(orientation) is extrapolated"
        elif _uses_orientation(version):
            what = "the equation's orientation dependence is extrapolated"
        else:
            what = "the equation does not depend on orientation"
        for i, line in _unseen_orientations(frame, orientations, what):
            flags[i].append("orientation")
            lines[i].append(line)
    return flags, lines


def prototype_extrapolation(version: EquationVersion, prototypes: list[str]) -> list[str]:
    """A warning line when a stored material has a crystal prototype the version did not train on.

    ``prototypes`` are the ``material.prototype`` names of the stored material predicted (the
    one chosen with ``--prototype``, else those its formula is stored under,
    :func:`_chosen_prototypes`); the trained ones are
    ``report['domain']['prototypes']`` (:func:`_domain`).  E.g. ``"prototype Im-3m: the model was
    trained on Fm-3m only; the prediction is extrapolated and its interval is not calibrated
    there"`` (a formula stored under several, none chosen: :func:`several_prototypes` says so
    in a line of its own).  A lattice constant or a Miller index
    means another length or surface in another cell, so the fit says nothing there.

    Nothing is flagged for a material that is not stored (its prototype is not known), a
    version stored without training prototypes (fitted before they were recorded), a stored
    prototype ``unknown`` (nothing to compare), or training prototypes that are all ``unknown``.

    Returns
    -------
    list of str
        One line, or none.
    """
    trained = ((version.report or {}).get("domain") or {}).get(PROTOTYPES)
    if not trained or not prototypes or set(trained) == {"unknown"}:
        return []
    unseen = [p for p in prototypes if p not in trained and p != "unknown"]
    if not unseen:
        return []
    return [f"prototype {', '.join(unseen)}: the model was trained on {', '.join(trained)} only; the "
            "prediction is extrapolated and its interval is not calibrated there"]


def _range_line(name: str, value: float, lo: float, hi: float, unit: str) -> str:
    """``lattice_constant = 55.8 angstrom is outside the training range 3.52 … 4.09 angstrom (51.7 angstrom
    above the maximum, 90.7× the range's width): …``."""
    u = f" {unit}" if unit and unit != "dimensionless" else ""
    by, side = (lo - value, "below the minimum") if value < lo else (value - hi, "above the maximum")
    widths = f", {by / (hi - lo):.3g}× the range's width" if hi > lo else ""
    return (f"{name} = {value:g}{u} is outside the training range {lo:g} … {hi:g}{u} ({by:.3g}{u} {side}{widths}): "
            "the prediction is extrapolated and its interval is not calibrated there")


def _unseen_orientations(frame: pd.DataFrame, orientations: dict[str, Any], what: str) -> list[tuple[int, str]]:
    """(row position, warning line) of each row of ``frame`` at an orientation outside the training ones.

    ``orientations`` is ``report['domain']['orientations']`` (:func:`_orientation_domain`).
    With every training key stored, an orientation is unseen when its key is not among them
    (an orientation of one training set is seen at every material); else, or when most
    training rows lay at orientations of their material alone (:data:`UNSEEN_WHEN_HELD_OUT`
    ≥ :data:`UNSEEN_SHARE_CALIBRATED`: the folds measured the interval at unseen orientations),
    when a descriptor lies outside the training range (by :data:`ORIENTATION_ATOL`).
    """
    from matstore.models.factorize import key_label, orientation_descriptors, orientation_list

    given = np.zeros(len(frame), dtype=bool)
    for columns in (("miller_h", "miller_k", "miller_l"), ("normal_x", "normal_y", "normal_z"), ("theta_deg", "phi_deg")):
        if set(columns) <= set(frame.columns):
            given |= frame[list(columns)].notna().all(axis=1).to_numpy()
    if not given.any():
        return []
    keys, count = list(orientations.get("keys") or []), int(orientations["count"])
    by_key = len(keys) >= count and orientations.get(UNSEEN_WHEN_HELD_OUT, 0.0) < UNSEEN_SHARE_CALIBRATED
    desc = orientation_descriptors(frame[given])
    known, ranges = set(keys), orientations.get("descriptors") or {}
    trained = f"{count} orientation{'s' if count != 1 else ''}: {orientation_list(keys, count)}"
    out = []
    for i, row in zip(np.flatnonzero(given), desc.itertuples(index=False), strict=True):
        label = key_label(row.orientation_key)
        if by_key:
            if row.orientation_key in known:
                continue
            line = f"orientation {label} was not in the training set ({trained}); {what} and the interval is not " \
                "calibrated there"
            if count == 1:
                line += ": trained on one orientation, the model cannot tell orientations apart"
        else:
            outside = [c for c, r in ranges.items() if not r["min"] - ORIENTATION_ATOL <= getattr(row, c)
                       <= r["max"] + ORIENTATION_ATOL]
            if not outside:
                continue
            span = ", ".join(f"{c} {ranges[c]['min']:.4g} … {ranges[c]['max']:.4g}" for c in ("theta_deg", "phi_deg")
                             if c in ranges)
            line = (f"orientation {label} lies outside the {count} training orientations ({span}); {what} and the "
                    "interval is not calibrated there")
        out.append((int(i), line))
    return out


def interval_columns(version: EquationVersion, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper ends of the version's stored interval around ``values`` (shape (n,), target unit).

    From whichever width the version stores (at most one is set, alembic 0012):
    ``interval_half_width`` (target unit) gives ``values ∓ w``; ``interval_relative_half_width``
    (a fraction ``q``) gives ``values·(1 ∓ q)`` (``values ∓ q·|values|``, so lower ≤ upper
    even where a value is ≤ 0).  NaN arrays when neither is set.
    """
    from matstore.models.report import ABSOLUTE, RELATIVE, interval_bounds

    values = np.asarray(values, dtype=float)
    if version.interval_half_width is not None:
        return interval_bounds(values, version.interval_half_width, ABSOLUTE)
    if version.interval_relative_half_width is not None:
        return interval_bounds(values, version.interval_relative_half_width, RELATIVE)
    return np.full_like(values, np.nan), np.full_like(values, np.nan)


def predict_frame(engine: Engine, ref: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Evaluate a stored equation on every row of ``frame`` (the Python API of ``matstore predict``).

    Parameters
    ----------
    engine : SQLAlchemy engine of the store
    ref : ``NAME``, ``NAME:VERSION`` or ``NAME@ALIAS``
    frame : DataFrame, shape (n, ...)
        Columns named as the features the equation uses (canonical units, see
        :func:`equation_inputs` and ``equation_version.features``) and, for orientation-dependent equations, the surface's
        Miller indices (``miller_h/k/l``), normal (``normal_x/y/z``) or angles
        (``theta_deg``, ``phi_deg``).

    Returns
    -------
    DataFrame, shape (n, 7)
        ``value`` (target unit), ``lower`` and ``upper`` (the version's cross-conformal
        prediction interval, target unit: ``value ∓ w`` or ``value·(1 ∓ q)``, see
        :func:`interval_columns`; NaN for versions fitted without one), ``level`` (e.g. 0.9),
        ``uncertainty`` (residual σ of the version, same unit), ``unit`` and ``extrapolated``:
        the row's inputs outside the training domain, joined by ``", "`` (feature names, and
        ``orientation`` for one the fit never saw; :func:`extrapolation`), ``""`` inside it,
        where the interval is calibrated.  Indexed like ``frame``.

    Raises
    ------
    matstore.models.versioning.ModelNotFoundError
        If ``ref`` names no version.
    KeyError
        If a feature column the equation uses is missing (others may be absent).
    ValueError
        If the equation depends on the orientation and ``frame`` has no orientation columns.
    PredictionInputError
        If a row has a non-finite or out-of-range input (the message names the row).
    """
    with Session(engine) as session:
        version = resolve(session, ref)
        target = session.get(EquationModel, version.model_id).target
    orientation_columns = ({"miller_h", "miller_k", "miller_l"}, {"normal_x", "normal_y", "normal_z"},
                           {"theta_deg", "phi_deg"})
    if _uses_orientation(version) and not any(c <= set(frame.columns) for c in orientation_columns):
        raise ValueError(f"{ref} predicts a surface property: give columns miller_h, miller_k, miller_l, "
                         "or normal_x, normal_y, normal_z, or theta_deg, phi_deg")
    out, _ = _predict_rows(version, frame, target)
    flags = out.pop("extrapolated")
    return out.assign(level=version.interval_level, uncertainty=version.residual_std, unit=version.target_unit,
                      extrapolated=flags)
