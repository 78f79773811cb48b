"""What the command line prints: units in brackets, ungrouped bulk folds, jsonb as JSON, periodic tasks by hand."""

from __future__ import annotations

import csv
import io
import json
import re
import time

import pytest
from sqlalchemy import text
from sqlmodel import Session

from matstore import crud
from tests.test_cli_db import run_cli, server_env

#: Elements × potentials of the bulk table: every element computed with three potentials.
ELEMENTS = {"Fe": 4.28, "W": 8.90, "Ti": 4.85}  # cohesive energy, eV/atom
POTENTIALS = {"eam_a": 1.00, "eam_b": 0.97, "meam_c": 1.04}


def populate_bulk(engine) -> None:
    """``vacancy_formation_energy`` (eV) = 0.4·cohesive_energy·(the potential's factor), for :data:`ELEMENTS` × :data:`POTENTIALS`."""
    run = crud.start_job_run(engine=engine, kind="test", parameters={})
    with Session(engine) as s:
        defs, rows = crud.definitions(session=s), []
        source = crud.claim_source(session=s, kind="computation", sha256="7" * 64)
        for element, cohesive in ELEMENTS.items():
            material = crud.get_or_create_material(session=s, formula=element)
            for potential, factor in POTENTIALS.items():
                method = crud.get_or_create_method(session=s, name=potential, kind="interatomic_potential")
                for name, value in (("cohesive_energy", cohesive * factor),
                                    ("vacancy_formation_energy", 0.4 * cohesive * factor)):
                    rows.append(dict(material_id=material, method_id=method, definition_id=defs[name].id,
                                     value=value, source_id=source, job_run_id=run))
        crud.add_bulk_properties(session=s, rows=rows)
        s.commit()


def test_ev_unit_and_ungrouped_bulk_folds_are_printed(engine, database_url: str) -> None:
    """``y [eV] = …`` in fit, refit and show; a bulk target whose materials repeat is grouped by material; a version
    fitted before, with shuffled folds, is still warned about on an explicit ``--group-by material``."""
    populate_bulk(engine)
    env = server_env(database_url)
    fit = ["fit", "--name", "vf", "--target", "vacancy_formation_energy", "--features", "cohesive_energy",
           "--engine", "sparse", "--time-budget", "10", "--seed", "0"]
    out = run_cli(*fit, "--group-by", "material", env=env).stdout
    assert re.search(r"^  y \[eV\] = ", out, re.M), out
    # three potentials per element: the folds hold elements out (shuffled folds were the leak)
    assert ("LeaveOneGroupOut (3 groups) by material (the default for a bulk target whose materials have several "
            "rows (3 of 3 materials, e.g. one per method): each fold holds out every row of its materials") in out, out
    assert "warning" not in out, out
    # a version fitted before with shuffled folds (no stored reason): the explicit --group-by material warns
    with engine.begin() as conn:
        conn.execute(text("UPDATE equation_version SET report = jsonb_set(report - 'cv_grouping', '{cv_scheme}', "
                          "'\"KFold(5, shuffle, random_state=0)\"'), metrics = jsonb_set(metrics, '{cv_scheme}', "
                          "'\"KFold(5, shuffle, random_state=0)\"')"))
    warning = ("  warning: --group-by material did not group the folds of bulk target vacancy_formation_energy: "
               "KFold(5, shuffle, random_state=0), not grouped although 3 materials have several rows: rows of one "
               "material are in training and test folds (--group-by chemical_system holds materials out; for "
               "elements one group per element)")
    old = run_cli(*fit, "--group-by", "material", env=env).stdout
    assert "no new version (version 1)" in old and warning in old.splitlines(), old
    # left at its default the same spec says nothing more (the default rule is documented)
    again = run_cli(*fit, env=env).stdout
    assert "no new version (version 1)" in again and "warning" not in again
    assert re.search(r"^  y \[eV\] = ", run_cli("refit", "vf", env=env).stdout, re.M)
    shown = run_cli("models", "show", "vf", env=env).stdout
    assert re.search(r"^  y \[eV\] = ", shown, re.M), shown
    assert ("  cross-validation: KFold(5, shuffle, random_state=0), not grouped although 3 materials have several "
            "rows: rows of one material are in training and test folds") in shown
    grouped = run_cli(*fit[:2], "vf_by_element", *fit[3:], "--group-by", "chemical_system", env=env).stdout
    assert "LeaveOneGroupOut (3 groups) by chemical_system" in grouped and "warning" not in grouped


