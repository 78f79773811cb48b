"""Stored equations are parsed within bounds: a crafted ``srepr`` cannot hang or run code in a read path.

A least-privilege audit planted, as a writer login, ``Pow(Integer(10), Integer(1000000000))``
in an equation version: ``matstore predict`` and ``models transfer`` (reader paths) were
killed after 30 s at 300 MB and growing.  A ``Dummy`` whose name held Python code was
written by ``lambdify`` into generated source and ran.  :func:`parse_srepr` now refuses both.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import sympy as sp

from matstore.models.expressions import ExpressionError, evaluate, parse_srepr


def test_fitted_equations_round_trip():
    expr = sp.sympify("3.99*cohesive_energy/lattice_constant**2 + sqrt(c44)*n_x**(1/3) - 2.5e-7/(d1*n_x**3) "
                      "+ Abs(c12)**2.5 + exp(-d2/3.1)")
    assert parse_srepr(sp.srepr(expr)) == expr
    x = sp.Symbol("x", positive=True)
    assert parse_srepr(sp.srepr(x**2)) == x**2  # assumptions are kept


@pytest.mark.parametrize(("srepr", "message"), [
    ("Add(Symbol('c12'), Pow(Integer(10), Integer(1000000000)))", "exponent 1000000000 is beyond the bound 1000"),
    ("Pow(Symbol('x'), Rational(1, 100000))", "exponent 1/100000 is beyond the bound 1000"),
    ("Float('1.5', 100000000)", "Float precision 100000000 is beyond the bound"),
    ("Float('1.5', precision=100000000)", "Float precision 100000000 is beyond the bound"),
    ("Integer(" + "9" * 100 + ")", "a literal of more than 64 characters"),
    ("Add(Symbol('c12'), Dummy(\"0*__import__('os').system('true')+0*c12\"))", "disallowed element"),
    ("Symbol(\"__import__('os')\")", "is not an identifier"),
    ("Add(" + "Symbol('x'), " * 20_000 + ")", "longer than 100000 characters"),
])
def test_crafted_expressions_are_refused_at_once(srepr, message):
    start = time.perf_counter()
    with pytest.raises(ExpressionError, match=message.replace("(", r"\(")):
        parse_srepr(srepr)
    assert time.perf_counter() - start < 1.0


def test_evaluate_refuses_a_crafted_string_before_compiling(tmp_path):
    marker = tmp_path / "ran"
    payload = f"Add(Symbol('c12'), Dummy(\"0*__import__('pathlib').Path('{marker}').touch()+0*c12\"))"
    with pytest.raises(ExpressionError):
        evaluate(payload, {"c12": np.array([1.0])})
    assert not marker.exists()
