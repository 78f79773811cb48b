"""matstore's queue tasks: thin typed wrappers that call the library layers.

Every task is registered on :data:`matstore.jobs.app.app` under a short, stable name (the
name is stored with each queued job, so it must not change when code moves):

=====================  ============  ==========================================================
task name              queue         does
=====================  ============  ==========================================================
``ingest_files``       ingest        :func:`matstore.ingest.structures.ingest_structures`
``ingest_table``       ingest        :func:`matstore.ingest.table.ingest_table`
``ingest_dataset``     ingest        :func:`matstore.ingest.registry.ingest_dataset`
``compute_chunk``      compute       :func:`matstore.ingest.compute.store.compute_and_store_chunk`
``refit_model``        models        :func:`matstore.models.service.refit_model`
``scan_drop_dir``      maintenance   periodic: defer ingest of new files in a drop directory
``reingest_datasets``  maintenance   periodic: defer ``ingest_dataset`` for registry datasets
``refit_changed``      maintenance   periodic: defer ``refit_model`` for every equation model
``retry_stalled_jobs`` maintenance   periodic: requeue jobs of workers that stopped beating
``prune_jobs``         maintenance   periodic: delete finished queue jobs older than N hours
=====================  ============  ==========================================================

Library modules are imported inside the task bodies, so a worker starts fast and a task's
import error fails that task only.  Each task except ``compute_chunk`` (whose library
function records its own run) is recorded as a ``job_run`` row of kind ``task:<name>`` whose
parameters carry the queue's job id and attempt number.

Retries: a task is run again only after a *transient* database error (connection lost,
server shut down, deadlock, serialization failure: :data:`TRANSIENT_ERRORS`); bad input fails
at once.  ``max_attempts`` in procrastinate counts *retries*, so ``_INGEST_RETRY`` runs an
ingest at most 3 times in all.  An ingest that failed on its input is remembered by the
sha256 of the file (and of its mapping): :func:`find_new_files` skips it until either changes.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy.exc
from procrastinate import JobContext, RetryStrategy, exceptions, jobs

from matstore.jobs.app import app

log = logging.getLogger(__name__)

#: Files a drop-directory scan routes to the structure ingest (ASE-readable formats).
STRUCTURE_PATTERNS: tuple[str, ...] = (
    "*.xyz", "*.extxyz", "*.cif", "*.traj", "*.vasp", "POSCAR*", "CONTCAR*", "*.poscar",
    "*.json", "*.db", "*.lammps-data", "*.lmp",
)
#: Files a drop-directory scan routes to the table ingest (they need a mapping file).
TABLE_PATTERNS: tuple[str, ...] = ("*.csv", "*.tsv")
#: Files a scan reports as unsupported, with the reason (the table ingest reads UTF-8 text only).
UNSUPPORTED_PATTERNS: dict[str, str] = {
    "*.xlsx": "a spreadsheet: export the sheet as CSV (UTF-8) beside its mapping",
    "*.xls": "a spreadsheet: export the sheet as CSV (UTF-8) beside its mapping",
    "*.ods": "a spreadsheet: export the sheet as CSV (UTF-8) beside its mapping",
}
#: Suffixes of mapping files (never ingested as data themselves).
MAPPING_SUFFIXES: tuple[str, ...] = (".mapping.yaml", ".mapping.yml")

#: Errors worth another attempt: the database went away or refused a transaction for now.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError, psycopg.InterfaceError,
    sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.TimeoutError,
)
# procrastinate's max_attempts counts retries: 2 means 3 runs in all.
_INGEST_RETRY = RetryStrategy(max_attempts=2, wait=30, exponential_wait=2, retry_exceptions=TRANSIENT_ERRORS)
_COMPUTE_RETRY = RetryStrategy(max_attempts=1, wait=10, retry_exceptions=TRANSIENT_ERRORS)
_MODEL_RETRY = RetryStrategy(max_attempts=1, wait=30, retry_exceptions=TRANSIENT_ERRORS)


def _engine():  # noqa: ANN202
    from matstore.db import get_engine

    return get_engine()


@contextmanager
def _recorded(context: JobContext, parameters: dict[str, Any]) -> Iterator[Any]:
    """Record the running task as a ``job_run`` row (``task:<name>``)."""
    from matstore.crud import job_run

    job = context.job
    params = {
        **parameters,
        "queue_job_id": job.id,
        "attempt": job.attempts + 1,
        "queue": job.queue,
        "worker": context.worker_name,
    }
    with job_run(engine=_engine(), kind=f"task:{job.task_name}", parameters=params) as run:
        try:
            yield run
        except TRANSIENT_ERRORS:
            raise
        except Exception:
            # Not the database's fault: the input (or code) is. Scans skip these inputs until they change.
            run.summary = {**(run.summary or {}), "bad_input": True}
            raise


def input_key(path: str | Path, mapping_path: str | Path | None = None) -> str:
    """What identifies one ingest input: the file's sha256, plus its mapping's for a table.

    Parameters
    ----------
    path:
        The data file.
    mapping_path:
        The mapping of a table file, if any.

    Returns
    -------
    str
        ``"<sha256>"`` or ``"<sha256>:<mapping sha256>"`` (hex digests).
    """
    from matstore.hashing import sha256_file

    key = sha256_file(Path(path))
    return f"{key}:{sha256_file(Path(mapping_path))}" if mapping_path else key


def _summary_of(result: Any) -> Any:
    """A JSON-able summary of a library call's return value."""
    if result is None or isinstance(result, (str, int, float, bool)):
        return result
    if isinstance(result, dict):
        return {str(k): _summary_of(v) for k, v in result.items()}
    if isinstance(result, (list, tuple)):
        return [_summary_of(v) for v in result]
    for attr in ("as_dict", "to_dict", "model_dump"):
        method = getattr(result, attr, None)
        if callable(method):
            return _summary_of(method())
    if hasattr(result, "__dataclass_fields__"):
        from dataclasses import asdict

        return _summary_of(asdict(result))
    return repr(result)


