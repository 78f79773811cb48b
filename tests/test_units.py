"""Units: pint preprocessors on whole words, the bare ``A``, and strings that are not units.

Conversion factors are checked against CODATA 2018 (pint's constants): 1 eV = 1.602176634e-19 J
(exact), 1 Å = 1e-10 m, so 1 eV/Å² = 16.02176634 J/m² and 1 eV/Å³ = 160.2176634 GPa; N_A =
6.02214076e23 /mol (exact), so 1 eV·N_A = 96.48533212 kJ/mol (the Faraday constant 96485.33212
C/mol times 1 V) and 1 kJ/mol = 1/96.48533212 = 0.0103642697 eV/atom; 1 kcal = 4.184 kJ
(thermochemical); 1 Ha = 27.211386246 eV.
"""

from __future__ import annotations

import pytest

from matstore.ingest.table import ingest_table
from matstore.ingest.units import conversion_factor
from matstore.units import normalise_unit, parse_quantity, parse_unit

EV_PER_A2_IN_J_PER_M2 = 16.02176634
EV_PER_A3_IN_GPA = 160.2176634
KJ_PER_MOL_PER_EV = 96.48533212  # N_A · 1 eV in kJ/mol
HA_IN_EV = 27.211386246


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
    ("eV", "eV/atom", 1.0),
    ("meV/atom", "eV/atom", 1e-3),
    ("GPa", "GPa", 1.0),
    ("kbar", "GPa", 0.1),
    ("MPa", "GPa", 1e-3),
    ("N/m", "J/m^2", 1.0),
    ("angstrom", "angstrom", 1.0),
    ("1/K", "1/K", 1.0),
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


@pytest.mark.parametrize(("unit", "target", "factor"), [
    ("kJ/mol", "eV/atom", 1 / KJ_PER_MOL_PER_EV),            # 0.0103642697
    ("kJ mol-1", "eV/atom", 1 / KJ_PER_MOL_PER_EV),
    ("kJ/mol/N_A", "eV/atom", 1 / KJ_PER_MOL_PER_EV),        # the former workaround agrees
    ("kcal/mol", "eV/atom", 4.184 / KJ_PER_MOL_PER_EV),      # 0.0433641042
    ("J/mol", "eV/atom", 1e-3 / KJ_PER_MOL_PER_EV),
    ("kJ/mol", "eV", 1 / KJ_PER_MOL_PER_EV),
    ("eV/atom", "kJ/mol", KJ_PER_MOL_PER_EV),                # a definition per mole
    ("J m-2", "J/m^2", 1.0),
    ("mJ m-2", "J/m^2", 1e-3),
    ("eV/Å2", "J/m^2", EV_PER_A2_IN_J_PER_M2),
    ("eV Å-2", "J/m^2", EV_PER_A2_IN_J_PER_M2),
    ("eV/Å3", "GPa", EV_PER_A3_IN_GPA),
    ("Ha", "eV", HA_IN_EV),
    ("mHa", "meV", HA_IN_EV),
    ("Hartree/atom", "eV/atom", HA_IN_EV),
    ("a0", "bohr", 1.0),                                     # the bohr radius, not a^0
    ("cm-1", "1/m", 100.0),
    ("K-1", "1/K", 1.0),
    ("10^-6/K", "1/K", 1e-6),
    ("10⁻⁶ K⁻¹", "1/K", 1e-6),
    ("1e-3 J/m^2", "J/m^2", 1e-3),
    ("1E-3 J/m^2", "J/m^2", 1e-3),
])
def test_published_spellings(unit, target, factor):
    assert conversion_factor(unit, target) == pytest.approx(factor, rel=1e-9)


def test_exact_factors_of_the_issue():
    assert conversion_factor("kJ/mol", "eV/atom") == pytest.approx(0.0103642697, rel=1e-8)
    assert conversion_factor("kcal/mol", "eV/atom") == pytest.approx(0.0433641042, rel=1e-8)
    assert 336.734 * conversion_factor("kJ/mol", "eV/atom") == pytest.approx(3.49000, abs=5e-5)  # Cu
    assert conversion_factor("J m-2", "J/m²") == 1.0
    assert conversion_factor("eV/Å2", "J/m²") == pytest.approx(16.02176634, rel=1e-12)
    assert conversion_factor("Ha", "eV") == pytest.approx(27.211386246, rel=1e-9)
    assert conversion_factor("1e-3 J/m^2", "J/m²") == pytest.approx(0.001, rel=1e-15)


def test_spellings_normalise_to_pint_text():
    assert normalise_unit("J m-2") == "J m^-2"
    assert normalise_unit("eV/Å2") == "eV/angstrom^2"
    assert normalise_unit("10⁻⁶ K⁻¹") == "10^-6 K^-1"
    assert normalise_unit("Ha/a0") == "hartree/a0"       # a name ending in a digit is a name
    assert normalise_unit("1e-3 J/m^2") == "1e-3 J/m^2"  # a number's exponent is left alone
    assert normalise_unit("cmH2O") == "cmH2O"


