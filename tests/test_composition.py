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
# metallic radii (Å) La 1.87, Ce 1.818; P and O have none.  Shannon average ionic radii (Å), used by
# mean_ionic_radius: La 1.172 (3+), Ce (1.15 + 1.01)/2 = 1.08.  Pauling χ: La 1.10, Ce 1.12, P 2.19, O 3.44.
# All elements: c = (1, 1, 2, 8)/12.
_CHI_MEAN = (1.10 + 1.12 + 2 * 2.19 + 8 * 3.44) / 12  # 2.843333
_CHI_ALL = math.sqrt(((1.10 - _CHI_MEAN) ** 2 + (1.12 - _CHI_MEAN) ** 2 + 2 * (2.19 - _CHI_MEAN) ** 2
                      + 8 * (3.44 - _CHI_MEAN) ** 2) / 12)  # 0.899577
# Metal (cation) site: La and Ce, c = 1/2 each; charge balance La³⁺ Ce³⁺ P⁵⁺ O²⁻, pymatgen
# Species(·, 3).ionic_radius: La³⁺ 1.172, Ce³⁺ 1.15 Å (Shannon CN 6 crystal radii): r̄ = 1.161 Å,
# δ_M = 0.011/1.161 = 0.0094746 (before: the Ce average 1.08 gave 0.046/1.126 = 0.0408526); χ̄ = 1.11, Δχ = 0.01.


@pytest.mark.parametrize(("name", "expected"), [
    ("electronegativity_mismatch", _CHI_ALL),
    ("cation_size_mismatch", 0.011 / 1.161),
    ("cation_electronegativity_mismatch", 0.01),
    ("electronegativity_difference", 3.44 - 1.10),  # max − min over all elements, as before
    ("mean_electronegativity", _CHI_MEAN),
    ("mean_ionic_radius", (1.172 + 1.08 + 2 * 0.55 + 8 * 1.26) / 12),  # unchanged: averaged radii
    ("n_elements", 4.0),
])
def test_solid_solution_descriptors_by_hand(name, expected):
    c = parse_formula("La0.5Ce0.5PO4").composition
    assert composition_descriptor(name, c) == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx({"electronegativity_mismatch": 0.899577, "cation_size_mismatch": 0.0094746,
                                      "cation_electronegativity_mismatch": 0.01}.get(name, expected), rel=1e-5)


# Shannon six-coordinate crystal radii of Ln³⁺ as pymatgen tabulates them (Species(Ln, 3).ionic_radius, Å);
# R. D. Shannon, Acta Cryst. A 32, 751 (1976) (Gd³⁺: Shannon 1.078, pymatgen 1.075).
_LN3 = {"La": 1.172, "Ce": 1.15, "Pr": 1.13, "Nd": 1.123, "Sm": 1.098, "Eu": 1.087, "Gd": 1.075}


def test_cation_size_mismatch_uses_the_charge_balanced_radius():
    from matstore.composition import cation_radii

    # La0.5Gd0.5PO4: r̄ = (1.172 + 1.075)/2 = 1.1235, δ_M = sqrt(½(0.0485/1.1235)² + ½(0.0485/1.1235)²) = 0.0485/1.1235
    c = parse_formula("La0.5Gd0.5PO4").composition
    assert composition_descriptor("cation_size_mismatch", c) == pytest.approx(0.0485 / 1.1235, rel=1e-9)
    assert 0.0485 / 1.1235 == pytest.approx(0.0431687, rel=1e-6)
    # La0.25Gd0.75PO4: r̄ = 0.25·1.172 + 0.75·1.075 = 1.09925, δ_M = sqrt(0.25·0.75)·0.097/1.09925 = 0.0382099
    c = parse_formula("La0.25Gd0.75PO4").composition
    assert composition_descriptor("cation_size_mismatch", c) == pytest.approx(math.sqrt(0.1875) * 0.097 / 1.09925, rel=1e-9)
    assert {el: (r.radius, r.oxidation_state, r.basis) for el, r in cation_radii(c).items()} == {
        "La": (1.172, 3.0, "La3+ (Shannon)"), "Gd": (1.075, 3.0, "Gd3+ (Shannon)")}
    # the same composition however written; the radius pymatgen reads for each species
    from pymatgen.core import Species

    assert {ln: float(Species(ln, 3).ionic_radius) for ln in _LN3} == _LN3


