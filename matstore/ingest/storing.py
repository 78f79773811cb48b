"""Storing validated table values: materials, methods, surfaces and configurations, then the values.

Everything happens in the caller's transaction (one per source).  Entities are resolved in
bulk (one statement per kind, see :mod:`matstore.crud`); values go through one binary COPY per
property table (:mod:`matstore.ingest.property_copy`): straight into the table for a source
claimed in the same transaction (no stored value can conflict, and values repeating a key
are kept out here, the first kept, as ``ON CONFLICT`` would), else through a staging table and one
``INSERT … ON CONFLICT DO NOTHING``.  Either way the table's foreign-key checks, one per
referenced column and row, are most of the time (``docs/benchmarks.md`` §2).

Before the copy, every unflagged value is compared with the unflagged values other sources
stored for the same (material, method, definition), (surface, method, definition) or
(material configuration, definition): a difference beyond :data:`CONFLICT_RTOL` is an error
naming the row, the stored value and its source (:func:`check_conflicts`), so that two
conflicting values never both feed a fit.  :func:`supersede_sources` flags, never deletes, the
values of sources a new one replaces (``docs/ingest.md``, "Re-ingesting and conflicts").
"""

from __future__ import annotations

from collections import defaultdict
from functools import lru_cache
from json.encoder import encode_basestring as _json_string  # type: ignore[attr-defined]
from typing import Any

from sqlalchemy import text

from matstore import crud
from matstore.ingest.errors import IngestError
from matstore.ingest.property_copy import copy_insert, copy_rows, json_text
from matstore.ingest.table_report import TableReport
from matstore.ingest.validating import (
    Value,
    config_key,
    describe,
    paused_gc,
    row_firsts,
    values_agree,
)
from matstore.schema.properties import CONFLICT_RTOL

_VALUE_COLUMNS = ("definition_id", "value", "uncertainty", "flag", "source_id", "job_run_id", "details")


#: The key columns (after ``definition_id``) of each property table, for conflicts.
_KEYS = {"bulk_property": ("material_id", "method_id"), "surface_property": ("surface_id", "method_id"),
         "configuration_property": ("configuration_id",)}


def _entities(session: Any, values: list[Value], source_id: int, job_run_id: int) -> tuple[dict, dict, dict, dict]:
    firsts = row_firsts(values)  # one value per row: a row's values share material, method and key
    materials: dict[tuple[str, str], int] = {}
    for v in firsts:
        if (v.formula, v.prototype) not in materials:
            materials[v.formula, v.prototype] = crud.get_or_create_material(session=session, formula=v.formula, prototype=v.prototype)
    methods = crud.get_or_create_methods(session=session, methods=[(v.method, v.method_kind, v.potential) for v in firsts])
    surfaces = crud.get_or_create_surfaces(session=session, surfaces=[
        (materials[v.formula, v.prototype], v.orientation) for v in values if v.orientation is not None])
    keys: dict[tuple[int, int], dict[str, None]] = defaultdict(dict)  # configurations with a configuration value
    for v in values:
        if config_key(v) is not None:
            keys[materials[v.formula, v.prototype], methods[v.method, v.method_kind, v.potential]][v.key] = None  # type: ignore[index]
    configurations = {}
    for (material_id, method_id), group in keys.items():
        ids = crud.get_or_create_configurations(session=session, material_id=material_id, method_id=method_id,
                                                keys=list(group), source_id=source_id, job_run_id=job_run_id)
        configurations.update({(material_id, method_id, k): i for k, i in ids.items()})
    return materials, methods, surfaces, configurations


