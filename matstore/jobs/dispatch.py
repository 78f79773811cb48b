"""Run work on the queue when workers are present: what ``matstore pipeline`` calls.

>>> from matstore.jobs.dispatch import call, defer_and_wait, workers_present
>>> if workers_present(engine):
...     defer_and_wait(*(call("compute_chunk", element=e, calculator="emt", miller=[1, 1, 1])
...                      for e in ("Cu", "Ni")))
... else:
...     ...  # run the same library functions in-process

:func:`defer_and_wait` must not be called from inside a task: the job would wait for jobs
that may need the very worker slot it occupies.
"""

from __future__ import annotations

import difflib
import inspect
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import procrastinate
from procrastinate import exceptions
from sqlalchemy import Engine, bindparam, text

#: Queue statuses after which a job will not run again.
FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled", "aborted"})


class JobsFailedError(RuntimeError):
    """Some deferred jobs ended ``failed``, ``cancelled`` or ``aborted``.

    Attributes
    ----------
    outcomes:
        Every job's outcome, successful ones included.
    errors:
        The error text recorded in ``job_run`` for the failed jobs that have one.
    """

    def __init__(self, outcomes: list[JobOutcome], errors: dict[int, str] | None = None) -> None:
        self.outcomes = outcomes
        self.errors = errors or {}
        bad = [o for o in outcomes if o.status != "succeeded"]
        shown = ", ".join(f"{o.task}#{o.job_id} {o.status}" + (f" ({self.errors[o.job_id]})" if o.job_id in self.errors else "")
                          for o in bad[:10])
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        super().__init__(
            f"{len(bad)} of {len(outcomes)} jobs did not succeed: {shown}{more}; "
            "see `matstore jobs status` and the job_run table"
        )


@dataclass(frozen=True)
class TaskCall:
    """A task and its arguments, to be deferred by :func:`defer_and_wait`.

    Attributes
    ----------
    task:
        Registered task name (e.g. ``"compute_chunk"``).
    kwargs:
        The task's keyword arguments (JSON-able).
    lock:
        Optional procrastinate lock: jobs with the same lock run one at a time.
    queueing_lock:
        Optional queueing lock: at most one waiting job with this lock.
    priority:
        Optional priority (higher runs first).
    """

    task: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    lock: str | None = None
    queueing_lock: str | None = None
    priority: int | None = None


@dataclass(frozen=True)
class JobOutcome:
    """How a deferred job ended: its queue id, task name and final status."""

    job_id: int
    task: str
    status: str


def call(task: str | procrastinate.tasks.Task, /, **kwargs: Any) -> TaskCall:
    """Shorthand for :class:`TaskCall`: ``call("refit_model", name="tau_fit")``."""
    name = task if isinstance(task, str) else task.name
    return TaskCall(name, dict(kwargs))


def _default_app() -> procrastinate.App:
    from matstore.jobs.app import app

    app.perform_import_paths()
    return app


def _default_engine() -> Engine:
    from matstore.db import get_engine

    return get_engine()


def workers_present(engine: Engine | None = None, *, within_s: float = 30.0) -> bool:
    """Whether any worker sent a heartbeat in the last ``within_s`` seconds.

    Workers write a heartbeat to ``procrastinate_workers`` every few seconds (10 by default,
    ``matstore worker --heartbeat``).  A database without the queue tables (never migrated
    to revision 0003) has no workers.

    Parameters
    ----------
    engine:
        Engine of matstore's database (default: the configured one).
    within_s:
        How recent the heartbeat must be.

    Returns
    -------
    bool
    """
    engine = engine or _default_engine()
    with engine.connect() as conn:
        if conn.execute(text("SELECT to_regclass('procrastinate_workers')")).scalar() is None:
            return False
        return bool(conn.execute(
            text("SELECT EXISTS (SELECT 1 FROM procrastinate_workers "
                 "WHERE last_heartbeat > now() - make_interval(secs => :s))"),
            {"s": float(within_s)},
        ).scalar())


@contextmanager
def opened(app: procrastinate.App) -> Iterator[procrastinate.App]:
    """Open ``app`` synchronously for the block, unless it is already open."""
    try:
        app.connector.get_sync_connector().pool  # noqa: B018 - raises AppNotOpen when closed
    except exceptions.AppNotOpen:
        app.open()
        try:
            yield app
        finally:
            app.close()
        return
    yield app


