"""Stored SymPy expressions: one safe parser, one evaluator, one notion of an equation's *form*.

Equation versions store their equation as a SymPy ``srepr`` string.  ``sympy.sympify``
would ``eval`` it; :func:`parse_srepr` instead walks the :mod:`ast` and only accepts calls
of an allow-list of SymPy constructors with literal arguments, so a crafted row cannot run
code in ``matstore predict`` or the dashboard.  :func:`evaluate` compiles an expression with
``sympy.lambdify`` (NumPy, float64) and evaluates it on the columns of a table.  Models,
``predict``, ``predict_frame`` and the dashboard all use these functions; :func:`to_latex`
typesets them.  (Orientation functions g are drawn by :mod:`matstore.dashboard.orientation_g`.)
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import sympy as sp


class ExpressionError(ValueError):
    """A stored expression could not be read or evaluated."""


_CONSTRUCTORS = (
    "Add", "Mul", "Symbol", "Integer", "Rational", "Tuple",
    "exp", "log", "sqrt", "cbrt", "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "sinh",
    "cosh", "tanh", "Abs", "Max", "Min", "sign", "Piecewise", "Heaviside",
    "StrictGreaterThan", "StrictLessThan", "GreaterThan", "LessThan", "Eq", "Ne",
)
#: SymPy names a stored ``srepr`` may call (one allow-list for the whole package).
ALLOWED: dict[str, Any] = {name: getattr(sp, name) for name in _CONSTRUCTORS if hasattr(sp, name)}
#: Bounds on what one stored expression may ask SymPy to build: a literal's digits and text,
#: a ``Float``'s precision, a numeric exponent, the whole string.  ``Pow(Integer(10),
#: Integer(1000000000))`` or ``Float('1.5', 100000000)`` would otherwise be evaluated on
#: parsing and hang ``predict`` (found by a least-privilege audit: a writer login could
#: plant one for every reader).  Fitted equations stay far inside them.
MAX_SREPR_CHARS = 100_000
MAX_LITERAL_CHARS = 64
MAX_FLOAT_PRECISION = 64
MAX_EXPONENT = 1000
#: A symbol's name: an identifier (``lambdify`` writes names into generated source).
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _pow(base: Any, exponent: Any, *args: Any) -> sp.Expr:
    """``Pow`` refusing a numeric exponent beyond :data:`MAX_EXPONENT` (numerator or denominator)."""
    if isinstance(exponent, int | sp.Rational):
        q = sp.Rational(exponent)
        if max(abs(q.p), abs(q.q)) > MAX_EXPONENT:
            raise ExpressionError(f"exponent {q} is beyond the bound {MAX_EXPONENT} of a stored expression")
    return sp.Pow(base, exponent, *args)


def _float(value: Any, dps: Any = None, precision: Any = None) -> sp.Float:
    """``Float`` refusing more than :data:`MAX_FLOAT_PRECISION` decimal digits (``dps``, or ``precision`` in bits)."""
    for given, bound in ((dps, MAX_FLOAT_PRECISION), (precision, 4 * MAX_FLOAT_PRECISION)):
        if given is not None and not (isinstance(given, int) and 0 < given <= bound):
            raise ExpressionError(f"Float precision {given!r} is beyond the bound of a stored expression")
    return sp.Float(value, dps, precision=precision)


def _symbol(name: Any, **assumptions: Any) -> sp.Symbol:
    """``Symbol`` whose name is an identifier (:data:`_NAME`)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ExpressionError(f"symbol name {str(name)[:40]!r} is not an identifier")
    return sp.Symbol(name, **assumptions)


