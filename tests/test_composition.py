"""One material key per composition, and the solid-solution composition descriptors."""

from __future__ import annotations

import math
import re

import pytest
from sqlalchemy import text
from sqlmodel import Session

from matstore import crud
from matstore.composition import DESCRIPTORS, FormulaError, composition_descriptor, parse_formula

_ONE = re.compile(r"(?<=[A-Za-z])1(?![0-9.])")


def _key_before(formula: str) -> str:
    """The material key as matstore made it before one key per composition (pymatgen's reduced formula)."""
    from pymatgen.core import Composition

    return _ONE.sub("", "".join(Composition(formula).reduced_composition.formula.split()))


@pytest.mark.parametrize(("key", "aliases"), [
    ("Fe7Ni3", ["Fe70Ni30", "Fe0.7Ni0.3", "Ni0.3Fe0.7", "Fe7Ni3", "Fe14Ni6"]),
    ("LaCeP2O8", ["La0.5Ce0.5PO4", "LaCeP2O8", "La2Ce2P4O16", "Ce0.5La0.5PO4"]),
    ("LaNd3P4O16", ["La0.25Nd0.75PO4", "LaNd3(PO4)4"]),
    ("Cu", ["Cu", "Cu2", "Cu0.5"]),
    ("FeCu7Ni2", ["Fe0.1Ni0.2Cu0.7", "Fe10Ni20Cu70"]),
    ("H2O2", ["HO", "H0.5O0.5", "H2O2"]),
])
def test_spellings_of_one_composition_have_one_key(key, aliases):
    assert {parse_formula(a).formula for a in aliases} == {key}
    assert parse_formula(key).formula == key  # a key is its own key


@pytest.mark.parametrize("formula", ["Cu", "Fe2O3", "MoS2", "Mo2S4", "NiAl", "Cu3Au", "CePO4", "Li4Fe4P4O16", "O2", "O",
                                     "HO", "Cu(OH)2", "Fe70Ni30", "LaCeP2O8", "SrTiO3", "Al2O3", "Ni3Al", "CuZn"])
def test_whole_number_formulas_keep_the_key_they_had(formula):
    assert parse_formula(formula).formula == _key_before(formula)


def test_composition_amounts_and_resolution():
    assert parse_formula("La0.5Ce0.5PO4").composition == {"La": 1.0, "Ce": 1.0, "P": 2.0, "O": 8.0}
    assert parse_formula("Fe0.333Ni0.667").formula == "Fe333Ni667"  # exact decimals: 0.333 is not 1/3
    with pytest.raises(FormulaError, match=r"^amount 1e-07 of Au in 'CuAu0.0000001' is below 1/1000000, the resolution"):
        parse_formula("CuAu0.0000001")


# La0.5Ce0.5PO4, by hand, with pymatgen's data (the element data the code uses):
# metallic radii (Å) La 1.87, Ce 1.818; P and O have none.  Shannon average ionic radii (Å):
# La 1.172 (3+), Ce (1.15 + 1.01)/2 = 1.08.  Pauling χ: La 1.10, Ce 1.12, P 2.19, O 3.44.
# All elements: c = (1, 1, 2, 8)/12.
_CHI_MEAN = (1.10 + 1.12 + 2 * 2.19 + 8 * 3.44) / 12  # 2.843333
_CHI_ALL = math.sqrt(((1.10 - _CHI_MEAN) ** 2 + (1.12 - _CHI_MEAN) ** 2 + 2 * (2.19 - _CHI_MEAN) ** 2
                      + 8 * (3.44 - _CHI_MEAN) ** 2) / 12)  # 0.899577
# Metal (cation) site: La and Ce, c = 1/2 each; r̄ = 1.126 Å, δ = 0.046/1.126; χ̄ = 1.11, Δχ = 0.01.


@pytest.mark.parametrize(("name", "expected"), [
    ("electronegativity_mismatch", _CHI_ALL),
    ("cation_size_mismatch", 0.046 / 1.126),
    ("cation_electronegativity_mismatch", 0.01),
    ("electronegativity_difference", 3.44 - 1.10),  # max − min over all elements, as before
    ("mean_electronegativity", _CHI_MEAN),
    ("mean_ionic_radius", (1.172 + 1.08 + 2 * 0.55 + 8 * 1.26) / 12),
    ("n_elements", 4.0),
])
def test_solid_solution_descriptors_by_hand(name, expected):
    c = parse_formula("La0.5Ce0.5PO4").composition
    assert composition_descriptor(name, c) == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx({"electronegativity_mismatch": 0.899577, "cation_size_mismatch": 0.0408526,
                                      "cation_electronegativity_mismatch": 0.01}.get(name, expected), rel=1e-5)


