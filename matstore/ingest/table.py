"""Ingest property tables (CSV or whitespace text) through a YAML mapping: the orchestration.

One module per step (the mapping format is documented with worked examples in
``docs/ingest.md``):

- :mod:`~matstore.ingest.mapping`: the mapping's pydantic models, safe YAML loading and
  resolution of targets against the vocabulary and pint units;
- :mod:`~matstore.ingest.reading`: the table's cells and the mapping's derived columns;
- :mod:`~matstore.ingest.validating`: cells → converted, checked values with their rows;
- :mod:`~matstore.ingest.storing` and :mod:`~matstore.ingest.property_copy`: entities in
  bulk, values through binary COPY (straight into the property tables: the source is new);
- :mod:`~matstore.ingest.table_report`: the complete report (stored as the job run's summary).

A table read through one mapping is one source (the sha256 of its bytes): ingesting it again
with the same mapping stores nothing.  A file has at most one reading in force: the same file
under another mapping is refused unless ``supersede`` names the stored source it replaces,
whose values are then flagged, never deleted (``docs/ingest.md``, "Re-ingesting and
conflicts").  Any error leaves nothing stored and the job run marked failed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matstore.hashing import sha256_bytes, sha256_json
from matstore.ingest.errors import IngestError
from matstore.ingest.mapping import ColumnEntry, Mapping, load_mapping
from matstore.ingest.reading import Table, add_derived_columns, read_table
from matstore.ingest.table_report import TableReport
from matstore.ingest.validating import parse_values

log = logging.getLogger(__name__)


def store_vocabulary(engine: Any) -> dict[str, Any]:
    """The store's property definitions (built-in and user) as plain records by name."""
    from matstore import crud
    from matstore.db import session_scope
    from matstore.schema.vocabulary import Definition

    with session_scope(engine) as session:
        return {name: Definition(d.name, d.unit, d.scope, d.symbol or "", d.description)
                for name, d in crud.definitions(session=session).items()}


def mapping_sha256(raw: dict[str, Any]) -> str:
    """sha256 of a mapping as its source records it (canonical JSON of the YAML, credentials masked)."""
    from matstore.provenance import scrub

    return sha256_json(scrub(raw))


def method_label(raw: Any) -> str:
    """The method a mapping names, for messages: ``'DFT-PBE'`` or ``from column 'model'``."""
    method = raw.get("method") if isinstance(raw, dict) else None
    if isinstance(method, dict) and method.get("name"):
        return repr(method["name"])
    if isinstance(method, dict) and method.get("column"):
        return f"from column {method['column']!r}"
    return "not named"


@dataclass(frozen=True)
class Reading:
    """A stored source of a table file: its id, its mapping's sha256 and method, what it superseded and what superseded it."""

    source_id: int
    mapping_sha256: str | None
    method: str
    supersedes: tuple[int, ...]
    superseded_by: dict[str, Any] | None


def stored_readings(session: Any, sha: str) -> list[Reading]:
    """Every stored source of the file with sha256 ``sha`` (its first reading and any that superseded one), by id.

    A source stored by something other than a table ingest has ``mapping_sha256`` None.
    """
    from sqlalchemy import text

    rows = session.execute(text("SELECT id, details FROM source WHERE sha256 = :sha OR details->>'file_sha256' = :sha "
                                "ORDER BY id"), {"sha": sha}).all()
    return [Reading(r.id, (r.details.get("mapping_sha256") or mapping_sha256(r.details["mapping"]))
                    if "mapping" in r.details else None, method_label(r.details.get("mapping")),
                    tuple(r.details.get("supersedes", ())), r.details.get("superseded_by")) for r in rows]


def _in_force(path: Path, readings: list[Reading], parsed: Mapping, supersede: Sequence[int]) -> Reading | None:
    """The stored reading of this file under this mapping, if it is in force; None if a new one may be stored.

    Raises
    ------
    IngestError
        Another reading of the file is in force and ``supersede`` does not name it, or the
        file is stored by something other than a table ingest.
    """
    sha = mapping_sha256(parsed.raw)
    active = [r for r in readings if r.superseded_by is None]
    same = next((r for r in active if r.mapping_sha256 == sha), None)
    if same is not None:
        extra = sorted(set(supersede) - set(same.supersedes))
        if extra:
            raise IngestError(f"this file is already stored under this mapping as source {same.source_id}, which does not "
                              f"supersede {extra}; nothing stored (--supersede needs a new reading of a file: a changed "
                              "mapping, or another file)", path=path)
        return same
    for r in active:
        if r.mapping_sha256 is None:
            raise IngestError(f"this file is already stored as source {r.source_id}, not by a table ingest (e.g. as "
                              "structures); nothing stored", path=path)
        if r.source_id not in supersede:
            raise IngestError(
                f"this file is already stored as source {r.source_id} under another mapping (sha256 "
                f"{r.mapping_sha256[:12]}, method {r.method}; this mapping: sha256 {sha[:12]}, method "
                f"{method_label(parsed.raw)}); nothing stored. To replace those values by this mapping's, run again with "
                f"`--supersede {r.source_id}` (the old values stay stored, flagged as superseded)", path=path)
    return None


