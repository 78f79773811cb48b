"""Surfaces of non-cubic materials, 4-index (Miller–Bravais) facets, one value in two units within a file.

From a trial ingesting a Crystalium-shaped table (Tran et al., "Surface energies of elemental
crystals", Sci. Data 3, 160080 (2016): FCC, BCC and HCP elements; facets as "[1, 1, 0]" and
hexagonal "[1, 0, -1, 0]"; surface_energy in J/m² and in eV/Å²):

1. matstore's orientations are cubic (m-3m): a surface value of a material whose prototype is
   known not to be cubic (``hcp``, ``P6_3/mmc``, ``2H``, space group 194 …) is refused, one line,
   nothing stored; its bulk values are stored; an unrecognised prototype is assumed cubic.
2. A 4-index facet (a cell ``[0, 0, 0, 1]``, ``miller_columns: [h, k, i, l]``, ``miller: [0, 0, 0, 1]``)
   is refused saying it is a hexagonal Miller–Bravais facet.
3. Two columns of one row mapped to one definition agree within the store's relative tolerance
   (CONFLICT_RTOL = 1e-6): one value; a real disagreement is refused naming both columns, with
   digits enough to tell the values apart.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from matstore.ingest.errors import DuplicateRowError, MappingError, NonCubicSurfaceError, ParseError
from matstore.ingest.table import ingest_table
from matstore.ingest.validating import distinct_numbers, values_agree, written_precision
from matstore.orientation import (
    MillerBravaisError,
    crystal_system,
    miller_indices,
    non_cubic_system,
)
from matstore.schema.properties import CONFLICT_RTOL
from matstore.units import unit_registry

CUBIC = "surface orientations are cubic (m-3m) in matstore"
HEADER = "pretty_formula,spacegroup,miller_index,surface_energy,a"
#: Cu (fcc) then Mg (hcp, P6_3/mmc) in Crystalium's shape: 3-index facets as list strings.
ROWS = ['Cu,Fm-3m,"[1, 1, 1]",1.3,3.621', 'Cu,Fm-3m,"[1, 0, 0]",1.44859,3.621',
        'Mg,P6_3/mmc,"[0, 0, 1]",0.54,3.193', 'Mg,P6_3/mmc,"[1, 0, 0]",0.568037,3.193']


def _write(tmp_path, name: str, lines: list[str]):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _mapping(material: dict, columns: dict | None = None) -> dict:
    return {"material": material, "method": {"name": "DFT-PBE (Tran 2016)", "kind": "dft"},
            "columns": columns or {
                "surface_energy": {"definition": "surface_energy", "unit": "J/m^2",
                                   "orientation": {"miller_column": "miller_index"}},
                "a": {"definition": "lattice_constant", "unit": "angstrom"}}}


def _counts(engine) -> tuple[int, int, int, int]:
    """Rows in source, material, bulk_property, surface_property."""
    with engine.connect() as conn:
        return tuple(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()  # type: ignore[return-value]
                     for t in ("source", "material", "bulk_property", "surface_property"))


def _message(err, tmp_path) -> str:
    return str(err.value).replace(f"{tmp_path}/", "")


# --- 1. which prototypes are cubic ---------------------------------------------------------------

@pytest.mark.parametrize(("prototype", "system"), [
    ("fcc", "cubic"), ("bcc", "cubic"), ("sc", "cubic"), ("diamond", "cubic"), ("B2", "cubic"), ("CsCl", "cubic"),
    ("L1_2", "cubic"), ("rocksalt", "cubic"), ("rock salt", "cubic"), ("B1", "cubic"), ("zinc blende", "cubic"),
    ("B3", "cubic"), ("fluorite", "cubic"), ("C1", "cubic"), ("cubic perovskite", "cubic"), ("A15", "cubic"),
    ("Cu", "cubic"), ("W", "cubic"), ("Fm-3m", "cubic"), ("Im-3m", "cubic"), ("Fm3m", "cubic"), ("225", "cubic"),
    ("Fm-3m (225)", "cubic"), ("body-centred cubic", "cubic"),
    ("hcp", "hexagonal"), ("2H", "hexagonal"), ("2H-MoS2", "hexagonal"), ("wurtzite", "hexagonal"),
    ("P6_3/mmc", "hexagonal"), ("P63/mmc", "hexagonal"), ("P 6_3/m m c", "hexagonal"), ("194", "hexagonal"),
    ("#194", "hexagonal"), ("hcp (Mg)", "hexagonal"), ("hexagonal close-packed", "hexagonal"),
    ("L1_0", "tetragonal"), ("I4/mmm", "tetragonal"), ("tetragonal", "tetragonal"), ("R-3m", "trigonal"),
    ("rhombohedral", "trigonal"), ("Pnma", "orthorhombic"), ("P2_1/c", "monoclinic"), ("monazite", "monoclinic"),
    ("P-1", "triclinic"),
    ("unknown", None), ("perovskite", None), ("my structure", None), ("fcc/hcp", None), ("phase 1", None),
])
def test_crystal_system_of_prototypes(prototype, system):
    """Names, Strukturbericht designations, space-group symbols and numbers; unrecognised and ambiguous: None."""
    assert crystal_system(prototype) == system
    assert non_cubic_system(prototype) == (system if system not in (None, "cubic") else None)


def test_hcp_surfaces_are_refused_and_nothing_is_stored(engine, tmp_path):
    """Mg (P6_3/mmc) (0,0,1) would be stored as cubic (1,0,0): refused at row 3; Cu's rows are not stored either."""
    path = _write(tmp_path, "mg3.csv", [HEADER, *ROWS])
    with pytest.raises(NonCubicSurfaceError) as err:
        ingest_table(path, _mapping({"column": "pretty_formula", "prototype_column": "spacegroup"}), engine=engine)
    assert _message(err, tmp_path) == (
        "mg3.csv, row 3, line 4, column 'surface_energy': Mg (prototype P6_3/mmc) has a surface value of surface_energy: "
        f"{CUBIC}; P6_3/mmc is not cubic (hexagonal): store its bulk values, not its surfaces")
    assert _counts(engine) == (0, 0, 0, 0)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM job_run ORDER BY id DESC LIMIT 1")).scalar() == "failed"


