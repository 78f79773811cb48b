"""Column-wise validation of clean tables, and the two COPY paths of property values.

The column-wise path must give exactly what the row-by-row walk gives (values in the same
order, the same report) and hand every table it cannot decide to the walk.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session

import matstore.ingest.validating as validating
from matstore.ingest.reading import add_derived_columns, read_table
from matstore.ingest.table import ingest_table, load_mapping
from matstore.ingest.table_report import TableReport

GOOD = Path(__file__).parent / "data" / "good"

HEADER = "potential,element,a0_A,Ec_eV,c44_kbar,u_Ec"
CLEAN = ["P1,Cu,3.615,3.54,816,0.01", "P1,Ni,3.52,4.45,1250,", "P2,Cu,3.60,,820,0.02", "P2,Al,,,,"]
MAPPING = {
    "name": "columns",
    "material": {"column": "element", "prototype": "fcc"},
    "method": {"column": "potential", "kind": "interatomic_potential"},
    "columns": {"a0_A": {"definition": "lattice_constant", "unit": "angstrom"},
                "Ec_eV": {"definition": "cohesive_energy", "unit": "eV", "uncertainty_column": "u_Ec"},
                "c44_kbar": {"definition": "c44", "unit": "kbar"}},
}


def _write(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "table.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def _validate(path: Path, mapping, *, row_walk: bool, monkeypatch) -> tuple:
    """(values as plain tuples, report dict) or (error type, message)."""
    with monkeypatch.context() as patch:
        if row_walk:
            patch.setattr(validating, "_clean_table_values", lambda validator: None)
        parsed = load_mapping(mapping)
        report = TableReport(path=str(path), sha256="", mapping="")
        try:
            values = validating.parse_values(path, parsed, add_derived_columns(read_table(path, parsed), parsed, path=path), report)
        except Exception as exc:  # noqa: BLE001 - compared, not handled
            return type(exc).__name__, str(exc)
    plain = [tuple(getattr(v, k) for k in v.__slots__ if k != "entry") + (v.entry.column,) for v in values]
    return plain, report.to_dict()


VARIANTS = {
    "clean, blanks and an all-blank row": (CLEAN, {}),
    "unparsable cell": (CLEAN[:2] + ["P2,Cu,x3.60,,820,0.02"], {}),
    "implausible value (error)": (CLEAN[:1] + ["P1,Ni,3.52,-4.45,1250,"], {}),
    "implausible value (flag)": (CLEAN[:1] + ["P1,Ni,3.52,-4.45,1250,"], {"on_invalid": "flag"}),
    "non-finite uncertainty": (CLEAN[:1] + ["P1,Ni,3.52,4.45,1250,inf"], {}),
    "repeated row": (CLEAN + [CLEAN[0]], {}),
    "repeated row, keep_first": (CLEAN + [CLEAN[0]], {"on_duplicate": "keep_first"}),
    "conflicting value": (CLEAN + ["P1,Cu,3.7,3.54,816,0.01"], {}),
    "unknown element": (CLEAN[:1] + ["P1,Xx,3.52,4.45,1250,"], {}),
    "row flags": (CLEAN, {"row_flags": [{"column": "potential", "flag": "P2 marked", "values": ["P2"]}]}),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_column_wise_validation_matches_row_walk(tmp_path, monkeypatch, variant):
    rows, overrides = VARIANTS[variant]
    path = _write(tmp_path, rows)
    mapping = MAPPING | overrides
    assert _validate(path, mapping, row_walk=False, monkeypatch=monkeypatch) == \
        _validate(path, mapping, row_walk=True, monkeypatch=monkeypatch)


def test_column_wise_path_takes_clean_tables_only(tmp_path):
    parsed = load_mapping(MAPPING)
    clean = read_table(_write(tmp_path, CLEAN), parsed)
    report = TableReport(path="t", sha256="", mapping="")
    values = validating._clean_table_values(validating._Validator(tmp_path / "t", parsed, clean, report))
    assert values is not None and len(values) == 8
    assert (report.values, report.missing, [d["row"] for d in report.dropped_rows]) == (8, 4, [4])
    assert values[4].uncertainty is None and values[1].uncertainty == pytest.approx(0.01)
    assert values[2].value == pytest.approx(81.6)  # 816 kbar → GPa
    flagged = load_mapping(MAPPING | VARIANTS["row flags"][1])
    assert validating._clean_table_values(validating._Validator(tmp_path / "t", flagged, clean, report)) is None
    invalid = read_table(_write(tmp_path, VARIANTS["implausible value (flag)"][0]), parsed)
    assert validating._clean_table_values(validating._Validator(tmp_path / "t", parsed, invalid, report)) is None


def test_good_tables_validate_alike(monkeypatch):
    for table, mapping in (("small_table.csv", "small_table.yaml"), ("surface_long.csv", "surface_long.yaml"),
                           ("whitespace_table.txt", "whitespace_table.yaml"), ("invalid_values.csv", "invalid_values.yaml")):
        path, spec = GOOD / table, load_mapping(GOOD / mapping).raw
        assert _validate(path, spec, row_walk=False, monkeypatch=monkeypatch) == \
            _validate(path, spec, row_walk=True, monkeypatch=monkeypatch), table


def test_store_paths_count_duplicates(engine, tmp_path):
    """Stored source: staging + ON CONFLICT keeps what is stored; new source: repeated keys kept out, first kept."""
    from matstore import crud
    from matstore.ingest.storing import store_values

    path = _write(tmp_path, CLEAN)
    report = ingest_table(path, MAPPING, engine=engine)
    assert (report.inserted, report.duplicates) == (8, 0)
    parsed = load_mapping(MAPPING)
    values = validating.parse_values(path, parsed, read_table(path, parsed), TableReport(path="", sha256="", mapping=""))
    again = TableReport(path="", sha256="", mapping="")
    with Session(engine) as session:
        store_values(session, values, again, source_id=report.source_id, job_run_id=report.job_run_id)
        session.commit()
    assert (again.inserted, again.duplicates) == (0, 8)
    twice = TableReport(path="", sha256="", mapping="")
    with Session(engine) as session:
        source_id = crud.claim_source(session=session, kind="file", sha256="d" * 64)
        store_values(session, values + values, twice, source_id=source_id, job_run_id=report.job_run_id, new_source=True)
        session.commit()
    assert (twice.inserted, twice.duplicates) == (8, 8)
    with engine.connect() as conn:
        details = conn.execute(text("SELECT details FROM bulk_property WHERE source_id = :s ORDER BY id LIMIT 1"),
                               {"s": source_id}).scalar_one()
    assert details == {"column": "a0_A", "line": 2, "raw": "3.615", "row": 1, "unit": "angstrom"}
