"""Database-level integrity: bad rows are rejected by PostgreSQL with the rule's name."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from matstore import crud
from matstore.orientation import from_miller


def _ids(session):
    material = crud.get_or_create_material(session=session, formula="Cu", prototype="fcc")
    method = crud.get_or_create_method(session=session, name="emt", kind="calculator", parameters={"a": 1})
    source = crud.claim_source(session=session, kind="file", sha256="a" * 64, uri="x.csv")
    source = source or crud.find_source(session=session, sha256="a" * 64).id
    run = session.execute(text(
        "INSERT INTO job_run (kind, code_version, host) VALUES ('test', '0', 'h') RETURNING id")).scalar_one()
    definitions = crud.definitions(session=session)
    return material, method, source, run, definitions


def _bulk(session, value, definition="c44", uncertainty=None):
    material, method, source, run, defs = _ids(session)
    return crud.add_bulk_properties(session=session, rows=[dict(
        material_id=material, method_id=method, definition_id=defs[definition].id, value=value,
        uncertainty=uncertainty, source_id=source, job_run_id=run)])


def test_vocabulary_is_seeded_with_canonical_units(db_session) -> None:
    defs = crud.definitions(session=db_session)
    assert defs["lattice_constant"].unit == "angstrom"
    assert defs["cohesive_energy"].unit == "eV/atom"
    assert defs["surface_energy"].unit == "J/m^2"
    assert defs["surface_stress_11"].unit == "N/m"
    assert defs["c44"].unit == "GPa"
    assert defs["strength"].unit == "MPa"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_rejected(db_session, bad: float) -> None:
    with pytest.raises(IntegrityError, match="ck_bulk_property_value_finite"):
        _bulk(db_session, bad)


def test_negative_uncertainty_is_rejected(db_session) -> None:
    with pytest.raises(IntegrityError, match="ck_bulk_property_uncertainty_valid"):
        _bulk(db_session, 1.0, uncertainty=-0.1)


def test_duplicate_value_from_same_source_is_stored_once(db_session) -> None:
    assert _bulk(db_session, 76.4) == 1
    assert _bulk(db_session, 76.4) == 0
    count = db_session.execute(text("SELECT count(*) FROM bulk_property")).scalar_one()
    assert count == 1


def test_blank_unit_is_rejected(db_session) -> None:
    # Any pint unit is allowed since user vocabulary (validated by crud.add_definition); a blank one never.
    with pytest.raises(IntegrityError, match="ck_property_definition_unit_given"):
        db_session.execute(text(
            "INSERT INTO property_definition (name, unit, scope, description) VALUES ('x', '', 'bulk', 'd')"))


def test_zero_miller_index_is_rejected(db_session) -> None:
    material = crud.get_or_create_material(session=db_session, formula="Cu")
    with pytest.raises(IntegrityError, match="ck_surface_miller_not_zero"):
        db_session.execute(text(
            "INSERT INTO surface (material_id, orientation_key, miller_h, miller_k, miller_l, normal_x, normal_y,"
            " normal_z, theta_deg, phi_deg) VALUES (:m, 'k', 0, 0, 0, 1, 0, 0, 0, 0)"), {"m": material})


def test_non_unit_normal_is_rejected(db_session) -> None:
    material = crud.get_or_create_material(session=db_session, formula="Cu")
    with pytest.raises(IntegrityError, match="ck_surface_normal_unit"):
        db_session.execute(text(
            "INSERT INTO surface (material_id, orientation_key, normal_x, normal_y, normal_z, theta_deg, phi_deg)"
            " VALUES (:m, 'k', 1, 1, 0, 0, 0)"), {"m": material})


def test_invalid_formula_is_rejected(db_session) -> None:
    # crud parses formulas with pymatgen first (FormulaError); the CHECK guards every other writer.
    from matstore.composition import FormulaError

    with pytest.raises(FormulaError, match="not a chemical formula"):
        crud.get_or_create_material(session=db_session, formula="cu; drop table x")
    with pytest.raises(IntegrityError, match="ck_material_formula_valid"):
        db_session.execute(text("INSERT INTO material (formula, prototype) VALUES ('cu; drop table x', 'fcc')"))


def test_surface_symmetry_equivalents_share_one_row(db_session) -> None:
    material = crud.get_or_create_material(session=db_session, formula="Cu")
    first = crud.get_or_create_surface(session=db_session, material_id=material, orientation=from_miller(2, 1, 0))
    again = crud.get_or_create_surface(session=db_session, material_id=material, orientation=from_miller(1, 2, 0))
    minus = crud.get_or_create_surface(session=db_session, material_id=material, orientation=from_miller(0, -2, 1))
    assert first == again == minus


def test_source_is_claimed_once(db_session) -> None:
    assert crud.claim_source(session=db_session, kind="file", sha256="b" * 64) is not None
    assert crud.claim_source(session=db_session, kind="file", sha256="b" * 64) is None


def test_bad_source_hash_is_rejected(db_session) -> None:
    with pytest.raises(IntegrityError, match="ck_source_sha256_hex"):
        crud.claim_source(session=db_session, kind="file", sha256="not-a-hash")


def test_wide_views_pivot_values(db_session) -> None:
    _bulk(db_session, 76.4, definition="c44")
    row = db_session.execute(text("SELECT material, method, c44, c11 FROM bulk_properties_wide")).one()
    assert (row.material, row.method, row.c44, row.c11) == ("Cu", "emt", 76.4, None)
    long = db_session.execute(text(
        "SELECT property, value, unit, source_sha256 FROM property_values")).one()
    assert (long.property, long.value, long.unit, long.source_sha256) == ("c44", 76.4, "GPa", "a" * 64)
