"""Defects found by a new-user trial: the fit's method error, ``matstore sql`` COPY and CSV header,
the dashboard's flag filter and search, and float noise of unit conversion."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from matstore.db import COPY_REFUSAL, read_only_connection, stream_statement
from matstore.ingest.table import ingest_table
from matstore.ingest.validating import to_canonical
from matstore.models.dataset import DatasetError, build_training_set
from tests.test_cli_db import run_cli, server_env

DFT = "DFT-PBE (Tran 2016)"
EAM = "EAM_Dynamo_Mishin_2001_Cu"

#: Bulk values of two methods (Cu PBE a = 3.63 Å, C44 in GPa; Mishin 2001 EAM Cu a = 3.615 Å).
BULK_CSV = f"""element,method,a_A,c44_GPa
Cu,{DFT},3.63,75.4
Ni,{DFT},3.52,125.0
Cu,{EAM},3.615,76.2
"""
BULK_MAPPING = {
    "name": "trial_bulk", "material": {"column": "element", "prototype": "fcc"},
    "method": {"column": "method", "kind": "other"},
    "columns": {"a_A": {"definition": "lattice_constant", "unit": "angstrom"},
                "c44_GPa": {"definition": "c44", "unit": "GPa"}},
}

#: A paper with a typo (36.15 Å for 3.615 Å), kept flagged under the DFT method: ingested last, so newest.
TYPO_CSV = f"element,method,a_A\nCu,{DFT},36.15\n"
TYPO_MAPPING = {
    "name": "typo_paper", "material": {"column": "element", "prototype": "fcc"},
    "method": {"column": "method", "kind": "other"}, "on_invalid": "flag",
    "columns": {"a_A": {"definition": "lattice_constant", "unit": "angstrom"}},
}

#: Surface energies in mJ/m² (Mishin 2001 EAM Cu: γ(111) 1239, γ(100) 1345, γ(110) 1475 mJ/m²) and
#: two values whose product with 0.001 carries float noise (830 → 0.8300000000000001, 2280 → 2.2800000000000002);
#: surface stress in N/m (factor 1: stored as given, noise included).
SURFACE_CSV = f"""element,method,hkl,gamma_mJm2,gamma_err_mJm2,tau_Nm
Cu,{EAM},111,1239,3,0.30000000000000004
Cu,{EAM},(1 0 0),1345,,
Cu,{EAM},110,1475,,
Al,{EAM},111,830,,
Ni,{EAM},100,2280,,
"""
SURFACE_MAPPING = {
    "name": "trial_surface", "material": {"column": "element", "prototype": "fcc"},
    "method": {"column": "method", "kind": "interatomic_potential"},
    "columns": {
        "gamma_mJm2": {"definition": "surface_energy", "unit": "mJ/m^2", "orientation": {"miller_column": "hkl"},
                       "uncertainty_column": "gamma_err_mJm2"},
        "tau_Nm": {"definition": "surface_stress", "unit": "N/m", "orientation": {"miller_column": "hkl"}},
    },
}


def _ingest(engine, tmp_path: Path, name: str, csv_text: str, mapping: dict) -> None:
    path = tmp_path / f"{name}.csv"
    path.write_text(csv_text)
    ingest_table(path, mapping, engine=engine)


@pytest.fixture
def store(engine, tmp_path: Path):  # noqa: ANN201
    """The test store with the bulk, typo and surface tables above."""
    _ingest(engine, tmp_path, "bulk", BULK_CSV, BULK_MAPPING)
    _ingest(engine, tmp_path, "typo", TYPO_CSV, TYPO_MAPPING)
    _ingest(engine, tmp_path, "surface", SURFACE_CSV, SURFACE_MAPPING)
    return engine


def _ids(engine) -> dict[str, int]:  # noqa: ANN001
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT formula AS name, id FROM material UNION ALL SELECT name, id FROM method")).all()
    return {r.name: r.id for r in rows}


# --- 1. the fit's error for a method that matches nothing ----------------------------------

def test_unknown_method_lists_stored_methods_and_a_pattern(store) -> None:  # noqa: ANN001
    for given in ("DFT", "dft"):
        with pytest.raises(DatasetError) as caught:
            build_training_set(store, target="c44", features=["lattice_constant"], methods=[given])
        assert str(caught.value) == (
            f"no stored values of 'c44' for methods ['{given}']; methods with values of 'c44', closest first: "
            f"'{DFT}', '{EAM}'; --method takes exact names or SQL LIKE patterns with % (case-sensitive) "
            "(did you mean 'DFT%'?)")
    with pytest.raises(DatasetError, match=r"\(did you mean '%PBE%'\?\)$"):
        build_training_set(store, target="c44", features=["lattice_constant"], methods=["pbe"])
    with pytest.raises(DatasetError, match=r"\(did you mean 'EAM_Dynamo%' or '%PBE%'\?\)$"):
        build_training_set(store, target="c44", features=["lattice_constant"], methods=["eam_dynamo", "pbe"])
    with pytest.raises(DatasetError, match=r"closest first: 'EAM_Dynamo_Mishin_2001_Cu', 'DFT-PBE \(Tran 2016\)'; "
                                           r"--method takes exact names or SQL LIKE patterns with % \(case-sensitive\)$"):
        build_training_set(store, target="c44", features=["lattice_constant"], methods=["EAM_Mishin"])
    # the suggested pattern works
    table = build_training_set(store, target="c44", features=["lattice_constant"], methods=["DFT%"]).table
    assert sorted(table["material"]) == ["Cu", "Ni"] and set(table["method"]) == {DFT}
    assert table.set_index("material").loc["Cu", "lattice_constant"] == 3.63  # not the flagged 36.15


def test_no_method_has_the_target(store) -> None:  # noqa: ANN001
    with pytest.raises(DatasetError) as caught:
        build_training_set(store, target="c11", features=["lattice_constant"], methods=["DFT"])
    assert str(caught.value) == "no stored values of 'c11' for methods ['DFT']: no method has a value of 'c11'"


def test_fit_cli_prints_the_method_error_on_one_line(store, database_url: str) -> None:  # noqa: ANN001
    proc = run_cli("fit", "--name", "c44_dft", "--target", "c44", "--features", "lattice_constant", "--method", "dft",
                   env=server_env(database_url), check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"error: no stored values of 'c44' for methods ['dft']; methods with values of 'c44', closest first: "
        f"'{DFT}', '{EAM}'; --method takes exact names or SQL LIKE patterns with % (case-sensitive) "
        "(did you mean 'DFT%'?)"]


# --- 2. matstore sql: COPY, and the CSV header of a query refused at its first fetch --------

@pytest.mark.parametrize("statement", ["COPY material TO STDOUT", "  copy (SELECT 1) TO STDOUT",
                                       "/* all */ -- dump\n COPY material TO STDOUT",
                                       "/* nested /* comment */ */ COPY material TO STDOUT"])
def test_sql_refuses_copy_in_one_line(engine, database_url: str, statement: str) -> None:  # noqa: ANN001
    proc = run_cli("sql", statement, "--csv", env=server_env(database_url), check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [f"error: {COPY_REFUSAL}"]
    assert COPY_REFUSAL == ('COPY is not supported by matstore sql: run the query itself and add --csv, '
                            'e.g. matstore sql "SELECT * FROM material" --csv > material.csv')


def test_copy_the_server_refuses_keeps_its_reason(engine, database_url: str) -> None:  # noqa: ANN001
    """Least privilege unchanged: the reader may not write the table, so COPY FROM fails on the server."""
    proc = run_cli("sql", "COPY material FROM STDIN", env=server_env(database_url), check=False)
    assert proc.returncode == 1 and proc.stderr.splitlines() == ["error: permission denied for table material"]


def test_copy_to_stdout_leaves_a_usable_engine(engine) -> None:  # noqa: ANN001
    """The server starts a COPY TO STDOUT; its connection is dropped and the engine's next one works."""
    with pytest.raises(ValueError, match="^COPY is not supported by matstore sql"), read_only_connection(engine) as conn:
        stream_statement(conn, "COPY material TO STDOUT")
    with read_only_connection(engine) as conn:
        rows = stream_statement(conn, "SELECT 1 AS one")
        assert rows.columns == ["one"] and list(rows.batches) == [[(1,)]]


