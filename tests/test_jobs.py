"""The job queue against the real PostgreSQL: migration 0003, workers, schedules, crash recovery.

Worker processes are real ``matstore worker`` subprocesses on the test database.  They
import this module (``--import test_jobs``) for the small test tasks below, which write a row
to ``jobs_test_log`` per run, so the tests can count how often each job ran.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from matstore.jobs.app import app as jobs_app
from matstore.jobs.app import libpq_url, make_app

TESTS_DIR = Path(__file__).resolve().parent
LOG_TABLE = "jobs_test_log"


# --- test tasks (also imported by the worker subprocesses) ----------------------------------

def _log(kind: str, key: str) -> None:
    from matstore.db import get_engine

    with get_engine().begin() as conn:
        conn.execute(text(f"INSERT INTO {LOG_TABLE} (kind, key, pid) VALUES (:k, :key, :pid)"),
                     {"k": kind, "key": key, "pid": os.getpid()})


@jobs_app.task(name="tests.chunk", queue="compute")
def chunk_task(key: str, sleep_s: float = 0.0) -> None:
    """A compute-like chunk: work for a while, then record that it ran."""
    time.sleep(sleep_s)
    _log("chunk", key)


@jobs_app.task(name="tests.slow", queue="compute", pass_context=True)
def slow_task(context, key: str, sleep_s: float) -> None:  # noqa: ANN001
    """Long on its first attempt (to be killed), quick on the retry; records a job_run."""
    from matstore.crud import job_run
    from matstore.db import get_engine

    with job_run(engine=get_engine(), kind="test_slow", parameters={"queue_job_id": context.job.id}):
        _log("slow-start", key)
        if context.job.attempts == 0:
            time.sleep(sleep_s)
        _log("slow-done", key)


@jobs_app.task(name="tests.fail", queue="compute")
def failing_task(key: str) -> None:
    """Always fails (no retry strategy: one attempt)."""
    raise RuntimeError(f"chunk {key} is broken")


@jobs_app.task(name="tests.tick", queue="maintenance")
def tick_task(timestamp: int, label: str) -> None:
    """A periodic job: record the cron tick it was deferred for."""
    _log(f"tick:{label}", str(timestamp))


# --- helpers ----------------------------------------------------------------------------------

def _wait_until(predicate: Callable[[], object], timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.2)


def _rows(engine: Engine, sql: str, **params) -> list:  # noqa: ANN003
    with engine.connect() as conn:
        return conn.execute(text(sql), params).all()


class Workers:
    """Real ``matstore worker`` subprocesses on the test database."""

    def __init__(self, database_url: str, workdir: Path) -> None:
        self.database_url = database_url
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []
        self.files: list = []

    def start(self, *extra: str, name: str | None = None) -> subprocess.Popen:
        name = name or f"w{len(self.procs)}"
        env = {
            **os.environ,
            "MATSTORE_DATABASE_URL": self.database_url,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])),
        }
        env.pop("MATSTORE_SCHEDULE", None)
        cmd = [
            sys.executable, "-c", "from matstore.cli import main; main()", "worker",
            "--import", "test_jobs", "--name", name, "--heartbeat", "0.5", "--stalled-after", "2",
            "--stalled-check", "* * * * * *", "--log-level", "info", *extra,
        ]
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.files.append(log)
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        self.procs.append(proc)
        return proc

    def alive(self) -> list[subprocess.Popen]:
        return [p for p in self.procs if p.poll() is None]

    def stop(self) -> None:
        for proc in self.alive():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.files:
            log.close()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.workdir.glob("*.log")))


# --- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def queue_engine(session_engine: Engine) -> Iterator[Engine]:
    """The test database with an empty queue and the test log table."""
    with session_engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE IF NOT EXISTS {LOG_TABLE} (id serial PRIMARY KEY, kind text, "
                          "key text, pid int, at timestamptz DEFAULT now())"))
        conn.execute(text("TRUNCATE procrastinate_jobs, procrastinate_periodic_defers, procrastinate_events, "
                          f"procrastinate_workers, {LOG_TABLE} RESTART IDENTITY CASCADE"))
    yield session_engine
    with session_engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {LOG_TABLE}"))
        # every table referencing job_run by trigger (revisions 0011, 0013) is named with it
        conn.execute(text("TRUNCATE bulk_property, surface_property, configuration_property, configuration, job_run "
                          "RESTART IDENTITY CASCADE"))


@pytest.fixture(scope="module")
def workers(queue_engine: Engine, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    """Two workers sharing the queue, both loading a schedule with a job every second."""
    workdir = tmp_path_factory.mktemp("workers")
    schedule = workdir / "schedule.yaml"
    schedule.write_text(
        "periodic:\n"
        "  - id: tick-every-second\n"
        "    task: tests.tick\n"
        '    cron: "* * * * * *"\n'
        "    kwargs: {label: shared}\n"
    )
    pool = Workers(database_url, workdir)
    pool.start("--schedule", str(schedule), name="w0")
    pool.start("--schedule", str(schedule), name="w1")
    try:
        _wait_until(lambda: len(_rows(queue_engine, "SELECT id FROM procrastinate_workers")) >= 2, 30,
                    "two workers to register")
        yield pool
    except BaseException:
        sys.stderr.write(pool.logs())
        raise
    finally:
        pool.stop()


# --- unit tests -----------------------------------------------------------------------------

def test_libpq_url_keeps_socket_host_and_credentials() -> None:
    from psycopg.conninfo import conninfo_to_dict

    assert libpq_url("postgresql+psycopg://u:p@db:5432/matstore") == "postgresql://u:p@db:5432/matstore"
    assert libpq_url("postgres://u@h/d") == "postgresql://u@h/d"
    socket_url = libpq_url("postgresql+psycopg://postgres:@/matstore?host=%2Ftmp%2Fpg+sock")
    parsed = conninfo_to_dict(socket_url)
    assert parsed["host"] == "/tmp/pg sock" and parsed["dbname"] == "matstore"
    assert conninfo_to_dict(libpq_url("postgresql+psycopg://postgres@/matstore?host=/run/pg"))["host"] == "/run/pg"
    with pytest.raises(ValueError):
        libpq_url("sqlite:///x.db")


def test_tasks_are_registered_under_stable_names() -> None:
    jobs_app.perform_import_paths()
    expected = {"ingest_files", "ingest_table", "ingest_dataset", "compute_chunk", "refit_model",
                "scan_drop_dir", "reingest_datasets", "refit_changed", "retry_stalled_jobs", "prune_jobs"}
    assert expected <= set(jobs_app.tasks)
    assert jobs_app.tasks["compute_chunk"].queue == "compute"
    assert jobs_app.tasks["ingest_files"].retry_strategy.max_attempts == 2  # retries: 3 runs in all


def test_task_bodies_call_the_library_layers(monkeypatch: pytest.MonkeyPatch, engine: Engine) -> None:
    """The thin task wrappers pass their arguments through and record a job_run row."""
    import types

    from procrastinate import JobContext
    from procrastinate.jobs import Job

    from matstore.jobs import tasks

    calls = []
    fake_service = types.ModuleType("matstore.models.service")
    fake_service.refit_model = lambda engine, name: calls.append(name) or types.SimpleNamespace(created=True)
    monkeypatch.setitem(sys.modules, "matstore.models.service", fake_service)
    job = Job(id=41, queue="models", lock=None, queueing_lock=None, task_name="refit_model",
              task_kwargs={"name": "tau"}, attempts=1)
    context = JobContext(app=jobs_app, job=job, worker_name="t", start_timestamp=time.time(),
                         abort_reason=lambda: None)
    summary = tasks.refit_model(context, name="tau")
    assert calls == ["tau"] and summary["created_version"] is True
    (row,) = _rows(engine, "SELECT kind, status, parameters FROM job_run")
    assert row.kind == "task:refit_model" and row.status == "succeeded"
    assert row.parameters["queue_job_id"] == 41 and row.parameters["attempt"] == 2

    # an unchanged model: the run is recorded as skipped
    fake_service.refit_model = lambda engine, name: calls.append(name) or types.SimpleNamespace(created=False)
    assert tasks.refit_model(context, name="tau")["created_version"] is False
    statuses = [r.status for r in _rows(engine, "SELECT status FROM job_run ORDER BY id")]
    assert statuses == ["succeeded", "skipped"]

    # a missing library function fails the task and leaves a failed job_run row
    monkeypatch.setitem(sys.modules, "matstore.ingest.registry", types.ModuleType("matstore.ingest.registry"))
    with pytest.raises(ImportError, match="ingest_dataset"):
        tasks.ingest_dataset(context, name="nope")
    assert _rows(engine, "SELECT status FROM job_run ORDER BY id DESC LIMIT 1")[0].status == "failed"


def test_schedule_file_parsing(tmp_path: Path) -> None:
    from matstore.jobs.schedule import ScheduleError, load_schedule, parse_schedule

    path = tmp_path / "schedule.yaml"
    path.write_text(
        "periodic:\n"
        "  - {id: scan, task: scan_drop_dir, cron: '*/5 * * * *', kwargs: {directory: /data/drop}}\n"
        "  - {id: refit, task: refit_changed, cron: '0 * * * *', priority: 5}\n"
    )
    jobs = load_schedule(path)
    assert [(j.id, j.task, j.kwargs) for j in jobs] == [
        ("scan", "scan_drop_dir", {"directory": "/data/drop"}), ("refit", "refit_changed", {})]
    assert parse_schedule(None) == []
    bad = [
        {"periodic": [{"id": "a", "task": "t", "cron": "61 * * * *"}]},
        {"periodic": [{"id": "a", "task": "t", "cron": "* * *"}]},
        {"periodic": [{"id": "a", "task": "t"}]},
        {"periodic": [{"id": "a", "task": "t", "cron": "* * * * *"}, {"id": "a", "task": "t", "cron": "* * * * *"}]},
        {"periodic": [{"id": "a", "task": "t", "cron": "* * * * *", "kwargs": {"timestamp": 1}}]},
        {"periodic": [{"id": "a", "task": "t", "cron": "* * * * *", "every": 5}]},
        {"jobs": []},
    ]
    for document in bad:
        with pytest.raises(ScheduleError):
            parse_schedule(document)


def test_register_schedule_makes_deduplicated_periodic_tasks() -> None:
    from matstore.jobs.schedule import (
        PeriodicJob,
        ScheduleError,
        register_schedule,
        register_stalled_check,
    )

    app = make_app("postgresql://nobody@127.0.0.1:1/none")  # never opened
    jobs_app.perform_import_paths()
    app.tasks = dict(jobs_app.tasks)  # a separate periodic registry, the same tasks
    register_schedule(app, [PeriodicJob("scan", "scan_drop_dir", "*/5 * * * *", {"directory": "/d"})])
    register_stalled_check(app, cron="*/2 * * * *", seconds_since_heartbeat=12)
    register_stalled_check(app)  # idempotent
    tasks = {pid: pt for (_, pid), pt in app.periodic_registry.periodic_tasks.items()}
    assert set(tasks) == {"scan", "matstore-retry-stalled"}
    scan = tasks["scan"]
    assert scan.task.name == "scan_drop_dir" and scan.cron == "*/5 * * * *"
    assert scan.configure_kwargs["task_kwargs"] == {"directory": "/d"}
    assert scan.configure_kwargs["queueing_lock"] == "periodic:scan"
    assert tasks["matstore-retry-stalled"].configure_kwargs["task_kwargs"]["seconds_since_heartbeat"] == 12
    with pytest.raises(ScheduleError, match="unknown task"):
        register_schedule(app, [PeriodicJob("x", "no_such_task", "* * * * *")])


def test_find_new_files_skips_stored_sources(engine: Engine, tmp_path: Path) -> None:
    from matstore.crud import claim_source
    from matstore.db import session_scope
    from matstore.hashing import sha256_file
    from matstore.jobs.tasks import _mapping_for, find_new_files

    (tmp_path / "sub").mkdir()
    old = tmp_path / "a.extxyz"
    old.write_text("1\nProperties=species:S:1:pos:R:3\nCu 0 0 0\n")
    new = tmp_path / "sub" / "b.cif"
    new.write_text("data_b\n")
    table = tmp_path / "t.csv"
    table.write_text("x,y\n1,2\n")
    (tmp_path / "t.mapping.yaml").write_text("columns: {}\n")
    (tmp_path / "notes.txt").write_text("hello")
    past = time.time() - 60
    for p in tmp_path.rglob("*"):
        os.utime(p, (past, past))
    fresh = tmp_path / "c.xyz"
    fresh.write_text("copying...")
    with session_scope(engine) as session:
        claim_source(session=session, kind="file", sha256=sha256_file(old), uri=str(old))
    found = find_new_files(tmp_path, engine=engine, min_age_s=5)
    assert [p for p, _ in found["structures"]] == [new]
    assert [p for p, _ in found["tables"]] == [table]
    assert {p.name for p, _ in found["ignored"]} == {"notes.txt", "c.xyz"}
    assert _mapping_for(table) == tmp_path / "t.mapping.yaml"
    with pytest.raises(FileNotFoundError):
        find_new_files(tmp_path / "missing", engine=engine)


def test_scan_drop_dir_defers_each_new_file_once(queue_engine: Engine, engine: Engine, tmp_path: Path) -> None:
    from procrastinate import JobContext
    from procrastinate.jobs import Job

    from matstore.jobs import tasks
    from matstore.jobs.dispatch import opened

    (tmp_path / "a.extxyz").write_text("1\n\nCu 0 0 0\n")
    (tmp_path / "t.csv").write_text("x\n1\n")  # no mapping file: reported, not queued
    past = time.time() - 60
    for p in tmp_path.iterdir():
        os.utime(p, (past, past))
    job = Job(id=7, queue="maintenance", lock=None, queueing_lock=None, task_name="scan_drop_dir",
              task_kwargs={}, attempts=0)
    context = JobContext(app=jobs_app, job=job, worker_name="t", start_timestamp=time.time(),
                         abort_reason=lambda: None)
    try:
        with opened(jobs_app):
            first = tasks.scan_drop_dir(context, timestamp=0, directory=str(tmp_path))
            second = tasks.scan_drop_dir(context, timestamp=60, directory=str(tmp_path))
        assert first["deferred"] == [str(tmp_path / "a.extxyz")] and first["unmapped"] == [str(tmp_path / "t.csv")]
        assert second["deferred"] == [] and second["already_queued"] == 1  # queueing lock on the sha256
        queued = _rows(queue_engine, "SELECT args FROM procrastinate_jobs WHERE task_name = 'ingest_files'")
        assert [r.args["paths"] for r in queued] == [[str(tmp_path / "a.extxyz")]]
        runs = _rows(engine, "SELECT kind, status FROM job_run ORDER BY id")
        assert [(r.kind, r.status) for r in runs] == [("task:scan_drop_dir", "succeeded"),
                                                      ("task:scan_drop_dir", "skipped")]
    finally:
        with queue_engine.begin() as conn:
            conn.execute(text("DELETE FROM procrastinate_jobs WHERE task_name = 'ingest_files'"))


# --- issue 13: failed inputs remembered, transient-only retries, argument checks, timeouts ----

def _context(task_name: str, job_id: int = 9):  # noqa: ANN202
    from procrastinate import JobContext
    from procrastinate.jobs import Job

    job = Job(id=job_id, queue="ingest", lock=None, queueing_lock=None, task_name=task_name, task_kwargs={}, attempts=0)
    return JobContext(app=jobs_app, job=job, worker_name="t", start_timestamp=time.time(), abort_reason=lambda: None)


def test_failed_drop_file_is_skipped_until_it_changes(engine: Engine, tmp_path: Path) -> None:
    from matstore.ingest.errors import IngestError
    from matstore.jobs import tasks

    bad = tmp_path / "broken.extxyz"
    bad.write_text("2\nLattice=\"1 0 0 0 1 0 0 0 1\" Properties=species:S:1:pos:R:3\nCu 0 0 0\n")  # truncated
    (tmp_path / "sheet.xlsx").write_bytes(b"PK\x03\x04")
    past = time.time() - 60
    for p in tmp_path.iterdir():
        os.utime(p, (past, past))
    assert [p for p, _ in tasks.find_new_files(tmp_path, engine=engine)["structures"]] == [bad]
    with pytest.raises(IngestError):
        tasks.ingest_files(_context("ingest_files"), paths=[str(bad)])
    (run,) = _rows(engine, "SELECT status, summary, parameters FROM job_run WHERE kind = 'task:ingest_files'")
    assert run.status == "failed" and run.summary["bad_input"] is True
    assert run.parameters["input_keys"] == [tasks.input_key(bad)]
    found = tasks.find_new_files(tmp_path, engine=engine)
    assert found["structures"] == []  # the next scans do not queue it again
    reasons = dict((p.name, r) for p, r in found["ignored"])
    assert "failed on this content before" in reasons["broken.extxyz"]
    assert "export the sheet as CSV" in reasons["sheet.xlsx"]
    bad.write_text(bad.read_text() + "Cu 0.5 0.5 0\n")  # fixed: a new sha256
    os.utime(bad, (past, past))
    assert [p for p, _ in tasks.find_new_files(tmp_path, engine=engine)["structures"]] == [bad]


def test_only_transient_database_errors_are_retried() -> None:
    from procrastinate.jobs import Job

    from matstore.ingest.errors import IngestError
    from matstore.jobs import tasks

    def decision(exc: BaseException, attempts: int):  # noqa: ANN202
        job = Job(id=1, queue="ingest", lock=None, queueing_lock=None, task_name="ingest_files", task_kwargs={},
                  attempts=attempts)
        return tasks._INGEST_RETRY.get_retry_decision(exception=exc, job=job)

    import psycopg

    assert decision(IngestError("bad.extxyz, line 3: broken"), 0) is None
    assert decision(ValueError("x"), 0) is None
    assert decision(psycopg.OperationalError("server closed the connection"), 0) is not None
    assert decision(psycopg.OperationalError("again"), 1) is not None
    assert decision(psycopg.OperationalError("third run failed"), 2) is None  # 3 runs in all, as documented


def test_defer_checks_task_arguments(queue_engine: Engine) -> None:
    from typer.testing import CliRunner

    from matstore.cli import app
    from matstore.jobs.dispatch import check_arguments

    jobs_app.perform_import_paths()
    with pytest.raises(TypeError, match="unexpected keyword argument 'nme' \\(did you mean 'name'\\?\\); it takes name"):
        check_arguments(jobs_app.tasks["ingest_dataset"], {"nme": "x"})
    with pytest.raises(TypeError, match="missing a required argument: 'name'"):
        check_arguments(jobs_app.tasks["refit_model"], {})
    check_arguments(jobs_app.tasks["compute_chunk"], {"element": "Cu", "calculator": "emt"})
    before = _rows(queue_engine, "SELECT count(*) AS n FROM procrastinate_jobs")[0].n
    result = CliRunner().invoke(app, ["jobs", "defer", "ingest_dataset", "-k", "nme=strength_covariance"])
    assert result.exit_code == 1 and "unexpected keyword argument 'nme'" in result.output, result.output
    assert _rows(queue_engine, "SELECT count(*) AS n FROM procrastinate_jobs")[0].n == before


def test_wait_without_a_worker_times_out_and_errors_are_shown(queue_engine: Engine) -> None:
    from matstore.crud import job_run
    from matstore.jobs.dispatch import call, defer, job_errors, wait_for_jobs

    (job_id,) = defer(call("tests.chunk", key="nobody-serves-this"))
    try:
        start = time.monotonic()
        with pytest.raises(TimeoutError, match="serving queue compute"):
            wait_for_jobs([job_id], engine=queue_engine, idle_timeout_s=1.0, poll_interval_s=0.2)
        assert time.monotonic() - start < 10
        with pytest.raises(RuntimeError), job_run(engine=queue_engine, kind="task:tests.chunk",
                                                  parameters={"queue_job_id": job_id}):
            raise RuntimeError("chunk nobody-serves-this: the potential file is missing")
        assert job_errors([job_id], queue_engine) == {job_id: "RuntimeError: chunk nobody-serves-this: the potential file is missing"}
    finally:
        with queue_engine.begin() as conn:
            conn.execute(text("DELETE FROM procrastinate_jobs WHERE id = :i"), {"i": job_id})


# --- migrations -----------------------------------------------------------------------------

def test_procrastinate_schema_is_current() -> None:
    """Migration 0003 holds procrastinate's schema; a procrastinate upgrade with new SQL
    migrations needs a new Alembic revision (see the docstring of 0003)."""
    import importlib.util

    from procrastinate.schema import SchemaManager

    spec = importlib.util.spec_from_file_location("m0003", TESTS_DIR.parent / "alembic/versions/0003_procrastinate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    shipped = sorted(p.name for p in Path(SchemaManager.get_migrations_path()).glob("*.sql"))
    newer = [name for name in shipped if name > module.PROCRASTINATE_MIGRATION_HEAD]
    assert not newer, (f"procrastinate ships schema migrations newer than Alembic revision 0003 knows: {newer}; "
                       "add an Alembic revision that applies them")
    assert module.PROCRASTINATE_MIGRATION_HEAD in shipped


def test_migrations_round_trip_from_empty_database(database_url: str) -> None:
    """upgrade head → alembic check clean → downgrade base → upgrade head, on an empty database."""
    from matstore import migrations
    from matstore.jobs.dispatch import workers_present

    server = make_url(database_url)
    name = f"matstore_rt_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)
    count = ("SELECT (SELECT count(*) FROM pg_class WHERE relname LIKE 'procrastinate%' AND relkind = 'r') "
             "+ (SELECT count(*) FROM pg_proc WHERE proname LIKE 'procrastinate%') "
             "+ (SELECT count(*) FROM pg_type WHERE typname LIKE 'procrastinate%' AND typtype IN ('e', 'c'))")
    try:
        migrations.upgrade(url, "0002")
        assert workers_present(engine) is False  # no queue tables yet
        migrations.upgrade(url)
        assert migrations.current_revision(engine) == migrations.head_revision(url)
        migrations.check(url)
        with engine.connect() as conn:
            assert conn.execute(text(count)).scalar() > 20
        assert workers_present(engine) is False
        migrations.downgrade(url, "0002")
        with engine.connect() as conn:
            assert conn.execute(text(count)).scalar() == 0
        migrations.downgrade(url, "base")
        migrations.upgrade(url)
        migrations.check(url)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --- workers ----------------------------------------------------------------------------------

def test_each_chunk_runs_exactly_once_across_two_workers(workers: Workers, queue_engine: Engine) -> None:
    from matstore.jobs.dispatch import call, defer_and_wait, workers_present

    assert workers_present(queue_engine, within_s=5)
    keys = [f"chunk-{i}" for i in range(40)]
    outcomes = defer_and_wait(*(call("tests.chunk", key=k, sleep_s=0.05) for k in keys),
                              engine=queue_engine, timeout_s=60, poll_interval_s=0.2)
    assert [o.status for o in outcomes] == ["succeeded"] * len(keys)
    rows = _rows(queue_engine, f"SELECT key, pid FROM {LOG_TABLE} WHERE kind = 'chunk'")
    assert sorted(r.key for r in rows) == sorted(keys)  # every chunk once, none twice
    assert len({r.pid for r in rows}) == 2, "both workers should have taken chunks"


def test_periodic_job_runs_once_per_tick_with_two_workers(workers: Workers, queue_engine: Engine) -> None:
    def ticks() -> list:
        return _rows(queue_engine, f"SELECT key FROM {LOG_TABLE} WHERE kind = 'tick:shared'")

    _wait_until(lambda: len(ticks()) >= 4, 30, "four ticks of the periodic job")
    keys = [r.key for r in ticks()]
    assert len(keys) == len(set(keys)), f"a tick ran twice: {sorted(keys)}"
    # both workers tried to defer each tick; the database let one through
    defers = _rows(queue_engine, "SELECT defer_timestamp, count(*) AS n FROM procrastinate_periodic_defers "
                                 "WHERE periodic_id = 'tick-every-second' GROUP BY 1")
    assert defers and all(r.n == 1 for r in defers)
    assert len(workers.alive()) == 2


def test_defer_and_wait_reports_failed_jobs(workers: Workers, queue_engine: Engine) -> None:
    from matstore.jobs.dispatch import JobsFailedError, TaskCall, call, defer_and_wait

    with pytest.raises(JobsFailedError, match="1 of 2 jobs did not succeed") as info:
        defer_and_wait(call("tests.chunk", key="fine"), TaskCall("tests.fail", {"key": "bad"}),
                       engine=queue_engine, timeout_s=30, poll_interval_s=0.2)
    assert sorted(o.status for o in info.value.outcomes) == ["failed", "succeeded"]
    with pytest.raises(KeyError):
        defer_and_wait(call("no_such_task"))


def test_job_of_killed_worker_is_retried_by_the_other(workers: Workers, queue_engine: Engine) -> None:
    from matstore.jobs.dispatch import defer, wait_for_jobs

    (job_id,) = defer(("tests.slow", {"key": "victim", "sleep_s": 60}))
    start = _wait_until(lambda: _rows(queue_engine, f"SELECT pid FROM {LOG_TABLE} WHERE kind = 'slow-start'"),
                        20, "the slow job to start")
    victim_pid = start[0].pid
    assert victim_pid in {p.pid for p in workers.alive()}
    os.kill(victim_pid, signal.SIGKILL)
    (outcome,) = wait_for_jobs([job_id], engine=queue_engine, timeout_s=45, poll_interval_s=0.3)
    assert outcome.status == "succeeded"
    done = _rows(queue_engine, f"SELECT pid FROM {LOG_TABLE} WHERE kind = 'slow-done' AND key = 'victim'")
    assert len(done) == 1 and done[0].pid != victim_pid
    (attempts,) = _rows(queue_engine, "SELECT attempts FROM procrastinate_jobs WHERE id = :i", i=job_id)[0]
    assert attempts == 2  # the lost attempt (requeued) and the successful one
    runs = _rows(queue_engine, "SELECT status, error FROM job_run WHERE kind = 'test_slow' ORDER BY id")
    assert [r.status for r in runs] == ["failed", "succeeded"]
    assert "worker lost" in runs[0].error
