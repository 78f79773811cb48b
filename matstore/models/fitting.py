"""Database-free core of ``matstore fit``: one fitting procedure, fitted once and cross-validated.

:func:`fit_equation` builds the procedure as an estimator (:func:`make_estimator`:
an :class:`~matstore.models.estimators.EquationSearch`, or a
:class:`~matstore.models.estimators.FactorizedEquation` for ``factorize="orientation"``),
fits it on all rows, and reports it honestly (:mod:`matstore.models.report`): nested CV of
the whole procedure, fixed-form CV of the selected equation, the form selected in each fold,
errors per group and a grouped cross-conformal prediction interval.  Folds come from the one
CV policy (:func:`matstore.models.cv.make_cv`).  The equation is stored as a SymPy ``srepr``
string (never a pickle).

The nested-CV folds run side by side in ``n_jobs`` worker processes (:func:`fold_jobs`:
``n_jobs``, else ``MATSTORE_FIT_JOBS``, else the usable CPUs when the folds one after another
would take more than :data:`PARALLEL_MIN_SECONDS`), in ``rounds = ⌈n_folds / n_jobs⌉``
rounds.  ``time_budget`` bounds the whole fit: the full-data fit gets
``0.85 · time_budget / (rounds + 1)`` seconds of engine time, and each round of folds shares
what it left of ``0.85 · time_budget`` after the workers started, less the overhead the full
fit showed (validation, polishing, selection); the last 15 % cover the fixed-form CV and the
intervals.  It applies to engines with a time limit (Operon, PySR; at least 1 s per engine
run); the deterministic sparse engine has none and is usually far below.  Operon's clock
counts whole seconds: the folds get the generations per second the full fit measured
(``engine_rate_``), so a fold's run below one second is a generation cap
(:mod:`matstore.models.engines.operon`).

Same data + options + seed give the same selected equation and hash for the deterministic
engines (``sparse``; ``operon`` with ``n_threads=1`` and a generation budget that ends
before its time limit).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import sympy as sp

from matstore.models.cv import FixedForm, make_cv
from matstore.models.dimensions import check_dimensions, require_scaling_units
from matstore.models.engines.base import (
    MIN_RUN_SECONDS,
    Candidate,
    engine_class,
    round_floats,
    versions,
)
from matstore.models.estimators import (
    EquationSearch,
    FactorizedEquation,
    SumOfProducts,
    engine_rate_of,
    set_engine_rate,
    time_limited_use,
)
from matstore.models.expressions import evaluate, parse_srepr
from matstore.models.factorize import (
    COEFFICIENT_FORMS,
    DEFAULT_ORIENTATION_FEATURES,
    DEFAULT_SCALING_TERMS,
    DESCRIPTOR_COLUMNS,
    add_orientation_descriptors,
    product_ceiling,
)
from matstore.models.factorize import part_fit as _part_fit
from matstore.models.report import (
    RELATIVE,
    conformal_half_width,
    conformity_score,
    coverage_spread,
    cross_fit,
    discrepancy,
    fold_agreement,
    fold_coverage,
    fold_records,
    orientation_deviation,
    per_group_errors,
    pooled_coverage,
    scores,
    selected_forms,
)
from matstore.models.selection import (
    DEFAULT_COEFFICIENT_SELECTION,
    default_selection,
    parse_criterion,
)

FACTORIZATIONS = (None, "orientation")
#: Seconds the nested-CV folds would take one after another (estimated from the full-data
#: fit) above which they run in worker processes by default: starting the workers costs 2–4 s.
PARALLEL_MIN_SECONDS = 10.0
#: Share of ``time_budget`` given to engine runs (the rest: validation, fixed-form CV, intervals).
ENGINE_SHARE = 0.85
#: Shortest fold budget passed to engines that pace their runs (they apply their own least run).
MIN_PACED_SECONDS = 0.01
#: Prediction-interval level stored with every version (``--interval-level``).
DEFAULT_INTERVAL_LEVEL = 0.9


@dataclass
class FitResult:
    """Everything :func:`fit_equation` learned, as plain data.

    Attributes
    ----------
    target : str
    features : list of str
        Input features (factorised fits: bulk features; descriptors in ``orientation_features``).
    engine : str
        Engine that ran the search: the requested one, or ``sparse`` for a direct scaling-law fit.
    engine_params : dict
    factorize : str or None
    seed : int
    expr : sympy.Expr
        Selected equation.
    srepr, text, latex : str
        ``sympy.srepr`` / ``sympy.sstr`` / ``sympy.latex`` of ``expr``.
    canonical_hash : str
        sha256 hex of the ``srepr`` of ``expr`` with Floats rounded to 10 significant digits.
    selection : str
        Criterion as applied (factorised fits: the coefficient's).
    front : list of dict
        ``{"complexity", "loss", "srepr", "latex", "text", "valid", "reason"}`` per candidate
        (loss: training MSE, target unit²).  Factorised fits: each valid C candidate times g.
    parts : dict
        Factorised fits only: ``{"coefficient": {...}, "orientation": {...}}`` each with
        ``front``, ``srepr``, ``text``, ``latex``, ``criterion``, ``features``, ``form``,
        ``engine`` (coefficient: ``values`` per material; orientation: ``normalization``).
    metrics : dict of str to float
        ``train_r2, train_rmse, train_mae``; nested CV ``cv_r2, cv_rmse, cv_mae`` (pooled
        out-of-fold), ``cv_r2_mean, cv_r2_std`` (per fold), ``cv_n_splits, cv_failed_folds``; ``fixed_form_cv_r2, fixed_form_cv_rmse,
        fixed_form_cv_mae``; ``fold_agreement`` (fraction of folds that selected the
        full-data form); ``interval_half_width`` (target unit) or
        ``interval_relative_half_width`` (fraction; the other NaN), ``interval_coverage``
        (held-out groups).
    cv : dict
        ``scheme`` (e.g. ``"LeaveOneGroupOut (7 groups) by material"``), ``folds`` (see
        :func:`matstore.models.report.fold_records`).
    report : dict
        ``cv_scheme``, ``nested_cv``, ``fixed_form_cv``, ``fold_agreement``, ``folds``,
        ``per_group``, ``discrepancy``, ``interval``, ``time_budget``, ``fold_jobs`` (processes
        that ran the folds), ``seconds``.
    oof_predictions : ndarray, shape (n_rows,)
        Nested out-of-fold predictions aligned with ``row_index`` (NaN without CV).
    predictions : ndarray, shape (n_rows,)
    row_index : list
        Index labels of the rows used (rows with NaN in target/features are dropped).
    residual_std : float
        Standard deviation (ddof=1) of the nested out-of-fold residuals, target unit.
    interval : dict
        ``method``, ``score`` (``"absolute"``: ``ŷ ± half_width``, target unit;
        ``"relative"``: ``ŷ·(1 ± relative_half_width)``, a fraction), ``level``,
        ``half_width``, ``relative_half_width`` (the one not used is None),
        ``held_out_coverage``; empty without CV.
    dimension_check : str
    n_rows, n_dropped : int
    orientation_features : list of str
    timings : dict of str to float
        Seconds: ``fit``, ``cv``, ``total``.
    versions : dict
    """

    target: str
    features: list[str]
    engine: str
    engine_params: dict[str, Any]
    factorize: str | None
    seed: int
    expr: sp.Expr
    srepr: str
    text: str
    latex: str
    canonical_hash: str
    selection: str
    front: list[dict[str, Any]]
    parts: dict[str, Any]
    metrics: dict[str, float]
    cv: dict[str, Any]
    oof_predictions: np.ndarray
    predictions: np.ndarray
    row_index: list[Any]
    residual_std: float
    dimension_check: str
    n_rows: int
    n_dropped: int
    orientation_features: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str | None] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    interval: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (expr as srepr, arrays as lists)."""
        out = asdict(self)
        out["expr"] = self.srepr
        out["oof_predictions"] = [None if not np.isfinite(v) else float(v) for v in self.oof_predictions]
        out["predictions"] = [None if not np.isfinite(v) else float(v) for v in self.predictions]
        return out


def canonical_hash(expr: sp.Expr, digits: int = 10) -> str:
    """sha256 hex digest of ``sympy.srepr`` of ``expr`` with Floats rounded to ``digits`` significant digits."""
    canon = round_floats(sp.sympify(expr), digits)
    return hashlib.sha256(sp.srepr(canon).encode()).hexdigest()


def expr_from_srepr(text: str) -> sp.Expr:
    """Rebuild a SymPy expression from its ``srepr`` without ``eval`` (:func:`~.expressions.parse_srepr`).

    Raises
    ------
    ValueError
        For anything but allowed SymPy constructors with literal arguments.
    """
    return parse_srepr(text)


def predict(expr_srepr: str | sp.Expr, df: pd.DataFrame) -> np.ndarray:
    """Evaluate a stored equation on the rows of ``df``.

    Parameters
    ----------
    expr_srepr : str or sympy.Expr
        ``sympy.srepr`` string as stored, or an expression.
    df : DataFrame, shape (n_rows, ...)
        Columns named as the equation's symbols.  Orientation descriptors
        (``normal_x… theta_deg phi_deg``) missing from ``df`` are computed from its Miller,
        normal or angle columns.

    Returns
    -------
    ndarray, shape (n_rows,)
        float64; NaN where the equation is undefined (complex/invalid).

    Raises
    ------
    KeyError
        A symbol of the equation is not a column of ``df``.
    """
    expr = parse_srepr(expr_srepr) if isinstance(expr_srepr, str) else sp.sympify(expr_srepr)
    names = {str(s) for s in expr.free_symbols}
    if names & set(DESCRIPTOR_COLUMNS) - set(df.columns):
        df = add_orientation_descriptors(df)
    missing = names - set(df.columns)
    if missing:
        raise KeyError(f"columns missing for symbols {sorted(missing)}")
    return evaluate(expr, df.reset_index(drop=True))


def _front_dicts(front: Sequence[Candidate], rejected: Sequence[tuple[Candidate, str]] = ()) -> list[dict[str, Any]]:
    reasons = {sp.srepr(c.expr): r for c, r in rejected}
    out = []
    for c in front:
        key = sp.srepr(c.expr)
        out.append(
            {
                "complexity": int(c.complexity),
                "loss": float(c.loss),
                "srepr": key,
                "latex": sp.latex(c.expr),
                "text": sp.sstr(c.expr),
                "valid": key not in reasons,
                "reason": reasons.get(key, ""),
            }
        )
    return out


#: The estimators of ``factorize="orientation"``: one product C·g, or a sum of products.
FACTORISED = (FactorizedEquation, SumOfProducts)


def make_estimator(
    features: Sequence[str],
    *,
    factorize: str | None = None,
    engine: str = "sparse",
    engine_params: dict[str, Any] | None = None,
    selection: str | None = None,
    seed: int = 0,
    margin: float = 0.1,
    material: str | None = None,
    orientation_features: Sequence[str] | None = None,
    orientation_engine_params: dict[str, Any] | None = None,
    coefficient: str = "lsq",
    coefficient_selection: str | None = DEFAULT_COEFFICIENT_SELECTION,
    coefficient_form: str = "auto",
    coefficient_terms: int = DEFAULT_SCALING_TERMS,
    products: int = 1,
    reference_orientation: Sequence[float] | None = (1, 1, 1),
    feature_units: dict[str, Any] | None = None,
    target_unit: str | None = None,
    time_budget: float | None = None,
) -> EquationSearch | FactorizedEquation | SumOfProducts:
    """The fitting procedure as an unfitted estimator; the options of ``matstore fit``.

    Parameters
    ----------
    features : sequence of str
        Feature columns; for ``factorize="orientation"`` the *bulk* features of C.
    factorize : {None, "orientation"}
        ``"orientation"``: ``y = C(features) · g(orientation descriptors)``.
    engine : str, default "sparse"
        Engine of the search (and of g; C as a scaling law always uses ``sparse``).
    engine_params : dict, optional
    selection : str, optional
        Criterion of the equation (factorised fits: of g); default
        :func:`matstore.models.selection.default_selection` (``stable``; ``stable:1se`` for g).
    seed : int
        ``random_state`` of engines and of shuffled folds.
    margin : float
        Domain widening of the numerical checks.
    material : str, optional
        Column with one coefficient per value (factorised fits; required there).
    orientation_features : sequence of str, optional
        Descriptors of g (default ``normal_x, normal_y, normal_z``).
    orientation_engine_params : dict, optional
        Engine parameters of g (default ``engine_params``).
    coefficient : {"lsq", "reference"}
    coefficient_selection : str, default "stable:1se"
        Criterion of C(bulk): the one-standard-error rule over the complexity budget, the
        search repeated on every leave-one-group-out subsample, then the form chosen at that
        budget in most subsamples (measured better than ``stable`` on the calculators'
        surface data, docs/models.md).
    coefficient_form : {"auto", "scaling", "free"}, default "auto"
        Factorised fits: the form of C (:func:`matstore.models.factorize.fit_factorized`).
        Direct fits: ``"scaling"`` fits y itself as a dimensionally homogeneous scaling law
        (sums of at most ``coefficient_terms`` monomials ``k·Π x_i^p_i`` with the target's
        dimension, pure-number k, by the sparse engine); ``"auto"`` and ``"free"``: the engine's search.
    coefficient_terms : int, default 1
        Most monomials of a scaling law (C, or a direct fit's y;
        :data:`matstore.models.factorize.DEFAULT_SCALING_TERMS`).
    products : int, default 1
        Factorised fits: most products in ``y = Σ_j s_j(bulk) · g_j(orientation)``.  1 is
        the single product C(bulk)·g(orientation) (:class:`FactorizedEquation`); 2 or more
        a :class:`~matstore.models.estimators.SumOfProducts` of natural scales, their number
        chosen by cross-validation (needs units; the ``coefficient*`` options and
        ``reference_orientation`` do not apply to it).
    reference_orientation : (3,) Miller index or normal, default (1, 1, 1)
    feature_units : dict, optional
        pint units of the features.
    target_unit : str, optional
    time_budget : float, optional
        Seconds of engine time of one fit of the procedure.

    Returns
    -------
    EquationSearch or FactorizedEquation

    Raises
    ------
    ValueError
        Unknown ``factorize``, criterion or ``coefficient_form``, factorisation without
        ``material``, or a direct scaling-law fit the units cannot support (one line naming
        the feature or target without units, or the dimensions when no monomial has the target's).
    KeyError
        Unknown engine.
    """
    if factorize not in FACTORIZATIONS:
        raise ValueError(f"factorize must be one of {FACTORIZATIONS}, got {factorize!r}")
    engine_class(engine)  # KeyError early for unknown names
    selection = selection or default_selection(factorize)
    for criterion in (selection, coefficient_selection or selection):
        parse_criterion(criterion)
    units = dict(feature_units or {})
    common = dict(engine=engine, random_state=seed, margin=margin)
    if factorize is None:
        return EquationSearch(**common, engine_params=engine_params, selection=selection, time_budget=time_budget,
                              feature_units=units or None, target_unit=target_unit,
                              form=_plain_form(coefficient_form, features, units, target_unit),
                              scaling_terms=coefficient_terms)
    if material is None:
        raise ValueError("factorize='orientation' needs a material column (material= or groups=)")
    orientation = EquationSearch(**common, selection=selection, engine_params=(
        orientation_engine_params if orientation_engine_params is not None else engine_params))
    if products > 1:
        return SumOfProducts(orientation=orientation, material=material, bulk_features=tuple(features),
                             orientation_features=tuple(orientation_features or DEFAULT_ORIENTATION_FEATURES),
                             max_products=products, feature_units={f: units[f] for f in features if f in units},
                             target_unit=target_unit, time_budget=time_budget)
    return FactorizedEquation(
        coefficient=EquationSearch(**common, engine_params=engine_params, form=coefficient_form,
                                   selection=coefficient_selection or selection, scaling_terms=coefficient_terms,
                                   feature_units={f: units[f] for f in features if f in units} or None,
                                   target_unit=target_unit),
        orientation=orientation, material=material, bulk_features=tuple(features),
        orientation_features=tuple(orientation_features or DEFAULT_ORIENTATION_FEATURES),
        reference=None if reference_orientation is None else tuple(reference_orientation),
        coefficient_method=coefficient, time_budget=time_budget)


def _plain_form(coefficient_form: str, features: Sequence[str], units: dict[str, Any], target_unit: str | None) -> str:
    """:class:`EquationSearch` ``form`` of a direct fit: ``"scaling"`` for ``coefficient_form="scaling"``, else ``"free"``.

    ``"auto"`` stays the engine's free search for a direct fit (as fitted before the option
    applied to direct fits), so stored specs refit unchanged.

    Raises
    ------
    ValueError
        An unknown form, or a scaling law the units cannot support
        (:func:`matstore.models.dimensions.require_scaling_units`: a feature or the target
        without units, or no monomial of the features with the target's dimension).
    """
    from matstore.models.engines.sparse import SparseEngine

    if coefficient_form not in COEFFICIENT_FORMS:
        raise ValueError(f"coefficient_form must be one of {COEFFICIENT_FORMS}, got {coefficient_form!r}")
    if coefficient_form != "scaling":
        return "free"
    defaults = SparseEngine.default_parameters
    require_scaling_units(features, units, target_unit, exponents=defaults["exponents"],
                          max_factors=defaults["max_factors"])
    return "scaling"


def fit_equation(
    table: pd.DataFrame,
    target: str,
    features: Sequence[str],
    *,
    groups: str | None = None,
    n_splits: int | None = None,
    cross_validate: bool = True,
    interval_level: float = DEFAULT_INTERVAL_LEVEL,
    time_budget: float | None = None,
    n_jobs: int | None = None,
    **options: Any,
) -> FitResult:
    """Fit the procedure of :func:`make_estimator` on ``table`` and report it honestly.

    Parameters
    ----------
    table : DataFrame, shape (n_rows, n_columns)
        One row per observation (material, or material × orientation for factorised fits).
        Rows with NaN in ``target`` or ``features`` are dropped (counted in ``n_dropped``).
    target : str
        Target column (unit: ``target_unit``).
    features : sequence of str
    groups : str, optional
        Column of CV groups (all rows of a group are held out together); defaults to
        ``material`` for factorised fits; without groups, shuffled KFold.
    n_splits : int, optional
        Folds (:func:`matstore.models.cv.make_cv`; default leave-one-group-out up to 20 groups).
    cross_validate : bool, default True
        False: fit only (no report, no interval).
    interval_level : float, default 0.9
        Confidence level of the stored cross-conformal prediction interval.
    time_budget : float, optional
        Seconds for the whole fit, nested-CV folds included (see the module docstring).
    n_jobs : int, optional
        Processes that fit the nested-CV folds side by side (:func:`fold_jobs`; default
        ``MATSTORE_FIT_JOBS``, else the usable CPUs when the folds one after another would
        take over :data:`PARALLEL_MIN_SECONDS`).  The folds' results do not depend on it for
        deterministic engines.
    **options
        Keyword parameters of :func:`make_estimator` (``engine``, ``factorize``,
        ``selection``, ``seed``, ``material``, ``feature_units``, ``target_unit``, ...).

    Returns
    -------
    FitResult

    Raises
    ------
    ValueError
        Missing columns, bad criterion, unknown ``factorize``, too few rows, no valid
        candidate on the full data.
    KeyError
        Unknown engine.
    matstore.models.engines.base.EngineSetupError, EngineFitError
        From the engine on the full data.
    """
    t_start, features = time.perf_counter(), list(features)
    if options.get("factorize"):
        options["material"] = options.get("material") or groups
        groups = groups or options["material"]
    data, n_dropped, row_index = _complete_rows(table, target, features, options, groups)
    y, g = data[target].to_numpy(dtype=float), (data[groups].to_numpy() if groups else None)
    seed = options.get("seed", 0)
    cv, scheme = make_cv(len(data), g, n_splits, seed) if cross_validate else (None, "")
    n_folds = cv.get_n_splits(data, y, g) if cv is not None else 0
    rounds = -(-n_folds // fold_jobs(n_jobs, n_folds))  # the folds run side by side, at most this many rounds
    run_budget = None if time_budget is None else ENGINE_SHARE * float(time_budget) / (rounds + 1)
    est = make_estimator(features, time_budget=run_budget, **options)
    X = data if options.get("factorize") else data[features].astype(float)
    t0 = time.perf_counter()
    est.fit(X, y, groups=g)
    t_fit = time.perf_counter() - t0
    jobs, t_workers = _start_workers(fold_jobs(n_jobs, n_folds, t_fit))
    rounds = -(-n_folds // jobs)
    report: dict[str, Any] = {}
    if time_budget is not None and n_folds:
        set_engine_rate(est, engine_rate_of(est))
        est.set_params(time_budget=_fold_budget(float(time_budget), t_fit, est, rounds, t_workers))
    if cv is not None:
        report = fit_report(est, X, y, g, cv, scheme + (f" by {groups}" if groups else ""), interval_level, jobs)
        report["time_budget"], report["fold_jobs"] = time_budget, jobs
    timings = {"fit": t_fit, "cv": time.perf_counter() - t0 - t_fit, "total": time.perf_counter() - t_start}
    floor = _least_time(timings["total"], report.pop("time_limited", None), jobs, rounds + 1)
    if time_budget is not None and floor is not None and floor["floor_seconds"] > time_budget:
        report["time_budget_floor"] = floor
    return _result(est, data, target, features, options, report, row_index, n_dropped, timings)


def fold_jobs(n_jobs: int | None, n_folds: int, fit_seconds: float | None = None) -> int:
    """Processes for the nested-CV folds, at most ``n_folds``.

    ``n_jobs``, else ``MATSTORE_FIT_JOBS``; unset, the usable CPUs (``joblib.cpu_count``: the
    process's CPU affinity and a container's CPU quota) when the folds one after another
    would take longer than :data:`PARALLEL_MIN_SECONDS` (``fit_seconds``, the
    full-data fit's wall time, × ``n_folds``; ``None``: assumed so), else 1.

    Raises
    ------
    ValueError
        ``n_jobs`` below 1.
    """
    from joblib import cpu_count

    from matstore.config import get_settings

    if n_jobs is not None and n_jobs < 1:
        raise ValueError(f"n_jobs must be at least 1, got {n_jobs}")
    asked = n_jobs or get_settings().fit_jobs
    if asked is None and fit_seconds is not None and fit_seconds * n_folds < PARALLEL_MIN_SECONDS:
        asked = 1
    return max(1, min(asked or cpu_count(), n_folds or 1))


def _warm() -> bool:
    """Run in a fresh worker: unpickling it imports this module, and so matstore's fitting core."""
    return True


def _start_workers(n_jobs: int) -> tuple[int, float]:
    """Start ``n_jobs`` worker processes for the nested-CV folds and import matstore in them.

    A fresh worker spends seconds importing SymPy, scikit-learn and the engines; joblib's
    reusable loky executor, which :func:`~matstore.models.report.cross_fit` then uses, keeps
    it for the folds (and the next fit in this process), so a warm start takes milliseconds.

    Returns
    -------
    (jobs, seconds)
        ``n_jobs``, or 1 where no worker process could be started (no process may be
        spawned, say): the folds then run in this process; and the seconds it took.
    """
    if n_jobs <= 1:
        return 1, 0.0
    from concurrent.futures import BrokenExecutor

    from joblib import Parallel, delayed

    t0 = time.perf_counter()
    try:
        Parallel(n_jobs=n_jobs)(delayed(_warm)() for _ in range(n_jobs))
    except (BrokenExecutor, OSError):
        return 1, time.perf_counter() - t0
    return n_jobs, time.perf_counter() - t0


def _fold_budget(time_budget: float, t_fit: float, est: Any, rounds: int, t_workers: float = 0.0) -> float:
    """Engine seconds of each nested-CV fold, so that the whole fit ends within ``time_budget``.

    The full-data fit took ``t_fit`` seconds, ``est.time_limited_seconds_`` of them in
    engine runs under a time limit; the rest (the engines' set-up and polishing, validation,
    selection) is taken as a fixed cost per fit, paid again by every fold.  The folds run in
    ``rounds`` rounds, :func:`fold_jobs` at a time, after ``t_workers`` seconds starting
    their worker processes, and each round shares what is left of
    ``ENGINE_SHARE · time_budget``.  At least
    :data:`MIN_RUN_SECONDS` per time-limited run (Operon's smallest time limit), unless the
    engines pace their runs (a measured ``engine_rate_``): they then apply their own least run.
    """
    fixed = max(0.0, t_fit - float(getattr(est, "time_limited_seconds_", 0.0)))
    paced = engine_rate_of(est) is not None
    shortest = MIN_PACED_SECONDS if paced else MIN_RUN_SECONDS * max(1, int(getattr(est, "time_limited_runs_", 0)))
    return max(shortest, (ENGINE_SHARE * time_budget - t_fit - t_workers) / rounds - fixed)


def _least_time(total: float, uses: tuple[tuple[int, float, float], tuple[int, float, float]] | None, jobs: int,
                n_rounds: int) -> dict[str, float] | None:
    """The least wall time of a fit that ran ``total`` seconds: its time-limited runs at their shortest.

    ``uses``: (runs, seconds, least seconds) of the full-data fit and of the nested-CV folds,
    the time-limited engine runs, the seconds they spent under their limits and the least
    they could have spent (:func:`~matstore.models.estimators.time_limited_use`).  The folds
    ran ``jobs`` side by side, so their seconds count 1/``jobs`` of the wall time.  Measured,
    so never above ``total``.

    Returns
    -------
    dict or None
        ``floor_seconds``, ``engine_runs``, ``engine_floor_seconds`` (wall seconds of the runs
        at their shortest) and ``fixed_seconds_per_fit`` (what does not shrink with the
        budget, per round of ``n_rounds``: the full fit, then the folds ``jobs`` at a time);
        None without ``uses``.
    """
    if uses is None:
        return None
    (runs, seconds, shortest), (fold_runs, fold_seconds, fold_shortest) = uses
    floor = total - max(0.0, seconds - shortest) - max(0.0, fold_seconds - fold_shortest) / jobs
    wall_shortest = shortest + fold_shortest / jobs
    return {"floor_seconds": floor, "engine_runs": runs + fold_runs, "engine_floor_seconds": wall_shortest,
            "fixed_seconds_per_fit": max(0.0, floor - wall_shortest) / n_rounds}


def _complete_rows(table: pd.DataFrame, target: str, features: list[str], options: dict[str, Any],
                   groups: str | None) -> tuple[pd.DataFrame, int, list[Any]]:
    """Rows with target and features present (descriptors added for factorised fits)."""
    material = options.get("material")
    needed = [target, *features] + ([material] if material else []) + ([groups] if groups else [])
    missing = [c for c in dict.fromkeys(needed) if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}")
    data = table.dropna(subset=[target, *features])
    if len(data) < 3:
        raise ValueError(f"need at least 3 complete rows, got {len(data)}")
    row_index = list(data.index)
    data = data.reset_index(drop=True)
    if options.get("factorize"):
        data = add_orientation_descriptors(data)
    return data, len(table) - len(data), row_index


def fit_report(est: Any, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray | None, cv: Any, scheme: str,
               level: float, n_jobs: int | None = None) -> dict[str, Any]:
    """Nested CV, fixed-form CV, per-fold forms, per-group errors and the interval of a fitted procedure.

    ``n_jobs``: processes for the nested-CV folds (:func:`~matstore.models.report.cross_fit`).

    Returns
    -------
    dict
        ``cv_scheme``, ``nested_cv`` and ``fixed_form_cv`` (``r2``, ``rmse``, ``mae``,
        ``failed_folds``), ``fold_agreement`` (:func:`matstore.models.report.fold_agreement`:
        the whole equation's form, and C's and g's of a factorised model), ``folds``,
        ``per_group``, ``discrepancy``, ``interval``, ``product_ceiling_r2`` and
        ``two_product_ceiling_r2`` (factorised fits: :func:`matstore.models.factorize.product_ceiling`
        with rank 1 and 2), ``sum_of_products`` (factorised fits: whether it is a :class:`SumOfProducts`),
        ``oof`` (nested out-of-fold predictions, shape (n_rows,)) and ``time_limited``
        (:func:`~matstore.models.estimators.time_limited_use` of the full fit, and of the folds); the last two are removed
        before storing.
    """
    nested = cross_fit(est, X, y, groups, cv, n_jobs)
    fixed = cross_fit(FixedForm(sp.srepr(est.equation_)), X, y, groups, cv)
    full = selected_forms(est)
    folds = fold_records(nested, fixed, y, groups, full, lambda fold_est: orientation_deviation(fold_est, est, X))
    nested_cv = scores(y, nested.oof) | {"failed_folds": int(sum(nested.failed)), "n_folds": len(folds)}
    fixed_cv = scores(y, fixed.oof) | {"failed_folds": int(sum(fixed.failed))}
    return {
        "cv_scheme": scheme, "nested_cv": nested_cv, "fixed_form_cv": fixed_cv,
        "fold_agreement": fold_agreement(folds, full),
        "folds": folds, "per_group": per_group_errors(y, nested.oof, groups),
        "discrepancy": discrepancy(nested_cv["r2"], fixed_cv["r2"], folds, full),
        "interval": _interval(y, nested, level), "oof": nested.oof,
        "time_limited": (time_limited_use([est]), time_limited_use(nested.estimators)),
    } | _ceilings(est, X, y)


def _ceilings(est: Any, X: pd.DataFrame, y: np.ndarray) -> dict[str, Any]:
    """``product_ceiling_r2`` and ``two_product_ceiling_r2`` of the rows of a factorised fit, and ``sum_of_products``.

    Properties of the table, not of a fit: computed once here, not in every fold's fit.  None
    for a direct fit, or without repeated orientations
    (:func:`matstore.models.factorize.product_ceiling`).
    """
    if not isinstance(est, FACTORISED):
        return {}
    values = {key: product_ceiling(X, y, est.material, rank=rank)
              for key, rank in (("product_ceiling_r2", 1), ("two_product_ceiling_r2", 2))}
    return ({key: float(value) for key, value in values.items() if value is not None}
            | {"sum_of_products": isinstance(est, SumOfProducts)})


def _interval(y: np.ndarray, nested: Any, level: float) -> dict[str, Any]:
    """The stored prediction interval (width from all folds) and its held-out coverage.

    The conformity score follows :func:`matstore.models.report.conformity_score`: relative
    for a factorised procedure (the estimators of ``nested`` are
    :class:`~matstore.models.estimators.FactorizedEquation`) with every target and nested
    out-of-fold prediction > 0, absolute otherwise; the held-out coverage uses the same score.

    Returns
    -------
    dict
        ``method`` (text), ``score`` (``"absolute"`` | ``"relative"``), ``level``,
        ``half_width`` (target unit; None unless absolute), ``relative_half_width``
        (fraction; None unless relative), ``held_out_coverage`` and its spread over the
        folds, ``held_out_coverage_spread`` (:func:`~matstore.models.report.coverage_spread`);
        ``error`` (and both widths None) when there are too few rows for ``level``.
    """
    factorised = any(isinstance(e, FACTORISED) for e in nested.estimators)
    score = conformity_score(factorised, y, nested.oof)
    text = ("relative residual |y − ŷ|/ŷ, GammaConformityScore(sym=True): ŷ·(1 ± q)" if score == RELATIVE
            else "absolute residual |y − ŷ|: ŷ ± q")
    out = {"method": f"cross-conformal on the nested out-of-fold residuals (MAPIE SplitConformalRegressor, {text})",
           "score": score, "level": float(level), "half_width": None, "relative_half_width": None}
    try:
        width = conformal_half_width(nested.oof, y, np.arange(len(y)), level, score)
    except ValueError as exc:  # too few rows for that level
        return out | {"held_out_coverage": None, "error": str(exc)}
    out["relative_half_width" if score == RELATIVE else "half_width"] = width
    inside, total = fold_coverage(nested, y, level, score)
    return out | {"held_out_coverage": pooled_coverage(inside, total),
                  "held_out_coverage_spread": coverage_spread(inside, total)}


def _part_dict(search: EquationSearch, expr: sp.Expr | None = None) -> dict[str, Any]:
    from matstore.models.engines.base import expression_complexity

    p = _part_fit(search, expr)
    return {"front": _front_dicts(p.front, p.rejected), "srepr": sp.srepr(p.expr), "text": sp.sstr(p.expr),
            "latex": sp.latex(p.expr), "criterion": p.criterion, "complexity": expression_complexity(p.expr),
            "features": list(p.features), "canonical_hash": canonical_hash(p.expr), "engine": p.engine,
            "form": p.form}


def _parts(est: Any) -> dict[str, Any]:
    if isinstance(est, SumOfProducts):
        return {"products": [{"scale": sp.sstr(s), "scale_srepr": sp.srepr(s)} | {"orientation": _part_dict(o, g)}
                             for s, o, g in zip(est.scales_, est.orientations_, est.orientation_equations_, strict=True)],
                "scale_selection": est.scale_selection_}
    if not isinstance(est, FactorizedEquation):
        return {}
    return {
        "coefficient": _part_dict(est.coefficient_) | {
            "values": {str(k): float(v) for k, v in est.coefficients_.items()}, "method": est.coefficient_method_},
        "orientation": _part_dict(est.orientation_, est.orientation_equation_) | {
            "normalization": est.normalization_},
    }


def _dimension_verdict(expr: sp.Expr, options: dict[str, Any]) -> str:
    feature_units, target_unit = options.get("feature_units"), options.get("target_unit")
    if feature_units is None or target_unit is None:
        return "undetermined: no units given"
    units = {f: "dimensionless" for f in DESCRIPTOR_COLUMNS} | {"theta_deg": "degree", "phi_deg": "degree"}
    return check_dimensions(expr, units | dict(feature_units), target_unit).verdict


def _metrics(y: np.ndarray, pred: np.ndarray, report: dict[str, Any]) -> dict[str, float]:
    out = {f"train_{k}": v for k, v in scores(y, pred).items()}
    if not report:
        return out
    nested, fixed, interval = report["nested_cv"], report["fixed_form_cv"], report["interval"]
    out |= {f"cv_{k}": nested[k] for k in ("r2", "rmse", "mae")}
    out |= {"cv_n_splits": float(nested["n_folds"]), "cv_failed_folds": float(nested["failed_folds"])}
    fold_r2 = [f["nested_r2"] for f in report["folds"] if f.get("nested_r2") is not None]
    if fold_r2:  # per-fold mean and spread, as sklearn's cross_val_score reports them
        out |= {"cv_r2_mean": float(np.mean(fold_r2)), "cv_r2_std": float(np.std(fold_r2))}
    out |= {f"fixed_form_cv_{k}": fixed[k] for k in ("r2", "rmse", "mae")}
    out["fold_agreement"] = report["fold_agreement"]["fraction"]
    out["interval_half_width"] = interval.get("half_width")
    out["interval_relative_half_width"] = interval.get("relative_half_width")
    out["interval_coverage"] = interval.get("held_out_coverage")
    return {k: (float(v) if v is not None else float("nan")) for k, v in out.items()}


def _result(est: Any, data: pd.DataFrame, target: str, features: list[str], options: dict[str, Any],
            report: dict[str, Any], row_index: list[Any], n_dropped: int, timings: dict[str, float]) -> FitResult:
    y = data[target].to_numpy(dtype=float)
    expr = est.equation_
    pred = est.predict(data if options.get("factorize") else data[features])
    oof = report.pop("oof", np.full(len(y), np.nan))
    resid = (y - oof) if report else (y - pred)
    resid = resid[np.isfinite(resid)]
    rejected = [] if isinstance(est, FACTORISED) else est.rejected_
    return FitResult(
        target=target, features=features, engine=getattr(est, "engine_name_", None) or options.get("engine", "sparse"),
        engine_params=dict(options.get("engine_params") or {}), factorize=options.get("factorize"),
        seed=options.get("seed", 0), expr=expr, srepr=sp.srepr(expr), text=sp.sstr(expr), latex=sp.latex(expr),
        canonical_hash=canonical_hash(expr), selection=est.selection_, front=_front_dicts(est.front_, rejected),
        parts=_parts(est), metrics=_metrics(y, pred, report),
        cv={"scheme": report.get("cv_scheme", ""), "folds": report.get("folds", [])},
        oof_predictions=oof, predictions=pred, row_index=row_index,
        residual_std=float(np.std(resid, ddof=1)) if len(resid) > 1 else float("nan"),
        dimension_check=_dimension_verdict(expr, options), n_rows=len(data), n_dropped=n_dropped,
        orientation_features=list(est.orientation_features) if isinstance(est, FACTORISED) else [],
        timings=timings, versions=versions(), report=report, interval=report.get("interval", {}),
    )


__all__ = ["DEFAULT_INTERVAL_LEVEL", "FitResult", "canonical_hash", "expr_from_srepr", "fit_equation", "fit_report",
           "make_estimator", "predict"]