def test_a_scale_is_a_quantity_not_a_unit():
    q = parse_quantity("1e-3 J/m^2")
    assert (q.magnitude, str(q.units)) == (0.001, "joule / meter ** 2")
    with pytest.raises(ValueError, match=r"^unit '1e-3 J/m\^2' has a numeric scale \(0.001\); give the unit alone$"):
        parse_unit("1e-3 J/m^2")


@pytest.mark.parametrize(("unit", "target", "message"), [
    ("J - 2", "J/m^2", "unknown unit 'J - 2': a '+' or '-' that does not start an exponent (m^-2, m-2, 1e-3)"),
    ("-1 eV", "eV", "unknown unit '-1 eV': a '+' or '-' that does not start an exponent (m^-2, m-2, 1e-3)"),
    ("0 eV", "eV", "unknown unit '0 eV': its scale 0 is not a positive number "
                   "(a sign flip is not a unit: use a derived column such as -CHE)"),
    ("parsec^^", "J", "unknown unit 'parsec^^': pint cannot read it as a unit expression"),
    ("J m-2x", "J/m^2", "unknown unit 'J m-2x': a '+' or '-' that does not start an exponent (m^-2, m-2, 1e-3)"),
    ("J furlongz-2", "J/m^2", "unknown unit 'J furlongz-2': 'furlongz' is not defined in the unit registry"),
    ("kJ/mol", "GPa", "unit 'kJ/mol' ([mass] * [length] ** 2 / [time] ** 2 / [substance]) cannot be converted "
                      "to 'GPa' ([mass] / [length] / [time] ** 2)"),
    ("kJ/mol^2", "eV/atom", "unit 'kJ/mol^2' ([mass] * [length] ** 2 / [time] ** 2 / [substance] ** 2) cannot be "
                            "converted to 'eV/atom' ([mass] * [length] ** 2 / [time] ** 2)"),
])
def test_unreadable_units_give_one_line_without_python_internals(unit, target, message):
    with pytest.raises(ValueError) as info:
        conversion_factor(unit, target)
    assert str(info.value) == message


def test_molar_column_is_stored_per_atom(engine, tmp_path):
    """A published ``Ec (kJ/mol)`` column (Kittel's Cu, Al) goes through the mapping to eV/atom."""
    from sqlalchemy import text

    table = tmp_path / "cohesive.csv"
    table.write_text("element,method,Ec (kJ/mol),gamma (J m-2)\nCu,expt,336.734,1.79\nAl,expt,327.0,1.14\n")
    mapping = {"material": {"column": "element", "prototype": "fcc"},
               "method": {"column": "method", "kind": "experiment"},
               "columns": {"Ec (kJ/mol)": {"definition": "cohesive_energy", "unit": "kJ/mol"},
                           "gamma (J m-2)": {"definition": "surface_energy_111", "unit": "J m-2"}}}
    report = ingest_table(table, mapping, engine=engine)
    assert report.bulk_inserted == 4
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT m.formula, d.name, b.value, b.details->>'unit' FROM bulk_property b "
            "JOIN property_definition d ON d.id = b.definition_id JOIN material m ON m.id = b.material_id "
            "ORDER BY d.name, m.formula")).all()
    assert [(r[0], r[1], r[3]) for r in rows] == [("Al", "cohesive_energy", "kJ/mol"), ("Cu", "cohesive_energy", "kJ/mol"),
                                                  ("Al", "surface_energy_111", "J m-2"), ("Cu", "surface_energy_111", "J m-2")]
    assert [r[2] for r in rows] == pytest.approx([327.0 / KJ_PER_MOL_PER_EV, 336.734 / KJ_PER_MOL_PER_EV, 1.14, 1.79],
                                                 rel=1e-10)  # KJ_PER_MOL_PER_EV has 10 digits
    assert rows[1][2] == pytest.approx(3.49000, abs=5e-5)


def test_unreadable_unit_in_a_mapping_names_the_column(engine, tmp_path):
    from matstore.ingest.errors import UnitError

    table = tmp_path / "t.csv"
    table.write_text("element,method,Ec\nCu,expt,3.49\n")
    mapping = {"material": {"column": "element", "prototype": "fcc"}, "method": {"column": "method", "kind": "experiment"},
               "columns": {"Ec": {"definition": "cohesive_energy", "unit": "eV - 1"}}}
    with pytest.raises(UnitError) as info:
        ingest_table(table, mapping, engine=engine)
    assert str(info.value).endswith(
        "column 'Ec': columns.Ec: unknown unit 'eV - 1': a '+' or '-' that does not start an exponent "
        "(m^-2, m-2, 1e-3) (definition cohesive_energy is in eV/atom)")
