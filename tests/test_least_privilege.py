"""Least privilege: ``matstore sql`` with the default superuser URL still reads as a non-superuser.

Each payload that ran as the postgres superuser before issue 13 (a shell command through
``COPY ... TO PROGRAM``, server files, large objects, signals, config reload, an exclusive
lock, switching role, switching the transaction to read-write, changing the role's defaults)
is sent through ``matstore sql`` with ``MATSTORE_DATABASE_URL`` naming a superuser.  Each must
fail with a one-line error and leave no trace: no file, no program run, no large object, no
role setting, the target backend alive, every table unchanged.  Then the reader group's own
escapes are tried on a direct login made by ``matstore db grant-reader``.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from matstore.config import get_settings
from matstore.readers import MANAGED_LOGIN, libpq_url, privilege_violations
from tests.conftest import table_checksums

TRACE_DIR = Path("/tmp")


@pytest.fixture
def cli(monkeypatch, tmp_path, database_url):
    """Run the CLI in this process with a private data dir (the reader password file lives there)."""
    from matstore.cli import app

    monkeypatch.setenv("MATSTORE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MATSTORE_STATEMENT_TIMEOUT_MS", "3000")
    monkeypatch.delenv("MATSTORE_READER_URL", raising=False)
    get_settings.cache_clear()
    runner = CliRunner()
    yield lambda *args: runner.invoke(app, list(args))
    get_settings.cache_clear()


@pytest.fixture
def admin(database_url):
    """A superuser psycopg connection (autocommit) to the test database."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        yield conn


def _state(admin, engine) -> dict:
    """Everything a payload could change outside the files it names."""
    return {
        "tables": table_checksums(engine),
        "large_objects": admin.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0],
        "role_settings": admin.execute("SELECT coalesce(array_agg(setconfig::text ORDER BY setconfig::text), '{}') "
                                       "FROM pg_db_role_setting").fetchone()[0],
        "roles": admin.execute("SELECT array_agg(rolname::text || rolsuper::text ORDER BY rolname) FROM pg_roles").fetchone()[0],
    }


def _payloads(marker: str, victim_pid: int) -> dict[str, str]:
    return {
        "copy-to-program": f"COPY (SELECT 1) TO PROGRAM 'touch {TRACE_DIR}/{marker}-program'",
        "copy-to-file": f"COPY (SELECT 1) TO '{TRACE_DIR}/{marker}-file'",
        "pg_read_file": "SELECT pg_read_file('/etc/passwd')",
        "pg_ls_dir": "SELECT pg_ls_dir('.')",
        "lo_import": "SELECT lo_import('/etc/passwd')",
        "lo_from_bytea": "SELECT lo_from_bytea(0, 'filling the disk'::bytea)",
        "lo_create": "SELECT lo_create(0)",
        "pg_terminate_backend": f"SELECT pg_terminate_backend({victim_pid})",
        "pg_reload_conf": "SELECT pg_reload_conf()",
        "lock-table": "LOCK TABLE material IN ACCESS EXCLUSIVE MODE",
        "set_config-role": "SELECT set_config('role', 'postgres', true)",
        "reset-role": "SELECT set_config('role', 'none', false), pg_read_file('/etc/hostname')",
        "read-write": "SET default_transaction_read_only = off",
        "transaction-read-write": "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
        "alter-role-self": "ALTER ROLE CURRENT_USER SET default_transaction_read_only = off",
        "alter-role-password": "ALTER ROLE CURRENT_USER PASSWORD 'taken'",
        "create-temp": "CREATE TEMP TABLE t AS SELECT 1",
        "queue-function": "SELECT procrastinate_defer_jobs_v1(ARRAY[]::procrastinate_job_to_defer_v1[])",
    }


def test_sql_reads_as_a_non_superuser_login(cli, engine, admin):
    migrated = cli("db", "migrate")
    assert migrated.exit_code == 0, migrated.output
    assert migrated.output.splitlines()[-1] == f"reader login {MANAGED_LOGIN} ready"
    result = cli("sql", "SELECT session_user, current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = session_user)",
                 "--csv")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1] == f"{MANAGED_LOGIN},{MANAGED_LOGIN},False"
    assert privilege_violations(admin, MANAGED_LOGIN) == []
    password_file = next((Path(get_settings().data_dir) / "secrets").glob("reader-*.password"))
    assert password_file.stat().st_mode & 0o777 == 0o600


def test_every_payload_is_refused_without_side_effect(cli, engine, admin):
    marker = f"matstore-pwn-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq_url(engine.url)) as victim:
        victim_pid = victim.info.backend_pid
        before = _state(admin, engine)
        for name, payload in _payloads(marker, victim_pid).items():
            result = cli("sql", payload)
            assert result.exit_code == 1, (name, result.output)
            assert result.output.startswith("error:") and "Traceback" not in result.output, (name, result.output)
        assert victim.execute("SELECT 1").fetchone() == (1,), "the superuser backend was terminated"
    assert _state(admin, engine) == before
    assert not list(TRACE_DIR.glob(f"{marker}*")), "a file was written or a program ran"


