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


def test_seeding_refreshes_builtin_descriptions_only(db_session) -> None:
    """A re-seed (``matstore db migrate``) rewrites a built-in definition's stale description and
    symbol to the release's wording, leaves user definitions alone, and adds nothing twice."""
    from matstore.schema.vocabulary import PROPERTY_DEFINITIONS

    wording = {d.name: d.description for d in PROPERTY_DEFINITIONS}["cation_size_mismatch"]
    db_session.execute(text("UPDATE property_definition SET description = 'old words', symbol = 'x' "
                            "WHERE name = 'cation_size_mismatch'"))
    db_session.execute(text("INSERT INTO property_definition (name, unit, scope, description, builtin) "
                            "VALUES ('my_gap', 'eV', 'bulk', 'mine', false)"))
    assert crud.seed_vocabulary(session=db_session) == 0
    rows = dict(db_session.execute(text("SELECT name, description || '|' || coalesce(symbol, '') FROM property_definition "
                                        "WHERE name IN ('cation_size_mismatch', 'my_gap')")).all())
    assert rows == {"cation_size_mismatch": f"{wording}|δ_M", "my_gap": "mine|"}
    assert "charge-balanced oxidation state" in wording


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


# --- revision 0013: property references checked per statement ---------------------------------------

_BULK = ("material_id", "method_id", "definition_id", "value", "source_id", "job_run_id", "configuration_id")


def _stored_ids(engine):
    """Committed ids of one material, method, source, job run, surface and material configuration, and c44's id."""
    from sqlmodel import Session

    with Session(engine) as s:
        material, method, source, run, defs = _ids(s)
        surface = crud.get_or_create_surface(session=s, material_id=material, orientation=from_miller(1, 1, 1))
        mc = s.execute(text("INSERT INTO material_configuration (material_id, method_id, key, source_id, job_run_id) "
                            "VALUES (:m, :me, 'v1', :s, :r) RETURNING id"),
                       {"m": material, "me": method, "s": source, "r": run}).scalar_one()
        definition, other = defs["c44"].id, defs["c11"].id
        s.commit()
    return {"material_id": material, "method_id": method, "source_id": source, "job_run_id": run,
            "surface_id": surface, "mc": mc, "definition_id": definition, "other_definition": other}


def _copy(session, table, columns, rows):
    from matstore.ingest.property_copy import copy_rows

    return copy_rows(session, table, columns, rows)


def _count(engine, table):
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_property_references_are_checked_per_statement(engine) -> None:
    """Revision 0013: a COPY or INSERT naming a missing material, method, definition, source, job run,
    configuration, surface or material configuration is refused with SQLSTATE 23503 and a message
    naming the table, column and id; nothing of the statement is stored."""
    import psycopg
    from sqlmodel import Session

    ids = _stored_ids(engine)
    good = [ids["material_id"], ids["method_id"], ids["definition_id"], 76.4, ids["source_id"], ids["job_run_id"], None]
    for k, column in enumerate(_BULK):
        if column == "value":
            continue
        bad = list(good)
        bad[2] = ids["other_definition"]  # another value of the same material (no unique-key clash)
        bad[k] = 987654
        with Session(engine) as s, pytest.raises(psycopg.errors.ForeignKeyViolation) as caught:
            _copy(s, "bulk_property", _BULK, [tuple(good), tuple(bad)])
        assert 'table "bulk_property" violates its reference' in str(caught.value)
        assert f"key ({column})=(987654) is not present" in str(caught.value)
        assert caught.value.sqlstate == "23503"
    surface_row = (987654, ids["method_id"], ids["definition_id"], 1.2, ids["source_id"], ids["job_run_id"])
    with Session(engine) as s, pytest.raises(psycopg.errors.ForeignKeyViolation, match=r"key \(surface_id\)=\(987654\)"):
        _copy(s, "surface_property", ("surface_id", *_BULK[1:6]), [surface_row])
    columns = ("configuration_id", "definition_id", "value", "source_id", "job_run_id")
    with Session(engine) as s, pytest.raises(psycopg.errors.ForeignKeyViolation,
                                             match=r'reference to "material_configuration": key \(configuration_id\)=\(987654\)'):
        _copy(s, "configuration_property", columns, [(987654, ids["definition_id"], 2.5, ids["source_id"], ids["job_run_id"])])
    with Session(engine) as s, pytest.raises(IntegrityError, match=r"key \(source_id\)=\(987654\) is not present"):
        crud.add_bulk_properties(session=s, rows=[dict(zip(_BULK, [*good[:4], 987654, *good[5:]], strict=True))])
    assert [_count(engine, t) for t in ("bulk_property", "surface_property", "configuration_property")] == [0, 0, 0]
    with Session(engine) as s:
        assert _copy(s, "bulk_property", _BULK, [tuple(good)]) == 1
        assert _copy(s, "configuration_property", columns, [(ids["mc"], ids["definition_id"], 2.5, ids["source_id"],
                                                             ids["job_run_id"])]) == 1
        s.commit()
    assert _count(engine, "bulk_property") == 1 and _count(engine, "configuration_property") == 1


