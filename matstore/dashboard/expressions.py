"""Stored SymPy expressions for the dashboard: a re-export of :mod:`matstore.models.expressions`.

One parser (an :mod:`ast` allow-list, never ``eval``), one evaluator and one notion of an
orientation function serve models, ``matstore predict`` and the dashboard alike.
"""

from matstore.models.expressions import (
    ExpressionError,
    OrientationFunction,
    orientation_function,
    parse_srepr,
    to_latex,
    triangle_normals,
)
from matstore.models.expressions import evaluate_point as evaluate

__all__ = ["ExpressionError", "OrientationFunction", "evaluate", "orientation_function", "parse_srepr", "to_latex",
           "triangle_normals"]