# --- work tasks ---------------------------------------------------------------------------

@app.task(name="ingest_files", queue="ingest", pass_context=True, retry=_INGEST_RETRY)
def ingest_files(context: JobContext, paths: list[str]) -> dict[str, Any]:
    """Ingest structure files (extxyz, CIF, trajectories, ...) into the store.

    Parameters
    ----------
    context:
        procrastinate's job context (passed by the worker).
    paths:
        Paths readable by the worker (shared file system or volume).

    Returns
    -------
    dict
        The ingest summary (also stored in the ``job_run`` row).
    """
    keys = [input_key(p) for p in paths if Path(p).is_file()]
    with _recorded(context, {"paths": list(paths), "input_keys": keys}) as run:
        from matstore.ingest.structures import ingest_structures

        result = ingest_structures([Path(p) for p in paths], engine=_engine())
        run.summary = {"result": _summary_of(result)}
    return run.summary


@app.task(name="ingest_table", queue="ingest", pass_context=True, retry=_INGEST_RETRY)
def ingest_table(context: JobContext, path: str, mapping_path: str) -> dict[str, Any]:
    """Ingest a table file (CSV, ...) using a column mapping file.

    Parameters
    ----------
    context:
        procrastinate's job context.
    path:
        The table file.
    mapping_path:
        The YAML mapping of its columns to matstore properties.

    Returns
    -------
    dict
        The ingest summary.
    """
    keys = [input_key(path, mapping_path)] if Path(path).is_file() and Path(mapping_path).is_file() else []
    with _recorded(context, {"path": path, "mapping_path": mapping_path, "input_keys": keys}) as run:
        from matstore.ingest.table import ingest_table as ingest_table_file

        result = ingest_table_file(Path(path), Path(mapping_path), engine=_engine())
        run.summary = {"result": _summary_of(result)}
    return run.summary


