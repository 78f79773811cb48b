"""Orientation factorisation of surface properties: y(material, orientation) = C(material) · g(orientation).

The published finding behind ``matstore fit --factorize orientation``: a surface property of
FCC metals factors into a universal, dimensionless orientation function ``g`` and a material
coefficient ``C`` that is a closed-form function of bulk properties.  The broken-bond model
predicts ``g ∝ (2h + k)/sqrt(h² + k² + l²) = 2 n_x + n_y`` for ``h ≥ k ≥ l``
(Mackenzie, Moore & Nicholas, J. Phys. Chem. Solids 23, 185 (1962)).

:func:`fit_factorized` proceeds in four steps on a long table (one row per material and
orientation):

(a) per-material coefficients ``C_m`` — ``coefficient="lsq"`` (default) fits the rank-1
    model ``y_i ≈ C_{m(i)} · g(o_i)`` by alternating least squares with a non-parametric
    ``g`` (a free value per distinct orientation when orientations repeat across
    materials, else a quadratic polynomial of the orientation descriptors), so the
    normalised values ``y / C_m`` collapse onto one curve; ``coefficient="reference"`` takes
    ``C_m`` as the value at the reference orientation (falls back to ``lsq`` when a material
    lacks it);
(b) an engine fits ``g(orientation)`` to all materials' normalised values, and ``g`` is
    rescaled so ``g(reference) = 1`` (reference (111) by default; when no row has the
    reference orientation, so that the mean of ``g`` over the distinct orientations is 1);
(c) ``C_m`` are re-estimated by least squares given the selected ``g``, and ``C`` is fitted
    as a closed-form function of the bulk features (one row per material).  By default
    (``coefficient_form="auto"`` with units known) C is a *scaling law*: one monomial of the
    bulk features with the target's dimension times a dimensionless constant (a sum of up to
    ``coefficient_terms`` such monomials when asked for), no intercept (the sparse engine's
    dimensional library), e.g. the broken-bond ``γ = k · E_c / a²``.  With
    ``coefficient_form="free"`` the chosen engine searches any form.  A handful of materials
    cannot support a free form: on the FCC metals (6–7 per calculator) the sparse engine's
    free forms extrapolated to an unseen metal with leave-one-material-out R² −0.18 (EMT)
    and 0.47 (LAMMPS u3), the scaling law with 0.60 and 0.93 (docs/benchmarks.md §4, run of 2026-11-21);
(d) the combined equation ``y = C(bulk) · g(orientation)`` is one SymPy expression.

Orientation descriptors (columns of the surface table, see :mod:`matstore.orientation`):
``normal_x >= normal_y >= normal_z >= 0`` (unit normal reduced to the standard triangle),
``theta_deg``, ``phi_deg``.  They are computed from whichever of ``miller_h/k/l``,
``normal_x/y/z`` (or ``n_x/n_y/n_z``) or ``theta_deg/phi_deg`` (or ``theta/phi``) a row has,
so orientations given only as normals or angles work.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import sympy as sp

from matstore import orientation as ori
from matstore.models.engines.base import Candidate, evaluate_expr, real_or_nan
from matstore.models.selection import DEFAULT_COEFFICIENT_SELECTION, DEFAULT_ORIENTATION_SELECTION

log = logging.getLogger(__name__)
#: Descriptor columns produced by :func:`orientation_descriptors`.
DESCRIPTOR_COLUMNS = ("normal_x", "normal_y", "normal_z", "theta_deg", "phi_deg")
#: Forms of the coefficient C(bulk), see :func:`fit_factorized`.
COEFFICIENT_FORMS = ("auto", "scaling", "free")
#: Default features of g.
DEFAULT_ORIENTATION_FEATURES = ("normal_x", "normal_y", "normal_z")

_ALIASES = {
    "miller": [("miller_h", "miller_k", "miller_l"), ("h", "k", "l")],
    "normal": [("normal_x", "normal_y", "normal_z"), ("n_x", "n_y", "n_z"), ("nx", "ny", "nz")],
    "angles": [("theta_deg", "phi_deg"), ("theta", "phi")],
}


def _find(table: pd.DataFrame, kind: str) -> tuple[str, ...] | None:
    for cols in _ALIASES[kind]:
        if all(c in table.columns for c in cols):
            return cols
    return None


def _complete(table: pd.DataFrame, cols: tuple[str, ...] | None) -> np.ndarray:
    if cols is None:
        return np.zeros(len(table), dtype=bool)
    return table[list(cols)].notna().all(axis=1).to_numpy()


def _orientations(table: pd.DataFrame, miller, normal, angles) -> list[ori.Orientation]:
    """Orientation of each row from its Miller indices, else its normal, else its angles.

    The normals go through :func:`matstore.orientation.from_normals` in one call.
    """
    has_miller = _complete(table, miller)
    has_normal = _complete(table, normal) & ~has_miller
    has_angles = _complete(table, angles) & ~has_miller & ~has_normal
    lacking = ~(has_miller | has_normal | has_angles)
    if lacking.any():
        raise ori.OrientationError(f"row {table.index[lacking][0]!r} has no Miller index, normal or angles")
    out: list[ori.Orientation | None] = [None] * len(table)
    if has_normal.any():
        vectors = table.loc[has_normal, list(normal)].to_numpy(dtype=float)
        bad = ~np.isfinite(vectors).all(axis=1) | ~vectors.any(axis=1)
        if bad.any():
            label = table.index[has_normal][bad][0]
            raise ori.OrientationError(f"row {label!r}: the normal {vectors[bad][0].tolist()} is zero or not finite")
        for i, o in zip(np.flatnonzero(has_normal), ori.from_normals(vectors), strict=True):
            out[i] = o
    for i in np.flatnonzero(has_miller):
        out[i] = ori.from_miller(*(table[c].iloc[i] for c in miller))
    for i in np.flatnonzero(has_angles):
        out[i] = ori.from_angles(float(table[angles[0]].iloc[i]), float(table[angles[1]].iloc[i]))
    return out  # type: ignore[return-value]


def orientation_descriptors(table: pd.DataFrame) -> pd.DataFrame:
    """Orientation descriptors of every row of ``table``.

    Parameters
    ----------
    table : DataFrame
        With Miller columns (``miller_h, miller_k, miller_l`` or ``h, k, l``), normal
        columns (``normal_x…`` or ``n_x…``) and/or angle columns (``theta_deg, phi_deg`` or
        ``theta, phi``, degrees, standard triangle).

    Returns
    -------
    DataFrame, shape (n_rows, 6), same index
        ``normal_x, normal_y, normal_z`` (unit normal, ``n_x >= n_y >= n_z >= 0``),
        ``theta_deg, phi_deg`` (degrees) and ``orientation_key`` (``hkl:1,1,1`` or ``n:…``).
        Computed once per distinct orientation entry (a long table repeats each one per
        material).

    Raises
    ------
    matstore.orientation.OrientationError
        A row has no usable orientation.
    """
    miller, normal, angles = _find(table, "miller"), _find(table, "normal"), _find(table, "angles")
    if miller is None and normal is None and angles is None:
        raise ori.OrientationError("table has no Miller-index, normal or angle columns")
    used = [c for cols in (miller, normal, angles) if cols is not None for c in cols]
    group = table.groupby(used, dropna=False, sort=False).ngroup().to_numpy() if len(table) else np.zeros(0, int)
    first = table.iloc[np.unique(group, return_index=True)[1]]  # one row per distinct entry
    rows = [(*o.normal, o.theta_deg, o.phi_deg, o.key) for o in _orientations(first, miller, normal, angles)]
    per_group = pd.DataFrame(rows, columns=[*DESCRIPTOR_COLUMNS, "orientation_key"])
    return per_group.iloc[group].set_axis(table.index)


def add_orientation_descriptors(table: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``table`` with the descriptor columns (re)computed, see :func:`orientation_descriptors`.

    A table that already holds them, with no blank, together with the ``orientation_key``
    column only this function writes (e.g. a cross-validation fold of a table it prepared), is
    copied as it is: a fit and each of its folds then compute the descriptors once, not once
    per fold (0.6 s per fold on 2,100 distinct normals).
    """
    computed = [*DESCRIPTOR_COLUMNS, "orientation_key"]
    if set(computed) <= set(table.columns) and not table[computed].isna().to_numpy().any():
        return table.copy()
    desc = orientation_descriptors(table)
    out = table.copy()
    for c in desc.columns:
        out[c] = desc[c]
    return out


