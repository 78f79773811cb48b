"""Database-free fitting core of ``matstore fit``: closed-form equations from tables.

Public API
----------
- :func:`fit_equation` → :class:`FitResult`; :func:`predict` evaluates a stored ``srepr``.
- Engines: :func:`get_engine` (``"sparse"``, ``"operon"``, ``"pysr"``), :class:`SymbolicEngine`,
  :class:`Candidate`, :class:`EngineSetupError`, :class:`EngineFitError`, :func:`versions`.
- :func:`is_finite_and_bounded` / :func:`check_finite_and_bounded` (pole rejection).
- :func:`select` (criteria ``knee``, ``best``, ``within:X%``, ``min_loss``, ``max_complexity:N``).
- :func:`check_dimensions` (pint).
- :func:`fit_factorized`, :func:`orientation_descriptors`, :func:`add_orientation_descriptors`
  (y = C(bulk) · g(orientation)).
- :func:`canonical_hash`, :func:`expr_from_srepr`.

References
----------
.. [1] M. Cranmer, arXiv:2305.01582 (2023) — PySR.
.. [2] B. Burlacu, G. Kronberger, M. Kommenda, GECCO 2020, doi:10.1145/3377929.3398099 — Operon.
.. [3] R. Ouyang et al., Phys. Rev. Materials 2, 083802 (2018) — SISSO.
"""

from matstore.models.dimensions import DimensionCheck, check_dimensions
from matstore.models.engines import (
    Candidate,
    EngineFitError,
    EngineSetupError,
    SymbolicEngine,
    available_engines,
    expression_complexity,
    get_engine,
    versions,
)
from matstore.models.factorize import (
    FactorizationResult,
    PartFit,
    add_orientation_descriptors,
    fit_factorized,
    orientation_descriptors,
)
from matstore.models.fitting import (
    FitResult,
    canonical_hash,
    expr_from_srepr,
    fit_equation,
    predict,
)
from matstore.models.selection import select, select_valid
from matstore.models.validation import (
    ValidationReport,
    check_finite_and_bounded,
    is_finite_and_bounded,
)

__all__ = [
    "Candidate",
    "DimensionCheck",
    "EngineFitError",
    "EngineSetupError",
    "FactorizationResult",
    "FitResult",
    "PartFit",
    "SymbolicEngine",
    "ValidationReport",
    "add_orientation_descriptors",
    "available_engines",
    "canonical_hash",
    "check_dimensions",
    "check_finite_and_bounded",
    "expr_from_srepr",
    "expression_complexity",
    "fit_equation",
    "fit_factorized",
    "get_engine",
    "is_finite_and_bounded",
    "orientation_descriptors",
    "predict",
    "select",
    "select_valid",
    "versions",
]
