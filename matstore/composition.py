"""Chemical compositions: canonical material keys from formulas (pymatgen), and composition descriptors.

A material's formula is whatever pymatgen's :class:`~pymatgen.core.Composition` parses
(``Cu``, ``MoS2``, ``Cu3Au``, ``La0.5Ce0.5PO4``, ``Fe70Ni30``, ``Cu(OH)2``).  matstore stores
one key per composition: the smallest whole-number formula (:func:`parse_formula`), so
``Fe70Ni30``, ``Fe0.7Ni0.3`` and ``Fe7Ni3`` are one material ``Fe7Ni3``, and
``La0.5Ce0.5PO4`` and ``LaCeP2O8`` are one material ``LaCeP2O8``.

Composition descriptors are computed from the stored composition when a training set is
built (never stored), so they can be named as features like any stored property; see
:data:`DESCRIPTORS` for each one's definition and source.  Element data are pymatgen's
(``pymatgen.core.periodic_table``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from fractions import Fraction
from functools import lru_cache
from typing import NamedTuple

_ONE = re.compile(r"(?<=[A-Za-z])1(?![0-9.])")
#: Formula amounts are rounded to the nearest fraction with at most this denominator.
MAX_DENOMINATOR = 10**6


class FormulaError(ValueError):
    """A formula pymatgen cannot parse, or one naming no real element."""


class ParsedFormula(NamedTuple):
    """A material key (canonical formula) and its element amounts (``{"Mo": 1.0, "S": 2.0}``)."""

    formula: str
    composition: dict[str, float]


@lru_cache(maxsize=4096)
def parse_formula(text: str) -> ParsedFormula:
    """Canonical formula (the material key) and element amounts of ``text`` (e.g. ``"La0.5Ce0.5PO4"``).

    The key is the smallest whole-number formula of the composition: each amount is rounded
    to the nearest fraction with denominator at most :data:`MAX_DENOMINATOR` (``0.7`` → 7/10),
    the amounts are scaled by the least common multiple of the denominators, and the result
    is reduced as pymatgen's ``Composition.reduced_composition`` reduces it (by the greatest
    common divisor; ``O`` → ``O2`` and pymatgen's other peroxide/diatomic special forms),
    written in pymatgen's element order (by Pauling electronegativity, then symbol) without
    spaces, brackets or amounts of 1.  A formula with whole-number amounts therefore gets the
    key it always had (``Mo2S4`` → ``MoS2``, ``NiAl`` → ``AlNi``, ``Fe2O3``), and every other
    spelling of the same atomic fractions gets that same key: ``Fe0.7Ni0.3`` and ``Fe70Ni30``
    → ``Fe7Ni3``; ``La0.5Ce0.5PO4`` → ``LaCeP2O8``.

    Parameters
    ----------
    text
        Any formula pymatgen's ``Composition`` accepts; surrounding blanks are ignored.

    Returns
    -------
    ParsedFormula
        ``formula``: the key; ``composition``: the key's element amounts (whole numbers).

    Raises
    ------
    FormulaError
        If the text is blank, not a formula, names an unknown element, has no atoms, or has an
        amount that rounds to 0 at the resolution 1/:data:`MAX_DENOMINATOR`.
    """
    from pymatgen.core import Composition

    composition = _composition(text)
    whole = Composition(_whole_amounts(composition, text.strip()))
    reduced = whole.reduced_composition
    formula = _ONE.sub("", "".join(reduced.formula.split()))
    return ParsedFormula(formula, {str(el): float(amount) for el, amount in reduced.get_el_amt_dict().items()})


def _composition(text: str):  # noqa: ANN202 (pymatgen Composition, imported lazily)
    """pymatgen's Composition of ``text``; FormulaError if it is not a formula of real elements."""
    from pymatgen.core import Composition

    stripped = text.strip()
    if not stripped:
        raise FormulaError("the formula is blank")
    try:
        composition = Composition(stripped)
    except (ValueError, KeyError, TypeError) as exc:
        raise FormulaError(f"not a chemical formula: {stripped!r}") from exc
    if not composition.valid:
        symbols = [getattr(e, "symbol", str(e)) for e in composition.elements]
        unknown = [s for s in symbols if not _is_element(s)]
        raise FormulaError(f"unknown element {unknown[0] if unknown else stripped!r} in {stripped!r}")
    if composition.num_atoms <= 0 or any(a < 0 for a in composition.values()):
        raise FormulaError(f"formula {stripped!r} has no atoms")
    return composition


def _whole_amounts(composition, text: str) -> dict[str, int]:  # noqa: ANN001
    """Element → whole-number amount with the atomic fractions of ``composition`` (pymatgen's order kept)."""
    fractions = {}
    for el, amount in composition.get_el_amt_dict().items():
        fraction = Fraction(amount).limit_denominator(MAX_DENOMINATOR)
        if fraction == 0:
            raise FormulaError(f"amount {amount:g} of {el} in {text!r} is below 1/{MAX_DENOMINATOR}, "
                               "the resolution of formula amounts")
        fractions[el] = fraction
    scale = math.lcm(*(f.denominator for f in fractions.values()))
    return {el: int(f * scale) for el, f in fractions.items()}


def _is_element(symbol: str) -> bool:
    from pymatgen.core import Element

    return Element.is_valid_symbol(symbol)


# --- descriptors -----------------------------------------------------------------------------

def _element_value(attribute: str) -> Callable[[str], float]:
    def get(symbol: str) -> float:
        import warnings

        from pymatgen.core import Element

        with warnings.catch_warnings():  # pymatgen warns "No data available" and returns None
            warnings.simplefilter("ignore", UserWarning)
            value = getattr(Element(symbol), attribute)
        return float(value) if value is not None else math.nan

    return get