def test_a_constant_hcp_prototype_and_a_constant_facet_are_refused(engine, tmp_path):
    """`prototype: hcp` with `miller: [0, 0, 1]` (the column-by-column path of a clean table): refused at row 1."""
    path = _write(tmp_path, "mg_basal.csv", ["element,gamma", "Mg,0.54", "Zn,0.35"])
    mapping = _mapping({"column": "element", "prototype": "hcp"},
                       {"gamma": {"definition": "surface_energy", "unit": "J/m^2", "miller": [0, 0, 1]}})
    with pytest.raises(NonCubicSurfaceError) as err:
        ingest_table(path, mapping, engine=engine)
    assert _message(err, tmp_path) == (
        "mg_basal.csv, row 1, line 2, column 'gamma': Mg (prototype hcp) has a surface value of surface_energy: "
        f"{CUBIC}; hcp is not cubic (hexagonal): store its bulk values, not its surfaces")
    assert _counts(engine) == (0, 0, 0, 0)


def test_bulk_values_of_hcp_and_surfaces_of_unknown_prototypes_are_stored(engine, tmp_path):
    """Bulk a of Mg (P6_3/mmc) is stored; a surface of prototype 'unknown' is assumed cubic, as before ((0,0,1) → (1,0,0))."""
    bulk = _write(tmp_path, "bulk.csv", ["pretty_formula,spacegroup,a", "Mg,P6_3/mmc,3.193", "Cu,Fm-3m,3.621"])
    report = ingest_table(bulk, _mapping({"column": "pretty_formula", "prototype_column": "spacegroup"},
                                         {"a": {"definition": "lattice_constant", "unit": "angstrom"}}), engine=engine)
    assert (report.bulk_inserted, report.surface_inserted) == (2, 0)
    surf = _write(tmp_path, "unknown.csv", ['pretty_formula,miller_index,surface_energy,a', 'Cu,"[0, 0, 1]",1.44859,3.621'])
    report = ingest_table(surf, _mapping({"column": "pretty_formula"}), engine=engine)
    assert (report.bulk_inserted, report.surface_inserted) == (1, 1)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT m.prototype, s.miller_h, s.miller_k, s.miller_l, p.value FROM surface_property p "
                                "JOIN surface s ON s.id = p.surface_id JOIN material m ON m.id = s.material_id")).one()
    assert tuple(row) == ("unknown", 1, 0, 0, pytest.approx(1.44859, rel=1e-15))


# --- 2. four-index facets --------------------------------------------------------------------------

@pytest.mark.parametrize("cell", ["[0, 0, 0, 1]", "(1 0 -1 0)", "10-10", "0001", "1;1;-2;0"])
def test_miller_bravais_cells_say_what_they_are(cell):
    with pytest.raises(MillerBravaisError) as err:
        miller_indices(cell)
    assert str(err.value) == (f"{cell!r} is a 4-index hexagonal (Miller–Bravais) facet (h k i l); {CUBIC}: "
                              "store a hexagonal material's bulk values, not its surfaces")


