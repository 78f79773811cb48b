"""``matstore sql``: run one read-only statement and print a table or CSV."""

from __future__ import annotations

import csv
import sys

import typer
from rich.table import Table
from sqlalchemy import text

from matstore.cli.common import cli_errors, console, engine


def sql_command(
    statement: str = typer.Argument(..., help='A read-only statement, e.g. "SELECT * FROM bulk_properties_wide"'),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV instead of a table."),
    limit: int = typer.Option(1000, help="Print at most this many rows (table output)."),
) -> None:
    """Run a read-only SQL statement (a READ ONLY transaction with a statement timeout)."""
    from matstore.db import read_only_connection

    with cli_errors(), read_only_connection(engine()) as conn:
        result = conn.execute(text(statement))
        columns = list(result.keys())
        rows = result.fetchall()
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


def _fmt(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
