"""Database-free core of ``matstore fit``: search, validate, select and cross-validate an equation.

:func:`fit_equation` runs a symbolic-regression engine on a table, removes candidates that
are not finite and bounded around the data domain (:mod:`matstore.models.validation`),
selects one equation by a recorded criterion (:mod:`matstore.models.selection`), scores it
on the training rows and by k-fold cross-validation (the engine is refitted per fold;
grouped folds keep all rows of a material together), checks its dimensions
(:mod:`matstore.models.dimensions`) and returns a plain :class:`FitResult` whose equation is
stored as a SymPy ``srepr`` string (never a pickle).  With ``factorize="orientation"`` the
equation is ``C(bulk) · g(orientation)`` (:mod:`matstore.models.factorize`).

Same data + spec + seed give the same selected equation and hash for the deterministic
engines (``sparse``; ``operon`` with ``n_threads=1`` and a generation budget that ends
before ``time_limit``).
"""

from __future__ import annotations

import ast
import hashlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import sympy as sp
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import GroupKFold, KFold, LeaveOneGroupOut

from matstore.models.dimensions import check_dimensions
from matstore.models.engines.base import (
    Candidate,
    EngineFitError,
    engine_class,
    evaluate_expr,
    expression_complexity,
    get_engine,
    real_or_nan,
    round_floats,
    versions,
)
from matstore.models.factorize import (
    DEFAULT_ORIENTATION_FEATURES,
    DESCRIPTOR_COLUMNS,
    FactorizationResult,
    PartFit,
    add_orientation_descriptors,
    fit_factorized,
)
from matstore.models.selection import parse_criterion, select_valid

FACTORIZATIONS = (None, "orientation")


# --------------------------------------------------------------------------- result


@dataclass
class FitResult:
    """Everything :func:`fit_equation` learned, as plain data.

    Attributes
    ----------
    target : str
    features : list of str
        Input features (for ``factorize="orientation"``: bulk features; the orientation
        descriptors are in ``orientation_features``).
    engine : str
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
        Recorded criterion, e.g. ``"knee"``.
    front : list of dict
        ``{"complexity", "loss", "srepr", "latex", "text", "valid", "reason"}`` per
        candidate of the full-data front (``valid``: passed the numerical checks; loss:
        training MSE, target unit²).  Factorised fits: each valid coefficient candidate
        times the selected g (complexity = C + g + 1).
    parts : dict
        Factorised fits only: ``{"coefficient": {...}, "orientation": {...}}`` each with
        ``front``, ``srepr``, ``text``, ``latex``, ``criterion``, ``features`` (coefficient
        part also ``values``: C per material; orientation part ``normalization``).
    metrics : dict of str to float
        ``train_r2, train_rmse, train_mae`` and ``cv_r2, cv_rmse, cv_mae`` (pooled over
        out-of-fold predictions), ``cv_r2_mean, cv_r2_std, cv_rmse_mean`` (per-fold mean/std, as
        ``sklearn.model_selection.cross_val_score``), ``cv_n_splits``, ``cv_failed_folds``.
        Units: target unit (RMSE, MAE).
    cv : dict
        ``scheme`` (e.g. ``"GroupKFold(5) by material"``), ``folds`` (list of per-fold dicts:
        srepr, r2, rmse, n_test, penalised).
    oof_predictions : ndarray, shape (n_rows,)
        Out-of-fold predictions aligned with ``row_index`` (NaN without CV).
    predictions : ndarray, shape (n_rows,)
        Predictions of ``expr`` on the training rows.
    row_index : list
        Index labels of the rows used (rows with NaN in target/features are dropped).
    residual_std : float
        Standard deviation (ddof=1) of out-of-fold residuals (training residuals without
        CV), target unit: the prediction uncertainty to store.
    dimension_check : str
        Verdict of :func:`~matstore.models.dimensions.check_dimensions`.
    n_rows, n_dropped : int
    orientation_features : list of str
    timings : dict of str to float
        Seconds: ``fit``, ``cv``, ``total``.
    versions : dict
        Package versions.
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (expr as srepr, arrays as lists)."""
        out = asdict(self)
        out["expr"] = self.srepr
        out["oof_predictions"] = [None if not np.isfinite(v) else float(v) for v in self.oof_predictions]
        out["predictions"] = [None if not np.isfinite(v) else float(v) for v in self.predictions]
        return out