def test_refusal_messages_name_the_reason(cli, engine):
    expected = {
        "COPY (SELECT 1) TO PROGRAM 'id'": "pg_execute_server_program",
        "SELECT pg_read_file('/etc/passwd')": "permission denied",
        "SELECT lo_from_bytea(0, 'x')": "permission denied",
        "SELECT set_config('role', 'postgres', true)": "permission denied to set role",
        "SET default_transaction_read_only = off": "returns none",
        "ALTER ROLE CURRENT_USER SET work_mem = '1GB'": "read-only transaction",
    }
    for statement, reason in expected.items():
        assert reason in cli("sql", statement).output, statement


def test_sql_streams_with_a_limit(cli, engine):
    result = cli("sql", "SELECT g FROM generate_series(1, 5000) g", "--csv", "--limit", "3")
    assert result.stdout.splitlines() == ["g", "1", "2", "3"]
    assert "more rows not shown" in result.stderr  # stdout stays valid CSV
    full = cli("sql", "SELECT g FROM generate_series(1, 2500) g", "--csv", "--limit", "0").stdout.splitlines()
    assert full[1:] == [str(i) for i in range(1, 2501)]  # all, across several fetched batches
    table = cli("sql", "SELECT g FROM generate_series(1, 2500) g", "--limit", "0").output
    assert "2500" in table and "more rows" not in table


def test_configured_reader_url_must_not_be_stronger(cli, monkeypatch, database_url):
    monkeypatch.setenv("MATSTORE_READER_URL", database_url)  # the superuser
    get_settings.cache_clear()
    result = cli("sql", "SELECT 1")
    assert result.exit_code == 1
    assert "is a superuser" in result.output and "grant-reader" in result.output


@pytest.mark.parametrize("args", [("models", "list"), ("models", "show", "any"), ("models", "transfer", "a", "b"),
                                  ("predict", "any", "--material", "Cu", "--method", "emt"), ("vocab", "list"),
                                  ("db", "info")])
def test_read_only_model_commands_connect_as_the_reader(cli, monkeypatch, database_url, args):
    """Listing, showing, comparing and evaluating equations, and describing the database, only
    read: they go through the reader login, so a configured reader URL that is a superuser is
    refused as for ``sql``."""
    monkeypatch.setenv("MATSTORE_READER_URL", database_url)  # the superuser
    get_settings.cache_clear()
    result = cli(*args)
    assert result.exit_code == 1, result.output
    assert "is a superuser" in result.output


def test_non_superuser_without_createrole_is_refused(cli, monkeypatch, admin, database_url, engine):
    """A main URL that may neither read-only-log-in nor create a reader: a clear refusal, no fallback."""
    from sqlalchemy.engine import make_url

    writer = f"writer_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE ROLE "{writer}" LOGIN IN ROLE matstore_writer')
    try:
        monkeypatch.setenv("MATSTORE_DATABASE_URL", make_url(database_url).set(username=writer).render_as_string(False))
        monkeypatch.setenv("MATSTORE_DATA_DIR", str(Path(get_settings().data_dir) / "other"))  # no stored password
        get_settings.cache_clear()
        admin.execute(f'ALTER ROLE "{MANAGED_LOGIN}" NOLOGIN')
        result = cli("sql", "SELECT 1")
        assert result.exit_code == 1, result.output
        assert "MATSTORE_READER_URL" in result.output
    finally:
        admin.execute(f'ALTER ROLE "{MANAGED_LOGIN}" LOGIN')
        admin.execute(f'DROP ROLE "{writer}"')


def _can_login(admin) -> bool:
    return admin.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (MANAGED_LOGIN,)).fetchone()[0]


def test_read_commands_never_repair_the_reader_login_migrate_does(cli, admin):
    """A read path does not connect with the main URL's power to make its login (issue 13's
    least privilege): with the managed login unable to log in, ``sql`` and ``models list`` are
    refused with what to run, the login stays as it was, and ``db migrate`` repairs it."""
    admin.execute(f'ALTER ROLE "{MANAGED_LOGIN}" NOLOGIN')
    try:
        for args in (("sql", "SELECT 1"), ("models", "list")):
            result = cli(*args)
            assert result.exit_code == 1, result.output
            line = " ".join(result.output.split())
            assert line.startswith(f"error: the reader login {MANAGED_LOGIN} may not log in (NOLOGIN): run "
                                   "`matstore db migrate` as the store's owner"), line
            assert "MATSTORE_READER_URL" in line
            assert _can_login(admin) is False  # the read left the role alone
        result = cli("db", "migrate")
        assert result.exit_code == 0 and f"reader login {MANAGED_LOGIN} ready" in result.output, result.output
        assert _can_login(admin) is True
    finally:
        admin.execute(f'ALTER ROLE "{MANAGED_LOGIN}" LOGIN')
    assert cli("sql", "SELECT 41 + 1", "--csv").output.splitlines() == ["?column?", "42"]


# --- the reader group's own escapes, on a direct login ----------------------------------------

