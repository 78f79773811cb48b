"""Helpers shared by the benchmark scripts: a throw-away database, timing, Rich tables.

Every benchmark creates its own database on a PostgreSQL server and drops it at the end.
The server is, in order: the ``--server`` flag, ``$MATSTORE_BENCH_DATABASE_URL``,
``$MATSTORE_TEST_DATABASE_URL``, else ``postgresql://postgres@127.0.0.1:5432/postgres``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests.* helpers
BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))  # sibling benchmark modules

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"

# Wide enough for the tables when output is piped to a file.
console = Console() if sys.stdout.isatty() else Console(width=160)


def add_server_argument(parser: argparse.ArgumentParser) -> None:
    """``--server URL`` and ``--keep`` (keep the benchmark database)."""
    parser.add_argument(
        "--server",
        default=os.environ.get("MATSTORE_BENCH_DATABASE_URL") or os.environ.get("MATSTORE_TEST_DATABASE_URL") or DEFAULT_SERVER,
        help="PostgreSQL server URL; a throw-away database is created on it (default: %(default)s)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database(s)")


def sqlalchemy_url(url: str) -> str:
    """``url`` with the psycopg 3 driver (``postgresql+psycopg://``)."""
    from matstore.config import normalise_database_url

    return normalise_database_url(url)


def libpq_url(url: str) -> str:
    """``url`` as a plain libpq URL (``postgresql://``), for psycopg and ASE."""
    return make_url(sqlalchemy_url(url)).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def temp_database(server: str, *, prefix: str = "matstore_bench", migrate: bool = True, keep: bool = False) -> Iterator[str]:
    """Create a database on ``server`` (migrated with matstore's schema unless ``migrate=False``).

    Yields its SQLAlchemy URL (``postgresql+psycopg://``); the database is dropped on exit
    (``WITH (FORCE)``) unless ``keep``.
    """
    base = make_url(sqlalchemy_url(server))
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        if migrate:
            from matstore.admin import migrate as run_migrate

            engine = create_engine(url)
            run_migrate(engine)
            engine.dispose()
        yield url
    finally:
        from matstore.db import _engine_for

        _engine_for.cache_clear()  # close pooled connections of matstore's own engines
        if keep:
            console.print(f"kept database {name}")
        else:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0..1) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def time_call(fn: Callable[[], Any], repeat: int, *, setup: Callable[[], Any] | None = None) -> tuple[list[float], Any]:
    """Wall-clock seconds of ``repeat`` calls of ``fn`` (``setup`` runs untimed before each)."""
    times, result = [], None
    for _ in range(repeat):
        if setup is not None:
            setup()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, caption: str | None = None) -> Table:
    """Print a Rich table (first column left-aligned, the rest right-aligned) and return it."""
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    for k, column in enumerate(columns):
        table.add_column(column, justify="left" if k == 0 else "right")
    for row in rows:
        table.add_row(*(str(v) for v in row))
    console.print(table)
    return table


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The same rows as a Markdown table (for docs/benchmarks.md)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" if k == 0 else "---:" for k in range(len(columns))) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def machine_info(server: str | None = None) -> dict[str, str]:
    """nproc, memory, CPU model, PostgreSQL version and package versions."""
    info: dict[str, str] = {"python": platform.python_version(), "nproc": str(os.cpu_count())}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        info["memory"] = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False).stdout.splitlines()[1]
    except (OSError, IndexError):
        pass
    if server:
        try:
            engine = create_engine(sqlalchemy_url(server))
            with engine.connect() as conn:
                info["postgresql"] = conn.execute(text("SHOW server_version")).scalar_one()
            engine.dispose()
        except Exception as exc:  # noqa: BLE001
            info["postgresql"] = f"unavailable ({exc.__class__.__name__})"
    for package in ("matstore", "numpy", "psycopg", "SQLAlchemy", "ase", "ase-db-backends", "psycopg2-binary", "extxyz"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = "not installed"
    return info


def print_machine(server: str | None = None) -> None:
    info = machine_info(server)
    console.print("[dim]" + "; ".join(f"{k} {v}" for k, v in info.items()) + "[/]", highlight=False)
