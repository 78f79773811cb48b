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
    fold's training rows; leave-one-out up to 20 rows, or leave-one-group-out when groups
    are given) is within X % of the lowest; needs the data (:func:`select_valid` with ``y``).
``"cv:Nse"`` (e.g. ``"cv:1se"``)
    The one-standard-error rule [2]_: the least complex equation whose cross-validated
    loss is at most the lowest plus N standard errors of that lowest loss (the standard
    deviation of its per-fold losses over sqrt(number of folds)).  With a handful of rows
    the standard error is large, so the rule prefers few constants unless more clearly pay.
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
.. [2] T. Hastie, R. Tibshirani, J. Friedman, *The Elements of Statistical Learning*, 2nd
   ed., Springer (2009), §7.10 ("one-standard-error rule"); L. Breiman et al.,
   *Classification and Regression Trees* (1984).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from matstore.models.engines.base import Candidate

CRITERIA = ("knee", "best", "within:X%", "min_loss", "max_complexity:N", "cv:X%", "cv:Nse")
#: Inner cross-validation holds out one row (or group) at a time up to this many rows (groups).
MAX_LEAVE_ONE_OUT = 20


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
    m = re.fullmatch(r"cv:\s*([0-9]*\.?[0-9]+)\s*se", c)
    if m:
        return "cv_se", float(m.group(1))
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
    if kind in ("cv", "cv_se"):
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


def cv_folds(n: int, groups=None, *, n_folds: int | None = None) -> list:  # noqa: ANN001
    """Test-row index arrays of the folds used by :func:`cv_loss`.

    Without ``groups``: leave-one-out when ``n <= 20``, else ``n_folds`` (default 10)
    interleaved folds.  With ``groups`` (array, shape (n,)): leave-one-group-out when there
    are at most 20 groups, else ``n_folds`` folds of whole groups.
    """
    import numpy as np

    if groups is None:
        k = n if n <= MAX_LEAVE_ONE_OUT else (n_folds or 10)
        order = np.arange(n)
        return [order[i::k] for i in range(k)]
    codes = np.unique(np.asarray(groups), return_inverse=True)[1]
    n_groups = int(codes.max()) + 1
    k = n_groups if n_groups <= MAX_LEAVE_ONE_OUT else (n_folds or 10)
    return [np.flatnonzero(codes % k == i) for i in range(k)]


def cv_fold_losses(expr, X, y, *, groups=None, n_folds: int | None = None):  # noqa: ANN001, ANN201
    """Mean squared error of ``expr``'s *form* on each fold (constants refitted per fold).

    Folds from :func:`cv_folds`.  Returns an array of shape (n_folds,), or ``None`` when a
    fold's training rows cannot determine the constants or a prediction is not finite, so
    forms with more constants than the data support are never selected.
    """
    import numpy as np

    from matstore.models.engines.base import evaluate_expr, real_or_nan

    y = np.asarray(y, dtype=float)
    n = len(y)
    losses = []
    for test in cv_folds(n, groups, n_folds=n_folds):
        train = np.setdiff1d(np.arange(n), test)
        refitted = refit_constants(expr, X.iloc[train], y[train]) if len(train) else None
        if refitted is None:
            return None
        err = real_or_nan(evaluate_expr(refitted, X.iloc[test])) - y[test]
        if not np.all(np.isfinite(err)):
            return None
        losses.append(float(np.mean(err**2)))
    return np.asarray(losses)


def cv_loss(expr, X, y, *, n_folds: int | None = None, groups=None) -> float:  # noqa: ANN001
    """Cross-validated mean squared error of ``expr``'s *form*: constants refitted per fold.

    Leave-one-out when ``n <= 20`` (e.g. one coefficient per material), else 10-fold; with
    ``groups``, whole groups are held out (see :func:`cv_folds`).  ``inf`` when a fold's
    training rows cannot determine the constants.
    """

    losses = cv_fold_losses(expr, X, y, groups=groups, n_folds=n_folds)
    if losses is None:
        return math.inf
    return _pooled(losses, cv_folds(len(y), groups, n_folds=n_folds))


