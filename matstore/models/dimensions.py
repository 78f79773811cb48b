"""Dimensional consistency of a fitted equation, with pint.

Given the unit of every feature and of the target, :func:`check_dimensions` propagates
dimensions through the SymPy tree:

- a symbol has the dimension of its unit (``pint`` dimensionality, e.g. ``[length]``);
- exact numbers (Integer, Rational, π) are dimensionless;
- a **Float** is treated as a *fitted coefficient* when ``fitted_constants=True`` (default):
  it may carry any unit, so a product containing one has a free dimension (the
  coefficient absorbs it) and in a sum it adopts the dimension of the other terms;
- ``x**p`` needs a dimensionless numeric exponent (dimension × p) or, for a symbolic
  exponent, dimensionless base and exponent;
- sums need equal dimensions of their non-free terms;
- ``exp``, trigonometric/hyperbolic functions need a dimensionless (or free) argument;
  ``log(x)`` of a dimensioned x is accepted as ``log(x/x0)`` with an implied fitted
  reference scale (so only "up to fitted constants");
- ``Abs``, ``Min``/``Max`` keep the dimension.

Verdicts (strings stored in ``equation_version.dimension_check``):

- ``"consistent"`` — the expression has the target's dimension with every number in it
  (fitted coefficients included) dimensionless, e.g. ``3.97·E_c/a²`` for a surface energy;
- ``"consistent up to fitted constants"`` — consistent once fitted coefficients are given
  suitable units;
- ``"inconsistent: <reason>"`` — e.g. adding a length to an energy, or a dimension
  different from the target's;
- ``"undetermined: <reason>"`` — a symbol without a unit, or an unknown unit string.

The check never raises for a valid SymPy expression.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations, product
from typing import Any

import sympy as sp

Dim = tuple[tuple[str, float], ...]  # sorted (base dimension, exponent) pairs, no zeros
FREE = None  # a dimension absorbed by a fitted coefficient


def _ureg() -> Any:
    from matstore.units import unit_registry

    return unit_registry()


class _Inconsistent(Exception):
    pass


@dataclass(frozen=True)
class DimensionCheck:
    """Result of :func:`check_dimensions`.

    Attributes
    ----------
    verdict : str
        ``"consistent"``, ``"consistent up to fitted constants"``, ``"inconsistent: …"``
        or ``"undetermined: …"``.
    consistent : bool
        True for the first two verdicts.
    expression_dimension : str
        Dimension of the expression without fitted constants (e.g. ``"[mass] / [time] ** 2"``),
        ``"free"`` when fitted constants determine it, ``""`` when undetermined.
    target_dimension : str
    """

    verdict: str
    consistent: bool
    expression_dimension: str
    target_dimension: str

    def __str__(self) -> str:
        return self.verdict


def _norm(d: Mapping[str, float]) -> Dim:
    return tuple(sorted((k, round(float(v), 10)) for k, v in d.items() if abs(float(v)) > 1e-12))


def unit_dimension(unit: Any) -> Dim:
    """Dimension of a pint unit / quantity / unit string (``"eV/angstrom**2"``, ``"GPa"``).

    Raises
    ------
    ValueError
        For a string pint cannot parse.
    """
    ureg = _ureg()
    if unit is None or (isinstance(unit, str) and unit.strip() in ("", "1", "dimensionless")):
        return ()
    try:
        if isinstance(unit, str):
            from matstore.units import normalise_unit

            q = ureg.Quantity(1.0, normalise_unit(unit))
        elif hasattr(unit, "dimensionality"):
            q = unit
        else:
            q = ureg.Quantity(1.0, str(unit))
        return _norm(dict(q.dimensionality))
    except Exception as exc:  # noqa: BLE001 - pint raises several types
        raise ValueError(f"unknown unit {unit!r}: {exc}") from exc


def format_dimension(d: Dim | None) -> str:
    """Human-readable dimension: ``"[length] ** -2 * [mass]"``; ``"dimensionless"``; ``"free"``."""
    if d is None:
        return "free"
    if not d:
        return "dimensionless"
    parts = []
    for k, v in d:
        parts.append(k if v == 1 else f"{k} ** {v:g}")
    return " * ".join(parts)


def monomial_dimension(factors: Iterable[tuple[Dim, float]]) -> Dim:
    """Dimension of ``∏ x_i ** p_i`` from ``(dimension of x_i, p_i)`` pairs.

    >>> monomial_dimension([(unit_dimension("eV"), 1), (unit_dimension("angstrom"), -2)])
    (('[mass]', 1.0), ('[time]', -2.0))
    """
    total: dict[str, float] = {}
    for dim, power in factors:
        for base, exponent in dim:
            total[base] = total.get(base, 0.0) + exponent * power
    return _norm(total)


def _mul(a: Dim, b: Dim, sign: float = 1.0) -> Dim:
    out: dict[str, float] = dict(a)
    for k, v in b:
        out[k] = out.get(k, 0.0) + sign * v
    return _norm(out)


def _pow(a: Dim, p: float) -> Dim:
    return _norm({k: v * p for k, v in a})


class _Walker:
    """Dimension of a SymPy expression from its features' dimensions (``FREE``: fitted away)."""

    def __init__(self, dims: Mapping[str, Dim], fitted_constants: bool) -> None:
        self.dims = dims
        self.fitted = fitted_constants
        self.used_free = False

    def walk(self, e: sp.Expr) -> Dim | None:
        """Dimension of ``e``; raises ``_Inconsistent`` where ``e`` mixes dimensions."""
        if e.is_Symbol:
            return self.dims[str(e)]
        if e.is_Number or e.is_NumberSymbol or e in (sp.pi, sp.E):
            if isinstance(e, sp.Float) and self.fitted:
                return FREE
            return ()
        if isinstance(e, sp.Mul):
            return self._product(e)
        if isinstance(e, sp.Add):
            return self._sum(e)
        if isinstance(e, sp.Pow):
            return self._power(e)
        if isinstance(e, sp.Abs | sp.Min | sp.Max | sp.sign):
            return self._same_dimension_function(e)
        if isinstance(e, sp.log):
            d = self.walk(e.args[0])
            if d is FREE or d != ():
                self.used_free = True  # log(x/x0) with a fitted reference scale x0
            return ()
        if isinstance(e, sp.Function):
            return self._dimensionless_function(e)
        raise _Inconsistent(f"unsupported node {type(e).__name__}")

    def _product(self, e: sp.Mul) -> Dim | None:
        """Dimension of a product: the sum of its factors' exponents, ``FREE`` if any factor is."""
        out: Dim | None = ()
        for a in e.args:
            d = self.walk(a)
            if d is FREE or out is FREE:
                out = FREE
            else:
                out = _mul(out, d)
        if out is FREE:
            self.used_free = True
        return out

    def _sum(self, e: sp.Add) -> Dim | None:
        """Dimension shared by all non-free terms of a sum."""
        concrete: list[tuple[sp.Expr, Dim]] = []
        any_free = False
        for a in e.args:
            d = self.walk(a)
            if d is FREE:
                any_free = True
            else:
                concrete.append((a, d))
        for a, d in concrete[1:]:
            if d != concrete[0][1]:
                raise _Inconsistent(
                    f"adds {format_dimension(concrete[0][1])} ({concrete[0][0]}) and {format_dimension(d)} ({a})"
                )
        if any_free:
            self.used_free = True
        return concrete[0][1] if concrete else FREE

    def _power(self, e: sp.Pow) -> Dim | None:
        """Dimension of ``base**exp``: scaled by a real numeric exponent, else dimensionless only."""
        base, exp = e.args
        db = self.walk(base)
        if exp.is_number:
            if not exp.is_real:
                raise _Inconsistent(f"non-real exponent in {e}")
            if isinstance(exp, sp.Float) and db not in ((), FREE):
                # a fitted exponent on a dimensioned base: only with a fitted scale
                self.used_free = True
                return FREE
            return FREE if db is FREE else _pow(db, float(exp))
        de = self.walk(exp)
        if de not in ((), FREE):
            raise _Inconsistent(f"exponent {exp} has dimension {format_dimension(de)}")
        if db not in ((), FREE):
            raise _Inconsistent(f"symbolic power of dimensioned base {base} ({format_dimension(db)})")
        if FREE in (db, de):
            self.used_free = True
        return ()

    def _same_dimension_function(self, e: sp.Expr) -> Dim | None:
        """Dimension of ``Abs``/``Min``/``Max`` (their arguments' common one) or ``sign`` (none)."""
        ds = [self.walk(a) for a in e.args]
        concrete = [d for d in ds if d is not FREE]
        if any(d != concrete[0] for d in concrete[1:]):
            raise _Inconsistent(f"{e.func.__name__} of different dimensions")
        if isinstance(e, sp.sign):
            return ()
        return concrete[0] if concrete else FREE

    def _dimensionless_function(self, e: sp.Function) -> Dim:
        """Dimension of a transcendental function (``exp``, ``sin``...): its arguments must be dimensionless."""
        for a in e.args:
            d = self.walk(a)
            if d is FREE:
                self.used_free = True
            elif d != ():
                raise _Inconsistent(f"{e.func.__name__} of dimensioned argument {a} ({format_dimension(d)})")
        return ()


