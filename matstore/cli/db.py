"""``matstore db``: migrate, info, grant-reader, stop."""

from __future__ import annotations

import typer
from rich.table import Table

from matstore.cli.common import cli_errors, console, owner_engine

app = typer.Typer(help="Database: migrate, describe, roles, embedded server.", no_args_is_help=True)


@app.command()
def migrate() -> None:
    """Apply all migrations (alembic upgrade head), seed the vocabulary, make the reader login read paths use."""
    from matstore.admin import migrate as run_migrate

    with cli_errors():
        done = run_migrate(owner_engine())
    console.print(f"database at revision [bold]{done.revision}[/]")
    console.print(done.reader, highlight=False)


@app.command()
def info() -> None:
    """Which database is in use, its server version, schema revision and row counts (read as the reader login)."""
    from matstore.admin import describe
    from matstore.config import get_settings
    from matstore.db import reader_engine

    with cli_errors():
        settings = get_settings()
        details = describe(reader_engine(), embedded=settings.embedded, shown=owner_engine())
    kind = f"embedded PostgreSQL in {settings.embedded_dir}" if details.embedded else "server"
    table = Table(show_header=False, box=None)
    table.add_row("database", f"{details.url} ({kind})")
    table.add_row("server version", f"PostgreSQL {details.server_version}")
    status = "up to date" if details.revision == details.head else f"behind head {details.head}; run `matstore db migrate`"
    table.add_row("schema revision", f"{details.revision or 'none (empty database)'} ({status})")
    for name, count in details.counts.items():
        table.add_row(f"  {name}", f"{count:,}")
    console.print(table)


@app.command("grant-reader")
def grant_reader(
    name: str = typer.Argument(..., help="Role to create, e.g. matstore_reader"),
    password: str | None = typer.Option(None, envvar="MATSTORE_READER_PASSWORD", help="Login password (from the environment); unset: an existing login keeps its own."),
) -> None:
    """Make NAME a login member of matstore_reader (SELECT only); for MATSTORE_READER_URL and the dashboard."""
    from matstore.admin import grant_reader as run_grant
    from matstore.cli.common import err_console

    with cli_errors():
        secret = run_grant(owner_engine(), name, password=password)
    console.print(f"login [bold]{name}[/] is a member of matstore_reader: it can SELECT and nothing else")
    if secret == "kept":
        console.print(f"{name} keeps its password (set MATSTORE_READER_PASSWORD to change it)", highlight=False)
    elif secret == "none":
        err_console.print(f"[bold yellow]warning:[/] {name} has NO password (set MATSTORE_READER_PASSWORD): it can "
                          "log in only where pg_hba.conf trusts the connection", highlight=False)


@app.command()
def stop() -> None:
    """Stop the embedded PostgreSQL server (no-op with MATSTORE_DATABASE_URL)."""
    from matstore.config import get_settings
    from matstore.embedded import stop_embedded

    settings = get_settings()
    if not settings.embedded:
        console.print("a server URL is configured; nothing to stop")
        return
    with cli_errors():
        stopped = stop_embedded(settings.embedded_dir)
    console.print("embedded server stopped" if stopped else "embedded server was not running")
