"""The general store: user vocabulary, per-configuration values, compositions (issue 12)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlmodel import Session

from matstore import crud
from matstore.composition import FormulaError, composition_descriptor, parse_formula


@pytest.fixture
def store(user_vocabulary_engine):
    """The test store; user definitions are removed afterwards."""
    return user_vocabulary_engine


def _scalar(engine, sql, **params):
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def test_formulas_reduce_with_pymatgen():
    assert parse_formula("Mo2S4") == ("MoS2", {"Mo": 1.0, "S": 2.0})
    assert parse_formula("La0.5Ce0.5PO4").formula == "LaCeP2O8"  # one key per composition (test_composition.py)
    assert parse_formula("NiAl").formula == "AlNi"
    for bad, reason in (("Qq", "unknown element 'Qq'"), ("", "blank"), ("cu", "not a chemical formula")):
        with pytest.raises(FormulaError, match=reason):
            parse_formula(bad)


def test_composition_descriptors_are_fraction_weighted_means():
    # Cu3Au: (3·63.546 + 196.96657)/4 u; Pauling χ(Cu) = 1.90, χ(Au) = 2.54.
    c = parse_formula("Cu3Au").composition
    assert composition_descriptor("mean_atomic_mass", c) == pytest.approx((3 * 63.546 + 196.966569) / 4, rel=1e-5)
    assert composition_descriptor("mean_electronegativity", c) == pytest.approx((3 * 1.90 + 2.54) / 4)
    assert composition_descriptor("electronegativity_difference", c) == pytest.approx(0.64)
    assert composition_descriptor("n_elements", c) == 2


def _run(engine) -> int:
    return crud.start_job_run(engine=engine, kind="test", parameters={})


def _cu_by(session, method: str, run: int, sha: str) -> tuple[int, int, int]:
    """(material, method, source) ids of fcc Cu by ``method``, with ``vv_distance_1`` (Å, per configuration) defined."""
    crud.add_definition(session=session, name="vv_distance_1", unit="angstrom", scope="configuration", job_run_id=run)
    material = crud.get_or_create_material(session=session, formula="Cu", prototype="fcc")
    method_id = crud.get_or_create_method(session=session, name=method, kind="interatomic_potential")
    return material, method_id, crud.claim_source(session=session, kind="computation", sha256=sha * 64)


def test_vocab_add_is_validated_recorded_and_idempotent(store):
    run = _run(store)
    with Session(store) as session:
        new_id, added = crud.add_definition(session=session, name="d_mos_1", unit="angstrom", scope="configuration",
                                            job_run_id=run, symbol="d1", description="Mo–S distance 1")
        assert added
        assert crud.add_definition(session=session, name="d_mos_1", unit="angstrom", scope="configuration", job_run_id=run) == (new_id, False)
        with pytest.raises(crud.VocabularyError, match="built-in definition"):
            crud.add_definition(session=session, name="c11", unit="MPa", scope="bulk", job_run_id=run)
        with pytest.raises(crud.VocabularyError, match="already defined"):
            crud.add_definition(session=session, name="d_mos_1", unit="nm", scope="configuration", job_run_id=run)
        for unit in ("1/0", "__import__('os')", "furlong_per_blip"):
            with pytest.raises(crud.VocabularyError, match="unit"):
                crud.add_definition(session=session, name="x_new", unit=unit, scope="bulk", job_run_id=run)
        with pytest.raises(crud.VocabularyError, match="snake_case"):
            crud.add_definition(session=session, name="Bad Name", unit="eV", scope="bulk", job_run_id=run)
        session.commit()
    assert _scalar(store, "SELECT job_run_id FROM vocabulary_addition va JOIN property_definition d ON d.id = va.definition_id WHERE d.name = 'd_mos_1'") == run
    message = crud.unknown_definition_message("formation_enrgy", ["formation_energy", "c11"])
    assert "did you mean formation_energy" in message and "matstore vocab add" in message


def test_per_configuration_values_with_units(store):
    run = _run(store)
    with Session(store) as session:
        material, method, source = _cu_by(session, "lammps:Cu_u3.eam", run, "a")
        stored = crud.add_configuration_values(
            session=session, material_id=material, method_id=method, source_id=source, job_run_id=run,
            values={"divacancy:1NN": {"formation_energy": 2.3, "vv_distance_1": 0.2553},
                    "divacancy:2NN": {"formation_energy": 2.5, "vv_distance_1": 0.3615}},
            units={"vv_distance_1": "nm"},
        )
        again = crud.add_configuration_values(
            session=session, material_id=material, method_id=method, source_id=source, job_run_id=run,
            values={"divacancy:1NN": {"formation_energy": 2.3}})
        with pytest.raises(crud.VocabularyError, match="surface definition"):
            crud.add_configuration_values(session=session, material_id=material, method_id=method, source_id=source,
                                          job_run_id=run, values={"x": {"surface_energy": 1.0}})
        session.commit()
    assert (stored, again) == (4, 0)
    with store.connect() as conn:
        rows = conn.execute(text("SELECT configuration_key, property, value, unit FROM property_values "
                                 "WHERE scope = 'configuration' ORDER BY 1, 2")).all()
    assert [(r.configuration_key, r.property) for r in rows] == [
        ("divacancy:1NN", "formation_energy"), ("divacancy:1NN", "vv_distance_1"),
        ("divacancy:2NN", "formation_energy"), ("divacancy:2NN", "vv_distance_1")]
    assert rows[1].value == pytest.approx(2.553) and rows[1].unit == "angstrom"


def test_material_stores_composition(store):
    with Session(store) as session:
        a = crud.get_or_create_material(session=session, formula="Mo2S4", prototype="2H")
        b = crud.get_or_create_material(session=session, formula="MoS2", prototype="2H")
        session.commit()
    assert a == b
    with store.connect() as conn:
        formula, composition = conn.execute(text("SELECT formula, composition FROM material WHERE id = :i"), {"i": a}).one()
    assert formula == "MoS2" and composition == {"Mo": 1.0, "S": 2.0}


def test_compositions_ingest_and_their_descriptors_are_features(store, tmp_path):
    """Solid-solution formulas (La1-xCexPO4-like) through a mapping; descriptors by name in a training set."""
    from matstore.ingest.table import ingest_table
    from matstore.models.dataset import DatasetError, build_training_set

    run = _run(store)
    with Session(store) as session:
        crud.add_definition(session=session, name="mixing_enthalpy", unit="kJ/mol", scope="bulk", job_run_id=run)
        session.commit()
    table = tmp_path / "monazite.csv"
    table.write_text("formula,dH\nLa0.5Ce0.5PO4,1.2\nLa0.25Nd0.75PO4,2100\nCePO4,0\n")
    mapping = tmp_path / "monazite.yaml"
    mapping.write_text("material: {column: formula, prototype: monazite}\nmethod: {name: calorimetry, kind: experiment}\n"
                       "columns:\n  dH: {definition: mixing_enthalpy, unit: J/mol}\n")
    report = ingest_table(table, mapping, engine=store)
    assert report.bulk_inserted == 3
    ts = build_training_set(store, target="mixing_enthalpy", features=["mean_atomic_mass", "n_elements"])
    row = ts.table.set_index("material").loc["LaCeP2O8"]  # La0.5Ce0.5PO4's key
    la, ce, p, o = 138.90547, 140.116, 30.973762, 15.9994  # pymatgen's atomic masses (u)
    assert row.mean_atomic_mass == pytest.approx((0.5 * la + 0.5 * ce + p + 4 * o) / 6, rel=1e-6)
    assert row.n_elements == 4 and row.target == pytest.approx(1.2e-3)  # J/mol → kJ/mol
    assert ts.units["mean_atomic_mass"] == "u" and set(ts.groups) == {"CePO4", "LaCeP2O8", "LaNd3P4O16"}
    with pytest.raises(DatasetError, match="did you mean mean_atomic_mass"):
        build_training_set(store, target="mixing_enthalpy", features=["mean_atomic_mas"])
    with pytest.raises(DatasetError, match="group_by 'colour'"):
        build_training_set(store, target="mixing_enthalpy", features=["n_elements"], group_by="colour")


def test_stored_inputs_join_configuration_material_and_composition(store):
    from matstore.models.dataset import stored_inputs

    run = _run(store)
    with Session(store) as session:
        material, method, source = _cu_by(session, "u3", run, "b")
        crud.add_configuration_values(session=session, material_id=material, method_id=method, source_id=source,
                                      job_run_id=run, values={"2v:1NN": {"vv_distance_1": 2.556}})
        crud.add_bulk_properties(session=session, rows=[{"material_id": material, "method_id": method, "source_id": source,
                                                         "definition_id": crud.definitions(session=session)["lattice_constant"].id,
                                                         "value": 3.615, "job_run_id": run}])
        session.commit()
    inputs = stored_inputs(store, material="Cu", method="u3", configuration_key="2v:1NN",
                           features=["vv_distance_1", "lattice_constant", "mean_atomic_mass", "c44"])
    assert inputs == {"vv_distance_1": 2.556, "lattice_constant": 3.615, "mean_atomic_mass": pytest.approx(63.546)}


def test_vocab_cli_refuses_in_one_line(store):
    from typer.testing import CliRunner

    from matstore.cli import app

    runner = CliRunner()
    for args, reason in ((["c11", "--unit", "MPa", "--scope", "bulk"], "c11 is a built-in definition"),
                         (["x_new", "--unit", "1/0", "--scope", "bulk"], "not a unit: '1/0'"),
                         (["x_new", "--unit", "eV", "--scope", "everywhere"], "scope 'everywhere' is not one of")):
        result = runner.invoke(app, ["vocab", "add", *args])
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 1 and len(lines) == 1 and reason in lines[0], result.output
    with store.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM property_definition WHERE NOT builtin")).scalar() == 0
        failed = conn.execute(text("SELECT count(*) FROM job_run WHERE kind = 'vocab_add' AND status = 'failed'")).scalar()
    assert failed == 3
