"""Symbolic-regression engines behind ``matstore fit``.

``get_engine(name, **params)`` returns an unfitted engine: ``"sparse"`` (SISSO-like sparse
regression over a feature library, deterministic, always available), ``"operon"``
(pyoperon genetic programming) or ``"pysr"`` (PySR; needs the ``pysr`` package and a Julia,
else :class:`EngineSetupError`) or ``"eql"`` (the equation learner EQL÷ on JAX + optax).  Engine modules are imported on demand.
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

register_engine("eql", "matstore.models.engines.eql:EQLEngine")

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
