"""Stored SymPy expressions for the dashboard: a re-export of :mod:`matstore.models.expressions`.

One parser (an :mod:`ast` allow-list, never ``eval``), one evaluator and one typesetter serve
models, ``matstore predict`` and the dashboard alike.
"""

from matstore.models.expressions import (
    ExpressionError,
    parse_srepr,
    to_latex,
)
from matstore.models.expressions import evaluate_point as evaluate

__all__ = ["ExpressionError", "evaluate", "parse_srepr", "to_latex"]
