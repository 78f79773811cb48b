"""Common interface of the symbolic-regression engines used by ``matstore fit``.

Every engine is a scikit-learn-shaped estimator: ``__init__`` only stores its keyword
arguments under the same names (so :meth:`get_params`, :meth:`set_params` and
:func:`sklearn.base.clone` work), :meth:`SymbolicEngine.fit` takes a
:class:`pandas.DataFrame` ``X`` of shape ``(n_samples, n_features)`` and a target ``y`` of
shape ``(n_samples,)``, and learned attributes end in ``_``.  The main learned attribute is
``pareto_front_``: a list of :class:`Candidate` (complexity, training loss, SymPy
expression) sorted by increasing complexity, strictly decreasing loss, whose SymPy symbols
are named exactly as the DataFrame columns.  Fitted engines hold no foreign (C++/Julia)
objects, so they can be pickled and cloned.

Complexity is measured uniformly over engines by :func:`expression_complexity` (number of
nodes of the SymPy tree, n-ary ``Add``/``Mul`` counted as ``n - 1`` binary operators), and
the loss is the mean squared error on the training rows computed in float64 by
:func:`mse_of`, so fronts from different engines are comparable.

References
----------
.. [1] M. Cranmer, "Interpretable Machine Learning for Science with PySR and
   SymbolicRegression.jl", arXiv:2305.01582 (2023).
.. [2] B. Burlacu, G. Kronberger, M. Kommenda, "Operon C++: an efficient genetic
   programming framework for symbolic regression", GECCO 2020 Companion,
   doi:10.1145/3377929.3398099.
.. [3] R. Ouyang, S. Curtarolo, E. Ahmetcik, M. Scheffler, L. M. Ghiringhelli, "SISSO: a
   compressed-sensing method for identifying the best low-dimensional descriptor in an
   immensity of offered candidates", Phys. Rev. Materials 2, 083802 (2018).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import sympy as sp
from sklearn.base import BaseEstimator, RegressorMixin

from matstore.models.expressions import call_compiled, lambdify_expr, real_or_nan
from matstore.models.expressions import evaluate_raw as evaluate_expr


class EngineSetupError(RuntimeError):
    """The engine cannot be set up: a package, a runtime (Julia) or a setting is missing."""


class EngineFitError(RuntimeError):
    """The engine was set up but failed while fitting (bad data, crash inside the backend)."""


@dataclass(frozen=True)
class Candidate:
    """One equation of a Pareto front.

    Attributes
    ----------
    complexity : int
        Node count of ``expr`` (see :func:`expression_complexity`).
    loss : float
        Mean squared error on the training rows, in (target unit)².
    expr : sympy.Expr
        The equation; its free symbols are named as the training DataFrame columns.
    """

    complexity: int
    loss: float
    expr: sp.Expr


# --------------------------------------------------------------------------- helpers


def expression_complexity(expr: sp.Expr) -> int:
    """Complexity of a SymPy expression: the number of nodes of its tree.

    Leaves (symbols, numbers) count 1; a function call or ``Pow`` counts 1 plus its
    arguments; an n-ary ``Add``/``Mul`` counts ``n - 1`` (as a chain of binary operators,
    the convention of PySR/Operon), plus its arguments.

    Parameters
    ----------
    expr : sympy.Expr

    Returns
    -------
    int
        >= 1.
    """
    expr = sp.sympify(expr)
    if not expr.args:
        return 1
    own = len(expr.args) - 1 if isinstance(expr, sp.Add | sp.Mul) else 1
    return own + sum(expression_complexity(a) for a in expr.args)


def mse_of(expr: sp.Expr, X: pd.DataFrame, y: np.ndarray) -> float:
    """Mean squared error of ``expr`` on ``(X, y)``; ``inf`` when any prediction is not finite."""
    pred = real_or_nan(evaluate_expr(expr, X))
    if not np.all(np.isfinite(pred)):
        return float("inf")
    return float(np.mean((pred - np.asarray(y, dtype=float)) ** 2))


def round_floats(expr: sp.Expr, digits: int = 10) -> sp.Expr:
    """Replace every Float of ``expr`` by the same number rounded to ``digits`` significant digits."""
    reps = {f: sp.Float(float(f"{float(f):.{digits}g}"), 15) for f in expr.atoms(sp.Float)}
    return expr.xreplace(reps) if reps else expr


def pareto_filter(candidates: Iterable[Candidate], *, rtol: float = 1e-9, atol: float = 0.0) -> list[Candidate]:
    """Keep the non-dominated candidates, sorted by increasing complexity.

    A candidate is kept when its loss is lower than that of every less complex kept
    candidate by more than ``rtol * loss + atol`` (so numerically equal losses keep only the
    simplest equation).  Candidates with non-finite loss are dropped.  Among equal
    complexity the lowest loss (then the shortest ``srepr``, for determinism) wins.
    """
    from itertools import groupby

    finite = sorted((c for c in candidates if np.isfinite(c.loss)), key=lambda c: (c.complexity, c.loss))
    # ties of (complexity, loss) broken by the srepr, computed for the ties only (it is slow:
    # sorted() calls its key even on a one-element group)
    groups = [list(tied) for _, tied in groupby(finite, key=lambda c: (c.complexity, c.loss))]
    finite = [c for tied in groups
              for c in (tied if len(tied) == 1 else sorted(tied, key=lambda c: (len(sp.srepr(c.expr)), sp.srepr(c.expr))))]
    kept: list[Candidate] = []
    for cand in finite:
        if kept and cand.complexity == kept[-1].complexity:
            continue
        if kept and not cand.loss < kept[-1].loss - (rtol * abs(kept[-1].loss) + atol):
            continue
        kept.append(cand)
    return kept


@dataclass(frozen=True, eq=False)
class _ConstantTemplate:
    """``expr`` with its free Float constants replaced by parameters, compiled once.

    ``linear`` when ``expr = offset(X) + Σ_k c_k·basis_k(X)``: its least-squares constants
    are one linear solve.
    """

    start: np.ndarray  # shape (n_params,), the constants of ``expr``
    template: sp.Expr
    names: tuple[str, ...]  # the feature columns it reads
    linear: bool
    function: Any  # compiled template: f(*constants, *columns)

    def values(self, theta: np.ndarray, cols: list[np.ndarray], n: int) -> np.ndarray:
        """Real template values on ``n`` rows, shape (n,); NaN where undefined.

        Call inside ``np.errstate(all="ignore")``: this runs in the inner loop of the
        least-squares solver, so the usual float64 result skips the generic conversion.
        """
        out = self.function(*theta, *cols)
        if isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == (n,):
            return out
        return real_or_nan(call_compiled(self.function, [*theta, *cols], n))

    def jacobian(self, theta: np.ndarray, cols: list[np.ndarray], y: np.ndarray) -> np.ndarray:
        """Forward-difference Jacobian of :func:`_masked_residual` in ``theta``, shape (n, n_params).

        The steps are scipy's ``"2-point"`` ones; all constants are stepped in one
        broadcast call of the compiled template (one call per constant when the template
        does not broadcast).  Call inside ``np.errstate(all="ignore")``.
        """
        n, k = len(y), len(theta)
        step = _FD_STEP * np.where(theta >= 0, 1.0, -1.0) * np.maximum(1.0, np.abs(theta))
        step = (theta + step) - theta
        stepped = theta + np.diag(step)  # row j: theta with constant j moved by step[j]
        try:
            out = np.broadcast_to(self.function(*(stepped[:, j:j + 1] for j in range(k)), *cols), (k, n))
        except (TypeError, ValueError, AttributeError, ZeroDivisionError, OverflowError):
            out = None
        if out is None or out.dtype != np.float64:
            out = np.stack([self.values(row, cols, n) for row in stepped])
        moved = _masked_residual(out, y)
        return ((moved - _masked_residual(self.values(theta, cols, n), y)) / step[:, None]).T

    def basis(self, cols: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
        """Of a linear template: ``offset`` (shape (n,)) and ``basis`` (shape (n, n_params)), by evaluation."""
        offset = self.values(np.zeros(len(self.start)), cols, n)
        return offset, np.column_stack([self.values(e, cols, n) - offset for e in np.eye(len(self.start))])


#: Relative step of the forward differences (scipy's ``"2-point"`` default, √ machine ε).
_FD_STEP = float(np.sqrt(np.finfo(float).eps))
#: What a non-finite residual is replaced by, so that the least-squares solver steps away from it.
_NON_FINITE_RESIDUAL = 1e150


def _masked_residual(values: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``values − y`` with non-finite entries replaced by :data:`_NON_FINITE_RESIDUAL`; the shape of ``values``."""
    out = values - y
    return np.where(np.isfinite(out), out, _NON_FINITE_RESIDUAL)


