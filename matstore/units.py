"""The process-wide pint unit registry and unit parsing, shared by ingest and models.

``atom`` is defined as a dimensionless count, so ``eV`` and ``eV/atom`` are interchangeable.
A molar quantity is the same quantity per mole of particles: where two units differ by exactly
one ``[substance]``, :func:`convert_quantity` divides or multiplies by the Avogadro constant N_A
(CODATA 2018, exact: 6.02214076e23 /mol), so ``kJ/mol`` → ``eV/atom`` multiplies by
1/96.48533212... and ``eV/atom`` → ``kJ/mol`` by 96.48533212....

Spellings found in published tables are rewritten by pint's own ``preprocessors`` hook, in
this order (names on whole words only):

- ``Å``, ``Ångström``, ``Ang``, ``Angstrom(s)`` → ``angstrom`` (never ``angstromstrom``);
  ``Ha``, ``mHa``, ``Hartree`` → ``hartree``, ``millihartree``;
- superscripts ``²``, ``⁻¹``, ``⁻⁶`` … → ``^2``, ``^-1``, ``^-6``; ``·`` → ``*``;
- an exponent written straight after a unit symbol → ``^``: ``m-2`` → ``m^-2``, ``Å2`` →
  ``angstrom^2``, ``cm-1`` → ``cm^-1``, ``mol-1`` → ``mol^-1`` (names that end in a digit,
  such as ``a0`` for the bohr radius, are left alone).

A leading number is a scale of the unit: a column in ``1e-3 J/m^2`` is in mJ/m², one in
``10^-6/K`` (``10⁻⁶ K⁻¹``) is multiplied by 1e-6 to give 1/K. :func:`parse_quantity` returns it as a quantity (``0.001 J/m²``);
:func:`parse_unit` returns a bare unit and refuses a scale.

A bare ``A`` is ampere to pint but almost always ångström in a materials table (``eV/A^2``).
:func:`parse_quantity` reads it as ångström only where the expected dimension says a length is
meant (``eV/A^2`` for a J/m² definition); as ampere only where a current is expected; and
refuses it otherwise, asking for ``Å``/``angstrom`` (or ``ampere``).

Unit text is checked before pint sees it: only letters, digits, spaces and ``. * / ^ ( ) + -
% °`` are allowed, and a sign only starts an exponent (``m^-2``, ``m-2``, ``1e-3``), so
``__import__('os')``, ``1/0`` or ``J - 2`` give a one-line ``ValueError`` naming the unit and
the reason (callers add the file and column); pint's internal errors never reach the user.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import lru_cache

import pint

_LETTERS = r"[^\W\d_]"  # a letter of any script (Å, µ, Ω included)
#: (pattern, replacement) applied in order by the registry's preprocessor; word-bounded.
_REWRITES = (
    (re.compile(r"(?<![A-Za-z_])Ångström(?![A-Za-z_])"), "angstrom"),
    (re.compile(r"Å"), "angstrom"),
    (re.compile(r"(?<![A-Za-z_])(?:Ang|Angstroms?|angstroms)(?![A-Za-z_])"), "angstrom"),
    (re.compile(r"(?<![A-Za-z_])(?:Ha|Hartrees?)(?![A-Za-z_])"), "hartree"),
    (re.compile(r"(?<![A-Za-z_])mHa(?![A-Za-z_])"), "millihartree"),
    (re.compile(r"·"), "*"),
)
_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺", "0123456789-+")
_SUPERSCRIPT_EXPONENT = re.compile(r"[⁻⁺]?[⁰¹²³⁴⁵⁶⁷⁸⁹]+")
#: a unit symbol with its exponent glued on (``m-2``, ``angstrom2``); not inside a word or number
_GLUED_EXPONENT = re.compile(rf"(?<![\w.])({_LETTERS}+)([-+]?\d+)(?![\w.])")
#: a sign that does not start an exponent (after ^ or **) or a number's exponent (1e-3)
_BARE_SIGN = re.compile(r"(?:^|[^\s^*(eE])\s*[-+]")
_BARE_A = re.compile(r"(?<![A-Za-z_0-9])A(?![A-Za-z_0-9])")
_ALLOWED = re.compile(r"[\w\s.*/^()+\-%°·Å²³⁰¹⁴⁵⁶⁷⁸⁹⁻⁺µΩ]*")


def _rewrite_names(text: str) -> str:
    for pattern, replacement in _REWRITES:
        text = pattern.sub(replacement, text)
    return _SUPERSCRIPT_EXPONENT.sub(lambda m: "^" + m.group().translate(_SUPERSCRIPTS), text)


def _glued_exponents(ureg: pint.UnitRegistry) -> Callable[[str], str]:
    """Preprocessor writing ``m-2`` as ``m^-2``, unless the whole token is a unit name (``a0``)."""
    def rewrite(match: re.Match[str]) -> str:
        if ureg.parse_unit_name(match.group()):
            return match.group()
        return f"{match.group(1)}^{match.group(2)}"

    return lambda text: _GLUED_EXPONENT.sub(rewrite, text)


@lru_cache(maxsize=1)
def unit_registry() -> pint.UnitRegistry:
    """The process-wide pint registry: ``atom`` a dimensionless count, table spellings preprocessed."""
    ureg = pint.UnitRegistry(preprocessors=[_rewrite_names])
    ureg.preprocessors.append(_glued_exponents(ureg))
    ureg.define("atom = 1 = atoms")
    return ureg


def normalise_unit(unit: str) -> str:
    """Unit text as pint reads it: ``Å`` → ``angstrom``, ``²`` → ``^2``, ``m-2`` → ``m^-2``, ``Ha`` → ``hartree``."""
    text = unit.strip()
    for preprocess in unit_registry().preprocessors:
        text = preprocess(text)
    return text


def parse_quantity(unit: str, *, expected: str | pint.Unit | None = None) -> pint.Quantity:
    """Parse unit text, with an optional leading scale, into a quantity.

    ``"eV/atom"`` → 1 eV/atom; ``"J m-2"`` → 1 J/m²; ``"1e-3 J/m^2"`` → 0.001 J/m²;
    ``"10^-6/K"`` → 1e-6 /K; ``"kJ mol-1"`` → 1 kJ/mol.

    Parameters
    ----------
    unit:
        The unit text.
    expected:
        The unit the value will be converted to; only used to decide what a bare ``A`` means
        (ångström if that gives ``expected``'s dimension, ampere if that does; a molar
        ``expected`` counts as its per-particle dimension).

    Raises
    ------
    ValueError
        One line naming ``unit`` and why: characters no unit has, a sign that is not an
        exponent's, not a unit (pint's reason, e.g. ``'Hz2x' is not defined``, division by
        zero), a scale that is not a positive finite number, or an ambiguous bare ``A``.
    """
    text = unit.strip() if isinstance(unit, str) else ""
    if not text:
        raise ValueError(f"unit {unit!r} is not a unit: empty")
    if not _ALLOWED.fullmatch(text):
        bad = "".join(sorted({c for c in text if not _ALLOWED.fullmatch(c)}))
        raise ValueError(f"unit {unit!r} is not a unit: it holds characters no unit has ({bad})")
    if _BARE_A.search(text):
        return _parse_bare_a(unit, text, expected)
    return _parse(unit, text)


def parse_unit(unit: str, *, expected: str | pint.Unit | None = None) -> pint.Unit:
    """Parse a unit string such as ``"eV/atom"``, ``"J/m²"``, ``"J m-2"``, ``"eV/Å^2"`` or ``"GPa"``.

    As :func:`parse_quantity`, for a unit without a scale (a canonical unit of a definition).

    Raises
    ------
    ValueError
        As :func:`parse_quantity`, and when the text has a numeric scale (``1e-3 J/m^2``).
    """
    quantity = parse_quantity(unit, expected=expected)
    if quantity.magnitude != 1:
        raise ValueError(f"unit {unit!r} has a numeric scale ({quantity.magnitude:g}); give the unit alone")
    return quantity.units


def _parse(unit: str, text: str) -> pint.Quantity:
    ureg = unit_registry()
    if _BARE_SIGN.search(normalise_unit(text)):
        raise ValueError(f"unknown unit {unit!r}: a '+' or '-' that does not start an exponent (m^-2, m-2, 1e-3)")
    try:
        quantity = ureg.Quantity(ureg.parse_expression(text))
    except (pint.errors.PintError, ZeroDivisionError) as exc:  # UndefinedUnitError, DimensionalityError, 1/0
        reason = str(exc).splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ValueError(f"unknown unit {unit!r}: {reason}") from None
    except Exception:  # noqa: BLE001 - pint's parser fails with TypeError, AttributeError ... on malformed text
        raise ValueError(f"unknown unit {unit!r}: pint cannot read it as a unit expression") from None
    scale = quantity.magnitude
    if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"unknown unit {unit!r}: its scale {scale} is not a positive number "
                         "(a sign flip is not a unit: use a derived column such as -CHE)")
    return quantity


def _per_particle(dimensionality: object) -> pint.util.UnitsContainer:
    """A dimensionality without ``[substance]`` (a molar quantity read per particle)."""
    return pint.util.UnitsContainer({k: v for k, v in dict(dimensionality).items() if k != "[substance]"})


def _parse_bare_a(unit: str, text: str, expected: str | pint.Unit | None) -> pint.Quantity:
    ask = "write 'Å' or 'angstrom' for ångström, 'ampere' for a current"
    if expected is None:
        raise ValueError(f"unit {unit!r}: a bare 'A' is ambiguous (ampere or ångström); {ask}")
    target = expected if isinstance(expected, pint.Unit) else _parse(str(expected), str(expected)).units
    wanted = _per_particle(target.dimensionality)
    as_length = _parse(unit, _BARE_A.sub("angstrom", text))
    if _per_particle(as_length.dimensionality) == wanted:
        return as_length
    as_current = _parse(unit, text)
    if _per_particle(as_current.dimensionality) == wanted:
        return as_current
    raise ValueError(f"unit {unit!r}: a bare 'A' gives the dimension of {target} neither as ångström nor "
                     f"as ampere; {ask}")


def convert_quantity(quantity: pint.Quantity, unit: pint.Unit) -> pint.Quantity:
    """``quantity`` in ``unit``; per mole ↔ per particle where they differ by exactly one ``[substance]``.

    ``1 kJ/mol`` → ``0.0103642697 eV/atom`` (÷ N_A); ``1 eV`` → ``96.4853321 kJ/mol`` (× N_A),
    N_A the Avogadro constant (CODATA 2018, exact). ``atom`` is a dimensionless count here.

    Raises
    ------
    pint.errors.DimensionalityError
        If the dimensions differ otherwise.
    pint.errors.OffsetUnitCalculusError
        For offset units (°C) where a molar step is needed.
    """
    ureg = unit_registry()
    ratio = dict(quantity.dimensionality / unit.dimensionality)
    if ratio == {"[substance]": -1}:
        quantity = quantity / ureg.avogadro_constant
    elif ratio == {"[substance]": 1}:
        quantity = quantity * ureg.avogadro_constant
    return quantity.to(unit)


__all__ = ["convert_quantity", "normalise_unit", "parse_quantity", "parse_unit", "unit_registry"]
