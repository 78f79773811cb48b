"""Fit, refit and predict against the store: the functions behind ``matstore fit/refit/predict``.

Data flows one way: the training set is read from the store (:mod:`.dataset`), the equation
is fitted without the database (:mod:`.fitting`), and the version is written back
(:mod:`.versioning`) with a ``job_run`` row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
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
)
from matstore.models.spec import FitSpec
from matstore.models.versioning import VersionOutcome, load_spec, resolve, store_version
from matstore.orientation import Orientation, from_angles, from_miller, from_normal
from matstore.schema import EquationModel, EquationVersion, PropertyDefinition

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitOutcome:
    """What a fit or refit did: the version (new or unchanged), why, the training set size and any
    keys whose stored values conflict (:attr:`~matstore.models.dataset.TrainingSet.conflicts`)."""

    version: Any
    created: bool
    reason: str
    n_rows: int
    dropped: int
    conflicts: tuple[str, ...] = ()


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
                                      include_flagged=spec.include_flagged, group_by=spec.group_by)
        run.summary.update(n_rows=training.n_rows, dropped=len(training.dropped), dataset_sha256=training.sha256)
        if training.conflicts:
            run.summary["conflicting_values"] = training.conflicts[:50]
            log.warning("%d keys hold conflicting values; the newest is used: %s", len(training.conflicts),
                        training.conflicts[0])
        conflicts = tuple(training.conflicts)
        unchanged = _unchanged(engine, spec, training)
        if unchanged is not None:
            run.status = "skipped"
            run.summary["reason"] = unchanged.reason
            return FitOutcome(unchanged.version, False, unchanged.reason, training.n_rows, len(training.dropped),
                              conflicts)
        values, predictions = _fit_values(spec, training)
        outcome = store_version(engine, spec=spec, training=training, values=values,
                                predictions=predictions, job_run_id=run.id)
        run.summary.update(version=outcome.version.version, created=outcome.created, reason=outcome.reason,
                           metrics=outcome.version.metrics)
        if not outcome.created:
            run.status = "skipped"
        return FitOutcome(outcome.version, outcome.created, outcome.reason, training.n_rows, len(training.dropped),
                          conflicts)


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
    result = fit_equation(
        table, "target", spec.features, **spec.fit_options(), groups=_cv_groups(table, spec, training),
        material=coefficient_key if spec.factorize else None,
        feature_units={n: training.units[n] for n in spec.features}, target_unit=training.units["target"])
    report = _jsonable(result.report | {"domain": _domain(table, spec.features), "seconds": result.timings})
    values = {
        "engine": spec.engine,
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
    kept = table.loc[result.row_index]
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
    - other bulk targets (one composition per system, e.g. elemental metals computed with
      several potentials) keep shuffled KFold, as before.

    A table of one group falls back to shuffled folds.  The report's ``cv_scheme`` names
    the grouping used (``... by chemical_system``) or the shuffled KFold.

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
        column = CONFIGURATION_GROUP
    if column == "material" and not (training.target_scope in ("surface", "configuration") or spec.factorize):
        column = "chemical_system" if _several_per_system(table) else None
    return column if column is not None and table[column].nunique() > 1 else None


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


def _domain(table: pd.DataFrame, features: list[str]) -> dict[str, dict[str, float]]:
    """Training range of each feature (``min``, ``max``), canonical units: what ``predict`` accepts."""
    return {f: {"min": float(table[f].min()), "max": float(table[f].max())} for f in features
            if f in table.columns and table[f].notna().any()}


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


#: Features that are positive for every mechanically stable crystal (a > 0; Born stability of
#: a cubic crystal: C11 − C12 > 0, C11 + 2 C12 > 0, C44 > 0 — M. Born & K. Huang, *Dynamical
#: Theory of Crystal Lattices* (1954); F. Mouhat & F.-X. Coudert, Phys. Rev. B 90, 224104 (2014)).
POSITIVE_FEATURES = frozenset({"lattice_constant", "c11", "c44", "bulk_modulus", "shear_modulus_prime",
                               "shear_modulus_c44", "cohesive_energy"})


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
    method: str,
    miller: tuple[int, int, int] | None = None,
    normal: tuple[float, float, float] | None = None,
    angles: tuple[float, float] | None = None,
    configuration: str | None = None,
    overrides: dict[str, float] | None = None,
) -> Prediction:
    """Evaluate a stored equation (from its SymPy form) for a material/method (and surface).

    Only the features the equation uses (:func:`equation_inputs`) are needed: each is taken
    from ``overrides`` when given there, else read from the store as a training set joins it
    (:func:`matstore.models.dataset.stored_inputs`): the newest unflagged bulk value of
    ``material`` computed with ``method``, the configuration ``configuration``'s value for
    per-configuration features, and composition descriptors from the material's stored
    composition or, for a material not in the store, from its formula.  An orientation-dependent
    equation needs exactly one of ``miller``, ``normal`` (any length and octant) or ``angles``
    (θ, φ in degrees in the standard triangle, :func:`matstore.orientation.from_angles`).

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
        An override names no input of the equation, a used feature has no value, or the
        orientation is missing, given twice, or given to a model that does not depend on it.
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
    inputs = stored_inputs(engine, material=material, method=method, configuration_key=configuration,
                           features=[f for f in needed if f not in overrides]) | overrides
    missing = [f for f in needed if f not in inputs]
    if missing:
        raise ValueError(f"no stored {', '.join(missing)} for {material} with method {method!r} "
                         f"(needed by {label}); give them with --set NAME=VALUE")
    row = dict(inputs)
    if orientation is not None:
        row.update(zip(ORIENTATION_COLUMNS, [*(orientation.miller or (np.nan,) * 3), *orientation.normal,
                                              orientation.theta_deg, orientation.phi_deg], strict=True))
    out = _predict_rows(version, pd.DataFrame([row])).iloc[0]
    return Prediction(float(out["value"]), version.residual_std, version.target_unit, model.name, version.version,
                      inputs, _finite(out["lower"]), _finite(out["upper"]), version.interval_level,
                      _finite(version.interval_relative_half_width), orientation)


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


