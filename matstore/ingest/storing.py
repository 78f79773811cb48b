"""Storing validated table values: materials, methods, surfaces and configurations, then the values.

Everything happens in the caller's transaction (one per source).  Entities are resolved in
bulk (one statement per kind, see :mod:`matstore.crud`); values go through one binary COPY per
property table (:mod:`matstore.ingest.property_copy`): straight into the table for a source
claimed in the same transaction (no stored value can conflict, and values repeating a key
are kept out here, the first kept, as ``ON CONFLICT`` would), else through a staging table and one
``INSERT … ON CONFLICT DO NOTHING``.  Either way the table's foreign-key checks, one per
referenced column and row, are most of the time (``docs/benchmarks.md`` §2).
"""

from __future__ import annotations

from collections import defaultdict
from functools import lru_cache
from json.encoder import encode_basestring as _json_string  # type: ignore[attr-defined]
from typing import Any

from matstore import crud
from matstore.ingest.property_copy import copy_insert, copy_rows, json_text
from matstore.ingest.table_report import TableReport
from matstore.ingest.validating import Value, paused_gc, row_firsts

_VALUE_COLUMNS = ("definition_id", "value", "uncertainty", "flag", "source_id", "job_run_id", "details")


def _entities(session: Any, values: list[Value], source_id: int, job_run_id: int) -> tuple[dict, dict, dict, dict]:
    firsts = row_firsts(values)  # one value per row: a row's values share material, method and key
    materials: dict[tuple[str, str], int] = {}
    for v in firsts:
        if (v.formula, v.prototype) not in materials:
            materials[v.formula, v.prototype] = crud.get_or_create_material(session=session, formula=v.formula, prototype=v.prototype)
    methods = crud.get_or_create_methods(session=session, methods=[(v.method, v.method_kind, v.potential) for v in firsts])
    surfaces = crud.get_or_create_surfaces(session=session, surfaces=[
        (materials[v.formula, v.prototype], v.orientation) for v in values if v.orientation is not None])
    keys: dict[tuple[int, int], list[str]] = defaultdict(list)
    for v in firsts:
        if v.key is not None:
            keys[materials[v.formula, v.prototype], methods[v.method, v.method_kind, v.potential]].append(v.key)
    configurations = {}
    for (material_id, method_id), group in keys.items():
        ids = crud.get_or_create_configurations(session=session, material_id=material_id, method_id=method_id,
                                                keys=group, source_id=source_id, job_run_id=job_run_id)
        configurations.update({(material_id, method_id, k): i for k, i in ids.items()})
    return materials, methods, surfaces, configurations


def store_values(session: Any, values: list[Value], report: TableReport, *, source_id: int, job_run_id: int,
                 new_source: bool = False) -> None:
    """Store ``values`` of one source; set the inserted and duplicate counts of ``report``.

    Values already stored for the same (entity, definition, source) are left as they are
    and counted in ``report.duplicates`` (as is any value whose stored key repeats an earlier
    value's, of which the first is kept; validated values never do).

    Parameters
    ----------
    new_source
        ``source_id`` was claimed in this transaction, so no stored value can have it: the
        values are de-duplicated here and copied straight into the property tables
        (:func:`~matstore.ingest.property_copy.copy_rows`) instead of through a staging table.

    Raises
    ------
    matstore.composition.FormulaError
        Never for validated values (formulas were parsed by the validator).
    """
    definition_ids = {name: d.id for name, d in crud.definitions(session=session).items()}
    materials, methods, surfaces, configurations = _entities(session, values, source_id, job_run_id)
    bulk: list[tuple] = []
    surface: list[tuple] = []
    configuration: list[tuple] = []
    row = configuration_id = material_id = method_id = None
    with paused_gc():
        for v in values:
            if v.row != row:  # a row's values share material, method and configuration
                row, material_id = v.row, materials[v.formula, v.prototype]
                method_id = methods[v.method, v.method_kind, v.potential]
                configuration_id = configurations[material_id, method_id, v.key] if v.key is not None else None
            tail = (definition_ids[v.entry.definition], v.value, v.uncertainty, v.flag, source_id, job_run_id, _details(v))
            if configuration_id is not None:
                configuration.append((configuration_id, *tail))
            elif v.orientation is not None:
                surface.append((surfaces[material_id, v.orientation.key], method_id, *tail))
            else:
                bulk.append((material_id, method_id, *tail))
    copy = _copy_new if new_source else _copy
    report.bulk_inserted += copy(session, "bulk_property", ("material_id", "method_id"), bulk)
    report.surface_inserted += copy(session, "surface_property", ("surface_id", "method_id"), surface)
    report.configuration_inserted += copy(session, "configuration_property", ("configuration_id",), configuration)
    report.duplicates = len(values) - report.inserted


def _details(v: Value) -> str:
    """``json_text({"column", "line", "raw", "row", "unit"})`` of a value, built from cached parts (hot path)."""
    head, tail = _detail_parts(v.column, v.entry.unit)
    return f"{head}{v.line},\"raw\":{_json_string(v.raw)},\"row\":{v.row}{tail}"


@lru_cache(maxsize=4096)
def _detail_parts(column: str, unit: str) -> tuple[str, str]:
    probe = json_text({"column": column, "line": 0, "raw": "", "row": 0, "unit": unit})
    head = probe[:probe.index('"line":') + len('"line":')]
    return head, probe[probe.index(',"unit":'):]


def _copy(session: Any, table: str, keys: tuple[str, ...], rows: list[tuple]) -> int:
    return copy_insert(session, table, (*keys, *_VALUE_COLUMNS), rows) if rows else 0


def _copy_new(session: Any, table: str, keys: tuple[str, ...], rows: list[tuple]) -> int:
    """:func:`copy_rows` of the first row of each unique key (entity ids + definition id) of a new source."""
    if not rows:
        return 0
    width = len(keys) + 1
    seen: set[tuple] = set()
    with paused_gc():
        first = [r for r in rows if (k := r[:width]) not in seen and not seen.add(k)]  # type: ignore[func-returns-value]
    return copy_rows(session, table, (*keys, *_VALUE_COLUMNS), first)


__all__ = ["store_values"]