def test_a_four_index_cell_is_refused_in_one_line(engine, tmp_path):
    """A 4-index facet of an fcc-labelled row: the cell named, nothing stored."""
    path = _write(tmp_path, "hcp4.csv", [HEADER, ROWS[0], 'Mg,fcc,"[1, 0, -1, 0]",0.568037,3.193'])
    with pytest.raises(ParseError) as err:
        ingest_table(path, _mapping({"column": "pretty_formula", "prototype_column": "spacegroup"}), engine=engine)
    assert _message(err, tmp_path) == (
        "hcp4.csv, row 2, line 3, column 'miller_index': '[1, 0, -1, 0]' is a 4-index hexagonal (Miller–Bravais) facet "
        f"(h k i l); {CUBIC}: store a hexagonal material's bulk values, not its surfaces")
    assert _counts(engine) == (0, 0, 0, 0)


def test_four_miller_columns_are_refused_naming_the_mapping_key(engine, tmp_path):
    """`miller_columns: [h, k, i, l]` and `miller: [0, 0, 0, 1]`: the mapping file, line and key; nothing stored."""
    table = _write(tmp_path, "hcp4cols.csv", ["pretty_formula,h,k,i,l,surface_energy", "Mg,0,0,0,1,0.54"])
    mapping = tmp_path / "hcp4.yaml"
    mapping.write_text("name: hcp4\nmaterial: {column: pretty_formula}\nmethod: {name: t, kind: dft}\ncolumns:\n"
                       "  surface_energy:\n    definition: surface_energy\n    unit: J/m^2\n"
                       "    orientation: {miller_columns: [h, k, i, l]}\n")
    with pytest.raises(MappingError) as err:
        ingest_table(table, mapping, engine=engine)
    assert _message(err, tmp_path) == (
        "hcp4.yaml, line 8, column 'surface_energy': columns.surface_energy.orientation.miller_columns: 4 columns "
        f"['h', 'k', 'i', 'l'] are a 4-index hexagonal (Miller–Bravais) facet (h k i l); {CUBIC}: give 3 columns "
        "(h, k, l) of a cubic material; store a hexagonal material's bulk values, not its surfaces")
    constant = _mapping({"column": "pretty_formula"},
                        {"surface_energy": {"definition": "surface_energy", "unit": "J/m^2", "miller": [0, 0, 0, 1]}})
    with pytest.raises(MappingError) as err:
        ingest_table(table, constant, engine=engine)
    assert str(err.value) == (
        "column 'surface_energy': columns.surface_energy.miller: 4 indices [0, 0, 0, 1] are a 4-index hexagonal (Miller–Bravais) facet "
        f"(h k i l); {CUBIC}: give 3 indices (h, k, l) of a cubic material; store a hexagonal material's bulk values, "
        "not its surfaces")
    assert _counts(engine) == (0, 0, 0, 0)


# --- 3. one value in two units ---------------------------------------------------------------------

#: Cu's facets and J/m² values in the trial's table.
GAMMA = {"[1, 1, 1]": 1.3, "[1, 0, 0]": 1.44859, "[1, 1, 0]": 1.488396}
TWO_UNITS = {"surface_energy": {"definition": "surface_energy", "unit": "J/m^2",
                                "orientation": {"miller_column": "miller_index"}},
             "surface_energy_EV_PER_ANG2": {"definition": "surface_energy", "unit": "eV/angstrom^2",
                                            "orientation": {"miller_column": "miller_index"}}}


def _ev_per_a2(gamma_j_m2: float, digits: int = 6) -> float:
    """γ in eV/Å² by pint's own factor, rounded to ``digits`` significant digits as a published file would be."""
    ureg = unit_registry()
    return float(f"{ureg.Quantity(gamma_j_m2, 'J/m^2').to('eV/angstrom^2').magnitude:.{digits}g}")


def _two_unit_table(tmp_path, name: str, ev: dict[str, float]):
    lines = ["pretty_formula,miller_index,surface_energy,surface_energy_EV_PER_ANG2"]
    lines += [f'Cu,"{hkl}",{g},{ev[hkl]!r}' for hkl, g in GAMMA.items()]
    return _write(tmp_path, name, lines)


def test_two_units_of_one_value_within_the_tolerance_are_one_value(engine, tmp_path):
    """J/m² and eV/Å² (6 digits: 2.2e-7 … 3.1e-7 relative apart after pint's conversion): one value per facet, the J/m² one."""
    ev = {hkl: _ev_per_a2(g) for hkl, g in GAMMA.items()}
    assert ev == {"[1, 1, 1]": 0.0811396, "[1, 0, 0]": 0.0904139, "[1, 1, 0]": 0.0928984}
    report = ingest_table(_two_unit_table(tmp_path, "cu_two_units.csv", ev),
                          _mapping({"column": "pretty_formula", "prototype": "fcc"}, TWO_UNITS), engine=engine)
    assert (report.values, report.repeated, report.surface_inserted, report.skipped) == (3, 3, 3, [])
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT s.miller_h, s.miller_k, s.miller_l, p.value FROM surface_property p "
                                   "JOIN surface s ON s.id = p.surface_id ORDER BY p.value")).all()
    assert [tuple(r) for r in stored] == [(1, 1, 1, 1.3), (1, 0, 0, 1.44859), (1, 1, 0, 1.488396)]


