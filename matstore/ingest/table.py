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

A table is one source (the sha256 of its bytes): ingesting it again stores nothing.  Any
error leaves nothing stored and the job run marked failed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from matstore.hashing import sha256_bytes
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


def _source_row(path: Path, sha: str, parsed: Mapping, overrides: dict[str, Any] | None) -> dict[str, Any]:
    meta = {**parsed.spec.source.model_dump(exclude_none=True), **(overrides or {})}
    return dict(
        kind=meta.get("kind") or ("dataset" if any(meta.get(k) for k in ("doi", "commit", "url")) else "file"),
        sha256=sha,
        uri=meta.get("uri") or meta.get("url") or str(path.resolve()),
        doi=meta.get("doi"),
        license=meta.get("license"),
        commit=meta.get("commit"),
        description=meta.get("description") or f"table {path.name} ({parsed.name})",
        details={"file": path.name, "mapping": parsed.raw, "citation": meta.get("citation"),
                 "repository": meta.get("repository"), "path": meta.get("path")},
    )


def ingest_table(
    path: str | Path,
    mapping: str | Path | dict[str, Any] | Mapping,
    *,
    engine: Any,
    source: dict[str, Any] | None = None,
    job_kind: str = "ingest_table",
    report_path: str | Path | None = None,
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

    Returns
    -------
    TableReport
        Counts, and every flagged or skipped value and dropped row.  ``status`` is
        ``already stored`` (nothing added) when a source with the file's sha256 exists.

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a file.
    IngestError
        Any malformed input (mapping, table, unit, expression, duplicate, invalid value),
        naming file, row/line and column; nothing is stored and the job run is recorded as
        failed.
    """
    from matstore import crud
    from matstore.db import session_scope
    from matstore.ingest.storing import store_values

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    data = path.read_bytes()
    sha = sha256_bytes(data)
    parameters: dict[str, Any] = {"path": str(path), "sha256": sha}
    if isinstance(mapping, (str, Path)):
        parameters["mapping"] = str(mapping)
    with crud.job_run(engine=engine, kind=job_kind, parameters=parameters) as run:
        parsed = load_mapping(mapping, vocabulary=store_vocabulary(engine))
        report = TableReport(path=str(path), sha256=sha, mapping=parsed.path or parsed.name, job_run_id=run.id)
        with session_scope(engine) as session:
            if crud.find_source(session=session, sha256=sha) is not None:
                report.status = "already stored"
        if report.status == "inserted":
            table = add_derived_columns(read_table(path, parsed), parsed, path=path)
            values = parse_values(path, parsed, table, report)
            with session_scope(engine) as session:
                source_id = crud.claim_source(session=session, **_source_row(path, sha, parsed, source))
                if source_id is None:
                    report.status = "already stored"
                else:
                    report.source_id = source_id
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
    "Table",
    "TableReport",
    "ingest_table",
    "load_mapping",
    "parse_values",
    "read_table",
    "store_vocabulary",
]
