"""Per-material columns of a per-facet table mapped alone (the Crystalium layout).

Materials Project's Crystalium table (Tran et al., "Surface energies of elemental crystals",
Sci. Data 3, 160080 (2016)) gives one row per facet and repeats each element's bulk columns
on every row.  A mapping of the bulk columns only (no Miller or surface columns) reads rows
whose mapped cells repeat: those of one material that agree are one value, stored once, and
the report says how many rows were merged; a disagreement is refused naming both rows, the
column and both numbers, nothing stored; a row whose every cell repeats another's is still a
copy; ``on_duplicate: keep_first`` works as documented; the surface mapping of the same table
is unchanged.
"""

from __future__ import annotations

import pytest
import yaml
from sqlalchemy import text
from typer.testing import CliRunner

from matstore.ingest.errors import DuplicateRowError
from matstore.ingest.table import ingest_table

HEADER = "material_id,pretty_formula,miller_index,surface_energy,lattice_constant,cohesive_energy,c11"
#: element → (lattice constant Å, cohesive energy eV/atom, C11 GPa), then three facets' γ (J/m²).
BULK = {"Cu": ("3.621", "3.49", "176.0"), "Ag": ("4.16", "2.83", "113.0"), "Ni": ("3.518", "5.03", "276.0")}
GAMMA = {"Cu": ("1.34", "1.47", "1.56"), "Ag": ("0.76", "0.82", "0.87"), "Ni": ("1.92", "2.21", "2.29")}
FACETS = ('"[1, 1, 1]"', '"[1, 0, 0]"', '"[1, 1, 0]"')
BULK_COLUMNS = {"lattice_constant": {"definition": "lattice_constant", "unit": "angstrom"},
                "cohesive_energy": {"definition": "cohesive_energy", "unit": "eV/atom"},
                "c11": {"definition": "c11", "unit": "GPa"}}
SURFACE_COLUMN = {"surface_energy": {"definition": "surface_energy", "unit": "J/m^2",
                                     "orientation": {"miller_column": "miller_index"}}}
NOTE = ("9 rows → 3 (27 values → 9): 6 rows only repeat values of earlier rows of their material; "
        "18 repeats of the same value (within relative 1e-06) merged, stored once")


def _rows() -> list[str]:
    return [f"mp-{i},{el},{facet},{GAMMA[el][k]},{','.join(BULK[el])}"
            for i, el in enumerate(BULK) for k, facet in enumerate(FACETS)]


def _write(tmp_path, rows: list[str], name: str = "crystalium.csv"):
    path = tmp_path / name
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def _mapping(tmp_path, columns: dict, **extra) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"material": {"column": "pretty_formula", "prototype": "fcc"},
                                    "method": {"name": "DFT-PBE (Tran 2016)", "kind": "dft"},
                                    "columns": columns, **extra}, sort_keys=False))
    return str(path)


def _bulk(engine) -> dict[tuple[str, str], float]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT m.formula, d.name, b.value FROM bulk_property b JOIN material m ON m.id = b.material_id "
                                 "JOIN property_definition d ON d.id = b.definition_id")).all()
    return {(f, n): v for f, n, v in rows}


def _counts(engine) -> tuple[int, ...]:
    """Rows in source, material, bulk_property, surface_property."""
    with engine.connect() as conn:
        return tuple(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                     for t in ("source", "material", "bulk_property", "surface_property"))


def test_bulk_columns_alone_are_stored_once_per_material(engine, tmp_path):
    report = ingest_table(_write(tmp_path, _rows()), _mapping(tmp_path, BULK_COLUMNS), engine=engine)
    assert (report.rows, report.values, report.repeated, report.merged_rows) == (9, 9, 18, 6)
    assert (report.bulk_inserted, report.surface_inserted, report.dropped_rows, report.skipped) == (9, 0, [], [])
    assert report.notes == [NOTE]
    assert _counts(engine) == (1, 3, 9, 0)
    stored = _bulk(engine)
    assert stored[("Cu", "lattice_constant")] == 3.621
    assert stored[("Ag", "c11")] == 113.0
    assert stored[("Ni", "cohesive_energy")] == 5.03
    with engine.connect() as conn:
        summary = conn.execute(text("SELECT summary FROM job_run WHERE id = :i"), {"i": report.job_run_id}).scalar_one()
    assert (summary["merged_rows"], summary["repeated"], summary["notes"]) == (6, 18, [NOTE])


def test_the_cli_prints_the_merge(engine, tmp_path):
    from matstore.cli import app

    result = CliRunner().invoke(app, ["ingest", "table", str(_write(tmp_path, _rows())),
                                      "--mapping", _mapping(tmp_path, BULK_COLUMNS)])
    assert result.exit_code == 0, result.output
    assert "note (crystalium.csv): 9 rows → 3 (27 values → 9)" in result.output
    assert _counts(engine) == (1, 3, 9, 0)


def test_the_surface_mapping_of_the_same_table_is_unchanged(engine, tmp_path):
    report = ingest_table(_write(tmp_path, _rows()), _mapping(tmp_path, {**BULK_COLUMNS, **SURFACE_COLUMN}), engine=engine)
    assert (report.values, report.repeated, report.merged_rows) == (18, 18, 0)
    assert (report.bulk_inserted, report.surface_inserted, report.dropped_rows, report.notes) == (9, 9, [], [])
    assert _bulk(engine)[("Ag", "lattice_constant")] == 4.16


