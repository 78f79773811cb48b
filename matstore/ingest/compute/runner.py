"""Split ``matstore ingest compute`` into independent, picklable tasks and run them.

One :class:`BulkTask` per element and one :class:`SurfaceTask` per element × (hkl); a
surface task carries the lattice constant and bulk energy per atom of its element's bulk
result as plain inputs, so it can run in any process.  The task functions
(:func:`run_bulk_task`, :func:`run_surface_task`) are top level and their inputs/outputs are
dataclasses of plain values (plus picklable :class:`ase.Atoms` with frozen results), which is
what :class:`concurrent.futures.ProcessPoolExecutor` needs.  No database code lives here:
:func:`task_spec`/:func:`task_hash` give the canonical description and idempotency hash that
the storing layer uses.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from typing import Any

from matstore.hashing import sha256_json
from matstore.orientation import distinct_miller_indices

from .bulk import BulkResult, BulkTolerances, compute_bulk
from .calculators import CalculationError, CalculatorSetupError, get_backend
from .surfaces import SurfaceResult, SurfaceTolerances, compute_surface

logger = logging.getLogger(__name__)

#: Version of the numerical methods; bump whenever results could change.
CODE_VERSION = "matstore.ingest.compute/1"


@dataclass(frozen=True)
class BulkTask:
    """Bulk properties of one element (input of :func:`run_bulk_task`).

    Attributes
    ----------
    element : str
    calculator : str
        Backend registry name (:func:`~.calculators.get_backend`).
    parameters : tuple of (str, value)
        Backend parameter overrides (sorted items, hashable).
    tolerances : BulkTolerances
    vacancy : bool
        Also compute the vacancy formation energy.
    """

    element: str
    calculator: str
    parameters: tuple[tuple[str, Any], ...] = ()
    tolerances: BulkTolerances = field(default_factory=BulkTolerances)
    vacancy: bool = False


@dataclass(frozen=True)
class SurfaceTask:
    """One (hkl) surface of one element (input of :func:`run_surface_task`).

    Attributes
    ----------
    element, calculator, parameters
        As in :class:`BulkTask`.
    miller : tuple of int
        (h, k, l).
    lattice_constant : float
        Bulk lattice constant of the same backend (Å).
    bulk_energy_per_atom : float
        Bulk energy per atom of the same backend (eV).
    tolerances : SurfaceTolerances
    """

    element: str
    calculator: str
    miller: tuple[int, int, int]
    lattice_constant: float
    bulk_energy_per_atom: float
    parameters: tuple[tuple[str, Any], ...] = ()
    tolerances: SurfaceTolerances = field(default_factory=SurfaceTolerances)


@dataclass
class TaskFailure:
    """A task that raised: its spec, the exception type name and message."""

    spec: dict[str, Any]
    error: str
    message: str


@dataclass
class ElementResult:
    """Bulk and surface results of one element with one backend.

    Attributes
    ----------
    element, calculator : str
    bulk : BulkResult or None
        ``None`` if the bulk task failed (see ``failures``).
    surfaces : list of SurfaceResult
        Sorted as :func:`matstore.orientation.distinct_miller_indices`.
    failures : list of TaskFailure
    timings : dict
        Wall-clock seconds per task label (``bulk``, ``hkl:1,1,0`` ...).
    """

    element: str
    calculator: str
    bulk: BulkResult | None = None
    surfaces: list[SurfaceResult] = field(default_factory=list)
    failures: list[TaskFailure] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def _jsonable(value: Any) -> Any:
    """Tuples → lists, floats as ``repr``-exact floats: a canonical JSON-ready value."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def task_spec(task: BulkTask | SurfaceTask) -> dict[str, Any]:
    """Canonical JSON-serialisable description of a task (for idempotency hashes).

    Contains the task kind, element, calculator name and parameters, the potential file
    name and SHA-256 (``None`` for built-in calculators), the Miller index and bulk inputs of
    surface tasks, all tolerances and :data:`CODE_VERSION`.

    Raises
    ------
    CalculatorSetupError
        If the backend is unknown or its potential file is missing.
    """
    backend = get_backend(task.calculator, **dict(task.parameters))
    record = backend.method_record(task.element)
    spec: dict[str, Any] = {
        "kind": "bulk" if isinstance(task, BulkTask) else "surface",
        "element": task.element,
        "calculator": backend.name,
        "method": record["name"],
        "parameters": record["parameters"],
        "potential": record["potential"],
        "potential_sha256": record["potential_sha256"],
        "tolerances": asdict(task.tolerances),
        "code_version": CODE_VERSION,
    }
    if isinstance(task, BulkTask):
        spec["vacancy"] = task.vacancy
    else:
        spec["miller"] = list(task.miller)
        spec["inputs"] = {
            "lattice_constant": float(task.lattice_constant),
            "bulk_energy_per_atom": float(task.bulk_energy_per_atom),
        }
    return _jsonable(spec)