def test_referenced_rows_cannot_be_deleted_renumbered_or_truncated(engine) -> None:
    """Revision 0013: a material, method, source or definition referenced by a property value cannot
    be deleted or renumbered, a property's reference cannot be updated to a missing id, and
    TRUNCATE of a referenced table is refused unless the property tables are truncated with it."""
    from sqlmodel import Session

    ids = _stored_ids(engine)
    with Session(engine) as s:
        _copy(s, "bulk_property", _BULK, [(ids["material_id"], ids["method_id"], ids["definition_id"], 76.4,
                                           ids["source_id"], ids["job_run_id"], None)])
        s.commit()
    for table, key in (("material", "material_id"), ("method", "method_id"), ("source", "source_id"),
                       ("property_definition", "definition_id"), ("job_run", "job_run_id")):
        with engine.begin() as conn, pytest.raises(IntegrityError, match=(
                rf'update or delete on table "{table}" violates the reference from table "bulk_property": '
                rf'key \(id\)=\({ids[key]}\) is still referenced by column {key}')):
            conn.execute(text(f"DELETE FROM {table} WHERE id = :i"), {"i": ids[key]})
    with engine.begin() as conn, pytest.raises(IntegrityError, match='on table "material" violates the reference'):
        conn.execute(text("UPDATE material SET id = id + 1000"))
    with engine.begin() as conn:  # an update that keeps the id passes
        conn.execute(text("UPDATE material SET description = 'kept' WHERE id = :i"), {"i": ids["material_id"]})
        conn.execute(text("UPDATE bulk_property SET value = 80.0"))
    with engine.begin() as conn, pytest.raises(IntegrityError, match=r"key \(method_id\)=\(987654\) is not present"):
        conn.execute(text("UPDATE bulk_property SET method_id = 987654"))
    with engine.begin() as conn, pytest.raises(IntegrityError, match='cannot truncate table "material" while table "bulk_property"'):
        conn.execute(text("TRUNCATE material CASCADE"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT value, method_id FROM bulk_property")).one() == (80.0, ids["method_id"])
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM surface WHERE id = :i"), {"i": ids["surface_id"]})  # unreferenced: allowed
        conn.execute(text("TRUNCATE bulk_property, configuration_property, material CASCADE"))
    assert _count(engine, "material") == 0


@pytest.mark.parametrize("first", ["copy", "delete"])
def test_delete_racing_a_property_copy_cannot_orphan_it(engine, first: str) -> None:
    """Revision 0013's checks cannot be raced by a delete of the referenced material.

    ``copy`` first: the open COPY holds the material row's key-share lock, so the delete waits
    for it (PostgreSQL locks the row before a BEFORE DELETE row trigger fires) and, once the
    COPY commits, sees its rows and fails, as a foreign key's check would.  ``delete`` first:
    the COPY's statement check waits for the deleting transaction's row lock and, once the
    delete commits, finds the material gone and fails.  Either way no value is orphaned.
    """
    import threading

    import psycopg
    from sqlmodel import Session

    ids = _stored_ids(engine)
    with Session(engine) as s:  # referenced by nothing else (no surface, no configuration)
        ids["material_id"] = crud.get_or_create_material(session=s, formula="Al")
        s.commit()
    row = (ids["material_id"], ids["method_id"], ids["definition_id"], 76.4, ids["source_id"], ids["job_run_id"], None)
    outcome: list[BaseException | None] = []

    def run(step) -> None:
        try:
            step()
            outcome.append(None)
        except Exception as exc:  # noqa: BLE001 - inspected below
            outcome.append(exc)

    def delete() -> None:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM material WHERE id = :i"), {"i": ids["material_id"]})

    def copy() -> None:
        with Session(engine) as s:
            _copy(s, "bulk_property", _BULK, [row])
            s.commit()

    waiter = delete if first == "copy" else copy
    with engine.begin() as conn:
        if first == "copy":
            assert _copy(Session(bind=conn), "bulk_property", _BULK, [row]) == 1  # holds the key-share lock
        else:
            conn.execute(text("DELETE FROM material WHERE id = :i"), {"i": ids["material_id"]})  # holds the row lock
        thread = threading.Thread(target=run, args=(waiter,))
        thread.start()
        thread.join(timeout=1.0)
        assert thread.is_alive()  # waits for this transaction
    thread.join(timeout=30)
    assert len(outcome) == 1
    error = getattr(outcome[0], "orig", outcome[0])
    assert isinstance(error, psycopg.errors.ForeignKeyViolation), outcome
    with engine.connect() as conn:
        orphans = conn.execute(text("SELECT count(*) FROM bulk_property b WHERE NOT EXISTS "
                                    "(SELECT FROM material m WHERE m.id = b.material_id)")).scalar_one()
        stored = conn.execute(text("SELECT count(*) FROM bulk_property")).scalar_one()
    assert orphans == 0
    assert stored == (1 if first == "copy" else 0)