# --------------------------------------------------------------------------- helpers


def canonical_hash(expr: sp.Expr, digits: int = 10) -> str:
    """sha256 hex digest of ``sympy.srepr`` of ``expr`` with Floats rounded to ``digits`` significant digits."""
    canon = round_floats(sp.sympify(expr), digits)
    return hashlib.sha256(sp.srepr(canon).encode()).hexdigest()


#: SymPy names allowed in a stored ``srepr`` (see :func:`expr_from_srepr`).
_SREPR_NAMES: dict[str, Any] = {
    name: getattr(sp, name)
    for name in (
        "Symbol", "Integer", "Float", "Rational", "Add", "Mul", "Pow", "exp", "log", "sqrt",
        "sin", "cos", "tan", "sinh", "cosh", "tanh", "asin", "acos", "atan", "Abs", "sign",
        "Min", "Max", "Half", "One", "Zero", "NegativeOne", "Pi", "E", "Exp1", "pi", "cbrt",
        "Piecewise", "ExprCondPair", "StrictLessThan", "LessThan", "StrictGreaterThan",
        "GreaterThan", "BooleanTrue", "true", "false", "Dummy",
    )
    if hasattr(sp, name)
}


def expr_from_srepr(text: str) -> sp.Expr:
    """Rebuild a SymPy expression from its ``srepr`` without ``eval``.

    Only calls of whitelisted SymPy constructors with literal arguments are accepted.

    Raises
    ------
    ValueError
        For anything else (unknown names, attribute access, non-literal values).
    """
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not a SymPy srepr: {exc}") from exc

    def build(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, str | int | float | bool):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -build(node.operand)
        if isinstance(node, ast.Name) and node.id in _SREPR_NAMES:
            return _SREPR_NAMES[node.id]
        if isinstance(node, ast.Tuple):
            return tuple(build(e) for e in node.elts)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _SREPR_NAMES:
            fn = _SREPR_NAMES[node.func.id]
            args = [build(a) for a in node.args]
            kwargs = {k.arg: build(k.value) for k in node.keywords if k.arg is not None}
            return fn(*args, **kwargs)
        raise ValueError(f"disallowed element in srepr: {ast.dump(node)[:80]}")

    out = build(tree.body)
    if not isinstance(out, sp.Basic):
        raise ValueError("srepr does not describe a SymPy expression")
    return out


