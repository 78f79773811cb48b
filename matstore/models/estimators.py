"""``matstore fit`` as scikit-learn estimators: an equation search, and its orientation factorisation.

:class:`EquationSearch` runs a symbolic-regression engine, removes candidates that are not
finite and bounded around the data (:mod:`matstore.models.validation`), refuses a constant
where a dimensional scaling law is asked for, and selects one equation by a recorded
criterion (:mod:`matstore.models.selection`).  :class:`FactorizedEquation` fits
``y(material, orientation) = C(bulk) · g(orientation)`` with one :class:`EquationSearch` for
each factor (:mod:`matstore.models.factorize`).  Both are ordinary estimators
(``BaseEstimator``, ``RegressorMixin``): ``clone``, ``get_params``/``set_params``,
``fit(X, y, groups=None)`` returning ``self``, learned attributes ending in ``_``.  Model
selection happens inside ``fit`` (as in ``GridSearchCV``), so
``cross_validate(FactorizedEquation(...), X, y, groups=g, cv=make_cv(...)[0],
params={"groups": g}, return_estimator=True)`` is nested cross-validation by construction
and each returned estimator's ``equation_`` is the form that fold selected.

References
----------
.. [1] F. Pedregosa et al., "Scikit-learn: Machine learning in Python", JMLR 12, 2825 (2011);
   L. Buitinck et al., "API design for machine learning software: experiences from the
   scikit-learn project", arXiv:1309.0238 (2013) — the estimator contract.
.. [2] W. W. Mullins / Mackenzie, Moore & Nicholas, J. Phys. Chem. Solids 23, 185 (1962) —
   the broken-bond orientation factor recovered by :class:`FactorizedEquation`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from operator import attrgetter
from typing import Any

import numpy as np
import pandas as pd
import sympy as sp
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted

from matstore.models.cv import splits
from matstore.models.engines.base import (
    MIN_RUN_SECONDS,
    SCORING_FTOL,
    Candidate,
    SymbolicEngine,
    engine_class,
    get_engine,
    mse_of,
    pareto_filter,
    refit_candidate,
)
from matstore.models.expressions import evaluate
from matstore.models.factorize import (
    DEFAULT_ORIENTATION_FEATURES,
    DEFAULT_SCALING_TERMS,
    DESCRIPTOR_COLUMNS,
    add_orientation_descriptors,
    coefficient_engine,
    coefficients_given_g,
    initial_coefficients,
    material_codes,
    normalise_g,
    orientation_basis,
    reference_descriptors,
    scale_expr,
)
from matstore.models.products import (
    DEFAULT_PRODUCTS,
    fit_weights,
    material_multipliers,
    scale_library,
    select_scales,
)
from matstore.models.selection import (
    DEFAULT_COEFFICIENT_SELECTION,
    DEFAULT_ORIENTATION_SELECTION,
    parse_criterion,
    select_size_by_cv,
    select_size_stable,
    select_stable,
    select_valid,
    stable_criterion,
    validate,
)

#: Reason recorded when a constant is removed from a scaling-law front.
CONSTANT_REFUSED = "a constant is not a scaling law of a dimensional target"


def _is_dimensional(unit: str | None) -> bool:
    from matstore.models.dimensions import unit_dimension

    return unit is not None and unit_dimension(unit) != ()


class EquationSearch(BaseEstimator, RegressorMixin):
    """Search, validate and select one closed-form equation ``y ≈ f(X)``.

    Parameters
    ----------
    engine : str, default "sparse"
        Registered engine name (``sparse``, ``operon``, ``pysr``, ...; see
        :func:`~matstore.models.engines.base.get_engine`).
    engine_params : dict, optional
        Engine keyword parameters; ``random_state`` defaults to ``random_state``, and
        ``time_limit`` (engines that have one) to ``time_budget``.
    selection : str, default "stable"
        Criterion choosing the equation from the validated front (``stable``, ``stable:1se``,
        ``aicc``, ``knee``, ``cv:1se``, ``within:5%``, ...; see :mod:`matstore.models.selection`).
        With the sparse engine on a scaling law or at most 20 rows, ``stable`` repeats the
        search on every CV training subsample (and the ``cv`` criteria choose a complexity
        budget that way); otherwise the constants of the front's forms are refitted.
    form : {"free", "scaling", "auto"}, default "free"
        ``"scaling"``: a sum of at most ``scaling_terms`` monomials of the features, each with
        the target's dimension, pure-number coefficients, no intercept (the sparse engine's
        dimensional library); needs ``feature_units`` and ``target_unit``.  ``"auto"``: scaling when the units
        allow, else free (the reason is recorded in ``form_``).  A constant is never a
        scaling law of a dimensional target and is refused.
    time_budget : float, optional
        Seconds for this fit's engine run (engines with a ``time_limit``; at least one second
        unless ``engine_rate`` is given).
    engine_rate : float, optional
        Generations per second of this engine on these data, measured by an earlier fit
        (``engine_rate_``).  Engines with a ``generation_rate`` (Operon) then meet a
        ``time_budget`` below one second by capping their generations.
    random_state : int, default 0
    margin : float, default 0.1
        Domain widening of the numerical checks.
    feature_units : dict of str to str, optional
        pint units of the columns of ``X``.
    target_unit : str, optional
    n_splits : int, optional
        Folds of the inner CV of cv-based criteria (:func:`matstore.models.cv.make_cv`).
    scaling_terms : int, default 1
        Most monomials of a scaling law (``form`` ``"scaling"`` or ``"auto"``); one gives
        ``k·Π x_i^p_i`` (:data:`matstore.models.factorize.DEFAULT_SCALING_TERMS`).

    Attributes
    ----------
    equation_ : sympy.Expr
        The selected equation (symbols named as the columns of ``X``).
    front_ : list of Candidate
        The engine's Pareto front (complexity, training MSE in target unit², expression).
    rejected_ : list of (Candidate, str)
        Candidates removed by the numerical checks or refused (constant scaling law).
    selection_ : str
        The criterion as applied, e.g. ``"stable (won 6 of 7 folds) over the model size …"``.
    engine_name_, form_ : str
        Engine that produced the front; ``"free"``, ``"scaling"`` or ``"free (auto: reason)"``.
    feature_names_in_ : ndarray of str, shape (n_features,)
    n_features_in_ : int
    fit_seconds_ : float
    time_limited_runs_ : int
        1 when the engine's run had a time limit (engines with a ``time_limit``), else 0.
    time_limited_seconds_ : float
        Seconds of that run spent under its time limit (at most the limit the engine applied;
        0 without one).  The rest of ``fit_seconds_`` (the engine's own set-up and polishing,
        checks, constant refits, selection) does not shrink with the budget.
    time_limited_floor_ : float
        The least seconds that run could have taken under any limit (the engine's
        ``shortest_run_seconds_``, else 1 s; 0 without a limit).
    engine_rate_ : float or None
        The engine's generations per second in this fit (``generation_rate_``), else None.
    library_size_ : int or None
        Number of library terms the engine searched (the sparse engine's ``library_size_``),
        the ``p`` of the EBIC of ``stable:ebic``; None for engines without a term library.
    """

    def __init__(self, engine: str = "sparse", engine_params: dict[str, Any] | None = None, selection: str = "stable",
                 form: str = "free", time_budget: float | None = None, engine_rate: float | None = None,
                 random_state: int = 0, margin: float = 0.1,
                 feature_units: dict[str, str] | None = None, target_unit: str | None = None,
                 n_splits: int | None = None, scaling_terms: int = DEFAULT_SCALING_TERMS) -> None:
        self.engine = engine
        self.engine_params = engine_params
        self.selection = selection
        self.form = form
        self.time_budget = time_budget
        self.engine_rate = engine_rate
        self.random_state = random_state
        self.margin = margin
        self.feature_units = feature_units
        self.target_unit = target_unit
        self.n_splits = n_splits
        self.scaling_terms = scaling_terms

    def _engine_setup(self, columns: list[str]) -> tuple[str, dict[str, Any], str]:
        """Engine name, its parameters and the recorded form."""
        if self.form not in ("free", "scaling", "auto"):
            raise ValueError(f"form must be 'free', 'scaling' or 'auto', got {self.form!r}")
        name, params, form = coefficient_engine(self.form, self.engine, self.engine_params, columns,
                                                self.feature_units, self.target_unit, self.scaling_terms)
        defaults = engine_class(name).default_parameters
        if "random_state" in defaults:
            params.setdefault("random_state", self.random_state)
        paced = "generation_rate" in defaults and self.engine_rate is not None
        if paced:
            params.setdefault("generation_rate", float(self.engine_rate))
        if "time_limit" in defaults and self.time_budget is not None:
            params.setdefault("time_limit", float(self.time_budget) if paced else max(MIN_RUN_SECONDS, float(self.time_budget)))
        return name, params, form

    def has_time_limit(self, columns: Sequence[str]) -> bool:
        """Whether this search on features ``columns`` runs an engine with a time limit (one that takes ``time_budget``).

        Raises
        ------
        ValueError
            As :meth:`fit` for a bad ``form`` or a scaling law without units.
        """
        name, _, _ = self._engine_setup(list(columns))
        return "time_limit" in engine_class(name).default_parameters

    def _refuse_constants(self, front: list[Candidate]) -> tuple[list[Candidate], list[tuple[Candidate, str]]]:
        if not (self.form_ == "scaling" and _is_dimensional(self.target_unit)):
            return front, []
        refused = [(c, CONSTANT_REFUSED) for c in front if not c.expr.free_symbols]
        return [c for c in front if c.expr.free_symbols], refused

    def fit(self, X: pd.DataFrame, y: Any, groups: Any = None) -> EquationSearch:
        """Search the engine's front on ``(X, y)`` and select one equation.

        Parameters
        ----------
        X : DataFrame, shape (n_samples, n_features)
            Finite numeric features; column names become SymPy symbols.
        y : array-like, shape (n_samples,)
        groups : array-like, shape (n_samples,), optional
            Rows held out together by the inner CV of cv-based criteria.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            Malformed data, bad criterion, or no candidate passing the checks.
        matstore.models.engines.base.EngineSetupError, EngineFitError
            From the engine.
        """
        t0 = time.perf_counter()
        X, yv = SymbolicEngine._check_X_y(X, y)
        parse_criterion(self.selection)  # a bad criterion fails before the search
        name, params, self.form_ = self._engine_setup(list(X.columns))
        self.engine_name_ = name
        t_engine = time.perf_counter()
        engine = get_engine(name, **params).fit(X, yv)
        self.library_size_ = getattr(engine, "library_size_", None)
        self._record_time_limit(engine, time.perf_counter() - t_engine)
        front, refused = self._refuse_constants(list(engine.pareto_front_))
        if not front:
            raise ValueError(f"no candidate left on the front ({CONSTANT_REFUSED})")
        chosen, crit, rejected = self._select(front, X, yv, None if groups is None else np.asarray(groups), name, params)
        if getattr(engine, "polish", False):  # the engine polished its front to SCORING_FTOL only
            chosen, front = _polished(chosen, front, X, yv)
        self.equation_, self.selection_ = chosen.expr, crit
        self.front_, self.rejected_ = front, refused + rejected
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def reselect(self, X: pd.DataFrame, y: Any, groups: Any = None) -> EquationSearch:
        """Choose again among the searched front's forms for a new target on the same features.

        The backfitting step of additive models (Hastie & Tibshirani, *Generalized Additive
        Models*, 1990, §4.3): a term is re-chosen on the partial residual of the other terms'
        current equations.  Each form of ``front_`` has its constants refitted to ``(X, y)``
        (:func:`~matstore.models.engines.base.refit_constants`, to ``SCORING_FTOL``), the front
        is filtered to its Pareto-optimal forms again, the criterion of :meth:`fit` chooses among
        them, and the chosen form's constants are refitted to ``REFIT_FTOL``.  The
        engine's search is not re-run (its time was spent in :meth:`fit`); criteria that
        repeat a cheap search in every inner fold (``stable:1se`` with the sparse engine) do
        repeat it on the new target.

        Parameters
        ----------
        X : DataFrame, shape (n_samples, n_features)
            The features :meth:`fit` saw, in the same order.
        y : array-like, shape (n_samples,)
        groups : array-like, shape (n_samples,), optional

        Returns
        -------
        self, with ``equation_``, ``front_`` and ``rejected_`` replaced and ``selection_`` the
        criterion's new label, ending "; re-chosen for a new target (backfitting)".

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before :meth:`fit`.
        ValueError
            Other features than :meth:`fit` saw, malformed data, or no candidate passing the checks.
        """
        check_is_fitted(self, "front_")
        X, yv = SymbolicEngine._check_X_y(X, y)
        if list(X.columns) != list(self.feature_names_in_):
            raise ValueError(f"reselect needs the features fit saw ({list(self.feature_names_in_)}), got {list(X.columns)}")
        front = pareto_filter(c for c in (refit_candidate(c, X, yv, strict=False, ftol=SCORING_FTOL)
                                          for c in self.front_) if c is not None)
        if not front:
            raise ValueError("no form of the front is finite on the new target")
        name, params, _ = self._engine_setup(list(X.columns))
        chosen, crit, rejected = self._select(front, X, yv, None if groups is None else np.asarray(groups), name, params)
        chosen, front = _polished(chosen, front, X, yv)
        self.equation_, self.selection_ = chosen.expr, f"{crit}; re-chosen for a new target (backfitting)"
        self.front_ = front
        self.rejected_ = [r for r in self.rejected_ if r[1] == CONSTANT_REFUSED] + rejected
        return self

    def _select(self, front: list[Candidate], X: pd.DataFrame, y: np.ndarray, groups: np.ndarray | None, name: str,
                params: dict[str, Any]) -> tuple[Candidate, str, list[tuple[Candidate, str]]]:
        """The chosen candidate of ``front``, the criterion's label and the rejected candidates with their reasons."""
        kind, _ = parse_criterion(self.selection)
        if kind == "stable":
            return self._select_stable(front, X, y, groups, name, params)
        if kind == "stable_se" and self._repeats_search(name, kind, len(y)):
            return self._select_size_stable(front, X, y, groups, name, params)
        if self._repeats_search(name, kind, len(y)):
            return self._select_size(front, X, y, groups, name, params)
        return select_valid(front, X, self.selection, margin=self.margin, y=y, groups=groups, random_state=self.random_state)

    def _record_time_limit(self, engine: Any, seconds: float) -> None:
        """``time_limited_runs_``, ``time_limited_seconds_``, ``time_limited_floor_`` and ``engine_rate_`` of the engine run."""
        limit = getattr(engine, "time_limit_applied_", getattr(engine, "time_limit", None))
        self.time_limited_runs_ = int(limit is not None)
        self.time_limited_seconds_ = 0.0 if limit is None else min(seconds, float(limit))
        self.time_limited_floor_ = 0.0 if limit is None else float(getattr(engine, "shortest_run_seconds_", MIN_RUN_SECONDS))
        self.engine_rate_ = getattr(engine, "generation_rate_", None)

    def _repeats_search(self, name: str, kind: str, n_rows: int) -> bool:
        """Whether a cv-based criterion repeats the search in every inner fold.

        It does for the deterministic sparse engine on scaling laws, on small tables (at
        most 20 rows, e.g. one coefficient per material), where choosing among forms found
        on all rows is biased (ESL §7.10.2) and the search is cheap, and always for
        ``stable:Nse``, which votes over the folds' searches; elsewhere the constants of the
        front's forms are refitted per fold (the nested CV measures the rest).
        """
        from matstore.models.cv import MAX_LEAVE_ONE_GROUP_OUT

        small = self.form_ == "scaling" or n_rows <= MAX_LEAVE_ONE_GROUP_OUT or kind == "stable_se"
        return name == "sparse" and kind in ("cv", "cv_se", "stable", "stable_se") and small

    def _front_of(self, name: str, params: dict[str, Any]) -> Any:
        def fit_front(Xt: pd.DataFrame, yt: np.ndarray) -> list[Candidate]:
            return self._refuse_constants(list(get_engine(name, **params).fit(Xt, yt).pareto_front_))[0]
        return fit_front

    def _select_stable(self, front: list[Candidate], X: pd.DataFrame, y: np.ndarray, groups: np.ndarray | None,
                       name: str, params: dict[str, Any]) -> tuple[Candidate, str, list[tuple[Candidate, str]]]:
        """Stability selection (:func:`~matstore.models.selection.select_stable`) over the validated front."""
        valid, rejected = validate(front, X, margin=self.margin)
        if not valid:
            raise ValueError("no candidate passed the numerical checks")
        repeat = self._front_of(name, params) if self._repeats_search(name, "stable", len(y)) else None
        _, gamma = parse_criterion(self.selection)
        chosen, crit = select_stable(valid, X, y, groups=groups, fit_front=repeat, margin=self.margin,
                                     n_splits=self.n_splits, random_state=self.random_state,
                                     criterion=stable_criterion(gamma), library_size=self.library_size_)
        return chosen, crit, rejected

    def _select_size_stable(self, front: list[Candidate], X: pd.DataFrame, y: np.ndarray, groups: np.ndarray | None,
                            name: str, params: dict[str, Any]) -> tuple[Candidate, str, list[tuple[Candidate, str]]]:
        """``stable:Nse``: size by the 1-SE rule over the repeated search, form by majority over the folds."""
        _, arg = parse_criterion(self.selection)
        valid, rejected = validate(front, X, margin=self.margin)
        if not valid:
            raise ValueError("no candidate passed the numerical checks")
        chosen, crit = select_size_stable(self._front_of(name, params), valid, X, y, groups=groups, n_se=arg,
                                          margin=self.margin, n_splits=self.n_splits, random_state=self.random_state)
        return chosen, crit, rejected

    def _select_size(self, front: list[Candidate], X: pd.DataFrame, y: np.ndarray, groups: np.ndarray | None,
                     name: str, params: dict[str, Any]) -> tuple[Candidate, str, list[tuple[Candidate, str]]]:
        """Cv-based criteria with a cheap deterministic engine: repeat the search in every inner fold."""
        kind, arg = parse_criterion(self.selection)
        budget, crit, _ = select_size_by_cv(
            self._front_of(name, params), attrgetter("complexity"), X, y, sorted({c.complexity for c in front}), groups=groups,
            n_se=arg if kind == "cv_se" else None, tolerance_percent=arg or 5.0, margin=self.margin,
            n_splits=self.n_splits, random_state=self.random_state)
        chosen, _, rejected = select_valid([c for c in front if c.complexity <= budget], X, "min_loss",
                                           margin=self.margin)
        return chosen, f"{crit}: complexity <= {budget}", rejected

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Values of ``equation_`` on the rows of ``X``, shape (n_samples,); NaN where undefined."""
        check_is_fitted(self, "equation_")
        return evaluate(self.equation_, X.reset_index(drop=True) if isinstance(X, pd.DataFrame) else X)


class FactorizedEquation(BaseEstimator, RegressorMixin):
    """``y(material, orientation) = C(bulk features) · g(orientation)``, each factor an :class:`EquationSearch`.

    Steps (see :mod:`matstore.models.factorize`): (a) one coefficient ``C_m`` per material by
    a rank-1 least-squares fit with a non-parametric g; (b) ``orientation`` is fitted to all
    materials' ``y / C_m`` and rescaled to ``g(reference) = 1``; (c) ``C_m`` are re-estimated
    given g and ``coefficient`` is fitted to them, one row per material (its inner CV holds
    out whole ``groups``); (d) the product is one SymPy expression.

    Parameters
    ----------
    coefficient : EquationSearch, optional
        Search for C(bulk); default ``EquationSearch(form="auto", selection="stable:1se")``.
    orientation : EquationSearch, optional
        Search for g(orientation); default ``EquationSearch(selection="stable:1se")``.
    material : str, default "material"
        Column of ``X`` with one coefficient per value.
    bulk_features : sequence of str
        Columns of ``X`` that C may use (constant within a material; their mean is used).
    orientation_features : sequence of str, default ("normal_x", "normal_y", "normal_z")
        Descriptors g may use (any of ``normal_x, normal_y, normal_z, theta_deg, phi_deg``,
        computed from Miller, normal or angle columns of ``X``).
    reference : (3,) Miller index or normal, default (1, 1, 1); None for mean normalisation
    coefficient_method : {"lsq", "reference"}, default "lsq"
    time_budget : float, optional
        Seconds for the whole fit; given to the orientation search, or half to each search
        when the coefficient's engine has a time limit too (a free-form C by Operon; a
        scaling law is the deterministic sparse engine).

    Attributes
    ----------
    equation_ : sympy.Expr
    coefficient_, orientation_ : EquationSearch
        The fitted factors (``orientation_equation_`` is g after normalisation).
    orientation_equation_ : sympy.Expr
    coefficients_, initial_coefficients_ : Series
        ``C_m`` per material (target unit) after / before step (c).
    normalization_, coefficient_method_, selection_ : str
    front_ : list of Candidate
        Each valid C candidate times the selected g (complexity C + g + 1).
    time_limited_runs_, time_limited_seconds_, time_limited_floor_ : int, float, float
        Summed over both searches (:class:`EquationSearch`).
    engine_rate_ : float or None
        The slower of their ``engine_rate_``.
    """

    def __init__(self, coefficient: EquationSearch | None = None, orientation: EquationSearch | None = None,
                 material: str = "material", bulk_features: Sequence[str] = (),
                 orientation_features: Sequence[str] = DEFAULT_ORIENTATION_FEATURES,
                 reference: Sequence[float] | None = (1, 1, 1), coefficient_method: str = "lsq",
                 time_budget: float | None = None) -> None:
        self.coefficient = coefficient
        self.orientation = orientation
        self.material = material
        self.bulk_features = bulk_features
        self.orientation_features = orientation_features
        self.reference = reference
        self.coefficient_method = coefficient_method
        self.time_budget = time_budget

    def _check(self, X: pd.DataFrame) -> pd.DataFrame:
        if self.coefficient_method not in ("lsq", "reference"):
            raise ValueError(f"coefficient_method must be 'lsq' or 'reference', got {self.coefficient_method!r}")
        return _long_table(X, self.material, self.bulk_features, self.orientation_features)

    def _parts(self) -> tuple[EquationSearch, EquationSearch]:
        """Unfitted clones of both searches; the budget is halved when C's engine has a time limit too."""
        coefficient = (clone(self.coefficient) if self.coefficient is not None
                       else EquationSearch(form="auto", selection=DEFAULT_COEFFICIENT_SELECTION))
        share = self.time_budget
        if share is not None and coefficient.has_time_limit(list(self.bulk_features)):
            share = share / 2.0
            coefficient.set_params(time_budget=share)
        return coefficient, _orientation_search(self.orientation, share)

    def fit(self, X: pd.DataFrame, y: Any, groups: Any = None) -> FactorizedEquation:
        """Fit both factors on a long table (one row per material and orientation).

        Parameters
        ----------
        X : DataFrame, shape (n_rows, ...)
            Material column, bulk features, orientation columns.
        y : array-like, shape (n_rows,)
        groups : array-like, shape (n_rows,), optional
            CV groups (e.g. the element when ``material`` is element × potential): the
            coefficient's inner CV holds out whole groups.  Default: each material.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            Missing columns, fewer than two materials, or no valid candidate.
        """
        data, yv = self._check(X), np.asarray(y, dtype=float).reshape(-1)
        coefficient, orientation = self._parts()
        materials, mat_idx, bulk = _per_material(data, self.material, self.bulk_features)
        ref = reference_descriptors(self.reference)
        C, self.coefficient_method_, self.normalization_ = initial_coefficients(
            data, yv, self.material, self.orientation_features, ref, self.coefficient_method)
        Xg = data[list(self.orientation_features)].astype(float)
        self.orientation_ = orientation.fit(Xg, yv / C[mat_idx], groups=groups)
        g_expr = normalise_g(self.orientation_.equation_, data, self.orientation_features, ref)
        C2 = coefficients_given_g(yv, evaluate(g_expr, Xg), mat_idx, C)
        c_groups = materials if groups is None else pd.Series(np.asarray(groups)).groupby(mat_idx).first().to_numpy()
        self.coefficient_ = coefficient.fit(bulk, C2, groups=c_groups)
        self.orientation_equation_ = g_expr
        self.equation_ = self.coefficient_.equation_ * g_expr
        self.coefficients_ = pd.Series(C2, index=materials, name="C")
        self.initial_coefficients_ = pd.Series(C, index=materials, name="C")
        self.normalized_ = pd.Series(yv / C[mat_idx], name="normalized")
        self.selection_ = self.coefficient_.selection_
        self.front_ = self._combined_front(data, yv)
        _record_time_limits(self, [self.coefficient_, self.orientation_])
        return self

    def _combined_front(self, data: pd.DataFrame, y: np.ndarray) -> list[Candidate]:
        rejected = {sp.srepr(c.expr) for c, _ in self.coefficient_.rejected_}
        g, g_cx = self.orientation_equation_, _complexity(self.orientation_equation_)
        return [Candidate(c.complexity + g_cx + 1, mse_of(c.expr * g, data, y), c.expr * g)
                for c in self.coefficient_.front_ if sp.srepr(c.expr) not in rejected]

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Values of ``equation_``, shape (n_rows,); descriptors are computed from the orientation columns."""
        check_is_fitted(self, "equation_")
        names = {str(s) for s in self.equation_.free_symbols}
        if names & set(DESCRIPTOR_COLUMNS) - set(X.columns):
            X = add_orientation_descriptors(X)
        return evaluate(self.equation_, X.reset_index(drop=True))


class SumOfProducts(BaseEstimator, RegressorMixin):
    """``y(material, orientation) = Σ_j s_j(bulk) · g_j(orientation)``: natural scales of the bulk times orientation functions.

    For a target that is not one product (its (111) value changes sign from metal to
    metal while other orientations keep theirs, as surface stress and stiffness do), see
    :mod:`matstore.models.products`.  Steps: (a) the scales ``s_j`` (one bulk property
    brought to the target's dimension, e.g. ``c44·lattice_constant`` for N/m) and their
    number (1 … ``max_products``) are chosen by leave-one-group-out CV with the ``g_j``
    free per orientation and the one-standard-error rule; (b) each ``g_j`` is searched by
    ``orientation`` on all rows, its target ``(y/λ_m − Σ_{i≠j} s_i·ĝ_i)/s_j`` (the free ĝ_i
    of the other products, λ_m each material's level that the scales miss; for one product
    this is ``y/C_m`` of :class:`FactorizedEquation`); (c) one amplitude per product is
    refitted by least squares with the equations of (b); (d) the sum is one SymPy expression.

    Parameters
    ----------
    orientation : EquationSearch, optional
        Search for each g_j; default ``EquationSearch(selection="stable:1se")``.
    material : str, default "material"
        Column of ``X`` naming the material of each row.
    bulk_features : sequence of str
        Columns of ``X`` the scales may use (constant within a material).
    orientation_features : sequence of str, default ("normal_x", "normal_y", "normal_z")
    max_products : int, default 2
        Most products in the sum.
    feature_units : dict of str to str
        pint units of the bulk features (required: the scales have the target's dimension).
    target_unit : str
    n_se : float, default 1.0
        Standard errors of the rule choosing the number of products.
    time_budget : float, optional
        Seconds for the whole fit, split among the g_j searches.

    Attributes
    ----------
    equation_ : sympy.Expr
    scales_ : list of sympy.Expr
        The chosen scales (target unit, no constant).
    orientations_ : list of EquationSearch
        The fitted g_j searches; ``orientation_equations_`` are the g_j with their amplitude.
    scale_selection_ : dict
        :func:`matstore.models.products.select_scales`' record.
    selection_ : str
    front_ : list of Candidate
        The selected sum (one candidate: its complexity, training MSE, equation).
    time_limited_runs_, time_limited_seconds_, time_limited_floor_ : int, float, float
        Summed over the g_j searches (:class:`EquationSearch`).
    engine_rate_ : float or None
        The slowest of their ``engine_rate_``.

    Raises
    ------
    ValueError
        From ``fit``: missing columns or units, fewer than two materials, no scale with the
        target's dimension, or no valid g_j.
    """

    def __init__(self, orientation: EquationSearch | None = None, material: str = "material",
                 bulk_features: Sequence[str] = (), orientation_features: Sequence[str] = DEFAULT_ORIENTATION_FEATURES,
                 max_products: int = DEFAULT_PRODUCTS, feature_units: dict[str, str] | None = None,
                 target_unit: str | None = None, n_se: float = 1.0, time_budget: float | None = None) -> None:
        self.orientation = orientation
        self.material = material
        self.bulk_features = bulk_features
        self.orientation_features = orientation_features
        self.max_products = max_products
        self.feature_units = feature_units
        self.target_unit = target_unit
        self.n_se = n_se
        self.time_budget = time_budget

    def fit(self, X: pd.DataFrame, y: Any, groups: Any = None) -> SumOfProducts:
        """Choose the scales, search each g_j and refit the amplitudes on a long table.

        Parameters
        ----------
        X : DataFrame, shape (n_rows, ...)
            Material column, bulk features, orientation columns.
        y : array-like, shape (n_rows,)
        groups : array-like, shape (n_rows,), optional
            What the scale choice's folds hold out together (default: the material).

        Returns
        -------
        self
        """
        data, yv = _long_table(X, self.material, self.bulk_features, self.orientation_features), np.asarray(y, dtype=float)
        _, mat_idx, bulk = _per_material(data, self.material, self.bulk_features)
        values, exprs = scale_library(bulk, dict(self.feature_units or {}), self.target_unit)
        library_rows = values[mat_idx]
        P = orientation_basis(data, self.orientation_features, data["orientation_key"])
        row_groups = data[self.material].to_numpy() if groups is None else np.asarray(groups)
        chosen, self.scale_selection_ = select_scales(yv, library_rows, P, splits(len(yv), row_groups),
                                                      self.max_products, self.n_se)
        self.scales_ = [exprs[i] for i in chosen]
        scale_rows = library_rows[:, list(chosen)]
        g_values = P @ fit_weights(yv, scale_rows, P).T
        Xg = data[list(self.orientation_features)].astype(float)
        y_material = yv / material_multipliers(yv, np.einsum("rk,rk->r", scale_rows, g_values), mat_idx)[mat_idx]
        budget = None if self.time_budget is None else self.time_budget / len(chosen)
        self.orientations_ = [_orientation_search(self.orientation, budget).fit(
            *_partial_target(Xg, y_material, scale_rows, g_values, j, row_groups)) for j in range(len(chosen))]
        self._combine(yv, scale_rows, self._backfit(Xg, y_material, scale_rows, row_groups))
        _record_time_limits(self, self.orientations_)
        self.selection_ = self.scale_selection_["criterion"]
        self.front_ = [Candidate(_complexity(self.equation_), mse_of(self.equation_, data, yv), self.equation_)]
        return self

    def _backfit(self, Xg: pd.DataFrame, y: np.ndarray, scale_rows: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """One backfitting pass: each g_j re-chosen on ``(y − Σ_{i≠j} s_i·g_i) / s_j`` with the other g_i's equations.

        The first searches see the other products' free values ĝ_i, whose estimation error
        leaks into every g_j target and favours forms that fit it: on a 7-metal × 300-normal
        table whose g_1 is linear in the normal, a 23-node rational beat the linear law by the
        1-SE rule with ĝ_2 free (0.7 % rms off the true g_2) and lost with the true g_2.  The
        pass re-chooses among each search's own front
        (:meth:`EquationSearch.reselect`), in order, each with the latest equations of the others.
        A g_j keeps its first choice where the others' equations are not finite on the table or
        no form of its front passes the checks on the new target.  More passes were worse
        (docs/models.md, "Backfitting").  Returns the g_j equations' values on ``Xg``, shape
        (n_rows, n_products).
        """
        g_rows = np.column_stack([evaluate(o.equation_, Xg) for o in self.orientations_])
        if len(self.orientations_) < 2:
            return g_rows
        for j, search in enumerate(self.orientations_):
            if not np.all(np.isfinite(g_rows)):
                return g_rows
            try:
                search.reselect(*_partial_target(Xg, y, scale_rows, g_rows, j, groups))
            except ValueError:
                continue
            g_rows[:, j] = evaluate(search.equation_, Xg)
        return g_rows

    def _combine(self, y: np.ndarray, scale_rows: np.ndarray, g_rows: np.ndarray) -> None:
        """Amplitudes of the products by least squares (``g_rows``: the g_j values, shape (n_rows, n_products)); ``equation_`` and ``orientation_equations_``."""
        amplitude, *_ = np.linalg.lstsq(scale_rows * g_rows, y, rcond=None)
        self.orientation_equations_ = [scale_expr(o.equation_, a) for o, a in zip(self.orientations_, amplitude, strict=True)]
        self.equation_ = sp.Add(*[s * g for s, g in zip(self.scales_, self.orientation_equations_, strict=True)])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Values of ``equation_``, shape (n_rows,); descriptors are computed from the orientation columns."""
        check_is_fitted(self, "equation_")
        if {str(s) for s in self.equation_.free_symbols} & set(DESCRIPTOR_COLUMNS) - set(X.columns):
            X = add_orientation_descriptors(X)
        return evaluate(self.equation_, X.reset_index(drop=True))


def _polished(chosen: Candidate, front: list[Candidate], X: pd.DataFrame,
              y: np.ndarray) -> tuple[Candidate, list[Candidate]]:
    """The chosen candidate with its constants refitted to ``REFIT_FTOL``, and the front with it in its place.

    A polishing engine's front (Operon's ``polish``) and a re-chosen front are refitted only to
    ``SCORING_FTOL``: enough to choose among forms, not for the constants that are stored.
    Kept as it is unless the refit lowers its training MSE; the front is filtered again, as a
    more complex form may no longer be better than it.
    """
    better = refit_candidate(chosen, X, y, strict=False)
    if better is None or not better.loss < chosen.loss:
        return chosen, front
    return better, pareto_filter(better if c is chosen else c for c in front)


def time_limited_use(estimators: Sequence[Any]) -> tuple[int, float, float]:
    """Time-limited engine runs of fitted estimators, the seconds they spent under their limits and their least seconds.

    Sums ``time_limited_runs_``, ``time_limited_seconds_`` and ``time_limited_floor_``;
    ``None`` entries (failed CV folds) and estimators without them count nothing.
    """
    fitted = [e for e in estimators if e is not None and hasattr(e, "time_limited_runs_")]
    return (sum(e.time_limited_runs_ for e in fitted), sum(e.time_limited_seconds_ for e in fitted),
            sum(e.time_limited_floor_ for e in fitted))


def engine_rate_of(estimator: Any) -> float | None:
    """``engine_rate_`` (generations per second) of a fitted estimator (a composite's is its slowest search's); None without one."""
    rate = getattr(estimator, "engine_rate_", None)
    return float(rate) if rate else None


def set_engine_rate(estimator: Any, rate: float | None) -> Any:
    """Set ``engine_rate`` of every :class:`EquationSearch` in ``estimator`` (nested ones included); returns it."""
    keys = [k for k in estimator.get_params(deep=True) if k.rsplit("__", 1)[-1] == "engine_rate"]
    return estimator.set_params(**dict.fromkeys(keys, rate))


def _record_time_limits(composite: Any, parts: Sequence[Any]) -> None:
    """A composite estimator's ``time_limited_*`` (sums over its fitted ``parts``) and ``engine_rate_`` (their slowest)."""
    composite.time_limited_runs_, composite.time_limited_seconds_, composite.time_limited_floor_ = time_limited_use(parts)
    rates = [r for r in (engine_rate_of(p) for p in parts) if r is not None]
    composite.engine_rate_ = min(rates) if rates else None


def _orientation_search(template: EquationSearch | None, time_budget: float | None) -> EquationSearch:
    """An unfitted search for an orientation function: a clone of ``template`` (default ``stable:1se``), with its budget."""
    search = clone(template) if template is not None else EquationSearch(selection=DEFAULT_ORIENTATION_SELECTION)
    if time_budget is not None:
        search.set_params(time_budget=time_budget)
    return search


def _per_material(data: pd.DataFrame, material: str, bulk_features: Sequence[str]
                  ) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Materials, each row's index among them, and the bulk features per material (their mean; a fresh index)."""
    materials, mat_idx = material_codes(data, material)
    bulk = data.groupby(material, sort=False)[list(bulk_features)].mean().loc[materials]
    return materials, mat_idx, bulk.astype(float).reset_index(drop=True)


def _partial_target(Xg: pd.DataFrame, y: np.ndarray, scale_rows: np.ndarray, g_values: np.ndarray, j: int,
                    groups: np.ndarray) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """``(X, target, groups)`` of the g_j search: ``(y − Σ_{i≠j} s_i·g_i) / s_j``, g_i the columns of ``g_values``.

    Rows where the scale s_j is zero say nothing about g_j and are left out.
    """
    others = np.delete(np.arange(scale_rows.shape[1]), j)
    rest = np.einsum("rk,rk->r", scale_rows[:, others], g_values[:, others])
    keep = scale_rows[:, j] != 0
    return Xg[keep].reset_index(drop=True), (y - rest)[keep] / scale_rows[keep, j], groups[keep]


def _long_table(X: pd.DataFrame, material: str, bulk_features: Sequence[str], orientation_features: Sequence[str]
                ) -> pd.DataFrame:
    """``X`` with orientation descriptors and a fresh index, after checking the columns a factorised fit needs.

    Raises
    ------
    ValueError
        An unknown orientation feature, a missing column, or fewer than two materials.
    """
    bad = [f for f in orientation_features if f not in DESCRIPTOR_COLUMNS]
    if bad:
        raise ValueError(f"orientation features must be among {DESCRIPTOR_COLUMNS}, got {bad}")
    missing = [c for c in [material, *bulk_features] if c not in X.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}")
    data = add_orientation_descriptors(X).reset_index(drop=True)
    if data[material].nunique() < 2:
        raise ValueError("factorisation needs at least two materials")
    return data


def _complexity(expr: sp.Expr) -> int:
    from matstore.models.engines.base import expression_complexity

    return expression_complexity(expr)


__all__ = ["CONSTANT_REFUSED", "EquationSearch", "FactorizedEquation", "SumOfProducts"]
