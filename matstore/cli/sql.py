"""``matstore sql``: run one read-only statement and print a table or CSV."""

from __future__ import annotations

import csv
import sys

import typer
from rich.table import Table

from matstore.cli.common import cli_errors, console, engine


def sql_command(
    statement: str = typer.Argument(..., help='A read-only statement, e.g. "SELECT * FROM bulk_properties_wide"'),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV instead of a table."),
    limit: int = typer.Option(1000, help="Print at most this many rows (table output)."),
) -> None:
    """Run a read-only SQL statement (a READ ONLY transaction with a statement timeout)."""
    from matstore.db import read_only_connection

    with cli_errors(), read_only_connection(engine()) as conn:
        columns, rows = _execute_one(conn, statement)
    if as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
        return
    table = Table(*columns)
    for row in rows[:limit]:
        table.add_row(*(_fmt(v) for v in row))
    console.print(table)
    if len(rows) > limit:
        console.print(f"[dim]{len(rows) - limit} more rows not shown (use --csv)[/]")


def _execute_one(conn, statement: str) -> tuple[list[str], list[tuple]]:  # noqa: ANN001
    """Run exactly one statement in ``conn``'s READ ONLY transaction; return column names and rows.

    The statement is sent with the extended query protocol (``prepare=True``), which refuses
    several commands in one string: otherwise ``"COMMIT; DELETE FROM source"`` would end the
    read-only transaction and run the DELETE in a new, writable one.  The text is passed as is
    (no ``:name`` or ``%s`` parameter parsing).
    """
    import psycopg

    raw = conn.connection.driver_connection
    with raw.cursor() as cur:
        try:
            cur.execute(statement, prepare=True)
        except psycopg.errors.SyntaxError as exc:
            if "multiple commands" not in str(exc):
                raise
            raise ValueError(
                "matstore sql runs exactly one statement, in a read-only transaction; "
                "give one statement without ';' between commands"
            ) from None
        if cur.description is None:
            return [], []
        return [d.name for d in cur.description], cur.fetchall()


def _fmt(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
