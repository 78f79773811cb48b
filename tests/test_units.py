"""Units: pint preprocessors on whole words, the bare ``A``, and strings that are not units.

Conversion factors are checked against CODATA 2018 (pint's constants): 1 eV = 1.602176634e-19 J
(exact), 1 Å = 1e-10 m, so 1 eV/Å² = 16.02176634 J/m² and 1 eV/Å³ = 160.2176634 GPa.
"""

from __future__ import annotations

import pytest

from matstore.ingest.units import conversion_factor
from matstore.units import normalise_unit, parse_unit

EV_PER_A2_IN_J_PER_M2 = 16.02176634
EV_PER_A3_IN_GPA = 160.2176634


@pytest.mark.parametrize(("unit", "target", "factor"), [
    ("eV/Å^2", "J/m^2", EV_PER_A2_IN_J_PER_M2),
    ("eV/Å²", "J/m²", EV_PER_A2_IN_J_PER_M2),
    ("eV/A^2", "J/m^2", EV_PER_A2_IN_J_PER_M2),      # bare A where a length is demanded: Å
    ("meV/A^2", "mJ/m^2", EV_PER_A2_IN_J_PER_M2),
    ("eV/A^3", "GPa", EV_PER_A3_IN_GPA),
    ("eV/Ang^2", "J/m^2", EV_PER_A2_IN_J_PER_M2),
    ("Angstrom", "angstrom", 1.0),                   # not "angstromstrom"
    ("Angstroms", "nm", 0.1),
    ("Ångström", "pm", 100.0),
    ("A", "nm", 0.1),
    ("A", "mA", 1000.0),                             # a current is expected: ampere
    ("eV·Å⁻²", "J/m^2", EV_PER_A2_IN_J_PER_M2),
    ("eV/atom", "eV", 1.0),
])
def test_conversion_factors(unit, target, factor):
    assert conversion_factor(unit, target) == pytest.approx(factor, rel=1e-12)


def test_rewrites_are_word_bounded():
    assert normalise_unit("Angstrom") == "angstrom"
    assert normalise_unit("angstrom") == "angstrom"
    assert normalise_unit("Ampere") == "Ampere"
    assert normalise_unit("mAng") == "mAng"  # not a whole word: left for pint to refuse


@pytest.mark.parametrize(("unit", "target", "reason"), [
    ("eV/A^2", None, "ambiguous"),
    ("A", "J", "neither as ångström nor as ampere"),
    ("1/0", "J", "division by zero"),
    ("__import__('os').system('x')", "J", "characters no unit has"),
    ("eV; DROP TABLE material", "J", "characters no unit has"),
    ("", "J", "empty"),
    ("parsec^^", "J", "unknown unit"),
])
def test_not_a_unit_is_one_line_with_a_reason(unit, target, reason):
    with pytest.raises(ValueError) as info:
        conversion_factor(unit, target) if target else parse_unit(unit)
    message = str(info.value)
    assert reason in message and "\n" not in message and repr(unit) in message
