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

import logging
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


#: A charge-balanced assignment is searched among at most this many partial charges (else: no guess).
MAX_ASSIGNMENTS = 100_000
#: pymatgen's ``Composition.oxi_state_guesses`` (mixed valence, e.g. Fe3O4) is asked only for
#: formulas of at most this many atoms: its cost grows combinatorially with the amounts
#: (measured on a shared machine: LaGd3P4O16, 24 atoms, 0.03 s; LaGd9P10O40 1.3 s; LaGd19P20O80 72 s).
MAX_GUESS_ATOMS = 24


class CationRadius(NamedTuple):
    """The ionic radius a ``cation_*`` descriptor uses for one metal element.

    ``radius`` in Å (NaN when pymatgen has none); ``oxidation_state`` the charge-balanced
    oxidation state it is the radius of (an average for mixed valence, e.g. 8/3 for Fe of
    Fe3O4), or None where the radius is the element's average over its oxidation states
    (:data:`_IONIC_RADIUS`); ``basis`` says which, in words (``"La3+ (Shannon)"``,
    ``"average over oxidation states: an alloy: no element has a negative oxidation state, so
    none balance"``).
    """

    radius: float
    oxidation_state: float | None
    basis: str


log = logging.getLogger(__name__)
_fallback_logged = False


