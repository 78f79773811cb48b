"""Sparse regression over a generated library of candidate features (SISSO-like).

The library holds, for the input columns ``x_1 … x_n``, every monomial
``∏ x_i^{e_i}`` with at most ``max_factors`` factors and exponents drawn from
``exponents`` (negative and fractional powers only where the column's sign allows it: a
negative power needs a column of constant sign, a fractional power a non-negative one),
plus ``log(x_i)`` for strictly positive columns.  So products, ratios, squares, cubes,
square roots and their inverses are all members (``x1*x2/x3``, ``E/a**2``,
``sqrt(c44/rho)``...).  A linear model ``y ≈ c_0 + Σ_j c_j φ_j`` with at most ``max_terms``
library terms is then chosen by

- ``method="l0"`` (default): sure-independence screening of the library against the
  target and against the residuals of the best smaller models, followed by exhaustive best
  subset (ℓ0) regression within the screened subspace — the SISSO procedure [1]_ — and, in
  addition, forward selection (a beam search of orthogonal least squares [3]_) over the
  terms of at most 1, 2, … ``max_factors`` factors, whose best support of each size joins
  the candidates.  Screening ranks terms one at a time by their correlation with the
  residual, so near-copies of the dominant term (``n``, ``n·√d1``, ``n³·√d1``, …) fill its
  pool and a sum of simple terms that only fits jointly (``2.8·n − 4/d1 − 2/d2``) is
  missed; forward selection over the simplest terms reaches it.  The search of two terms is
  exhaustive over a wider subspace than the screened pool: every pair of the pool and the
  terms best correlated with the target, up to ``max_combinations`` pairs (every pair of a
  library of up to 775 terms by default), in closed form, over the terms of at most 1, 2, …
  factors as forward selection; a pair whose terms cancel
  (``δ²·x − δ²·x²``, each alone a poor fit ranked below near-copies ``δ²·r̄^a`` of their
  sum) is found there and by neither screening nor forward selection; or
- ``method="lasso"``: the supports met along the LASSO/LARS path (``sklearn.linear_model.lars_path``).

Of library columns that are affine functions of one another (every power of a column with
two distinct values, such as a count n ∈ {2, 3}, is one of n) only the simplest is kept:
the lowest complexity, so the plain column ``n``.

Every chosen support is refitted by ordinary least squares (float64), with and without an
intercept when ``fit_intercept="auto"``, and the engine returns the Pareto front of
(complexity, MSE).  A support of near-collinear terms is no candidate: its column-standardized
design (centred when the model has an intercept, columns scaled to unit norm) must have a
condition number of at most :data:`MAX_CONDITION` (1e3), else its least-squares coefficients
are huge, cancel one another and change wholesale between subsamples (such as
``−8.1e6·Δχ²/r̄ + 1.8e7·Δχ²/r̄² − 1.0e7·Δχ²/r̄³``); the screening and forward searches skip
such supports, so the next best well-conditioned ones are offered instead.  The engine is
fully deterministic; ``random_state`` is accepted for interface compatibility and ignored.  The approach follows explainable-ML/compressed
sensing descriptor searches such as the enthalpy-of-formation models of lanthanide
orthophosphates and [1]_.

References
----------
.. [1] R. Ouyang, S. Curtarolo, E. Ahmetcik, M. Scheffler, L. M. Ghiringhelli, "SISSO: a
   compressed-sensing method for identifying the best low-dimensional descriptor in an
   immensity of offered candidates", Phys. Rev. Materials 2, 083802 (2018).
.. [2] R. Tibshirani, "Regression shrinkage and selection via the lasso", J. R. Stat. Soc. B
   58, 267 (1996); B. Efron et al., "Least angle regression", Ann. Stat. 32, 407 (2004).
.. [3] S. Chen, S. A. Billings, W. Luo, "Orthogonal least squares methods and their application
   to non-linear system identification", Int. J. Control 50, 1873 (1989).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from fractions import Fraction
from functools import lru_cache
from itertools import chain, combinations, product
from math import comb
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import sympy as sp

from matstore.models.dimensions import Dim, monomial_dimension, unit_dimension
from matstore.models.engines.base import Candidate, EngineFitError, SymbolicEngine

_LIBRARIES = ("linear", "polynomial", "full")


@lru_cache(maxsize=256)
def _exponent(e: float) -> sp.Expr:
    frac = Fraction(e).limit_denominator(12)
    return sp.Rational(frac.numerator, frac.denominator)


def build_library(
    X: pd.DataFrame,
    *,
    library: str = "full",
    exponents: tuple[float, ...] = (-3, -2, -1, -0.5, 0.5, 1, 2, 3),
    max_factors: int = 3,
    log: bool = True,
    max_library: int = 10000,
    dimensions: tuple[Mapping[str, Dim], Dim] | None = None,
) -> tuple[np.ndarray, LazyTerms]:
    """Generate the candidate-feature library of :class:`SparseEngine`.

    Parameters
    ----------
    X : DataFrame, shape (n_samples, n_features)
    library : {"linear", "polynomial", "full"}
        ``linear``: the columns themselves.  ``polynomial``: monomials with positive
        integer exponents from ``exponents``.  ``full``: all exponents and logs.
    exponents : tuple of float
        Allowed non-zero exponents of one factor.
    max_factors : int
        Most distinct columns in one monomial.  When the library would exceed
        ``max_library`` members, the exponents of multi-factor terms are restricted first
        (to ±1, ±2, then ±1: products and ratios), then ``max_factors`` is lowered.
    log : bool
        Add ``log(x)`` for strictly positive columns (``full`` only).
    max_library : int
        Size cap of the library.
    dimensions : (mapping of column to dimension, target dimension), optional
        Keep only the monomials whose dimension equals the target's (dimensions as returned
        by :func:`matstore.models.dimensions.unit_dimension`), so that every library term
        times a dimensionless coefficient is dimensionally homogeneous with the target;
        logarithms are then left out.  The exponent restriction of multi-factor terms is
        skipped (the dimension filter keeps the library small) and the first
        ``max_library`` consistent terms are kept.

    Returns
    -------
    values : ndarray, shape (n_samples, n_terms)
    exprs : sequence of sympy.Expr, length n_terms (built lazily when indexed)
        Finite, non-constant columns, none an affine function of another (of such
        duplicates the simplest term is kept: lowest complexity, so the plain column first;
        see :class:`_DistinctTerms`).
    """
    if library not in _LIBRARIES:
        raise ValueError(f"library must be one of {_LIBRARIES}, got {library!r}")
    names = list(X.columns)
    data = {n: np.asarray(X[n], dtype=float) for n in names}
    allowed = {n: _allowed_exponents(data[n], library, exponents) for n in names}
    max_factors = 1 if library == "linear" else max(1, min(max_factors, len(names)))
    multi = allowed
    if dimensions is None:
        max_factors, multi = _fit_library_size(allowed, max_factors, max_library)
    terms = _DistinctTerms()
    with np.errstate(all="ignore"):
        _add_monomials(terms, data, len(X), allowed, multi, max_factors, max_library, dimensions)
        if library == "full" and log and dimensions is None:
            for n in names:
                if np.min(data[n]) > 0:
                    terms.add(np.log(data[n]), ("log", n))
    return terms.stacked(len(X), max_library)


def _allowed_exponents(column: np.ndarray, library: str, exponents: tuple[float, ...]) -> list[float]:
    """Exponents of ``exponents`` that one column, shape (n_samples,), may take in ``library``."""
    if library == "linear":
        return [1.0]
    lo, hi = float(np.min(column)), float(np.max(column))
    opts = []
    for e in exponents:
        if e == 0:
            continue
        if library == "polynomial" and (e < 0 or float(e) != int(e)):
            continue
        if e < 0 and not (lo > 0 or hi < 0):
            continue
        if float(e) != int(e) and lo < 0:
            continue
        if float(e) != int(e) and e < 0 and lo <= 0:
            continue
        opts.append(float(e))
    return opts


def _fit_library_size(
    allowed: dict[str, list[float]], max_factors: int, max_library: int
) -> tuple[int, dict[str, list[float]]]:
    """Most factors and the multi-factor exponents per column that keep the library within ``max_library``."""
    # First restrict the exponents of multi-factor terms (full set -> ±1, ±2 -> ±1,
    # i.e. products and ratios), then drop factors.
    multi = allowed
    while max_factors > 1:
        for keep in (None, (-2.0, -1.0, 1.0, 2.0), (-1.0, 1.0)):
            multi = allowed if keep is None else _keep_exponents(allowed, keep)
            if _library_size(allowed, multi, max_factors, max_library) <= max_library:
                return max_factors, multi
        max_factors -= 1
    return max_factors, multi


def _keep_exponents(allowed: dict[str, list[float]], keep: tuple[float, ...]) -> dict[str, list[float]]:
    """Each column's allowed exponents restricted to those in ``keep``."""
    return {n: [e for e in opts if e in keep] for n, opts in allowed.items()}