def _source_row(path: Path, sha: str, parsed: Mapping, overrides: dict[str, Any] | None, *, first: bool,
                supersede: Sequence[int]) -> dict[str, Any]:
    """The source row of a reading: keyed by the file's sha256 for its first, else by (file, mapping, superseded)."""
    meta = {**parsed.spec.source.model_dump(exclude_none=True), **(overrides or {})}
    mapping_sha = mapping_sha256(parsed.raw)
    key = sha if first else sha256_json({"file_sha256": sha, "mapping_sha256": mapping_sha, "supersedes": sorted(supersede)})
    return dict(
        kind=meta.get("kind") or ("dataset" if any(meta.get(k) for k in ("doi", "commit", "url")) else "file"),
        sha256=key,
        uri=meta.get("uri") or meta.get("url") or str(path.resolve()),
        doi=meta.get("doi"),
        license=meta.get("license"),
        commit=meta.get("commit"),
        description=meta.get("description") or f"table {path.name} ({parsed.name})",
        details={"file": path.name, "mapping": parsed.raw, "citation": meta.get("citation"),
                 "repository": meta.get("repository"), "path": meta.get("path"), "file_sha256": sha,
                 "mapping_sha256": mapping_sha, **({"supersedes": sorted(set(supersede))} if supersede else {})},
    )


def ingest_table(
    path: str | Path,
    mapping: str | Path | dict[str, Any] | Mapping,
    *,
    engine: Any,
    source: dict[str, Any] | None = None,
    job_kind: str = "ingest_table",
    report_path: str | Path | None = None,
    supersede: Sequence[int] = (),
) -> TableReport:
    """Ingest one property table as one source, in one transaction.

    Parameters
    ----------
    path
        The table (CSV or whitespace text).
    mapping
        Mapping YAML path, dict or :class:`Mapping` (see ``docs/ingest.md``).
    engine
        SQLAlchemy engine of the store.
    source
        Overrides of the mapping's source metadata (``uri``, ``url``, ``doi``, ``license``,
        ``commit``, ``description``, ``kind``), e.g. a dataset's pinned URL.
    job_kind
        ``job_run.kind`` to record.
    report_path
        Also write the complete report (every flagged and skipped value, every dropped row)
        as JSON to this file.  The job run's summary always holds it in full.
    supersede
        Ids of stored sources this table replaces (another reading of the same file, or
        another file): in the same transaction every value of theirs is flagged ``superseded
        by source N (job run R)`` (:func:`~matstore.ingest.storing.supersede_sources`), and the
        new source records ``supersedes``.

    Returns
    -------
    TableReport
        Counts, and every flagged or skipped value and dropped row.  ``status`` is
        ``already stored`` (nothing added, ``source_id`` the stored one) when the file is
        stored under this mapping and that reading is in force; ``superseded`` lists the
        sources flagged.

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a file.
    IngestError
        Any malformed input (mapping, table, unit, expression, duplicate, invalid value),
        naming file, row/line and column; the file stored under another mapping not named
        in ``supersede``; a value that conflicts with another source's
        (:func:`~matstore.ingest.storing.check_conflicts`); a ``supersede`` id not stored or
        already superseded.  Nothing is stored and the job run is recorded as failed.
    """
    from matstore import crud
    from matstore.db import session_scope
    from matstore.ingest.storing import store_values, supersede_sources

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    data = path.read_bytes()
    sha = sha256_bytes(data)
    parameters: dict[str, Any] = {"path": str(path), "sha256": sha, **({"supersede": list(supersede)} if supersede else {})}
    if isinstance(mapping, (str, Path)):
        parameters["mapping"] = str(mapping)
    with crud.job_run(engine=engine, kind=job_kind, parameters=parameters) as run:
        parsed = load_mapping(mapping, vocabulary=store_vocabulary(engine))
        report = TableReport(path=str(path), sha256=sha, mapping=parsed.path or parsed.name, job_run_id=run.id)
        with session_scope(engine) as session:
            readings = stored_readings(session, sha)
            stored = _in_force(path, readings, parsed, supersede)
        if stored is not None:
            report.status, report.source_id = "already stored", stored.source_id
        else:
            table = add_derived_columns(read_table(path, parsed), parsed, path=path)
            values = parse_values(path, parsed, table, report)
            with session_scope(engine) as session:
                row = _source_row(path, sha, parsed, source, first=not readings, supersede=supersede)
                source_id = crud.claim_source(session=session, **row)
                if source_id is None:  # another process stored it meanwhile: the same reading, or a refusal
                    stored = _in_force(path, stored_readings(session, sha), parsed, supersede)
                    if stored is None:
                        raise IngestError(f"a source with key {row['sha256'][:12]} (this file, this mapping, superseding "
                                          f"{sorted(supersede)}) is stored but not in force; nothing stored", path=path)
                    report.status, report.source_id = "already stored", stored.source_id
                else:
                    report.source_id = source_id
                    report.superseded = supersede_sources(session, list(supersede), by_source_id=source_id,
                                                          job_run_id=run.id, path=str(path))
                    store_values(session, values, report, source_id=source_id, job_run_id=run.id, new_source=True)
        if report.status == "already stored":
            run.status = "skipped"
        if report_path is not None:
            report.write(report_path)
        run.summary = report.to_dict()
    return report


__all__ = [
    "ColumnEntry",
    "IngestError",
    "Mapping",
    "Reading",
    "Table",
    "TableReport",
    "ingest_table",
    "load_mapping",
    "mapping_sha256",
    "method_label",
    "parse_values",
    "read_table",
    "stored_readings",
    "store_vocabulary",
]