@app.task(name="ingest_dataset", queue="ingest", pass_context=True, retry=_INGEST_RETRY)
def ingest_dataset(context: JobContext, name: str) -> dict[str, Any]:
    """(Re-)ingest a dataset from the registry; unchanged files are skipped by sha256.

    Parameters
    ----------
    context:
        procrastinate's job context.
    name:
        Registry name of the dataset.

    Returns
    -------
    dict
        The ingest summary.
    """
    with _recorded(context, {"name": name}) as run:
        from matstore.ingest.registry import ingest_dataset as ingest_registered

        result = ingest_registered(name, engine=_engine())
        run.summary = {"result": _summary_of(result)}
    return run.summary


@app.task(name="compute_chunk", queue="compute", retry=_COMPUTE_RETRY)
def compute_chunk(
    element: str, calculator: str, miller: list[int] | None = None, params: dict[str, Any] | None = None
) -> Any:
    """Compute and store one material × surface chunk (records its own ``job_run``).

    Parameters
    ----------
    element:
        Chemical symbol of the material, e.g. ``"Cu"``.
    calculator:
        Calculator name, e.g. ``"emt"``.
    miller:
        Miller indices of the surface, e.g. ``[1, 1, 1]``; ``None`` computes the bulk only.
    params:
        Calculator parameters (part of the method's identity).

    Returns
    -------
    object
        A JSON-able summary of what the compute layer returned.
    """
    from matstore.ingest.compute.store import compute_and_store_chunk

    result = compute_and_store_chunk(element, calculator, None if miller is None else tuple(miller), parameters=params)
    return _summary_of(result)


@app.task(name="refit_model", queue="models", pass_context=True, retry=_MODEL_RETRY)
def refit_model(context: JobContext, name: str) -> dict[str, Any]:
    """Refit an equation model; a new version is stored only if its data snapshot changed.

    Parameters
    ----------
    context:
        procrastinate's job context.
    name:
        The equation model's name.

    Returns
    -------
    dict
        ``{"created_version": bool, "result": ...}``.
    """
    with _recorded(context, {"name": name}) as run:
        from matstore.models.service import refit_model as refit

        result = refit(_engine(), name)
        created = result.created
        run.summary = {"created_version": created, "result": _summary_of(result)}
        if not created:
            run.status = "skipped"
    return run.summary


# --- deferral helpers ----------------------------------------------------------------------

def _defer_once(task: Any, *, queueing_lock: str, lock: str | None = None, **kwargs: Any) -> int | None:
    """Defer ``task`` unless a job with the same queueing lock is already waiting."""
    try:
        options = {"queueing_lock": queueing_lock, **({"lock": lock} if lock else {})}
        return task.configure(**options).defer(**kwargs)
    except exceptions.AlreadyEnqueued:
        return None


def defer_refit(name: str) -> int | None:
    """Queue a refit of model ``name``; at most one waits and one runs at a time.

    Returns
    -------
    int or None
        The job id, or ``None`` if a refit of this model was already waiting.
    """
    return _defer_once(refit_model, queueing_lock=f"refit:{name}", lock=f"refit:{name}", name=name)


def defer_ingest_dataset(name: str) -> int | None:
    """Queue a (re-)ingest of dataset ``name`` unless one is already waiting."""
    return _defer_once(ingest_dataset, queueing_lock=f"dataset:{name}", lock=f"dataset:{name}", name=name)


# --- periodic tasks -----------------------------------------------------------------------
# Their cron lines come from the schedule file (matstore.jobs.schedule); procrastinate passes
# ``timestamp`` (the cron tick) and dedupes on (task, periodic id, timestamp), so however many
# workers load the schedule, each tick is deferred once.

def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def _mapping_for(path: Path) -> Path | None:
    """The mapping file of table ``path``: ``<stem>.mapping.yaml`` or the folder's ``mapping.yaml``."""
    for suffix in MAPPING_SUFFIXES:
        candidate = path.with_name(path.stem + suffix)
        if candidate.is_file():
            return candidate
    for name in ("mapping.yaml", "mapping.yml"):
        candidate = path.parent / name
        if candidate.is_file():
            return candidate
    return None


