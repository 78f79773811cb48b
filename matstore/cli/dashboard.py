"""``matstore dashboard``: start the Streamlit dashboard (read-only) on the configured store.

The command replaces its own process with Streamlit's (:func:`os.execvpe`): there is no
parent left to orphan the server, and SIGTERM/SIGINT sent to the ``matstore dashboard`` pid
reach the Streamlit server itself, which stops and frees the port.
"""

from __future__ import annotations

import os
import sys

import typer

from matstore.cli.common import cli_errors, console


def streamlit_command(*, host: str, port: int) -> list[str]:
    """The ``streamlit run`` command line for the dashboard app.

    Parameters
    ----------
    host:
        Address to listen on (``127.0.0.1`` for this machine only, ``0.0.0.0`` for all).
    port:
        TCP port.
    """
    from matstore.dashboard import APP_PATH

    return [
        # Streamlit's own command line, after the heavy imports (matstore.dashboard.warmup).
        sys.executable, "-m", "matstore.dashboard.warmup", "run", str(APP_PATH),
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        "--theme.base", "light",
        "--client.toolbarMode", "viewer",
    ]


def dashboard_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8501, "--port", min=1, max=65535, help="TCP port."),
    reader_url: str | None = typer.Option(
        None, "--reader-url", envvar="MATSTORE_DASHBOARD_DATABASE_URL", show_default=False,
        help="Database URL of a login of matstore_reader only (see `matstore db grant-reader`); refused if it "
             "can do more. Default: MATSTORE_READER_URL, else matstore's own reader login (never the main URL).",
    ),
) -> None:
    """Start the dashboard (Streamlit) on the configured store, read-only, as a reader login.

    The reader login is checked here, before Streamlit starts: a URL that can do more than
    read (a superuser, a writer) is refused with a one-line error, not on the first page.
    """
    with cli_errors():
        from matstore.config import get_settings, normalise_database_url
        from matstore.readers import reader_url as checked_reader_url

        if reader_url:
            os.environ["MATSTORE_DASHBOARD_DATABASE_URL"] = normalise_database_url(reader_url)
            get_settings.cache_clear()
        # Starts the embedded server when no URL is set, and checks the reader login (made by `db migrate`).
        checked = checked_reader_url(get_settings(), dashboard=True)
    env = reader_only_environment(os.environ, checked)
    console.print(f"matstore dashboard on [bold]http://{host}:{port}[/] (Ctrl-C stops it)")
    command = streamlit_command(host=host, port=port)
    console.file.flush()
    # exec, not a child process: signals to this pid reach Streamlit, nothing is orphaned.
    os.execvpe(command[0], command, env)


#: Variables that name a login able to do more than read; the dashboard's process never gets them.
STRONGER_URL_VARIABLES = ("MATSTORE_DATABASE_URL", "MATSTORE_READER_URL")


def reader_only_environment(environ: dict[str, str] | os._Environ, checked_url: str) -> dict[str, str]:
    """The Streamlit process's environment: ``environ`` without :data:`STRONGER_URL_VARIABLES`,
    with ``MATSTORE_DASHBOARD_DATABASE_URL`` set to the reader URL checked before the start.

    A least-privilege audit found the web server holding the superuser URL of
    ``MATSTORE_DATABASE_URL`` in ``/proc/<pid>/environ``: any code run there would have had it.
    """
    env = {k: v for k, v in environ.items() if k not in STRONGER_URL_VARIABLES}
    env["MATSTORE_DASHBOARD_DATABASE_URL"] = checked_url
    return env


def register(app: typer.Typer) -> None:
    """Add ``matstore dashboard`` to the main app."""
    app.command("dashboard")(dashboard_command)