def _whole(composition: Mapping[str, float]) -> dict[str, int]:
    """Whole-number amounts with the atomic fractions of ``composition``, divided by their gcd."""
    fractions = {el: Fraction(a).limit_denominator(MAX_DENOMINATOR) for el, a in composition.items()}
    scale = math.lcm(*(f.denominator for f in fractions.values()))
    whole = {el: int(f * scale) for el, f in fractions.items()}
    divisor = math.gcd(*whole.values())
    return {el: n // divisor for el, n in whole.items()}


@lru_cache(maxsize=2048)
def _oxidation_probability(el: str, state: int) -> float:
    """pymatgen's ICSD occurrence of ``el`` in ``state`` (``Composition.oxi_prob``), the score of its guesses; 0 if none."""
    from pymatgen.core import Composition, Species

    if Composition.oxi_prob is None:  # loaded on pymatgen's first guess
        Composition("NaCl").oxi_state_guesses()
    return float(Composition.oxi_prob.get(Species(el, state), 0.0))


def _uniform_oxidation_states(whole: Mapping[str, int]) -> dict[str, int] | None:
    """The most probable charge-balanced assignment of one oxidation state per element, or None.

    Each element takes one of pymatgen's ``icsd_oxidation_states`` (``common_oxidation_states``
    where it has none), the states ``Composition.oxi_state_guesses`` tries, on all its sites;
    Σ n_i o_i = 0; among those, the largest Σ n_i p(o_i), p the ICSD occurrence pymatgen
    ranks its guesses by.  Dynamic programming over the partial charge, so the cost does not
    grow with the amounts (La9Gd91P100O400 costs what LaGdP2O8 costs).  None if no assignment
    balances, or more than :data:`MAX_ASSIGNMENTS` partial charges would be needed.
    """
    best: dict[int, tuple[float, tuple[int, ...]]] = {0: (0.0, ())}
    for el, n in whole.items():
        states = _states(el)
        step: dict[int, tuple[float, tuple[int, ...]]] = {}
        for charge, (score, assigned) in best.items():
            for state in states:
                key, value = charge + n * state, score + n * _oxidation_probability(el, state)
                if key not in step or value > step[key][0]:
                    step[key] = (value, (*assigned, state))
        if not step or len(step) > MAX_ASSIGNMENTS:
            return None
        best = step
    return dict(zip(whole, best[0][1], strict=True)) if 0 in best else None


def oxidation_states(composition: Mapping[str, float]) -> tuple[dict[str, float] | None, str]:
    """Charge-balanced oxidation state of each element of ``composition``, and how it was found.

    1. One state per element (:func:`_uniform_oxidation_states`): La³⁺, Gd³⁺, P⁵⁺, O²⁻ for
       La0.25Gd0.75PO4; Mo⁴⁺, S²⁻ for MoS2.
    2. Else, for a formula of at most :data:`MAX_GUESS_ATOMS` atoms (after dividing by the gcd
       of its whole-number amounts), the first (most probable) of pymatgen's
       ``Composition.oxi_state_guesses()``, which also tries mixed valence: Fe 8/3 of Fe3O4.
    3. Else none: one element, an alloy (Fe7Ni3, Cu3Au: no element takes a negative state, so
       step 2 is not tried), no balance (pymatgen finds none), or a formula too large for step 2.

    Parameters
    ----------
    composition
        Element → amount (any scale; fractional amounts are scaled to whole numbers first).

    Returns
    -------
    (states, reason)
        ``states``: element → oxidation state (a float; an average for mixed valence), or None;
        ``reason``: why None (``"no charge-balanced oxidation states"``, ...), else ``""``.
    """
    import warnings

    from pymatgen.core import Composition

    whole = _whole(composition)
    if len(whole) < 2:
        return None, "one element"
    states = _uniform_oxidation_states(whole)
    if states is not None:
        return {el: float(o) for el, o in states.items()}, ""
    if not any(o < 0 for el in whole for o in _states(el)):
        return None, "an alloy: no element has a negative oxidation state, so none balance"
    if sum(whole.values()) > MAX_GUESS_ATOMS:
        return None, (f"no charge-balanced oxidation states with one state per element, and the formula has more than "
                      f"{MAX_GUESS_ATOMS} atoms for pymatgen's mixed-valence guesses")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        guesses = Composition(whole).oxi_state_guesses()
    if not guesses:
        return None, "no charge-balanced oxidation states"
    return {el: float(o) for el, o in guesses[0].items()}, ""


@lru_cache(maxsize=256)
def _states(el: str) -> tuple[int, ...]:
    """The oxidation states pymatgen's guesses try for ``el``: ``icsd_oxidation_states``, else ``common_oxidation_states``."""
    from pymatgen.core import Element

    element = Element(el)
    return tuple(element.icsd_oxidation_states or element.common_oxidation_states)


def _species_radius(el: str, state: float) -> float:
    """pymatgen's ``Species(el, state).ionic_radius`` (Å; NaN where it has none).

    A non-integer (mixed-valence) ``state`` lies between two of the element's states
    (:func:`_states`), ``low`` and ``high``, the nearest below and above: the radius is
    ``(1 − w) r(low) + w r(high)``, ``w = (state − low)/(high − low)``, the mean over sites of
    which a fraction w is in the higher state (Fe 8/3 of Fe3O4: Fe²⁺ and 2 Fe³⁺; Pb 8/3 of
    Pb3O4: 2 Pb²⁺ and Pb⁴⁺, as pymatgen knows no Pb³⁺).
    """
    import warnings

    from pymatgen.core import Species

    def radius(oxidation: int) -> float:
        with warnings.catch_warnings():  # "No default ionic radius ... Using hs data", "No ionic radius"
            warnings.simplefilter("ignore", UserWarning)
            value = Species(el, oxidation).ionic_radius if oxidation else None
        return float(value) if value is not None else math.nan

    if abs(state - round(state)) < 1e-9:
        return radius(round(state))
    below = [o for o in _states(el) if o < state]
    above = [o for o in _states(el) if o > state]
    if not below or not above:
        return math.nan
    low, high = max(below), min(above)
    w = (state - low) / (high - low)
    return (1 - w) * radius(low) + w * radius(high)


def _ion(el: str, state: float) -> str:
    """``La3+``, ``Au1-``, ``Fe2.67+`` (mixed valence)."""
    size = abs(state)
    return f"{el}{size:g}{'+' if state > 0 else '-'}" if size == int(size) else f"{el}{size:.3g}{'+' if state > 0 else '-'}"


@lru_cache(maxsize=4096)
def _cation_radii(items: tuple[tuple[str, float], ...]) -> tuple[tuple[str, CationRadius], ...]:
    """:func:`cation_radii` of the composition ``items`` (sorted (element, amount) pairs), cached; logs a fallback."""
    global _fallback_logged  # noqa: PLW0603 (the first fallback in a process is a warning)
    from pymatgen.core import Composition

    composition = dict(items)
    metals = _metals(composition)
    if not metals:
        return ()
    states, reason = oxidation_states(composition)
    out = []
    for el in metals:
        state = states.get(el) if states else None
        radius = _species_radius(el, state) if state else math.nan
        if math.isfinite(radius):
            out.append((el, CationRadius(radius, state, f"{_ion(el, state)} (Shannon)")))
        else:
            why = reason or (f"pymatgen has no ionic radius of {_ion(el, state)}" if state else
                             f"{el} has no charge-balanced oxidation state")
            out.append((el, CationRadius(_IONIC_RADIUS(el), None, f"average over oxidation states: {why}")))
    note = cation_radius_note(dict(out))
    if note and len(out) > 1:  # once per composition (cached), where δ_M depends on it
        formula = Composition(_whole(composition)).reduced_formula
        log.log(logging.INFO if _fallback_logged else logging.WARNING, "cation_size_mismatch of %s: %s", formula, note)
        _fallback_logged = True
    return tuple(out)


def cation_radii(composition: Mapping[str, float]) -> dict[str, CationRadius]:
    """Ionic radius of each metal element of ``composition`` as the ``cation_*`` descriptors use it.

    The radius of the element in its charge-balanced oxidation state (:func:`oxidation_states`),
    pymatgen's ``Species(el, state).ionic_radius``, its table of Shannon's six-coordinate
    crystal radii (R. D. Shannon, Acta Cryst. A 32, 751 (1976)), e.g. La³⁺ 1.172, Ce³⁺ 1.15,
    Gd³⁺ 1.075 Å (Shannon: 1.078 Å).  For mixed valence, the site-weighted mean of the radii of
    the element's two neighbouring states (Fe3O4: (0.92 + 2·0.785)/3 Å; :func:`_species_radius`).
    Where the composition has no charge-balanced oxidation states (an alloy such as Fe7Ni3,
    one element) or pymatgen has no radius of the species, the element's Shannon radius averaged
    over its oxidation states (``Element.average_ionic_radius``, as ``mean_ionic_radius``),
    with the reason in ``basis``; the first such composition in a process is logged as a
    warning, later ones at INFO (logger ``matstore.composition``).  Cached per composition.

    Returns
    -------
    dict of metal element → :class:`CationRadius` (empty without a metal).
    """
    return dict(_cation_radii(tuple(sorted((el, float(a)) for el, a in composition.items()))))


def cation_radius_note(radii: Mapping[str, CationRadius]) -> str | None:
    """One line naming the elements of ``radii`` (from :func:`cation_radii`) whose radius is the average, or None.

    E.g. ``"averaged ionic radii of Fe, Ni (an alloy: no element has a negative oxidation state, so none balance)"``.
    """
    averaged = {el: r.basis.split(": ", 1)[1] for el, r in radii.items() if r.oxidation_state is None}
    if not averaged:
        return None
    reasons = sorted(set(averaged.values()))
    return f"averaged ionic radii of {', '.join(averaged)} ({'; '.join(reasons)})"


def cation_size_mismatch(composition: Mapping[str, float]) -> float:
    """δ_M: :func:`size_mismatch` over the metal elements of ``composition`` with :func:`cation_radii`.

    Dimensionless; NaN without a metal, or where an element has no radius at all.
    La0.5Gd0.5PO4: La³⁺ 1.172, Gd³⁺ 1.075 Å, r̄ = 1.1235 Å, δ_M = 0.0485/1.1235 = 0.04317.
    """
    radii = cation_radii(composition)
    if not radii:
        return math.nan
    return size_mismatch(_metals(composition), lambda el: radii[el].radius)


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
    # δ over the metal elements, each element's Shannon radius in its charge-balanced oxidation
    # state (cation_radii; the average over its oxidation states where there is none); NaN without a metal
    "cation_size_mismatch": cation_size_mismatch,
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


__all__ = ["DESCRIPTORS", "MAX_ASSIGNMENTS", "MAX_DENOMINATOR", "MAX_GUESS_ATOMS", "CationRadius", "FormulaError",
           "ParsedFormula", "cation_radii", "cation_radius_note", "cation_size_mismatch", "composition_descriptor",
           "electronegativity_mismatch", "oxidation_states", "parse_formula", "size_mismatch"]