def _library_size(
    allowed: dict[str, list[float]], multi: dict[str, list[float]], max_factors: int, max_library: int
) -> int:
    """Number of monomials with up to ``max_factors`` factors, counted until it passes ``max_library``."""
    total = sum(len(opts) for opts in allowed.values())
    sizes = [len(opts) for opts in multi.values()]
    for j in range(2, max_factors + 1):
        for combo in combinations(sizes, j):
            total += int(np.prod(combo))
            if total > max_library:
                return total
    return total


def _term_rank(recipe: Any) -> tuple[int, int, float, int, int]:
    """Simplicity rank of a library term's recipe, lower is simpler.

    ``(complexity, factors, Σ|exponent|, negative exponents, fractional exponents)``; the
    complexity is :func:`~matstore.models.engines.base.expression_complexity` of the term
    (a plain column 1, ``log(x)`` 2, ``x**e`` 3, a product of k factors the factors' plus
    k − 1), computed from the recipe without building the SymPy expression.
    """
    if recipe[0] == "log":
        return (2, 1, 0.0, 0, 0)
    exps = recipe[2]
    complexity = sum(1 if e == 1 else 3 for e in exps) + len(exps) - 1
    return (complexity, len(exps), float(sum(abs(e) for e in exps)), sum(e < 0 for e in exps),
            sum(float(e) != int(e) for e in exps))