def _is_linear(expr: sp.Expr, params: frozenset[sp.Symbol]) -> bool:
    """Whether ``expr`` is affine in ``params``, read from its tree (conservative: ``False`` when unsure)."""
    if not (expr.free_symbols & params) or expr in params:
        return True
    if isinstance(expr, sp.Add):
        return all(_is_linear(a, params) for a in expr.args)
    if isinstance(expr, sp.Mul):
        holding = [a for a in expr.args if a.free_symbols & params]
        return len(holding) == 1 and _is_linear(holding[0], params)
    return False


@lru_cache(maxsize=4096)
def _constant_template(expr: sp.Expr) -> _ConstantTemplate | None:
    """The :class:`_ConstantTemplate` of ``expr``; ``None`` when it has no free Float constant.

    Float exponents stay fixed.  Cached: cross-validation refits the same forms in every fold.
    """
    floats = sorted(
        {f for f in expr.atoms(sp.Float) if not any(isinstance(p, sp.Pow) and p.exp == f for p in expr.atoms(sp.Pow))},
        key=lambda f: (float(f), str(f)),
    )
    if not floats:
        return None
    params = tuple(sp.symbols(f"__c0:{len(floats)}"))
    template = expr.xreplace(dict(zip(floats, params, strict=True)))
    names = tuple(sorted(str(s) for s in expr.free_symbols))
    return _ConstantTemplate(np.array([float(f) for f in floats]), template, names,
                             _is_linear(template, frozenset(params)),
                             lambdify_expr(template, [str(p) for p in params] + list(names)))


