"""Sums of products ``y(material, orientation) = Σ_j s_j(bulk) · g_j(orientation)``: the numerics.

A surface property that is not a product of one material part and one orientation part
(surface stress τ and stiffness S: their (111) value changes sign from metal to metal while
other orientations keep theirs) is often a sum of two (the rank-2 ceiling,
:func:`matstore.models.factorize.product_ceiling`).  Here each material part is a *natural
scale* of the bulk: one bulk property brought to the target's dimension by at most one
other (``c11·a``, ``c44·a``, ``E_c/a²``, ``γ_sf`` for a target in J/m²), with no constant of
its own; the orientation functions ``g_j`` carry the constants and may change sign, so the
sum can follow a material-to-material mix that no single one-signed monomial can.

This module holds the linear algebra: the scale library, the non-parametric fit of the
``g_j`` values for a given choice of scales, and the choice of scales by leave-one-group-out
cross-validation with the one-standard-error rule (Hastie, Tibshirani & Friedman, *The
Elements of Statistical Learning*, 2nd ed., §7.10).  The estimator is
:class:`matstore.models.estimators.SumOfProducts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
import sympy as sp

#: Exponents and most factors of a natural scale (``x``, ``x·a``, ``x/a²``, ``x²/y`` …).
SCALE_EXPONENTS = (-2.0, -1.0, 1.0, 2.0)
SCALE_FACTORS = 2
#: Default most products in a sum.
DEFAULT_PRODUCTS = 2


def scale_library(bulk: pd.DataFrame, feature_units: dict[str, str], target_unit: str) -> tuple[np.ndarray, list[sp.Expr]]:
    """The natural scales of the bulk features with the target's dimension.

    Parameters
    ----------
    bulk : DataFrame, shape (n_materials, n_features)
        One row per material (e.g. ``lattice_constant`` Å, ``c44`` GPa).
    feature_units, target_unit : pint unit strings of the columns and of the target.

    Returns
    -------
    values : ndarray, shape (n_materials, n_scales)
    exprs : list of sympy.Expr, length n_scales
        Monomials of at most :data:`SCALE_FACTORS` features with exponents in
        :data:`SCALE_EXPONENTS`, each of the target's dimension, without constant.

    Raises
    ------
    ValueError
        No such monomial (a missing or unknown unit, or no combination with the target's
        dimension).
    """
    from matstore.models.dimensions import unit_dimension
    from matstore.models.engines.sparse import build_library

    missing = [f for f in bulk.columns if not feature_units.get(f)]
    if missing or not target_unit:
        raise ValueError(f"a sum of products needs units of the target and of every bulk feature; missing: "
                         f"{missing or ['target']}")
    dims = ({f: unit_dimension(feature_units[f]) for f in bulk.columns}, unit_dimension(target_unit))
    values, exprs = build_library(bulk.astype(float), exponents=SCALE_EXPONENTS, max_factors=SCALE_FACTORS,
                                  dimensions=dims)
    if values.shape[1] == 0:
        raise ValueError(f"no product of at most {SCALE_FACTORS} bulk features has the dimension of {target_unit}")
    return values, [exprs[i] for i in range(len(exprs))]


def product_design(scales: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Columns ``s_j · P_l`` of the linear model ``y = Σ_j s_j · (P w_j)``, shape (n_rows, k·n_basis).

    ``scales`` (n_rows, k) are the chosen scales at each row's material; ``P`` (n_rows,
    n_basis) the non-parametric orientation basis (one column per distinct orientation when
    orientations repeat, :func:`matstore.models.factorize.orientation_basis`).
    """
    return np.hstack([scales[:, [j]] * P for j in range(scales.shape[1])])