class _DistinctTerms:
    """Collects finite, non-constant library columns (shape (n_samples,)), one per affine class.

    Two columns are duplicates when one is an affine function of the other, ``u = a + b·v``
    with ``b`` of either sign (equal after centring and scaling to unit standard deviation,
    up to the sign, to 9 decimals); with an intercept they span the same models.  Of
    duplicates the simplest is kept (:func:`_term_rank`: lowest complexity, so the plain
    column before any power of it, then fewer factors, smaller exponents, positive and
    integer ones), at the place of the first one met.  A column with two distinct values
    (a count such as n ∈ {2, 3}) makes every power of it a duplicate of it: ``n`` itself is
    kept, so a law linear in ``n`` stays a sum of library terms.
    """

    def __init__(self) -> None:
        self.values: list[np.ndarray] = []
        self.exprs: list[Any] = []
        self._seen: dict[bytes, int] = {}

    def add(self, vals: np.ndarray, expr: Any) -> None:
        """Keep ``vals`` with its lazy expression unless non-finite, constant or a duplicate of a simpler term."""
        if not np.all(np.isfinite(vals)):
            return
        sd = float(np.std(vals))
        if sd <= 1e-12 * max(1.0, float(np.max(np.abs(vals)))):
            return
        z = np.round((vals - vals.mean()) / sd, 9)
        lead = np.flatnonzero(z)
        if lead.size and z[lead[0]] < 0:
            z = -z
        z += 0.0  # no negative zeros in the key
        key = z.tobytes()
        at = self._seen.get(key)
        if at is None:
            self._seen[key] = len(self.values)
            self.values.append(vals)
            self.exprs.append(expr)
        elif _term_rank(expr) < _term_rank(self.exprs[at]):
            self.values[at] = vals
            self.exprs[at] = expr

    def stacked(self, n_samples: int, max_library: int) -> tuple[np.ndarray, LazyTerms]:
        """The first ``max_library`` columns as an array, shape (n_samples, n_terms), and their terms."""
        values, exprs = self.values[:max_library], self.exprs[:max_library]
        if not values:
            return np.empty((n_samples, 0)), LazyTerms([])
        return np.column_stack(values), LazyTerms(exprs)


def _add_monomials(
    terms: _DistinctTerms,
    data: dict[str, np.ndarray],
    n_samples: int,
    allowed: dict[str, list[float]],
    multi: dict[str, list[float]],
    max_factors: int,
    max_library: int,
    dimensions: tuple[Mapping[str, Dim], Dim] | None,
) -> None:
    """Add every monomial of up to ``max_factors`` columns (of the target's dimension, if given) to ``terms``."""
    for j in range(1, max_factors + 1):
        opts = allowed if j == 1 else multi
        for cols, exps in _monomials(list(data), opts, j, dimensions):
            if len(terms.values) >= max_library:
                return
            vals = np.ones(n_samples)
            for c, e in zip(cols, exps, strict=True):
                vals = vals * np.power(data[c], e)
            terms.add(vals, ("mono", cols, exps))


def _monomials(
    names: list[str], opts: dict[str, list[float]], j: int, dimensions: tuple[Mapping[str, Dim], Dim] | None
):
    """``(cols, exps)`` of every ``j``-factor monomial of ``names`` (of the target's dimension, if given), in order."""
    if dimensions is None:
        return ((cols, exps) for cols in combinations(names, j) for exps in product(*(opts[c] for c in cols)))
    dims, target = dimensions
    return _consistent_monomials(tuple((n, dims[n], tuple(opts[n])) for n in names), j, target)


@lru_cache(maxsize=256)
def _consistent_monomials(
    columns: tuple[tuple[str, Dim, tuple[float, ...]], ...], j: int, target: Dim
) -> tuple[tuple[tuple[str, ...], tuple[float, ...]], ...]:
    """The ``j``-factor monomials of dimension ``target`` of ``columns`` ((name, dimension, exponents) each).

    Cached: a fit builds the same library for every CV fold and size choice (the same columns,
    dimensions and exponents), and the dimension check of every candidate monomial dominated
    the library's cost.
    """
    opts = {n: exps for n, _, exps in columns}
    dims = {n: d for n, d, _ in columns}
    return tuple((cols, exps) for cols in combinations(list(opts), j) for exps in product(*(opts[c] for c in cols))
                 if _has_dimension(cols, exps, dims, target))


def _has_dimension(cols: tuple[str, ...], exps: tuple[float, ...], dims: Mapping[str, Dim], target: Dim) -> bool:
    """Whether the monomial ``∏ cols[i] ** exps[i]`` has dimension ``target``."""
    return monomial_dimension((dims[c], e) for c, e in zip(cols, exps, strict=True)) == target


class LazyTerms:
    """Sequence of library terms built into SymPy expressions only when indexed."""

    def __init__(self, recipes: list[Any]) -> None:
        self._recipes = recipes
        self._cache: dict[int, sp.Expr] = {}

    def __len__(self) -> int:
        return len(self._recipes)

    def __getitem__(self, i: int) -> sp.Expr:
        if i not in self._cache:
            recipe = self._recipes[i]
            if recipe[0] == "log":
                self._cache[i] = sp.log(sp.Symbol(recipe[1]))
            else:
                expr: sp.Expr = sp.Integer(1)
                for c, e in zip(recipe[1], recipe[2], strict=True):
                    expr = expr * sp.Symbol(c) ** _exponent(e)
                self._cache[i] = expr
        return self._cache[i]

    def __iter__(self):  # noqa: D105
        return (self[i] for i in range(len(self)))

    def complexity(self, i: int) -> int:
        """:func:`~matstore.models.engines.base.expression_complexity` of term ``i``, from its recipe."""
        return _term_rank(self._recipes[i])[0]

    def factors(self) -> np.ndarray:
        """Number of columns in each term (``log(x)``: 1), shape (n_terms,)."""
        return np.array([1 if r[0] == "log" else len(r[1]) for r in self._recipes], dtype=np.intp)


MAX_CONDITION = 1e3
"""Largest condition number of a candidate's column-standardized design (see :func:`condition_number`).

A support above it is no candidate: its columns are so nearly collinear that the least-squares
coefficients are large, cancel one another and change wholesale with the sample (Belsley, Kuh
& Welsch, *Regression Diagnostics*, Wiley 1980, ch. 3: condition indices beyond 30–100 mark
strong dependencies; 1e3 refuses only near-exact ones: two terms with |corr| above
0.999998, while ``x, x², x³`` with ``x`` in [1, 2] (423) pass)."""


