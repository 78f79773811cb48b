"""Reading a property table: CSV or whitespace text into cells, then the mapping's derived columns.

:func:`read_table` checks the shape (every row as wide as the header) and keeps the file line
of every row for error messages; :func:`add_derived_columns` evaluates a mapping's
``derived:`` expressions (:mod:`matstore.ingest.derived`) column-wise and appends the results.
"""

from __future__ import annotations

import csv
import io
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from matstore.ingest.derived import ExpressionError
from matstore.ingest.errors import (
    EmptyFileError,
    MappingError,
    MissingColumnError,
    ParseError,
    TableShapeError,
)
from matstore.ingest.mapping import Mapping


@dataclass
class Table:
    """Raw table cells with the file line number of every row.

    Attributes
    ----------
    header: column names, (n_columns,)
    rows: cells as text, (n_rows, n_columns)
    lines: 1-based file line of each row, (n_rows,)
    header_line: file line of the header, or ``None`` (``header: false``)
    """

    header: list[str]
    rows: list[list[str]]
    lines: list[int]
    header_line: int | None


def read_table(path: str | Path, mapping: Mapping) -> Table:
    """Read a CSV or whitespace table into strings, checking that every row has the header's width.

    Raises
    ------
    EmptyFileError
        No header or no data rows.
    TableShapeError
        A row has more or fewer fields than the header (e.g. shifted columns).
    ParseError
        The file is not UTF-8 text, or a CSV/quoting error.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from exc
    if not text.strip():
        raise EmptyFileError("the file is empty", path=path)
    spec = mapping.spec
    fmt = spec.format or ("csv" if path.suffix.lower() in (".csv", ".tsv") else "whitespace")
    records = _csv_records(text, path, spec.delimiter, mapping) if fmt == "csv" else _whitespace_records(text, path, spec.comment)
    if spec.header:
        if not records:
            raise EmptyFileError("the file has no header", path=path)
        header_line, header = records[0][0], [h.strip() for h in records[0][1]]
        records = records[1:]
    else:
        header_line, header = None, list(spec.names or [])
    if not records:
        raise EmptyFileError("the table has no data rows", path=path)
    for row_number, (line, fields) in enumerate(records, start=1):
        if len(fields) != len(header):
            raise TableShapeError(f"{len(fields)} fields but the header has {len(header)} (shifted or missing columns?)",
                                  path=path, row=row_number, line=line)
    return Table(header=header, rows=[f for _, f in records], lines=[n for n, _ in records], header_line=header_line)


def _csv_records(text: str, path: Path, delimiter: str, mapping: Mapping) -> list[tuple[int, list[str]]]:
    if path.suffix.lower() == ".tsv" and "delimiter" not in mapping.raw:
        delimiter = "\t"
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    records, line = [], 1
    try:
        for fields in reader:
            if fields and not (len(fields) == 1 and not fields[0].strip()):
                records.append((line, fields))
            line = reader.line_num + 1
    except csv.Error as exc:
        raise ParseError(f"CSV error: {exc}", path=path, line=reader.line_num) from exc
    return records


def _whitespace_records(text: str, path: Path, comment: str | None) -> list[tuple[int, list[str]]]:
    records = []
    for number, raw_line in enumerate(text.splitlines(), start=1):
        stripped = raw_line.strip()
        if not stripped or (comment and stripped.startswith(comment)):
            continue
        try:
            fields = shlex.split(stripped) if ('"' in stripped or "'" in stripped) else stripped.split()
        except ValueError as exc:
            raise ParseError(f"unbalanced quotes: {exc}", path=path, line=number) from exc
        records.append((number, fields))
    return records


def numeric_column(table: Table, column: str, *, path: str | Path) -> np.ndarray:
    """Column ``column`` as floats, blank cells NaN; shape (n_rows,).

    Raises
    ------
    ParseError
        At the first cell that is neither blank nor a number (naming row, line and column).
    """
    k = table.header.index(column)
    out = np.empty(len(table.rows))
    for i, fields in enumerate(table.rows):
        cell = fields[k].strip()
        try:
            out[i] = float(cell) if cell else np.nan
        except ValueError:
            raise ParseError(f"unparsable number {cell[:40]!r}", path=path, row=i + 1, line=table.lines[i], column=column) from None
    return out


def add_derived_columns(table: Table, mapping: Mapping, *, path: str | Path) -> Table:
    """Append the mapping's derived columns (in mapping order; later ones may use earlier ones).

    Results are written back as exact decimal text (``repr`` of the float); blank where an
    input is blank.

    Raises
    ------
    MappingError
        A derived name that is already a table column.
    MissingColumnError
        An expression naming a column the table does not have.
    ParseError
        A division by zero (naming the row) or an input cell that is not a number.
    """
    for name, expression in mapping.derived.items():
        if name in table.header:
            raise MappingError(f"derived column {name!r} is already a column of the table; choose another name",
                               path=path, column=name)
        missing = [c for c in expression.columns if c not in table.header]
        if missing:
            raise MissingColumnError(f"derived column {name!r}: expr {expression.text!r} names column {missing[0]!r}, "
                                     "which is not in the table", path=path, line=table.header_line, column=name)
        inputs = {c: numeric_column(table, c, path=path) for c in expression.columns}
        try:
            result = expression.evaluate(inputs) * np.ones(len(table.rows))
        except ExpressionError as exc:
            row = exc.row + 1 if exc.row is not None else None
            raise ParseError(f"derived column {name!r}: {exc}", path=path, row=row,
                             line=table.lines[exc.row] if exc.row is not None else None, column=name) from None
        given = np.all([np.isfinite(v) for v in inputs.values()], axis=0) if inputs else np.ones(len(result), bool)
        bad = np.flatnonzero(given & ~np.isfinite(result))
        if bad.size:
            i = int(bad[0])
            raise ParseError(f"derived column {name!r}: expr {expression.text!r} gives {result[i]} from finite inputs "
                             "(e.g. sqrt or log of a negative number)", path=path, row=i + 1, line=table.lines[i], column=name)
        table.header.append(name)
        for fields, value in zip(table.rows, result.tolist(), strict=True):
            fields.append("" if value != value else repr(value))  # NaN (a blank input) stays blank
    return table


__all__ = ["Table", "add_derived_columns", "numeric_column", "read_table"]