def reference_descriptors(reference: Sequence[float] | None) -> dict[str, float] | None:
    """Descriptor values of a reference orientation given as Miller index or normal."""
    if reference is None:
        return None
    vals = list(reference)
    if all(float(v) == int(v) for v in vals):
        o = ori.from_miller(*(int(v) for v in vals))
    else:
        o = ori.from_normal(vals)
    return dict(zip(DESCRIPTOR_COLUMNS, (*o.normal, o.theta_deg, o.phi_deg), strict=True)) | {"orientation_key": o.key}


def scale_expr(expr: sp.Expr, factor: float) -> sp.Expr:
    """``factor · expr`` with the number distributed into a sum's terms (keeps it tidy)."""
    f = sp.Float(float(factor), 15)
    if isinstance(expr, sp.Add):
        return sp.Add(*[f * t for t in expr.args])
    return f * expr


@dataclass
class PartFit:
    """One fitted factor (coefficient C or orientation function g).

    Attributes
    ----------
    front : list of Candidate
        Engine front (before numerical validation).
    expr : sympy.Expr
        Selected equation (for g: rescaled so g(reference) = 1).
    criterion : str
    features : list of str
    rejected : list of (Candidate, reason)
        Candidates removed by the numerical checks.
    engine : str
        Engine that produced ``front``.
    form : str
        For C: ``"scaling"`` or ``"free"`` (with the reason when ``auto`` fell back); for g:
        ``"free"``.
    """

    front: list[Candidate]
    expr: sp.Expr
    criterion: str
    features: list[str]
    rejected: list[tuple[Candidate, str]] = field(default_factory=list)
    engine: str = ""
    form: str = "free"