def _homogeneous(expr: sp.Expr, dims: Mapping[str, Dim], target: Dim) -> bool:
    """True when ``expr`` has the target's dimension with every number dimensionless."""
    try:
        return _Walker(dims, fitted_constants=False).walk(expr) == target
    except _Inconsistent:
        return False


def check_dimensions(
    expr: sp.Expr | str,
    feature_units: Mapping[str, Any],
    target_unit: Any,
    *,
    fitted_constants: bool = True,
) -> DimensionCheck:
    """Dimensional consistency of ``expr`` with the target unit.

    Parameters
    ----------
    expr : sympy.Expr or str
        Equation whose symbols are feature names.
    feature_units : mapping of str to unit
        Unit of each feature (pint unit string such as ``"angstrom"``, ``"eV"``,
        ``"GPa"``, ``"J/m**2"``, ``"dimensionless"``, or a pint Unit/Quantity).
    target_unit : str or pint Unit
        Unit of the target.
    fitted_constants : bool, default True
        Treat Floats as fitted coefficients that may carry units.

    Returns
    -------
    DimensionCheck
        ``str(result)`` is the verdict string.

    Examples
    --------
    >>> import sympy as sp
    >>> E, a = sp.symbols("E_c a")
    >>> check_dimensions(E / a**2, {"E_c": "eV", "a": "angstrom"}, "J/m**2").verdict
    'consistent'
    >>> check_dimensions(E + a, {"E_c": "eV", "a": "angstrom"}, "J/m**2").verdict[:12]
    'inconsistent'
    """
    try:
        expr = sp.sympify(expr)
        try:
            target = unit_dimension(target_unit)
        except ValueError as exc:
            return DimensionCheck(f"undetermined: {exc}", False, "", "")
        try:
            dims = _symbol_dimensions(expr, feature_units)
        except ValueError as exc:
            return DimensionCheck(f"undetermined: {exc}", False, "", format_dimension(target))
        if fitted_constants and _homogeneous(expr, dims, target):
            return DimensionCheck("consistent", True, format_dimension(target), format_dimension(target))
        return _walked_check(expr, dims, target, fitted_constants)
    except Exception as exc:  # noqa: BLE001 - never raise for a valid expression
        return DimensionCheck(f"undetermined: {type(exc).__name__}: {exc}", False, "", "")