def task_hash(task: BulkTask | SurfaceTask) -> str:
    """SHA-256 of the canonical JSON of :func:`task_spec` (sorted keys, no spaces)."""
    return sha256_json(task_spec(task))


def run_bulk_task(task: BulkTask) -> BulkResult:
    """Run one bulk task (top level, picklable); see :func:`~.bulk.compute_bulk`."""
    backend = get_backend(task.calculator, **dict(task.parameters))
    return compute_bulk(task.element, backend, tolerances=task.tolerances, vacancy=task.vacancy)


def run_surface_task(task: SurfaceTask) -> SurfaceResult:
    """Run one surface task (top level, picklable); see :func:`~.surfaces.compute_surface`."""
    backend = get_backend(task.calculator, **dict(task.parameters))
    return compute_surface(
        task.element,
        backend,
        task.miller,
        task.lattice_constant,
        task.bulk_energy_per_atom,
        tolerances=task.tolerances,
    )


def surface_tasks(
    bulk: BulkResult,
    calculator: str,
    millers: Iterable[Sequence[int]],
    *,
    parameters: dict[str, Any] | None = None,
    tolerances: SurfaceTolerances | None = None,
) -> list[SurfaceTask]:
    """Surface tasks of one element, fed by its bulk result."""
    return [
        SurfaceTask(
            element=bulk.element,
            calculator=calculator,
            miller=tuple(int(i) for i in m),  # type: ignore[arg-type]
            lattice_constant=bulk.lattice_constant,
            bulk_energy_per_atom=bulk.energy_per_atom,
            parameters=tuple(sorted((parameters or {}).items())),
            tolerances=tolerances or SurfaceTolerances(),
        )
        for m in millers
    ]