def store_values(session: Any, values: list[Value], report: TableReport, *, source_id: int, job_run_id: int,
                 new_source: bool = False) -> None:
    """Store ``values`` of one source; set the inserted and duplicate counts of ``report``.

    Values already stored for the same (entity, definition, source) are left as they are
    and counted in ``report.duplicates`` (as is any value whose stored key repeats an earlier
    value's, of which the first is kept; validated values never do).  Each value goes to the
    table of its definition's scope: a bulk column of a per-configuration table is the
    material's (``bulk_property``), stored once per material and method.

    Parameters
    ----------
    new_source
        ``source_id`` was claimed in this transaction, so no stored value can have it: the
        values are de-duplicated here and copied straight into the property tables
        (:func:`~matstore.ingest.property_copy.copy_rows`) instead of through a staging table.

    Raises
    ------
    IngestError
        A value conflicts with one another source stored (:func:`check_conflicts`).
    matstore.composition.FormulaError
        Never for validated values (formulas were parsed by the validator).
    """
    definition_ids = {name: d.id for name, d in crud.definitions(session=session).items()}
    materials, methods, surfaces, configurations = _entities(session, values, source_id, job_run_id)
    rows: dict[str, list[tuple]] = {table: [] for table in _KEYS}
    of: dict[str, list[Value]] = {table: [] for table in _KEYS}  # the value of each row, for messages
    row = material_id = method_id = None
    with paused_gc():
        for v in values:
            if v.row != row:  # a row's values share material, method and configuration key
                row, material_id = v.row, materials[v.formula, v.prototype]
                method_id = methods[v.method, v.method_kind, v.potential]
            tail = (definition_ids[v.entry.definition], v.value, v.uncertainty, v.flag, source_id, job_run_id, _details(v))
            if v.entry.scope == "configuration":
                table, head = "configuration_property", (configurations[material_id, method_id, v.key],)
            elif v.orientation is not None:
                table, head = "surface_property", (surfaces[material_id, v.orientation.key], method_id)
            else:
                table, head = "bulk_property", (material_id, method_id)
            rows[table].append((*head, *tail))
            of[table].append(v)
    check_conflicts(session, rows, of, source_id=source_id, path=report.path)
    bulk, surface, configuration = rows["bulk_property"], rows["surface_property"], rows["configuration_property"]
    copy = _copy_new if new_source else _copy
    report.bulk_inserted += copy(session, "bulk_property", ("material_id", "method_id"), bulk)
    report.surface_inserted += copy(session, "surface_property", ("surface_id", "method_id"), surface)
    report.configuration_inserted += copy(session, "configuration_property", ("configuration_id",), configuration)
    report.duplicates = len(values) - report.inserted


def check_conflicts(session: Any, rows: dict[str, list[tuple]], values: dict[str, list[Value]], *, source_id: int,
                    path: str) -> None:
    """Refuse values that differ from unflagged values other sources stored for the same key.

    Parameters
    ----------
    rows
        Per property table, the rows about to be stored: key ids (see :data:`_KEYS`), then
        ``definition_id, value, uncertainty, flag, …``; values in canonical units.
    values
        Per property table, the validated :class:`Value` of each row (same order), named in
        the message.
    source_id
        The source being stored; its own values and every flagged value (stored or new) are
        not compared.
    path
        The table's path, for the message.

    Raises
    ------
    IngestError
        On the first value (in row order) that differs from a stored one by more than
        :data:`CONFLICT_RTOL` relative: one line naming the file, row, line and column, both
        values with the unit, the stored value's source and job run, how many values conflict,
        and the ways out (``--supersede SOURCE``, another method name).
    """
    found = []
    for table, table_rows in rows.items():
        stored = _stored_values(session, table, table_rows, source_id) if table_rows else {}
        if not stored:
            continue
        width = len(_KEYS[table])
        for r, v in zip(table_rows, values[table], strict=True):
            if r[width + 3] is not None:  # a flagged value feeds no fit
                continue
            for other in stored.get(r[:width + 1], ()):
                if v.entry.component and not same_frame(v.frame, other.frame):
                    continue  # components in different (or unknown) frames are not comparable
                if not values_agree(other.value, r[width + 1]):  # stored and new values are finite (value_finite)
                    found.append((v, other))
                    break
    if found:
        v, other = min(found, key=lambda pair: (pair[0].row, pair[0].line))
        unit = v.entry.canonical_unit
        more = f"; {len(found) - 1} more value(s) of this file conflict too" if len(found) > 1 else ""
        raise IngestError(
            f"conflicting values: {describe(v)} is {v.value:.6g} {unit} here but {other.value:.6g} {unit} in source "
            f"{other.source_id} ({other.label}, job run {other.job_run_id}){more} (relative tolerance {CONFLICT_RTOL:g}); "
            f"nothing stored. If this file replaces source {other.source_id}, run again with `--supersede "
            f"{other.source_id}` (its values stay stored, flagged as superseded); if it is another calculation or "
            "measurement, give it another method name in the mapping",
            path=path, row=v.row, line=v.line, column=v.column)


