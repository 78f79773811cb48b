"""Numerical sanity of candidate equations: finite, real and bounded over the data domain.

Symbolic regression with division, logs or fractional powers readily produces equations
with poles or branch cuts just beside (or between) the training points; such an equation can
fit the training rows and explode on a new material.  :func:`check_finite_and_bounded`
evaluates an equation with ``sympy.lambdify(..., "numpy")``

1. on the training rows;
2. on samples of the training domain widened by ``margin``:

   - ``domain="data"`` (default): points on the segments between training rows and their
     nearest neighbours (plus random pairs), extended by ``margin`` × the segment length
     beyond both ends (clipped to the widened bounding box).  This samples the convex
     hull of the data widened by ``margin`` and follows the data manifold, so correlated
     features (e.g. ``c11 > c12`` in every row) are not probed in empty corners of the
     bounding box;
   - ``domain="box"``: uniform samples and corners of the bounding box widened by
     ``margin`` and 1-D scans along each feature through a few rows;

   a feature that is non-negative (non-positive) on the data keeps its sign (the widening
   towards zero is multiplicative, ``lo/(1+margin)``);
3. on every **denominator** of the expression (bases of negative powers): a sign change
   over the samples (or along one segment) means a zero, i.e. a pole, inside the domain;
   a value that is ~0 relative to its scale also counts;

and rejects the equation when any value is NaN, infinite, complex, or larger in magnitude
than ``bound``.  Used on every candidate of a front and on every held-out fold of
cross-validation.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
import sympy as sp

from matstore.models.engines.base import lambdify_expr


@dataclass(frozen=True)
class ValidationReport:
    """Outcome of :func:`check_finite_and_bounded`.

    Attributes
    ----------
    ok : bool
    reason : str
        ``""`` when ok, else e.g. ``"non-finite or complex on 1 of 50 training rows"``,
        ``"pole: denominator x1 - 1.07 changes sign in the domain"``,
        ``"|f| up to 3.2e+21 … exceeds bound 1e+06"``.
    max_abs : float
        Largest |value| met (NaN when evaluation failed).
    """

    ok: bool
    reason: str
    max_abs: float


def widened_box(X_domain: pd.DataFrame, names: list[str], margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature lower/upper bounds of the data range widened by ``margin`` (sign-preserving).

    Returns
    -------
    lo, hi : ndarray, shape (n_features,)
    """
    lo = np.array([float(np.min(X_domain[n])) for n in names])
    hi = np.array([float(np.max(X_domain[n])) for n in names])
    span = hi - lo
    lo_w = lo - margin * span
    hi_w = hi + margin * span
    pos = lo >= 0
    lo_w[pos] = np.maximum(lo_w[pos], lo[pos] / (1.0 + margin))
    neg = hi <= 0
    hi_w[neg] = np.minimum(hi_w[neg], hi[neg] / (1.0 + margin))
    return lo_w, hi_w


def denominators(expr: sp.Expr) -> list[sp.Expr]:
    """Bases of negative powers in ``expr`` (where it has poles), without duplicates."""
    out: list[sp.Expr] = []
    for node in sp.preorder_traversal(expr):
        if isinstance(node, sp.Pow) and node.exp.is_number and node.exp.is_negative and node.base.free_symbols:
            if node.base not in out:
                out.append(node.base)
    return out


def _values(fn, cols: list[np.ndarray], n: int) -> np.ndarray:
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = np.asarray(fn(*cols))
        except (ZeroDivisionError, OverflowError, ValueError, TypeError, FloatingPointError):
            return np.full(n, np.nan)
    if out.dtype == object:
        try:
            out = out.astype(complex)
        except (TypeError, ValueError):
            return np.full(n, np.nan)
    out = np.broadcast_to(out, (n,)) if out.ndim == 0 else out
    if np.iscomplexobj(out):
        bad = np.abs(out.imag) > 1e-12 * np.maximum(1.0, np.abs(out.real))
        real = out.real.astype(float)
        real[bad] = np.nan
        return real
    return out.astype(float)