@pytest.mark.parametrize(("statement", "message"), [
    ("SELECT nextval('material_id_seq')", "error: permission denied for sequence material_id_seq"),
    ("SELECT set_config('transaction_read_only', 'off', true)",
     "error: cannot set transaction read-write mode inside a read-only transaction"),
])
def test_sql_csv_header_only_after_the_first_row(engine, database_url: str, statement: str, message: str) -> None:  # noqa: ANN001
    proc = run_cli("sql", statement, "--csv", env=server_env(database_url), check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [message]
    empty = run_cli("sql", "SELECT 1 AS a WHERE false", "--csv", env=server_env(database_url))
    assert empty.stdout.splitlines() == ["a"]  # no rows: the header alone, at the end of the result


# --- 3. dashboard queries: unflagged values, search by orientation and symbol ---------------

@pytest.fixture
def queries(store, database_url: str) -> Iterator:  # noqa: ANN001
    from matstore.dashboard import queries as q
    from tests.dashboard_fixtures import restore, use_store

    saved = use_store(database_url)
    q.clear_caches()
    try:
        yield q
    finally:
        q.clear_caches()
        restore(saved)


def test_lattice_constant_and_single_values_are_unflagged(queries, store) -> None:  # noqa: ANN001
    ids = _ids(store)
    with store.connect() as conn:
        flagged = conn.execute(text("SELECT value, flag FROM bulk_property WHERE flag IS NOT NULL")).one()
    assert flagged.value == 36.15 and flagged.flag.startswith("implausible: lattice_constant = 36.15 angstrom > 20")
    same = queries.lattice_constant(material_id=ids["Cu"], method_id=ids[DFT])
    assert same.to_dict("records") == [{"value": 3.63, "unit": "angstrom", "method": DFT, "same_method": True}]
    other = queries.lattice_constant(material_id=ids["Cu"], method_id=None)
    assert other["value"].tolist() == [3.615]  # the newest unflagged (EAM table), not 36.15
    chosen = queries.feature_values(material_id=ids["Cu"], method_id=ids[DFT], names=("lattice_constant", "c44"))
    assert dict(zip(chosen["property"], chosen["value"], strict=True)) == {"lattice_constant": 3.63, "c44": 75.4}
    assert chosen["flag"].isna().all()
    compared = queries.bulk_comparison(material_id=ids["Cu"], method_ids=(ids[DFT], ids[EAM]))
    assert sorted(compared.query("property == 'lattice_constant'")["value"]) == [3.615, 3.63]
    pair = queries.bulk_pair(x="lattice_constant", y="c44")
    assert pair.set_index(["material", "method"]).loc[("Cu", DFT), "x"] == 3.63
    # the flagged value is still listed where values are listed with their flag
    listed = queries.bulk_values(material_ids=(ids["Cu"],), method_ids=(ids[DFT],))
    assert sorted(listed["value"]) == [3.63, 36.15, 75.4]


def _found(queries, search: str, scope: str = "surface") -> list[tuple]:  # noqa: ANN001
    found = queries.search_values(search=search, scope=scope)
    return sorted(zip(found["material"], found["property"], found["orientation"], strict=True))


def test_search_by_orientation_symbol_and_words(queries) -> None:  # noqa: ANN001
    cu_111 = [("Cu", "surface_energy", "(1,1,1)"), ("Cu", "surface_stress", "(1,1,1)")]
    all_111 = [("Al", "surface_energy", "(1,1,1)"), *cu_111]
    for search in ("(111)", "111", "1 1 1", "(1 1 1)", "(1,1,1)", "{111}"):
        assert _found(queries, search) == all_111, search
    assert _found(queries, "Cu 111") == cu_111
    assert _found(queries, "Cu 1 1 1") == cu_111
    assert _found(queries, "-1 0 0") == [("Cu", "surface_energy", "(1,0,0)"), ("Ni", "surface_energy", "(1,0,0)")]
    gamma = [("Al", "surface_energy", "(1,1,1)"), ("Cu", "surface_energy", "(1,0,0)"),
             ("Cu", "surface_energy", "(1,1,0)"), ("Cu", "surface_energy", "(1,1,1)"),
             ("Ni", "surface_energy", "(1,0,0)")]
    assert _found(queries, "gamma") == gamma and _found(queries, "γ") == gamma
    assert _found(queries, "tau") == [("Cu", "surface_stress", "(1,1,1)")]
    assert _found(queries, "Cu gamma 110") == [("Cu", "surface_energy", "(1,1,0)")]
    assert _found(queries, "Cu surface energy") == gamma[1:4]  # words are ANDed, each a substring
    assert _found(queries, "Cu 211") == [] and _found(queries, "Cu nosuchword") == []
    # bulk values: symbols and names (C44 by symbol; no orientation there)
    assert [r[:2] for r in _found(queries, "Cu C44", scope="bulk")] == [("Cu", "c44"), ("Cu", "c44")]
    for search in ("'; DROP TABLE material; --", "%", "\\", "c_1", "(1%1)"):
        assert queries.search_values(search=search).empty, search


# --- 4. unit conversion: no float noise of the multiplication ------------------------------

def test_converted_values_are_rounded_to_15_digits(store) -> None:  # noqa: ANN001
    with store.connect() as conn:
        rows = conn.execute(text(
            "SELECT m.formula, su.miller_h, su.miller_k, su.miller_l, d.name, p.value, p.uncertainty "
            "FROM surface_property p JOIN surface su ON su.id = p.surface_id JOIN material m ON m.id = su.material_id "
            "JOIN property_definition d ON d.id = p.definition_id")).all()
    stored = {(r.formula, (r.miller_h, r.miller_k, r.miller_l), r.name): (r.value, r.uncertainty) for r in rows}
    assert stored == {
        ("Cu", (1, 1, 1), "surface_energy"): (1.239, 0.003),
        ("Cu", (1, 0, 0), "surface_energy"): (1.345, None),
        ("Cu", (1, 1, 0), "surface_energy"): (1.475, None),
        ("Al", (1, 1, 1), "surface_energy"): (0.83, None),  # 830 × 0.001 is 0.8300000000000001
        ("Ni", (1, 0, 0), "surface_energy"): (2.28, None),  # 2280 × 0.001 is 2.2800000000000002
        ("Cu", (1, 1, 1), "surface_stress"): (0.30000000000000004, None),  # factor 1: as given
    }
    assert 830 * 0.001 == 0.8300000000000001 and 2280 * 0.001 == 2.2800000000000002


def test_row_by_row_path_rounds_too(engine, tmp_path: Path) -> None:  # noqa: ANN001
    """A table with a flagged value is validated row by row: the same rounding applies."""
    mapping = {**SURFACE_MAPPING, "name": "flagged_surface", "on_invalid": "flag"}
    _ingest(engine, tmp_path, "flagged", f"element,method,hkl,gamma_mJm2,gamma_err_mJm2,tau_Nm\n"
                                         f"Al,{EAM},111,830,30,\nAg,{EAM},111,-5,,\n", mapping)
    with engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT m.formula, p.value FROM surface_property p JOIN surface su "
                                      "ON su.id = p.surface_id JOIN material m ON m.id = su.material_id")).all())
        u = conn.execute(text("SELECT uncertainty FROM surface_property WHERE flag IS NULL")).scalar_one()
    assert rows == {"Al": 0.83, "Ag": -0.005} and u == 0.03


