"""The command line against a server and against the embedded default, and the reader role."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from matstore.admin import grant_reader


def run_cli(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``matstore ARGS`` in a subprocess and return the completed process."""
    proc = subprocess.run(
        [sys.executable, "-m", "matstore", *args], capture_output=True, text=True, env=env, timeout=180
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"matstore {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def server_env(database_url: str) -> dict[str, str]:
    return {**os.environ, "MATSTORE_DATABASE_URL": database_url, "COLUMNS": "200"}


def test_info_against_a_server(database_url: str) -> None:
    out = run_cli("db", "info", env=server_env(database_url)).stdout
    assert "PostgreSQL" in out
    assert "(server)" in out
    assert "up to date" in out


def test_sql_prints_csv(engine, database_url: str) -> None:
    out = run_cli("sql", "SELECT name, unit FROM property_definition WHERE name = 'c44'", "--csv",
                  env=server_env(database_url)).stdout
    assert out.splitlines() == ["name,unit", "c44,GPa"]


@pytest.mark.parametrize("statement", [
    "INSERT INTO material (formula, prototype) VALUES ('Cu', 'fcc')",
    "DROP TABLE material",
    "SELECT 1; DELETE FROM property_definition",
])
def test_sql_is_read_only(engine, database_url: str, statement: str) -> None:
    proc = run_cli("sql", statement, env=server_env(database_url), check=False)
    assert proc.returncode == 1
    assert "read-only transaction" in proc.stderr
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM property_definition")).scalar_one() > 20
        assert conn.execute(text("SELECT count(*) FROM material")).scalar_one() == 0


def test_reader_role_can_select_but_not_write(database_url: str, session_engine) -> None:
    role = f"reader_{uuid.uuid4().hex[:8]}"
    grant_reader(session_engine, role, password="s3cret-pw")
    try:
        reader = create_engine(make_url(database_url).set(username=role, password="s3cret-pw"))
        with reader.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM property_definition")).scalar_one() > 20
            with pytest.raises(DBAPIError, match="read-only transaction|permission denied"):
                conn.execute(text("INSERT INTO material (formula, prototype) VALUES ('Cu', 'fcc')"))
        reader.dispose()
    finally:
        with session_engine.begin() as conn:
            conn.execute(text(f'DROP OWNED BY "{role}"'))
            conn.execute(text(f'DROP ROLE "{role}"'))


def test_reader_role_name_is_validated(session_engine) -> None:
    with pytest.raises(ValueError, match="lower-case SQL identifier"):
        grant_reader(session_engine, 'x"; DROP TABLE material; --')


@pytest.fixture()
def embedded_dir() -> Iterator[Path]:
    """A data directory outside pytest's ``pytest-of-<user>``.

    Run as root, the embedded server runs as the system user ``pgserver``, which must
    traverse every parent of its data directory; pgserver opens them (g+rx, o+rx), but a
    pytest session starting meanwhile resets ``pytest-of-root`` to 0700 (its own guard), so
    under ``tmp_path`` the test failed whenever another pytest ran on the machine.
    """
    with tempfile.TemporaryDirectory(prefix="matstore-embedded-test-") as directory:
        yield Path(directory)


def test_embedded_default_starts_reuses_and_stops(embedded_dir: Path) -> None:
    tmp_path = embedded_dir
    env = {k: v for k, v in os.environ.items() if not k.startswith("MATSTORE_")}
    env.update(MATSTORE_DATA_DIR=str(tmp_path / "data"), COLUMNS="200")
    try:
        first = time.perf_counter()
        run_cli("db", "migrate", env=env)
        first = time.perf_counter() - first
        info = run_cli("db", "info", env=env).stdout
        assert "embedded PostgreSQL" in info
        assert "up to date" in info
        assert (tmp_path / "data" / "pgdata" / "postmaster.pid").exists(), "server left running for reuse"
        pid_before = (tmp_path / "data" / "pgdata" / "postmaster.pid").read_text().split()[0]
        run_cli("sql", "SELECT count(*) FROM property_definition", env=env)
        pid_after = (tmp_path / "data" / "pgdata" / "postmaster.pid").read_text().split()[0]
        assert pid_before == pid_after, "the running server is reused, not restarted"
        assert "stopped" in run_cli("db", "stop", env=env).stdout
        assert not (tmp_path / "data" / "pgdata" / "postmaster.pid").exists()
        # restart on demand keeps the data
        out = run_cli("sql", "SELECT count(*) AS n FROM property_definition", "--csv", env=env).stdout
        assert int(out.splitlines()[1]) > 20
        assert first < 120
    finally:
        run_cli("db", "stop", env=env, check=False)


def test_credentials_never_printed(database_url: str) -> None:
    url = make_url(database_url).set(password="hunter2-secret").render_as_string(hide_password=False)
    proc = run_cli("db", "info", env=server_env(url), check=False)
    assert "hunter2-secret" not in proc.stdout + proc.stderr