@dataclass
class FactorizationResult:
    """Output of :func:`fit_factorized`.

    Attributes
    ----------
    expr : sympy.Expr
        ``C(bulk) · g(orientation)``.
    coefficient : PartFit
        C as a function of the bulk features (target unit).
    orientation : PartFit
        Dimensionless g of the orientation features.
    coefficients : Series
        Estimated ``C_m`` per material (index: material), in the target unit.
    initial_coefficients : Series
        ``C_m`` from step (a), before re-estimation with the selected g.
    normalized : Series
        ``y / C_m`` per row (index: table rows).
    normalization : str
        ``"g(hkl:1,1,1)=1"`` or ``"mean g over orientations = 1"``.
    coefficient_method : str
        ``"lsq"``, ``"reference"`` or ``"lsq (reference orientation missing)"``.
    """

    expr: sp.Expr
    coefficient: PartFit
    orientation: PartFit
    coefficients: pd.Series
    initial_coefficients: pd.Series
    normalized: pd.Series
    normalization: str
    coefficient_method: str


def _rank1_als(y: np.ndarray, mat_idx: np.ndarray, n_mat: int, P: np.ndarray, iters: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Least squares rank-1 fit ``y_i ≈ C[m_i] · (P_i · w)``; returns (C, g values per row)."""
    C = np.array([np.mean(np.abs(y[mat_idx == m])) for m in range(n_mat)])
    C[C == 0] = 1.0
    g = np.ones(len(y))
    prev = np.inf
    for _ in range(iters):
        A = C[mat_idx][:, None] * P
        w, *_ = np.linalg.lstsq(A, y, rcond=None)
        g = P @ w
        num = np.bincount(mat_idx, weights=y * g, minlength=n_mat)
        den = np.bincount(mat_idx, weights=g * g, minlength=n_mat)
        C = np.where(den > 0, num / np.where(den > 0, den, 1.0), C)
        loss = float(np.sum((y - C[mat_idx] * g) ** 2))
        if abs(prev - loss) <= 1e-14 * max(1.0, float(np.sum(y * y))):
            break
        prev = loss
    return C, g


def orientation_basis(desc: pd.DataFrame, features: Sequence[str], keys: pd.Series) -> np.ndarray:
    """Basis of a non-parametric g, shape (n_rows, n_basis): one-hot of repeated orientations (``keys``), else quadratic in the standardised ``features``."""
    n = len(desc)
    uniq = pd.unique(keys)
    if len(uniq) <= n / 2:
        codes = pd.Categorical(keys, categories=uniq).codes
        P = np.zeros((n, len(uniq)))
        P[np.arange(n), codes] = 1.0
        return P
    Z = desc[list(features)].to_numpy(dtype=float)
    sd = Z.std(axis=0)
    Z = (Z - Z.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    cols = [np.ones(n)] + [Z[:, j] for j in range(Z.shape[1])]
    cols += [Z[:, i] * Z[:, j] for i in range(Z.shape[1]) for j in range(i, Z.shape[1])]
    return np.column_stack(cols)


def material_codes(data: pd.DataFrame, material: str) -> tuple[np.ndarray, np.ndarray]:
    """The materials in order of first appearance, shape (n_materials,), and each row's index among them, shape (n_rows,)."""
    materials = pd.unique(data[material])
    return materials, pd.Categorical(data[material], categories=materials).codes.astype(int)


def initial_coefficients(data: pd.DataFrame, y: np.ndarray, material: str, orientation_features: Sequence[str],
                         ref: dict[str, Any] | None, coefficient: str) -> tuple[np.ndarray, str, str]:
    """Step (a): one coefficient ``C_m`` per material, before any equation for g is known.

    Parameters
    ----------
    data : DataFrame, shape (n_rows, ...)
        With the material column, the descriptor columns and ``orientation_key``.
    y : ndarray, shape (n_rows,)
    material : str
    orientation_features : sequence of str
    ref : dict or None
        :func:`reference_descriptors` of the reference orientation.
    coefficient : {"lsq", "reference"}

    Returns
    -------
    C : ndarray, shape (n_materials,)
        In the order of ``pd.unique(data[material])``, target unit.
    method : str
        ``"lsq"``, ``"reference"`` or ``"lsq (reference orientation missing)"``.
    normalization : str
        ``"g(hkl:1,1,1)=1"`` or ``"mean g over orientations = 1"``.
    """
    materials, mat_idx = material_codes(data, material)
    keys = data["orientation_key"]
    has_ref = ref is not None and bool((keys == ref["orientation_key"]).any())
    C, g_np = _rank1_als(y, mat_idx, len(materials), orientation_basis(data, orientation_features, keys))
    method = coefficient
    if coefficient == "reference":
        ref_rows = (keys == ref["orientation_key"]).to_numpy() if has_ref else np.zeros(len(keys), dtype=bool)
        if has_ref and set(materials) <= set(data.loc[ref_rows, material]):
            C = np.array([np.mean(y[ref_rows & (data[material] == m).to_numpy()]) for m in materials], dtype=float)
        else:
            method = "lsq (reference orientation missing)"
    at = (keys == ref["orientation_key"]).to_numpy() if has_ref else ~keys.duplicated().to_numpy()
    s = float(np.mean(g_np[at]))
    if method.startswith("lsq") and np.isfinite(s) and abs(s) > 1e-300:
        C = C * s
    return C, method, f"g({ref['orientation_key']})=1" if has_ref else "mean g over orientations = 1"


def product_ceiling(data: pd.DataFrame, y: np.ndarray, material: str, rank: int = 1) -> float | None:
    """R² of the best sum of ``rank`` products ``Σ_k C_mk · g_ok`` with free values per material and orientation.

    With ``rank=1`` no equation ``C(bulk) · g(orientation)`` fits the rows better (both factors
    of any such equation are among these free values), so this in-sample R² is the ceiling of
    the factorised model on the table: where it is low, the target is not a product of a
    material and an orientation part (e.g. a surface stiffness whose (111) value changes sign
    from metal to metal while other orientations do not), whatever the search finds.  With
    ``rank=2`` it is the ceiling of a sum of two such products, ``C₁·g₁ + C₂·g₂``: a high
    value there next to a low rank-1 ceiling says the target has two independent
    orientation patterns whose mix differs from metal to metal.  For a full material ×
    orientation table it is the Eckart–Young bound of the best rank-``rank`` approximation,
    1 − Σ_{i>rank} σ_i² / Σ(y − ȳ)² with σ the table's singular values (Eckart & Young,
    Psychometrika 1, 211 (1936)); incomplete tables (or repeated cells) are fitted by
    alternating least squares started from that SVD.  Dimensionless.

    Parameters
    ----------
    data : DataFrame, shape (n_rows, ...)
        With the ``material`` column and ``orientation_key``.
    y : ndarray, shape (n_rows,)
    material : str
    rank : int, default 1

    Returns
    -------
    float or None
        None when no orientation occurs more than once per two rows (then the free
        per-orientation model has as many values as rows and says nothing), or when the
        target does not vary.
    """
    keys = data["orientation_key"]
    orientations = pd.unique(keys)
    total = float(np.sum((y - y.mean()) ** 2))
    if len(orientations) > len(y) / 2 or total <= 0:
        return None
    _, m = material_codes(data, material)
    o = pd.Categorical(keys, categories=orientations).codes.astype(int)
    fitted = _low_rank_fit(np.asarray(y, dtype=float), m, o, rank)
    return 1.0 - float(np.sum((y - fitted) ** 2)) / total


def _low_rank_fit(y: np.ndarray, m: np.ndarray, o: np.ndarray, rank: int, iters: int = 500) -> np.ndarray:
    """Least-squares ``y_i ≈ Σ_k C[m_i, k] · G[o_i, k]`` (shape (n_rows,)): SVD of the cell means, then ALS."""
    n_m, n_o = int(m.max()) + 1, int(o.max()) + 1
    sums, counts = np.zeros((n_m, n_o)), np.zeros((n_m, n_o))
    np.add.at(sums, (m, o), y)
    np.add.at(counts, (m, o), 1.0)
    table = np.where(counts > 0, sums / np.maximum(counts, 1.0), np.nan)
    table = np.where(np.isnan(table), np.nanmean(table, axis=0, keepdims=True), table)
    U, s, Vt = np.linalg.svd(table, full_matrices=False)
    r = min(rank, len(s))
    C, G = U[:, :r] * s[:r], Vt[:r].T
    if np.all(counts == 1):
        return np.einsum("ik,ik->i", C[m], G[o])  # full table, one row per cell: the SVD is optimal
    prev = np.inf
    for _ in range(iters):
        C = _rowwise_lstsq(y, m, G[o], n_m)
        G = _rowwise_lstsq(y, o, C[m], n_o)
        fitted = np.einsum("ik,ik->i", C[m], G[o])
        loss = float(np.sum((y - fitted) ** 2))
        if prev - loss <= 1e-12 * max(1.0, loss):
            break
        prev = loss
    return fitted


def _rowwise_lstsq(y: np.ndarray, idx: np.ndarray, A: np.ndarray, n: int) -> np.ndarray:
    """For every value j of ``idx``: the least-squares ``x_j`` of ``A[idx == j] @ x_j ≈ y[idx == j]``, shape (n, k)."""
    k = A.shape[1]
    AtA, Aty = np.zeros((n, k, k)), np.zeros((n, k))
    np.add.at(AtA, idx, A[:, :, None] * A[:, None, :])
    np.add.at(Aty, idx, A * y[:, None])
    ridge = 1e-12 * (np.trace(AtA, axis1=1, axis2=2)[:, None, None] + 1e-300) * np.eye(k)
    return np.linalg.solve(AtA + ridge, Aty[:, :, None])[:, :, 0]


def normalise_g(g_expr: sp.Expr, data: pd.DataFrame, orientation_features: Sequence[str],
                ref: dict[str, Any] | None) -> sp.Expr:
    """Rescale g so that g(reference) = 1, or its mean over the distinct orientations when no row has the reference.

    Logs :func:`orientation_support_warning`'s message when the training orientations cannot
    support g (one orientation, or no more than g's constants), once per fit
    (:func:`_log_orientation_support`).
    """
    keys = data["orientation_key"]
    if ref is not None and bool((keys == ref["orientation_key"]).any()):
        g_at = real_or_nan(evaluate_expr(g_expr, {k: np.array([ref[k]]) for k in orientation_features}))[0]
    else:
        first = ~keys.duplicated().to_numpy()
        g_at = float(np.mean(real_or_nan(evaluate_expr(g_expr, data.loc[first, list(orientation_features)]))))
    g_expr = scale_expr(g_expr, 1.0 / g_at) if np.isfinite(g_at) and abs(g_at) > 1e-12 else g_expr
    _log_orientation_support(keys, g_expr)
    return g_expr


#: Training orientations a fit-time warning or a ``predict`` warning lists by label before ``…``.
LISTED_ORIENTATIONS = 8


class OrientationSupportWarning(UserWarning):
    """Category of :func:`orientation_support_warning`'s fit-time message (see :func:`_log_orientation_support`)."""


def key_label(key: str) -> str:
    """The label of an orientation key: ``hkl:1,1,0`` → ``(1,1,0)``; ``n:x,y,z`` → ``θ=…°,φ=…°``.

    The keys are :attr:`matstore.orientation.Orientation.key`; the labels its ``label``.
    """
    if key.startswith("hkl:"):
        return "(" + key[4:] + ")"
    if key.startswith("n:"):
        return ori.from_normal([float(c) for c in key[2:].split(",")]).label
    return key


def orientation_list(keys: Sequence[str], count: int | None = None) -> str:
    """``(1,0,0), (1,1,0), (1,1,1)``: the labels of ``keys`` (at most :data:`LISTED_ORIENTATIONS`, then
    ``… (N in all)``, N being ``count`` when given, else ``len(keys)``)."""
    n = len(keys) if count is None else count
    shown = ", ".join(key_label(k) for k in list(keys)[:LISTED_ORIENTATIONS])
    return shown + (f", … ({n} in all)" if n > min(len(keys), LISTED_ORIENTATIONS) else "")


def g_constants(g_expr: sp.Expr) -> int:
    """Fitted constants of an orientation function: the floating-point numbers in ``g_expr`` (at least 1).

    Engines write fitted constants as floats (``0.31*normal_x + 0.52*normal_y``: 2); integer
    exponents and factors are not counted.  A ``g`` without symbols is one constant.
    """
    return max(1, sum(1 for node in sp.preorder_traversal(g_expr) if isinstance(node, sp.Float)))


def orientation_support_warning(keys: Sequence[str] | pd.Series, g_expr: sp.Expr) -> str | None:
    """Why ``g`` cannot be trusted beyond the training orientations, or None.

    A factorised fit ``C(bulk)·g(orientation)`` is cross-validated by material: every fold
    holds out materials at the training orientations, never an orientation, so nothing
    measures ``g`` away from them.  Three cases are told (one line each):

    - one distinct orientation (e.g. (111) only): ``g`` is fitted to one point; the model
      cannot tell orientations apart (a constant ``g`` makes ``predict`` at (110) print the
      (111) value relabelled);
    - ``g`` without orientation symbols (a constant) on several orientations;
    - no more orientations than constants of ``g`` (:func:`g_constants`; e.g. ``a + b·n_x +
      c·n_y`` on (100), (110), (111)): ``g`` can pass through every orientation.

    Parameters
    ----------
    keys : sequence of str, shape (n_rows,)
        ``orientation_key`` of each training row (:func:`orientation_descriptors`).
    g_expr : sympy.Expr
        The selected (normalised) orientation function.

    Returns
    -------
    str or None
    """
    distinct = sorted_keys(keys)
    n, k = len(distinct), g_constants(g_expr)
    listed = orientation_list(distinct)
    if n == 0:
        return None
    if n == 1:
        return (f"the training set has one orientation ({listed}): g(orientation) is fitted to that one point, so "
                "the model cannot tell orientations apart; a prediction at another orientation is extrapolated and "
                "its interval is not calibrated there")
    if not g_expr.free_symbols:
        return (f"g(orientation) is a constant: the model cannot tell the {n} training orientations ({listed}) "
                "apart")
    if n <= k:
        return (f"g(orientation) has {k} constants for {n} distinct training orientations ({listed}): it can pass "
                "through every one, and the cross-validation (by material) never tests it at another orientation; "
                "a prediction there is extrapolated and its interval is not calibrated there")
    return None


def sorted_keys(keys: Sequence[str] | pd.Series) -> list[str]:
    """The distinct orientation keys of ``keys``, by θ then φ (from [100] towards [111]): ``hkl:1,0,0``, ``hkl:1,1,0``, ``hkl:1,1,1``."""
    def angles(key: str) -> tuple[float, float]:
        o = ori.from_normal([float(c) for c in key.split(":", 1)[1].split(",")])
        return o.theta_deg, o.phi_deg

    return sorted(dict.fromkeys(str(k) for k in keys), key=angles)


def _log_orientation_support(keys: pd.Series, g_expr: sp.Expr) -> None:
    """Log :func:`orientation_support_warning`'s message (level WARNING) for the fit, not for its folds.

    The nested-CV folds refit the whole procedure with every warning ignored
    (:func:`matstore.models.report.cross_fit`, whose filters scikit-learn passes on to its
    worker processes); the message is logged only where the active :mod:`warnings` filters
    would show an :class:`OrientationSupportWarning`, so the full fit logs it once (``matstore
    fit`` prints it as ``WARNING matstore.models.factorize: …``) and the folds stay silent.
    """
    message = orientation_support_warning(keys, g_expr)
    if message is not None and not _ignored(OrientationSupportWarning, message):
        log.warning("%s", message)


def _ignored(category: type[Warning], message: str) -> bool:
    """Whether the first :mod:`warnings` filter matching ``category`` and ``message`` from this module ignores it."""
    for action, text, cat, module, lineno in warnings.filters:
        if ((text is None or text.match(message)) and issubclass(category, cat)
                and (module is None or module.match(__name__)) and not lineno):
            return action == "ignore"
    return warnings.defaultaction == "ignore"


def coefficients_given_g(y: np.ndarray, g_vals: np.ndarray, mat_idx: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Step (c): least-squares ``C_m = Σ y g / Σ g²`` over each material's rows, shape (n_materials,)."""
    num = np.bincount(mat_idx, weights=y * g_vals, minlength=len(C))
    den = np.bincount(mat_idx, weights=g_vals * g_vals, minlength=len(C))
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), C)


