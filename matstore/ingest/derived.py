"""Derived table columns: arithmetic on column names, parsed and evaluated without ``eval``.

A mapping's ``derived:`` section computes new columns before the mapping is applied, e.g.
``Ec_eV: {expr: "-CHE_eV"}`` (flip a sign) or ``C11_GPa: {expr: "K_GPa + 4*Gprime_GPa/3"}``
(cubic C11 from the bulk modulus K = (C11 + 2 C12)/3 and G′ = (C11 − C12)/2, so that
C11 = K + 4G′/3 and C12 = K − 2G′/3; J. F. Nye, *Physical Properties of Crystals*, 1985).

The expression is parsed by Python's :mod:`ast` *parser* only; the tree is then walked here
over an allow-list: numbers, column names, ``+ - * / **``, unary ``+ -``, brackets and the
functions in :data:`FUNCTIONS`.  Nothing is ever evaluated by Python (no ``eval``, no
attribute access, no calls but the allow-listed numpy functions).  Column names that are not
identifiers are written in backticks: ``\u0060K (GPa)\u0060 * 2``.  Blank input cells give blank
(missing) results; a division by zero is an error naming the row.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

#: Functions an expression may call (elementwise, on float arrays).
FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "abs": np.abs, "sqrt": np.sqrt, "exp": np.exp, "log": np.log, "log10": np.log10,
    "sin": np.sin, "cos": np.cos, "tan": np.tan, "radians": np.radians, "degrees": np.degrees,
}
_BINARY = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Pow: np.power}
_UNARY = {ast.USub: np.negative, ast.UAdd: np.positive}
_BACKTICK = re.compile(r"`([^`]+)`")
MAX_LENGTH = 500
MAX_NODES = 200


class ExpressionError(ValueError):
    """An expression is not allowed arithmetic, names an unknown column or divides by zero.

    ``row`` is the 0-based row index of a division by zero, else ``None``.
    """

    def __init__(self, reason: str, row: int | None = None) -> None:
        super().__init__(reason)
        self.row = row


@dataclass(frozen=True)
class Expression:
    """A parsed derived-column expression.

    Attributes
    ----------
    text: the expression as written
    columns: table columns it reads, in order of first use
    """

    text: str
    tree: ast.expr
    names: Mapping[str, str]
    columns: tuple[str, ...]

    def evaluate(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """Evaluate on columns of equal length (float arrays, NaN = blank); shape (n_rows,).

        Raises
        ------
        ExpressionError
            On a division by zero (with the first offending row) or a missing column.
        """
        missing = [c for c in self.columns if c not in values]
        if missing:
            raise ExpressionError(f"expression {self.text!r} names column {missing[0]!r}, which is not in the table")
        with np.errstate(all="ignore"):
            return np.asarray(self._eval(self.tree, values), dtype=float)

    def _eval(self, node: ast.expr, values: Mapping[str, np.ndarray]) -> np.ndarray | float:
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Name):
            return values[self.names[node.id]]
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](self._eval(node.operand, values))
        if isinstance(node, ast.Call):
            return FUNCTIONS[node.func.id](self._eval(node.args[0], values))  # type: ignore[attr-defined]
        left, right = self._eval(node.left, values), self._eval(node.right, values)  # type: ignore[attr-defined]
        if isinstance(node.op, ast.Div):  # type: ignore[attr-defined]
            zero = np.broadcast_to((np.asarray(right) == 0) & np.isfinite(left), np.shape(np.asarray(left) * right))
            if zero.any():
                raise ExpressionError(f"division by zero in {self.text!r}", row=int(np.flatnonzero(zero)[0]) if zero.ndim else 0)
            return np.divide(left, right)
        return _BINARY[type(node.op)](left, right)  # type: ignore[attr-defined]


def parse_expression(text: str) -> Expression:
    """Parse an arithmetic expression on column names (see the module docstring).

    Raises
    ------
    ExpressionError
        If the text is not allowed arithmetic (any other syntax, attribute access, calls
        to other functions, strings, comparisons, ...), too long or too deep.
    """
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("expr must be a non-empty text")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expr is longer than {MAX_LENGTH} characters")
    names: dict[str, str] = {}

    def placeholder(match: re.Match[str]) -> str:
        key = f"_col{len(names)}_"
        names[key] = match.group(1)
        return key

    source = _BACKTICK.sub(placeholder, text.strip())
    try:
        tree = ast.parse(source, mode="eval").body
    except SyntaxError as exc:
        raise ExpressionError(f"expr {text!r} is not arithmetic on column names ({exc.msg})") from None
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        raise ExpressionError(f"expr {text!r} has more than {MAX_NODES} terms")
    columns: list[str] = []
    for node in nodes:
        _check_node(node, text)
        if isinstance(node, ast.Name) and not _is_function_name(node, tree):
            names.setdefault(node.id, node.id)
            columns.append(names[node.id])
    return Expression(text, tree, names, tuple(dict.fromkeys(columns)))


def _is_function_name(name: ast.Name, tree: ast.expr) -> bool:
    return any(isinstance(n, ast.Call) and n.func is name for n in ast.walk(tree))


def _check_node(node: ast.AST, text: str) -> None:
    allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Name, ast.Load, ast.Constant, ast.Call,
               *_BINARY, ast.Div, *_UNARY)
    if not isinstance(node, allowed):
        raise ExpressionError(f"expr {text!r}: {type(node).__name__} is not allowed (only numbers, column names, + - * / ** and {', '.join(FUNCTIONS)})")
    if isinstance(node, ast.Constant) and (isinstance(node.value, bool) or not isinstance(node.value, (int, float))):
        raise ExpressionError(f"expr {text!r}: only numeric constants are allowed, got {node.value!r}")
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or len(node.args) != 1 or node.keywords:
            raise ExpressionError(f"expr {text!r}: only one-argument calls of {', '.join(FUNCTIONS)} are allowed")


__all__ = ["FUNCTIONS", "Expression", "ExpressionError", "parse_expression"]
