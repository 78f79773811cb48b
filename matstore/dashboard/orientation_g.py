"""The orientation function g of a stored factorised model, evaluated over orientations.

A factorised fit (:mod:`matstore.models.factorize`) stores ``g`` as a SymPy expression of
orientation descriptors.  The descriptors are computed here with the conventions of
:mod:`matstore.orientation` (unit normal reduced to ``n_x >= n_y >= n_z >= 0``; θ from [100],
φ about [100] from the (001) mirror plane, in degrees), under every name a fit may use:

- ``normal_x, normal_y, normal_z`` (the descriptor columns of the fits), also
  ``n_x, n_y, n_z``, ``nx, ny, nz``, ``n_1, n_2, n_3``;
- ``theta_deg, phi_deg`` (degrees), ``theta_rad, phi_rad`` (radians), and bare
  ``theta, phi`` (radians, or degrees when the part says ``angle_unit: deg``);
- ``miller_h, miller_k, miller_l`` and ``h, k, l``: the Miller index where the orientation is
  rational, else the normal's components (a g of Miller indices is homogeneous of degree 0).

Nothing is evaluated with ``eval``: the expression is rebuilt with
:func:`matstore.dashboard.expressions.parse_srepr` and evaluated by the package's one
evaluator (:func:`matstore.models.expressions.evaluate`, ``sympy.lambdify`` on NumPy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sympy

from matstore import orientation as ori
from matstore.dashboard.expressions import ExpressionError, parse_srepr

_NORMAL_NAMES = {0: ("normal_x", "n_x", "nx", "n_1"), 1: ("normal_y", "n_y", "ny", "n_2"),
                 2: ("normal_z", "n_z", "nz", "n_3")}
_MILLER_NAMES = {0: ("miller_h", "h"), 1: ("miller_k", "k"), 2: ("miller_l", "l")}
_ANGLE_NAMES = ("theta_deg", "phi_deg", "theta_rad", "phi_rad", "theta", "phi")

#: Every symbol name g may use.
ORIENTATION_NAMES = frozenset(n for names in (*_NORMAL_NAMES.values(), *_MILLER_NAMES.values()) for n in names) | set(_ANGLE_NAMES)


def descriptor_frame(normals: np.ndarray, miller: list[tuple[int, int, int] | None] | None = None,
                     *, bare_angles_in_degrees: bool = False) -> pd.DataFrame:
    """Every orientation descriptor name for each normal.

    Parameters
    ----------
    normals : (N, 3) unit normals already reduced to the standard triangle
    miller : optional list of N Miller indices (``None`` where irrational)
    bare_angles_in_degrees : whether the names ``theta``/``phi`` mean degrees

    Returns
    -------
    pandas.DataFrame, shape (N, len(ORIENTATION_NAMES))
        Angles in degrees for ``*_deg``, radians for ``*_rad``.
    """
    normals = np.atleast_2d(np.asarray(normals, dtype=float))
    theta = np.degrees(np.arccos(np.clip(normals[:, 0], -1.0, 1.0)))
    phi = np.where((normals[:, 1] > 0) | (normals[:, 2] > 0), np.degrees(np.arctan2(normals[:, 2], normals[:, 1])), 0.0)
    columns: dict[str, np.ndarray] = {}
    for axis, names in _NORMAL_NAMES.items():
        columns.update({name: normals[:, axis] for name in names})
    for axis, names in _MILLER_NAMES.items():
        values = normals[:, axis].copy()
        if miller is not None:
            values = np.array([m[axis] if m is not None else n for m, n in zip(miller, values, strict=True)], dtype=float)
        columns.update({name: values for name in names})
    columns.update(theta_deg=theta, phi_deg=phi, theta_rad=np.radians(theta), phi_rad=np.radians(phi))
    columns["theta"] = theta if bare_angles_in_degrees else np.radians(theta)
    columns["phi"] = phi if bare_angles_in_degrees else np.radians(phi)
    return pd.DataFrame(columns)


def orientation_descriptors(orientation: ori.Orientation, *, bare_angles_in_degrees: bool = False) -> dict[str, float]:
    """All descriptor names of one orientation (see :func:`descriptor_frame`)."""
    frame = descriptor_frame(np.array([orientation.normal]), [orientation.miller],
                             bare_angles_in_degrees=bare_angles_in_degrees)
    return {k: float(v) for k, v in frame.iloc[0].items()}


def evaluate_on(expr: sympy.Expr, frame: pd.DataFrame) -> np.ndarray:
    """``expr`` on the rows of ``frame`` (columns named as its symbols); NaN where not a finite real.

    Evaluated by the package's one evaluator, :func:`matstore.models.expressions.evaluate`.

    Returns
    -------
    (N,) float array

    Raises
    ------
    ExpressionError
        If a symbol has no column in ``frame``.
    """
    from matstore.models.expressions import evaluate

    missing = sorted(s.name for s in expr.free_symbols if s.name not in frame.columns)
    if missing:
        raise ExpressionError(f"no value for {', '.join(missing)}")
    values = evaluate(expr, frame)
    return np.where(np.isfinite(values), values, np.nan)


@dataclass(frozen=True)
class OrientationFunction:
    """g of a stored version: the expression, its variables and how to evaluate them.

    Attributes
    ----------
    expr : SymPy expression of the descriptors
    variables : its symbols' names, sorted
    bare_angles_in_degrees : whether ``theta``/``phi`` are degrees (``part['angle_unit']``)
    features : descriptor names the fit offered to g (``part['features']``), if stored
    """

    expr: sympy.Expr
    variables: tuple[str, ...]
    bare_angles_in_degrees: bool
    features: tuple[str, ...]

    def evaluate(self, normals: np.ndarray) -> np.ndarray:
        """g at (N, 3) unit normals of the standard triangle; (N,) with NaN where undefined."""
        return evaluate_on(self.expr, descriptor_frame(normals, bare_angles_in_degrees=self.bare_angles_in_degrees))


def read_orientation_function(part: dict[str, Any] | None) -> OrientationFunction:
    """g from ``parts['orientation']`` of an equation version.

    Raises
    ------
    ExpressionError
        If there is no ``srepr`` or g uses a variable that is not an orientation descriptor
        (the message lists the names understood).
    """
    if not isinstance(part, dict) or not part.get("srepr"):
        raise ExpressionError("this version has no orientation function g (parts['orientation']['srepr'])")
    expr = parse_srepr(str(part["srepr"]))
    names = tuple(sorted(s.name for s in expr.free_symbols))
    unknown = [n for n in names if n not in ORIENTATION_NAMES]
    if unknown:
        raise ExpressionError(f"g depends on {', '.join(unknown)}, which is not an orientation descriptor "
                              f"(understood: {', '.join(sorted(ORIENTATION_NAMES))})")
    degrees = str(part.get("angle_unit", "")).lower() in ("deg", "degree", "degrees")
    features = tuple(str(f) for f in part.get("features") or ())
    return OrientationFunction(expr, names, degrees, features)


def triangle_grid(n: int = 40) -> np.ndarray:
    """Unit normals filling the standard triangle [100]–[110]–[111].

    Parameters
    ----------
    n : grid points along θ and along φ

    Returns
    -------
    (M, 3) float array, ``n_x >= n_y >= n_z >= 0``, M ≈ n²/2.
    """
    theta, phi = np.meshgrid(np.radians(np.linspace(0, ori.THETA_MAX_DEG, n)), np.linspace(0, math.pi / 4, n))
    normals = np.stack([np.cos(theta), np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi)],
                       axis=-1).reshape(-1, 3)
    inside = normals[:, 0] + 1e-12 >= normals[:, 1]
    return np.unique(np.round(normals[inside], 12), axis=0)
