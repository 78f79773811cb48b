"""Chemical compositions: parsing formulas with pymatgen, and composition descriptors.

A material's formula is whatever pymatgen's :class:`~pymatgen.core.Composition` parses
(``Cu``, ``MoS2``, ``Cu3Au``, ``La0.5Ce0.5PO4``, ``Cu(OH)2``); matstore stores its reduced
formula (pymatgen's element order, by electronegativity, amounts of 1 omitted, no brackets)
and its element amounts.

Composition descriptors are atomic-fraction-weighted means of element data and are computed
from the stored composition when a training set is built (never stored), so they can be
named as features like any stored property: ``mean_atomic_mass`` (u),
``mean_electronegativity`` (Pauling), ``electronegativity_difference``, ``mean_atomic_radius``
(Å, empirical radii of J. C. Slater, J. Chem. Phys. 41, 3199 (1964)), ``mean_ionic_radius``
(Å, each element's average Shannon radius, R. D. Shannon, Acta Cryst. A 32, 751 (1976)) and
``n_elements``.  Element data are pymatgen's (``pymatgen.core.periodic_table``).  This is the
"element property" featurisation of Ward et al., npj Comput. Mater. 2, 16028 (2016),
reduced to the mean.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import NamedTuple

_ONE = re.compile(r"(?<=[A-Za-z])1(?![0-9.])")


class FormulaError(ValueError):
    """A formula pymatgen cannot parse, or one naming no real element."""


class ParsedFormula(NamedTuple):
    """A reduced formula and its element amounts (``{"Mo": 1.0, "S": 2.0}``)."""

    formula: str
    composition: dict[str, float]


@lru_cache(maxsize=4096)
def parse_formula(text: str) -> ParsedFormula:
    """Reduced formula and element amounts of ``text`` (e.g. ``"La0.5Ce0.5PO4"``).

    Parameters
    ----------
    text
        Any formula pymatgen's ``Composition`` accepts; surrounding blanks are ignored.

    Returns
    -------
    ParsedFormula
        ``formula``: reduced, e.g. ``MoS2`` from ``Mo2S4``, ``AlNi`` from ``NiAl``;
        ``composition``: amounts of the reduced formula.

    Raises
    ------
    FormulaError
        If the text is blank, not a formula, names an unknown element or has no atoms.
    """
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
    reduced = composition.reduced_composition
    formula = _ONE.sub("", "".join(reduced.formula.split()))
    return ParsedFormula(formula, {str(el): float(amount) for el, amount in reduced.get_el_amt_dict().items()})


def _is_element(symbol: str) -> bool:
    from pymatgen.core import Element

    return Element.is_valid_symbol(symbol)


# --- descriptors -----------------------------------------------------------------------------

def _element_value(attribute: str) -> Callable[[str], float]:
    def get(symbol: str) -> float:
        from pymatgen.core import Element

        value = getattr(Element(symbol), attribute)
        return float(value) if value is not None else math.nan

    return get


_ATOMIC_MASS = _element_value("atomic_mass")
_ELECTRONEGATIVITY = _element_value("X")
_ATOMIC_RADIUS = _element_value("atomic_radius")
_IONIC_RADIUS = _element_value("average_ionic_radius")


def _fraction_mean(composition: Mapping[str, float], value: Callable[[str], float]) -> float:
    total = sum(composition.values())
    return sum(amount * value(el) for el, amount in composition.items()) / total


def _electronegativity_difference(composition: Mapping[str, float]) -> float:
    values = [_ELECTRONEGATIVITY(el) for el in composition]
    return max(values) - min(values)


#: Composition descriptor name → function of the element amounts (units in the vocabulary).
DESCRIPTORS: dict[str, Callable[[Mapping[str, float]], float]] = {
    "mean_atomic_mass": lambda c: _fraction_mean(c, _ATOMIC_MASS),
    "mean_electronegativity": lambda c: _fraction_mean(c, _ELECTRONEGATIVITY),
    "electronegativity_difference": _electronegativity_difference,
    "mean_atomic_radius": lambda c: _fraction_mean(c, _ATOMIC_RADIUS),
    "mean_ionic_radius": lambda c: _fraction_mean(c, _IONIC_RADIUS),
    "n_elements": lambda c: float(len(c)),
}


def composition_descriptor(name: str, composition: Mapping[str, float]) -> float:
    """Value of descriptor ``name`` for ``composition`` (element → amount).

    Returns NaN when an element lacks the datum (e.g. no tabulated ionic radius), so that
    the training set drops that row and names the missing descriptor.

    Raises
    ------
    KeyError
        If ``name`` is not one of :data:`DESCRIPTORS`.
    """
    if not composition:
        return math.nan
    return float(DESCRIPTORS[name](composition))


__all__ = ["DESCRIPTORS", "FormulaError", "ParsedFormula", "composition_descriptor", "parse_formula"]