#: Monomials in a scaling law C(bulk) by default: one, C = k·Π x_i^p_i (dimensional analysis
#: with a single dimensional group).  Measured on the seven surface datasets of
#: docs/benchmarks.md §4 (session 6) against sums of up to three: the whole-form fold agreement
#: rose from 21 to 33 of 46 folds, nested and fixed-form R² differ by at most 0.08 wherever C
#: decides the gap (EMT γ: 0.59/0.79 became 0.79/0.79), the LAMMPS u3 γ law E_c/a² predicts
#: the OpenKIM potentials at R² 0.54 where the two-term law scored −32, and the LAMMPS u3 γ
#: nested R² fell from 0.93 to 0.77 (its two-term law needs all six metals: no five-metal
#: fold finds it).
DEFAULT_SCALING_TERMS = 1
#: Terms of scaling laws in specs stored before ``coefficient_terms`` existed (the sparse
#: engine's ``max_terms``), so that they refit as they were.
LEGACY_SCALING_TERMS = 3


def coefficient_engine(
    form: str,
    engine: str,
    engine_params: dict[str, Any] | None,
    bulk_features: Sequence[str],
    feature_units: dict[str, str] | None,
    target_unit: str | None,
    terms: int = DEFAULT_SCALING_TERMS,
) -> tuple[str, dict[str, Any], str]:
    """Engine name, parameters and recorded form of the coefficient fit C(bulk).

    ``form="scaling"`` (or ``"auto"`` with usable units) gives the sparse engine with a
    dimensional library, no intercept and at most ``terms`` monomials (``max_terms``; it
    overrides an engine parameter of that name); see :func:`fit_factorized`.

    Raises
    ------
    ValueError
        ``form="scaling"`` without a unit for the target or a bulk feature, or when no
        monomial of the bulk features has the target's dimension.
    """
    if form == "free":
        return engine, dict(engine_params or {}), "free"
    missing = [f for f in bulk_features if not (feature_units or {}).get(f)]
    reason = ""
    if target_unit is None or missing:
        reason = f"no unit for {'the target' if target_unit is None else ', '.join(missing)}"
    else:
        try:
            if not _scaling_library_exists(bulk_features, feature_units, target_unit):
                reason = f"no monomial of the bulk features has the dimension of {target_unit}"
        except ValueError as exc:  # a unit pint does not know
            reason = str(exc)
    if reason:
        if form == "scaling":
            raise ValueError(f"coefficient_form='scaling' impossible: {reason}")
        return engine, dict(engine_params or {}), f"free (auto: {reason})"
    base = dict(engine_params or {}) if engine == "sparse" else {}
    units = {f: feature_units[f] for f in bulk_features}
    return "sparse", base | {"fit_intercept": False, "feature_units": units, "target_unit": target_unit,
                             "max_terms": int(terms)}, "scaling"