def _symbol_dimensions(expr: sp.Expr, feature_units: Mapping[str, Any]) -> dict[str, Dim]:
    """Dimension of each free symbol of ``expr``; ``ValueError`` names a symbol without a usable unit."""
    dims: dict[str, Dim] = {}
    for s in sorted(expr.free_symbols, key=str):
        name = str(s)
        if name not in feature_units:
            raise ValueError(f"no unit for symbol {name}")
        dims[name] = unit_dimension(feature_units[name])
    return dims


def _walked_check(expr: sp.Expr, dims: Mapping[str, Dim], target: Dim, fitted_constants: bool) -> DimensionCheck:
    """Verdict from the dimension of ``expr`` found by :class:`_Walker` against ``target``."""
    walker = _Walker(dims, fitted_constants)
    try:
        d = walker.walk(expr)
    except _Inconsistent as exc:
        return DimensionCheck(f"inconsistent: {exc}", False, "", format_dimension(target))
    if d is FREE:
        return DimensionCheck("consistent up to fitted constants", True, "free", format_dimension(target))
    if d != target:
        return DimensionCheck(
            f"inconsistent: expression has dimension {format_dimension(d)} but the target has {format_dimension(target)}",
            False,
            format_dimension(d),
            format_dimension(target),
        )
    verdict = "consistent up to fitted constants" if walker.used_free else "consistent"
    return DimensionCheck(verdict, True, format_dimension(d), format_dimension(target))