def defer(*calls: TaskCall | tuple[str, dict[str, Any]], app: procrastinate.App | None = None) -> list[int]:
    """Defer ``calls`` (batched per task and options) and return their job ids, in order.

    Parameters
    ----------
    *calls:
        :class:`TaskCall` objects or ``(task_name, kwargs)`` pairs.
    app:
        The procrastinate app (default :data:`matstore.jobs.app.app`).

    Returns
    -------
    list of int
        Queue job ids, one per call.

    Raises
    ------
    KeyError
        If a task name is not registered.
    TypeError
        If a call's arguments do not fit its task (:func:`check_arguments`): nothing is deferred.
    """
    app = app or _default_app()
    normalised = [c if isinstance(c, TaskCall) else TaskCall(c[0], dict(c[1])) for c in calls]
    for c in normalised:
        if c.task not in app.tasks:
            raise KeyError(f"unknown task {c.task!r}; known: {', '.join(sorted(app.tasks))}")
        check_arguments(app.tasks[c.task], c.kwargs)
    groups: dict[tuple, list[int]] = {}
    for index, c in enumerate(normalised):
        groups.setdefault((c.task, c.lock, c.queueing_lock, c.priority), []).append(index)
    ids: list[int] = [0] * len(normalised)
    with opened(app):
        for (task, lock, queueing_lock, priority), indexes in groups.items():
            options = {k: v for k, v in (("lock", lock), ("queueing_lock", queueing_lock), ("priority", priority))
                       if v is not None}
            deferrer = app.tasks[task].configure(**options)
            new_ids = deferrer.batch_defer(*(normalised[i].kwargs for i in indexes))
            for i, job_id in zip(indexes, new_ids, strict=True):
                ids[i] = job_id
    return ids


def check_arguments(task: procrastinate.tasks.Task, kwargs: dict[str, Any]) -> None:
    """Refuse ``kwargs`` that the task's function would refuse (before the job is queued).

    Parameters
    ----------
    task:
        A registered procrastinate task.
    kwargs:
        The keyword arguments a job of it would get.

    Raises
    ------
    TypeError
        Naming the task, the problem (unexpected or missing argument) and its parameters.
    """
    signature = inspect.signature(task.func)
    params = list(signature.parameters.values())[1 if task.pass_context else 0:]
    takes = ", ".join(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}" for p in params)
    names = [p.name for p in params]
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        for key in kwargs:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise TypeError(f"task {task.name}: unexpected keyword argument {key!r}{hint}; it takes {takes or 'nothing'}")
    try:
        signature.replace(parameters=params).bind(**kwargs)
    except TypeError as exc:
        raise TypeError(f"task {task.name}: {exc}; it takes {takes or 'nothing'}") from None


def job_errors(job_ids: list[int], engine: Engine | None = None) -> dict[int, str]:
    """The error text of each queue job's newest ``job_run`` row (jobs without one are absent).

    Parameters
    ----------
    job_ids:
        Queue job ids.
    engine:
        Engine of matstore's database (default: the configured one).

    Returns
    -------
    dict
        ``{job_id: error}``, the error masked of secrets.
    """
    from matstore.masking import mask_secrets

    if not job_ids:
        return {}
    query = text(
        "SELECT DISTINCT ON (parameters->>'queue_job_id') (parameters->>'queue_job_id')::bigint, error FROM job_run "
        "WHERE parameters->>'queue_job_id' = ANY(:ids) AND error IS NOT NULL "
        "ORDER BY parameters->>'queue_job_id', id DESC"
    )
    with (engine or _default_engine()).connect() as conn:
        rows = conn.execute(query, {"ids": [str(int(j)) for j in job_ids]}).all()
    return {int(job_id): mask_secrets(error) for job_id, error in rows}


