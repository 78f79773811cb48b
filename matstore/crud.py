"""Data access: small keyword-only functions over the schema.

CLI commands, jobs, ingest and model code call these instead of writing SQL of their own.
Writers take a ``session`` that the caller owns (one transaction per source); job-run
bookkeeping uses its own short transactions so that a failed ingest still leaves a
``failed`` job_run row while its data is rolled back.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import Session

from matstore.hashing import sha256_json
from matstore.orientation import Orientation
from matstore.provenance import code_version, git_commit, host_name, scrub, scrub_text
from matstore.schema import (
    BulkProperty,
    JobRun,
    Material,
    Method,
    PropertyDefinition,
    Source,
    Surface,
    SurfaceProperty,
)
from matstore.schema.vocabulary import PROPERTY_DEFINITIONS

log = logging.getLogger(__name__)


# --- vocabulary --------------------------------------------------------------------------

def seed_vocabulary(*, session: Session) -> int:
    """Insert missing property definitions (idempotent); return how many were added."""
    rows = [d._asdict() for d in PROPERTY_DEFINITIONS]
    stmt = insert(PropertyDefinition).values(rows).on_conflict_do_nothing(index_elements=["name"])
    return len(session.execute(stmt.returning(PropertyDefinition.id)).all())


def definitions(*, session: Session) -> dict[str, PropertyDefinition]:
    """All property definitions by name."""
    return {d.name: d for d in session.execute(select(PropertyDefinition)).scalars()}


# --- materials, methods, surfaces ---------------------------------------------------------

def get_or_create_material(*, session: Session, formula: str, prototype: str = "fcc") -> int:
    """Id of the material (formula, prototype), inserting it when new."""
    stmt = (
        insert(Material)
        .values(formula=formula, prototype=prototype)
        .on_conflict_do_nothing(index_elements=["formula", "prototype"])
        .returning(Material.id)
    )
    new_id = session.execute(stmt).scalar()
    if new_id is not None:
        return new_id
    return session.execute(
        select(Material.id).where(Material.formula == formula, Material.prototype == prototype)
    ).scalar_one()


def get_or_create_method(
    *,
    session: Session,
    name: str,
    kind: str,
    calculator: str | None = None,
    potential: str | None = None,
    potential_sha256: str | None = None,
    parameters: dict[str, Any] | None = None,
    software: dict[str, Any] | None = None,
    description: str | None = None,
) -> int:
    """Id of the method (name, parameters), inserting it when new.

    A method is identified by its name and the sha256 of its canonical parameters; the
    software versions are recorded with the first use.
    """
    parameters = parameters or {}
    params_hash = sha256_json(parameters)
    stmt = (
        insert(Method)
        .values(
            name=name,
            kind=kind,
            calculator=calculator,
            potential=potential,
            potential_sha256=potential_sha256,
            parameters=parameters,
            parameters_sha256=params_hash,
            software=software or {},
            description=description,
        )
        .on_conflict_do_nothing(index_elements=["name", "parameters_sha256"])
        .returning(Method.id)
    )
    new_id = session.execute(stmt).scalar()
    if new_id is not None:
        return new_id
    return session.execute(
        select(Method.id).where(Method.name == name, Method.parameters_sha256 == params_hash)
    ).scalar_one()


def get_or_create_surface(*, session: Session, material_id: int, orientation: Orientation) -> int:
    """Id of the surface of ``material_id`` with ``orientation``, inserting it when new."""
    miller = orientation.miller or (None, None, None)
    stmt = (
        insert(Surface)
        .values(
            material_id=material_id,
            orientation_key=orientation.key,
            miller_h=miller[0],
            miller_k=miller[1],
            miller_l=miller[2],
            normal_x=orientation.normal[0],
            normal_y=orientation.normal[1],
            normal_z=orientation.normal[2],
            theta_deg=orientation.theta_deg,
            phi_deg=orientation.phi_deg,
        )
        .on_conflict_do_nothing(index_elements=["material_id", "orientation_key"])
        .returning(Surface.id)
    )
    new_id = session.execute(stmt).scalar()
    if new_id is not None:
        return new_id
    return session.execute(
        select(Surface.id).where(Surface.material_id == material_id, Surface.orientation_key == orientation.key)
    ).scalar_one()


# --- sources ------------------------------------------------------------------------------

def find_source(*, session: Session, sha256: str) -> Source | None:
    """The stored source with this sha256, or ``None``."""
    return session.execute(select(Source).where(Source.sha256 == sha256)).scalar_one_or_none()


def claim_source(
    *,
    session: Session,
    kind: str,
    sha256: str,
    uri: str | None = None,
    doi: str | None = None,
    license: str | None = None,  # noqa: A002 - the field's name
    commit: str | None = None,
    description: str | None = None,
    details: dict[str, Any] | None = None,
) -> int | None:
    """Insert the source row in the caller's transaction; ``None`` if it is already stored.

    Two processes claiming the same sha256 at once serialise on the unique index: the
    second waits for the first to commit and then gets ``None``, so a source is ingested
    exactly once.  If the first rolls back, the second proceeds.
    """
    stmt = (
        insert(Source)
        .values(
            kind=kind,
            sha256=sha256,
            uri=uri,
            doi=doi,
            license=license,
            commit=commit,
            description=description,
            details=scrub(details or {}),
        )
        .on_conflict_do_nothing(index_elements=["sha256"])
        .returning(Source.id)
    )
    return session.execute(stmt).scalar()


# --- property values ----------------------------------------------------------------------

def add_bulk_properties(*, session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert bulk property rows (dicts with BulkProperty's columns); skip exact duplicates.

    Returns the number of rows inserted.  Values must already be in canonical units.
    """
    if not rows:
        return 0
    stmt = insert(BulkProperty).on_conflict_do_nothing(
        index_elements=["material_id", "method_id", "definition_id", "source_id"]
    )
    return _insert_many(session, stmt.returning(BulkProperty.id), rows)