def _predict_rows(version: EquationVersion, frame: pd.DataFrame) -> pd.DataFrame:
    """Checked values with their interval: columns ``value, lower, upper``, indexed like ``frame``."""
    from matstore.models.fitting import predict as evaluate

    check_inputs(version, frame)
    values = np.asarray(evaluate(version.equation_srepr, frame), dtype=float).reshape(-1)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        where = f"row {frame.index[bad[0]]!r}: " if len(frame) > 1 else ""
        raise PredictionInputError(f"{where}the equation is not a finite real number at these inputs")
    lower, upper = interval_columns(version, values)
    return pd.DataFrame({"value": values, "lower": lower, "upper": upper}, index=frame.index)


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
    DataFrame, shape (n, 6)
        ``value`` (target unit), ``lower`` and ``upper`` (the version's cross-conformal
        prediction interval, target unit: ``value ∓ w`` or ``value·(1 ∓ q)``, see
        :func:`interval_columns`; NaN for versions fitted without one), ``level`` (e.g. 0.9),
        ``uncertainty`` (residual σ of the version, same unit) and ``unit``, indexed like
        ``frame``.

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
    orientation_columns = ({"miller_h", "miller_k", "miller_l"}, {"normal_x", "normal_y", "normal_z"},
                           {"theta_deg", "phi_deg"})
    if _uses_orientation(version) and not any(c <= set(frame.columns) for c in orientation_columns):
        raise ValueError(f"{ref} predicts a surface property: give columns miller_h, miller_k, miller_l, "
                         "or normal_x, normal_y, normal_z, or theta_deg, phi_deg")
    out = _predict_rows(version, frame)
    return out.assign(level=version.interval_level, uncertainty=version.residual_std, unit=version.target_unit)