def _scaling_library_exists(bulk_features: Sequence[str], feature_units: dict[str, str], target_unit: str) -> bool:
    """Whether some monomial of the sparse engine's exponents and factors has the target's dimension
    (:func:`matstore.models.dimensions.homogeneous_monomial`, which direct scaling fits check too)."""
    from matstore.models.dimensions import homogeneous_monomial, unit_dimension
    from matstore.models.engines.sparse import SparseEngine

    defaults = SparseEngine.default_parameters
    dims = {f: unit_dimension(feature_units[f]) for f in bulk_features}
    return homogeneous_monomial(dims, unit_dimension(target_unit), defaults["exponents"],
                                defaults["max_factors"]) is not None


def fit_factorized(
    table: pd.DataFrame,
    target: str,
    bulk_features: Sequence[str],
    *,
    material: str,
    orientation_features: Sequence[str] = DEFAULT_ORIENTATION_FEATURES,
    engine: str = "sparse",
    engine_params: dict[str, Any] | None = None,
    orientation_engine_params: dict[str, Any] | None = None,
    selection: str = DEFAULT_ORIENTATION_SELECTION,
    coefficient_selection: str | None = DEFAULT_COEFFICIENT_SELECTION,
    coefficient: str = "lsq",
    reference: Sequence[float] | None = (1, 1, 1),
    margin: float = 0.1,
    seed: int | None = 0,
    coefficient_form: str = "auto",
    coefficient_terms: int = DEFAULT_SCALING_TERMS,
    feature_units: dict[str, str] | None = None,
    target_unit: str | None = None,
    groups: str | None = None,
) -> FactorizationResult:
    """Fit ``y(material, orientation) = C(bulk features) · g(orientation)``.

    Parameters
    ----------
    table : DataFrame, shape (n_rows, ...)
        Long table: a material column, orientation columns (Miller indices, normals or
        angles; see :func:`orientation_descriptors`), the bulk features (constant within a
        material; the per-material mean is used) and the target.  Rows with NaN in the
        target or bulk features must be removed by the caller.
    target : str
        Target column (e.g. ``surface_energy`` in J/m²).
    bulk_features : sequence of str
        Features of C (e.g. ``cohesive_energy`` eV/atom, ``lattice_constant`` Å).
    material : str
        Column identifying the material (one C per value).
    orientation_features : sequence of str, default ("normal_x", "normal_y", "normal_z")
        Descriptors g may use; any of :data:`DESCRIPTOR_COLUMNS`.
    engine : str
        Engine name for both factors (see :func:`~matstore.models.engines.base.get_engine`).
    engine_params : dict, optional
        Parameters of the coefficient engine (and of the orientation engine unless
        ``orientation_engine_params`` is given).
    orientation_engine_params : dict, optional
    selection : str, default "stable:1se"
        Criterion for g (and for C when ``coefficient_selection`` is None); see
        :mod:`matstore.models.selection`.
    coefficient_selection : str or None, default "stable:1se"
        Criterion for C(bulk).  C is fitted on one value per material (a handful of rows),
        where training-loss criteria choose forms with as many constants as materials that
        fail on an unseen metal; the default ``stable:1se`` takes the complexity budget by
        the one-standard-error rule with the search repeated on every leave-one-group-out
        subsample, and the form chosen at that budget in most subsamples
        (:func:`matstore.models.selection.select_size_stable`).  With engines other than
        the sparse one the constants of each candidate are refitted per fold instead.
    coefficient : {"lsq", "reference"}
        Estimator of ``C_m`` in step (a).
    reference : (3,) Miller index or normal, default (1, 1, 1); None for mean normalisation
    margin : float
        Domain widening of the numerical checks.
    seed : int, optional
        ``random_state`` passed to engines that have one.
    coefficient_form : {"auto", "scaling", "free"}, default "auto"
        ``"scaling"``: C is a sum of at most ``coefficient_terms`` monomials of the bulk
        features, each with the target's dimension, without intercept; needs
        ``feature_units`` and ``target_unit``.  ``"free"``: C is searched by ``engine`` like g.  ``"auto"``: ``"scaling"`` when every bulk feature and the
        target have units and some monomial has the target's dimension, else ``"free"``.
    coefficient_terms : int, default 1
        Most monomials of a scaling-law C (:data:`DEFAULT_SCALING_TERMS`).
    feature_units : dict of str to str, optional
        Units of the bulk features (pint strings).
    target_unit : str, optional
        Unit of the target (and of C, since g is dimensionless).
    groups : str, optional
        Column whose values are held out together when ``coefficient_selection`` is a
        ``cv`` criterion (e.g. the element, when ``material`` is element × potential).
        Default: each material on its own.

    Returns
    -------
    FactorizationResult

    Raises
    ------
    ValueError
        Missing columns, fewer than 2 materials, or no valid candidate.
    matstore.models.engines.base.EngineSetupError, EngineFitError
        From the engines.
    """
    from matstore.models.estimators import EquationSearch, FactorizedEquation

    common = dict(engine=engine, random_state=0 if seed is None else seed, margin=margin)
    est = FactorizedEquation(
        coefficient=EquationSearch(**common, engine_params=engine_params, form=coefficient_form,
                                   selection=coefficient_selection or selection, feature_units=feature_units,
                                   target_unit=target_unit, scaling_terms=coefficient_terms),
        orientation=EquationSearch(**common, selection=selection,
                                   engine_params=orientation_engine_params if orientation_engine_params is not None
                                   else engine_params),
        material=material, bulk_features=tuple(bulk_features), orientation_features=tuple(orientation_features),
        reference=reference, coefficient_method=coefficient)
    est.fit(table, table[target].to_numpy(dtype=float) if target in table.columns else _missing(target),
            groups=table[groups].to_numpy() if groups is not None and groups != material else None)
    return factorization_result(est)


