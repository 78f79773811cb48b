"""The ``matstore`` command line (Typer + Rich).

Each command group lives in its own module and only calls library layers
(``matstore.admin``, ``matstore.ingest``, ``matstore.models``, ...).
"""

from __future__ import annotations

import logging

import typer

from matstore.cli import db, sql

app = typer.Typer(
    name="matstore",
    help="matstore: a PostgreSQL-backed materials knowledge store.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(db.app, name="db")
app.command("sql")(sql.sql_command)


def _register_optional() -> None:
    # Command groups of the later layers; each module registers itself on ``app``.
    from matstore.cli import dashboard, ingest, models, pipeline, worker

    for module in (ingest, models, dashboard, worker, pipeline):
        module.register(app)


_register_optional()


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress to stderr.")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def main() -> None:
    """Entry point of the ``matstore`` console script."""
    app()
