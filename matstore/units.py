"""The process-wide pint unit registry and unit parsing, shared by ingest and models.

``atom`` is defined as a dimensionless count, so ``eV`` and ``eV/atom`` are interchangeable.
Spellings found in materials tables are rewritten by pint's own ``preprocessors`` hook, on
whole words only: ``Å``, ``Ångström``, ``Ang``, ``Angstrom(s)`` → ``angstrom`` (never
``angstromstrom``),
``²  ³  ⁻¹  ⁻²  ⁻³`` → ``^2 ^3 ^-1 ^-2 ^-3``, ``·`` → ``*``.

A bare ``A`` is ampere to pint but almost always ångström in a materials table (``eV/A^2``).
:func:`parse_unit` reads it as ångström only where the expected dimension says a length is
meant (``eV/A^2`` for a J/m² definition); as ampere only where a current is expected; and
refuses it otherwise, asking for ``Å``/``angstrom`` (or ``ampere``).

Unit text is checked before pint sees it: only letters, digits, spaces and ``. * / ^ ( ) + -
% °`` are allowed, so ``__import__('os')`` or ``1/0`` give a one-line ``ValueError`` naming the
unit and the reason (callers add the file and column).
"""

from __future__ import annotations

import re
from functools import lru_cache

import pint

#: (pattern, replacement) applied in order by the registry's preprocessor; word-bounded.
_REWRITES = (
    (re.compile(r"(?<![A-Za-z_])Ångström(?![A-Za-z_])"), "angstrom"),
    (re.compile(r"Å"), "angstrom"),
    (re.compile(r"(?<![A-Za-z_])(?:Ang|Angstroms?|angstroms)(?![A-Za-z_])"), "angstrom"),
    (re.compile(r"⁻¹"), "^-1"), (re.compile(r"⁻²"), "^-2"), (re.compile(r"⁻³"), "^-3"),
    (re.compile(r"²"), "^2"), (re.compile(r"³"), "^3"), (re.compile(r"·"), "*"),
)
_BARE_A = re.compile(r"(?<![A-Za-z_0-9])A(?![A-Za-z_0-9])")
_ALLOWED = re.compile(r"[\w\s.*/^()+\-%°·Å²³⁻¹µΩ]*")


def _preprocess(text: str) -> str:
    for pattern, replacement in _REWRITES:
        text = pattern.sub(replacement, text)
    return text


@lru_cache(maxsize=1)
def unit_registry() -> pint.UnitRegistry:
    """The process-wide pint registry: ``atom`` a dimensionless count, table spellings preprocessed."""
    ureg = pint.UnitRegistry(preprocessors=[_preprocess])
    ureg.define("atom = 1 = atoms")
    return ureg


def normalise_unit(unit: str) -> str:
    """Unit text with the non-pint spellings rewritten (``Å`` → ``angstrom``, ``²`` → ``^2``; whole words only)."""
    return _preprocess(unit.strip())


def parse_unit(unit: str, *, expected: str | pint.Unit | None = None) -> pint.Unit:
    """Parse a unit string such as ``"eV/atom"``, ``"J/m²"``, ``"eV/Å^2"`` or ``"GPa"``.

    Parameters
    ----------
    unit:
        The unit text.
    expected:
        The unit the value will be converted to; only used to decide what a bare ``A`` means
        (ångström if that gives ``expected``'s dimension, ampere if that does).

    Raises
    ------
    ValueError
        One line naming ``unit`` and why: characters no unit has, not a unit (pint's reason,
        e.g. division by zero), or an ambiguous bare ``A``.
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


def _parse(unit: str, text: str) -> pint.Unit:
    try:
        return unit_registry().Unit(text)
    except Exception as exc:  # noqa: BLE001 - pint raises many kinds (ZeroDivisionError for "1/0")
        reason = str(exc).splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ValueError(f"unknown unit {unit!r}: {reason}") from None


def _parse_bare_a(unit: str, text: str, expected: str | pint.Unit | None) -> pint.Unit:
    ask = "write 'Å' or 'angstrom' for ångström, 'ampere' for a current"
    if expected is None:
        raise ValueError(f"unit {unit!r}: a bare 'A' is ambiguous (ampere or ångström); {ask}")
    target = expected if isinstance(expected, pint.Unit) else _parse(str(expected), str(expected))
    as_length = _parse(unit, _BARE_A.sub("angstrom", text))
    if as_length.dimensionality == target.dimensionality:
        return as_length
    as_current = _parse(unit, text)
    if as_current.dimensionality == target.dimensionality:
        return as_current
    raise ValueError(f"unit {unit!r}: a bare 'A' gives the dimension of {target} neither as ångström nor "
                     f"as ampere; {ask}")


__all__ = ["normalise_unit", "parse_unit", "unit_registry"]