ALLOWED.update({
    "Pow": _pow, "Float": _float, "Symbol": _symbol,
    "ExprCondPair": sp.functions.elementary.piecewise.ExprCondPair,
    "Half": lambda: sp.S.Half, "One": lambda: sp.S.One, "Zero": lambda: sp.S.Zero,
    "NegativeOne": lambda: sp.S.NegativeOne, "Pi": lambda: sp.pi, "Exp1": lambda: sp.E,
    "BooleanTrue": lambda: sp.true, "BooleanFalse": lambda: sp.false,
    "Infinity": lambda: sp.oo, "NegativeInfinity": lambda: -sp.oo,
})
_NAMES = {"true": sp.true, "false": sp.false, "oo": sp.oo, "pi": sp.pi, "E": sp.E, "nan": sp.nan,
          "zoo": sp.zoo, "I": sp.I}


def _build(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str | bool | type(None)):
        if isinstance(node.value, int | str) and len(str(node.value)) > MAX_LITERAL_CHARS:
            raise ExpressionError(f"a literal of more than {MAX_LITERAL_CHARS} characters in a stored expression")
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_build(node.operand)
    if isinstance(node, ast.Name) and node.id in _NAMES:
        return _NAMES[node.id]
    if isinstance(node, ast.Tuple | ast.List):
        return tuple(_build(e) for e in node.elts)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ALLOWED:
        args = [_build(a) for a in node.args]
        kwargs = {k.arg: _build(k.value) for k in node.keywords if k.arg is not None}
        if len(kwargs) != len(node.keywords):
            raise ExpressionError("**kwargs are not allowed in a stored expression")
        return ALLOWED[node.func.id](*args, **kwargs)
    raise ExpressionError(f"disallowed element in stored expression: {ast.dump(node)[:80]}")


def parse_srepr(srepr: str) -> sp.Expr:
    """Rebuild a SymPy expression from its ``srepr`` string without ``eval``.

    Parameters
    ----------
    srepr : str
        As written by ``sympy.srepr``.

    Returns
    -------
    sympy.Expr

    Raises
    ------
    ExpressionError
        (a ``ValueError``) if the string is not a ``srepr`` made of allowed SymPy
        constructors and literals, or asks for more than the bounds allow
        (:data:`MAX_SREPR_CHARS`, :data:`MAX_LITERAL_CHARS`, :data:`MAX_FLOAT_PRECISION`,
        :data:`MAX_EXPONENT`; a symbol name that is no identifier).
    """
    if len(str(srepr)) > MAX_SREPR_CHARS:
        raise ExpressionError(f"stored expression longer than {MAX_SREPR_CHARS} characters")
    try:
        tree = ast.parse(str(srepr).strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"not a SymPy srepr string: {exc.msg}") from exc
    try:
        out = _build(tree.body)
    except ExpressionError:
        raise
    except Exception as exc:  # noqa: BLE001 - SymPy raises many types on bad arguments
        raise ExpressionError(f"cannot rebuild expression: {exc}") from exc
    if not isinstance(out, sp.Basic):
        raise ExpressionError("srepr does not describe a SymPy expression")
    return out


def as_expr(expr: str | sp.Expr) -> sp.Expr:
    """``expr`` itself, or parsed by :func:`parse_srepr` when given as a string."""
    return parse_srepr(expr) if isinstance(expr, str) else sp.sympify(expr)


def lambdify_expr(expr: sp.Expr, names: Sequence[str]) -> Callable[..., Any]:
    """Compile ``expr`` into a NumPy function of the columns ``names`` (in that order).

    Compiled functions are cached (by expression and names): cross-validation evaluates the
    same few equations many times, and ``sympy.lambdify`` costs milliseconds per call.
    """
    return _compiled(expr, tuple(names))


@lru_cache(maxsize=4096)
def _compiled(expr: sp.Expr, names: tuple[str, ...]) -> Callable[..., Any]:
    # docstring_limit=0: no docstring, which would print the expression (half the compile time)
    return sp.lambdify([sp.Symbol(n) for n in names], expr, modules="numpy", docstring_limit=0)


def real_or_nan(values: np.ndarray) -> np.ndarray:
    """Float64 copy of ``values``; entries with a non-negligible imaginary part become NaN."""
    values = np.asarray(values)
    if np.iscomplexobj(values):
        bad = np.abs(values.imag) > 1e-12 * np.maximum(1.0, np.abs(values.real))
        out = values.real.astype(float)
        out[bad] = np.nan
        return out
    return values.astype(float)