def _missing(column: str) -> np.ndarray:
    raise ValueError(f"table lacks column(s) {[column]}")


def part_fit(search: Any, expr: sp.Expr | None = None) -> PartFit:
    """:class:`PartFit` of a fitted :class:`~matstore.models.estimators.EquationSearch`."""
    return PartFit(list(search.front_), search.equation_ if expr is None else expr, search.selection_,
                   [str(c) for c in search.feature_names_in_], list(search.rejected_), search.engine_name_,
                   search.form_)


def factorization_result(est: Any) -> FactorizationResult:
    """:class:`FactorizationResult` of a fitted :class:`~matstore.models.estimators.FactorizedEquation`."""
    return FactorizationResult(
        expr=est.equation_, coefficient=part_fit(est.coefficient_),
        orientation=part_fit(est.orientation_, est.orientation_equation_), coefficients=est.coefficients_,
        initial_coefficients=est.initial_coefficients_, normalized=est.normalized_,
        normalization=est.normalization_, coefficient_method=est.coefficient_method_)


__all__ = [
    "COEFFICIENT_FORMS",
    "DEFAULT_ORIENTATION_FEATURES",
    "DESCRIPTOR_COLUMNS",
    "FactorizationResult",
    "PartFit",
    "add_orientation_descriptors",
    "coefficient_engine",
    "coefficients_given_g",
    "factorization_result",
    "initial_coefficients",
    "normalise_g",
    "part_fit",
    "fit_factorized",
    "g_constants",
    "key_label",
    "orientation_descriptors",
    "orientation_list",
    "orientation_support_warning",
    "reference_descriptors",
    "scale_expr",
    "sorted_keys",
]
