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
    fold's training rows; folds of :func:`matstore.models.cv.make_cv`) is within X % of the lowest; needs the data (:func:`select_valid` with ``y``).
``"cv:Nse"`` (e.g. ``"cv:1se"``)
    The one-standard-error rule [2]_: the least complex equation whose cross-validated
    loss is at most the lowest plus N standard errors of that lowest loss (the standard
    deviation of its per-fold losses over sqrt(number of folds)).  With a handful of rows
    the standard error is large, so the rule prefers few constants unless more clearly pay.
``"stable"`` or ``"stable:X%"`` (X = 5; the default of ``matstore fit``)
    Stability selection over the folds of the one CV policy (:func:`matstore.models.cv.make_cv`):
    in each fold, the simplest candidate (or, with the sparse engine, complexity budget, the
    search repeated on the fold's training rows) whose held-out MSE is within X % of the
    fold's best (or within 0.1 % of the target variance) gets one vote; the most-voted wins,
    ties going to the simpler.  A vote needs a majority of folds to
    agree, so one atypical held-out material cannot flip the choice the way it moves a pooled
    mean (``cv:1se`` chose a constant coefficient in one of seven folds of a published
    7-metal table; see docs/models.md).
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

#: Default tolerance of the ``stable`` criterion (percent of a fold's lowest held-out MSE).
STABLE_TOLERANCE = 5.0
#: Held-out MSE differences below this fraction of the target variance (R² 0.001) are noise.
STABLE_FLOOR = 1e-3
CRITERIA = ("stable:X%", "knee", "best", "within:X%", "min_loss", "max_complexity:N", "cv:X%", "cv:Nse")


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
    m = re.fullmatch(r"stable(?::\s*([0-9]*\.?[0-9]+)\s*%?)?", c)
    if m:
        return "stable", float(m.group(1)) if m.group(1) else STABLE_TOLERANCE
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
    if kind in ("cv", "cv_se", "stable"):
        raise ValueError(f"the {kind} criterion needs data: use select_valid(..., y=) or select_by_cv")
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


def _fold_loss(expr, X, y, train, test) -> float:  # noqa: ANN001
    """Held-out MSE of ``expr``'s form with constants refitted on ``train``; ``inf`` if undetermined."""
    import numpy as np

    from matstore.models.engines.base import refit_constants
    from matstore.models.expressions import evaluate

    refitted = refit_constants(expr, X.iloc[train], y[train], strict=True) if len(train) else None
    if refitted is None:
        return math.inf
    err = evaluate(refitted, X.iloc[test]) - y[test]
    return float(np.mean(err**2)) if np.all(np.isfinite(err)) else math.inf


def cv_fold_losses(expr, X, y, *, groups=None, n_splits: int | None = None, random_state: int | None = 0):  # noqa: ANN001, ANN201
    """Mean squared error of ``expr``'s *form* on each fold (constants refitted per fold).

    Folds from :func:`matstore.models.cv.splits` (the one CV policy).  Returns an array of
    shape (n_folds,), or ``None`` when a fold's training rows cannot determine the constants
    or a prediction is not finite, so forms with more constants than the data support are
    never selected.
    """
    import numpy as np

    from matstore.models.cv import splits

    y = np.asarray(y, dtype=float)
    losses = [_fold_loss(expr, X, y, tr, te) for tr, te in splits(len(y), groups, n_splits, random_state)]
    return None if not all(math.isfinite(v) for v in losses) else np.asarray(losses)


def cv_loss(expr, X, y, *, groups=None, n_splits: int | None = None) -> float:  # noqa: ANN001
    """Pooled cross-validated MSE of ``expr``'s form (constants refitted per fold); ``inf`` if undetermined."""
    from matstore.models.cv import pooled_mse, splits

    losses = cv_fold_losses(expr, X, y, groups=groups, n_splits=n_splits)
    if losses is None:
        return math.inf
    return pooled_mse(losses, [len(te) for _, te in splits(len(y), groups, n_splits)])


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
    from matstore.models.cv import make_cv

    return make_cv(n, groups)[1]


def vote(fold_losses: dict[Any, list[float]], order: Callable[[Any], Any],
         tolerance_percent: float = STABLE_TOLERANCE, floor: float = 0.0) -> tuple[Any, dict[Any, int]]:
    """The option that predicts the held-out rows best in the most folds (stability selection).

    In each fold the vote goes to the simplest option whose held-out loss is within
    ``tolerance_percent`` of that fold's lowest (or within ``floor``, an absolute loss below
    which differences are noise), so that noise-level differences between nested options
    (an extra term with a negligible coefficient) do not count as wins.

    Parameters
    ----------
    fold_losses : dict of option to list of float
        Held-out loss of each option on each fold (same fold order for every option).
    order : callable
        Sort key of the options, simplest first: breaks ties within a fold and between
        equal vote counts in favour of the simpler option.
    tolerance_percent : float, default 5
    floor : float, default 0
        Absolute tolerance (loss units); :func:`select_by_cv` and :func:`select_size_by_cv`
        pass ``STABLE_FLOOR · var(y)``.

    Returns
    -------
    chosen : option
    votes : dict of option to int
        Folds won by each option that won at least one.

    Raises
    ------
    ValueError
        If no option has a finite loss on any fold.
    """
    options = sorted(fold_losses, key=order)
    n_folds = len(next(iter(fold_losses.values()))) if fold_losses else 0
    votes: dict[Any, int] = {}
    for k in range(n_folds):
        finite = [o for o in options if math.isfinite(fold_losses[o][k])]
        if finite:
            best = min(fold_losses[o][k] for o in finite)
            limit = max(best * (1.0 + tolerance_percent / 100.0), best + floor)
            winner = next(o for o in finite if fold_losses[o][k] <= limit)
            votes[winner] = votes.get(winner, 0) + 1
    if not votes:
        raise ValueError("no option has a finite cross-validated loss on any fold")
    top = max(votes.values())
    return next(o for o in options if votes.get(o) == top), votes


def _choose(scored: dict[Any, list[float]], sizes: list[float], kind: str, arg: float | None,
            order: Callable[[Any], Any], y_var: float = 0.0) -> tuple[Any, str]:
    """Apply a cv rule (``cv_se``, ``cv`` or ``stable``) to per-fold losses of options."""
    from matstore.models.cv import pooled_mse

    if kind == "stable":
        tol = STABLE_TOLERANCE if arg is None else arg
        chosen, votes = vote(scored, order, tol, STABLE_FLOOR * y_var)
        return chosen, f"stable:{tol:g}% (won {votes[chosen]} of {len(sizes)} folds)"
    means = {o: pooled_mse(v, sizes) for o, v in scored.items() if all(math.isfinite(x) for x in v)}
    if not means:
        raise ValueError("no candidate has a finite cross-validated loss")
    best = min(means, key=lambda o: (means[o], order(o)))
    limit, label = _tolerance(means[best], scored[best], arg if kind == "cv_se" else None, arg or 5.0)
    return min((o for o, m in means.items() if m <= limit), key=order), label


def select_by_cv(front: Sequence[Candidate], X, y, tolerance_percent: float = 5.0, *, groups=None,  # noqa: ANN001
                 n_se: float | None = None, rule: str | None = None, n_splits: int | None = None,
                 random_state: int | None = 0) -> tuple[Candidate, str]:
    """Choose among the forms of ``front`` by cross-validated loss, constants refitted per fold.

    Chooses by out-of-sample error instead of training loss, which matters when the data are
    few (a material coefficient fitted on 6–7 metals).

    Parameters
    ----------
    front : sequence of Candidate
    X : DataFrame, shape (n, n_features)
    y : array, shape (n,)
    tolerance_percent : float
        ``cv:X%`` rule: the simplest form with loss ``<= (1 + X/100) · best``.
    groups : array, shape (n,), optional
        Rows of one group are held out together (:func:`matstore.models.cv.make_cv`).
    n_se : float, optional
        One-standard-error rule: tolerance ``best + n_se · SE(best)``.
    rule : {"stable"}, optional
        ``"stable"``: the form with the lowest held-out loss in the most folds (:func:`vote`).
    n_splits, random_state : passed to :func:`matstore.models.cv.make_cv`

    Raises
    ------
    ValueError
        If no candidate has a finite cross-validated loss.
    """
    import numpy as np

    from matstore.models.cv import splits

    y = np.asarray(y, dtype=float)
    folds = splits(len(y), groups, n_splits, random_state)
    scored = {c: [_fold_loss(c.expr, X, y, tr, te) for tr, te in folds] for c in front}
    kind = "stable" if rule == "stable" else ("cv_se" if n_se is not None else "cv")
    arg = n_se if n_se is not None else tolerance_percent
    if kind != "stable":
        scored = {c: v for c, v in scored.items() if all(math.isfinite(x) for x in v)}
    chosen, label = _choose(scored, [len(te) for _, te in folds], kind, arg, lambda c: (c.complexity, c.loss),
                            float(np.var(y)))
    return chosen, f"{label} (constants refitted per fold, {_scheme(len(y), groups)})"


def _size_losses(fit_front, size_of, X, y, sizes, folds, margin) -> dict[int, list[float]]:  # noqa: ANN001
    """Held-out loss per size and fold, the search repeated on each fold's training rows."""
    import numpy as np

    from matstore.models.engines.base import EngineFitError
    from matstore.models.expressions import evaluate

    per_size: dict[int, list[float]] = {k: [] for k in sizes}
    for train, test in folds:
        X_train, X_test = X.iloc[train].reset_index(drop=True), X.iloc[test].reset_index(drop=True)
        try:
            front = list(fit_front(X_train, y[train]))
        except (ValueError, EngineFitError):
            front = []
        for k in sizes:
            try:
                cand, _, _ = select_valid([c for c in front if size_of(c) <= k], X_train, "min_loss",
                                          margin=margin, holdout=X_test)
                loss = float(np.mean((evaluate(cand.expr, X_test) - y[test]) ** 2))
            except ValueError:
                loss = math.inf
            per_size[k].append(loss if math.isfinite(loss) else math.inf)
    return per_size


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
    rule: str | None = None,
    n_splits: int | None = None,
    random_state: int | None = 0,
) -> tuple[int, str, dict[int, float]]:
    """Choose a model *size* (a complexity budget) by cross-validating the whole search.

    For every fold (:func:`matstore.models.cv.splits`) the engine searches again on the
    training rows only (``fit_front``), and for every size ``k`` the lowest-loss valid
    candidate of at most ``k`` (``size_of``) is scored on the held-out rows.  Unlike
    :func:`select_by_cv`, which refits the constants of forms found on all the data, this
    also repeats the choice of the form, so the search's own optimism is measured (the
    selection bias of best-subset regression; Hastie, Tibshirani & Friedman, *The Elements of
    Statistical Learning*, 2nd ed. (2009), §7.10.2).  The size is then chosen by the
    one-standard-error rule (``n_se``), by ``tolerance_percent``, or with ``rule="stable"``
    by majority vote of the folds (:func:`vote`): the size that predicts the held-out group
    best in the most folds, which one bad fold cannot overturn.

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
    rule : {"stable"}, optional
    n_splits, random_state : passed to :func:`matstore.models.cv.make_cv`

    Returns
    -------
    size : int
    criterion : str
        E.g. ``"stable (won 5 of 6 folds) over the model size (search repeated per fold, …)"``.
    losses : dict of int to float
        Pooled cross-validated mean squared error per size (``inf`` where a fold failed).

    Raises
    ------
    ValueError
        When no size has a finite cross-validated loss.
    """
    import numpy as np

    from matstore.models.cv import pooled_mse, splits

    y = np.asarray(y, dtype=float)
    folds = splits(len(y), groups, n_splits, random_state)
    per_size = _size_losses(fit_front, size_of, X, y, list(sizes), folds, margin)
    fold_sizes = [len(te) for _, te in folds]
    kind = "stable" if rule == "stable" else ("cv_se" if n_se is not None else "cv")
    size, label = _choose(per_size, fold_sizes, kind, n_se if n_se is not None else tolerance_percent, lambda k: k,
                          float(np.var(y)))
    means = {k: pooled_mse(v, fold_sizes) for k, v in per_size.items()}
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
    random_state: int | None = 0,
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
        Groups held out together by the ``cv`` and ``stable`` criteria.
    random_state : int, optional
        Shuffling seed of ungrouped folds.

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
                                    n_se=arg if kind == "cv_se" else None, random_state=random_state)
    elif kind == "stable":
        if y is None:
            raise ValueError("the stable criterion needs the training targets (y=)")
        chosen, crit = select_by_cv(valid, X_domain, y, arg, groups=groups, rule="stable", random_state=random_state)
    else:
        chosen, crit = select(valid, criterion)
    return chosen, crit, rejected


__all__ = ["CRITERIA", "cv_fold_losses", "cv_loss", "parse_criterion", "select", "select_by_cv", "select_size_by_cv",
           "select_valid", "vote"]
