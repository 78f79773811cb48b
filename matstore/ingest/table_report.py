"""The outcome of ingesting one property table, complete: counts, flagged, skipped and dropped rows."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TableReport:
    """Outcome of ingesting one table.

    Attributes
    ----------
    status: ``inserted`` or ``already stored``
    rows: data rows read; values: distinct values found (non-blank cells of mapped columns ×
        targets; a value given again and counted in ``repeated`` is not counted again)
    bulk_inserted, surface_inserted, configuration_inserted: rows added to ``bulk_property``,
        ``surface_property`` and ``configuration_property``
    missing: blank cells; duplicates: values not inserted because already stored;
    repeated: values given again with the same number, within the store's relative tolerance
        :data:`matstore.schema.properties.CONFLICT_RTOL`, either by a later row (per-material
        columns repeated on every orientation row; under ``on_duplicate: keep_first`` these are
        skipped instead) or by another column of the same row mapped to the same definition
        (one value in two units, e.g. ``J/m^2`` and ``meV/Å^2``): stored once, not an error
    merged_rows: rows whose every value repeats, with the same number, a per-material value of an earlier
        row of their material (a per-material column mapped alone from a per-facet table, such as
        Crystalium's bulk columns): merged into those rows, their values counted in ``repeated``,
        not dropped rows
    duplicate_rows: rows repeating an earlier row's values, kept out under
        ``on_duplicate: keep_first`` (their values are listed in ``skipped``)
    flagged: values stored with a flag; skipped: values left out, each with row, line,
        column, definition, value and reason (also a tensor component given again in another
        in-plane frame of the same surface, with its ``given_normal``); dropped_rows: rows of which no value was stored,
        with the reasons (blank, skipped values)
    materials, methods, configurations: distinct materials, methods and configurations
    notes: advice on what was stored, one line each (e.g. rounded angles stored as irrational
        orientations next to a low-index plane, and the mapping option that snaps them; tensor
        components stored in the source's undeclared frame)
    report_file: where :meth:`write` put the complete report, if asked
    superseded: sources this table replaced, ``{"source_id", "values_flagged"}`` each
    """

    path: str
    sha256: str
    mapping: str
    status: str = "inserted"
    rows: int = 0
    values: int = 0
    bulk_inserted: int = 0
    surface_inserted: int = 0
    configuration_inserted: int = 0
    missing: int = 0
    duplicates: int = 0
    repeated: int = 0
    merged_rows: int = 0
    duplicate_rows: set[int] = field(default_factory=set)
    materials: int = 0
    methods: int = 0
    configurations: int = 0
    source_id: int | None = None
    job_run_id: int | None = None
    flagged: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    dropped_rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    report_file: str | None = None
    superseded: list[dict[str, int]] = field(default_factory=list)

    @property
    def inserted(self) -> int:
        """All property rows added."""
        return self.bulk_inserted + self.surface_inserted + self.configuration_inserted

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, complete (stored as the job run's summary)."""
        out = asdict(self)
        out["inserted"] = self.inserted
        out["duplicate_rows"] = sorted(self.duplicate_rows)
        out["n_flagged"], out["n_skipped"], out["n_dropped_rows"] = len(self.flagged), len(self.skipped), len(self.dropped_rows)
        return out

    def write(self, path: str | Path) -> Path:
        """Write the complete report as JSON to ``path`` (set :attr:`report_file`); return the path."""
        path = Path(path)
        self.report_file = str(path)
        path.write_text(json.dumps(self.to_dict(), indent=1, default=str))
        return path


__all__ = ["TableReport"]