def _pooled(fold_losses, folds) -> float:  # noqa: ANN001
    """Mean squared error over all rows from per-fold means (folds weighted by their size)."""
    import numpy as np

    sizes = np.array([len(t) for t in folds], dtype=float)
    return float(np.sum(np.asarray(fold_losses, dtype=float) * sizes) / np.sum(sizes))


def _tolerance(best: float, best_fold_losses, n_se: float | None, tolerance_percent: float) -> tuple[float, str]:  # noqa: ANN001
    """Largest acceptable cross-validated loss and the criterion label.

    ``n_se`` given: ``best + n_se · SE`` with SE the standard deviation of the best
    candidate's per-fold losses over sqrt(number of folds) (one-standard-error rule);
    else ``best · (1 + tolerance_percent/100)``.
    """
    import numpy as np

    if n_se is None:
        return best * (1.0 + tolerance_percent / 100.0), f"cv:{tolerance_percent:g}%"
    losses = np.asarray(best_fold_losses, dtype=float)
    se = float(np.std(losses, ddof=1) / np.sqrt(len(losses))) if len(losses) > 1 else 0.0
    return best + n_se * se, f"cv:{n_se:g}se"


def _scheme(n: int, groups) -> str:  # noqa: ANN001
    import numpy as np

    if groups is None:
        return "leave-one-out" if n <= MAX_LEAVE_ONE_OUT else "10-fold"
    n_groups = len(np.unique(np.asarray(groups)))
    return "leave-one-group-out" if n_groups <= MAX_LEAVE_ONE_OUT else "10 group folds"


def select_by_cv(front: Sequence[Candidate], X, y, tolerance_percent: float = 5.0, *, groups=None,  # noqa: ANN001
                 n_se: float | None = None) -> tuple[Candidate, str]:
    """The simplest candidate whose cross-validated loss is within a tolerance of the best.

    Chooses by out-of-sample error instead of training loss, which matters when the data are
    few (a material coefficient fitted on 6–7 metals): there, training-loss criteria pick
    forms with as many constants as rows, which extrapolate badly to an unseen material.

    Parameters
    ----------
    front : sequence of Candidate
    X : DataFrame, shape (n, n_features)
    y : array, shape (n,)
    tolerance_percent : float
        Tolerance ``loss <= (1 + X/100) · best`` (ignored when ``n_se`` is given).
    groups : array, shape (n,), optional
        Rows of one group are held out together (e.g. the element of each potential's
        coefficient), see :func:`cv_folds`.
    n_se : float, optional
        One-standard-error rule: tolerance ``best + n_se · SE(best)``.

    Raises
    ------
    ValueError
        If no candidate has a finite cross-validated loss.
    """
    import numpy as np

    y = np.asarray(y, dtype=float)
    folds = cv_folds(len(y), groups)
    scored = []
    for cand in front:
        losses = cv_fold_losses(cand.expr, X, y, groups=groups)
        if losses is not None:
            scored.append((cand, _pooled(losses, folds), losses))
    if not scored:
        raise ValueError("no candidate has a finite cross-validated loss")
    _, best_mean, best_losses = min(scored, key=lambda t: (t[1], t[0].complexity))
    limit, label = _tolerance(best_mean, best_losses, n_se, tolerance_percent)
    chosen = min((c for c, loss, _ in scored if loss <= limit), key=lambda c: (c.complexity, c.loss))
    return chosen, f"{label} (constants refitted per fold, {_scheme(len(y), groups)})"


