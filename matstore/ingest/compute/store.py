"""Store compute results: one transaction per task (a ``source`` of kind ``computation``).

Each bulk or surface task is a source keyed by :func:`~.runner.task_hash` (the sha256 of
its canonical spec: element, calculator and parameters, potential file hash, tolerances,
code version, and for surfaces the bulk inputs), so re-running the same computation stores
nothing twice and work already stored is not recomputed.  The relaxed structure of every
task goes into ``configuration`` with its energy, forces and virial; every property row
points at it, at the method and at the job run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select
from sqlmodel import Session

from matstore import crud
from matstore.ingest.compute.bulk import BulkResult
from matstore.ingest.compute.calculators import get_backend
from matstore.ingest.compute.runner import (
    BulkTask,
    SurfaceTask,
    compute_tasks,
    task_hash,
    task_spec,
)
from matstore.ingest.compute.surfaces import SurfaceResult
from matstore.ingest.copy import write_configurations
from matstore.ingest.structures import frame_from_atoms
from matstore.orientation import from_miller
from matstore.schema import Source

log = logging.getLogger(__name__)

#: Result property names that differ from the vocabulary's.
_VOCABULARY_NAME = {"surface_stress_mean": "surface_stress"}


@dataclass
class ComputeSummary:
    """What :func:`compute_and_store` did."""

    calculator: str
    methods: list[str] = field(default_factory=list)
    tasks_run: int = 0
    tasks_skipped: int = 0
    values_stored: int = 0
    configurations_stored: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> str:
        """One line for reports."""
        text = (f"{self.tasks_run} tasks run, {self.tasks_skipped} already stored; "
                f"{self.values_stored} values and {self.configurations_stored} structures stored")
        if self.failures:
            text += f"; {len(self.failures)} tasks failed ({self.failures[0]['message'][:80]})"
        return text


def stored_task_hashes(engine: Engine, hashes: Sequence[str]) -> set[str]:
    """Which of ``hashes`` are already stored as computation sources."""
    with Session(engine) as session:
        rows = session.execute(select(Source.sha256).where(Source.sha256.in_(list(hashes)))).scalars()
        return set(rows)


def get_method_id(session: Session, record: dict[str, Any]) -> int:
    """Id of the method a backend's ``method_record`` describes, created when new.

    Raises
    ------
    KeyError
        If ``record`` has no ``name`` or ``kind``.
    """
    return crud.get_or_create_method(
        session=session, name=record["name"], kind=record["kind"], calculator=record.get("calculator"),
        potential=record.get("potential"), potential_sha256=record.get("potential_sha256"),
        parameters=record.get("parameters") or {}, software=record.get("software") or {},
    )


def _configuration_id(session: Session, atoms: Any, source_id: int, job_run_id: int, method_id: int) -> int | None:
    if atoms is None:
        return None
    _, ids = write_configurations(session, [frame_from_atoms(atoms)], source_id, job_run_id, method_id, return_ids=True)
    return int(ids[0])


def store_bulk_result(engine: Engine, task: BulkTask, result: BulkResult, *, job_run_id: int) -> int:
    """Store one bulk result (values, relaxed cell) in one transaction; return values stored.

    Returns 0 when the task's source is already stored (another run got there first).
    """
    with Session(engine) as session:
        source_id = crud.claim_source(
            session=session, kind="computation", sha256=task_hash(task),
            description=f"{result.calculator} bulk properties of fcc {result.element}",
            details={"spec": task_spec(task), "lattice_constant": result.lattice_constant,
                     "energy_per_atom": result.energy_per_atom, "details": result.details},
        )
        if source_id is None:
            return 0
        material_id = crud.get_or_create_material(session=session, formula=result.element, prototype="fcc")
        method_id = get_method_id(session, result.method)
        config_id = _configuration_id(session, result.atoms, source_id, job_run_id, method_id)
        defs = crud.definitions(session=session)
        rows = [
            dict(material_id=material_id, method_id=method_id, definition_id=defs[_VOCABULARY_NAME.get(n, n)].id,
                 value=value, source_id=source_id, job_run_id=job_run_id, configuration_id=config_id,
                 details={"stacking_fault_relaxation": result.stacking_fault_relaxation} if n == "stacking_fault_energy" else {})
            for n, (value, _unit) in result.properties().items() if _VOCABULARY_NAME.get(n, n) in defs
        ]
        stored = crud.add_bulk_properties(session=session, rows=rows)
        session.commit()
        return stored


def store_surface_result(engine: Engine, task: SurfaceTask, result: SurfaceResult, *, job_run_id: int) -> int:
    """Store one surface result (γ, τ_ij, S_ij, relaxed slab) in one transaction; return values stored."""
    with Session(engine) as session:
        source_id = crud.claim_source(
            session=session, kind="computation", sha256=task_hash(task),
            description=f"{result.calculator} surface {result.miller} of fcc {result.element}",
            details={"spec": task_spec(task)},
        )
        if source_id is None:
            return 0
        material_id = crud.get_or_create_material(session=session, formula=result.element, prototype="fcc")
        surface_id = crud.get_or_create_surface(session=session, material_id=material_id, orientation=from_miller(*result.miller))
        method_id = get_method_id(session, result.method)
        config_id = _configuration_id(session, result.atoms, source_id, job_run_id, method_id)
        defs = crud.definitions(session=session)
        details = {"n_layers": result.n_layers, "n_atoms": result.n_atoms, "thickness_angstrom": result.thickness,
                   "converged": result.converged, "frame": result.frame, "convergence": result.convergence}
        values = dict(result.properties())
        if result.s11 is not None and result.s22 is not None:
            values["surface_stiffness"] = ((result.s11 + result.s22) / 2, "N/m")
        rows = [
            dict(surface_id=surface_id, method_id=method_id, definition_id=defs[_VOCABULARY_NAME.get(n, n)].id,
                 value=value, source_id=source_id, job_run_id=job_run_id, configuration_id=config_id, details=details)
            for n, (value, _unit) in values.items()
        ]
        stored = crud.add_surface_properties(session=session, rows=rows)
        session.commit()
        return stored


def compute_and_store(
    engine: Engine,
    *,
    elements: Sequence[str],
    calculator: str,
    max_index: int,
    workers: int = 2,
    parameters: dict[str, Any] | None = None,
    millers: Sequence[Sequence[int]] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> ComputeSummary:
    """Compute bulk and surface properties of ``elements`` and store each task as it finishes.

    Tasks whose source is already stored are not recomputed (bulk inputs of their surfaces are
    read back from the stored bulk source).  Recorded as one ``job_run`` (kind
    ``ingest_compute``); a failed task is listed in the run's summary and the run is marked
    failed, while every task that succeeded stays stored.  ``progress(label, done, skipped)``
    is called after each stored task.

    Raises
    ------
    matstore.ingest.compute.calculators.CalculatorSetupError
        If the calculator cannot be set up or does not support an element.
    """
    backend = get_backend(calculator, **(parameters or {}))
    # Methods come from the backend, not from results: a run that finds every task stored
    # runs none and must still name the methods its data belong to.
    summary = ComputeSummary(calculator, methods=sorted({backend.method_record(e)["name"] for e in elements}))
    params = {"elements": list(elements), "calculator": calculator, "max_index": max_index,
              "workers": workers, "parameters": parameters or {}}
    with crud.job_run(engine=engine, kind="ingest_compute", parameters=params) as run:
        def on_result(task: BulkTask | SurfaceTask, result: Any) -> None:
            store = store_bulk_result if isinstance(task, BulkTask) else store_surface_result
            stored = store(engine, task, result, job_run_id=run.id)
            summary.tasks_run += 1
            summary.values_stored += stored
            summary.configurations_stored += 1 if stored and result.atoms is not None else 0
            if progress:
                progress(f"{task.element} {'bulk' if isinstance(task, BulkTask) else task.miller}", summary.tasks_run,
                         summary.tasks_skipped)

        results = compute_tasks(
            list(elements), calculator, max_index, workers=workers, parameters=parameters, millers=millers,
            on_result=on_result, stored_bulk=lambda task: _stored_bulk_inputs(engine, task, summary),
            skip=lambda task: _already_stored(engine, task, summary),
        )
        summary.failures = [dict(element=r.element, **f.__dict__) for r in results for f in r.failures]
        run.summary.update(tasks_run=summary.tasks_run, tasks_skipped=summary.tasks_skipped,
                           values_stored=summary.values_stored, failures=summary.failures, methods=summary.methods)
        if summary.failures:
            run.status = "failed"
    return summary


def _stored_bulk_inputs(engine: Engine, task: BulkTask, summary: ComputeSummary) -> tuple[float, float] | None:
    """(lattice constant, energy per atom) of a stored bulk task, read from its source."""
    with Session(engine) as session:
        source = crud.find_source(session=session, sha256=task_hash(task))
    if source is None:
        return None
    summary.tasks_skipped += 1
    return float(source.details["lattice_constant"]), float(source.details["energy_per_atom"])


def _already_stored(engine: Engine, task: BulkTask | SurfaceTask, summary: ComputeSummary) -> bool:
    stored = bool(stored_task_hashes(engine, [task_hash(task)]))
    if stored:
        summary.tasks_skipped += 1
    return stored


def compute_and_store_chunk(
    element: str,
    calculator: str,
    miller: Sequence[int] | None = None,
    *,
    engine: Engine | None = None,
    parameters: dict[str, Any] | None = None,
) -> ComputeSummary:
    """One queue-sized chunk: the bulk task of ``element`` and, if given, one surface ``miller``.

    The bulk result is reused from the store when present, so chunks of one element that run
    on different workers compute the bulk reference at most once each and store it once.
    ``miller=None`` computes (or confirms) the bulk task only.
    """
    from matstore.db import get_engine

    return compute_and_store(
        engine or get_engine(), elements=[element], calculator=calculator, max_index=1, workers=0,
        parameters=parameters, millers=[] if miller is None else [tuple(int(i) for i in miller)],
    )