def test_sql_writes_jsonb_and_arrays_as_json(engine, database_url: str) -> None:
    """``matstore sql --csv`` and the table print jsonb values as JSON text, not Python reprs."""
    run = crud.start_job_run(engine=engine, kind="test", parameters={})
    with Session(engine) as s:
        material = crud.get_or_create_material(session=s, formula="MoS2")
        method = crud.get_or_create_method(session=s, name="pbe", kind="dft")
        source = crud.claim_source(session=s, kind="computation", sha256="6" * 64)
        crud.get_or_create_configurations(session=s, material_id=material, method_id=method, keys=["3v:17"],
                                          source_id=source, job_run_id=run,
                                          details={"3v:17": {"raw": "1.3036", "row": 1, "name": "Å"}})
        s.commit()
    env = server_env(database_url)
    statement = ("SELECT key, details, ARRAY['3v:17', '3v:26'] AS keys, '[eV]' AS unit "
                 "FROM material_configuration")
    rows = list(csv.reader(io.StringIO(run_cli("sql", statement, "--csv", env=env).stdout)))
    assert rows[0] == ["key", "details", "keys", "unit"]
    assert rows[1] == ["3v:17", '{"raw": "1.3036", "row": 1, "name": "Å"}', '["3v:17", "3v:26"]', "[eV]"]
    assert json.loads(rows[1][1]) == {"raw": "1.3036", "row": 1, "name": "Å"}
    table = run_cli("sql", statement, env=env).stdout
    assert '{"raw": "1.3036", "row": 1, "name": "Å"}' in table and '["3v:17", "3v:26"]' in table
    assert "[eV]" in table


def test_periodic_task_deferred_by_hand_gets_now_as_its_timestamp(engine, database_url: str) -> None:
    """``matstore jobs defer refit_changed`` needs no ``-k timestamp=…``; a given one is kept."""
    env = server_env(database_url)
    before = int(time.time())
    out = run_cli("jobs", "defer", "refit_changed", env=env).stdout
    found = re.search(r"deferred refit_changed as job (\d+) \(timestamp=(\d+): now\)", out)
    assert found, out
    given = run_cli("jobs", "defer", "refit_changed", "-k", "timestamp=5", "-k", 'names=["vf"]', env=env).stdout
    second = re.search(r"deferred refit_changed as job (\d+)$", given.strip())
    assert second, given
    ids = [int(found.group(1)), int(second.group(1))]
    try:
        with engine.connect() as conn:
            args = dict(conn.execute(text("SELECT id, args FROM procrastinate_jobs WHERE id = ANY(:i)"), {"i": ids}).all())
        assert args[ids[0]] == {"timestamp": int(found.group(2))}
        assert before <= int(found.group(2)) <= time.time() + 1
        assert args[ids[1]] == {"timestamp": 5, "names": ["vf"]}
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM procrastinate_jobs WHERE id = ANY(:i)"), {"i": ids})


@pytest.mark.parametrize("task", ["refit_model"])
def test_a_task_without_timestamp_still_needs_its_arguments(engine, database_url: str, task: str) -> None:
    """Only a periodic task's ``timestamp`` is filled in: a missing ``name`` is still refused, nothing queued."""
    result = run_cli("jobs", "defer", task, env=server_env(database_url), check=False)
    assert result.returncode == 1
    assert "missing a required argument: 'name'" in result.stderr and "timestamp" not in result.stderr