def test_to_canonical_equals_formatting_to_15_digits() -> None:
    rng = np.random.default_rng(7)
    numbers = np.concatenate([rng.uniform(0, 3000, 20000), np.round(rng.uniform(-10, 10, 20000), 4),
                              rng.lognormal(0, 30, 20000), [0.0, -0.0, np.nan, np.inf, 1e-300, 830, 2280]])
    for factor in (0.001, 16.02176634, 0.0103642697, 0.1, 1e9, 1 / 3):
        with np.errstate(over="ignore"):
            expected = np.array([float(f"{x * factor:.15g}") for x in numbers.tolist()])
            got = to_canonical(numbers, factor)
            product = numbers * factor
        assert np.array_equal(got, expected, equal_nan=True) and np.array_equal(np.signbit(got), np.signbit(expected))
        normal = np.isfinite(product) & (np.abs(product) > 1e-290)
        # half a unit in the 15th digit (5e-15 relative) and the float's own rounding of the result (2.2e-16)
        assert np.max(np.abs(got[normal] - product[normal]) / np.abs(product[normal])) < 5.3e-15
    noisy = np.array([0.1 + 0.2, 830 * 0.001])
    assert to_canonical(noisy, 1.0) is noisy  # factor exactly 1: untouched
    assert to_canonical(830.0, 0.001) == 0.83 and to_canonical(2280.0, 0.001) == 2.28