def _timed(func: Callable[[Any], Any], task: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    return func(task), time.perf_counter() - start


def _label(task: BulkTask | SurfaceTask) -> str:
    return "bulk" if isinstance(task, BulkTask) else "hkl:" + ",".join(map(str, task.miller))


def compute_element(
    element: str,
    calculator: str,
    max_index: int,
    *,
    parameters: dict[str, Any] | None = None,
    bulk_tolerances: BulkTolerances | None = None,
    surface_tolerances: SurfaceTolerances | None = None,
    vacancy: bool = False,
    millers: Iterable[Sequence[int]] | None = None,
) -> ElementResult:
    """Bulk and all surfaces up to ``max_index`` of one element, serially in this process.

    Parameters
    ----------
    element : str
    calculator : str
        Backend registry name.
    max_index : int
        Largest Miller index (:func:`matstore.orientation.distinct_miller_indices`).
    parameters : dict, optional
        Backend parameter overrides.
    bulk_tolerances, surface_tolerances : optional
        Numerical settings.
    vacancy : bool
        Also compute the vacancy formation energy.
    millers : iterable of (h, k, l), optional
        Explicit list instead of ``max_index``.

    Returns
    -------
    ElementResult

    Raises
    ------
    CalculatorSetupError, CalculationError
        Propagated from the bulk or surface computation.
    """
    results = compute_tasks(
        [element], calculator, max_index, workers=0, parameters=parameters,
        bulk_tolerances=bulk_tolerances, surface_tolerances=surface_tolerances,
        vacancy=vacancy, millers=millers, raise_errors=True,
    )
    return results[0]


def compute_tasks(
    elements: Sequence[str],
    calculator: str,
    max_index: int,
    *,
    workers: int = 2,
    parameters: dict[str, Any] | None = None,
    bulk_tolerances: BulkTolerances | None = None,
    surface_tolerances: SurfaceTolerances | None = None,
    vacancy: bool = False,
    millers: Iterable[Sequence[int]] | None = None,
    raise_errors: bool = False,
    on_result: Callable[[BulkTask | SurfaceTask, Any], None] | None = None,
    stored_bulk: Callable[[BulkTask], tuple[float, float] | None] | None = None,
    skip: Callable[[SurfaceTask], bool] | None = None,
) -> list[ElementResult]:
    """Run the bulk task of every element, then its surface tasks, on ``workers`` processes.

    Surface tasks of an element are submitted as soon as its bulk result arrives, so the
    pool stays busy.  Workers use the ``spawn`` start method (LAMMPS/MPI state must not be
    forked), so a script calling this with ``workers > 0`` needs the usual
    ``if __name__ == "__main__":`` guard.  ``workers=0`` runs everything in this process.
    Task failures (:class:`CalculationError`, :class:`CalculatorSetupError`) are recorded
    per element in ``failures`` unless ``raise_errors``; an element whose bulk task fails
    gets no surface tasks.

    Parameters
    ----------
    elements : sequence of str
    calculator : str
        Backend registry name.
    max_index : int
        Largest Miller index of the surfaces.
    workers : int
        Worker processes (0: serial, in-process).
    parameters, bulk_tolerances, surface_tolerances, vacancy, millers
        As in :func:`compute_element`.
    raise_errors : bool
        Re-raise the first task failure instead of recording it in ``failures``.
    on_result : callable, optional
        ``on_result(task, result)`` called in this process as each task finishes (e.g. to
        store it right away).
    stored_bulk : callable, optional
        ``stored_bulk(task)`` returns ``(lattice_constant, energy_per_atom)`` of a bulk task
        whose result is already stored, else ``None``; a stored bulk task is not rerun and
        its surfaces are built from these inputs (``ElementResult.bulk`` stays ``None``).
    skip : callable, optional
        ``skip(task)`` is true for surface tasks already stored; they are not run.

    Returns
    -------
    list of ElementResult
        In the order of ``elements``; surfaces sorted by Miller index.

    Raises
    ------
    CalculatorSetupError
        Before any work, if the backend is unknown or does not support an element.
    """
    backend = get_backend(calculator, **(parameters or {}))
    for element in elements:
        backend.check_element(element)
    hkls = [tuple(m) for m in millers] if millers is not None else distinct_miller_indices(max_index)
    params = tuple(sorted((parameters or {}).items()))
    out = {el: ElementResult(el, backend.label(el)) for el in elements}
    bulk_tasks = [BulkTask(el, calculator, params, bulk_tolerances or BulkTolerances(), vacancy)
                  for el in elements]

    def follow_ups(element: str, lattice_constant: float, energy_per_atom: float) -> list[SurfaceTask]:
        tasks = [
            SurfaceTask(element, calculator, tuple(int(i) for i in m), lattice_constant, energy_per_atom,  # type: ignore[arg-type]
                        params, surface_tolerances or SurfaceTolerances())
            for m in hkls
        ]
        return [t for t in tasks if skip is None or not skip(t)]

    initial: list[Any] = []
    for task in bulk_tasks:
        cached = stored_bulk(task) if stored_bulk is not None else None
        initial.extend(follow_ups(task.element, *cached) if cached else [task])

    def handle(task, outcome, seconds, error):
        result = out[task.element]
        result.timings[_label(task)] = seconds
        if error is not None:
            if raise_errors:
                raise error
            result.failures.append(TaskFailure(task_spec(task), type(error).__name__, str(error)))
            logger.error("task %s %s failed: %s", task.element, _label(task), error)
            return []
        if on_result is not None:
            on_result(task, outcome)
        if isinstance(task, BulkTask):
            result.bulk = outcome
            return follow_ups(task.element, outcome.lattice_constant, outcome.energy_per_atom)
        result.surfaces.append(outcome)
        return []

    if workers <= 0:
        queue: list[Any] = list(initial)
        while queue:
            task = queue.pop(0)
            func = run_bulk_task if isinstance(task, BulkTask) else run_surface_task
            start = time.perf_counter()
            try:
                outcome, error = func(task), None
            except (CalculationError, CalculatorSetupError) as exc:
                outcome, error = None, exc
            queue.extend(handle(task, outcome, time.perf_counter() - start, error))
    else:
        _run_pool(initial, workers, handle)
    for result in out.values():
        result.surfaces.sort(key=lambda s: hkls.index(s.miller) if s.miller in hkls else 0)
    return [out[el] for el in elements]


def _run_pool(first_tasks: list[Any], workers: int, handle) -> None:
    """Drive the process pool: submit, collect, submit follow-up tasks."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: dict[Future, Any] = {}

        def submit(task):
            func = run_bulk_task if isinstance(task, BulkTask) else run_surface_task
            pending[pool.submit(_timed, func, task)] = task

        for task in first_tasks:
            submit(task)
        while pending:
            future = next(as_completed(pending))
            task = pending.pop(future)
            try:
                (outcome, seconds), error = future.result(), None
            except (CalculationError, CalculatorSetupError) as exc:
                outcome, seconds, error = None, float("nan"), exc
            for follow_up in handle(task, outcome, seconds, error):
                submit(follow_up)


__all__ = [
    "BulkTask",
    "CODE_VERSION",
    "ElementResult",
    "SurfaceTask",
    "TaskFailure",
    "compute_element",
    "compute_tasks",
    "run_bulk_task",
    "run_surface_task",
    "surface_tasks",
    "task_hash",
    "task_spec",
]
