"""Typed ingest errors.

Every error raised while reading an input names the file and, where it applies, the line
(structure files) or row (tables) and the reason, so that the CLI can print one line that
a user can act on.  All derive from :class:`IngestError`.
"""

from __future__ import annotations

from pathlib import Path


class IngestError(Exception):
    """An input could not be ingested; nothing of it was stored.

    Parameters
    ----------
    path
        The offending file (input or mapping), or ``None``.
    reason
        What is wrong, in words.
    line
        1-based line number in the file, if known.
    row
        1-based data-row number of a table (header excluded), if known.
    column
        Column name of a table, if known.
    """

    def __init__(
        self,
        reason: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.reason = reason
        self.line = line
        self.row = row
        self.column = column
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.path:
            where.append(self.path)
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.reason}" if prefix else self.reason


class EmptyFileError(IngestError):
    """The file holds no data (zero bytes, only blank lines, or no frames/rows)."""


class TruncatedFileError(IngestError):
    """The file ends in the middle of a record (e.g. an extxyz frame missing atom lines)."""


class ParseError(IngestError):
    """A field could not be parsed (e.g. an unparsable number, a malformed header)."""


class UnknownElementError(IngestError):
    """A chemical symbol or formula names no element."""


class UnsupportedFormatError(IngestError):
    """No reader knows this file format."""


class MappingError(IngestError):
    """A table mapping is invalid: unknown definition, wrong unit, missing column."""


class MissingColumnError(MappingError):
    """A column named by the mapping is absent from the table."""


class UnitError(MappingError):
    """A unit cannot be parsed or not converted to the definition's canonical unit."""


class NonCubicSurfaceError(IngestError):
    """A surface value of a material whose prototype is known not to be cubic (matstore's orientations are cubic)."""


class InvalidValueError(IngestError):
    """A value is non-finite or implausible and the mapping says ``on_invalid: error``."""


class DuplicateRowError(IngestError):
    """Two rows of one table give the same property of the same material and method."""


class TableShapeError(IngestError):
    """A row has more or fewer fields than the header (shifted columns)."""


class DatasetUnavailableError(IngestError):
    """A registered dataset file is neither in the local mirror nor downloadable."""


class ChecksumError(IngestError):
    """A dataset file's sha256 differs from the pinned one."""


__all__ = [
    "ChecksumError",
    "DatasetUnavailableError",
    "DuplicateRowError",
    "EmptyFileError",
    "IngestError",
    "InvalidValueError",
    "MappingError",
    "MissingColumnError",
    "NonCubicSurfaceError",
    "ParseError",
    "TableShapeError",
    "TruncatedFileError",
    "UnitError",
    "UnknownElementError",
    "UnsupportedFormatError",
]
