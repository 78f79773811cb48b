"""Database-free fitting core of ``matstore fit``: closed-form equations from tables.

Public API
----------
- Estimators: :class:`EquationSearch`, :class:`FactorizedEquation`, :class:`SumOfProducts` (scikit-learn shape);
  :class:`FixedForm` (an equation's form, constants refitted) and :func:`make_cv` (the one
  CV policy).
- :func:`fit_equation` → :class:`FitResult` (with the honest ``report``: nested and
  fixed-form CV, per-fold forms, per-group errors, cross-conformal interval);
  :func:`make_estimator`; :func:`predict` evaluates a stored ``srepr``.
- Engines: :func:`get_engine` (``"sparse"``, ``"operon"``, ``"pysr"``), :class:`SymbolicEngine`,
  :class:`Candidate`, :class:`EngineSetupError`, :class:`EngineFitError`, :func:`versions`.
- :func:`is_finite_and_bounded` / :func:`check_finite_and_bounded` (pole rejection).
- :func:`select` (criteria ``knee``, ``best``, ``within:X%``, ``min_loss``, ``max_complexity:N``;
  ``stable`` and ``cv:…`` need data: :func:`select_valid`).
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

from matstore.models.cv import FixedForm, make_cv
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
from matstore.models.estimators import EquationSearch, FactorizedEquation, SumOfProducts
from matstore.models.expressions import ExpressionError, form_of, parse_srepr
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
    make_estimator,
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
    "EquationSearch",
    "ExpressionError",
    "FactorizedEquation",
    "FixedForm",
    "DimensionCheck",
    "EngineFitError",
    "EngineSetupError",
    "FactorizationResult",
    "FitResult",
    "PartFit",
    "SumOfProducts",
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
    "form_of",
    "make_cv",
    "make_estimator",
    "parse_srepr",
    "get_engine",
    "is_finite_and_bounded",
    "orientation_descriptors",
    "predict",
    "select",
    "select_valid",
    "versions",
]