def _stored_values(session: Any, table: str, rows: list[tuple], source_id: int) -> dict[tuple, list[Any]]:
    """Unflagged values of other sources under the keys of ``rows``: {(key ids…, definition_id): [rows]}."""
    keys = (*_KEYS[table], "definition_id")
    where = " AND ".join(f"p.{k} = ANY(CAST(:{k} AS bigint[]))" for k in keys)
    params = {k: sorted({r[i] for r in rows}) for i, k in enumerate(keys)}
    result = session.execute(text(
        f"SELECT {', '.join(f'p.{k}' for k in keys)}, p.value, p.source_id, p.job_run_id, p.details->'frame' AS frame, "
        "coalesce(s.details->>'file', s.description, s.uri, s.kind) AS label "
        f"FROM {table} p JOIN source s ON s.id = p.source_id "
        f"WHERE {where} AND p.flag IS NULL AND p.source_id <> :source_id ORDER BY p.id"),
        {**params, "source_id": source_id})
    stored: dict[tuple, list[Any]] = defaultdict(list)
    for r in result:
        stored[tuple(r[:len(keys)])].append(r)
    return stored


def supersede_sources(session: Any, source_ids: list[int], *, by_source_id: int, job_run_id: int,
                      path: str) -> list[dict[str, int]]:
    """Flag every value of each source in ``source_ids`` as superseded by ``by_source_id``; delete nothing.

    Each value's flag becomes ``superseded by source N (job run R)`` (appended after ``; `` to a
    flag it already had), so fits leave it out unless they include flagged values, and it stays
    in ``property_values``.  The old source's ``details`` gain ``superseded_by`` (source, job
    run, values flagged); the caller records ``supersedes`` on the new source.  Runs in the
    caller's transaction, the old source rows locked.

    Returns
    -------
    list of dict
        ``{"source_id", "values_flagged"}`` per superseded source, in id order.

    Raises
    ------
    IngestError
        A source that is not stored, is ``by_source_id`` itself, or is already superseded.
    """
    out = []
    for old in sorted(set(source_ids)):
        found = session.execute(text("SELECT details->'superseded_by' FROM source WHERE id = :id FOR UPDATE"),
                                {"id": old}).one_or_none()
        if found is None or old == by_source_id:
            raise IngestError(f"--supersede {old}: no other stored source has id {old} (list them with "
                              "`matstore sql \"SELECT id, kind, uri, details->>'file' FROM source\"`); nothing stored", path=path)
        if found[0] is not None:
            raise IngestError(f"--supersede {old}: source {old} is already superseded by source {found[0]['source_id']} "
                              f"(job run {found[0]['job_run_id']}); supersede that source instead; nothing stored", path=path)
        mark = f"superseded by source {by_source_id} (job run {job_run_id})"
        flagged = sum(session.execute(text(
            f"UPDATE {table} SET flag = CASE WHEN flag IS NULL THEN :mark ELSE flag || '; ' || :mark END "
            "WHERE source_id = :old"), {"mark": mark, "old": old}).rowcount for table in _KEYS)
        session.execute(text(
            "UPDATE source SET details = details || jsonb_build_object('superseded_by', jsonb_build_object("
            "'source_id', CAST(:by AS int), 'job_run_id', CAST(:run AS int), 'values_flagged', CAST(:n AS int))) "
            "WHERE id = :old"), {"by": by_source_id, "run": job_run_id, "n": flagged, "old": old})
        out.append({"source_id": old, "values_flagged": flagged})
    return out


def same_frame(a: Any, b: Any, *, tol: float = 1e-6) -> bool:
    """True when two ``details.frame`` are declared (dicts with ``e1`` and ``normal``, crystal axes) and equal to ``tol``.

    Computed surfaces and tables declaring ``frame:`` store such dicts; an undeclared frame (a
    string) or none equals no frame, so such components are never compared.
    """
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return False
    try:
        return all(abs(float(x) - float(y)) <= tol for k in ("e1", "normal") for x, y in zip(a[k], b[k], strict=True))
    except (KeyError, TypeError, ValueError):
        return False


def _details(v: Value) -> str:
    """``json_text({"column", "line", "raw", "row", "unit"})`` of a value, built from cached parts (hot path).

    A tensor component also holds ``frame`` (its in-plane frame, or ``"source (undeclared)"``)
    and ``given_normal`` (the table's normal, not reduced).
    """
    if v.frame is not None:
        return json_text({"column": v.column, "frame": v.frame, "given_normal": v.given_normal, "line": v.line,
                          "raw": v.raw, "row": v.row, "unit": v.entry.unit})
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


__all__ = ["CONFLICT_RTOL", "check_conflicts", "same_frame", "store_values", "supersede_sources"]