def find_new_files(
    directory: str | Path,
    *,
    engine: Any,
    recursive: bool = True,
    min_age_s: float = 5.0,
    structure_patterns: Sequence[str] = STRUCTURE_PATTERNS,
    table_patterns: Sequence[str] = TABLE_PATTERNS,
) -> dict[str, list[tuple[Path, str]]]:
    """Files in ``directory`` whose sha256 is not yet a ``source`` row and that did not fail before.

    A file whose ingest failed on its input (``job_run`` failed with ``bad_input``) is skipped
    while its sha256 (and, for a table, its mapping's) is unchanged: fix or replace the file
    and the next scan takes it.

    Parameters
    ----------
    directory:
        The drop directory.
    engine:
        SQLAlchemy engine of the store.
    recursive:
        Also look in sub-directories.
    min_age_s:
        Ignore files modified less than this many seconds ago (still being copied).
    structure_patterns, table_patterns:
        Shell patterns (on the file name) selecting structure and table files.

    Returns
    -------
    dict
        ``{"structures": [(path, sha256), ...], "tables": [...], "ignored": [...]}``; the
        ``ignored`` entries carry the reason instead of a hash.
    """
    from matstore.hashing import sha256_file

    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"drop directory {root} does not exist")
    files = sorted(p for p in (root.rglob("*") if recursive else root.iterdir()) if p.is_file())
    now = time.time()
    candidates: list[tuple[str, Path, str]] = []
    out: dict[str, list[tuple[Path, str]]] = {"structures": [], "tables": [], "ignored": []}
    for path in files:
        if path.name.startswith(".") or path.name.endswith(MAPPING_SUFFIXES) or path.name in ("mapping.yaml", "mapping.yml"):
            continue
        kind, reason = _kind_of(path.name, structure_patterns, table_patterns)
        if kind is None:
            out["ignored"].append((path, reason))
        elif now - path.stat().st_mtime < min_age_s:
            out["ignored"].append((path, "modified too recently"))
        else:
            candidates.append((kind, path, sha256_file(path)))
    known, failed = _stored_and_failed(engine, candidates)
    for kind, path, digest in candidates:
        if digest in known:
            continue
        if _failed_key(kind, path, digest) in failed:
            out["ignored"].append((path, "its ingest failed on this content before (see job_run); "
                                         "fix or replace the file"))
            continue
        out[kind].append((path, digest))
    return out


def _kind_of(name: str, structure_patterns: Sequence[str], table_patterns: Sequence[str]) -> tuple[str | None, str]:
    for pattern, reason in UNSUPPORTED_PATTERNS.items():
        if fnmatch.fnmatch(name, pattern):
            return None, f"unsupported format: {reason}"
    if _matches(name, table_patterns):
        return "tables", ""
    if _matches(name, structure_patterns):
        return "structures", ""
    return None, "unknown format"


def _failed_key(kind: str, path: Path, digest: str) -> str:
    if kind != "tables":
        return digest
    mapping = _mapping_for(path)
    return input_key(path, mapping) if mapping else digest


def _stored_and_failed(engine: Any, candidates: list[tuple[str, Path, str]]) -> tuple[set[str], set[str]]:
    """The candidates' sha256s already in ``source``, and their input keys whose ingest failed on input."""
    from sqlalchemy import bindparam, text

    if not candidates:
        return set(), set()
    keys = [_failed_key(kind, path, digest) for kind, path, digest in candidates]
    stored = text("SELECT sha256 FROM source WHERE sha256 IN :hashes").bindparams(bindparam("hashes", expanding=True))
    failed = text(
        "SELECT DISTINCT k FROM job_run, jsonb_array_elements_text(parameters->'input_keys') AS k "
        "WHERE kind IN ('task:ingest_files', 'task:ingest_table') AND status = 'failed' "
        "AND summary @> '{\"bad_input\": true}' AND k = ANY(:keys)"
    )
    with engine.connect() as conn:
        known = set(conn.execute(stored, {"hashes": [c[2] for c in candidates]}).scalars())
        bad = set(conn.execute(failed, {"keys": keys}).scalars())
    return known, bad