#: Shortest engine run under a wall-clock limit, seconds (pyoperon's ``max_time`` counts whole
#: seconds, at least 1); engines that pace their runs by generations go below it.
MIN_RUN_SECONDS = 1.0

#: Function evaluations of the nonlinear least-squares refit of an equation's constants.
REFIT_MAX_NFEV = 200

#: Relative cost change at which a refit of constants stops (scipy's ``ftol``): scipy's
#: default for constants that are stored, looser for the refits that only score a form (on a
#: cross-validation fold, :func:`refit_predict`; an engine's front, before
#: :class:`~matstore.models.estimators.EquationSearch` refits the chosen one's to
#: :data:`REFIT_FTOL`).  Over-parameterised forms (a rational with a redundant scale) crawl
#: along flat directions: at 1e-5 they stop within 0.3 % of the optimal MSE, eight times
#: sooner (docs/models.md, "Time budget").
REFIT_FTOL = 1e-8
SCORING_FTOL = 1e-5


def refit_constants(
    expr: sp.Expr, X: pd.DataFrame, y: np.ndarray, *, max_nfev: int = REFIT_MAX_NFEV, strict: bool = False,
    ftol: float = REFIT_FTOL,
) -> sp.Expr | None:
    """Re-optimise the Float constants of ``expr`` by float64 least squares.

    Backends such as Operon optimise constants in float32; this polishes them.  Exponents
    are left fixed.  Constants that enter linearly (``expr = offset + Σ c_k·basis_k``) are
    solved for exactly (:func:`numpy.linalg.lstsq`); the others by
    :func:`scipy.optimize.least_squares` (trust-region reflective).  The original is
    returned when optimisation fails or does not improve the training MSE.

    Parameters
    ----------
    expr : sympy.Expr
    X : DataFrame, shape (n_samples, n_features)
    y : ndarray, shape (n_samples,)
    max_nfev : int
        Budget of function evaluations for :func:`scipy.optimize.least_squares`.
    strict : bool, default False
        Cross-validation use: return ``None`` when the rows cannot determine the constants
        (fewer rows than constants) or the refitted equation is not finite on them, and
        never fall back to the original constants (they may have seen held-out rows).
    ftol : float, default :data:`REFIT_FTOL`
        Relative cost change at which the nonlinear refit stops (:data:`SCORING_FTOL` for
        constants that only score a form).

    Returns
    -------
    sympy.Expr or None
    """
    tpl = _constant_template(expr)
    if tpl is None:
        return expr
    theta = _refitted(tpl, X, np.asarray(y, dtype=float), max_nfev, strict, ftol)
    if theta is None:
        return None if strict else expr
    return tpl.template.xreplace({sp.Symbol(f"__c{k}"): sp.Float(float(v), 15) for k, v in enumerate(theta)})


