"""Symbolic-regression engines behind ``matstore fit``.

``get_engine(name, **params)`` returns an unfitted engine: ``"sparse"`` (SISSO-like sparse
regression over a feature library, deterministic, always available), ``"operon"``
(pyoperon genetic programming) or ``"pysr"`` (PySR; needs the ``pysr`` package and a Julia,
else :class:`EngineSetupError`).  Engine modules are imported on demand.
"""

from matstore.models.engines.base import (
    Candidate,
    EngineFitError,
    EngineSetupError,
    SymbolicEngine,
    available_engines,
    engine_class,
    expression_complexity,
    get_engine,
    register_engine,
    versions,
)

__all__ = [
    "Candidate",
    "EngineFitError",
    "EngineSetupError",
    "SymbolicEngine",
    "available_engines",
    "engine_class",
    "expression_complexity",
    "get_engine",
    "register_engine",
    "versions",
]