def wait_for_jobs(
    job_ids: list[int],
    *,
    engine: Engine | None = None,
    timeout_s: float | None = None,
    poll_interval_s: float = 0.5,
    idle_timeout_s: float | None = None,
) -> list[JobOutcome]:
    """Poll the queue until every job in ``job_ids`` reached a final status.

    Parameters
    ----------
    job_ids:
        Queue job ids.
    engine:
        Engine of matstore's database (default: the configured one).
    timeout_s:
        Give up after this many seconds (default: wait for ever).
    poll_interval_s:
        Seconds between polls.
    idle_timeout_s:
        Give up when, for this many seconds, no worker took or finished any of the jobs (no
        worker serves their queue); default: no such limit.

    Returns
    -------
    list of JobOutcome
        One per id, in the order given.

    Raises
    ------
    TimeoutError
        If some jobs are still waiting or running after ``timeout_s``, or none moved for
        ``idle_timeout_s``; they stay queued.
    """
    engine = engine or _default_engine()
    query = text("SELECT id, task_name, status::text FROM procrastinate_jobs WHERE id IN :ids").bindparams(
        bindparam("ids", expanding=True)
    )
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    done: dict[int, JobOutcome] = {}
    pending = list(dict.fromkeys(job_ids))
    last_states: dict[int, str] = {}
    last_move = time.monotonic()
    while pending:
        with engine.connect() as conn:
            rows = conn.execute(query, {"ids": pending}).all()
        seen = set()
        states = {job_id: status for job_id, _, status in rows}
        if states != last_states:
            last_states, last_move = states, time.monotonic()
        for job_id, task_name, status in rows:
            seen.add(job_id)
            if status in FINAL_STATUSES:
                done[job_id] = JobOutcome(job_id, task_name, status)
        for job_id in set(pending) - seen:  # deleted on success (worker --delete-jobs)
            done[job_id] = JobOutcome(job_id, "?", "succeeded")
        pending = [j for j in pending if j not in done]
        if not pending:
            break
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} of {len(job_ids)} jobs not finished after "
                               f"{timeout_s:.0f} s (ids {pending[:10]}...); they stay queued")
        if idle_timeout_s is not None and time.monotonic() - last_move > idle_timeout_s:
            queues = sorted({q for (q,) in _queues_of(engine, pending)})
            raise TimeoutError(f"no worker took or finished any of {len(pending)} jobs for {idle_timeout_s:.0f} s: "
                               f"is a worker serving queue {', '.join(queues)} running (`matstore worker --queue "
                               f"{queues[0] if queues else 'compute'}`)? The jobs stay queued")
        time.sleep(poll_interval_s)
    return [done[j] for j in job_ids]


def _queues_of(engine: Engine, job_ids: list[int]) -> list[tuple[str]]:
    query = text("SELECT DISTINCT queue_name FROM procrastinate_jobs WHERE id IN :ids").bindparams(
        bindparam("ids", expanding=True))
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query, {"ids": job_ids}).all()]


#: Default of :func:`defer_and_wait`: seconds without any of its jobs moving before it gives up.
IDLE_TIMEOUT_S = 600.0


def defer_and_wait(
    *calls: TaskCall | tuple[str, dict[str, Any]],
    app: procrastinate.App | None = None,
    engine: Engine | None = None,
    timeout_s: float | None = None,
    poll_interval_s: float = 0.5,
    raise_on_failure: bool = True,
    idle_timeout_s: float | None = IDLE_TIMEOUT_S,
) -> list[JobOutcome]:
    """Defer ``calls`` to the queue and block until all of them finished.

    Jobs run on whatever workers are listening (on this or other machines).  A job whose
    task raises is retried according to its task's retry strategy before it counts as
    failed; a job whose worker dies is requeued by the stalled-job check.

    Parameters
    ----------
    *calls:
        :class:`TaskCall` objects (see :func:`call`) or ``(task_name, kwargs)`` pairs.
    app:
        The procrastinate app (default :data:`matstore.jobs.app.app`).
    engine:
        Engine of matstore's database, for polling (default: the configured one).
    timeout_s:
        Give up after this many seconds (default: wait for ever).
    poll_interval_s:
        Seconds between status polls.
    raise_on_failure:
        Raise :class:`JobsFailedError` if any job did not succeed.
    idle_timeout_s:
        Give up when no worker took or finished any job for this long (no worker serves the
        queue); ``None`` waits for ever.

    Returns
    -------
    list of JobOutcome
        One per call, in order.

    Raises
    ------
    JobsFailedError
        If ``raise_on_failure`` and some job ended failed, cancelled or aborted.
    TimeoutError
        If ``timeout_s`` passed first, or ``idle_timeout_s`` without any job moving.
    """
    if not calls:
        return []
    ids = defer(*calls, app=app)
    outcomes = wait_for_jobs(ids, engine=engine, timeout_s=timeout_s, poll_interval_s=poll_interval_s,
                             idle_timeout_s=idle_timeout_s)
    if raise_on_failure and any(o.status != "succeeded" for o in outcomes):
        raise JobsFailedError(outcomes, job_errors([o.job_id for o in outcomes if o.status != "succeeded"], engine))
    return outcomes
