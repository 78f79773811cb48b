"""Least privilege, round two: writer paths run as ``matstore_writer``, readers stay readers.

Every test runs against the real PostgreSQL of ``tests/conftest.py`` with a **superuser**
``MATSTORE_DATABASE_URL`` (the audit's setup) and observes the role from inside the database.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.test_cli_db import run_cli, server_env

GOOD = Path(__file__).parent / "data" / "good"


@pytest.fixture
def role_log(engine):
    """A table filled by triggers on the tables writers insert into: (table, current_user, is_superuser)."""
    tables = ("job_run", "bulk_property", "equation_version", "equation_alias", "vocabulary_addition", "configuration")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE test_role_log (tab text, who text, su text)"))
        conn.execute(text("GRANT INSERT ON test_role_log TO matstore_writer"))
        conn.execute(text("CREATE FUNCTION test_log_role() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                          "INSERT INTO test_role_log VALUES (TG_TABLE_NAME, current_user, current_setting('is_superuser'));"
                          " RETURN NULL; END $$"))
        conn.execute(text("GRANT EXECUTE ON FUNCTION test_log_role() TO matstore_writer"))
        for table in tables:
            conn.execute(text(f"CREATE TRIGGER test_log_role AFTER INSERT ON {table} "
                              "FOR EACH ROW EXECUTE FUNCTION test_log_role()"))
    yield engine
    with engine.begin() as conn:
        for table in tables:
            conn.execute(text(f"DROP TRIGGER test_log_role ON {table}"))
        conn.execute(text("DROP FUNCTION test_log_role() CASCADE"))
        conn.execute(text("DROP TABLE test_role_log"))


def _seen(engine) -> dict[tuple[str, str, str], int]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT tab, who, su, count(*) FROM test_role_log GROUP BY 1, 2, 3")).all()
    return {(t, w, s): n for t, w, s, n in rows}


def test_writer_paths_run_as_matstore_writer(role_log, database_url: str, tmp_path) -> None:
    from tests.test_models_store import populate

    env = server_env(database_url)
    run_cli("vocab", "add", "test_writer_prop", "--unit", "eV", "--scope", "bulk", env=env)
    run_cli("ingest", "table", str(GOOD / "small_table.csv"), "--mapping", str(GOOD / "small_table.yaml"), env=env)
    run_cli("ingest", "structures", str(GOOD / "cu_emt.extxyz"), "--method", "EMT", env=env)
    run_cli("export", "structures", str(tmp_path / "out.extxyz"), "--method", "EMT", "--name", "t", env=env)
    seen = _seen(role_log)
    populate(role_log)  # the test's own superuser writes, not logged below
    with role_log.begin() as conn:
        conn.execute(text("DELETE FROM test_role_log"))
    run_cli("fit", "--name", "g", "--target", "surface_energy", "--features", "lattice_constant", "cohesive_energy",
            "--method", "synth", "--factorize", "orientation", "--engine", "sparse", "--seed", "0", env=env)
    run_cli("models", "promote", "g", "1", "production", env=env)
    for key, count in _seen(role_log).items():
        seen[key] = seen.get(key, 0) + count
    assert {who for _, who, _ in seen} == {"matstore_writer"}, seen
    assert {su for _, _, su in seen} == {"off"}, seen
    tables = {tab for tab, _, _ in seen}
    assert {"vocabulary_addition", "bulk_property", "configuration", "equation_version", "equation_alias",
            "job_run"} <= tables
    # one job_run row per CLI command (vocab add, 2 ingests, export, fit, promote) at least
    assert seen[("job_run", "matstore_writer", "off")] >= 4


def test_jobs_status_reads_as_the_reader(engine, database_url: str) -> None:
    out = run_cli("jobs", "status", env=server_env(database_url))
    assert out.returncode == 0 and "workers alive" in out.stdout
    with engine.connect() as conn:  # the reader group could not write what status read
        assert not conn.execute(text("SELECT has_table_privilege('matstore_reader', 'procrastinate_jobs', "
                                     "'INSERT, UPDATE, DELETE')")).scalar_one()


def test_writer_engine_refuses_a_login_outside_the_group(engine, database_url: str) -> None:
    name = f"t_nonwriter_{uuid.uuid4().hex[:6]}"
    with engine.begin() as conn:
        conn.execute(text(f"CREATE ROLE {name} LOGIN IN ROLE matstore_reader"))
    try:
        url = make_url(database_url).set(username=name).render_as_string(hide_password=False)
        out = run_cli("vocab", "add", "test_refused_prop", "--unit", "eV", "--scope", "bulk", env=server_env(url),
                      check=False)
        assert out.returncode == 1
        assert out.stderr.strip() == (
            f"error: the database URL's login {name} is not a member of matstore_writer, and matstore writes only "
            f"as matstore_writer: as a role administrator run GRANT matstore_writer TO {name} (docs/security.md)")
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP ROLE {name}"))


@pytest.mark.parametrize(("statement", "allowed"), [
    ("UPDATE job_run SET status = status", True),
    ("UPDATE job_run SET kind = kind", False),
    ("DELETE FROM job_run", False),
    ("UPDATE alembic_version SET version_num = version_num", False),
    ("DELETE FROM procrastinate_events", False),
    ("INSERT INTO bulk_properties_wide DEFAULT VALUES", False),
    ("TRUNCATE material CASCADE", False),
    ("DELETE FROM procrastinate_periodic_defers", True),
])
def test_writer_grants_are_narrow(engine, statement: str, allowed: bool) -> None:
    with engine.connect() as conn, conn.begin() as trans:
        conn.execute(text("SET LOCAL ROLE matstore_writer"))
        try:
            conn.execute(text(statement))
            outcome = True
        except Exception as exc:  # noqa: BLE001
            assert "permission denied" in str(exc) or "cannot insert into view" in str(exc), exc
            outcome = False
        trans.rollback()
    assert outcome is allowed


@pytest.fixture
def candidate(engine):
    """A fresh login in the reader group, dropped (with what it owns) afterwards."""
    name = f"t_reader_{uuid.uuid4().hex[:6]}"
    with engine.begin() as conn:
        conn.execute(text(f"CREATE ROLE {name} LOGIN IN ROLE matstore_reader"))
    yield name
    with engine.begin() as conn:
        conn.execute(text(f"DROP OWNED BY {name}"))
        conn.execute(text(f"DROP ROLE {name}"))
        conn.execute(text("DROP SCHEMA IF EXISTS t_extra CASCADE"))
        conn.execute(text("DROP FUNCTION IF EXISTS t_definer()"))


@pytest.mark.parametrize(("grant", "reason"), [
    ("GRANT pg_read_all_data TO {r}", "is a member of pg_read_all_data"),
    ("GRANT pg_monitor TO {r}", "is a member of pg_monitor, pg_read_all_settings, pg_read_all_stats, "
                                "pg_stat_scan_tables"),
    ("GRANT UPDATE (formula) ON material TO {r}", "may write to public.material"),
    ("CREATE SCHEMA t_extra; GRANT CREATE ON SCHEMA t_extra TO {r}", "may create objects in schema t_extra"),
    ("CREATE FUNCTION t_definer() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'; "
     "ALTER FUNCTION t_definer() OWNER TO {r}", "owns function t_definer()"),
    ("CREATE FUNCTION t_definer() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'; "
     "GRANT EXECUTE ON FUNCTION t_definer() TO {r}", "may execute SECURITY DEFINER function t_definer()"),
    ("GRANT CREATE ON DATABASE postgres TO {r}", "owns, may create in or make temporary tables in database postgres"),
])
def test_grant_reader_refuses_stronger_logins(engine, database_url: str, candidate: str, grant: str,
                                              reason: str) -> None:
    with engine.begin() as conn:
        for statement in grant.format(r=candidate).split("; "):
            conn.execute(text(statement))
    try:
        out = run_cli("db", "grant-reader", candidate, env=server_env(database_url), check=False)
    finally:
        if "DATABASE postgres" in grant:
            with engine.begin() as conn:
                conn.execute(text(f"REVOKE CREATE ON DATABASE postgres FROM {candidate}"))
    assert out.returncode == 1
    assert out.stderr.strip() == (f"error: role {candidate} {reason}: grant-reader makes SELECT-only logins and will "
                                  "not call this one a reader; choose a new name")


def _role_state(engine, name: str) -> tuple[str | None, list[str]]:
    with engine.connect() as conn:
        password = conn.execute(text("SELECT rolpassword FROM pg_authid WHERE rolname = :n"), {"n": name}).scalar_one()
        settings = conn.execute(text("SELECT setconfig FROM pg_db_role_setting WHERE setdatabase = 0 "
                                     "AND setrole = :n ::regrole"), {"n": name}).scalar_one()
    return password, sorted(settings)


def test_grant_reader_keeps_the_password_and_bounds_the_login(engine, database_url: str, candidate: str) -> None:
    from matstore.admin import grant_reader

    assert grant_reader(engine, candidate, password="first-secret") == "set"
    password, settings = _role_state(engine, candidate)
    assert password is not None and password.startswith("SCRAM-SHA-256$")
    assert settings == ["default_transaction_read_only=on", "idle_in_transaction_session_timeout=60s",
                        "statement_timeout=60s", "temp_file_limit=1GB"]
    out = run_cli("db", "grant-reader", candidate, env={**server_env(database_url), "MATSTORE_READER_PASSWORD": ""})
    assert f"{candidate} keeps its password" in out.stdout and "NO password" not in out.stderr
    assert _role_state(engine, candidate) == (password, settings)


def test_reader_paths_are_bounded_by_the_role(engine, database_url: str, tmp_path) -> None:
    env = {**server_env(database_url), "MATSTORE_DATA_DIR": str(tmp_path)}
    run_cli("db", "info", env=env)  # provisions matstore_sql_reader
    with engine.connect() as conn:
        settings = conn.execute(text("SELECT setconfig FROM pg_db_role_setting WHERE setdatabase = 0 "
                                     "AND setrole = 'matstore_sql_reader'::regrole")).scalar_one()
    assert {"statement_timeout=60s", "temp_file_limit=1GB", "idle_in_transaction_session_timeout=60s"} <= set(settings)


def test_statement_timeout_bounds_the_whole_streamed_query(engine, database_url: str, tmp_path) -> None:
    # 20 batches of 1,000 rows, about 1.2 s each here: every FETCH is under the 3 s timeout, the query is not.
    env = {**server_env(database_url), "MATSTORE_DATA_DIR": str(tmp_path), "MATSTORE_STATEMENT_TIMEOUT_MS": "3000"}
    start = time.monotonic()
    out = run_cli("sql", "--csv", "--limit", "0", "SELECT i, pg_sleep(0.0003) FROM generate_series(1, 20000) i",
                  env=env, check=False)
    assert out.returncode == 1
    assert out.stderr.strip() == ("error: query cancelled: it ran longer than the statement timeout of 3000 ms in "
                                  "total (MATSTORE_STATEMENT_TIMEOUT_MS); add a LIMIT or a narrower WHERE, or raise "
                                  "the timeout")
    assert 1000 < len(out.stdout.splitlines()) < 20000  # rows streamed before the deadline, not all of them
    assert time.monotonic() - start < 3 + 8  # cut at 3 s (23 s before); CLI start-up on 2 busy cores


def test_dashboard_refuses_a_superuser_reader_url_before_starting(database_url: str, tmp_path) -> None:
    env = {**server_env(database_url), "MATSTORE_DATA_DIR": str(tmp_path)}
    out = run_cli("dashboard", "--port", "8599", "--reader-url", database_url, env=env, check=False)
    assert out.returncode == 1
    assert out.stderr.strip().startswith(
        "error: MATSTORE_DASHBOARD_DATABASE_URL (--reader-url) logs in as postgres, which is a superuser: matstore "
        "reads only as a login that is a member of matstore_reader alone")
    assert "dashboard on" not in out.stdout


def test_writer_twin_connection_keeps_the_role(database_url: str, monkeypatch) -> None:
    """A second connection made from a writer connection's DSN (the ingest snapshot twin) is a writer too."""
    from matstore.config import get_settings
    from matstore.db import writer_engine

    monkeypatch.setenv("MATSTORE_DATABASE_URL", database_url)
    get_settings.cache_clear()
    with writer_engine().connect() as conn:
        raw = conn.connection.driver_connection
        with psycopg.connect(raw.info.dsn, password=raw.info.password) as twin:
            assert twin.execute("SELECT current_user, current_setting('is_superuser')").fetchone() == (
                "matstore_writer", "off")
