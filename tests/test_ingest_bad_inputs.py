"""The bad-input corpus (tests/data/bad): typed errors naming file and line/row, data unchanged."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from matstore.ingest import errors as E
from matstore.ingest.structures import ingest_structure_file
from matstore.ingest.table import ingest_table
from tests.conftest import DATA_TABLES

DATA = Path(__file__).parent / "data"
BAD, GOOD = DATA / "bad", DATA / "good"
SMALL_MAPPING = GOOD / "small_table.yaml"

# (file, mapping or None for structures, error class, where-pattern in the message)
CASES = [
    ("truncated.extxyz", None, E.TruncatedFileError, r"truncated\.extxyz, line 10: frame 1 \(line 7\) declares 4 atoms but the file ends after 2"),
    ("malformed_number.extxyz", None, E.ParseError, r"malformed_number\.extxyz, line 9: frame 1"),
    ("unknown_element.extxyz", None, E.UnknownElementError, r"unknown_element\.extxyz, line 15: unknown element 'Xx'"),
    ("empty.extxyz", None, E.EmptyFileError, r"empty\.extxyz: the file is empty"),
    ("empty.csv", SMALL_MAPPING, E.EmptyFileError, r"empty\.csv: the file is empty"),
    ("../good/small_table.csv", BAD / "wrong_unit.yaml", E.UnitError, r"wrong_unit\.yaml, line 7, column 'c44_GPa': columns\.c44_GPa: unit 'eV' .* cannot be converted to 'GPa'"),
    ("nan_inf.csv", BAD / "nan_inf.yaml", E.InvalidValueError, r"nan_inf\.csv, row 2, line 3, column 'c44_GPa': non-finite: nan.*and 1 more"),
    ("shifted_columns.csv", SMALL_MAPPING, E.TableShapeError, r"shifted_columns\.csv, row 3, line 4: 7 fields but the header has 6"),
    ("duplicated_rows.csv", SMALL_MAPPING, E.DuplicateRowError, r"duplicated_rows\.csv, row 3, line 4, column 'a_A': duplicated row: lattice_constant of Cu .* row 1"),
    ("missing_column.csv", SMALL_MAPPING, E.MissingColumnError, r"missing_column\.csv, line 1: column 'c44_GPa' named by the mapping is not in the table"),
    ("unparsable_number.csv", SMALL_MAPPING, E.ParseError, r"unparsable_number\.csv, row 2, line 3, column 'c44_GPa': unparsable number '12x5\.0'"),
    ("unknown_element.csv", SMALL_MAPPING, E.UnknownElementError, r"unknown_element\.csv, row 2, line 3, column 'element': unknown element 'Qq'"),
]


def _checksums(engine) -> dict[str, str]:
    """md5 of every data table's rows (all but job_run, whose failed runs are recorded on purpose)."""
    out = {}
    with engine.connect() as conn:
        for table in DATA_TABLES:
            if table == "job_run":
                continue
            out[table] = conn.execute(text(
                f"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') FROM {table} t"
            )).scalar()
    return out


@pytest.fixture
def populated(engine):
    """A store holding some data already, so that "unchanged" compares real rows."""
    ingest_structure_file(GOOD / "cu_emt.extxyz", engine=engine, method="emt", method_kind="calculator")
    ingest_table(GOOD / "small_table.csv", SMALL_MAPPING, engine=engine)
    return engine


def test_corpus_is_complete():
    listed = {name.split("/")[-1] for name, *_ in CASES}
    on_disk = {p.name for p in BAD.iterdir() if p.suffix in (".extxyz", ".csv")}
    assert on_disk <= listed


@pytest.mark.parametrize(("name", "mapping", "error", "pattern"), CASES, ids=[c[0].split("/")[-1] + ("" if c[1] in (None, SMALL_MAPPING) else "+" + c[1].name) for c in CASES])
def test_bad_input_is_rejected_and_leaves_data_unchanged(populated, name, mapping, error, pattern):
    engine = populated
    before = _checksums(engine)
    with engine.connect() as conn:
        runs_before = conn.execute(text("SELECT count(*) FROM job_run")).scalar()
    path = BAD / name
    with pytest.raises(error) as info:
        if mapping is None:
            ingest_structure_file(path, engine=engine)
        else:
            ingest_table(path, mapping, engine=engine)
    assert isinstance(info.value, E.IngestError)
    message = str(info.value)
    assert re.search(pattern, message), message
    assert _checksums(engine) == before
    with engine.connect() as conn:
        runs = conn.execute(text("SELECT status, error FROM job_run ORDER BY id")).all()
    assert len(runs) == runs_before + 1
    assert runs[-1].status == "failed" and error.__name__ in runs[-1].error


