"""The process-wide pint unit registry and unit parsing, shared by ingest and models.

``atom`` is defined as a dimensionless count, so ``eV`` and ``eV/atom`` are interchangeable,
and the spellings found in materials tables (``Å``, ``²``, ``³``, ``⁻¹``) are rewritten to
pint's before parsing.
"""

from __future__ import annotations

from functools import lru_cache

import pint

#: Spellings accepted in mappings and property definitions, normalised before pint parses them.
_ALIASES = {"Å": "angstrom", "Ang": "angstrom", "A^-2": "angstrom^-2", "²": "^2", "³": "^3", "⁻¹": "^-1"}


@lru_cache(maxsize=1)
def unit_registry() -> pint.UnitRegistry:
    """The process-wide pint registry, with ``atom`` as a dimensionless count."""
    ureg = pint.UnitRegistry()
    ureg.define("atom = 1 = atoms")
    return ureg


def normalise_unit(unit: str) -> str:
    """Unit text with common non-pint spellings (Å, ², ³) rewritten."""
    text = unit.strip()
    for old, new in _ALIASES.items():
        text = text.replace(old, new)
    return text


def parse_unit(unit: str) -> pint.Unit:
    """Parse a unit string such as ``"eV/atom"``, ``"J/m²"`` or ``"GPa"``.

    Raises
    ------
    ValueError
        If pint does not know the unit.
    """
    try:
        return unit_registry().Unit(normalise_unit(unit))
    except (pint.errors.UndefinedUnitError, pint.errors.DefinitionSyntaxError, AttributeError, TypeError, ValueError) as exc:
        raise ValueError(f"unknown unit {unit!r}") from exc


__all__ = ["normalise_unit", "parse_unit", "unit_registry"]
