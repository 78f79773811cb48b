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

CRITERIA = ("knee", "best", "within:X%", "min_loss", "max_complexity:N")


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


def select_valid(
    front: Sequence[Candidate],
    X_domain,
    criterion: str = "knee",
    *,
    margin: float = 0.1,
    holdout=None,
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
    chosen, crit = select(valid, criterion)
    return chosen, crit, rejected


__all__ = ["CRITERIA", "parse_criterion", "select", "select_valid"]