def select_size_by_cv(
    fit_front: Callable[[Any, Any], Sequence[Candidate]],
    size_of: Callable[[Candidate], int],
    X,  # noqa: ANN001
    y,  # noqa: ANN001
    sizes: Sequence[int],
    *,
    groups=None,  # noqa: ANN001
    n_se: float | None = 1.0,
    tolerance_percent: float = 5.0,
    margin: float = 0.1,
) -> tuple[int, str, dict[int, float]]:
    """Choose a model *size* (a complexity budget, a number of terms) by cross-validating the whole search.

    For every fold (see :func:`cv_folds`) the engine searches again on the training rows
    only (``fit_front``), and for every size ``k`` the lowest-loss valid candidate of at most
    ``k`` (``size_of``) is scored on the held-out rows.  Unlike :func:`select_by_cv`, which
    refits the constants of forms found on all the data, this also repeats the choice of the
    form, so the search's own optimism is measured: with 6–7 materials and a library of
    candidate terms, the best 3-term support fitted to all of them has a small leave-one-out
    error of its constants and still extrapolates badly (the selection bias of best-subset
    regression; Hastie, Tibshirani & Friedman, *The Elements of Statistical Learning*,
    §7.10.2 "The wrong and right way to do cross-validation").  The size is then chosen by
    the one-standard-error rule (``n_se``) or, with ``n_se=None``, by ``tolerance_percent``.

    Parameters
    ----------
    fit_front : callable (X_train DataFrame, y_train ndarray) -> sequence of Candidate
        May raise ``ValueError`` or :class:`~matstore.models.engines.base.EngineFitError`
        (every size then gets an infinite loss on that fold).
    size_of : callable (Candidate) -> int
    X : DataFrame, shape (n, n_features)
    y : ndarray, shape (n,)
    sizes : sequence of int
    groups : ndarray, shape (n,), optional
    n_se : float or None, default 1.0
    tolerance_percent : float
    margin : float
        Domain widening of the numerical checks on each fold's training rows.

    Returns
    -------
    size : int
    criterion : str
        E.g. ``"cv:1se over the model size (search repeated per fold, leave-one-out)"``.
    losses : dict of int to float
        Cross-validated mean squared error per size.

    Raises
    ------
    ValueError
        When no size has a finite cross-validated loss.
    """
    import numpy as np

    from matstore.models.engines.base import EngineFitError, evaluate_expr, real_or_nan

    y = np.asarray(y, dtype=float)
    folds = cv_folds(len(y), groups)
    per_size: dict[int, list[float]] = {k: [] for k in sizes}
    for test in folds:
        train = np.setdiff1d(np.arange(len(y)), test)
        X_train, X_test = X.iloc[train].reset_index(drop=True), X.iloc[test].reset_index(drop=True)
        try:
            front = list(fit_front(X_train, y[train]))
        except (ValueError, EngineFitError):
            front = []
        for k in sizes:
            allowed = [c for c in front if size_of(c) <= k]
            try:
                cand, _, _ = select_valid(allowed, X_train, "min_loss", margin=margin, holdout=X_test)
                err = real_or_nan(evaluate_expr(cand.expr, X_test)) - y[test]
                loss = float(np.mean(err**2))
            except ValueError:
                loss = math.inf
            per_size[k].append(loss if math.isfinite(loss) else math.inf)
    means = {k: _pooled(v, folds) for k, v in per_size.items()}
    finite = {k: m for k, m in means.items() if math.isfinite(m)}
    if not finite:
        raise ValueError("no model size has a finite cross-validated loss")
    best = min(finite, key=lambda k: (finite[k], k))
    limit, label = _tolerance(finite[best], per_size[best], n_se, tolerance_percent)
    size = min(k for k, m in finite.items() if m <= limit)
    return size, f"{label} over the model size (search repeated per fold, {_scheme(len(y), groups)})", means


def select_valid(
    front: Sequence[Candidate],
    X_domain,
    criterion: str = "knee",
    *,
    margin: float = 0.1,
    holdout=None,
    y=None,
    groups=None,
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
        Targets of ``X_domain``; required by the ``cv`` criteria.
    groups : ndarray, optional, shape (n_train,)
        Groups held out together by the ``cv`` criteria.

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
    if kind in ("cv", "cv_se"):
        if y is None:
            raise ValueError("the cv criterion needs the training targets (y=)")
        chosen, crit = select_by_cv(valid, X_domain, y, arg or 5.0, groups=groups,
                                    n_se=arg if kind == "cv_se" else None)
    else:
        chosen, crit = select(valid, criterion)
    return chosen, crit, rejected


__all__ = ["CRITERIA", "cv_fold_losses", "cv_folds", "cv_loss", "parse_criterion", "refit_constants", "select", "select_by_cv", "select_size_by_cv",
           "select_valid"]