def test_bad_input_cli_prints_one_red_line(populated, tmp_path):
    from matstore.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["ingest", "structures", str(BAD / "truncated.extxyz")])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "truncated.extxyz, line 10" in lines[0]
    result = runner.invoke(app, ["ingest", "table", str(BAD / "shifted_columns.csv"), "--mapping", str(SMALL_MAPPING)])
    assert result.exit_code == 1 and "shifted_columns.csv, row 3, line 4" in result.output


def test_multi_file_ingest_stops_at_bad_file_keeping_earlier(engine, tmp_path):
    from matstore.ingest.structures import ingest_structures

    good = tmp_path / "good.extxyz"
    shutil.copy(GOOD / "cu_emt.extxyz", good)
    with pytest.raises(E.TruncatedFileError):
        ingest_structures([good, BAD / "truncated.extxyz"], engine=engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM configuration")).scalar() == 3
        assert conn.execute(text("SELECT count(*) FROM source")).scalar() == 1


# --- mappings of published tables: units, expressions, YAML (generated in tmp_path) ------------

_BASE = "material: {column: element, prototype: fcc}\nmethod: {column: method, kind: interatomic_potential}\n"
_BOMB = "".join(f"l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * 9) if k else ', '.join(['lol'] * 9)}]\n" for k in range(8))

# (mapping text, error class, pattern naming file, line/row, column and reason)
MAPPING_CASES = {
    "unknown_unit": (_BASE + "columns:\n  c44_GPa: {definition: c44, unit: gigapascalz}\n",
                     E.UnitError, r"unknown_unit\.yaml, line 4, column 'c44_GPa': columns\.c44_GPa: .*'gigapascalz'"),
    "one_over_zero": (_BASE + "columns:\n  c44_GPa: {definition: c44, unit: '1/0'}\n",
                      E.UnitError, r"one_over_zero\.yaml, line 4, column 'c44_GPa': .*'1/0'"),
    "import_unit": (_BASE + "columns:\n  c44_GPa: {definition: c44, unit: \"__import__('os').system('true')\"}\n",
                    E.UnitError, r"import_unit\.yaml, line 4, column 'c44_GPa': .*__import__"),
    "bracket_unit": (_BASE + "columns:\n  a_A: {definition: lattice_constant, unit: 'angstrom)'}\n",
                     E.UnitError, r"bracket_unit\.yaml, line 4, column 'a_A': .*angstrom\)"),
    "import_expr": (_BASE + "derived:\n  x: {expr: \"__import__('os').system('true')\"}\ncolumns:\n  x: {definition: c44, unit: GPa}\n",
                    E.MappingError, r"import_expr\.yaml, line 4, column 'x': derived\.x\.expr: .*only one-argument calls"),
    "alias_bomb": (_BOMB + _BASE + "columns:\n  a_A: {definition: lattice_constant, unit: angstrom}\n",
                   E.MappingError, r"alias_bomb\.yaml: mapping expands to more than 20000 YAML nodes"),
    "missing_expr_column": (_BASE + "derived:\n  c11: {expr: 'K_GPa + 4*Gp_GPa/3'}\ncolumns:\n  c11: {definition: c11, unit: GPa}\n",
                            E.MissingColumnError, r"small_table\.csv, line 1, column 'c11': derived column 'c11': expr .* names column 'K_GPa', which is not in the table"),
    "division_by_zero": (_BASE + "derived:\n  r: {expr: 'c44_GPa / (a_A - 3.52)'}\ncolumns:\n  r: {definition: c11, unit: GPa}\n",
                         E.ParseError, r"small_table\.csv, row 2, line 3, column 'r': derived column 'r': division by zero"),
    "unknown_definition": (_BASE + "columns:\n  Ec_eV: {definition: cohesive_enrgy, unit: eV}\n",
                           E.MappingError, r"unknown_definition\.yaml, line 4, column 'Ec_eV': .*unknown property definition 'cohesive_enrgy'; did you mean cohesive_energy.*matstore vocab add"),
    "misspelt_key": (_BASE + "colums:\n  a_A: {definition: lattice_constant, unit: angstrom}\n",
                     E.MappingError, r"^[^,]*misspelt_key\.yaml, line 3: unknown key 'colums' \(did you mean 'columns'\?\)$"),
    "misspelt_nested_key": (_BASE + "columns:\n  g: {definition: surface_energy, unit: J/m^2, orientation: {miler_column: hkl}}\n",
                            E.MappingError, r"misspelt_nested_key\.yaml, line 4, column 'g': columns\.g\.orientation: "
                            r"unknown key 'miler_column' \(did you mean 'miller_column'\?\)$"),
    "tolerance_on_miller": (_BASE + "columns:\n  g: {definition: surface_energy, unit: J/m^2, "
                            "orientation: {miller_column: hkl, miller_tolerance_deg: 0.1}}\n",
                            E.MappingError, r"tolerance_on_miller\.yaml, line 4, column 'g': columns\.g\.orientation: "
                            r"miller_tolerance_deg applies to normal_columns and angle_columns"),
    "conflicting_rows": (_BASE + "columns:\n  a_A: {definition: lattice_constant, unit: angstrom}\n",
                         E.DuplicateRowError, r"conflicts\.csv, row 2, line 3, column 'a_A': conflicting values: lattice_constant of Cu .* 3\.6 here but 3\.615 in row 1 \(line 2\).*on_duplicate: keep_first"),
}


@pytest.mark.parametrize("case", list(MAPPING_CASES))
def test_bad_mapping_is_one_line_and_writes_nothing(populated, tmp_path, case):
    text_, error, pattern = MAPPING_CASES[case]
    mapping = tmp_path / f"{case}.yaml"
    mapping.write_text(text_)
    table = tmp_path / "small_table.csv"  # a new source (one more line end), so that it is read, not "already stored"
    table.write_text((GOOD / "small_table.csv").read_text() + "\n")
    if case == "conflicting_rows":
        table = tmp_path / "conflicts.csv"
        table.write_text("element,method,a_A\nCu,EAM_A,3.615\nCu,EAM_A,3.6\n")
    before = _checksums(populated)
    with pytest.raises(error) as info:
        ingest_table(table, mapping, engine=populated)
    message = str(info.value)
    assert re.search(pattern, message), message
    assert "\n" not in message
    assert _checksums(populated) == before


def test_repeated_agreeing_values_are_stored_once(engine, tmp_path):
    """Per-material columns repeated on every row are accepted when they agree; blank rows are reported as dropped."""
    mapping = tmp_path / "m.yaml"
    mapping.write_text(_BASE + "columns:\n  a_A: {definition: lattice_constant, unit: angstrom}\n"
                       "  g: {definition: surface_energy, unit: J/m^2, orientation: {miller_column: hkl}}\n")
    table = tmp_path / "t.csv"
    table.write_text("element,method,a_A,hkl,g\nCu,E,3.615,111,1.2\nCu,E,3.615,100,1.3\nCu,E,3.615,110,\n")
    report = ingest_table(table, mapping, engine=engine)
    assert (report.bulk_inserted, report.surface_inserted, report.repeated, report.missing) == (1, 2, 2, 1)
    assert [d["row"] for d in report.dropped_rows] == [3]
    assert report.dropped_rows[0]["reasons"] == ["g: blank", "a_A: repeats row 1"]
    with engine.connect() as conn:
        summary = conn.execute(text("SELECT summary FROM job_run WHERE id = :i"), {"i": report.job_run_id}).scalar_one()
    assert summary["n_dropped_rows"] == 1 and summary["dropped_rows"][0]["row"] == 3


def test_a_row_repeating_another_entirely_is_refused_even_with_blanks(engine, tmp_path):
    """Agreeing per-material repeats pass, but a copy of a whole row (blank cells included) is a duplicated row."""
    mapping = tmp_path / "m.yaml"
    mapping.write_text(_BASE + "columns:\n  a_A: {definition: lattice_constant, unit: angstrom}\n"
                       "  g: {definition: surface_energy, unit: J/m^2, orientation: {miller_column: hkl}}\n")
    table = tmp_path / "t.csv"
    table.write_text("element,method,a_A,hkl,g\nCu,E,3.615,111,\nCu,E,3.615,100,1.3\nCu,E,3.615,111,\n")
    with pytest.raises(E.DuplicateRowError, match=r"t\.csv, row 3, line 4, column 'a_A': duplicated row: lattice_constant of Cu .* row 1 \(line 2\)"):
        ingest_table(table, mapping, engine=engine)


_SURFACE = "material: {column: metal, prototype: fcc}\nmethod: {name: EAM, kind: interatomic_potential}\ncolumns:\n"

# (orientation of gamma, table, pattern naming file, row, line, column and reason)
SURFACE_CASES = {
    "blank hkl": ("{miller_column: hkl}", "metal,a,Ec,hkl,gamma\nCu,3.615,3.49,111,1.22\nCu,3.615,3.49,,1.40\nNi,3.52,4.44,,1.9\n",
                  r"t\.csv, row 2, line 3, column 'hkl': gamma has a value \(1\.40\) but its orientation \(hkl\) is blank$"),
    "blank k": ("{miller_columns: [h, k, l]}", "metal,a,Ec,h,k,l,gamma\nCu,3.615,3.49,1,1,1,1.22\nNi,3.52,4.44,1,,0,1.9\n",
                r"t\.csv, row 2, line 3, column 'k': gamma has a value \(1\.9\) but its orientation \(k\) is blank$"),
    "blank phi": ("{angle_columns: [theta, phi]}", "metal,a,Ec,theta,phi,gamma\nCu,3.615,3.49,30,,1.22\n",
                  r"t\.csv, row 1, line 2, column 'phi': gamma has a value \(1\.22\) but its orientation \(phi\) is blank$"),
    "float index": ("{miller_column: hkl}", "metal,a,Ec,hkl,gamma\nCu,3.615,3.49,1.5 1 0,1.22\n",
                    r"t\.csv, row 1, line 2, column 'hkl': not a Miller index: '1\.5' is not an integer$"),
    "four digits": ("{miller_column: hkl}", "metal,a,Ec,hkl,gamma\nCu,3.615,3.49,1110.0,1.22\n",
                    r"t\.csv, row 1, line 2, column 'hkl': not a Miller index: one number is read as three digits h k l, "
                    r"and '1110\.0' has 4; give 111, \(1 1 0\), \[2,1,0\], 1;-1;0 or 1̄10$"),
    "zero plane": ("{miller_columns: [h, k, l]}", "metal,a,Ec,h,k,l,gamma\nCu,3.615,3.49,0,0.0,0,1.22\n",
                   r"t\.csv, row 1, line 2, column 'h': not a Miller index: Miller index \(0,0,0\) is not a plane$"),
}


@pytest.mark.parametrize("case", list(SURFACE_CASES))
def test_surface_value_without_a_usable_orientation_is_one_line_and_writes_nothing(populated, tmp_path, case):
    """A surface value whose orientation is blank or not a Miller index stops the ingest (it was dropped, reported
    as a blank value); bulk values of the same table are not stored either."""
    orientation, table_text, pattern = SURFACE_CASES[case]
    mapping = tmp_path / "m.yaml"
    mapping.write_text(_SURFACE + "  a: {definition: lattice_constant, unit: angstrom}\n  Ec: {definition: cohesive_energy, unit: eV/atom}\n"
                       f"  gamma: {{definition: surface_energy, unit: J/m^2, orientation: {orientation}}}\n")
    table = tmp_path / "t.csv"
    table.write_text(table_text)
    before = _checksums(populated)
    with pytest.raises(E.ParseError) as info:
        ingest_table(table, mapping, engine=populated)
    assert re.search(pattern, str(info.value)), str(info.value)
    assert _checksums(populated) == before


def test_blank_orientation_cli_exits_1_with_one_line(populated, tmp_path):
    from matstore.cli import app

    mapping, table = tmp_path / "m.yaml", tmp_path / "t.csv"
    mapping.write_text(_SURFACE + "  gamma: {definition: surface_energy, unit: J/m^2, orientation: {miller_column: hkl}}\n")
    table.write_text("metal,hkl,gamma\nCu,111,1.22\nCu,,1.40\n")
    result = CliRunner().invoke(app, ["ingest", "table", str(table), "--mapping", str(mapping)])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and "row 2, line 3, column 'hkl': gamma has a value (1.40) but its orientation (hkl) is blank" in lines[0]


def test_a_value_placed_by_another_target_of_its_column_is_not_an_error(engine):
    """Long form (tests/data/good/surface_long): each row fills one of three orientation kinds; the other
    targets' blank orientation cells are neither errors nor counted as blank values."""
    report = ingest_table(GOOD / "surface_long.csv", GOOD / "surface_long.yaml", engine=engine)
    assert (report.surface_inserted, report.missing, report.dropped_rows) == (5, 0, [])
