"""Re-ingesting a table under another mapping, ``--supersede``, and conflicts with other sources' values."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from matstore.ingest.errors import IngestError
from matstore.ingest.table import ingest_table, mapping_sha256
from matstore.models.dataset import build_training_set

BOHR = 0.529177210903  # Å (CODATA 2018, as pint's bohr)

STRESS = "metal,a,CHE\nCu,3.615,-3.49\nNi,3.52,-4.44\nAl,4.05,-3.39\n"
#: Mapping A: the lattice constant read in the wrong unit (bohr); mapping B: the corrected reading.
MAP_A = {"material": {"column": "metal", "prototype": "fcc"}, "method": {"name": "DFT-PBE", "kind": "dft"},
         "derived": {"Ec": {"expr": "-CHE"}},
         "columns": {"a": {"definition": "lattice_constant", "unit": "bohr"},
                     "Ec": {"definition": "cohesive_energy", "unit": "eV/atom"}}}
MAP_B = {**MAP_A, "method": {"name": "DFT-PBE (paper)", "kind": "dft"},
         "columns": {**MAP_A["columns"], "a": {"definition": "lattice_constant", "unit": "angstrom"}}}
MAP_WIDE = {"material": {"column": "metal", "prototype": "fcc"}, "method": {"name": "DFT-PBE", "kind": "dft"},
            "columns": {"a": {"definition": "lattice_constant", "unit": "angstrom"},
                        "Ec": {"definition": "cohesive_energy", "unit": "eV/atom"}}}


def _counts(engine) -> tuple[int, int, int, int]:
    """(bulk values, flagged bulk values, sources, surface values)."""
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT (SELECT count(*) FROM bulk_property), (SELECT count(*) FROM bulk_property WHERE flag IS NOT NULL), "
            "(SELECT count(*) FROM source), (SELECT count(*) FROM surface_property)")).one()


def _write(tmp_path, name: str, content: str):
    path = tmp_path / name
    path.write_text(content)
    return path


def test_same_file_under_another_mapping_is_refused_with_the_stored_source(engine, tmp_path):
    stress = _write(tmp_path, "stress.csv", STRESS)
    first = ingest_table(stress, MAP_A, engine=engine)
    assert (first.status, first.bulk_inserted) == ("inserted", 6)
    again = ingest_table(stress, MAP_A, engine=engine)
    assert (again.status, again.source_id, again.inserted) == ("already stored", first.source_id, 0)
    before = _counts(engine)
    message = (f"{stress}: this file is already stored as source {first.source_id} under another mapping (sha256 "
               f"{mapping_sha256(MAP_A)[:12]}, method 'DFT-PBE'; this mapping: sha256 {mapping_sha256(MAP_B)[:12]}, "
               f"method 'DFT-PBE (paper)'); nothing stored. To replace those values by this mapping's, run again with "
               f"`--supersede {first.source_id}` (the old values stay stored, flagged as superseded)")
    with pytest.raises(IngestError) as caught:
        ingest_table(stress, MAP_B, engine=engine)
    assert str(caught.value) == message
    assert _counts(engine) == before == (6, 0, 1, 0)
    with engine.connect() as conn:
        status, error = conn.execute(text("SELECT status, error FROM job_run ORDER BY id DESC LIMIT 1")).one()
    assert status == "failed" and error == f"IngestError: {message}"


def test_supersede_stores_the_new_reading_and_flags_the_old(engine, tmp_path):
    stress = _write(tmp_path, "stress.csv", STRESS)
    old = ingest_table(stress, MAP_A, engine=engine)
    new = ingest_table(stress, MAP_B, engine=engine, supersede=[old.source_id])
    assert (new.status, new.bulk_inserted) == ("inserted", 6)
    assert new.superseded == [{"source_id": old.source_id, "values_flagged": 6}]
    assert _counts(engine) == (12, 6, 2, 0)
    mark = f"superseded by source {new.source_id} (job run {new.job_run_id})"
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT material, method, property, value, flag FROM property_values WHERE property = 'lattice_constant' "
            "ORDER BY method, material")).all()
        sources = {r.id: r for r in conn.execute(text("SELECT id, sha256, details FROM source")).all()}
    by = {(r.method, r.material): r for r in rows}
    # The old values are kept unchanged, flagged; the new ones are unflagged.
    assert by["DFT-PBE", "Cu"].value == pytest.approx(3.615 * BOHR, rel=1e-9) and by["DFT-PBE", "Cu"].flag == mark
    assert by["DFT-PBE (paper)", "Cu"].value == pytest.approx(3.615, rel=1e-12) and by["DFT-PBE (paper)", "Cu"].flag is None
    # Provenance: each source names the other, and both name the same file.
    old_src, new_src = sources[old.source_id], sources[new.source_id]
    assert old_src.details["superseded_by"] == {"source_id": new.source_id, "job_run_id": new.job_run_id, "values_flagged": 6}
    assert new_src.details["supersedes"] == [old.source_id]
    assert old_src.sha256 == new_src.details["file_sha256"] == new.sha256 != new_src.sha256
    assert new_src.details["mapping_sha256"] == mapping_sha256(MAP_B)
    # Training uses the new reading only (the flagged one is left out, and newest when flagged values are included).
    train = build_training_set(engine, target="cohesive_energy", features=["lattice_constant"])
    table = train.table.sort_values("material")
    assert list(table.method) == ["DFT-PBE (paper)"] * 3
    assert table.lattice_constant.tolist() == pytest.approx([4.05, 3.615, 3.52], rel=1e-12)
    assert table.target.tolist() == pytest.approx([3.39, 3.49, 4.44], rel=1e-12)
    # The same command again stores nothing; the old mapping is now the one refused.
    assert ingest_table(stress, MAP_B, engine=engine, supersede=[old.source_id]).status == "already stored"
    with pytest.raises(IngestError, match=rf"already stored as source {new.source_id} under another mapping .* "
                                          rf"`--supersede {new.source_id}`"):
        ingest_table(stress, MAP_A, engine=engine)
    with pytest.raises(IngestError, match=rf"--supersede {old.source_id}: source {old.source_id} is already superseded by "
                                          rf"source {new.source_id} \(job run {new.job_run_id}\); supersede that source"):
        ingest_table(_write(tmp_path, "other.csv", "metal,a,Ec\nAg,4.16,2.95\n"), MAP_WIDE, engine=engine,
                     supersede=[old.source_id])
    with pytest.raises(IngestError, match="--supersede 99: no other stored source has id 99"):
        ingest_table(_write(tmp_path, "other.csv", "metal,a,Ec\nAg,4.16,2.95\n"), MAP_WIDE, engine=engine, supersede=[99])
    assert _counts(engine) == (12, 6, 2, 0)


def test_a_superseded_reading_can_be_restored(engine, tmp_path):
    stress = _write(tmp_path, "stress.csv", STRESS)
    a = ingest_table(stress, MAP_A, engine=engine)
    b = ingest_table(stress, MAP_B, engine=engine, supersede=[a.source_id])
    back = ingest_table(stress, MAP_A, engine=engine, supersede=[b.source_id])
    assert (back.status, back.bulk_inserted, back.superseded) == ("inserted", 6, [{"source_id": b.source_id, "values_flagged": 6}])
    assert _counts(engine) == (18, 12, 3, 0)
    train = build_training_set(engine, target="cohesive_energy", features=["lattice_constant"])
    assert set(train.table.method) == {"DFT-PBE"}
    assert sorted(train.table.lattice_constant) == pytest.approx(sorted(x * BOHR for x in (3.615, 3.52, 4.05)), rel=1e-9)


def test_a_value_conflicting_with_another_source_is_refused(engine, tmp_path):
    first = ingest_table(_write(tmp_path, "a.csv", "metal,a,Ec\nCu,3.615,3.49\nNi,3.52,4.44\n"), MAP_WIDE, engine=engine)
    before = _counts(engine)
    second = _write(tmp_path, "b.csv", "metal,a,Ec\nCu,3.70,3.49\n")
    with pytest.raises(IngestError) as caught:
        ingest_table(second, MAP_WIDE, engine=engine)
    assert str(caught.value) == (
        f"{second}, row 1, line 2, column 'a': conflicting values: lattice_constant of Cu (fcc) by DFT-PBE is 3.7 angstrom "
        f"here but 3.615 angstrom in source {first.source_id} (a.csv, job run {first.job_run_id}) (relative tolerance "
        f"1e-06); nothing stored. If this file replaces source {first.source_id}, run again with `--supersede "
        f"{first.source_id}` (its values stay stored, flagged as superseded); if it is another calculation or "
        "measurement, give it another method name in the mapping")
    assert _counts(engine) == before == (4, 0, 1, 0)
    # The same numbers in another unit agree (3.615 Å = 0.3615 nm): stored, nothing conflicts.
    nm = {**MAP_WIDE, "columns": {**MAP_WIDE["columns"], "a": {"definition": "lattice_constant", "unit": "nm"}}}
    agree = ingest_table(_write(tmp_path, "c.csv", "metal,a,Ec\nCu,0.3615,3.49\n"), nm, engine=engine)
    assert (agree.status, agree.bulk_inserted) == ("inserted", 2)
    # Another method name is another calculation: stored beside.
    other = {**MAP_WIDE, "method": {"name": "DFT-PBE (group B)", "kind": "dft"}}
    assert ingest_table(second, other, engine=engine).bulk_inserted == 2
    # Training has one value per (material, method): the agreeing pair, and the other method's.
    table = build_training_set(engine, target="cohesive_energy", features=["lattice_constant"]).table
    cu = table[table.material == "Cu"].set_index("method").lattice_constant
    assert cu.to_dict() == pytest.approx({"DFT-PBE": 3.615, "DFT-PBE (group B)": 3.70}, rel=1e-12)


def test_two_conflicts_are_counted_and_supersede_resolves_them(engine, tmp_path):
    first = ingest_table(_write(tmp_path, "a.csv", "metal,a,Ec\nCu,3.615,3.49\nNi,3.52,4.44\n"), MAP_WIDE, engine=engine)
    second = _write(tmp_path, "b.csv", "metal,a,Ec\nCu,3.615,3.50\nNi,3.53,4.44\n")
    with pytest.raises(IngestError, match=r"row 1, line 2, column 'Ec': conflicting values: cohesive_energy of Cu \(fcc\) "
                                          r"by DFT-PBE is 3.5 eV/atom here but 3.49 eV/atom in source 1 \(a.csv, job run 1\); "
                                          r"1 more value\(s\) of this file conflict too"):
        ingest_table(second, MAP_WIDE, engine=engine)
    report = ingest_table(second, MAP_WIDE, engine=engine, supersede=[first.source_id])
    assert report.superseded == [{"source_id": first.source_id, "values_flagged": 4}]
    assert _counts(engine) == (8, 4, 2, 0)
    table = build_training_set(engine, target="cohesive_energy", features=["lattice_constant"]).table.set_index("material")
    assert table.lattice_constant.to_dict() == pytest.approx({"Cu": 3.615, "Ni": 3.53}, rel=1e-12)
    assert table.target.to_dict() == pytest.approx({"Cu": 3.50, "Ni": 4.44}, rel=1e-12)


def test_surface_conflict_names_the_orientation(engine, tmp_path):
    mapping = {"material": {"column": "metal", "prototype": "fcc"}, "method": {"name": "EAM_X", "kind": "interatomic_potential"},
               "columns": {"gamma": {"definition": "surface_energy", "unit": "J/m^2", "orientation": {"miller_column": "hkl"}}}}
    ingest_table(_write(tmp_path, "s1.csv", "metal,hkl,gamma\nCu,111,1.31\nCu,100,1.45\n"), mapping, engine=engine)
    with pytest.raises(IngestError, match=r"s2.csv, row 2, line 3, column 'gamma': conflicting values: surface_energy of "
                                          r"Cu \(fcc\) by EAM_X on \(1,0,0\) is 1.5 J/m\^2 here but 1.45 J/m\^2 in source 1"):
        ingest_table(_write(tmp_path, "s2.csv", "metal,hkl,gamma\nCu,111,1.31\nCu,100,1.50\nCu,110,1.55\n"), mapping,
                     engine=engine)
    assert _counts(engine) == (0, 0, 1, 2)


def test_configuration_conflict_names_the_key(engine, tmp_path):
    mapping = {"material": {"formula": "MoS2", "prototype": "2H"}, "method": {"name": "DFT-PBE", "kind": "dft"},
               "key": {"column": "id", "prefix": "d:"}, "columns": {"E_f": {"definition": "formation_energy", "unit": "eV"}}}
    ingest_table(_write(tmp_path, "k1.csv", "id,E_f\n0,4.812\n1,5.0\n"), mapping, engine=engine)
    with pytest.raises(IngestError, match=r"k2.csv, row 2, line 3, column 'E_f': conflicting values: formation_energy of "
                                          r"MoS2 \(2H\) by DFT-PBE in configuration 'd:1' is 5.1 eV here but 5 eV in source 1"):
        ingest_table(_write(tmp_path, "k2.csv", "id,E_f\n0,4.812\n1,5.1\n"), mapping, engine=engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM configuration_property")).scalar() == 2


def test_cli_prints_the_refusal_and_the_superseded_source(engine, tmp_path):
    import yaml

    from matstore.cli import app

    stress = _write(tmp_path, "stress.csv", STRESS)
    a, b = _write(tmp_path, "a.yaml", yaml.safe_dump(MAP_A)), _write(tmp_path, "b.yaml", yaml.safe_dump(MAP_B))
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", "table", str(stress), "-m", str(a)]).exit_code == 0
    result = runner.invoke(app, ["ingest", "table", str(stress), "-m", str(b)])
    assert result.exit_code == 1
    line = " ".join(result.output.split())  # Rich may wrap in the test's narrow terminal
    assert re.search(r"error: .*stress.csv: this file is already stored as source 1 under another mapping \(sha256 "
                     r"[0-9a-f]{12}, method 'DFT-PBE'; .* run again with `--supersede 1`", line), result.output
    result = runner.invoke(app, ["ingest", "table", str(stress), "-m", str(b), "--supersede", "1"])
    assert result.exit_code == 0, result.output
    assert "superseded source 1: its 6 values stay stored, flagged 'superseded by source 2 (job run" in " ".join(result.output.split())
    assert _counts(engine) == (12, 6, 2, 0)


def test_the_wide_view_shows_what_a_fit_uses_after_a_supersede(engine, tmp_path):
    """A superseding mapping that leaves out a column: bulk_properties_wide shows the new reading's
    values and no value for the dropped column (revision 0015: flagged values are left out, as
    fits leave them out); property_values still lists the old, flagged value."""
    stress = _write(tmp_path, "stress.csv", STRESS)
    old = ingest_table(stress, MAP_WIDE | {"derived": {"Ec": {"expr": "-CHE"}}}, engine=engine)
    only_a = MAP_WIDE | {"columns": {"a": MAP_WIDE["columns"]["a"]}}
    ingest_table(stress, only_a, engine=engine, supersede=[old.source_id])
    with engine.connect() as conn:
        wide = conn.execute(text("SELECT lattice_constant, cohesive_energy FROM bulk_properties_wide "
                                 "WHERE material = 'Cu' AND method = 'DFT-PBE'")).one()
        kept = conn.execute(text("SELECT value, flag FROM property_values WHERE material = 'Cu' "
                                 "AND property = 'cohesive_energy'")).one()
    assert wide.lattice_constant == pytest.approx(3.615, rel=1e-12) and wide.cohesive_energy is None
    assert kept.value == pytest.approx(3.49, rel=1e-12) and kept.flag.startswith("superseded by source")
