"""``matstore sql``: run one read-only query as the reader login and print a table or CSV."""

from __future__ import annotations

import csv
import itertools
import json
import sys

import typer
from rich.table import Table

from matstore.cli.common import cli_errors, console


def sql_command(
    statement: str = typer.Argument(..., help='A query, e.g. "SELECT * FROM bulk_properties_wide"'),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV instead of a table."),
    limit: int = typer.Option(1000, min=0, help="Print at most this many rows; 0 prints all (streamed)."),
) -> None:
    """Run one query as a login that can only read (READ ONLY transaction, statement timeout).

    Rows are streamed from a server-side cursor, so memory does not grow with the table.
    """
    from matstore.db import read_only_connection, reader_engine, stream_statement

    with cli_errors(), read_only_connection(reader_engine()) as conn:
        rows = stream_statement(conn, statement, limit=limit)
        if as_csv:
            _write_csv(rows)
        else:
            _print_tables(rows)
        if rows.truncated:
            _note_truncated(limit)


def _write_csv(rows) -> None:  # noqa: ANN001
    """The streamed rows as CSV on stdout: jsonb values (dict, list) as JSON text, NULL as an empty field.

    The header is written once the first batch (or the end of the result) has arrived: a
    query that the server refuses at its first fetch (``SELECT nextval(...)``: permission
    denied) leaves stdout empty, not a header with no rows.
    """
    writer = csv.writer(sys.stdout)
    batches = iter(rows.batches)
    first = next(batches, [])
    writer.writerow(rows.columns)
    for batch in itertools.chain([first], batches):
        writer.writerows([[_json(v) for v in row] for row in batch])


def _json(value: object) -> object:
    """A dict or list (a jsonb or array value) as JSON text, e.g. ``{"raw": "1.3036", "row": 1}``; others as they are."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value


def _print_tables(rows) -> None:  # noqa: ANN001
    # One Rich table per batch: a table is laid out in memory, so a streamed result is
    # printed batch by batch (the header only once).
    first = True
    for batch in rows.batches:
        table = Table(*rows.columns, show_header=first)
        for row in batch:
            table.add_row(*(_fmt(v) for v in row))
        console.print(table)
        first = False
    if first:
        console.print(Table(*rows.columns))


def _note_truncated(limit: int) -> None:
    # On stderr, so that CSV on stdout stays parseable.
    from matstore.cli.common import err_console

    err_console.print(f"[dim]more rows not shown: the first {limit:,} were (--limit 0 for all)[/]", highlight=False)


def _fmt(value: object) -> str:
    """A table cell: empty for NULL, 6 significant digits for floats, JSON for jsonb and arrays; as text, not markup."""
    from rich.markup import escape

    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return escape(str(_json(value)))
