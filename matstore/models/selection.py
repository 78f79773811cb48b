"""Choosing one equation from a Pareto front by a stated, recordable criterion.

Criteria (strings, as stored in ``equation_version.selection_criterion``):

``"knee"``
    Largest score ``-Δ log(loss) / Δ complexity`` between consecutive front members (the
    PySR "score" [1]_): the point after which extra complexity buys the least accuracy.
``"best"``
    PySR's default ``model_selection="best"``: the highest score among equations whose loss
    is at most 1.5 × the lowest loss.
``"within:X%"``
    The least complex equation whose loss is within X % of the lowest loss
    (``loss <= (1 + X/100) · min loss``), e.g. ``"within:5%"``.
``"cv:X%"`` (or ``"cv"``, X = 5)
    The least complex equation whose *cross-validated* loss (constants refitted on each
    fold's training rows; leave-one-out up to 20 rows) is within X % of the lowest; needs
    the data (:func:`select_valid` with ``y``).
``"min_loss"``
    The lowest loss (the most complex member of a strict front).
``"max_complexity:N"``
    The lowest loss among equations of complexity <= N.

Losses below ``1e-12 ×`` the largest loss of the front are treated as that floor so exact
fits do not produce infinite scores.

References
----------
.. [1] M. Cranmer, "Interpretable Machine Learning for Science with PySR and
   SymbolicRegression.jl", arXiv:2305.01582 (2023).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from matstore.models.engines.base import Candidate

CRITERIA = ("knee", "best", "within:X%", "min_loss", "max_complexity:N", "cv:X%")


def parse_criterion(criterion: str) -> tuple[str, float | None]:
    """Split a criterion string into its kind and numeric argument.

    Raises
    ------
    ValueError
        For an unknown criterion or malformed argument.
    """
    c = criterion.strip().lower()
    if c in ("knee", "score"):
        return "knee", None
    if c == "best":
        return "best", None
    if c in ("min_loss", "accuracy"):
        return "min_loss", None
    m = re.fullmatch(r"within:\s*([0-9]*\.?[0-9]+)\s*%?", c)
    if m:
        return "within", float(m.group(1))
    m = re.fullmatch(r"cv(?::\s*([0-9]*\.?[0-9]+)\s*%?)?", c)
    if m:
        return "cv", float(m.group(1)) if m.group(1) else 5.0
    m = re.fullmatch(r"max_complexity:\s*([0-9]+)", c)
    if m:
        return "max_complexity", float(m.group(1))
    raise ValueError(f"unknown selection criterion {criterion!r}; use one of {', '.join(CRITERIA)}")


def _scores(front: Sequence[Candidate]) -> list[float]:
    top = max(c.loss for c in front)
    floor = max(1e-12 * top, 1e-300)
    scores = [0.0]
    for prev, cur in zip(front[:-1], front[1:], strict=True):
        dc = max(cur.complexity - prev.complexity, 1)
        scores.append(-(math.log(max(cur.loss, floor)) - math.log(max(prev.loss, floor))) / dc)
    return scores


def select(front: Sequence[Candidate], criterion: str = "knee") -> tuple[Candidate, str]:
    """Choose one candidate of ``front`` by ``criterion``.

    Parameters
    ----------
    front : sequence of Candidate
        Sorted or not; finite losses; sorted internally by (complexity, loss).
    criterion : str, default "knee"
        See the module docstring.

    Returns
    -------
    candidate : Candidate
    criterion : str
        Normalised criterion string to record, e.g. ``"knee"``, ``"within:5%"``.

    Raises
    ------
    ValueError
        Empty front, non-finite losses only, or unknown criterion.
    """
    kind, arg = parse_criterion(criterion)
    if kind == "cv":
        raise ValueError("the cv criterion needs data: use select_valid(..., y=) or select_by_cv")
    front = sorted((c for c in front if math.isfinite(c.loss)), key=lambda c: (c.complexity, c.loss))
    if not front:
        raise ValueError("cannot select from an empty front")
    best_loss = min(c.loss for c in front)
    if kind == "min_loss":
        chosen = min(front, key=lambda c: (c.loss, c.complexity))
        return chosen, "min_loss"
    if kind == "within":
        assert arg is not None
        limit = best_loss * (1.0 + arg / 100.0)
        chosen = next(c for c in front if c.loss <= limit)
        return chosen, f"within:{arg:g}%"
    if kind == "max_complexity":
        assert arg is not None
        allowed = [c for c in front if c.complexity <= arg] or front[:1]
        chosen = min(allowed, key=lambda c: (c.loss, c.complexity))
        return chosen, f"max_complexity:{int(arg)}"
    scores = _scores(front)
    idx = range(len(front))
    if kind == "best":
        idx = [i for i in idx if front[i].loss <= 1.5 * best_loss]
    if len(front) == 1:
        return front[0], kind
    # first maximum (ties -> simpler); candidate 0 scores 0 and wins only if nothing improves
    i_best = max(idx, key=lambda i: (scores[i], -i))
    return front[i_best], kind


def refit_constants(expr, X, y):  # noqa: ANN001, ANN201 - sympy/pandas types
    """Refit the numeric constants (SymPy ``Float`` atoms) of ``expr`` to (X, y) by least squares.

    Integer and rational exponents stay fixed; the fitted constants start from the current
    values (scipy's trust-region reflective solver).  Returns ``None`` when the problem is
    underdetermined (fewer rows than constants) or the fit fails.

    Parameters
    ----------
    expr : sympy.Expr
    X : DataFrame, shape (n, n_features)
    y : ndarray, shape (n,)
    """
    import numpy as np
    import sympy as sp
    from scipy.optimize import least_squares

    from matstore.models.engines.base import evaluate_expr

    constants = sorted(expr.atoms(sp.Float), key=lambda f: float(f))
    if not constants:
        return expr
    if len(y) < len(constants):
        return None
    params = sp.symbols(f"_refit_p0:{len(constants)}")
    template = expr.xreplace(dict(zip(constants, params, strict=True)))
    names = sorted(str(v) for v in expr.free_symbols)
    fn = sp.lambdify([*params, *sp.symbols(names)], template, "numpy")
    cols = [np.asarray(X[n], dtype=float) for n in names]

    def residuals(p):  # noqa: ANN001, ANN202
        with np.errstate(all="ignore"):
            out = np.broadcast_to(np.asarray(fn(*p, *cols), dtype=float), y.shape) - y
        return np.where(np.isfinite(out), out, 1e6)

    try:
        fit = least_squares(residuals, x0=[float(c) for c in constants], method="trf", max_nfev=200 * len(constants))
    except (ValueError, TypeError, FloatingPointError):
        return None
    refitted = template.xreplace({p: sp.Float(v) for p, v in zip(params, fit.x, strict=True)})
    pred = evaluate_expr(refitted, X)
    return refitted if np.all(np.isfinite(pred)) else None


def cv_loss(expr, X, y, *, n_folds: int | None = None) -> float:  # noqa: ANN001
    """Cross-validated mean squared error of ``expr``'s *form*: constants refitted per fold.

    Leave-one-out when ``n <= 20`` (e.g. one coefficient per material), else 10-fold.
    A fold whose training rows cannot determine the constants gives ``inf``, so forms with
    more constants than the data support are never selected.
    """
    import numpy as np

    from matstore.models.engines.base import evaluate_expr, real_or_nan

    n = len(y)
    folds = n if n <= 20 else (n_folds or 10)
    order = np.arange(n)
    errors = np.empty(n)
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        refitted = refit_constants(expr, X.iloc[train], y[train])
        if refitted is None:
            return math.inf
        pred = real_or_nan(evaluate_expr(refitted, X.iloc[test]))
        errors[test] = pred - y[test]
    return float(np.mean(errors**2)) if np.all(np.isfinite(errors)) else math.inf


def select_by_cv(front: Sequence[Candidate], X, y, tolerance_percent: float = 5.0) -> tuple[Candidate, str]:  # noqa: ANN001
    """The simplest candidate whose cross-validated loss is within ``tolerance_percent`` of the best.

    Chooses by out-of-sample error instead of training loss, which matters when the data are
    few (a material coefficient fitted on 6–7 metals): there, training-loss criteria pick
    forms with as many constants as rows, which extrapolate badly to an unseen material.

    Raises
    ------
    ValueError
        If no candidate has a finite cross-validated loss.
    """
    import numpy as np

    y = np.asarray(y, dtype=float)
    scored = [(cand, cv_loss(cand.expr, X, y)) for cand in front]
    finite = [(c, loss) for c, loss in scored if math.isfinite(loss)]
    if not finite:
        raise ValueError("no candidate has a finite cross-validated loss")
    best = min(loss for _, loss in finite)
    limit = best * (1.0 + tolerance_percent / 100.0)
    chosen = min((c for c, loss in finite if loss <= limit), key=lambda c: (c.complexity, c.loss))
    return chosen, f"cv:{tolerance_percent:g}% (constants refitted per fold, {'leave-one-out' if len(y) <= 20 else '10-fold'})"


def select_valid(
    front: Sequence[Candidate],
    X_domain,
    criterion: str = "knee",
    *,
    margin: float = 0.1,
    holdout=None,
    y=None,
) -> tuple[Candidate, str, list[tuple[Candidate, str]]]:
    """Select by ``criterion`` among the candidates that pass the numerical checks.

    Every candidate is checked with
    :func:`matstore.models.validation.check_finite_and_bounded` on ``X_domain`` (training
    rows, widened by ``margin``); when ``holdout`` rows are given (a cross-validation fold's
    held-out rows), candidates must also be finite and real there.

    Parameters
    ----------
    front : sequence of Candidate
    X_domain : DataFrame, shape (n_train, n_features)
    criterion : str
    margin : float
    holdout : DataFrame, optional, shape (n_test, n_features)
    y : ndarray, optional, shape (n_train,)
        Targets of ``X_domain``; required by the ``cv`` criterion.

    Returns
    -------
    candidate : Candidate
    criterion : str
    rejected : list of (Candidate, reason)

    Raises
    ------
    ValueError
        When no candidate passes (the caller decides how to penalise).
    """
    import numpy as np

    from matstore.models.engines.base import evaluate_expr, real_or_nan
    from matstore.models.validation import check_finite_and_bounded

    valid: list[Candidate] = []
    rejected: list[tuple[Candidate, str]] = []
    for cand in front:
        report = check_finite_and_bounded(cand.expr, X_domain, margin=margin)
        if report.ok and holdout is not None and len(holdout):
            vals = real_or_nan(evaluate_expr(cand.expr, holdout))
            if not np.all(np.isfinite(vals)):
                report = type(report)(False, "non-finite on held-out rows", report.max_abs)
        if report.ok:
            valid.append(cand)
        else:
            rejected.append((cand, report.reason))
    if not valid:
        reasons = "; ".join(f"{c.expr}: {r}" for c, r in rejected[:3])
        raise ValueError(f"no candidate passed the numerical checks ({reasons})")
    kind, arg = parse_criterion(criterion)
    if kind == "cv":
        if y is None:
            raise ValueError("the cv criterion needs the training targets (y=)")
        chosen, crit = select_by_cv(valid, X_domain, y, arg or 5.0)
    else:
        chosen, crit = select(valid, criterion)
    return chosen, crit, rejected


__all__ = ["CRITERIA", "cv_loss", "parse_criterion", "refit_constants", "select", "select_by_cv", "select_valid"]
