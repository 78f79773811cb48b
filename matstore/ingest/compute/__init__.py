"""Pure-physics compute layer of ``matstore ingest compute`` (no database code).

- :mod:`.calculators` — one backend interface over ASE EMT, ASAP3 EMT, LAMMPS EAM (u3) and
  entry-point plug-ins; typed :class:`CalculatorSetupError` / :class:`CalculationError`.
- :mod:`.bulk` — FCC lattice constant, cohesive energy, elastic constants, stacking-fault
  and vacancy energies (:func:`compute_bulk` → :class:`BulkResult`).
- :mod:`.surfaces` — surface energy, stress and stiffness of (hkl) slabs with thickness
  convergence (:func:`compute_surface` → :class:`SurfaceResult`).
- :mod:`.runner` — independent picklable tasks, a process-pool driver and canonical task
  specifications for idempotency hashes.
"""

from .bulk import BulkResult, BulkTolerances, compute_bulk
from .calculators import (
    CalculationError,
    CalculatorBackend,
    CalculatorSetupError,
    get_backend,
    known_backends,
)
from .runner import (
    CODE_VERSION,
    BulkTask,
    ElementResult,
    SurfaceTask,
    compute_element,
    compute_tasks,
    run_bulk_task,
    run_surface_task,
    task_hash,
    task_spec,
)
from .surfaces import SurfaceResult, SurfaceTolerances, compute_surface

__all__ = [
    "CODE_VERSION",
    "BulkResult",
    "BulkTask",
    "BulkTolerances",
    "CalculationError",
    "CalculatorBackend",
    "CalculatorSetupError",
    "ElementResult",
    "SurfaceResult",
    "SurfaceTask",
    "SurfaceTolerances",
    "compute_bulk",
    "compute_element",
    "compute_surface",
    "compute_tasks",
    "get_backend",
    "known_backends",
    "run_bulk_task",
    "run_surface_task",
    "task_hash",
    "task_spec",
]