def test_cation_size_mismatch_follows_the_lanthanide_contraction():
    """δ_M of La0.5Ln0.5PO4 grows along La, Ce, Pr, Nd, Sm, Eu, Gd, as |r(La³⁺) − r(Ln³⁺)| does.

    With radii averaged over oxidation states (Ce 1.08, Nd 1.2765, Sm 1.229, Eu 1.1985) it did not:
    0.0409, 0.0502, 0.0427, 0.0237, 0.0112, 0.0432.
    """
    deltas = [composition_descriptor("cation_size_mismatch", parse_formula(f"La0.5{ln}0.5PO4").composition)
              for ln in list(_LN3)[1:]]
    expected = [abs(_LN3["La"] - r) / (_LN3["La"] + r) for r in list(_LN3.values())[1:]]  # δ = |Δr|/2 / r̄
    assert deltas == pytest.approx(expected, rel=1e-9)
    assert deltas == sorted(deltas) and len(set(deltas)) == 6
    assert deltas == pytest.approx([0.0094746, 0.0182450, 0.0213508, 0.0325990, 0.0376270, 0.0431687], rel=1e-5)


def test_cation_radii_fall_back_to_the_average_and_say_so(caplog):
    import logging

    from matstore.composition import cation_radii, cation_radius_note, oxidation_states

    # Fe7Ni3, a metallic alloy: no charge-balanced oxidation states, so each metal's Shannon radius averaged
    # over its oxidation states (pymatgen Element.average_ionic_radius): Fe (0.92 + 0.785)/2 = 0.8525, Ni 0.74 Å.
    # r̄ = 0.7·0.8525 + 0.3·0.74 = 0.81875, δ_M = sqrt(0.7·0.3)·0.1125/0.81875 = 0.0629667 (as before the change)
    c = parse_formula("Fe7Ni3").composition
    with caplog.at_level(logging.INFO, logger="matstore.composition"):
        assert composition_descriptor("cation_size_mismatch", c) == pytest.approx(math.sqrt(0.21) * 0.1125 / 0.81875)
    reason = "an alloy: no element has a negative oxidation state, so none balance"
    assert oxidation_states(c) == (None, reason)
    radii = cation_radii(c)
    assert {el: (r.radius, r.oxidation_state) for el, r in radii.items()} == {"Fe": (0.8525, None), "Ni": (0.74, None)}
    assert radii["Fe"].basis == f"average over oxidation states: {reason}"
    assert cation_radius_note(radii) == f"averaged ionic radii of Fe, Ni ({reason})"
    assert f"cation_size_mismatch of Fe7Ni3: averaged ionic radii of Fe, Ni ({reason})" in caplog.messages
    # MoS2: Mo⁴⁺ S²⁻ (pymatgen's first guess), Mo⁴⁺ 0.79 Å; one metal: δ_M = 0, no note
    assert oxidation_states(parse_formula("MoS2").composition) == ({"Mo": 4.0, "S": -2.0}, "")
    radii = cation_radii(parse_formula("MoS2").composition)
    assert radii["Mo"] == (0.79, 4.0, "Mo4+ (Shannon)") and cation_radius_note(radii) is None
    assert composition_descriptor("cation_size_mismatch", parse_formula("MoS2").composition) == 0.0
    # mixed valence from pymatgen's guess: Fe3O4, Fe 8/3 → Fe²⁺ 0.92 and 2 Fe³⁺ 0.785: (0.92 + 2·0.785)/3 = 0.83 Å;
    # Pb3O4, Pb 8/3 between Pb²⁺ 1.33 and Pb⁴⁺ 0.915 (pymatgen's states 2, 4): (2·1.33 + 0.915)/3
    assert cation_radii(parse_formula("Fe3O4").composition)["Fe"].radius == pytest.approx((0.92 + 2 * 0.785) / 3)
    assert cation_radii(parse_formula("Pb3O4").composition)["Pb"].radius == pytest.approx((2 * 1.33 + 0.915) / 3)
    # one element: no oxidation state; δ_M = 0 whatever the radius
    assert oxidation_states({"Cu": 1.0}) == (None, "one element")
    assert composition_descriptor("cation_size_mismatch", {"Cu": 1.0}) == 0.0