def condition_number(A: np.ndarray, intercept: bool) -> float:
    """Condition number of the column-standardized design of one support.

    Parameters
    ----------
    A : ndarray, shape (n_samples, k)
        The support's library columns.
    intercept : bool
        Whether the model has an intercept: the columns are then centred first (collinearity
        with the constant is harmless there), else used as they are.

    Returns
    -------
    float
        ``s_max / s_min`` of the columns scaled to unit Euclidean norm (1 for one column;
        ``inf`` for a zero column or a rank-deficient design).
    """
    Z = A - A.mean(axis=0) if intercept else np.asarray(A, dtype=float)
    norms = np.linalg.norm(Z, axis=0)
    if Z.shape[1] == 0 or np.any(norms == 0) or not np.all(np.isfinite(Z)):
        return float("inf")
    s = np.linalg.svd(Z / norms, compute_uv=False)
    return float(s[0] / s[-1]) if s[-1] > 0 else float("inf")


def _well_conditioned(G: np.ndarray, subsets: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` rows of ``subsets`` (m, k) whose columns have condition number <= MAX_CONDITION.

    ``G`` (p, p) is the Gram matrix of the standardized (unit-norm, centred with an intercept)
    library, so ``G[s, s]`` is a support's ``ZᵀZ`` and its condition number
    ``sqrt(λ_max / λ_min)``.  Rows are taken in their order; returns shape (≤ count, k).
    """
    if subsets.shape[1] == 1:
        return subsets[:count]
    kept: list[np.ndarray] = []
    chunk = max(8 * count, 256)
    for start in range(0, len(subsets), chunk):
        block = subsets[start : start + chunk]
        lam = np.linalg.eigvalsh(G[block[:, :, None], block[:, None, :]])
        ok = lam[:, 0] * MAX_CONDITION**2 >= lam[:, -1]
        kept.extend(block[ok][: count - len(kept)])
        if len(kept) >= count:
            break
    return np.array(kept, dtype=np.intp).reshape(-1, subsets.shape[1])


def _forward_supports(A: np.ndarray, yv: np.ndarray, max_terms: int, width: int, keep: int) -> set[tuple[int, ...]]:
    """Supports grown one term at a time over the whole library (forward selection, beam search).

    ``A`` (n, p): the standardized library (unit-norm columns, centred with an intercept);
    ``yv`` (n,): the target (centred with an intercept).  Size 1 starts from the ``width``
    best single terms; each support of size k is extended by every library term, the RSS of
    each extension computed exactly from the residual and the term's part orthogonal to the
    support (orthogonal least squares, S. Chen, S. A. Billings & W. Luo, Int. J. Control 50,
    1873 (1989)), and the ``width`` best distinct well-conditioned supports of size k + 1 are
    kept.  Unlike screening by correlation with the residual, which a crowd of near-copies of
    one term can fill, this reaches sums of simple terms such as ``a·n + b/d1 + c/d2``.
    Returns the ``keep`` best supports of each size (sorted index tuples).
    """
    p = A.shape[1]
    min_den = 1.0 / MAX_CONDITION**2  # a term this close to the support's span makes it ill-conditioned
    beam: list[tuple[int, ...]] = [()]
    out: set[tuple[int, ...]] = set()
    yy = float(yv @ yv)
    for _ in range(max_terms):
        scored: dict[tuple[int, ...], float] = {}
        for S in beam:
            if S:
                Q, _ = np.linalg.qr(A[:, list(S)])
                r = yv - Q @ (Q.T @ yv)
                proj = np.column_stack([r, Q]).T @ A  # (1 + k, p): rᵀA, then QᵀA
                num, den = proj[0], 1.0 - np.einsum("kp,kp->p", proj[1:], proj[1:])
            else:
                r, num, den = yv, yv @ A, np.ones(p)
            ok = den > min_den
            ok[list(S)] = False
            gain = np.where(ok, num**2 / np.where(ok, den, 1.0), -np.inf)
            rr = float(r @ r)
            top = np.argpartition(-gain, width - 1)[:width] if p > width else np.arange(p)
            for j in top[np.lexsort((top, -gain[top]))]:
                if not ok[j]:
                    break
                T = tuple(sorted((*S, int(j))))
                scored[T] = min(scored.get(T, np.inf), max(rr - float(gain[j]), 0.0))
        beam = []
        for T, _rss in sorted(scored.items(), key=lambda t: (t[1], t[0])):
            if len(T) == 1 or condition_number(A[:, list(T)], False) <= MAX_CONDITION:
                beam.append(T)
                if len(beam) == width:
                    break
        if not beam:
            break
        out.update(beam[:keep])
        if scored[beam[0]] <= 1e-24 * max(yy, 1e-300):
            break  # exact fit: larger supports cannot improve
    return out


def _pair_supports(
    A: np.ndarray, yv: np.ndarray, pool: list[int], order: np.ndarray, factors: np.ndarray, max_combinations: int,
    count: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The best pairs of terms of at most 1, 2, … factors: the ℓ0 search of two terms.

    ``A`` (n, p), ``yv`` (n,): the standardized library and target (see :func:`_best_pairs`);
    ``pool``: the screened pool; ``order`` (p,): the library by decreasing correlation with
    the target; ``factors`` (p,): columns per term.  For each factor tier, the ``count`` best
    well-conditioned pairs of its :func:`_pair_subspace` (the tier's pool terms, then its
    terms in ``order``); a tier whose every term is in a larger tier's subspace is skipped
    (its pairs were all evaluated there).  As with forward selection, the simpler tiers keep
    simple terms in reach when the whole library exceeds the subspace (775 terms by
    default).  Returns the pairs, shape (≤ count·tiers, 2), sorted by RSS (best first), and
    their RSS.
    """
    tiers = np.unique(factors)[::-1]
    subs = [_pair_subspace([i for i in pool if factors[i] <= f], order[factors[order] <= f], max_combinations)
            for f in tiers]
    found: dict[tuple[int, ...], float] = {}
    for t, (f, sub) in enumerate(zip(tiers, subs, strict=True)):
        if any(np.count_nonzero(factors <= f) == np.count_nonzero(factors[big] <= f) for big in subs[:t]):
            continue
        pairs, rss = _best_pairs(A, yv, sub, count)
        found.update({tuple(int(i) for i in q): float(r) for q, r in zip(pairs, rss, strict=True)})
    ranked = sorted(found.items(), key=lambda item: (item[1], item[0]))
    return (np.array([q for q, _ in ranked], dtype=np.intp).reshape(-1, 2),
            np.array([r for _, r in ranked], dtype=float))


def _pair_subspace(pool: list[int], order: np.ndarray, max_combinations: int) -> np.ndarray:
    """Library columns whose every pair the ℓ0 search of two terms evaluates, sorted, shape (m,).

    ``pool``: the screened pool (most relevant first), ``order`` (p,): the whole library by
    decreasing correlation with the target.  The pool comes first, then the library in
    ``order``, up to the most columns ``m`` with ``m·(m − 1)/2 <= max_combinations`` (775
    by default, so every pair of a library of up to 775 terms; at least the pool's first
    two).  Screening by correlation ranks each term alone: of a pair whose terms cancel, such
    as ``δ²·x − δ²·x²``, each term alone fits poorly and ranks low (60th–320th of a 731-term
    library where near-copies ``δ²·r̄^a`` of their sum fill the top), so it is never in a
    pool of 30 per round, nor reached by forward selection from the best single terms.
    """
    m = max(2, int((1 + np.sqrt(1 + 8 * max(max_combinations, 1))) // 2))
    seen = dict.fromkeys(pool[:m])
    for i in order:
        if len(seen) >= m:
            break
        seen.setdefault(int(i))
    return np.array(sorted(seen), dtype=np.intp)


def _best_pairs(A: np.ndarray, yv: np.ndarray, sub: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` best well-conditioned pairs of the columns ``sub``, by closed-form least squares.

    ``A`` (n, p): the standardized library (unit-norm columns, centred with an intercept);
    ``yv`` (n,): the target (centred with an intercept); ``sub`` (m,): sorted column indices.
    For columns i, j with correlation g (``G = AᵀA``, ``b = Aᵀy``):
    ``RSS = yᵀy − (b_i² + b_j² − 2·g·b_i·b_j) / (1 − g²)``; the pair's condition number
    ``sqrt((1 + |g|) / (1 − |g|))`` must be at most :data:`MAX_CONDITION`.  Returns the pairs
    as library indices, shape (≤ count, 2), each sorted, best first (ties in lexicographic
    order), and their RSS, shape (≤ count,).
    """
    As = A if len(sub) == A.shape[1] else A[:, sub]
    G, b, yy = As.T @ As, As.T @ yv, float(yv @ yv)
    m = len(b)
    bad = np.abs(G) > (MAX_CONDITION**2 - 1) / (MAX_CONDITION**2 + 1)
    bad |= np.tri(m, dtype=bool)  # each pair once (i < j), no column with itself
    den = np.square(G)
    np.subtract(1.0, den, out=den)
    np.copyto(den, 1.0, where=bad)
    rss = np.multiply.outer(b, 2 * b)  # yy − (b_i² + b_j² − 2·g·b_i·b_j) / (1 − g²), in place
    rss *= G
    rss -= (b * b)[:, None]
    rss -= (b * b)[None, :]
    rss /= den
    rss += yy
    np.maximum(rss, 0.0, out=rss)
    np.copyto(rss, np.inf, where=bad)
    # the count-th least RSS is at most the count-th least of the rows' minima (argpartition
    # of all m² entries, half of them inf, took ten times longer than the rest)
    if count <= 0 or m < 2:
        return np.empty((0, 2), dtype=np.intp), np.empty(0)
    bound = np.partition(rss.min(axis=1), count - 1)[count - 1] if count <= m else np.inf
    flat = rss.ravel()  # row-major: pairs in lexicographic order
    top = np.flatnonzero(flat <= bound)
    top = top[np.isfinite(flat[top])]
    top = top[np.lexsort((top, flat[top]))][:count]
    i, j = np.divmod(top, m)
    return np.column_stack([sub[i], sub[j]]).astype(np.intp), flat[top]


def _subset_rss(G: np.ndarray, b: np.ndarray, yy: float, subsets: np.ndarray) -> np.ndarray:
    """Residual sums of squares of least squares on each column subset (batched).

    ``G`` (p, p) and ``b`` (p,) are the Gram matrix and ``Φᵀy`` of unit-norm columns; ``yy`` is
    ``yᵀy``; ``subsets`` (m, k) index columns.  Returns (m,) RSS values.
    """
    Gs = G[subsets[:, :, None], subsets[:, None, :]]
    bs = b[subsets]
    k = subsets.shape[1]
    Gs += 1e-12 * np.eye(k)  # a ridge against exactly collinear columns (Gs is a fresh copy)
    try:
        coef = np.linalg.solve(Gs, bs[..., None])[..., 0]
    except np.linalg.LinAlgError:
        coef = np.stack([np.linalg.lstsq(g, v, rcond=None)[0] for g, v in zip(Gs, bs, strict=True)])
    return np.maximum(yy - np.einsum("mk,mk->m", coef, bs), 0.0)


@lru_cache(maxsize=8)
def _combinations(n: int, k: int) -> np.ndarray:
    """Every ``k``-subset of ``range(n)`` in lexicographic order, shape (comb(n, k), k); cached, read-only.

    The ℓ0 search enumerates the same subsets of its screened pool (up to ``max_combinations``
    rows) in every fit of a cross-validation; building them from a list of tuples took longer
    than solving the least-squares problems.
    """
    out = np.fromiter(chain.from_iterable(combinations(range(n), k)), dtype=np.intp, count=comb(n, k) * k)
    out = out.reshape(-1, k)
    out.flags.writeable = False
    return out


class SparseEngine(SymbolicEngine):
    """Sparse (ℓ0 or LASSO) regression over a generated feature library, SISSO-like.

    Parameters
    ----------
    max_terms : int, default 3
        Largest number of library terms in one equation (the intercept not counted).
    library : {"linear", "polynomial", "full"}, default "full"
        Candidate features, see :func:`build_library`.
    exponents : tuple of float, default (-3, -2, -1, -0.5, 0.5, 1, 2, 3)
    max_factors : int, default 3
        Most columns multiplied in one library term (lowered to respect ``max_library``).
    log : bool, default True
    method : {"l0", "lasso"}, default "l0"
    screen : int, default 30
        Features added to the subspace per screening round (``l0``).
    n_per_size : int, default 5
        Best subsets of each size passed to the Pareto front (``l0`` screening); the
        forward selection keeps ``max(n_per_size, 5)`` supports of each size in its beam
        and passes the best one of each size, per factor tier.
    fit_intercept : {"auto", True, False}, default "auto"
        ``auto`` offers both variants; the Pareto front keeps the intercept only when it
        lowers the loss.
    max_library : int, default 10000
    max_combinations : int, default 300000
        Cap on subsets evaluated per size; the screened subspace is shrunk to respect it.
        Pairs: the pool is widened to it (the terms best correlated with the target, up to
        775 terms by default, see :func:`_pair_subspace`).
    feature_units : dict of str to str, optional
        Unit of every input column (pint strings such as ``"angstrom"``, ``"eV/atom"``,
        ``"GPa"``).  With ``target_unit``, the library holds only monomials with the
        target's dimension (see :func:`build_library`): every equation is then a sum of
        dimensionally homogeneous terms with dimensionless coefficients — a scaling law such
        as ``γ = k · E_c / a²`` — in the spirit of Buckingham's Π theorem (E. Buckingham,
        Phys. Rev. 4, 345 (1914)) and of SISSO's dimensional constraint [1]_.
    target_unit : str, optional
        Unit of the target; see ``feature_units``.
    random_state : ignored (the engine is deterministic)

    Attributes
    ----------
    pareto_front_ : list of Candidate
    library_size_ : int
        Number of library terms generated.

    Examples
    --------
    >>> eng = SparseEngine(max_terms=2).fit(X, y)   # doctest: +SKIP
    >>> eng.pareto_front_[-1].expr                  # doctest: +SKIP
    2.5*x1*x2/x3
    """

    name: ClassVar[str] = "sparse"
    default_parameters: ClassVar[dict[str, Any]] = {
        "max_terms": 3,
        "library": "full",
        "exponents": (-3, -2, -1, -0.5, 0.5, 1, 2, 3),
        "max_factors": 3,
        "log": True,
        "method": "l0",
        "screen": 30,
        "n_per_size": 5,
        "fit_intercept": "auto",
        "max_library": 10000,
        "max_combinations": 300000,
        "feature_units": None,
        "target_unit": None,
        "random_state": None,
    }

    def __init__(
        self,
        max_terms: int = 3,
        library: str = "full",
        exponents: tuple[float, ...] = (-3, -2, -1, -0.5, 0.5, 1, 2, 3),
        max_factors: int = 3,
        log: bool = True,
        method: str = "l0",
        screen: int = 30,
        n_per_size: int = 5,
        fit_intercept: bool | str = "auto",
        max_library: int = 10000,
        max_combinations: int = 300000,
        feature_units: dict[str, str] | None = None,
        target_unit: str | None = None,
        random_state: int | None = None,
    ) -> None:
        self.max_terms = max_terms
        self.library = library
        self.exponents = exponents
        self.max_factors = max_factors
        self.log = log
        self.method = method
        self.screen = screen
        self.n_per_size = n_per_size
        self.fit_intercept = fit_intercept
        self.max_library = max_library
        self.max_combinations = max_combinations
        self.feature_units = feature_units
        self.target_unit = target_unit
        self.random_state = random_state

    def _dimensions(self, columns: list[str]) -> tuple[dict[str, Dim], Dim] | None:
        """Column and target dimensions for the dimensional library, or None without units.

        Raises
        ------
        ValueError
            A column has no unit in ``feature_units``, or a unit pint does not know.
        """
        if self.feature_units is None or self.target_unit is None:
            return None
        missing = [c for c in columns if c not in self.feature_units]
        if missing:
            raise ValueError(f"sparse: feature_units has no unit for column(s) {missing}")
        return {c: unit_dimension(self.feature_units[c]) for c in columns}, unit_dimension(self.target_unit)

    # ------------------------------------------------------------------------------
    def _fit_front(self, X: pd.DataFrame, y: np.ndarray) -> list[Candidate]:
        if self.method not in ("l0", "lasso"):
            raise ValueError(f"method must be 'l0' or 'lasso', got {self.method!r}")
        if self.fit_intercept not in ("auto", True, False):
            raise ValueError(f"fit_intercept must be 'auto', True or False, got {self.fit_intercept!r}")
        dims = self._dimensions(list(X.columns))
        Phi, exprs = build_library(
            X,
            library=self.library,
            exponents=tuple(self.exponents),
            max_factors=int(self.max_factors),
            log=bool(self.log),
            max_library=int(self.max_library),
            dimensions=dims,
        )
        self.library_size_ = len(exprs)
        n = len(y)
        # A constant is no scaling law of a dimensional target: without intercept and with a
        # dimensional library, the front holds only sums of monomials of the target's dimension.
        scaling = self.fit_intercept is False and dims is not None and dims[1] != ()
        cands = [] if scaling else [Candidate(1, float(np.var(y)), sp.Float(float(np.mean(y)), 15))]
        if not exprs:
            if not cands:
                raise EngineFitError("sparse: no monomial of the features has the target's dimension")
            return cands
        max_terms = int(max(1, min(self.max_terms, len(exprs), max(1, n - 2))))
        variants = [True, False] if self.fit_intercept == "auto" else [bool(self.fit_intercept)]
        supports: set[tuple[int, ...]] = set()
        for intercept in variants:
            if self.method == "l0":
                supports |= self._l0_supports(Phi, y, max_terms, intercept, exprs.factors())
            else:
                supports |= self._lasso_supports(Phi, y, max_terms, intercept)
        fits = [(support, intercept, fit) for support in sorted(supports) for intercept in variants
                if (fit := self._ols_fit(Phi, y, support, intercept)) is not None]
        for support, intercept, (coef, _loss) in self._undominated(fits, exprs, cands, float(np.var(y))):
            cands.append(self._candidate(exprs, support, intercept, coef, _loss))
        if not fits:
            raise EngineFitError("sparse: no subset could be fitted")
        return cands

    @staticmethod
    def _prepare(Phi: np.ndarray, y: np.ndarray, intercept: bool) -> tuple[np.ndarray, np.ndarray]:
        A = Phi - Phi.mean(axis=0) if intercept else Phi.copy()
        yv = y - y.mean() if intercept else y.copy()
        norms = np.linalg.norm(A, axis=0)
        norms[norms == 0] = 1.0
        return A / norms, yv

    def _l0_supports(
        self, Phi: np.ndarray, y: np.ndarray, max_terms: int, intercept: bool, factors: np.ndarray
    ) -> set[tuple[int, ...]]:
        A, yv = self._prepare(Phi, y, intercept)
        yy = float(yv @ yv)
        p = A.shape[1]
        out: set[tuple[int, ...]] = set()
        pool: list[int] = []
        residual = yv.copy()
        for k in range(1, max_terms + 1):
            # screening: features most correlated with the residual of the best (k-1)-model
            score = np.abs(A.T @ residual)
            order = np.lexsort((np.arange(p), -score))
            taken = set(pool)
            fresh = [int(i) for i in order if int(i) not in taken]
            pool.extend(fresh[: int(self.screen)])
            # shrink the pool (keep earliest = most relevant) until combinations are affordable
            size = len(pool)
            while size > k and comb(size, k) > int(self.max_combinations):
                size -= 1
            sub = np.array(sorted(pool[:size]))
            if k == 1:
                first = order  # the library by correlation with y, for the pair subspace
                # one term: scan the whole library exactly
                rss = np.maximum(yy - (A.T @ yv) ** 2 / np.maximum(np.sum(A * A, axis=0), 1e-300), 0.0)
                idx = np.lexsort((np.arange(p), rss))[: int(self.n_per_size)]
                subsets = idx[:, None]
                rss_sel = rss[idx]
            elif k == 2:
                # every pair of subspaces as wide as the budget allows (the screened pool,
                # then the library by correlation with y; per factor tier): a pair whose
                # terms cancel is individually weak and rarely in the pool (_pair_subspace)
                subsets, rss_sel = _pair_supports(A, yv, pool[:size], first, factors, int(self.max_combinations),
                                                  int(self.n_per_size))
                if len(subsets) == 0:
                    break
                # the best pair's terms join the pool of larger supports
                pool[:0] = [int(t) for t in subsets[0] if int(t) not in pool]
            else:
                loc = _combinations(len(sub), k)
                if len(loc) == 0:
                    break
                subsets = sub[loc]
                G = A[:, sub].T @ A[:, sub]
                b = A[:, sub].T @ yv
                rss_all = []
                for start in range(0, len(loc), 50000):
                    rss_all.append(_subset_rss(G, b, yy, loc[start : start + 50000]))
                rss = np.concatenate(rss_all)
                order = np.lexsort((np.arange(len(rss)), rss))
                # the best well-conditioned subsets (near-collinear ones are no candidates)
                good = _well_conditioned(G, loc[order], int(self.n_per_size))
                if len(good) == 0:
                    break
                subsets = sub[good]
                rss_sel = _subset_rss(G, b, yy, good)
            for s in subsets:
                out.add(tuple(sorted(int(i) for i in s)))
            best = subsets[0]
            Ab = A[:, best]
            coef, *_ = np.linalg.lstsq(Ab, yv, rcond=None)
            residual = yv - Ab @ coef
            if rss_sel[0] <= 1e-24 * max(yy, 1e-300):
                break  # exact fit: larger supports cannot improve
        # Forward selection over the terms of at most 1, 2, … factors (the last: the whole
        # library), the best support of each size from each: screening by correlation fills
        # its pool with near-copies of the dominant term (n·d1^a·…) and misses sums of simple
        # terms that only jointly fit.
        width = max(int(self.n_per_size), 5)
        for f in np.unique(factors):
            cols = np.flatnonzero(factors <= f)
            sub_A = A if len(cols) == p else A[:, cols]
            found = _forward_supports(sub_A, yv, max_terms, width, 1)
            out |= {tuple(int(cols[i]) for i in T) for T in found}
        return out

    def _lasso_supports(self, Phi: np.ndarray, y: np.ndarray, max_terms: int, intercept: bool) -> set[tuple[int, ...]]:
        from sklearn.linear_model import lars_path

        A, yv = self._prepare(Phi, y, intercept)
        _, _, coefs = lars_path(A, yv, method="lasso", max_iter=4 * max_terms + 20)
        out: set[tuple[int, ...]] = set()
        for j in range(coefs.shape[1]):
            support = tuple(int(i) for i in np.flatnonzero(np.abs(coefs[:, j]) > 0))
            if 1 <= len(support) <= max_terms:
                out.add(support)
        return out

    @staticmethod
    def _ols_fit(
        Phi: np.ndarray, y: np.ndarray, support: tuple[int, ...], intercept: bool
    ) -> tuple[np.ndarray, float] | None:
        """Least-squares coefficients of one support and their training MSE, or None.

        ``Phi`` (n_samples, n_terms) the library, ``y`` (n_samples,) the target, ``support``
        column indices.  Returns the coefficients of the library columns (then the intercept),
        shape (len(support) + intercept,), and the MSE; None for a support of two or more
        terms whose column-standardized design (centred when ``intercept``) has a condition
        number above :data:`MAX_CONDITION` (near-collinear terms: huge, cancelling, unstable
        coefficients), and for a non-finite solution.
        """
        A = Phi[:, list(support)]
        if len(support) > 1 and not condition_number(A, intercept) <= MAX_CONDITION:
            return None
        scale = np.max(np.abs(A), axis=0)
        scale[scale == 0] = 1.0
        As = A / scale
        if intercept:
            As = np.column_stack([As, np.ones(len(y))])
        coef, *_ = np.linalg.lstsq(As, y, rcond=None)
        if not np.all(np.isfinite(coef)):
            return None
        loss = float(np.mean((As @ coef - y) ** 2))
        raw = coef[: len(support)] / scale
        return (np.append(raw, coef[-1]) if intercept else raw), loss

    @staticmethod
    def _candidate(
        exprs: LazyTerms, support: tuple[int, ...], intercept: bool, coef: np.ndarray, loss: float
    ) -> Candidate:
        """The :class:`Candidate` ``Σ coef_j · term_j (+ intercept)`` of a fit from :meth:`_ols_fit`."""
        from matstore.models.engines.base import expression_complexity

        expr: sp.Expr = sp.Integer(0)
        for c, j in zip(coef[: len(support)], support, strict=True):
            expr = expr + sp.Float(float(c), 15) * exprs[j]
        if intercept:
            expr = expr + sp.Float(float(coef[-1]), 15)
        return Candidate(expression_complexity(expr), loss, expr)

    @classmethod
    def _ols_candidate(
        cls, Phi: np.ndarray, exprs: LazyTerms, y: np.ndarray, support: tuple[int, ...], intercept: bool
    ) -> Candidate | None:
        """Least-squares refit of one support as a :class:`Candidate`, or None (see :meth:`_ols_fit`)."""
        fit = cls._ols_fit(Phi, y, support, intercept)
        return None if fit is None else cls._candidate(exprs, support, intercept, *fit)

    @staticmethod
    def _undominated(
        fits: list[tuple[tuple[int, ...], bool, tuple[np.ndarray, float]]],
        exprs: LazyTerms,
        cands: list[Candidate],
        var_y: float,
    ) -> list[tuple[tuple[int, ...], bool, tuple[np.ndarray, float]]]:
        """The fits not surely off the Pareto front, so that only those become SymPy expressions.

        A fit's complexity is known before its expression is built: ``Σ (2 + c_j) + (k − 1)``
        over its k terms of complexity ``c_j`` (``coefficient·term`` and the sum's operators),
        plus 2 for an intercept, exact unless a coefficient is exactly 0 (SymPy drops that
        term).  A fit is left out when another exact one, or a candidate already in
        ``cands``, is no more complex and has a loss lower by more than 1e-6 of it (plus
        1e-12·var(y)), a margin far above :func:`pareto_filter`'s tolerance, so the front
        is the same as with every fit built.  ``fits``: (support, intercept, (coef, loss)).
        """
        def complexity(support: tuple[int, ...], intercept: bool) -> int:
            return sum(2 + exprs.complexity(j) for j in support) + len(support) - 1 + (2 if intercept else 0)

        est = [complexity(s, i) for s, i, _ in fits]
        exact = [bool(np.all(f[0] != 0.0)) for _, _, f in fits]
        known = [(c.complexity, c.loss) for c in cands] + [
            (e, f[1]) for e, x, (_, _, f) in zip(est, exact, fits, strict=True) if x]
        known.sort()
        best, running = [], np.inf  # least loss at complexity <= known[i][0]
        for _, loss in known:
            running = min(running, loss)
            best.append(running)
        levels = [c for c, _ in known]
        out = []
        for e, fit in zip(est, fits, strict=True):
            i = bisect_right(levels, e) - 1
            loss = fit[2][1]
            if i >= 0 and best[i] * (1 + 1e-6) + 1e-12 * var_y < loss:
                continue
            out.append(fit)
        return out

__all__ = ["MAX_CONDITION", "SparseEngine", "build_library", "condition_number"]
