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
from matstore.orientation import from_miller
from matstore.schema import EquationModel, EquationVersion

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitOutcome:
    """What a fit or refit did: the version (new or unchanged), why, and the training set size."""

    version: Any
    created: bool
    reason: str
    n_rows: int
    dropped: int


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
        unchanged = _unchanged(engine, spec, training)
        if unchanged is not None:
            run.status = "skipped"
            run.summary["reason"] = unchanged.reason
            return FitOutcome(unchanged.version, False, unchanged.reason, training.n_rows, len(training.dropped))
        values, predictions = _fit_values(spec, training)
        outcome = store_version(engine, spec=spec, training=training, values=values,
                                predictions=predictions, job_run_id=run.id)
        run.summary.update(version=outcome.version.version, created=outcome.created, reason=outcome.reason,
                           metrics=outcome.version.metrics)
        if not outcome.created:
            run.status = "skipped"
        return FitOutcome(outcome.version, outcome.created, outcome.reason, training.n_rows, len(training.dropped))


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

    table, coefficient_key = _coefficient_key(training.table, spec)
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


def _cv_groups(table: pd.DataFrame, spec: FitSpec, training: TrainingSet) -> str | None:
    """Column whose values the CV folds hold out together, or ``None`` for shuffled KFold.

    ``spec.group_by`` names a column of the training table (``material``, ``method``, or one
    added by the training-set builder, e.g. ``cv_group``).  With the default ``material``,
    surface and configuration targets and factorised fits are grouped, since they have many
    rows per material and the honest score is that of an unseen material; a bulk target has
    one row per material and potential, and is scored by shuffled folds, as before.  A table
    of one material falls back to shuffled folds.
    """
    column = next((c for c in ("cv_group", spec.group_by) if c in table.columns), None)
    if column is None:
        raise ValueError(f"--group-by {spec.group_by!r}: the training table has no such column "
                         f"(columns: {', '.join(map(str, table.columns))})")
    grouped = (spec.group_by != "material" or training.target_scope in ("surface", "configuration")
               or spec.factorize)
    return column if grouped and table[column].nunique() > 1 else None


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


#: Features that are positive for every mechanically stable crystal (a > 0; Born stability of
#: a cubic crystal: C11 − C12 > 0, C11 + 2 C12 > 0, C44 > 0 — M. Born & K. Huang, *Dynamical
#: Theory of Crystal Lattices* (1954); F. Mouhat & F.-X. Coudert, Phys. Rev. B 90, 224104 (2014)).
POSITIVE_FEATURES = frozenset({"lattice_constant", "c11", "c44", "bulk_modulus", "shear_modulus_prime",
                               "shear_modulus_c44", "cohesive_energy"})


class PredictionInputError(ValueError):
    """An input of ``predict`` is not finite or outside the range the equation can take."""


def check_inputs(version: EquationVersion, frame: pd.DataFrame) -> None:
    """Refuse non-finite inputs, and values of a sign the training data never had.

    A feature in :data:`POSITIVE_FEATURES`, or whose training values were all positive
    (``version.report['domain']``), must be > 0; one whose training values were all
    negative, < 0.

    Raises
    ------
    PredictionInputError
        Naming the row, the feature, the value and the allowed range (one line).
    """
    domain = (version.report or {}).get("domain", {})
    for name in [f["name"] for f in version.features]:
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
    configuration: str | None = None,
    overrides: dict[str, float] | None = None,
) -> Prediction:
    """Evaluate a stored equation (from its SymPy form) for a material/method (and surface).

    Feature values are read from the store as a training set joins them
    (:func:`matstore.models.dataset.stored_inputs`): the newest unflagged value of each bulk
    property of ``material`` computed with ``method``, the composition descriptors of the
    material, and, for per-configuration models, the values of the configuration with key
    ``configuration``; ``overrides`` replace or supply them.

    Raises
    ------
    matstore.models.versioning.ModelNotFoundError
        If ``ref`` names no version.
    PredictionInputError
        A feature value is not finite or out of range, or the equation is undefined there.
    ValueError
        If a feature value is missing or the equation needs an orientation and none is given.
    """
    with Session(engine) as session:
        version = resolve(session, ref)
        model_name = session.get(EquationModel, version.model_id).name
    features = [f["name"] for f in version.features]
    inputs = stored_inputs(engine, material=material, method=method, features=features,
                           configuration_key=configuration)
    inputs.update(overrides or {})
    missing = [f for f in features if f not in inputs]
    if missing:
        raise ValueError(f"no stored {', '.join(missing)} for {material} with method {method!r}; give them with --set NAME=VALUE")
    row = dict(inputs)
    if miller is not None:
        o = from_miller(*miller)
        row.update(zip(ORIENTATION_COLUMNS, [*o.miller, *o.normal, o.theta_deg, o.phi_deg], strict=True))
    out = _predict_rows(version, pd.DataFrame([row])).iloc[0]
    return Prediction(float(out["value"]), version.residual_std, version.target_unit, model_name, version.version,
                      inputs, _finite(out["lower"]), _finite(out["upper"]), version.interval_level,
                      _finite(version.interval_relative_half_width))


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
        Columns named as the equation's features (canonical units, see
        ``equation_version.features``) and, for orientation-dependent equations, the surface's
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
        If a column the equation needs is missing.
    PredictionInputError
        If a row has a non-finite or out-of-range input (the message names the row).
    """
    with Session(engine) as session:
        version = resolve(session, ref)
    out = _predict_rows(version, frame)
    return out.assign(level=version.interval_level, uncertainty=version.residual_std, unit=version.target_unit)