def refit_candidate(cand: Candidate, X: pd.DataFrame, y: np.ndarray, *, strict: bool = True,
                    ftol: float = REFIT_FTOL) -> Candidate | None:
    """``cand``'s form with its constants refitted on ``(X, y)`` and its training MSE on them.

    ``X``: DataFrame, shape (n_samples, n_features); ``y``: shape (n_samples,), in the target's
    unit (the MSE in its square).  :func:`refit_constants` (``strict`` and ``ftol`` as there);
    ``None`` when it returns ``None`` (strict: the rows cannot determine the constants or the
    refitted form is not finite on them).  Raises nothing of its own.
    """
    refitted = refit_constants(cand.expr, X, y, strict=strict, ftol=ftol)
    return None if refitted is None else Candidate(cand.complexity, mse_of(refitted, X, y), refitted)


def refit_predict(expr: sp.Expr, X_train: pd.DataFrame, y_train: np.ndarray, X_test: pd.DataFrame) -> np.ndarray | None:
    """Predictions on ``X_test`` (shape (n_test,)) of ``expr``'s form, its constants refitted on the training rows.

    :func:`refit_constants` with ``strict=True`` (``None`` when the training rows cannot
    determine the constants) stopping at :data:`SCORING_FTOL`, evaluated without compiling
    the refitted equation anew: cross-validation calls it once per form and fold.  NaN where
    the equation is undefined.
    """
    tpl = _constant_template(expr)
    if tpl is None:
        return real_or_nan(evaluate_expr(expr, X_test))
    theta = _refitted(tpl, X_train, np.asarray(y_train, dtype=float), REFIT_MAX_NFEV, True, SCORING_FTOL)
    if theta is None:
        return None
    with np.errstate(all="ignore"):
        return tpl.values(theta, [np.asarray(X_test[n], dtype=float) for n in tpl.names], len(X_test)).copy()


def _refitted(tpl: _ConstantTemplate, X: pd.DataFrame, y: np.ndarray, max_nfev: int, strict: bool,
              ftol: float = REFIT_FTOL) -> np.ndarray | None:
    """Least-squares constants of ``tpl`` on ``(X, y)``; ``None`` for :func:`refit_constants`' fallbacks."""
    n_params = len(tpl.start)
    if n_params > len(y) or (n_params == len(y) and not strict):
        return None
    cols = [np.asarray(X[n], dtype=float) for n in tpl.names]

    def resid(theta: np.ndarray) -> np.ndarray:
        return _masked_residual(tpl.values(theta, cols, len(y)), y)

    with np.errstate(all="ignore"):
        theta = _linear_solution(tpl, cols, y) if tpl.linear else None
        if theta is None:
            theta = _nonlinear_solution(tpl, resid, lambda t: tpl.jacobian(t, cols, y), max_nfev, ftol)
        if theta is None:
            return None
        r = resid(theta)
        after = float(np.mean(r**2)) if np.all(np.abs(r) < _NON_FINITE_RESIDUAL) else float("inf")
        if strict or not np.isfinite(after):
            return theta if np.isfinite(after) else None
        return theta if after <= float(np.mean(resid(tpl.start) ** 2)) else None


def _linear_solution(tpl: _ConstantTemplate, cols: list[np.ndarray], y: np.ndarray) -> np.ndarray | None:
    """Least-squares constants of a linear template; ``None`` where its columns are not finite."""
    offset, basis = tpl.basis(cols, len(y))
    if not (np.all(np.isfinite(offset)) and np.all(np.isfinite(basis))):
        return None
    theta, *_ = np.linalg.lstsq(basis, y - offset, rcond=None)
    return theta


