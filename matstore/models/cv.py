"""The one cross-validation policy of ``matstore fit``, and the fixed-form estimator.

Every cross-validation in :mod:`matstore.models` — the nested CV of a whole fit, the
fixed-form CV of a selected equation, the inner CV of a selection criterion and the
cross-conformal intervals — takes its folds from :func:`make_cv`:

- with groups (e.g. the material of each row): ``LeaveOneGroupOut`` up to
  :data:`MAX_LEAVE_ONE_GROUP_OUT` groups (so a surface model is scored on metals it has
  never seen, one at a time), ``GroupKFold(n_splits)`` (default 10) above;
- without groups: ``KFold(n_splits, shuffle=True, random_state)`` (default 5 folds);
- with groups but only one distinct group — the training rows of an outer fold that left
  the other group out (two hosts, one held out), on which an inner CV of a selection
  criterion runs — the ungrouped ``KFold`` above, described as such
  (:data:`ONE_GROUP_FALLBACK`): grouped CV needs two groups, and failing the inner CV would
  fail the whole fold.

:class:`FixedForm` is a scikit-learn regressor holding one equation whose *form* is kept and
whose constants are refitted on each training set: ``cross_val_predict(FixedForm(srepr),
X, y, groups=g, cv=make_cv(...))`` is the fixed-form CV of a selected equation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.model_selection import BaseCrossValidator, GroupKFold, KFold, LeaveOneGroupOut

from matstore.models.expressions import as_expr, evaluate

#: Grouped cross-validation is leave-one-group-out up to this many groups.
MAX_LEAVE_ONE_GROUP_OUT = 20
#: Folds of grouped CV above :data:`MAX_LEAVE_ONE_GROUP_OUT` groups, and of ungrouped CV.
DEFAULT_GROUP_FOLDS, DEFAULT_FOLDS = 10, 5
#: Appended to the description of the ungrouped folds :func:`make_cv` falls back to for one group.
ONE_GROUP_FALLBACK = "ungrouped: one group only"


def make_cv(n_rows: int, groups: Any = None, n_splits: int | None = None,
            random_state: int | None = 0) -> tuple[BaseCrossValidator, str]:
    """The cross-validation splitter for a table, and its description.

    Parameters
    ----------
    n_rows : int
        Rows of the table.
    groups : array-like, shape (n_rows,), optional
        Rows of one group are always held out together.
    n_splits : int, optional
        Number of folds; default: leave-one-group-out up to 20 groups, else 10 group folds;
        5 shuffled folds without groups.  Grouped: when ``n_splits`` is at least the number
        of groups, leave-one-group-out.
    random_state : int, optional
        Shuffling seed of ungrouped folds.

    Returns
    -------
    splitter : sklearn cross-validator
    description : str
        E.g. ``"LeaveOneGroupOut (7 groups)"``, ``"KFold(5, shuffle, random_state=0)"``;
        groups of one value fall back to ungrouped folds, ``"KFold(5, shuffle,
        random_state=0), ungrouped: one group only"`` (grouped CV needs two groups: this is
        the inner CV of a fold whose training rows are one group).

    Raises
    ------
    ValueError
        Fewer than two rows.
    """
    if groups is not None:
        n_groups = len(pd.unique(np.asarray(groups)))
        if n_groups < 2:
            splitter, text = make_cv(n_rows, None, n_splits, random_state)
            return splitter, f"{text}, {ONE_GROUP_FALLBACK}"
        if n_splits is None:
            n_splits = n_groups if n_groups <= MAX_LEAVE_ONE_GROUP_OUT else DEFAULT_GROUP_FOLDS
        if n_groups <= n_splits:
            return LeaveOneGroupOut(), f"LeaveOneGroupOut ({n_groups} groups)"
        return GroupKFold(n_splits=n_splits), f"GroupKFold({n_splits})"
    if n_rows < 2:
        raise ValueError("cross-validation needs at least two rows")
    k = min(n_splits or DEFAULT_FOLDS, n_rows)
    return KFold(n_splits=k, shuffle=True, random_state=random_state), f"KFold({k}, shuffle, random_state={random_state})"


def splits(n_rows: int, groups: Any = None, n_splits: int | None = None,
           random_state: int | None = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) row-position arrays of the folds of :func:`make_cv`."""
    splitter, _ = make_cv(n_rows, groups, n_splits, random_state)
    dummy = np.zeros((n_rows, 1))
    return [(tr, te) for tr, te in splitter.split(dummy, None, None if groups is None else np.asarray(groups))]


def pooled_mse(fold_losses: Any, fold_sizes: Any) -> float:
    """Mean squared error over all rows from per-fold means (folds weighted by their size)."""
    sizes = np.asarray(fold_sizes, dtype=float)
    return float(np.sum(np.asarray(fold_losses, dtype=float) * sizes) / np.sum(sizes))


class FixedForm(BaseEstimator, RegressorMixin):
    """One equation whose form is kept and whose constants are refitted by least squares.

    Parameters
    ----------
    expression : str
        ``sympy.srepr`` of the equation (its Floats are the constants refitted; exponents
        stay fixed).
    columns : sequence of str, optional
        Column names used when ``X`` arrives as an array (e.g. from a meta-estimator).

    Attributes
    ----------
    equation_ : sympy.Expr
        The equation with constants fitted to the training rows.
    """

    def __init__(self, expression: str = "", columns: tuple[str, ...] | None = None) -> None:
        self.expression = expression
        self.columns = columns

    def _frame(self, X: Any) -> pd.DataFrame:
        if isinstance(X, pd.DataFrame):
            return X.reset_index(drop=True)
        return pd.DataFrame(np.asarray(X, dtype=float), columns=list(self.columns or ()))

    def fit(self, X: Any, y: Any, groups: Any = None) -> FixedForm:
        """Refit the constants on ``(X, y)``; ``groups`` is accepted and ignored.

        Raises
        ------
        ValueError
            When the rows cannot determine the constants or the refitted equation is not
            finite on them.
        """
        from matstore.models.engines.base import refit_constants

        X = self._frame(X)
        refitted = refit_constants(as_expr(self.expression), X, np.asarray(y, dtype=float), strict=True)
        if refitted is None:
            raise ValueError("the constants of this form cannot be determined from these rows")
        self.equation_ = refitted
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Values of the refitted equation, shape (n_samples,); NaN where undefined."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "equation_")
        return evaluate(self.equation_, self._frame(X))


__all__ = ["DEFAULT_FOLDS", "DEFAULT_GROUP_FOLDS", "MAX_LEAVE_ONE_GROUP_OUT", "ONE_GROUP_FALLBACK", "FixedForm", "make_cv",
           "pooled_mse", "splits"]
