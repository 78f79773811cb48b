"""Test fixtures: a throw-away PostgreSQL database per test run.

``MATSTORE_TEST_DATABASE_URL`` names a server (CI: postgresql://postgres@127.0.0.1:5432/postgres);
a uniquely named database is created on it, migrated once, and dropped at the end.  Without
it the tests start an embedded PostgreSQL in a temporary directory.  Tests never touch the
database that ``MATSTORE_DATABASE_URL`` or ``.env`` names.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from matstore.config import get_settings, normalise_database_url

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
STRENGTH_DATA = SHARED / "data" / "strength_covariance"

#: Tables holding data (truncated between tests that write); the vocabulary stays seeded.  The
#: property tables are named: their references are checked by triggers (revisions 0011, 0013),
#: which a ``TRUNCATE ... CASCADE`` of the referenced tables does not follow.
DATA_TABLES = (
    "equation_prediction", "equation_alias", "equation_version", "equation_model",
    "surface_property", "surface", "bulk_property", "configuration_property", "configuration",
    "material", "method", "source", "job_run",
)


def _server_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("MATSTORE_TEST_DATABASE_URL")
    if url:
        return normalise_database_url(url)
    from matstore.embedded import ensure_embedded_url

    return ensure_embedded_url(tmp_path_factory.mktemp("embedded-pg"))


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a fresh, migrated database created for this test run (dropped afterwards)."""
    from matstore.admin import migrate

    server = make_url(_server_url(tmp_path_factory))
    name = f"matstore_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)
    migrate(engine)
    engine.dispose()
    os.environ["MATSTORE_DATABASE_URL"] = url
    get_settings.cache_clear()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def session_engine(database_url: str) -> Iterator[Engine]:
    """One engine on the test database for the whole run."""
    from matstore.db import get_engine

    yield get_engine(database_url)


@pytest.fixture
def engine(session_engine: Engine) -> Iterator[Engine]:
    """The test database's engine; data tables are emptied after the test."""
    yield session_engine
    with session_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))


@pytest.fixture
def user_vocabulary_engine(engine: Engine) -> Iterator[Engine]:
    """:func:`engine`, and afterwards the definitions a test added are removed too (the vocabulary
    outlives the truncation of the data tables, and their values must go first)."""
    yield engine
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE configuration_property, material_configuration, bulk_property, surface_property, "
                          "vocabulary_addition RESTART IDENTITY CASCADE"))
        conn.execute(text("DELETE FROM property_definition WHERE NOT builtin"))


@pytest.fixture
def db_session(session_engine: Engine) -> Iterator:
    """A SQLModel session inside a transaction that is rolled back after the test."""
    from sqlmodel import Session

    with session_engine.connect() as conn:
        trans = conn.begin()
        session = Session(bind=conn, join_transaction_mode="create_savepoint")
        try:
            yield session
        finally:
            session.close()
            trans.rollback()


def run_concurrently(func, n: int = 2, timeout_s: float = 120.0) -> list:
    """Call ``func()`` in ``n`` threads released together by a barrier; return their results.

    Raises the first exception a thread raised (after all have finished).
    """
    import threading

    barrier = threading.Barrier(n)
    results, errors = [], []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(func())
        except Exception as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s)
    if errors:
        raise errors[0]
    return results


def table_checksums(engine, job_run_upto: int | None = None) -> dict[str, str]:
    """Row count and md5 of the rows of every table in the public schema.

    ``job_run`` is compared up to id ``job_run_upto`` when given: a failed ingest keeps its
    ``failed`` job_run row on purpose, and everything else must be byte-for-byte unchanged.
    """
    with engine.connect() as conn:
        tables = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")).scalars().all()
        out = {}
        for t in tables:
            where = f" WHERE id <= {int(job_run_upto)}" if t == "job_run" and job_run_upto is not None else ""
            out[t] = conn.execute(text(
                f"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') FROM \"{t}\" t{where}"
            )).scalar_one()
        return out


@pytest.fixture
def strength_data_dir() -> Path:
    """The shared copy of bjasperson/strength_covariance (skip if it is absent)."""
    if not STRENGTH_DATA.is_dir():
        pytest.skip(f"shared dataset not found at {STRENGTH_DATA}")
    return STRENGTH_DATA
