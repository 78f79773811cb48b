"""Units (pint) and the plausibility bounds of every property definition.

All conversions of ingested values go through :func:`convert`, which converts a column of
values from the unit a table uses to the canonical unit of a property definition (see
:mod:`matstore.schema.vocabulary`).  ``eV/Å²`` → ``J/m²`` multiplies by 16.021766...;
``eV`` and ``eV/atom`` are interchangeable (``atom`` is a dimensionless count here), and a
molar unit converts per particle: ``kJ/mol`` → ``eV/atom`` multiplies by 0.0103642697 (1/N_A,
see :func:`matstore.units.convert_quantity`).  Published spellings (``J m-2``, ``eV/Å2``,
``Ha``, ``10^-6/K``, ``1e-3 J/m^2``) are read as :mod:`matstore.units` describes.

:data:`PLAUSIBLE_RANGES` is the one place that says which values are physically
impossible or implausible for each definition, in canonical units.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import pint

from matstore.units import (
    convert_quantity,
    normalise_unit,
    parse_quantity,
    parse_unit,
    unit_registry,
)


def conversion_factor(from_unit: str, to_unit: str) -> float:
    """Multiplicative factor from ``from_unit`` to ``to_unit`` (e.g. eV/Å² → J/m²: 16.0217663).

    A leading number in ``from_unit`` is a scale (``1e-3 J/m^2`` → ``J/m^2``: 0.001). A molar
    unit converts per particle and back (``kJ/mol`` → ``eV/atom``: 0.0103642697, i.e. 1/N_A
    with N_A the Avogadro constant, CODATA 2018; see :func:`matstore.units.convert_quantity`).
    A bare ``A`` in ``from_unit`` is read as ångström when that gives ``to_unit``'s dimension
    (``eV/A^2`` → ``J/m²``), see :func:`matstore.units.parse_quantity`.

    Raises
    ------
    ValueError
        One line naming the unit: it is unknown or not a unit at all (``1/0``,
        ``__import__('os')``, ``J - 2``), a bare ``A`` is ambiguous, the dimensions differ, or
        the conversion has an offset (temperatures in °C), which a factor cannot express.
    """
    ureg = unit_registry()
    dst = parse_quantity(to_unit)
    src = parse_quantity(from_unit, expected=dst.units)  # decides what a bare "A" means
    try:
        factor = convert_quantity(src, dst.units).magnitude / dst.magnitude
        offset = convert_quantity(ureg.Quantity(0.0, src.units), dst.units).magnitude
    except (pint.errors.DimensionalityError, pint.errors.OffsetUnitCalculusError) as exc:
        raise ValueError(
            f"unit {from_unit!r} ({src.dimensionality}) cannot be converted to "
            f"{to_unit!r} ({dst.dimensionality})"
        ) from exc
    if offset != 0.0:
        raise ValueError(f"conversion {from_unit!r} → {to_unit!r} has an offset; give the column in an absolute unit")
    return float(factor)


def convert(values: np.ndarray | float, from_unit: str, to_unit: str) -> np.ndarray:
    """Convert ``values`` (any shape) from ``from_unit`` to ``to_unit``.

    Raises
    ------
    ValueError
        See :func:`conversion_factor`.
    """
    return np.asarray(values, dtype=float) * conversion_factor(from_unit, to_unit)


class Bounds(NamedTuple):
    """Open/closed plausibility interval of one definition, in its canonical unit.

    A value passes when ``low < v`` (``low <= v`` if ``low_inclusive``) and ``v <= high``.
    """

    low: float
    high: float
    low_inclusive: bool = False
    why: str = ""


#: Plausibility bounds per property definition (canonical units).  Values outside are
#: physically impossible (negative elastic constants, lattice constants, surface energies)
#: or far outside anything measured for a solid (cohesive energy > 20 eV/atom, C44 > 5000 GPa).
PLAUSIBLE_RANGES: dict[str, Bounds] = {
    "lattice_constant": Bounds(0.5, 20.0, why="a lattice constant is a positive length of a few Å"),
    "cohesive_energy": Bounds(0.0, 20.0, why="cohesive energies of solids lie between 0 and ~9 eV/atom"),
    "c11": Bounds(0.0, 5000.0, why="C11 > 0 for a stable crystal; diamond's is ~1080 GPa"),
    "c12": Bounds(-1000.0, 5000.0, low_inclusive=True, why="|C12| of solids is below a few hundred GPa"),
    "c44": Bounds(0.0, 5000.0, why="C44 > 0 for a stable crystal; diamond's is ~580 GPa"),
    "bulk_modulus": Bounds(0.0, 5000.0, why="B > 0 for a stable crystal; diamond's is ~440 GPa"),
    "shear_modulus_prime": Bounds(0.0, 5000.0, why="C' > 0 for a stable cubic crystal"),
    "shear_modulus_c44": Bounds(0.0, 5000.0, why="C44 > 0 for a stable crystal"),
    "zener_ratio": Bounds(0.0, 100.0, why="the anisotropy ratio is positive and of order 1"),
    "stacking_fault_energy": Bounds(-2.0, 5.0, low_inclusive=True, why="|γ_isf| is below ~1 J/m² (negative: fcc not the ground state)"),
    "extrinsic_stacking_fault_energy": Bounds(-2.0, 5.0, low_inclusive=True, why="|γ_esf| is below ~1 J/m²"),
    "unstable_stacking_fault_energy": Bounds(0.0, 10.0, why="γ_usf is a positive barrier below a few J/m²"),
    "unstable_twinning_energy": Bounds(0.0, 10.0, why="γ_utf is a positive barrier below a few J/m²"),
    "vacancy_formation_energy": Bounds(0.0, 15.0, why="vacancy formation energies are positive, a few eV"),
    "vacancy_migration_energy": Bounds(0.0, 10.0, why="migration barriers are positive, below a few eV"),
    "thermal_expansion_coefficient": Bounds(-1e-4, 1e-3, low_inclusive=True, why="|α| of solids is below ~1e-4 /K"),
    "surface_energy_100": Bounds(0.0, 10.0, why="surface energies are positive, below ~5 J/m²"),
    "surface_energy_110": Bounds(0.0, 10.0, why="surface energies are positive, below ~5 J/m²"),
    "surface_energy_111": Bounds(0.0, 10.0, why="surface energies are positive, below ~5 J/m²"),
    "surface_energy_121": Bounds(0.0, 10.0, why="surface energies are positive, below ~5 J/m²"),
    "strength": Bounds(0.0, 1e5, why="strengths are positive, below ~100 GPa"),
    "surface_energy": Bounds(0.0, 10.0, why="surface energies are positive, below ~5 J/m²"),
    "surface_stress": Bounds(-20.0, 20.0, low_inclusive=True, why="|τ| of metal surfaces is below ~10 N/m"),
    "surface_stress_11": Bounds(-20.0, 20.0, low_inclusive=True, why="|τ| of metal surfaces is below ~10 N/m"),
    "surface_stress_22": Bounds(-20.0, 20.0, low_inclusive=True, why="|τ| of metal surfaces is below ~10 N/m"),
    "surface_stress_12": Bounds(-20.0, 20.0, low_inclusive=True, why="|τ| of metal surfaces is below ~10 N/m"),
    "surface_stiffness": Bounds(-500.0, 500.0, low_inclusive=True, why="|S| of metal surfaces is below ~100 N/m"),
    "surface_stiffness_11": Bounds(-500.0, 500.0, low_inclusive=True, why="|S| of metal surfaces is below ~100 N/m"),
    "surface_stiffness_22": Bounds(-500.0, 500.0, low_inclusive=True, why="|S| of metal surfaces is below ~100 N/m"),
    "surface_stiffness_12": Bounds(-500.0, 500.0, low_inclusive=True, why="|S| of metal surfaces is below ~100 N/m"),
    "surface_stiffness_66": Bounds(-500.0, 500.0, low_inclusive=True, why="|S| of metal surfaces is below ~100 N/m"),
}


#: Definitions whose values are counts (whole numbers ≥ 0) whatever their unit: the number of
#: nearest-neighbour vacancy pairs of a cluster (added by ``ingest compute --task
#: vacancy-clusters``, unit ``dimensionless``, and then mappable from a table).  A definition
#: whose canonical unit is pint's ``count`` (``matstore vocab add n_layers --unit count``) is one too.
COUNT_DEFINITIONS = frozenset({"n_nearest_neighbour_pairs", "n_elements"})
#: Canonical units that make a definition a count.
COUNT_UNITS = frozenset({"count"})


@lru_cache(maxsize=256)
def is_count(definition: str, unit: str) -> bool:
    """Whether values of ``definition`` (canonical ``unit``) are counts, which must be whole numbers ≥ 0.

    True for the names in :data:`COUNT_DEFINITIONS` and for a canonical unit in
    :data:`COUNT_UNITS` (pint's dimensionless ``count``).
    """
    return definition in COUNT_DEFINITIONS or normalise_unit(unit).strip() in COUNT_UNITS


def check_value(definition: str, value: float, unit: str) -> str | None:
    """Why ``value`` (canonical ``unit``) is invalid for ``definition``, or ``None`` if it passes.

    Returns a short text such as ``"implausible: cohesive_energy = 206.486 eV/atom > 20"``
    or ``"non-finite: nan"``; definitions without bounds only need finite values.
    """
    if not math.isfinite(value):
        return f"non-finite: {value}"
    bounds = PLAUSIBLE_RANGES.get(definition)
    if bounds is None:
        return None
    low_ok = value >= bounds.low if bounds.low_inclusive else value > bounds.low
    if not low_ok:
        op = "<" if bounds.low_inclusive else "<="
        return f"implausible: {definition} = {value:.6g} {unit} {op} {bounds.low:g} ({bounds.why})"
    if value > bounds.high:
        return f"implausible: {definition} = {value:.6g} {unit} > {bounds.high:g} ({bounds.why})"
    return None


def plausible(definition: str, values: np.ndarray) -> np.ndarray:
    """Which of ``values`` (canonical unit, shape (n,)) :func:`check_value` passes; bool, shape (n,).

    The same tests, column-wise: finite, above the low bound (inclusive or not) and at most
    the high bound of :data:`PLAUSIBLE_RANGES` (only finite for definitions without bounds).
    """
    values = np.asarray(values, dtype=float)
    ok = np.isfinite(values)
    bounds = PLAUSIBLE_RANGES.get(definition)
    if bounds is None:
        return ok
    low_ok = values >= bounds.low if bounds.low_inclusive else values > bounds.low
    return ok & low_ok & (values <= bounds.high)


__all__ = [
    "Bounds",
    "COUNT_DEFINITIONS",
    "COUNT_UNITS",
    "PLAUSIBLE_RANGES",
    "check_value",
    "conversion_factor",
    "convert",
    "is_count",
    "normalise_unit",
    "parse_quantity",
    "parse_unit",
    "plausible",
    "unit_registry",
]
