"""Helpers shared by CLI commands: the console, the engine, error reporting."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn library errors into a one-line red message and exit code 1 (no traceback)."""
    try:
        yield
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        from rich.markup import escape

        from matstore.provenance import scrub_text

        # soft_wrap: one line however long (file, row and reason stay greppable);
        # escape: messages quote user text such as "[species]" that is not Rich markup.
        err_console.print(f"[bold red]error:[/] {escape(one_line(scrub_text(str(exc))))}", highlight=False, markup=True,
                          soft_wrap=True)
        raise typer.Exit(1) from exc


def one_line(message: str) -> str:
    """``message`` on one line: PostgreSQL's ``HINT:``/``DETAIL:`` lines joined, SQLAlchemy's link dropped."""
    lines = (line.strip() for line in message.splitlines())
    return " ".join(line for line in lines if line and not line.startswith("(Background on this error"))


def engine():  # noqa: ANN201
    """The configured engine (embedded server started on demand)."""
    from matstore.db import get_engine

    return get_engine()