@app.task(name="scan_drop_dir", queue="maintenance", pass_context=True)
def scan_drop_dir(
    context: JobContext,
    timestamp: int,
    directory: str,
    recursive: bool = True,
    min_age_s: float = 5.0,
) -> dict[str, Any]:
    """Periodic: queue an ingest for every file in ``directory`` not yet stored.

    A file is new when its sha256 is not in ``source``.  Structure files go to
    ``ingest_files``, table files to ``ingest_table`` with their mapping file
    (``<stem>.mapping.yaml`` or the folder's ``mapping.yaml``; without one the file is
    reported as unmapped).  Each file is queued at most once at a time (queueing lock on its
    sha256).

    Parameters
    ----------
    context:
        procrastinate's job context.
    timestamp:
        The cron tick (passed by procrastinate).
    directory:
        The drop directory, as the worker sees it.
    recursive:
        Also scan sub-directories.
    min_age_s:
        Skip files modified less than this many seconds ago.

    Returns
    -------
    dict
        Counts of deferred, already-queued, unmapped and ignored files.
    """
    with _recorded(context, {"directory": directory, "timestamp": timestamp}) as run:
        found = find_new_files(directory, engine=_engine(), recursive=recursive, min_age_s=min_age_s)
        deferred, queued, unmapped = [], 0, []
        for path, digest in found["structures"]:
            job_id = _defer_once(ingest_files, queueing_lock=f"file:{digest}", paths=[str(path)])
            if job_id is None:
                queued += 1
            else:
                deferred.append(str(path))
        for path, digest in found["tables"]:
            mapping = _mapping_for(path)
            if mapping is None:
                unmapped.append(str(path))
                continue
            job_id = _defer_once(ingest_table, queueing_lock=f"file:{digest}", path=str(path),
                                 mapping_path=str(mapping))
            if job_id is None:
                queued += 1
            else:
                deferred.append(str(path))
        run.summary = {
            "deferred": deferred,
            "already_queued": queued,
            "unmapped": unmapped,
            "ignored": len(found["ignored"]),
        }
        if not deferred:
            run.status = "skipped"
    return run.summary


@app.task(name="reingest_datasets", queue="maintenance", pass_context=True)
def reingest_datasets(context: JobContext, timestamp: int, names: list[str]) -> dict[str, Any]:
    """Periodic: queue ``ingest_dataset`` for each dataset in ``names``.

    Parameters
    ----------
    context:
        procrastinate's job context.
    timestamp:
        The cron tick.
    names:
        Registry names of the datasets to refresh.

    Returns
    -------
    dict
        The names deferred and those already waiting.
    """
    with _recorded(context, {"names": list(names), "timestamp": timestamp}) as run:
        deferred = [n for n in names if defer_ingest_dataset(n) is not None]
        run.summary = {"deferred": deferred, "already_queued": sorted(set(names) - set(deferred))}
    return run.summary


@app.task(name="refit_changed", queue="maintenance", pass_context=True)
def refit_changed(context: JobContext, timestamp: int, names: list[str] | None = None) -> dict[str, Any]:
    """Periodic: queue ``refit_model`` for every equation model (or those in ``names``).

    ``refit`` compares the model's data snapshot with its newest version and stores a new
    version only when the data changed, so refitting an unchanged model is a no-op
    (its ``job_run`` is ``skipped``).

    Parameters
    ----------
    context:
        procrastinate's job context.
    timestamp:
        The cron tick.
    names:
        Model names; default every row of ``equation_model``.

    Returns
    -------
    dict
        The names deferred and those already waiting.
    """
    from sqlalchemy import text

    with _recorded(context, {"names": names, "timestamp": timestamp}) as run:
        if names is None:
            with _engine().connect() as conn:
                names = list(conn.execute(text("SELECT name FROM equation_model ORDER BY name")).scalars())
        deferred = [n for n in names if defer_refit(n) is not None]
        run.summary = {"deferred": deferred, "already_queued": sorted(set(names) - set(deferred))}
    return run.summary


