"""Periodic jobs from a YAML schedule file, registered as procrastinate periodic tasks.

A schedule file lists cron lines for registered tasks::

    # schedule.yaml
    periodic:
      - id: scan-drop            # unique; part of the dedup key, keep it stable
        task: scan_drop_dir      # a task name (see matstore.jobs.tasks)
        cron: "*/5 * * * *"      # 5 fields, or 6 with seconds last
        kwargs: {directory: /data/drop}
      - id: datasets-nightly
        task: reingest_datasets
        cron: "30 2 * * *"
        kwargs: {names: [strength_covariance]}
      - id: refit-hourly
        task: refit_changed
        cron: "0 * * * *"

Every worker started with the file runs procrastinate's periodic deferrer, which inserts one
row per (task, id, cron tick) into ``procrastinate_periodic_defers`` under a unique
constraint: however many workers load the schedule, each tick becomes exactly one job.  Each
periodic job also gets a queueing lock (a tick is skipped while the previous one still waits)
and a lock (two ticks of the same entry never run at the same time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import procrastinate
import yaml
from croniter import croniter

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,100}$")

#: Task and default cron of the stalled-job check every worker registers.
STALLED_TASK = "retry_stalled_jobs"
STALLED_PERIODIC_ID = "matstore-retry-stalled"


class ScheduleError(ValueError):
    """The schedule file is malformed (the message names the file and the entry)."""


@dataclass(frozen=True)
class PeriodicJob:
    """One entry of a schedule file.

    Attributes
    ----------
    id:
        Unique id of the entry (procrastinate's ``periodic_id``).
    task:
        Name of a task registered on the app.
    cron:
        Cron line: 5 fields, or 6 with a trailing seconds field.
    kwargs:
        Keyword arguments of the task (besides ``timestamp``, which procrastinate adds).
    queue:
        Queue override (default: the task's own queue).
    priority:
        Job priority (higher runs first).
    """

    id: str
    task: str
    cron: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None


def parse_schedule(data: Any, *, source: str = "<schedule>") -> list[PeriodicJob]:
    """Validate a parsed schedule document and return its entries.

    Parameters
    ----------
    data:
        The YAML document: a mapping with a ``periodic`` list (or ``None`` for an empty file).
    source:
        Name used in error messages.

    Returns
    -------
    list of PeriodicJob

    Raises
    ------
    ScheduleError
        On an unknown key, a missing field, a bad cron line or a duplicate id.
    """
    if data is None:
        return []
    if not isinstance(data, dict):
        raise ScheduleError(f"{source}: expected a mapping with a 'periodic' list")
    unknown = set(data) - {"periodic"}
    if unknown:
        raise ScheduleError(f"{source}: unknown top-level key(s) {sorted(unknown)}")
    entries = data.get("periodic") or []
    if not isinstance(entries, list):
        raise ScheduleError(f"{source}: 'periodic' must be a list")
    jobs: list[PeriodicJob] = []
    seen: set[str] = set()
    allowed = {"id", "task", "cron", "kwargs", "queue", "priority"}
    for index, entry in enumerate(entries):
        where = f"{source}: periodic[{index}]"
        if not isinstance(entry, dict):
            raise ScheduleError(f"{where}: expected a mapping")
        extra = set(entry) - allowed
        if extra:
            raise ScheduleError(f"{where}: unknown key(s) {sorted(extra)}")
        for key in ("id", "task", "cron"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise ScheduleError(f"{where}: '{key}' is required (a string)")
        job_id, cron = entry["id"], entry["cron"].strip()
        if not _ID.match(job_id):
            raise ScheduleError(f"{where}: id {job_id!r} may only contain letters, digits and _.:-")
        if job_id in seen:
            raise ScheduleError(f"{where}: duplicate id {job_id!r}")
        seen.add(job_id)
        if len(cron.split()) not in (5, 6) or not croniter.is_valid(cron):
            raise ScheduleError(f"{where}: invalid cron line {cron!r} (5 fields, or 6 with seconds last)")
        kwargs = entry.get("kwargs") or {}
        if not isinstance(kwargs, dict) or "timestamp" in kwargs:
            raise ScheduleError(f"{where}: 'kwargs' must be a mapping without 'timestamp'")
        priority = entry.get("priority")
        if priority is not None and not isinstance(priority, int):
            raise ScheduleError(f"{where}: 'priority' must be an integer")
        jobs.append(PeriodicJob(job_id, entry["task"], cron, dict(kwargs), entry.get("queue"), priority))
    return jobs


def load_schedule(path: str | Path) -> list[PeriodicJob]:
    """Read and validate a schedule file (see the module docstring for the format).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ScheduleError
        If the file is not valid YAML or not a valid schedule.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ScheduleError(f"{path}: not valid YAML: {exc}") from exc
    return parse_schedule(data, source=str(path))


def _register(app: procrastinate.App, job: PeriodicJob) -> None:
    try:
        task = app.tasks[job.task]
    except KeyError:
        known = sorted(n for n in app.tasks if not n.startswith(("builtin:", "procrastinate.")))
        raise ScheduleError(f"periodic job {job.id!r}: unknown task {job.task!r}; known tasks: {known}") from None
    options: dict[str, Any] = {
        "task_kwargs": dict(job.kwargs),
        "queueing_lock": f"periodic:{job.id}",
        "lock": f"periodic:{job.id}",
    }
    if job.queue:
        options["queue"] = job.queue
    if job.priority is not None:
        options["priority"] = job.priority
    app.periodic(cron=job.cron, periodic_id=job.id, **options)(task)


def register_schedule(app: procrastinate.App, jobs: list[PeriodicJob]) -> None:
    """Register ``jobs`` as periodic tasks of ``app`` (before its worker starts).

    Raises
    ------
    ScheduleError
        If an entry names a task that is not registered on ``app``.
    procrastinate.exceptions.TaskAlreadyRegistered
        If an id is registered twice for the same task.
    """
    app.perform_import_paths()
    for job in jobs:
        _register(app, job)


def register_stalled_check(
    app: procrastinate.App,
    *,
    cron: str = "* * * * *",
    seconds_since_heartbeat: float = 30.0,
    max_attempts: int = 3,
) -> None:
    """Register the periodic check that requeues jobs of dead workers.

    See :func:`matstore.jobs.tasks.retry_stalled_jobs`.  Registering it in every worker is
    safe: each tick is deferred once.

    Parameters
    ----------
    app:
        The procrastinate app.
    cron:
        How often to check (5 fields, or 6 with seconds last).
    seconds_since_heartbeat:
        A worker silent for longer is considered dead.
    max_attempts:
        A stalled job tried this many times is failed instead of retried.
    """
    app.perform_import_paths()
    if (STALLED_TASK, STALLED_PERIODIC_ID) in app.periodic_registry.periodic_tasks:
        return
    if not croniter.is_valid(cron):
        raise ScheduleError(f"invalid cron line {cron!r} for the stalled-job check")
    _register(app, PeriodicJob(
        STALLED_PERIODIC_ID, STALLED_TASK, cron,
        {"seconds_since_heartbeat": seconds_since_heartbeat, "max_attempts": max_attempts},
    ))