def test_a_one_percent_disagreement_of_two_columns_is_refused_naming_both(engine, tmp_path):
    """(1,1,0) in eV/Å² 1 % above its J/m²: refused naming both columns of row 3; nothing stored."""
    ev = {hkl: _ev_per_a2(g * (1.01 if hkl == "[1, 1, 0]" else 1.0)) for hkl, g in GAMMA.items()}
    path = _two_unit_table(tmp_path, "cu_1pct.csv", ev)
    with pytest.raises(DuplicateRowError) as err:
        ingest_table(path, _mapping({"column": "pretty_formula", "prototype": "fcc"}, TWO_UNITS), engine=engine)
    assert _message(err, tmp_path) == (
        "cu_1pct.csv, row 3, line 4, column 'surface_energy_EV_PER_ANG2': conflicting values: surface_energy of Cu (fcc) "
        "by DFT-PBE (Tran 2016) on (1,1,0) is 1.50328 in column 'surface_energy_EV_PER_ANG2' but 1.4884 in column "
        "'surface_energy' of the same row (apart by more than their written digits and relative 1e-06); fix the table "
        "or the mapping (map one of the two if "
        "one is the other converted and rounded), or set `on_duplicate: keep_first` to keep column 'surface_energy''s")
    assert _counts(engine) == (0, 0, 0, 0)


def test_six_digit_rounding_is_one_value_and_a_gap_beyond_the_digits_is_shown_with_more(engine, tmp_path):
    """W (1,1,0) 3.23 J/m² as 0.201601 eV/Å² (6 digits) is 1.27e-6 apart, beyond 1e-6 but within
    the half-unit of 0.201601's last digit (2.5e-6): one value.  Written with every digit
    (3.230000000, 0.2016010; Mo) the same gap is a conflict, its numbers told apart."""
    path = _write(tmp_path, "w.csv", ["pretty_formula,miller_index,surface_energy,surface_energy_EV_PER_ANG2",
                                      f'W,"[1, 1, 0]",3.23,{_ev_per_a2(3.23)!r}'])
    report = ingest_table(path, _mapping({"column": "pretty_formula", "prototype": "bcc"}, TWO_UNITS), engine=engine)
    assert (report.surface_inserted, report.repeated) == (1, 1)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT value FROM surface_property")).scalar() == 3.23
    exact = _write(tmp_path, "mo_exact.csv", ["pretty_formula,miller_index,surface_energy,surface_energy_EV_PER_ANG2",
                                              'Mo,"[1, 1, 0]",3.230000000,0.2016010'])
    with pytest.raises(DuplicateRowError) as err:
        ingest_table(exact, _mapping({"column": "pretty_formula", "prototype": "bcc"}, TWO_UNITS), engine=engine)
    assert ": surface_energy of Mo (bcc) by DFT-PBE (Tran 2016) on (1,1,0) is 3.23000411591034 in column " \
           "'surface_energy_EV_PER_ANG2' but 3.23 in column 'surface_energy' of the same row" in str(err.value)


def test_written_precision_of_a_cell():
    assert written_precision("0.201601") == pytest.approx(5e-7 / 0.201601)
    assert written_precision("3.23") == pytest.approx(0.005 / 3.23)
    assert written_precision("2.01601e-1") == pytest.approx(5e-7 / 0.201601)
    assert written_precision("3.230000000") == pytest.approx(5e-10 / 3.23)
    assert written_precision("1.3(2)") == written_precision("0") == written_precision("nan") == 0.0


def test_agreement_and_printing_rules():
    """values_agree is |a − b| ≤ CONFLICT_RTOL·max(|a|,|b|); distinct_numbers adds digits only where 6 do not differ."""
    assert CONFLICT_RTOL == 1e-6
    assert values_agree(1.3, 1.3 * (1 + 0.9e-6)) and not values_agree(1.3, 1.3 * (1 + 1.1e-6))
    assert not values_agree(float("nan"), float("nan")) and values_agree(float("inf"), float("inf"))
    assert distinct_numbers(1.313, 1.3) == ("1.313", "1.3")
    assert distinct_numbers(1.3000026, 1.3) == ("1.3000026", "1.3")
    assert distinct_numbers(0.1 + 0.2, 0.3) == ("0.30000000000000004", "0.29999999999999999")