def _nonlinear_solution(tpl: _ConstantTemplate, resid: Any, jac: Any, max_nfev: int, ftol: float) -> np.ndarray | None:
    """Trust-region least squares from the current constants, stopping at ``ftol``; ``None`` when it fails."""
    from scipy.optimize import least_squares

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return least_squares(resid, tpl.start, jac=jac, method="trf", max_nfev=max_nfev, ftol=ftol,
                                 x_scale="jac").x
    except (ValueError, TypeError, ZeroDivisionError, OverflowError, FloatingPointError):
        return None


def prune_small_terms(expr: sp.Expr, X: pd.DataFrame, y: np.ndarray, *, rtol: float = 1e-10) -> sp.Expr:
    """Drop additive numeric constants of ``expr`` whose removal leaves the MSE unchanged.

    A term is removed when the MSE grows by less than ``rtol * var(y)`` (e.g. an intercept
    of 1e-7 left by a float32 optimiser on noise-free data).
    """
    yv = np.asarray(y, dtype=float)
    tol = rtol * max(float(np.var(yv)), 1e-300)
    base = mse_of(expr, X, yv)
    if not isinstance(expr, sp.Add):
        return expr
    for term in expr.args:
        if term.is_number:
            trial = expr - term
            if mse_of(trial, X, yv) <= base + tol:
                return trial
    return expr


def _safe_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    """Versions of Python and of the packages that determine fitting results.

    Returns
    -------
    dict
        ``{"python": "3.12.3", "numpy": ..., "sympy": ..., "scikit-learn": ..., "scipy": ...,
        "pandas": ..., "pint": ..., "pyoperon": ... or None, "pysr": ... or None}``.
    """
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("numpy", "scipy", "pandas", "sympy", "scikit-learn", "pint", "pyoperon", "pysr"):
        out[dist] = _safe_version(dist)
    return out


# --------------------------------------------------------------------------- base class


