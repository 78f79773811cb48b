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
from sqlalchemy import Engine, select, text
from sqlmodel import Session

from matstore.crud import job_run
from matstore.models.dataset import ORIENTATION_COLUMNS, TrainingSet, build_training_set
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
        training = build_training_set(engine, target=spec.target, features=spec.features,
                                      methods=spec.methods, include_flagged=spec.include_flagged)
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
    surface = training.target_scope == "surface"
    result = fit_equation(
        table,
        target="target",
        features=spec.features,
        engine=spec.engine,
        engine_params={**_engine_defaults(spec), **spec.engine_params},
        factorize=spec.factorize,
        selection=spec.selection,
        coefficient_form=spec.coefficient_form,
        coefficient_selection=spec.coefficient_selection,
        groups="material" if (surface or spec.factorize) and table["material"].nunique() > 1 else None,
        material=coefficient_key if spec.factorize else None,
        n_splits=spec.n_splits,
        seed=spec.seed,
        feature_units={n: training.units[n] for n in spec.features},
        target_unit=training.units["target"],
    )
    values = {
        "engine": spec.engine,
        "engine_versions": result.versions,
        "hyperparameters": {**result.engine_params, "time_budget": spec.time_budget, "seed": spec.seed,
                            "selection": spec.selection, "n_splits": spec.n_splits, "factorize": spec.factorize}
                           | ({"coefficient_form": spec.coefficient_form,
                               "coefficient_selection": spec.coefficient_selection} if spec.factorize else {}),
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
    }
    kept = table.loc[result.row_index]
    predictions = [
        {"material_id": int(r.material_id), "method_id": int(r.method_id),
         "surface_id": None if pd.isna(r.surface_id) else int(r.surface_id),
         "observed": float(r.target), "predicted": _finite(p), "cv_predicted": _finite(c)}
        for r, p, c in zip(kept.itertuples(), result.predictions, result.oof_predictions, strict=True)
    ]
    return values, predictions


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


def _engine_defaults(spec: FitSpec) -> dict[str, Any]:
    """Engine parameters implied by the spec (time budget for the stochastic engines)."""
    return {"time_limit": spec.time_budget} if spec.engine in ("operon", "pysr") else {}


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
    """A prediction with its unit and residual-based uncertainty (one standard deviation)."""

    value: float
    uncertainty: float | None
    unit: str
    model: str
    version: int
    inputs: dict[str, float]


def predict(
    engine: Engine,
    ref: str,
    *,
    material: str,
    method: str,
    miller: tuple[int, int, int] | None = None,
    overrides: dict[str, float] | None = None,
) -> Prediction:
    """Evaluate a stored equation (from its SymPy form) for a material/method (and surface).

    Feature values are read from the store (newest value of each bulk property of
    ``material`` computed with ``method``); ``overrides`` replace or supply them.

    Raises
    ------
    matstore.models.versioning.ModelNotFoundError
        If ``ref`` names no version.
    ValueError
        If a feature value is missing or the equation needs an orientation and none is given.
    """
    with Session(engine) as session:
        version = resolve(session, ref)
        model_name = session.get(EquationModel, version.model_id).name
    features = [f["name"] for f in version.features]
    inputs = _stored_features(engine, material, method, features)
    inputs.update(overrides or {})
    missing = [f for f in features if f not in inputs]
    if missing:
        raise ValueError(f"no stored {', '.join(missing)} for {material} with method {method!r}; give them with --set NAME=VALUE")
    row = dict(inputs)
    if miller is not None:
        o = from_miller(*miller)
        row.update(zip(ORIENTATION_COLUMNS, [*o.miller, *o.normal, o.theta_deg, o.phi_deg], strict=True))
    value = float(_evaluate(version, pd.DataFrame([row]))[0])
    return Prediction(value, version.residual_std, version.target_unit, model_name, version.version, inputs)


def _evaluate(version: EquationVersion, frame: pd.DataFrame) -> np.ndarray:
    """The stored equation (rebuilt from its SymPy ``srepr``) on the rows of ``frame``, shape (n,)."""
    from matstore.models.fitting import predict as evaluate

    return np.asarray(evaluate(version.equation_srepr, frame), dtype=float).reshape(-1)


def _stored_features(engine: Engine, material: str, method: str, features: list[str]) -> dict[str, float]:
    sql = text("""
        SELECT d.name, (array_agg(p.value ORDER BY p.created_at DESC, p.id DESC))[1] AS value
        FROM bulk_property p JOIN material m ON m.id = p.material_id JOIN method me ON me.id = p.method_id
        JOIN property_definition d ON d.id = p.definition_id
        WHERE m.formula = :material AND me.name = :method AND d.name = ANY(:features) AND p.flag IS NULL
        GROUP BY d.name""")
    with engine.connect() as conn:
        return {r.name: float(r.value) for r in conn.execute(sql, {"material": material, "method": method, "features": features})}


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
    DataFrame, shape (n, 3)
        ``value`` (target unit), ``uncertainty`` (residual σ of the version, same unit) and
        ``unit``, indexed like ``frame``.

    Raises
    ------
    matstore.models.versioning.ModelNotFoundError
        If ``ref`` names no version.
    KeyError
        If a column the equation needs is missing.
    """
    with Session(engine) as session:
        version = resolve(session, ref)
    return pd.DataFrame({"value": _evaluate(version, frame), "uncertainty": version.residual_std, "unit": version.target_unit},
                        index=frame.index)
