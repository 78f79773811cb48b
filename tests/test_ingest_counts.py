"""Counts from tables must be whole numbers (matstore.ingest.units.is_count, validating.whole_count).

A count is ``n_nearest_neighbour_pairs`` (the vacancy-cluster task's definition, mappable from a
table once in the vocabulary) or any definition whose canonical unit is pint's ``count``
(``matstore vocab add n_layers --unit count``).  ``3``, ``3.0``, ``3e0`` are 3; ``3.5``,
``3.0000001`` (beyond its written digits) and ``-1`` are refused in one line naming the file,
row, column and reason, nothing stored; other dimensionless quantities are not counts.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from matstore.ingest.errors import ParseError
from matstore.ingest.table import ingest_table
from matstore.ingest.units import is_count
from matstore.ingest.validating import whole_count
from tests.test_ingest_published_shapes import _vocab_add

KEYED = ("material: {formula: Cu, prototype: fcc}\nmethod: {name: EMT, kind: calculator}\nkey: {column: id}\n"
         "columns:\n  pairs: {definition: n_nearest_neighbour_pairs, unit: dimensionless}\n")
BULK = ("material: {column: el, prototype: fcc}\nmethod: {name: EMT, kind: calculator}\n"
        "columns:\n  layers: {definition: n_layers, unit: count}\n  A: {definition: zener_ratio, unit: dimensionless}\n")


@pytest.fixture
def store(user_vocabulary_engine):
    """The test store with the cluster task's count and a user count of unit ``count``; removed afterwards."""
    _vocab_add("n_nearest_neighbour_pairs", "--unit", "dimensionless", "--scope", "configuration")
    _vocab_add("n_layers", "--unit", "count", "--scope", "bulk")
    return user_vocabulary_engine


def _files(tmp_path, mapping: str, table: str):
    (tmp_path / "m.yaml").write_text(mapping)
    (tmp_path / "t.csv").write_text(table)
    return tmp_path / "t.csv", tmp_path / "m.yaml"


def _stored(engine) -> list[tuple[str, float]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT coalesce(c.key, 'bulk:' || d.name), v.value FROM ("
            " SELECT configuration_id AS mc, definition_id, value FROM configuration_property"
            " UNION ALL SELECT NULL, definition_id, value FROM bulk_property) v"
            " JOIN property_definition d ON d.id = v.definition_id"
            " LEFT JOIN material_configuration c ON c.id = v.mc ORDER BY 1, 2"))]


def test_whole_counts_written_any_way_are_stored_as_integers(store, tmp_path):
    table, mapping = _files(tmp_path, KEYED, "id,pairs\nV3a,3\nV3b,3.0\nV3c,3e0\nV2,1.000\nV3d,0\n")
    report = ingest_table(table, mapping, engine=store)
    assert report.configuration_inserted == 5
    assert _stored(store) == [("V2", 1.0), ("V3a", 3.0), ("V3b", 3.0), ("V3c", 3.0), ("V3d", 0.0)]


@pytest.mark.parametrize(("cell", "reason"), [
    ("3.5", "is not a whole number (0.5 from 4, beyond the digits written)"),
    ("3.0000001", "is not a whole number (1e-07 from 3, beyond the digits written)"),
    ("2.99", "is not a whole number (0.01 from 3, beyond the digits written)"),
    ("-1", "is negative"),
])
def test_a_count_that_is_not_whole_is_refused_in_one_line(store, tmp_path, cell, reason):
    table, mapping = _files(tmp_path, KEYED, f"id,pairs\nV3a,3\nV3b,{cell}\n")
    with pytest.raises(ParseError) as info:
        ingest_table(table, mapping, engine=store)
    assert str(info.value) == (f"{table}, row 2, line 3, column 'pairs': n_nearest_neighbour_pairs is a count "
                               f"(a whole number ≥ 0) but {cell!r} {reason}")
    assert _stored(store) == []


def test_a_count_unit_makes_a_count_and_other_dimensionless_values_are_not(store, tmp_path):
    table, mapping = _files(tmp_path, BULK, "el,layers,A\nCu,12,3.2\nNi,9.0,2.5\n")
    report = ingest_table(table, mapping, engine=store)
    assert report.bulk_inserted == 4
    assert sorted(v for k, v in _stored(store) if k == "bulk:n_layers") == [9.0, 12.0]
    assert sorted(v for k, v in _stored(store) if k == "bulk:zener_ratio") == [2.5, 3.2]
    table, mapping = _files(tmp_path, BULK, "el,layers,A\nAg,7.5,3.0\n")
    with pytest.raises(ParseError, match=r"t\.csv, row 1, line 2, column 'layers': n_layers is a count \(a whole number ≥ 0\) "
                                         r"but '7\.5' is not a whole number"):
        ingest_table(table, mapping, engine=store)


def test_whole_count_and_is_count():
    assert [whole_count(v, raw) for v, raw in [(3.0, "3"), (3.0, "3e0"), (3.0, "300"), (2.9999999999999996, "2.9999999999999996")]] \
        == [None, None, None, None]
    assert whole_count(3.5, "350") is not None  # 350 percent: 3.5 within ±0.005 is not whole
    assert whole_count(float("nan"), "nan") is None  # non-finite: on_invalid decides
    assert (is_count("n_nearest_neighbour_pairs", "dimensionless"), is_count("n_layers", "count"),
            is_count("zener_ratio", "dimensionless")) == (True, True, False)