def evaluate_raw(expr: sp.Expr, X: pd.DataFrame | Mapping[str, np.ndarray]) -> np.ndarray:
    """Evaluate ``expr`` on the rows of ``X`` in float64, complex results kept.

    Parameters
    ----------
    expr : sympy.Expr
        Free symbols must be columns of ``X`` (matched by name).
    X : DataFrame or mapping of column name to (n_samples,) arrays

    Returns
    -------
    ndarray, shape (n_samples,)
        Invalid operations give NaN/inf silently.

    Raises
    ------
    KeyError
        If a free symbol of ``expr`` is not a column of ``X``.
    """
    names = sorted(str(s) for s in expr.free_symbols)
    cols = [np.asarray(X[nm], dtype=float) for nm in names]
    n = len(X) if isinstance(X, pd.DataFrame) else (len(next(iter(X.values()))) if X else 1)
    return call_compiled(lambdify_expr(expr, names), cols, n)


def call_compiled(function: Callable[..., Any], args: Sequence[Any], n: int) -> np.ndarray:
    """Values of a compiled expression (:func:`lambdify_expr`) on ``n`` rows, complex results kept.

    ``args`` are its arguments in order (scalars or arrays of shape (n,)); returns an array
    of shape (n,); invalid operations give NaN/inf silently.
    """
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = np.asarray(function(*args))
    if out.dtype == object:
        try:
            out = out.astype(complex)
        except (TypeError, ValueError):
            out = np.full(n, np.nan)
    if out.ndim == 0:
        out = np.full(n, out.item())
    return np.broadcast_to(out, (n,)).copy()


def evaluate(expr: str | sp.Expr, X: pd.DataFrame | Mapping[str, np.ndarray]) -> np.ndarray:
    """Real values of ``expr`` (an expression or its ``srepr``) on the rows of ``X``.

    Returns
    -------
    ndarray, shape (n_samples,)
        float64; NaN where the equation is undefined or not real.

    Raises
    ------
    ExpressionError
        If ``expr`` is a string that is not an allowed ``srepr``.
    KeyError
        If a symbol of the equation is not a column of ``X``.
    """
    return real_or_nan(evaluate_raw(as_expr(expr), X))


def evaluate_point(expr: sp.Expr, values: Mapping[str, float]) -> float:
    """Evaluate ``expr`` at one point (symbol name → number).

    Raises
    ------
    ExpressionError
        If a symbol has no value or the result is not a finite real number.
    """
    missing = sorted(s.name for s in expr.free_symbols if s.name not in values)
    if missing:
        raise ExpressionError(f"no value for {', '.join(missing)}")
    out = evaluate(expr, {k: np.array([float(v)]) for k, v in values.items()})[0]
    if not np.isfinite(out):
        raise ExpressionError("the equation is not a finite real number at these values")
    return float(out)


def form_of(expr: str | sp.Expr) -> str:
    """The *form* of an equation: its ``sstr`` with every fitted Float replaced by ``c``.

    Two equations with the same form differ only in their fitted constants, e.g.
    ``3.99*cohesive_energy/lattice_constant**2`` and ``4.2*cohesive_energy/lattice_constant**2``
    both have the form ``c*cohesive_energy/lattice_constant**2``.  A constant equation has
    the form ``c``.
    """
    e = as_expr(expr)
    c = sp.Symbol("c")
    return sp.sstr(e.xreplace({f: c for f in e.atoms(sp.Float)}))


def to_latex(expr: sp.Expr, symbols: dict[str, str] | None = None) -> str:
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
    return sp.latex(expr, symbol_names=names)


__all__ = [
    "ALLOWED",
    "ExpressionError",
    "as_expr",
    "call_compiled",
    "evaluate",
    "evaluate_point",
    "evaluate_raw",
    "form_of",
    "lambdify_expr",
    "parse_srepr",
    "real_or_nan",
    "to_latex",
]