def test_a_disagreeing_repeat_is_refused_naming_both_rows_and_nothing_is_stored(engine, tmp_path):
    rows = _rows()
    rows[4] = rows[4].replace(",113.0", ",114.0")  # Ag (1,0,0): C11 114 where rows 4 and 6 say 113
    with pytest.raises(DuplicateRowError) as info:
        ingest_table(_write(tmp_path, rows), _mapping(tmp_path, BULK_COLUMNS), engine=engine)
    assert str(info.value) == (
        f"{tmp_path}/crystalium.csv, row 5, line 6, column 'c11': conflicting values: c11 of Ag (fcc) by DFT-PBE (Tran 2016) "
        "is 114 here but 113 in row 4 (line 5); fix the table, or set `on_duplicate: keep_first` to keep row 4's")
    assert _counts(engine) == (0, 0, 0, 0)


def test_rows_apart_by_more_than_the_store_tolerance_are_refused(engine, tmp_path):
    """Values of different rows keep the store's 1e-6 (validating.repeat_agrees): 3.621 vs 3.62101 (2.8e-6) is refused,
    3.621 vs 3.6210000001 (2.8e-11) is one value."""
    rows = _rows()
    rows[1] = rows[1].replace(",3.621,", ",3.6210000001,")
    report = ingest_table(_write(tmp_path, rows), _mapping(tmp_path, BULK_COLUMNS), engine=engine)
    assert (report.merged_rows, report.bulk_inserted) == (6, 9)
    assert _bulk(engine)[("Cu", "lattice_constant")] == 3.621
    rows[1] = rows[1].replace(",3.6210000001,", ",3.62101,")
    with pytest.raises(DuplicateRowError, match=r"row 2, line 3, column 'lattice_constant': conflicting values: "
                                                r"lattice_constant of Cu \(fcc\) by DFT-PBE \(Tran 2016\) is 3\.62101 here but 3\.621 in row 1"):
        ingest_table(_write(tmp_path, rows, "other.csv"), _mapping(tmp_path, BULK_COLUMNS), engine=engine)


def test_a_row_copied_entirely_is_still_refused(engine, tmp_path):
    rows = _rows()
    rows.insert(2, rows[1])  # Cu (1,0,0) twice, rows 2 and 3: every cell, mapped or not; the message names row 2
    with pytest.raises(DuplicateRowError) as info:
        ingest_table(_write(tmp_path, rows), _mapping(tmp_path, BULK_COLUMNS), engine=engine)
    assert str(info.value) == (
        f"{tmp_path}/crystalium.csv, row 3, line 4, column 'lattice_constant': duplicated row: lattice_constant of Cu (fcc) "
        "by DFT-PBE (Tran 2016) is already given in row 2 (line 3) and this row repeats it entirely; set "
        "`on_duplicate: keep_first` to keep the first")
    assert _counts(engine) == (0, 0, 0, 0)


def test_keep_first_keeps_the_first_and_lists_the_rest_as_skipped(engine, tmp_path):
    rows = _rows()
    rows[4] = rows[4].replace(",113.0", ",114.0")
    report = ingest_table(_write(tmp_path, rows), _mapping(tmp_path, BULK_COLUMNS, on_duplicate="keep_first"), engine=engine)
    assert (report.bulk_inserted, report.repeated, report.merged_rows, len(report.skipped)) == (9, 0, 0, 18)
    assert report.duplicate_rows == {2, 3, 5, 6, 8, 9}
    assert [d["row"] for d in report.dropped_rows] == [2, 3, 5, 6, 8, 9]
    assert report.skipped[8]["reason"] == ("duplicate: c11 of Ag (fcc) by DFT-PBE (Tran 2016) is already given in row 4 "
                                           "(first value 113; on_duplicate: keep_first)")
    assert _bulk(engine)[("Ag", "c11")] == 113.0


def test_hcp_bulk_values_of_a_crystalium_table_go_in_without_its_surfaces(engine, tmp_path):
    """The non-cubic refusal says to store Mg's bulk values: its bulk columns mapped alone now go in."""
    rows = ['mp-153,Mg,"[0, 0, 1]",0.54,3.193,1.5,63.5', 'mp-153,Mg,"[1, 0, -1, 0]",0.568037,3.193,1.5,63.5']
    mapping = {**BULK_COLUMNS}
    del mapping["lattice_constant"]  # Crystalium's a of an hcp element is not a cubic lattice constant
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"material": {"column": "pretty_formula", "prototype": "hcp"},
                                    "method": {"name": "DFT-PBE (Tran 2016)", "kind": "dft"}, "columns": mapping}))
    report = ingest_table(_write(tmp_path, rows), str(path), engine=engine)
    assert (report.bulk_inserted, report.repeated, report.merged_rows) == (2, 2, 1)
    assert _bulk(engine) == {("Mg", "cohesive_energy"): 1.5, ("Mg", "c11"): 63.5}