def _has_unit(unit: Any) -> bool:
    """Whether a unit is given (``"dimensionless"`` and ``"1"`` are units; None and ``""`` are not)."""
    return unit is not None and str(unit).strip() != ""


def homogeneous_monomial(
    dims: Mapping[str, Dim], target: Dim, exponents: Sequence[float], max_factors: int
) -> tuple[tuple[str, float], ...] | None:
    """One monomial ``∏ x_i ** p_i`` with the dimension ``target``, or None when there is none.

    Parameters
    ----------
    dims : mapping of feature name to dimension
        As returned by :func:`unit_dimension`.
    target : Dim
    exponents : sequence of float
        Allowed non-zero exponents of one factor (e.g. the sparse engine's ±1/2, ±1, ±2, ±3).
    max_factors : int
        Most distinct features in one monomial.

    Returns
    -------
    tuple of (feature, exponent) pairs, or None
        The first such monomial in order of fewest factors (e.g. ``(("E_c", 1), ("a", -2))``).
    """
    names = list(dims)
    for k in range(1, max(1, max_factors) + 1):
        for cols in combinations(names, k):
            for powers in product(exponents, repeat=k):
                if monomial_dimension((dims[c], p) for c, p in zip(cols, powers, strict=True)) == target:
                    return tuple(zip(cols, powers, strict=True))
    return None


def require_scaling_units(
    features: Sequence[str],
    feature_units: Mapping[str, Any] | None,
    target_unit: Any,
    *,
    exponents: Sequence[float],
    max_factors: int,
) -> None:
    """Refuse a scaling-law fit ``y = Σ k_j ∏ x_i^p_ij`` that the units cannot support.

    Dimensional homogeneity as in Buckingham's Π theorem (E. Buckingham, Phys. Rev. 4, 345 (1914)).

    A dimensionally homogeneous power law with pure-number constants needs a unit on the target
    and on every feature (``dimensionless`` is one: such a feature may enter with any exponent,
    as in the factorised fit's C), and at least one monomial of the features (``exponents``, at
    most ``max_factors`` factors) with the target's dimension.

    Raises
    ------
    ValueError
        One line: the target or the first feature without a unit, a unit
        pint does not know, or no homogeneous monomial (naming the target's and every
        feature's dimension).
    """
    units = dict(feature_units or {})
    if not _has_unit(target_unit):
        raise ValueError("coefficient_form scaling needs a target with units: the target has no unit; "
                         "use coefficient_form free")
    for name in features:
        if not _has_unit(units.get(name)):
            raise ValueError(f"coefficient_form scaling needs units on every feature: feature {name} has no unit; "
                             "drop it or use coefficient_form free")
    dims = {name: unit_dimension(units[name]) for name in features}
    target = unit_dimension(target_unit)
    if homogeneous_monomial(dims, target, exponents, max_factors) is None:
        listed = "; ".join(f"{name} {format_dimension(d)} ({units[name]})" for name, d in dims.items())
        powers = ", ".join(f"{p:g}" for p in sorted(exponents))
        raise ValueError(f"coefficient_form scaling: no power law of the features has the target's dimension "
                         f"{format_dimension(target)} ({target_unit}); features: {listed} (exponents {powers}, "
                         f"at most {max_factors} factors)")


__all__ = ["DimensionCheck", "check_dimensions", "format_dimension", "homogeneous_monomial", "monomial_dimension",
           "require_scaling_units", "unit_dimension"]
