"""Stored SymPy expressions: safe loading, variable roles and evaluation on a grid.

Equation versions store their equation as a SymPy ``srepr`` string.  ``sympy.sympify`` would
``eval`` it; the dashboard instead parses the string with :mod:`ast` and only accepts calls of
an allow-list of SymPy classes with literal arguments, so a crafted row cannot run code in
the dashboard.  Nothing from :mod:`matstore.models` is imported here.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy

_ALLOWED = {
    name: getattr(sympy, name)
    for name in (
        "Add", "Mul", "Pow", "Symbol", "Dummy", "Integer", "Float", "Rational", "Tuple",
        "exp", "log", "sqrt", "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "sinh",
        "cosh", "tanh", "Abs", "Max", "Min", "sign", "Piecewise", "Heaviside",
        "StrictGreaterThan", "StrictLessThan", "GreaterThan", "LessThan", "Eq", "Ne",
    )
}
_ALLOWED.update({
    "ExprCondPair": sympy.functions.elementary.piecewise.ExprCondPair,
    "Half": lambda: sympy.S.Half,
    "One": lambda: sympy.S.One,
    "Zero": lambda: sympy.S.Zero,
    "NegativeOne": lambda: sympy.S.NegativeOne,
    "Pi": lambda: sympy.pi,
    "Exp1": lambda: sympy.E,
    "BooleanTrue": lambda: sympy.true,
    "BooleanFalse": lambda: sympy.false,
    "Infinity": lambda: sympy.oo,
    "NegativeInfinity": lambda: -sympy.oo,
})

_NAMES = {"true": sympy.true, "false": sympy.false, "oo": sympy.oo, "pi": sympy.pi, "E": sympy.E,
          "nan": sympy.nan, "zoo": sympy.zoo, "I": sympy.I}


class ExpressionError(ValueError):
    """A stored expression could not be read or evaluated."""


def _build(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_build(node.operand)
    if isinstance(node, ast.Name) and node.id in _NAMES:
        return _NAMES[node.id]
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_build(e) for e in node.elts)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _ALLOWED:
        args = [_build(a) for a in node.args]
        kwargs = {k.arg: _build(k.value) for k in node.keywords if k.arg is not None}
        if len(kwargs) != len(node.keywords):
            raise ExpressionError("**kwargs are not allowed in a stored expression")
        return _ALLOWED[node.func.id](*args, **kwargs)
    raise ExpressionError(f"unexpected element in stored expression: {ast.dump(node)[:80]}")


def parse_srepr(srepr: str) -> sympy.Expr:
    """Rebuild a SymPy expression from its ``srepr`` string without ``eval``.

    Raises
    ------
    ExpressionError
        If the string is not a ``srepr`` made of allowed SymPy classes and literals.
    """
    try:
        tree = ast.parse(srepr.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"not a SymPy srepr string: {exc.msg}") from exc
    try:
        return _build(tree.body)
    except ExpressionError:
        raise
    except Exception as exc:  # noqa: BLE001 - SymPy raises many types on bad arguments
        raise ExpressionError(f"cannot rebuild expression: {exc}") from exc


# --- orientation functions ----------------------------------------------------------------

_NORMAL = {"n_x": 0, "nx": 0, "n_1": 0, "n_y": 1, "ny": 1, "n_2": 1, "n_z": 2, "nz": 2, "n_3": 2,
           "miller_h": 0, "h": 0, "miller_k": 1, "k": 1, "miller_l": 2, "l": 2}
_THETA = {"theta": "rad", "theta_rad": "rad", "theta_deg": "deg"}
_PHI = {"phi": "rad", "phi_rad": "rad", "phi_deg": "deg"}


@dataclass(frozen=True)
class OrientationFunction:
    """A function g of the surface orientation, ready to evaluate on normals.

    Attributes
    ----------
    expr: the SymPy expression
    variables: its free symbols' names, sorted
    kind: ``normal`` (n_x, n_y, n_z or Miller h, k, l), ``angles`` (θ, φ) or ``constant``
    """

    expr: sympy.Expr
    variables: tuple[str, ...]
    kind: str

    def evaluate(self, normals: np.ndarray) -> np.ndarray:
        """Evaluate g at unit normals.

        Parameters
        ----------
        normals: (N, 3) unit normals in the standard triangle (n_x >= n_y >= n_z >= 0)

        Returns
        -------
        (N,) float array; NaN where g is undefined or not real.
        """
        normals = np.atleast_2d(np.asarray(normals, dtype=float))
        symbols = sorted(self.expr.free_symbols, key=lambda s: s.name)
        if not symbols:
            return np.full(len(normals), float(self.expr))
        theta = np.arccos(np.clip(normals[:, 0], -1, 1))
        phi = np.arctan2(normals[:, 2], normals[:, 1])
        columns = []
        for sym in symbols:
            name = sym.name
            if name in _NORMAL:
                columns.append(normals[:, _NORMAL[name]])
            elif name in _THETA:
                columns.append(np.degrees(theta) if _THETA[name] == "deg" else theta)
            elif name in _PHI:
                columns.append(np.degrees(phi) if _PHI[name] == "deg" else phi)
            else:  # pragma: no cover - excluded by orientation_function
                raise ExpressionError(f"unknown orientation variable {name!r}")
        func = sympy.lambdify(symbols, self.expr, modules="numpy")
        with np.errstate(all="ignore"):
            values = np.asarray(func(*columns), dtype=complex) * np.ones(len(normals))
        real = np.where(np.abs(values.imag) < 1e-12, values.real, np.nan)
        return np.where(np.isfinite(real), real, np.nan)


def orientation_function(part: dict[str, Any] | None, *, angle_unit: str | None = None) -> OrientationFunction:
    """Read ``parts['orientation']`` of an equation version.

    Accepts symbols ``n_x, n_y, n_z`` (unit normal), ``miller_h/k/l`` or ``h, k, l`` (evaluated
    at the normal's components, so g should be homogeneous of degree 0), or ``theta, phi``
    (radians; ``theta_deg, phi_deg`` or ``part['angle_unit'] == 'deg'`` for degrees) with the
    conventions of :mod:`matstore.orientation`.

    Raises
    ------
    ExpressionError
        If there is no ``srepr`` or the expression uses other variables.
    """
    if not part or not isinstance(part, dict) or not part.get("srepr"):
        raise ExpressionError("this version has no orientation function g (parts['orientation']['srepr'])")
    expr = parse_srepr(str(part["srepr"]))
    unit = angle_unit or part.get("angle_unit")
    if unit in ("deg", "degree", "degrees"):
        renames = {"theta": "theta_deg", "phi": "phi_deg"}
        expr = expr.subs({s: sympy.Symbol(renames[s.name]) for s in expr.free_symbols if s.name in renames})
    names = tuple(sorted(s.name for s in expr.free_symbols))
    unknown = [n for n in names if n not in _NORMAL and n not in _THETA and n not in _PHI]
    if unknown:
        raise ExpressionError(
            f"g depends on {', '.join(unknown)}; only n_x/n_y/n_z, miller_h/k/l or theta/phi can be drawn"
        )
    if not names:
        kind = "constant"
    elif all(n in _NORMAL for n in names):
        kind = "normal"
    else:
        kind = "angles"
    return OrientationFunction(expr, names, kind)


def triangle_normals(n: int = 40) -> np.ndarray:
    """Unit normals filling the standard triangle [100]–[110]–[111] (n_x >= n_y >= n_z >= 0).

    Parameters
    ----------
    n: grid resolution along each angle

    Returns
    -------
    (M, 3) float array of unit normals, M ≈ n²/2.
    """
    theta_max = math.acos(1 / math.sqrt(3))
    theta, phi = np.meshgrid(np.linspace(0, theta_max, n), np.linspace(0, math.pi / 4, n))
    normals = np.stack([np.cos(theta), np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi)], axis=-1).reshape(-1, 3)
    inside = normals[:, 0] + 1e-12 >= normals[:, 1]
    return np.unique(np.round(normals[inside], 12), axis=0)


def to_latex(expr: sympy.Expr, symbols: dict[str, str] | None = None) -> str:
    """LaTeX of ``expr`` with readable symbol names.

    Multi-letter names such as ``cohesive_energy`` are set upright
    (``\\mathrm{cohesive\\_energy}``) instead of SymPy's ``cohesive_{energy}``;
    ``symbols`` maps a name to its LaTeX (e.g. ``{"lattice_constant": "a"}``).
    """
    symbols = symbols or {}
    names = {}
    for sym in expr.free_symbols:
        if sym.name in symbols:
            names[sym] = symbols[sym.name]
        elif len(sym.name) > 1 and not sym.name.startswith(("n_", "theta", "phi")):
            names[sym] = r"\mathrm{" + sym.name.replace("_", r"\_") + "}"
    return sympy.latex(expr, symbol_names=names)


def evaluate(expr: sympy.Expr, values: dict[str, float]) -> float:
    """Evaluate ``expr`` at ``values`` (symbol name → number).

    Raises
    ------
    ExpressionError
        If a symbol has no value or the result is not a finite real number.
    """
    missing = sorted(s.name for s in expr.free_symbols if s.name not in values)
    if missing:
        raise ExpressionError(f"no value for {', '.join(missing)}")
    result = complex(expr.subs({s: float(values[s.name]) for s in expr.free_symbols}).evalf())
    if abs(result.imag) > 1e-12 or not math.isfinite(result.real):
        raise ExpressionError(f"the equation is not a finite real number at these values ({result})")
    return result.real