def predict(expr_srepr: str | sp.Expr, df: pd.DataFrame) -> np.ndarray:
    """Evaluate a stored equation on the rows of ``df``.

    Parameters
    ----------
    expr_srepr : str or sympy.Expr
        ``sympy.srepr`` string as stored (parsed by :func:`expr_from_srepr`), or an expression.
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
    expr = expr_from_srepr(expr_srepr) if isinstance(expr_srepr, str) else sp.sympify(expr_srepr)
    names = {str(s) for s in expr.free_symbols}
    if names & set(DESCRIPTOR_COLUMNS) - set(df.columns):
        df = add_orientation_descriptors(df)
    missing = names - set(df.columns)
    if missing:
        raise KeyError(f"columns missing for symbols {sorted(missing)}")
    return real_or_nan(evaluate_expr(expr, df.reset_index(drop=True)))


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


def _metrics(y: np.ndarray, pred: np.ndarray, prefix: str) -> dict[str, float]:
    ok = np.isfinite(pred)
    if ok.sum() < 2:
        return {f"{prefix}_r2": float("nan"), f"{prefix}_rmse": float("nan"), f"{prefix}_mae": float("nan")}
    return {
        f"{prefix}_r2": float(r2_score(y[ok], pred[ok])),
        f"{prefix}_rmse": float(np.sqrt(mean_squared_error(y[ok], pred[ok]))),
        f"{prefix}_mae": float(mean_absolute_error(y[ok], pred[ok])),
    }


def _make_engine(engine: str, params: dict[str, Any], seed: int):
    params = dict(params)
    if "random_state" in engine_class(engine).default_parameters and "random_state" not in params:
        params["random_state"] = seed
    return get_engine(engine, **params)


#: Grouped cross-validation without ``n_splits`` is leave-one-group-out up to this many groups.
MAX_LEAVE_ONE_GROUP_OUT = 20


def _splitter(n_rows: int, groups: np.ndarray | None, n_splits: int | None, seed: int):
    if groups is not None:
        n_groups = len(pd.unique(groups))
        if n_groups < 2:
            raise ValueError("cross-validation by groups needs at least two groups")
        if n_splits is None:
            n_splits = n_groups if n_groups <= MAX_LEAVE_ONE_GROUP_OUT else 10
        if n_groups <= n_splits:
            return LeaveOneGroupOut(), f"LeaveOneGroupOut ({n_groups} groups)"
        return GroupKFold(n_splits=n_splits), f"GroupKFold({n_splits})"
    k = min(n_splits or 5, n_rows)
    return KFold(n_splits=k, shuffle=True, random_state=seed), f"KFold({k}, shuffle, random_state={seed})"


# --------------------------------------------------------------------------- main entry


def fit_equation(
    table: pd.DataFrame,
    target: str,
    features: Sequence[str],
    *,
    engine: str = "sparse",
    engine_params: dict[str, Any] | None = None,
    factorize: str | None = None,
    selection: str = "knee",
    groups: str | None = None,
    n_splits: int | None = None,
    seed: int = 0,
    material: str | None = None,
    orientation_features: Sequence[str] | None = None,
    orientation_engine_params: dict[str, Any] | None = None,
    coefficient: str = "lsq",
    coefficient_selection: str | None = "cv:1se",
    coefficient_form: str = "auto",
    reference_orientation: Sequence[float] | None = (1, 1, 1),
    feature_units: dict[str, Any] | None = None,
    target_unit: Any = None,
    margin: float = 0.1,
    cross_validate: bool = True,
) -> FitResult:
    """Fit, validate, select and cross-validate a closed-form equation for ``target``.

    Parameters
    ----------
    table : DataFrame, shape (n_rows, n_columns)
        One row per observation (material, or material × orientation for factorised fits).
        Rows with NaN in ``target`` or ``features`` are dropped (counted in ``n_dropped``).
    target : str
        Target column (unit: ``target_unit``).
    features : sequence of str
        Feature columns; for ``factorize="orientation"`` the *bulk* features of C.
    engine : {"sparse", "operon", "pysr"}, default "sparse"
    engine_params : dict, optional
        Engine keyword parameters; ``random_state`` defaults to ``seed``.
    factorize : {None, "orientation"}
        ``"orientation"`` fits ``y = C(features) · g(orientation descriptors)``.
    selection : str, default "knee"
        Criterion (``"knee"``, ``"best"``, ``"within:5%"``, ``"min_loss"``,
        ``"max_complexity:N"``).
    groups : str, optional
        Column for grouped k-fold (e.g. material): ``LeaveOneGroupOut`` when there are at
        most ``n_splits`` groups, else ``GroupKFold(n_splits)``.  Defaults to ``material``
        for factorised fits; otherwise shuffled ``KFold(n_splits, random_state=seed)``.
    n_splits : int, optional
        Default: leave-one-group-out for grouped fits with at most 20 groups (so a
        surface model is scored on metals it has never seen, one at a time), else 10
        group folds; 5 shuffled folds for ungrouped fits.
    seed : int, default 0
    material : str, optional
        Material column (required for ``factorize="orientation"``; defaults to ``groups``).
    orientation_features : sequence of str, optional
        Descriptors for g (default ``normal_x, normal_y, normal_z``).
    orientation_engine_params : dict, optional
        Engine parameters for g (default: ``engine_params``).
    coefficient : {"lsq", "reference"}
        Per-material coefficient estimator (factorised fits).
    coefficient_selection : str or None, default "cv:1se"
        Criterion for C(bulk) in factorised fits (see :func:`~.factorize.fit_factorized`).
    coefficient_form : {"auto", "scaling", "free"}, default "auto"
        Form of C(bulk) in factorised fits: a dimensionally homogeneous scaling law when the
        units allow (``auto``), or the engine's free search (see
        :func:`~.factorize.fit_factorized`).
    reference_orientation : (3,) Miller index or normal, default (1, 1, 1)
    feature_units : dict, optional
        Units of features (and of orientation descriptors; they default to dimensionless).
    target_unit : str, optional
    margin : float, default 0.1
        Domain widening of the numerical checks.
    cross_validate : bool, default True

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
    matstore.models.engines.base.EngineSetupError
        The engine cannot run here (e.g. PySR without Julia).
    matstore.models.engines.base.EngineFitError
        The engine failed on the full data.
    """
    t_start = time.perf_counter()
    features = list(features)
    engine_params = dict(engine_params or {})
    parse_criterion(selection)
    if factorize not in FACTORIZATIONS:
        raise ValueError(f"factorize must be one of {FACTORIZATIONS}, got {factorize!r}")
    engine_class(engine)  # KeyError early for unknown names
    if factorize == "orientation":
        material = material or groups
        if material is None:
            raise ValueError("factorize='orientation' needs a material column (material= or groups=)")
        groups = groups or material
    needed = [target, *features] + ([material] if material else []) + ([groups] if groups else [])
    missing = [c for c in dict.fromkeys(needed) if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}")

    data = table.dropna(subset=[target, *features])
    n_dropped = len(table) - len(data)
    if len(data) < 3:
        raise ValueError(f"need at least 3 complete rows, got {len(data)}")
    row_index = list(data.index)
    data = data.reset_index(drop=True)
    if factorize == "orientation":
        data = add_orientation_descriptors(data)
    y = data[target].to_numpy(dtype=float)
    o_feats = list(orientation_features or DEFAULT_ORIENTATION_FEATURES) if factorize else []

    def fit_once(train: pd.DataFrame, holdout: pd.DataFrame | None, fold_seed: int):
        """Returns (expr, criterion, front dicts, parts, factorization or None)."""
        if factorize == "orientation":
            fr = fit_factorized(
                train, target, features, material=material, orientation_features=o_feats,
                engine=engine, engine_params=engine_params,
                orientation_engine_params=orientation_engine_params, selection=selection,
                coefficient=coefficient, coefficient_selection=coefficient_selection,
                reference=reference_orientation, margin=margin,
                seed=fold_seed, holdout=holdout, coefficient_form=coefficient_form,
                feature_units=feature_units, target_unit=target_unit, groups=groups,
            )
            return fr.expr, fr.coefficient.criterion, fr
        eng = _make_engine(engine, engine_params, fold_seed)
        X = train[features].astype(float).reset_index(drop=True)
        eng.fit(X, train[target].to_numpy(dtype=float))
        hold = holdout[features].astype(float) if holdout is not None else None
        cand, crit, rejected = select_valid(eng.pareto_front_, X, selection, margin=margin, holdout=hold,
                                            y=train[target].to_numpy(dtype=float))
        return cand.expr, crit, (eng.pareto_front_, rejected)

    # ---- full fit
    t0 = time.perf_counter()
    expr, criterion, info = fit_once(data, None, seed)
    t_fit = time.perf_counter() - t0
    parts: dict[str, Any] = {}
    if factorize == "orientation":
        fr: FactorizationResult = info

        def part_dict(p: PartFit) -> dict[str, Any]:
            return {
                "front": _front_dicts(p.front, p.rejected),
                "srepr": sp.srepr(p.expr),
                "text": sp.sstr(p.expr),
                "latex": sp.latex(p.expr),
                "criterion": p.criterion,
                "complexity": expression_complexity(p.expr),
                "features": list(p.features),
                "canonical_hash": canonical_hash(p.expr),
                "engine": p.engine,
                "form": p.form,
            }

        parts["coefficient"] = part_dict(fr.coefficient) | {
            "values": {str(k): float(v) for k, v in fr.coefficients.items()},
            "method": fr.coefficient_method,
        }
        parts["orientation"] = part_dict(fr.orientation) | {"normalization": fr.normalization}
        # front of the combined equation: each valid C candidate times the selected g
        rejected_c = {sp.srepr(c.expr) for c, _ in fr.coefficient.rejected}
        g_expr = fr.orientation.expr
        g_cx = expression_complexity(g_expr)
        combined = []
        for c in fr.coefficient.front:
            if sp.srepr(c.expr) in rejected_c:
                continue
            e = c.expr * g_expr
            p = predict(e, data)
            loss = float(np.mean((p - y) ** 2)) if np.all(np.isfinite(p)) else float("inf")
            combined.append(Candidate(c.complexity + g_cx + 1, loss, e))
        front = _front_dicts(combined)
    else:
        eng_front, rejected = info
        front = _front_dicts(eng_front, rejected)

    pred = predict(expr, data)
    metrics = _metrics(y, pred, "train")

    # ---- cross-validation
    t0 = time.perf_counter()
    oof = np.full(len(data), np.nan)
    cv_info: dict[str, Any] = {"scheme": "", "folds": []}
    if cross_validate:
        grp = data[groups].to_numpy() if groups else None
        splitter, scheme = _splitter(len(data), grp, n_splits, seed)
        cv_info["scheme"] = scheme + (f" by {groups}" if groups else "")
        fold_r2, fold_rmse, failed = [], [], 0
        for k, (tr, te) in enumerate(splitter.split(data, y, grp)):
            train, test = data.iloc[tr].reset_index(drop=True), data.iloc[te].reset_index(drop=True)
            penalised = False
            try:
                f_expr, _, _ = fit_once(train, test, seed)
                p = predict(f_expr, test)
                if not np.all(np.isfinite(p)):
                    raise ValueError("non-finite held-out prediction")
                f_srepr = sp.srepr(f_expr)
            except (ValueError, EngineFitError):
                # no candidate usable on this fold: penalise with the training mean
                p = np.full(len(te), float(np.mean(y[tr])))
                penalised, f_srepr = True, ""
                failed += 1
            oof[te] = p
            fold = {"fold": k, "n_test": len(te), "srepr": f_srepr, "penalised": penalised}
            if len(te) >= 2:
                fold["r2"] = float(r2_score(y[te], p))
                fold_r2.append(fold["r2"])
            fold["rmse"] = float(np.sqrt(mean_squared_error(y[te], p)))
            fold_rmse.append(fold["rmse"])
            cv_info["folds"].append(fold)
        metrics |= _metrics(y, oof, "cv")
        metrics |= {
            "cv_r2_mean": float(np.mean(fold_r2)) if fold_r2 else float("nan"),
            "cv_r2_std": float(np.std(fold_r2)) if fold_r2 else float("nan"),
            "cv_rmse_mean": float(np.mean(fold_rmse)),
            "cv_n_splits": float(len(cv_info["folds"])),
            "cv_failed_folds": float(failed),
        }
    t_cv = time.perf_counter() - t0
    resid = y - (oof if cross_validate else pred)
    resid = resid[np.isfinite(resid)]
    residual_std = float(np.std(resid, ddof=1)) if len(resid) > 1 else float("nan")

    # ---- dimensions
    if feature_units is not None and target_unit is not None:
        units = {f: "dimensionless" for f in DESCRIPTOR_COLUMNS if f != "theta_deg" and f != "phi_deg"}
        units |= {"theta_deg": "degree", "phi_deg": "degree"}
        units |= dict(feature_units)
        dim = check_dimensions(expr, units, target_unit).verdict
    else:
        dim = "undetermined: no units given"

    return FitResult(
        target=target,
        features=features,
        engine=engine,
        engine_params=engine_params,
        factorize=factorize,
        seed=seed,
        expr=expr,
        srepr=sp.srepr(expr),
        text=sp.sstr(expr),
        latex=sp.latex(expr),
        canonical_hash=canonical_hash(expr),
        selection=criterion,
        front=front,
        parts=parts,
        metrics=metrics,
        cv=cv_info,
        oof_predictions=oof,
        predictions=pred,
        row_index=row_index,
        residual_std=residual_std,
        dimension_check=dim,
        n_rows=len(data),
        n_dropped=n_dropped,
        orientation_features=o_feats,
        timings={"fit": t_fit, "cv": t_cv, "total": time.perf_counter() - t_start},
        versions=versions(),
    )


__all__ = ["FitResult", "canonical_hash", "expr_from_srepr", "fit_equation", "predict"]