@app.task(name="retry_stalled_jobs", queue="maintenance", pass_context=True)
async def retry_stalled_jobs(
    context: JobContext,
    timestamp: int,
    seconds_since_heartbeat: float = 30.0,
    max_attempts: int = 3,
) -> dict[str, Any]:
    """Periodic: requeue the jobs of workers that died (no heartbeat), or fail them.

    procrastinate marks a fetched job ``doing``; if its worker is killed (OOM, ``kill -9``,
    lost machine) nothing finishes it.  Workers send a heartbeat every few seconds, so a
    ``doing`` job whose worker has not beaten for ``seconds_since_heartbeat`` seconds (or
    whose worker row was pruned) is stalled: it is put back to ``todo`` with one more
    attempt, or marked ``failed`` once it has been tried ``max_attempts`` times (a job that
    kills its worker every time must not loop forever).  The ``job_run`` rows the lost
    attempt left ``running`` are marked ``failed``.

    Parameters
    ----------
    context:
        procrastinate's job context.
    timestamp:
        The cron tick.
    seconds_since_heartbeat:
        A worker silent for longer than this is considered dead.  Keep it well above the
        workers' heartbeat interval (``matstore worker --heartbeat``).
    max_attempts:
        Attempts after which a stalled job is failed instead of retried.

    Returns
    -------
    dict
        Ids of the retried and failed jobs.
    """
    manager = context.app.job_manager
    stalled = await manager.get_stalled_jobs(seconds_since_heartbeat=seconds_since_heartbeat)
    retried, failed = [], []
    for job in stalled:
        try:
            if job.attempts + 1 >= max_attempts:
                await manager.finish_job(job, status=jobs.Status.FAILED, delete_job=False)
                failed.append(job.id)
            else:
                await manager.retry_job(job)
                retried.append(job.id)
        except exceptions.ConnectorException as exc:  # finished or retried meanwhile
            log.info("stalled job %s changed state meanwhile: %s", job.id, exc)
    if retried or failed:
        log.warning("stalled jobs: retried %s, failed %s", retried, failed)
        await asyncio.to_thread(_fail_lost_job_runs, retried + failed)
    return {"retried": retried, "failed": failed}


def _fail_lost_job_runs(queue_job_ids: Sequence[int]) -> int:
    """Mark the ``running`` job_run rows of lost queue jobs as ``failed``."""
    from sqlalchemy import bindparam, text

    query = text(
        "UPDATE job_run SET status = 'failed', finished_at = now(), "
        "error = 'worker lost (no heartbeat); the queue job was retried or failed' "
        "WHERE status = 'running' AND (parameters->>'queue_job_id')::bigint IN :ids"
    ).bindparams(bindparam("ids", expanding=True))
    with _engine().begin() as conn:
        return conn.execute(query, {"ids": [int(i) for i in queue_job_ids]}).rowcount


@app.task(name="prune_jobs", queue="maintenance", pass_context=True)
async def prune_jobs(
    context: JobContext, timestamp: int, max_hours: int = 168, include_failed: bool = False
) -> None:
    """Periodic: delete queue jobs that finished more than ``max_hours`` ago.

    The queue keeps finished jobs (and their events) for inspection; the ``job_run`` table
    is matstore's permanent record, so old queue rows can go.

    Parameters
    ----------
    context:
        procrastinate's job context.
    timestamp:
        The cron tick.
    max_hours:
        Age (hours since the job finished) above which a job is deleted.
    include_failed:
        Also delete failed jobs (by default they are kept for ``matstore jobs status``).
    """
    await context.app.job_manager.delete_old_jobs(
        nb_hours=max_hours, include_failed=include_failed, include_cancelled=True, include_aborted=True
    )
