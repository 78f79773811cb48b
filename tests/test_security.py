"""Security: SQL injection through every CLI argument that reaches SQL, the reader role, credentials.

- Injection strings given to ``matstore sql``, ``predict``, ``models show``, ``fit``, ``refit``,
  ``models promote`` and as values of an ``ingest table`` mapping change no table (md5 of every
  table in the schema before/after) and end in a clean one-line error (exit 1 or 2, no traceback).
  Where a string is *data* (a method name in a mapping) it is stored verbatim and nothing else
  changes.
- The role made by ``matstore db grant-reader`` cannot INSERT, UPDATE, DELETE or CREATE, even
  after switching its session to READ WRITE.
- A password in ``MATSTORE_DATABASE_URL`` appears neither in the output of ``matstore -v ...``
  (succeeding and failing ingests, ``db info``) nor anywhere in ``job_run`` or ``source``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from matstore.config import get_settings
from tests.conftest import table_checksums as checksums

DATA = Path(__file__).parent / "data"
GOOD, BAD = DATA / "good", DATA / "bad"

INJECTIONS = (
    "'; DROP TABLE material; --",
    "1 OR 1=1",
    "$$; DELETE FROM source; $$",
    "'; SELECT pg_sleep(30); --",
    "x' OR pg_sleep(30) IS NOT NULL OR 'a'='a",
    'Cu"; DROP TABLE method; --',
)
IDS = ("drop-table", "or-1-eq-1", "dollar-quote-delete", "pg-sleep", "pg-sleep-in-string", "double-quote-drop")


class Snapshot:
    """Checksums of every table; :meth:`assert_unchanged` allows only new *failed* job_run rows.

    A command that fails records its run as ``failed`` in ``job_run`` on purpose (that row
    holds the error); every other table, and every job_run row that existed, must be unchanged.
    """

    def __init__(self, engine) -> None:
        self.engine = engine
        with engine.connect() as conn:
            self.max_job = conn.execute(text("SELECT coalesce(max(id), 0) FROM job_run")).scalar_one()
        self.sums = checksums(engine, self.max_job)

    def assert_unchanged(self, what: object = "") -> None:
        assert checksums(self.engine, self.max_job) == self.sums, f"{what} changed the database"
        with self.engine.connect() as conn:
            new = conn.execute(text("SELECT status FROM job_run WHERE id > :m"), {"m": self.max_job}).scalars().all()
        assert set(new) <= {"failed"}, f"{what} left job_run rows {new}"


def assert_clean_error(result) -> None:
    """A Typer/Click result that failed with a message and without a traceback."""
    assert result.exit_code in (1, 2), (result.exit_code, result.output)
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


@pytest.fixture(scope="module")
def store(session_engine):
    """A store with structures, a property table and a fitted, promoted model (built once per module)."""
    from tests.conftest import DATA_TABLES

    engine = session_engine
    from matstore.ingest.structures import ingest_structure_file
    from matstore.ingest.table import ingest_table
    from matstore.models.service import fit_model
    from matstore.models.versioning import promote
    from tests.test_models_store import populate, spec

    ingest_structure_file(GOOD / "cu_emt.extxyz", engine=engine, method="emt", method_kind="calculator")
    ingest_table(GOOD / "small_table.csv", GOOD / "small_table.yaml", engine=engine)
    populate(engine)
    fit_model(engine, spec())
    promote(engine, name="gamma_synth", version=1, alias="production")
    yield engine
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))


@pytest.fixture
def cli(monkeypatch):
    """Invoke the CLI in this process with a 2 s statement timeout (bounds any pg_sleep)."""
    from matstore.cli import app, expand_multi_value_options

    monkeypatch.setenv("MATSTORE_STATEMENT_TIMEOUT_MS", "2000")
    get_settings.cache_clear()
    runner = CliRunner()

    def run(*args: str):
        start = time.monotonic()
        result = runner.invoke(app, expand_multi_value_options(list(args)))
        assert time.monotonic() - start < 20, f"{args} took too long (pg_sleep ran?)"
        return result

    yield run
    get_settings.cache_clear()


def _cli_cases(s: str) -> list[list[str]]:
    return [
        ["sql", s],
        ["sql", f"SELECT * FROM material WHERE formula = '{s}'"] if "'" not in s else ["sql", f"SELECT {s}"],
        ["sql", f"SELECT 1; {s}"],
        ["sql", f"COMMIT; {s}"],
        ["predict", s, "--material", "Cu", "--method", "synth"],
        ["predict", "gamma_synth@production", "--material", s, "--method", "synth", "--hkl", "1", "1", "1"],
        ["predict", "gamma_synth@production", "--material", "Cu", "--method", s, "--hkl", "1", "1", "1"],
        ["predict", f"gamma_synth@{s}", "--material", "Cu", "--method", "synth"],
        ["models", "show", s],
        ["models", "show", f"gamma_synth:{s}"],
        ["models", "promote", s, "1", "production"],
        ["models", "promote", "gamma_synth", "1", s],
        ["refit", s],
        ["fit", "--name", s, "--target", "surface_energy", "--features", "lattice_constant", "--engine", "sparse"],
        ["fit", "--name", "inj_model", "--target", s, "--features", "lattice_constant", "--engine", "sparse"],
        ["fit", "--name", "inj_model", "--target", "surface_energy", "--features", s, "--engine", "sparse"],
        ["fit", "--name", "inj_model", "--target", "surface_energy", "--features", "lattice_constant",
         "--method", s, "--engine", "sparse"],
    ]


@pytest.mark.parametrize("payload", INJECTIONS, ids=IDS)
def test_injection_through_cli_arguments_changes_nothing(store, cli, payload):
    before = Snapshot(store)
    for args in _cli_cases(payload):
        result = cli(*args)
        if args[0] == "sql" and result.exit_code == 0:
            continue  # a harmless SELECT (e.g. "SELECT 1 OR 1=1") may succeed; it is read-only
        assert_clean_error(result)
        before.assert_unchanged(args)


def test_sql_refuses_several_statements_and_writes(store, cli):
    """``COMMIT; ...`` must not escape the READ ONLY transaction of ``matstore sql``."""
    before = Snapshot(store)
    for statement in ("COMMIT; DELETE FROM source", "ROLLBACK; DROP TABLE material CASCADE",
                      "COMMIT; CREATE TABLE pwned (x int)", "DELETE FROM source", "CREATE TABLE pwned (x int)",
                      "UPDATE property_definition SET unit = 'eV'", "SELECT 1; SET statement_timeout = 0"):
        result = cli("sql", statement)
        assert_clean_error(result)
        assert result.output.startswith("error:"), result.output
    before.assert_unchanged("matstore sql")


def test_sql_statement_timeout_bounds_pg_sleep(store, cli):
    start = time.monotonic()
    result = cli("sql", "SELECT pg_sleep(30)")
    assert_clean_error(result)
    assert "statement timeout" in result.output
    assert time.monotonic() - start < 10


def test_mapping_values_are_data_not_sql(store, cli, tmp_path):
    """Injection strings in a mapping: invalid places fail cleanly; a method name is stored verbatim."""
    base = yaml.safe_load((GOOD / "small_table.yaml").read_text())
    table = GOOD / "small_table.csv"
    fresh = iter(range(1000))

    def new_table() -> Path:
        """The small table under new method names: a new sha256, so the mapping is fully applied (a
        changed value under the same method would be refused as conflicting with the stored one)."""
        path = tmp_path / f"table_{next(fresh)}.csv"
        n = next(fresh)
        path.write_text(table.read_text().replace("EAM_A", f"EAM_A{n}").replace("EAM_B", f"EAM_B{n}"))
        return path

    for payload in INJECTIONS:
        before = Snapshot(store)
        variants = {
            "definition": {**base, "columns": {"a_A": {"definition": payload, "unit": "angstrom"}}},
            "unit": {**base, "columns": {"a_A": {"definition": "lattice_constant", "unit": payload}}},
            "column": {**base, "columns": {payload: {"definition": "lattice_constant", "unit": "angstrom"}}},
            "material_column": {**base, "material": {"column": payload, "prototype": "fcc"}},
            "method_kind": {**base, "method": {"column": "method", "kind": payload}},
            "constant_formula": {**base, "material": {"formula": payload, "prototype": "fcc"}},
            "on_invalid": {**base, "on_invalid": payload},
        }
        for name, mapping in variants.items():
            path = tmp_path / f"{name}.yaml"
            path.write_text(yaml.safe_dump(mapping))
            result = cli("ingest", "table", str(new_table()), "--mapping", str(path))
            assert_clean_error(result)
            before.assert_unchanged(f"mapping {name} = {payload!r}")

    # As a method name in the table (and a source description in the mapping) the string is data.
    payload = INJECTIONS[0]
    mapping = {**base, "source": {"description": INJECTIONS[2]}}
    path = tmp_path / "data.yaml"
    path.write_text(yaml.safe_dump(mapping))
    csv = new_table()
    csv.write_text(re.sub(r"EAM_B\d+", lambda _: payload, csv.read_text()))
    before = checksums(store)
    result = cli("ingest", "table", str(csv), "--mapping", str(path))
    assert result.exit_code == 0, result.output
    after = checksums(store)
    changed = {t for t in before if before[t] != after[t]}
    assert changed <= {"method", "source", "job_run", "bulk_property", "surface", "surface_property"}, changed
    with store.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM method WHERE name = :n"), {"n": payload}).scalar_one() == 1
        assert conn.execute(text("SELECT count(*) FROM source WHERE description = :d"), {"d": INJECTIONS[2]}).scalar_one() == 1
        assert conn.execute(text("SELECT count(*) FROM material")).scalar_one() > 0


# --- the reader role -----------------------------------------------------------------------------

def test_reader_role_cannot_write(store, database_url, cli):
    role = f"matstore_reader_{uuid.uuid4().hex[:8]}"
    result = cli("db", "grant-reader", role)
    assert result.exit_code == 0, result.output
    reader_url = make_url(database_url).set(username=role, password=None)
    reader = create_engine(reader_url)
    before = Snapshot(store)
    statements = (
        "INSERT INTO material (formula, prototype) VALUES ('Zr', 'hcp')",
        "UPDATE property_definition SET unit = 'eV' WHERE name = 'c44'",
        "DELETE FROM source",
        "DELETE FROM job_run",
        "TRUNCATE configuration CASCADE",
        "CREATE TABLE reader_table (x int)",
        "CREATE SCHEMA reader_schema",
        "CREATE VIEW reader_view AS SELECT 1",
        "DROP TABLE material",
        "ALTER TABLE material ADD COLUMN x int",
        "GRANT INSERT ON material TO PUBLIC",
    )
    try:
        with reader.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM material")).scalar_one() > 0  # it can read
            assert conn.execute(text("SHOW default_transaction_read_only")).scalar_one() == "on"
        for read_write in (False, True):
            for statement in statements:
                with reader.connect() as conn:
                    if read_write:  # the role may switch the read-only default off; privileges still stop it
                        conn.execute(text("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE"))
                    with pytest.raises(Exception) as info:  # noqa: PT011 - read-only or permission error
                        conn.execute(text(statement))
                    message = str(info.value)
                    assert "read-only transaction" in message or "permission denied" in message or "must be owner" in message, message
        before.assert_unchanged("the reader role")
    finally:
        reader.dispose()
        with store.begin() as conn:
            conn.execute(text(f'DROP OWNED BY "{role}"'))
            conn.execute(text(f'DROP ROLE "{role}"'))


# --- credentials ---------------------------------------------------------------------------------

SECRET = "S3cret-Pa55word-xyzzy"


def _run(args: list[str], url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MATSTORE_DATABASE_URL": url, "COLUMNS": "200"}
    env.pop("MATSTORE_DASHBOARD_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "matstore", "-v", *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def test_password_never_logged_or_stored(engine, database_url, tmp_path):
    url = make_url(database_url).set(password=SECRET).render_as_string(hide_password=False)
    assert SECRET in url
    good = tmp_path / "good.extxyz"
    good.write_text((GOOD / "cu_emt.extxyz").read_text().replace("0.05292157", "0.05292158"))  # a new source
    table = tmp_path / "table.csv"
    table.write_text((GOOD / "small_table.csv").read_text().replace("EAM_", "EAM_new_"))
    runs = [
        (["ingest", "structures", str(good), "--method", "emt"], url, 0),
        (["ingest", "structures", str(BAD / "truncated.extxyz")], url, 1),
        (["ingest", "table", str(table), "--mapping", str(GOOD / "small_table.yaml")], url, 0),
        (["ingest", "table", str(BAD / "nan_inf.csv"), "--mapping", str(BAD / "nan_inf.yaml")], url, 1),
        (["db", "info"], url, 0),
        # A database that does not exist: the connection error must not echo the URL's password.
        (["db", "info"], make_url(url).set(database="matstore_no_such_db").render_as_string(hide_password=False), 1),
        (["sql", "SELECT current_user"], url, 0),
    ]
    with engine.connect() as conn:
        first = conn.execute(text("SELECT coalesce(max(id), 0) FROM job_run")).scalar_one()
    for args, run_url, code in runs:
        proc = _run(args, run_url)
        assert proc.returncode == code, (args, proc.stdout, proc.stderr)
        assert SECRET not in proc.stdout and SECRET not in proc.stderr, (args, proc.stdout, proc.stderr)
    with engine.connect() as conn:
        jobs = conn.execute(text("SELECT j::text FROM job_run j")).scalars().all()
        sources = conn.execute(text("SELECT s::text FROM source s")).scalars().all()
        statuses = conn.execute(text("SELECT status FROM job_run WHERE id > :f ORDER BY id"), {"f": first}).scalars().all()
    assert statuses.count("failed") == 2 and statuses.count("succeeded") == 2, statuses
    assert len(sources) >= 2 and all(SECRET not in s for s in sources)
    assert all(SECRET not in j for j in jobs)