@pytest.mark.parametrize("formula", ["LaCeP2O8", "LaGd3P4O16", "MoS2", "SrTiO3", "LiFePO4", "Fe2O3", "CeO2", "Fe3O4",
                                     "LiMn2O4", "Cu(OH)2", "Ca0.5Sr0.5TiO3"])
def test_oxidation_states_are_pymatgens_first_guess(formula):
    from pymatgen.core import Composition

    from matstore.composition import oxidation_states

    c = parse_formula(formula).composition
    assert oxidation_states(c)[0] == pytest.approx(Composition(c).oxi_state_guesses()[0])


def test_large_solid_solutions_do_not_ask_pymatgens_guess(monkeypatch):
    """La0.001Gd0.999PO4 is LaGd999P1000O4000 (6000 atoms): pymatgen's guess would not finish; one state per element does."""
    from pymatgen.core import Composition

    from matstore.composition import oxidation_states

    oxidation_states({"Na": 1, "Cl": 1})  # pymatgen loads its ICSD statistics on its first guess: before the patch

    def refuse(*args, **kwargs):
        raise AssertionError("oxi_state_guesses called")

    monkeypatch.setattr(Composition, "oxi_state_guesses", refuse)
    c = parse_formula("La0.001Gd0.999PO4").composition
    assert sum(c.values()) == 6000
    expected = math.sqrt(0.001 * 0.999) * 0.097 / (0.001 * 1.172 + 0.999 * 1.075)  # 0.0028517
    assert composition_descriptor("cation_size_mismatch", c) == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(0.0028517, rel=1e-4)


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


def test_fit_names_the_materials_whose_cation_size_mismatch_is_a_fallback(mixing, tmp_path):
    """δ_M of an alloy uses averaged ionic radii (no charge balance): the training set, the fit's
    outcome and its job-run summary name that material; the orthophosphates need no note."""
    from matstore.ingest.table import ingest_table
    from matstore.models.dataset import build_training_set
    from matstore.models.service import fit_model
    from matstore.models.spec import FitSpec

    (tmp_path / "mix.yaml").write_text(_MAPPING)
    rows = ["La0.5Ce0.5PO4,0.10", "La0.5Nd0.5PO4,0.75", "La0.5Gd0.5PO4,2.9", "Ce0.5Gd0.5PO4,1.6",
            "La0.5Pr0.5PO4,0.35", "Fe0.7Ni0.3,4.0"]
    (tmp_path / "mix.csv").write_text("formula,dH_mix (kJ/mol)\n" + "\n".join(rows) + "\n")
    ingest_table(tmp_path / "mix.csv", tmp_path / "mix.yaml", engine=mixing)
    reason = "an alloy: no element has a negative oxidation state, so none balance"
    note = f"Fe7Ni3: cation_size_mismatch uses averaged ionic radii of Fe, Ni ({reason})"
    assert build_training_set(mixing, target="mixing_enthalpy", features=["cation_size_mismatch"]).descriptor_notes == [note]
    assert build_training_set(mixing, target="mixing_enthalpy",
                              features=["cation_electronegativity_mismatch"]).descriptor_notes == []

    spec = FitSpec(name="dh_delta", target="mixing_enthalpy", features=["cation_size_mismatch"], engine="sparse",
                   time_budget=20)
    outcome = fit_model(mixing, spec)
    assert outcome.descriptor_notes == (note,)
    with mixing.connect() as conn:
        summary = conn.execute(text("SELECT summary FROM job_run WHERE kind = 'fit' ORDER BY id DESC LIMIT 1")).scalar()
    assert summary["descriptor_notes"] == [note]
