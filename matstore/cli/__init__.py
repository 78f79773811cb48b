"""The ``matstore`` command line (Typer + Rich).

Each command group lives in its own module and only calls library layers
(``matstore.admin``, ``matstore.ingest``, ``matstore.models``, ...).
"""

from __future__ import annotations

import logging
import sys

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
    from matstore.cli import compute, dashboard, export, ingest, models, pipeline, worker  # noqa: F401 - compute adds to ingest

    for module in (ingest, models, dashboard, worker, pipeline, export):
        module.register(app)
    from matstore.cli import vocab  # issue 12: the property vocabulary
    vocab.register(app)


_register_optional()


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress to stderr.")) -> None:
    from matstore.masking import install_log_filter

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    install_log_filter()  # every log line passes the one masking function


#: Options that take several space-separated values (``--features a b c``), per command.
#: Click options take one value each, so these are rewritten to repeated options.
MULTI_VALUE_OPTIONS: dict[str, set[str]] = {
    "fit": {"--features", "--method"},
    "compute": {"--elements", "--calculator"},
    "pipeline": {"--elements", "--calculator"},
}


def expand_multi_value_options(argv: list[str]) -> list[str]:
    """Rewrite ``--opt a b c`` as ``--opt a --opt b --opt c`` for :data:`MULTI_VALUE_OPTIONS`."""
    commands = [a for a in argv if not a.startswith("-")]
    options = set().union(*(MULTI_VALUE_OPTIONS.get(c, set()) for c in commands[:2]))
    out: list[str] = []
    current: str | None = None
    for arg in argv:
        if arg.startswith("-"):
            current = arg if arg in options else None
            out.append(arg)
        elif current is not None and out[-1] != current:
            out.extend([current, arg])
        else:
            out.append(arg)
    return out


def main() -> None:
    """Entry point of the ``matstore`` console script."""
    app(args=expand_multi_value_options(sys.argv[1:]), prog_name="matstore")
