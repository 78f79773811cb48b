"""``matstore worker`` (run a queue worker) and ``matstore jobs`` (inspect and feed the queue)."""

from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from matstore.cli.common import cli_errors, console, engine

jobs_app = typer.Typer(help="The job queue: status, defer a task, check a schedule file.", no_args_is_help=True)


def _require_queue_schema(eng=None) -> None:  # noqa: ANN001
    from sqlalchemy import text

    with (eng or engine()).connect() as conn:
        if conn.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar() is None:
            raise RuntimeError("the database has no job queue tables; run `matstore db migrate` first")


def worker_command(
    queues: Annotated[list[str] | None, typer.Option(
        "--queue", "-q",
        help="Queue to work on (repeatable): ingest, compute, models, maintenance. Default: all.",
    )] = None,
    concurrency: int = typer.Option(
        1, "--concurrency", "-c", min=1,
        help="Jobs run at once in this process (threads). For CPU-bound compute start more "
             "worker processes instead.",
    ),
    schedule: Annotated[Path | None, typer.Option(
        "--schedule", envvar="MATSTORE_SCHEDULE", exists=True, dir_okay=False,
        help="YAML file of periodic jobs (cron). Safe to give to every worker: each tick runs once.",
    )] = None,
    name: str | None = typer.Option(None, "--name", help="Worker name in logs and job_run rows."),
    heartbeat: float = typer.Option(10.0, "--heartbeat", min=0.1, help="Seconds between heartbeats."),
    stalled_after: float = typer.Option(
        30.0, "--stalled-after", min=0.5,
        help="A worker silent this many seconds is dead; its running jobs are requeued.",
    ),
    stalled_check: str = typer.Option(
        "* * * * *", "--stalled-check", help="Cron line of the stalled-job check (6th field: seconds)."
    ),
    max_attempts: int = typer.Option(
        3, "--max-attempts", min=1, help="A job whose worker died this many times is marked failed."
    ),
    shutdown_timeout: float | None = typer.Option(
        None, "--shutdown-timeout",
        help="On SIGTERM/SIGINT, wait this long for running jobs, then abort them (default: wait).",
    ),
    drain: bool = typer.Option(False, "--drain", help="Exit when the queues are empty instead of waiting."),
    imports: Annotated[list[str] | None, typer.Option(
        "--import", help="Extra module defining tasks on matstore.jobs.app.app (repeatable)."
    )] = None,
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
) -> None:
    """Run a job worker: ingest, compute chunks, refits and the scheduled jobs.

    Start as many workers as you like, on this machine or others that reach the database:
    they share the queue in PostgreSQL.
    """
    from matstore.jobs.app import app, make_connector
    from matstore.jobs.schedule import load_schedule, register_schedule, register_stalled_check
    from matstore.masking import install_log_filter

    logging.getLogger().setLevel(log_level.upper())
    install_log_filter()
    with cli_errors():
        _require_queue_schema()
        for module in imports or ():
            importlib.import_module(module)
        app.perform_import_paths()
        if schedule is not None:
            register_schedule(app, load_schedule(schedule))
        register_stalled_check(
            app, cron=stalled_check, seconds_since_heartbeat=stalled_after, max_attempts=max_attempts
        )
        periodic = sorted(pid for _, pid in app.periodic_registry.periodic_tasks)
        console.print(
            f"worker {name or ''} on queues {', '.join(queues or []) or 'all'}, concurrency {concurrency}, "
            f"periodic jobs: {', '.join(periodic)}",
            highlight=False,
        )
        with app.replace_connector(make_connector(max_size=concurrency + 4)):
            app.run_worker(
                queues=queues or None,
                concurrency=concurrency,
                name=name,
                wait=not drain,
                update_heartbeat_interval=heartbeat,
                stalled_worker_timeout=stalled_after,
                shutdown_graceful_timeout=shutdown_timeout,
            )