_ATOMIC_MASS = _element_value("atomic_mass")
_ELECTRONEGATIVITY = _element_value("X")
_ATOMIC_RADIUS = _element_value("atomic_radius")
_METALLIC_RADIUS = _element_value("metallic_radius")
_IONIC_RADIUS = _element_value("average_ionic_radius")


def _fraction_mean(composition: Mapping[str, float], value: Callable[[str], float]) -> float:
    total = sum(composition.values())
    return sum(amount * value(el) for el, amount in composition.items()) / total


def _electronegativity_difference(composition: Mapping[str, float]) -> float:
    values = [_ELECTRONEGATIVITY(el) for el in composition]
    return max(values) - min(values)


def _metals(composition: Mapping[str, float]) -> dict[str, float]:
    """The metal elements of ``composition`` (pymatgen ``Element.is_metal``: not H, metalloids or non-metals)."""
    from pymatgen.core import Element

    return {el: amount for el, amount in composition.items() if Element(el).is_metal}


def size_mismatch(composition: Mapping[str, float], radius: Callable[[str], float]) -> float:
    """Atomic size mismatch δ = sqrt(Σ c_i (1 − r_i/r̄)²), r̄ = Σ c_i r_i (dimensionless, not in %).

    ``c_i`` are the atomic fractions of ``composition`` (element → amount) and ``r_i`` the
    radii given by ``radius``.  Y. Zhang et al., Adv. Eng. Mater. 10, 534 (2008),
    doi:10.1002/adem.200700240.  NaN for an empty composition or an element without a radius.
    """
    if not composition:
        return math.nan
    total = sum(composition.values())
    mean = _fraction_mean(composition, radius)
    return math.sqrt(sum(a / total * (1 - radius(el) / mean) ** 2 for el, a in composition.items()))


def electronegativity_mismatch(composition: Mapping[str, float]) -> float:
    """Electronegativity mismatch Δχ = sqrt(Σ c_i (χ_i − χ̄)²), χ̄ = Σ c_i χ_i (Pauling units).

    ``c_i`` are the atomic fractions of ``composition`` (element → amount).  S. Guo and
    C. T. Liu, Prog. Nat. Sci.: Mater. Int. 21, 433 (2011), doi:10.1016/S1002-0071(12)60080-X.
    NaN for an empty composition or an element without a Pauling electronegativity.
    """
    if not composition:
        return math.nan
    total = sum(composition.values())
    mean = _fraction_mean(composition, _ELECTRONEGATIVITY)
    return math.sqrt(sum(a / total * (_ELECTRONEGATIVITY(el) - mean) ** 2 for el, a in composition.items()))


#: Composition descriptor name → function of the element amounts (units in the vocabulary).
#: ``c_i`` are atomic fractions over all elements, or over the metal elements only
#: (``cation_*``: the cation sites of an ionic solid, e.g. La and Ce of La0.5Ce0.5PO4).
DESCRIPTORS: dict[str, Callable[[Mapping[str, float]], float]] = {
    # Σ c_i M_i (u)
    "mean_atomic_mass": lambda c: _fraction_mean(c, _ATOMIC_MASS),
    # Σ c_i χ_i (Pauling)
    "mean_electronegativity": lambda c: _fraction_mean(c, _ELECTRONEGATIVITY),
    # max χ_i − min χ_i over all elements present (not a mean; 0 for one element)
    "electronegativity_difference": _electronegativity_difference,
    # Σ c_i r_i, empirical radii of J. C. Slater, J. Chem. Phys. 41, 3199 (1964) (Å)
    "mean_atomic_radius": lambda c: _fraction_mean(c, _ATOMIC_RADIUS),
    # Σ c_i r_i, each element's Shannon radius averaged over its oxidation states (R. D. Shannon,
    # Acta Cryst. A 32, 751 (1976)) (Å)
    "mean_ionic_radius": lambda c: _fraction_mean(c, _IONIC_RADIUS),
    "n_elements": lambda c: float(len(c)),
    # δ over all elements, metallic (CN 12) radii: NaN when an element has none (O, P, C, Si, Sn ...)
    "atomic_size_mismatch": lambda c: size_mismatch(c, _METALLIC_RADIUS),
    # Δχ over all elements
    "electronegativity_mismatch": electronegativity_mismatch,
    # δ over the metal elements, Shannon average ionic radii; NaN without a metal
    "cation_size_mismatch": lambda c: size_mismatch(_metals(c), _IONIC_RADIUS),
    # Δχ over the metal elements; NaN without a metal
    "cation_electronegativity_mismatch": lambda c: electronegativity_mismatch(_metals(c)),
}


def composition_descriptor(name: str, composition: Mapping[str, float]) -> float:
    """Value of descriptor ``name`` for ``composition`` (element → amount; any scale).

    Returns NaN when an element lacks the datum (e.g. no tabulated ionic radius) or the
    descriptor's elements are absent (a ``cation_*`` descriptor without a metal), so that
    the training set drops that row and names the missing descriptor.

    Raises
    ------
    KeyError
        If ``name`` is not one of :data:`DESCRIPTORS`.
    """
    if not composition:
        return math.nan
    return float(DESCRIPTORS[name](composition))


__all__ = ["DESCRIPTORS", "MAX_DENOMINATOR", "FormulaError", "ParsedFormula", "composition_descriptor",
           "electronegativity_mismatch", "parse_formula", "size_mismatch"]