def _data_samples(
    Z: np.ndarray, lo: np.ndarray, hi: np.ndarray, margin: float, n_samples: int, rng: np.random.Generator,
    n_neighbors: int = 3, n_points: int = 25,
) -> np.ndarray:
    """Points (n_seg, n_points, d) on segments between rows of ``Z``, extended by ``margin``."""
    n, d = Z.shape
    uniq = np.unique(Z, axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    pairs: set[tuple[int, int]] = set()
    if len(uniq) >= 2:
        S = (uniq - uniq.min(axis=0)) / span
        sub = np.arange(len(uniq)) if len(uniq) <= 400 else np.sort(rng.choice(len(uniq), 400, replace=False))
        for i in sub:
            dist = np.sum((S - S[i]) ** 2, axis=1)
            dist[i] = np.inf
            for j in np.argsort(dist, kind="stable")[:n_neighbors]:
                pairs.add((int(min(i, j)), int(max(i, j))))
        n_rand = max(0, min(200, n_samples // n_points - len(pairs)))
        for _ in range(n_rand):
            i, j = rng.choice(len(uniq), 2, replace=False)
            pairs.add((int(min(i, j)), int(max(i, j))))
    t = np.linspace(-margin, 1.0 + margin, n_points)
    if pairs:
        P = np.array(sorted(pairs))
        A, B = uniq[P[:, 0]], uniq[P[:, 1]]
        seg = A[:, None, :] + t[None, :, None] * (B - A)[:, None, :]
        seg = np.clip(seg, lo, hi)
    else:
        seg = np.empty((0, n_points, d))
    return seg


def check_finite_and_bounded(
    expr: sp.Expr,
    X_domain: pd.DataFrame,
    margin: float = 0.1,
    n_samples: int = 2000,
    bound: float | None = None,
    *,
    domain: str = "data",
    n_scan_rows: int = 5,
    n_scan_points: int = 401,
    seed: int = 0,
) -> ValidationReport:
    """Check that ``expr`` is finite, real and bounded on and around the training domain.

    Parameters
    ----------
    expr : sympy.Expr
        Its free symbols must be columns of ``X_domain``.
    X_domain : DataFrame, shape (n_rows, n_features)
        Training rows defining the domain.
    margin : float, default 0.1
        Relative widening (fraction of each feature's range).
    n_samples : int, default 2000
        Approximate number of sampled points (segment points / box samples).
    bound : float, optional
        Largest allowed |f|.  Default: ``1e3 · max(1, max |f(training rows)|)`` capped at
        1e15 — scale-free, so a pole is caught whatever the target unit.
    domain : {"data", "box"}, default "data"
        Sampling of the widened domain (see module docstring).
    n_scan_rows, n_scan_points : int
        ``domain="box"``: 1-D scans per feature through this many rows, at this many points.
    seed : int
        Seed of the random samples (the check is deterministic).

    Returns
    -------
    ValidationReport
    """
    if domain not in ("data", "box"):
        raise ValueError(f"domain must be 'data' or 'box', got {domain!r}")
    expr = sp.sympify(expr)
    names = sorted(str(s) for s in expr.free_symbols)
    report = _check_symbols(expr, names, X_domain)
    if report is not None:
        return report
    fn = lambdify_expr(expr, names)
    cols = [np.asarray(X_domain[n], dtype=float) for n in names]
    train = _values(fn, cols, len(X_domain))
    report, bound = _check_training_rows(train, len(X_domain), bound)
    if not report.ok or not names:
        return report
    lo, hi = widened_box(X_domain, names, margin)
    pts = _domain_points(np.column_stack(cols), lo, hi, margin, n_samples, domain, seed)
    report = _check_domain_points(fn, expr, names, pts, bound)
    if not report.ok or domain == "data":
        return report
    return _box_scans(fn, names, cols, train, lo, hi, bound, report.max_abs, n_scan_rows, n_scan_points)


def _check_symbols(expr: sp.Expr, names: list[str], X_domain: pd.DataFrame) -> ValidationReport | None:
    """A failed report when ``expr`` has a symbol not in ``X_domain`` or an I/zoo/oo/nan, else ``None``."""
    missing = [n for n in names if n not in X_domain.columns]
    if missing:
        return ValidationReport(False, f"unknown symbol(s) {missing}", float("nan"))
    if expr.has(sp.I, sp.zoo, sp.oo, -sp.oo, sp.nan):
        return ValidationReport(False, "expression contains I, zoo, oo or nan", float("nan"))
    return None


def _check_training_rows(
    train: np.ndarray, n_rows: int, bound: float | None
) -> tuple[ValidationReport, float]:
    """Report on the values at the training rows, shape (n_rows,), and the bound in force (default scale-free)."""
    bad = ~np.isfinite(train)
    if bad.any():
        reason = f"non-finite or complex on {int(bad.sum())} of {n_rows} training rows"
        return ValidationReport(False, reason, float("nan")), bound
    train_max = float(np.max(np.abs(train))) if n_rows else 0.0
    if bound is None:
        bound = min(1e3 * max(1.0, train_max), 1e15)
    if train_max > bound:
        reason = f"|f| up to {train_max:.3g} on training rows exceeds bound {bound:.3g}"
        return ValidationReport(False, reason, train_max), bound
    return ValidationReport(True, "", train_max), bound


def _domain_points(
    Z: np.ndarray, lo: np.ndarray, hi: np.ndarray, margin: float, n_samples: int, domain: str, seed: int,
) -> np.ndarray:
    """Training rows ``Z``, shape (n_rows, d), plus samples of the widened domain, shape (n_points, d).

    ``domain="data"`` points are cached (read-only): every candidate of a front over the same
    columns and rows is checked on the same points, so they are sampled once.
    """
    d = Z.shape[1]
    if domain == "data":
        Z = np.ascontiguousarray(Z, dtype=float)
        return _data_points(Z.tobytes(), Z.shape, lo.astype(float).tobytes(), hi.astype(float).tobytes(), margin,
                            n_samples, seed)
    rng = np.random.default_rng(seed)
    box = lo + rng.random((n_samples, d)) * (hi - lo)
    if d <= 10:
        corners = np.array(np.meshgrid(*[[a, b] for a, b in zip(lo, hi, strict=True)], indexing="ij")).reshape(d, -1).T
        box = np.vstack([box, corners])
    return np.vstack([Z, box])


@lru_cache(maxsize=16)
def _data_points(
    z: bytes, shape: tuple[int, int], lo: bytes, hi: bytes, margin: float, n_samples: int, seed: int
) -> np.ndarray:
    """:func:`_domain_points` for ``domain="data"`` from the bytes of ``Z``, ``lo`` and ``hi`` (float64); read-only."""
    Z = np.frombuffer(z).reshape(shape)
    seg = _data_samples(Z, np.frombuffer(lo), np.frombuffer(hi), margin, n_samples, np.random.default_rng(seed))
    pts = np.vstack([Z, seg.reshape(-1, shape[1])])
    pts.flags.writeable = False
    return pts


def _check_domain_points(fn, expr: sp.Expr, names: list[str], pts: np.ndarray, bound: float) -> ValidationReport:
    """Report on ``expr`` (compiled as ``fn``) and its denominators at ``pts``, shape (n_points, d)."""
    vals = _values(fn, [pts[:, j] for j in range(len(names))], len(pts))
    finite = np.isfinite(vals)
    worst = float(np.max(np.abs(vals[finite]))) if finite.any() else float("nan")
    if not finite.all():
        j = int(np.flatnonzero(~finite)[0])
        where = ", ".join(f"{n}={v:.4g}" for n, v in zip(names, pts[j], strict=True))
        return ValidationReport(False, f"non-finite or complex on {int((~finite).sum())} of {len(pts)} domain samples (e.g. at {where})", worst)
    if worst > bound:
        return ValidationReport(False, f"|f| up to {worst:.3g} in the widened domain exceeds bound {bound:.3g}", worst)
    reason = _pole_reason(expr, names, pts)
    return ValidationReport(not reason, reason, worst)


def _pole_reason(expr: sp.Expr, names: list[str], pts: np.ndarray) -> str:
    """Why a denominator of ``expr`` has a pole at ``pts`` (a sign change or a near-zero value), else ``""``."""
    for den in denominators(expr):
        dnames = sorted(str(s) for s in den.free_symbols)
        idx = [names.index(n) for n in dnames]
        dfn = lambdify_expr(den, dnames)
        dv = _values(dfn, [pts[:, k] for k in idx], len(pts))
        ok = np.isfinite(dv)
        if not ok.any():
            continue
        scale = float(np.max(np.abs(dv[ok])))
        if np.min(dv[ok]) < 0 < np.max(dv[ok]):
            return f"pole: denominator {den} changes sign in the domain"
        if scale > 0 and float(np.min(np.abs(dv[ok]))) <= 1e-9 * scale:
            return f"pole: denominator {den} vanishes in the domain"
    return ""


def _box_scans(fn, names, cols, train, lo, hi, bound, worst, n_scan_rows, n_scan_points) -> ValidationReport:
    """1-D scans along each feature with sign-change bisection (``domain="box"``)."""
    d, n_rows = len(names), len(train)
    order_rows = np.argsort(train, kind="stable")
    picks = sorted({int(order_rows[int(q * (n_rows - 1))]) for q in np.linspace(0.0, 1.0, n_scan_rows + 2)[1:-1]})
    base_rows = [np.array([c[i] for c in cols]) for i in picks] or [0.5 * (lo + hi)]
    for base in base_rows:
        for j in range(d):
            grid = np.linspace(lo[j], hi[j], n_scan_points)
            P = np.tile(base, (n_scan_points, 1))
            P[:, j] = grid
            v = _values(fn, [P[:, k] for k in range(d)], n_scan_points)
            if not np.all(np.isfinite(v)):
                k = int(np.flatnonzero(~np.isfinite(v))[0])
                return ValidationReport(False, f"non-finite at {names[j]}={grid[k]:.6g} on a 1-D scan", worst)
            vmax = float(np.max(np.abs(v)))
            if vmax > bound:
                return ValidationReport(False, f"|f| up to {vmax:.3g} exceeds bound {bound:.3g} on a 1-D scan of {names[j]}", vmax)
            for k in np.flatnonzero(np.sign(v[:-1]) * np.sign(v[1:]) < 0):
                a, b, fa, m, fm = grid[k], grid[k + 1], v[k], grid[k], v[k]
                for _ in range(60):
                    m = 0.5 * (a + b)
                    P1 = base.copy()
                    P1[j] = m
                    fm = float(_values(fn, [np.array([P1[q]]) for q in range(d)], 1)[0])
                    if not np.isfinite(fm) or fm == 0.0:
                        break
                    if np.sign(fm) == np.sign(fa):
                        a, fa = m, fm
                    else:
                        b = m
                    if b - a <= 1e-13 * max(1.0, abs(m)):
                        break
                if not np.isfinite(fm) or abs(fm) > max(1e3 * max(abs(v[k]), abs(v[k + 1])), bound):
                    return ValidationReport(False, f"pole near {names[j]}={m:.6g}", worst)
    return ValidationReport(True, "", worst)


def is_finite_and_bounded(
    expr: sp.Expr,
    X_domain: pd.DataFrame,
    margin: float = 0.1,
    n_samples: int = 2000,
    bound: float | None = None,
    **kwargs,
) -> bool:
    """``True`` when ``expr`` has no pole, NaN, complex value or absurd magnitude on the domain.

    Thin wrapper of :func:`check_finite_and_bounded` (same parameters, e.g.
    ``domain="box"``) returning only the verdict.

    Parameters
    ----------
    expr : sympy.Expr
    X_domain : DataFrame, shape (n_rows, n_features)
    margin : float, default 0.1
    n_samples : int, default 2000
    bound : float, optional

    Returns
    -------
    bool

    Examples
    --------
    >>> import pandas as pd, sympy as sp
    >>> x1 = sp.Symbol("x1")
    >>> is_finite_and_bounded(1 / (x1 - 1.0), pd.DataFrame({"x1": [0.0, 0.5, 2.0]}))
    False
    """
    return check_finite_and_bounded(expr, X_domain, margin, n_samples, bound, **kwargs).ok


__all__ = [
    "ValidationReport",
    "check_finite_and_bounded",
    "denominators",
    "is_finite_and_bounded",
    "widened_box",
]