@jobs_app.command("status")
def status(
    failed: int = typer.Option(10, help="Show this many of the most recent failed jobs."),
    within: float = typer.Option(60.0, help="Workers with a heartbeat this recent count as alive."),
) -> None:
    """Workers alive, jobs per queue and status, and recent failures (read as the reader login)."""
    from sqlalchemy import text

    from matstore.db import reader_engine

    with cli_errors():
        reader = reader_engine()
        _require_queue_schema(reader)
        with reader.connect() as conn:
            workers = conn.execute(text(
                "SELECT id, extract(epoch FROM now() - last_heartbeat) FROM procrastinate_workers ORDER BY id"
            )).all()
            counts = conn.execute(text(
                "SELECT queue_name, status::text, count(*) FROM procrastinate_jobs GROUP BY 1, 2 ORDER BY 1, 2"
            )).all()
            recent = conn.execute(text(
                "SELECT j.id, j.task_name, j.queue_name, j.attempts, max(e.at) FROM procrastinate_jobs j "
                "LEFT JOIN procrastinate_events e ON e.job_id = j.id WHERE j.status = 'failed' "
                "GROUP BY j.id ORDER BY max(e.at) DESC NULLS LAST LIMIT :n"
            ), {"n": failed}).all()
        from matstore.jobs.dispatch import job_errors

        errors = job_errors([r[0] for r in recent], reader)
    alive = [w for w in workers if w[1] <= within]
    console.print(f"workers alive: [bold]{len(alive)}[/] (of {len(workers)} registered)")
    for worker_id, age in workers:
        console.print(f"  worker {worker_id}: last heartbeat {age:.0f} s ago", highlight=False)
    table = Table("queue", "todo", "doing", "succeeded", "failed", "other", title="jobs")
    by_queue: dict[str, dict[str, int]] = {}
    for queue, state, count in counts:
        by_queue.setdefault(queue, {})[state] = count
    for queue, states in by_queue.items():
        other = sum(v for k, v in states.items() if k not in ("todo", "doing", "succeeded", "failed"))
        table.add_row(queue, *(str(states.get(k, 0)) for k in ("todo", "doing", "succeeded", "failed")), str(other))
    console.print(table)
    if recent:
        failures = Table("job", "task", "queue", "attempts", "at", "error", title="recent failures")
        for job_id, task, queue, attempts, at in recent:
            error = errors.get(job_id, "(no job_run row: see the worker's log)")
            failures.add_row(str(job_id), task, queue, str(attempts), str(at or ""), error.splitlines()[0][:300])
        console.print(failures)
        console.print("[dim]details: SELECT * FROM job_run WHERE status = 'failed' ORDER BY id DESC[/]")


@jobs_app.command("defer")
def defer_command(
    task: str = typer.Argument(..., help="Task name, e.g. refit_model, ingest_dataset, compute_chunk."),
    kwargs: Annotated[list[str] | None, typer.Option(
        "--kw", "-k", help="Task argument as name=value; value is JSON if it parses (repeatable).",
    )] = None,
    wait: bool = typer.Option(False, "--wait", help="Block until the job finished."),
    timeout: float | None = typer.Option(None, "--timeout", help="With --wait: give up after this many seconds."),
) -> None:
    """Queue one task, e.g. ``matstore jobs defer refit_model -k name=tau_fit``.

    A periodic task (``refit_changed``, ``scan_drop_dir`` …) takes the cron tick as ``timestamp``;
    deferred by hand without ``-k timestamp=…`` it gets the current time (Unix seconds).
    """
    from rich.markup import escape

    from matstore.jobs.dispatch import TaskCall, defer, job_errors, wait_for_jobs

    arguments: dict[str, object] = {}
    for item in kwargs or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected name=value, got {item!r}", param_hint="--kw")
        try:
            arguments[key] = json.loads(value)
        except json.JSONDecodeError:
            arguments[key] = value
    with cli_errors():
        _require_queue_schema()
        note = _default_timestamp(task, arguments)
        (job_id,) = defer(TaskCall(task, arguments))
        console.print(f"deferred {escape(task)} as job [bold]{job_id}[/]{escape(note)}")
        if wait:
            (outcome,) = wait_for_jobs([job_id], timeout_s=timeout)
            if outcome.status != "succeeded":
                error = job_errors([job_id], engine()).get(job_id, "no job_run row: see the worker's log")
                raise RuntimeError(f"job {job_id} ({task}) {outcome.status}: {error}")
            console.print(f"job {job_id}: [bold]{outcome.status}[/]")


def _default_timestamp(task: str, arguments: dict[str, object]) -> str:
    """Set ``arguments['timestamp']`` to now (Unix seconds) for a periodic task deferred by hand without one.

    Periodic tasks take the cron tick as a required ``timestamp`` (procrastinate passes it);
    by hand there is no tick, so the time of deferral stands in.  Returns the note the CLI
    prints (``" (timestamp=1765130000: now)"``), or ``""`` when nothing was added (the task
    is unknown, takes no ``timestamp``, or was given one).
    """
    import inspect
    import time

    from matstore.jobs.app import app

    app.perform_import_paths()
    known = app.tasks.get(task)
    parameter = inspect.signature(known.func).parameters.get("timestamp") if known is not None else None
    if parameter is None or parameter.default is not inspect.Parameter.empty or "timestamp" in arguments:
        return ""
    arguments["timestamp"] = int(time.time())
    return f" (timestamp={arguments['timestamp']}: now)"


@jobs_app.command("check-schedule")
def check_schedule(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Schedule YAML file.")],
) -> None:
    """Validate a schedule file and show when each job runs next."""
    from datetime import UTC, datetime

    from croniter import croniter

    from matstore.jobs.app import app
    from matstore.jobs.schedule import load_schedule

    with cli_errors():
        entries = load_schedule(path)
        app.perform_import_paths()
        unknown = [e.task for e in entries if e.task not in app.tasks]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}")
    table = Table("id", "task", "cron", "next run (UTC)", "kwargs")
    now = datetime.now(UTC)
    for e in entries:
        table.add_row(e.id, e.task, e.cron, croniter(e.cron, now).get_next(datetime).isoformat(timespec="seconds"),
                      json.dumps(e.kwargs))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``matstore worker`` and the ``matstore jobs`` group to the main app."""
    app.command("worker")(worker_command)
    app.add_typer(jobs_app, name="jobs")
