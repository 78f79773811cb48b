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
    """The writers' engine: the configured database, every connection as ``matstore_writer``.

    Ingest, fit, refit, promote, ``vocab add``, ``export`` and the workers use it (embedded
    server started on demand); see :func:`matstore.db.writer_engine`.
    """
    from matstore.db import writer_engine

    return writer_engine()


def owner_engine():  # noqa: ANN201
    """The configured database as the URL's own login: ``db migrate`` and ``db grant-reader`` only."""
    from matstore.db import owner_engine as owner

    return owner()