def add_surface_properties(*, session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert surface property rows (dicts with SurfaceProperty's columns); skip duplicates."""
    if not rows:
        return 0
    stmt = insert(SurfaceProperty).on_conflict_do_nothing(
        index_elements=["surface_id", "method_id", "definition_id", "source_id"]
    )
    return _insert_many(session, stmt.returning(SurfaceProperty.id), rows)


def _insert_many(session: Session, stmt: Any, rows: Sequence[dict[str, Any]]) -> int:
    """Execute ``stmt`` for ``rows`` as one executemany (one cached statement, batched
    VALUES); return how many rows were inserted (those ``RETURNING`` an id).

    Rows are completed to the same keys first, because an executemany binds one key set.
    """
    keys = sorted({k for row in rows for k in row})
    uniform = [{k: row.get(k, _DEFAULTS.get(k)) for k in keys} for row in rows]
    return len(session.execute(stmt, uniform).all())


#: Values of optional columns when some rows of a batch omit them.
_DEFAULTS: dict[str, Any] = {"details": {}}


# --- job runs -----------------------------------------------------------------------------

def start_job_run(*, engine: Engine, kind: str, parameters: dict[str, Any]) -> int:
    """Insert a ``running`` job_run row in its own transaction and return its id."""
    with Session(engine) as session:
        run = JobRun(
            kind=kind,
            parameters=scrub(parameters),
            code_version=code_version(),
            git_commit=git_commit(),
            host=host_name(),
            pid=os.getpid(),
        )
        session.add(run)
        session.commit()
        return run.id  # type: ignore[return-value]


def finish_job_run(
    *,
    engine: Engine,
    job_run_id: int,
    status: str,
    error: str | None = None,
    summary: dict[str, Any] | None = None,
) -> None:
    """Set a job run's end time, status, error text (credentials scrubbed) and summary."""
    values: dict[str, Any] = {"status": status, "finished_at": datetime.now(UTC)}
    if error is not None:
        values["error"] = scrub_text(error)
    if summary is not None:
        values["summary"] = scrub(summary)
    with Session(engine) as session:
        session.execute(update(JobRun).where(JobRun.id == job_run_id).values(**values))
        session.commit()


def reap_lost_runs(*, engine: Engine) -> int:
    """Mark ``failed`` the ``running`` job runs of this host whose process no longer exists.

    A run killed with ``kill -9`` (or by the OOM killer) cannot record its own end; its data
    were rolled back with its transaction, and this makes its ``job_run`` row say so.  Runs
    of other hosts are left alone (queue jobs of lost workers are handled by
    ``matstore.jobs``).  Returns the number of rows marked.
    """
    with Session(engine) as session:
        rows = session.execute(
            select(JobRun.id, JobRun.pid).where(JobRun.status == "running", JobRun.host == host_name())
        ).all()
        lost = [r.id for r in rows if r.pid is not None and r.pid != os.getpid() and not _process_alive(r.pid)]
        if lost:
            session.execute(update(JobRun).where(JobRun.id.in_(lost)).values(
                status="failed", finished_at=datetime.now(UTC), error="process lost (killed or crashed) before it finished"))
            session.commit()
        return len(lost)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobRunHandle:
    """What :func:`job_run` yields: the run's id and a summary dict the job fills in."""

    def __init__(self, job_run_id: int) -> None:
        self.id = job_run_id
        self.summary: dict[str, Any] = {}
        self.status = "succeeded"


@contextmanager
def job_run(*, engine: Engine, kind: str, parameters: dict[str, Any]) -> Iterator[JobRunHandle]:
    """Record a job run around a block: ``running`` → ``succeeded``/``skipped`` or ``failed``.

    On an exception the run is marked ``failed`` with the error message and the exception
    propagates.  The block may set ``handle.status = "skipped"`` (e.g. nothing new to do).
    """
    reap_lost_runs(engine=engine)
    handle = JobRunHandle(start_job_run(engine=engine, kind=kind, parameters=parameters))
    try:
        yield handle
    except BaseException as exc:
        message = f"{exc.__class__.__name__}: {exc}"
        log.debug("job run %s failed:\n%s", handle.id, traceback.format_exc())
        finish_job_run(engine=engine, job_run_id=handle.id, status="failed", error=message, summary=handle.summary)
        raise
    finish_job_run(engine=engine, job_run_id=handle.id, status=handle.status, summary=handle.summary)