class SymbolicEngine(BaseEstimator, RegressorMixin):
    """Base class of symbolic-regression engines (scikit-learn estimator shape).

    Subclasses define ``name``, ``default_parameters`` (the keyword defaults of their
    ``__init__``) and :meth:`_fit_front`.  ``__init__`` of a subclass only stores its keyword
    arguments under the same names.

    Attributes
    ----------
    pareto_front_ : list of Candidate
        Set by :meth:`fit`; sorted by increasing complexity and strictly decreasing loss.
    feature_names_in_ : ndarray of str, shape (n_features,)
    n_features_in_ : int
    fit_seconds_ : float
        Wall time of the last :meth:`fit`.
    """

    name: ClassVar[str] = "base"
    default_parameters: ClassVar[dict[str, Any]] = {}

    # -- public API -------------------------------------------------------------------

    def fit(self, X: pd.DataFrame, y: Sequence[float] | np.ndarray | pd.Series) -> SymbolicEngine:
        """Search equations ``y ≈ f(X)``.

        Parameters
        ----------
        X : DataFrame, shape (n_samples, n_features)
            Numeric, finite features; column names become SymPy symbol names.
        y : array-like, shape (n_samples,)
            Finite target values.

        Returns
        -------
        self

        Raises
        ------
        EngineSetupError
            When the backend is not usable here.
        EngineFitError
            When the backend fails or returns no finite equation.
        ValueError
            When ``X``/``y`` are malformed (not a DataFrame, NaN, length mismatch).
        """
        import time

        X, yv = self._check_X_y(X, y)
        t0 = time.perf_counter()
        cands = self._fit_front(X, yv)
        front = pareto_filter(self._rescore(cands, X, yv), atol=1e-14 * max(float(np.var(yv)), 1e-300))
        if not front:
            raise EngineFitError(f"{self.name}: no finite equation was found")
        self.pareto_front_ = front
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def predict(self, X: pd.DataFrame, expr: sp.Expr | None = None) -> np.ndarray:
        """Evaluate ``expr`` (default: the lowest-loss equation of the front) on ``X``.

        Returns
        -------
        ndarray, shape (n_samples,)
        """
        if not hasattr(self, "pareto_front_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(f"{type(self).__name__} is not fitted")
        if expr is None:
            expr = min(self.pareto_front_, key=lambda c: c.loss).expr
        return real_or_nan(evaluate_expr(expr, X))

    def versions(self) -> dict[str, str | None]:
        """Package versions relevant to this engine (see :func:`versions`)."""
        return versions()

    # -- for subclasses ---------------------------------------------------------------

    def _fit_front(self, X: pd.DataFrame, y: np.ndarray) -> list[Candidate]:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def _check_X_y(X: pd.DataFrame, y: Any) -> tuple[pd.DataFrame, np.ndarray]:
        if not isinstance(X, pd.DataFrame):
            raise ValueError("X must be a pandas DataFrame whose columns name the features")
        if X.shape[1] == 0 or len(X) == 0:
            raise ValueError("X must have at least one row and one column")
        if len(set(map(str, X.columns))) != X.shape[1]:
            raise ValueError("X has duplicate column names")
        Xf = X.copy()
        Xf.columns = [str(c) for c in X.columns]
        try:
            Xf = Xf.astype(float)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"X must be numeric: {exc}") from exc
        yv = np.asarray(y, dtype=float).reshape(-1)
        if len(yv) != len(Xf):
            raise ValueError(f"X has {len(Xf)} rows but y has {len(yv)}")
        if not np.all(np.isfinite(Xf.to_numpy())) or not np.all(np.isfinite(yv)):
            raise ValueError("X and y must be finite (drop or impute NaN/inf first)")
        return Xf.reset_index(drop=True), yv

    @staticmethod
    def _rescore(cands: Iterable[Candidate], X: pd.DataFrame, y: np.ndarray) -> list[Candidate]:
        """Recompute the complexity of every candidate uniformly; drop unknown symbols.

        Engines must report the loss as the float64 training MSE (:func:`mse_of`); a
        non-finite or negative loss is recomputed here.
        """
        out = []
        cols = set(X.columns)
        for c in cands:
            expr = sp.sympify(c.expr)
            if {str(s) for s in expr.free_symbols} - cols:
                continue
            loss = float(c.loss)
            if not np.isfinite(loss) or loss < 0:
                loss = mse_of(expr, X, y)
            out.append(Candidate(expression_complexity(expr), loss, expr))
        return out


# --------------------------------------------------------------------------- registry

_REGISTRY: dict[str, str] = {
    "operon": "matstore.models.engines.operon:OperonEngine",
    "sparse": "matstore.models.engines.sparse:SparseEngine",
    "pysr": "matstore.models.engines.pysr:PySREngine",
}


def available_engines() -> list[str]:
    """Names accepted by :func:`get_engine` (registered, not necessarily usable here)."""
    return sorted(_REGISTRY)


def engine_class(name: str) -> type[SymbolicEngine]:
    """The engine class registered under ``name``.

    Raises
    ------
    KeyError
        If no engine has that name.
    """
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown engine {name!r}; known: {', '.join(available_engines())}") from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


def get_engine(name: str, **params: Any) -> SymbolicEngine:
    """Instantiate the engine ``name`` with keyword parameters ``params``.

    Raises
    ------
    KeyError
        Unknown engine name.
    TypeError
        Unknown parameter for that engine.
    """
    cls = engine_class(name)
    unknown = set(params) - set(cls.default_parameters)
    if unknown:
        raise TypeError(f"engine {name!r} has no parameter(s) {sorted(unknown)}; known: {sorted(cls.default_parameters)}")
    return cls(**params)


def register_engine(name: str, target: str) -> None:
    """Register an engine class given as ``"module:Class"`` under ``name``."""
    _REGISTRY[name] = target


__all__ = [
    "MIN_RUN_SECONDS",
    "Candidate",
    "EngineFitError",
    "EngineSetupError",
    "SymbolicEngine",
    "available_engines",
    "engine_class",
    "evaluate_expr",
    "expression_complexity",
    "get_engine",
    "lambdify_expr",
    "mse_of",
    "pareto_filter",
    "prune_small_terms",
    "real_or_nan",
    "refit_constants",
    "refit_predict",
    "register_engine",
    "round_floats",
    "versions",
]