@pytest.fixture
def reader_login(cli, admin, database_url):
    from sqlalchemy.engine import make_url

    name = f"reader_{uuid.uuid4().hex[:8]}"
    result = cli("db", "grant-reader", name)
    assert result.exit_code == 0, result.output
    assert "NO password" in result.output  # said loudly
    yield name, libpq_url(make_url(database_url).set(username=name))
    admin.execute(f'DROP OWNED BY "{name}"')
    admin.execute(f'DROP ROLE "{name}"')


def test_reader_login_escapes_fail(reader_login, admin, engine):
    name, url = reader_login
    before = _state(admin, engine)
    escapes = (
        "SELECT lo_from_bytea(0, 'x'::bytea)", "SELECT lo_create(0)", "SELECT lo_import('/etc/passwd')",
        "CREATE TEMP TABLE t (x int)", "CREATE TABLE public.t (x int)", "INSERT INTO source (sha256) VALUES ('x')",
        "SELECT set_config('role', 'postgres', false)", "SET ROLE matstore_writer", "SELECT pg_read_file('/etc/passwd')",
        "COPY (SELECT 1) TO '/tmp/matstore-reader-copy'", "SELECT procrastinate_defer_jobs_v1(ARRAY[]::procrastinate_job_to_defer_v1[])",
    )
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        conn.execute("SET default_transaction_read_only = off")  # allowed; privileges still hold
        for statement in escapes:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        assert conn.execute("SELECT count(*) > 20 FROM property_definition").fetchone() == (True,)
    assert _state(admin, engine) == before


def test_reader_read_only_option_overrides_role_defaults(reader_login, monkeypatch, cli, admin):
    """A reader may set its own role defaults (PostgreSQL allows it); matstore's connections override them."""
    name, url = reader_login
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")
        conn.execute(f'ALTER ROLE "{name}" SET default_transaction_read_only = off')
    monkeypatch.setenv("MATSTORE_READER_URL", url)
    get_settings.cache_clear()
    out = cli("sql", "SHOW default_transaction_read_only", "--csv").output
    assert out.splitlines() == ["default_transaction_read_only", "on"]


def test_grant_reader_refuses_stronger_roles(cli, admin):
    writer = f"writer_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE ROLE "{writer}" LOGIN IN ROLE matstore_writer')
    try:
        for name, reason in (("postgres", "is a superuser"), (writer, "matstore_writer"),
                             ("matstore_reader", "group roles")):
            result = cli("db", "grant-reader", name)
            assert result.exit_code == 1 and reason in result.output, (name, result.output)
            assert "can SELECT" not in result.output
        assert admin.execute("SELECT pg_has_role(%s, 'matstore_reader', 'MEMBER')", (writer,)).fetchone() == (False,)
    finally:
        admin.execute(f'DROP ROLE "{writer}"')


def test_migration_grants_reader_select_only(engine):
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT c.relname, has_table_privilege('matstore_reader', c.oid, 'SELECT'),"
            " has_table_privilege('matstore_reader', c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')"
            " FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v', 'm')")).all()
        lo = conn.execute(text("SELECT has_function_privilege('matstore_reader', 'lo_from_bytea(oid, bytea)', 'EXECUTE')")).scalar()
    assert rows and all(select and not write for _, select, write in rows), rows
    assert {"material", "surface_property", "bulk_properties_wide"} <= {r[0] for r in rows}
    assert lo is False


def test_writer_group_ingests_but_cannot_change_the_schema(admin, engine, database_url):
    """A login of matstore_writer (the compose workers) ingests; DDL and server files stay out of reach."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from matstore.ingest.structures import ingest_structure_file

    name = f"writer_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE ROLE "{name}" LOGIN IN ROLE matstore_writer')
    writer = create_engine(make_url(database_url).set(username=name))
    try:
        good = Path(__file__).parent / "data" / "good" / "cu_emt.extxyz"
        ingest_structure_file(good, engine=writer, method="emt", method_kind="calculator")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM configuration")).scalar_one() > 0
        with psycopg.connect(libpq_url(writer.url), autocommit=True) as conn:
            for statement in ("CREATE TABLE public.w (x int)", "DROP TABLE material", "ALTER TABLE material ADD x int",
                              "SELECT pg_read_file('/etc/passwd')", "SELECT lo_from_bytea(0, 'x')"):
                with pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedFunction)):
                    conn.execute(statement)
    finally:
        writer.dispose()
        admin.execute(f'DROP OWNED BY "{name}"')
        admin.execute(f'DROP ROLE "{name}"')


def test_reader_login_without_a_writable_data_dir_is_reported_not_raised(tmp_path, database_url):
    """A migration container may have no writable data directory: the reader line of
    ``db migrate`` says why the login was not checked instead of failing the migration
    (docker-compose.yml configures MATSTORE_READER_URL for its readers)."""
    from matstore.config import Settings
    from matstore.readers import ensure_managed_reader

    blocked = tmp_path / "a-file-not-a-directory"
    blocked.write_text("")
    line = ensure_managed_reader(database_url, Settings(data_dir=blocked))
    assert line.startswith(f"reader login {MANAGED_LOGIN} not checked: cannot keep its password in {blocked}/secrets/")
    assert line.endswith("(Not a directory)")