def fit_weights(y: np.ndarray, scales: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Least-squares (minimum-norm) weights ``w``, shape (k, n_basis): ``g_j`` values are ``P @ w[j]``.

    With a one-hot ``P`` (each row one orientation) the problem splits into one k × k
    problem per orientation, solved together (:func:`_one_hot_weights`); otherwise one
    dense least-squares solve of :func:`product_design`.
    """
    codes = _one_hot_codes(P)
    if codes is not None:
        return _one_hot_weights(y, scales, codes, P.shape[1])
    w, *_ = np.linalg.lstsq(product_design(scales, P), y, rcond=None)
    return w.reshape(scales.shape[1], P.shape[1])


def _one_hot_codes(P: np.ndarray) -> np.ndarray | None:
    """Each row's column of a one-hot ``P`` (shape (n_rows,)); None when ``P`` is not one-hot."""
    if P.size == 0 or not np.all((P == 0.0) | (P == 1.0)) or not np.all(P.sum(axis=1) == 1.0):
        return None
    return P.argmax(axis=1)


def _one_hot_weights(y: np.ndarray, scales: np.ndarray, codes: np.ndarray, n_basis: int) -> np.ndarray:
    """Minimum-norm least-squares weights, shape (k, n_basis), of ``y_r ≈ Σ_j scales[r, j] · w[j, codes[r]]``.

    Orientations do not share weights, so the minimum-norm solution is each orientation's
    own: the pseudo-inverse of its k × k normal equations (an orientation without rows
    gets 0).  Equal to the dense solve of :func:`product_design` where each orientation's
    rows determine its k weights well (condition number ≪ 10⁷).
    """
    k = scales.shape[1]
    gram = np.zeros((n_basis, k, k))
    np.add.at(gram, codes, scales[:, :, None] * scales[:, None, :])
    moment = np.zeros((n_basis, k))
    np.add.at(moment, codes, scales * y[:, None])
    return np.einsum("okl,ol->ko", np.linalg.pinv(gram, hermitian=True), moment)


def material_multipliers(y: np.ndarray, fitted: np.ndarray, mat_idx: np.ndarray) -> np.ndarray:
    """Least-squares factor λ_m per material of ``y ≈ λ_m · fitted``, shape (n_materials,).

    What the scales miss of a material's overall level (e.g. one potential's γ above what
    its ``E_c/a²`` gives) is a factor common to all its orientations; dividing it out
    before the ``g_j`` are searched leaves them the orientation dependence only, as the
    free ``C_m`` of a single product do (:class:`~matstore.models.estimators.FactorizedEquation`).
    A material whose fitted values are all zero keeps λ = 1.
    """
    n = int(mat_idx.max()) + 1
    num = np.bincount(mat_idx, weights=y * fitted, minlength=n)
    den = np.bincount(mat_idx, weights=fitted * fitted, minlength=n)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)


def fold_losses(y: np.ndarray, scales: np.ndarray, P: np.ndarray, folds: Sequence[tuple[np.ndarray, np.ndarray]]
                ) -> np.ndarray:
    """Held-out squared error of each fold, shape (n_folds,), ``g_j`` values refitted on its training rows.

    A held-out orientation no training row has gets weight 0 (minimum-norm solution), so it
    counts against the choice instead of being skipped.
    """
    out = np.empty(len(folds))
    for i, (train, test) in enumerate(folds):
        w = fit_weights(y[train], scales[train], P[train])
        pred = np.einsum("rk,rk->r", scales[test], P[test] @ w.T)
        out[i] = float(np.sum((y[test] - pred) ** 2))
    return out


def select_scales(y: np.ndarray, scale_rows: np.ndarray, P: np.ndarray, folds: Sequence[tuple[np.ndarray, np.ndarray]],
                  max_products: int = DEFAULT_PRODUCTS, n_se: float = 1.0) -> tuple[tuple[int, ...], dict[str, Any]]:
    """Choose the scales of the sum by cross-validation and the one-standard-error rule.

    Every subset of 1 … ``max_products`` library scales is scored by its pooled held-out
    squared error over ``folds`` (the ``g_j`` values refitted per fold, free per
    orientation).  The fewest products whose best subset is within ``n_se`` standard errors
    of the overall minimum win (ESL §7.10); among those, the lowest error.

    Parameters
    ----------
    y : ndarray, shape (n_rows,)
    scale_rows : ndarray, shape (n_rows, n_scales)
        The library scales at each row's material.
    P : ndarray, shape (n_rows, n_basis)
    folds : sequence of (train, test) row-position arrays
    max_products : int
    n_se : float

    Returns
    -------
    chosen : tuple of int
        Library columns of the chosen scales.
    record : dict
        ``products`` (k chosen), ``cv_mse`` per k (best subset), ``criterion`` (text).

    Raises
    ------
    ValueError
        ``max_products`` < 1.
    """
    if max_products < 1:
        raise ValueError("max_products must be at least 1")
    sizes = np.array([len(test) for _, test in folds], dtype=float)
    best: dict[int, tuple[float, float, tuple[int, ...]]] = {}
    for k in range(1, min(max_products, scale_rows.shape[1]) + 1):
        for subset in combinations(range(scale_rows.shape[1]), k):
            losses = fold_losses(y, scale_rows[:, subset], P, folds)
            total = float(losses.sum())
            if k not in best or total < best[k][0]:
                se = float(np.std(losses, ddof=1) * np.sqrt(len(folds))) if len(folds) > 1 else 0.0
                best[k] = (total, se, subset)
    k_min = min(best, key=lambda k: best[k][0])
    limit = best[k_min][0] + n_se * best[k_min][1]
    k = min(k for k in best if best[k][0] <= limit)
    n = float(sizes.sum())
    record = {"products": k, "cv_mse": {str(j): best[j][0] / n for j in sorted(best)},
              "criterion": f"scales by cross-validation over {len(folds)} group folds, {n_se:g}-SE rule on the "
                           "number of products"}
    return best[k][2], record


__all__ = ["DEFAULT_PRODUCTS", "SCALE_EXPONENTS", "SCALE_FACTORS", "fit_weights", "fold_losses", "material_multipliers",
           "product_design", "scale_library", "select_scales"]