def test_size_mismatch_of_an_alloy_and_undefined_cases():
    # Fe0.7Ni0.3 with metallic radii Fe 1.26, Ni 1.24 Å: r̄ = 1.254, δ = sqrt(0.7·(0.006/1.254)² + 0.3·(0.014/1.254)²)
    delta = math.sqrt(0.7 * (0.006 / 1.254) ** 2 + 0.3 * (0.014 / 1.254) ** 2)
    assert composition_descriptor("atomic_size_mismatch", parse_formula("Fe70Ni30").composition) == pytest.approx(delta)
    assert delta == pytest.approx(0.0073087, rel=1e-4)
    assert composition_descriptor("atomic_size_mismatch", {"Cu": 1.0}) == 0.0
    assert math.isnan(composition_descriptor("atomic_size_mismatch", {"La": 1, "Ce": 1, "P": 2, "O": 8}))  # no radius of O
    assert math.isnan(composition_descriptor("cation_size_mismatch", {"Si": 1, "O": 2}))  # no metal
    assert set(DESCRIPTORS) >= {"atomic_size_mismatch", "electronegativity_mismatch", "cation_size_mismatch",
                                "cation_electronegativity_mismatch"}


def test_descriptors_are_in_the_vocabulary():
    from matstore.schema.vocabulary import PROPERTY_DEFINITIONS

    assert {d.name for d in PROPERTY_DEFINITIONS if d.scope == "composition"} == set(DESCRIPTORS)


# --- ingest --------------------------------------------------------------------------------

_MAPPING = ("material: {column: formula, prototype: unknown}\nmethod: {name: calorimetry (the paper), kind: experiment}\n"
            "columns:\n  dH_mix (kJ/mol): {definition: mixing_enthalpy, unit: kJ/mol}\n")


@pytest.fixture
def mixing(user_vocabulary_engine):
    """The test store with the user definition mixing_enthalpy (kJ/mol, bulk), removed afterwards."""
    engine = user_vocabulary_engine
    with Session(engine) as session:
        run = crud.start_job_run(engine=engine, kind="test", parameters={})
        crud.add_definition(session=session, name="mixing_enthalpy", unit="kJ/mol", scope="bulk", job_run_id=run)
        session.commit()
    return engine


def test_aliases_in_one_file_are_a_conflict_named_by_row(mixing, tmp_path):
    from matstore.ingest import errors as E
    from matstore.ingest.table import ingest_table

    (tmp_path / "mix.yaml").write_text(_MAPPING)
    table = tmp_path / "mix.csv"
    table.write_text("formula,dH_mix (kJ/mol)\nLaCeP2O8,0.5\nFe70Ni30,1.0\nFe0.7Ni0.3,2.0\n")
    with pytest.raises(E.DuplicateRowError, match=r"/mix\.csv, row 3, line 4, column 'dH_mix \(kJ/mol\)': conflicting values: "
                       r"mixing_enthalpy of Fe7Ni3 \(unknown\) by calorimetry \(the paper\) is 2 here but 1 in row 2 \(line 3\)"):
        ingest_table(table, tmp_path / "mix.yaml", engine=mixing)
    with mixing.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM bulk_property")).scalar() == 0


def test_aliases_in_two_files_are_one_material(mixing, tmp_path):
    from matstore.ingest.table import ingest_table
    from matstore.models.dataset import build_training_set

    (tmp_path / "mix.yaml").write_text(_MAPPING)
    (tmp_path / "other_lab.yaml").write_text(_MAPPING.replace("calorimetry (the paper)", "calorimetry (other lab)"))
    (tmp_path / "a.csv").write_text("formula,dH_mix (kJ/mol)\nLaCeP2O8,0.5\nFe70Ni30,1.0\n")
    (tmp_path / "b.csv").write_text("formula,dH_mix (kJ/mol)\nLa0.5Ce0.5PO4,0.1047\nFe0.7Ni0.3,1.1\n")
    ingest_table(tmp_path / "a.csv", tmp_path / "mix.yaml", engine=mixing)
    ingest_table(tmp_path / "b.csv", tmp_path / "other_lab.yaml", engine=mixing)
    with mixing.connect() as conn:
        rows = conn.execute(text("SELECT m.formula, count(*) FROM bulk_property p JOIN material m ON m.id = p.material_id "
                                 "GROUP BY m.formula ORDER BY m.formula")).all()
    assert [tuple(r) for r in rows] == [("Fe7Ni3", 2), ("LaCeP2O8", 2)]
    ts = build_training_set(mixing, target="mixing_enthalpy", features=["cation_electronegativity_mismatch"])
    assert sorted(ts.groups) == ["Fe7Ni3", "Fe7Ni3", "LaCeP2O8", "LaCeP2O8"]  # leave-one-material-out holds both out
    # La-Ce: 0.01; Fe0.7Ni0.3 (χ 1.83, 1.91): χ̄ = 1.854, sqrt(0.7·0.024² + 0.3·0.056²) = 0.0366606
    expected = [0.01, 0.01, 0.0366606, 0.0366606]
    assert sorted(ts.table["cation_electronegativity_mismatch"]) == pytest.approx(expected, rel=1e-5)
