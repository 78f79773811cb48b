"""The EQL÷ engine recovers known laws, is reproducible, and its fronts pass the pole checks.

Synthetic laws (noise-free, so a recovered law is exact up to float64 least squares):

- ``y = 2.5·sin(x0) + x1·x2`` on [-2, 2]³ — the example of Martius & Lampert
  (arXiv:1610.02995) mixing a periodic unit with a product;
- ``y = 3·x0 / (x1 + 0.5)`` with x1 ∈ [1, 3]: a ratio whose pole (x1 = −0.5) lies outside
  the domain, the case of EQL÷ (Sahoo, Lampert & Martius, arXiv:1806.07259).

Small networks and few epochs keep the file well under a minute on two cores.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sympy as sp

from matstore.models.engines import get_engine
from matstore.models.engines.base import evaluate_expr
from matstore.models.engines.eql import EQLEngine, linearize_small_arguments
from matstore.models.validation import check_finite_and_bounded

FAST = {"epochs": 1000, "units": 2, "l1_strengths": (1e-3, 1e-2), "n_restarts": 2, "time_limit": 60.0}


def _best(front, max_complexity):
    return min((c for c in front if c.complexity <= max_complexity), key=lambda c: c.loss)


@pytest.fixture(scope="module")
def sine_product():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.uniform(-2, 2, (200, 3)), columns=["x0", "x1", "x2"])
    y = 2.5 * np.sin(X["x0"]) + X["x1"] * X["x2"]
    return X, y.to_numpy(), EQLEngine(**FAST, random_state=0).fit(X, y)


@pytest.fixture(scope="module")
def ratio():
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"x0": rng.uniform(-1, 2, 150), "x1": rng.uniform(1, 3, 150)})
    y = 3 * X["x0"] / (X["x1"] + 0.5)
    return X, y.to_numpy(), EQLEngine(**FAST, operators=("identity", "sin", "multiply"), random_state=0).fit(X, y)


def test_recovers_sine_plus_product(sine_product):
    X, _, eng = sine_product
    best = _best(eng.pareto_front_, 15)
    assert {str(s) for s in best.expr.free_symbols} == {"x0", "x1", "x2"}
    rng = np.random.default_rng(5)
    Xt = pd.DataFrame(rng.uniform(-2.5, 2.5, (100, 3)), columns=["x0", "x1", "x2"])  # slightly beyond the data
    truth = 2.5 * np.sin(Xt["x0"]) + Xt["x1"] * Xt["x2"]
    np.testing.assert_allclose(evaluate_expr(best.expr, Xt), truth, atol=1e-6)
    assert best.expr.has(sp.sin)


def test_recovers_ratio_with_pole_outside_the_domain(ratio):
    X, _, eng = ratio
    best = _best(eng.pareto_front_, 15)
    Xt = pd.DataFrame({"x0": np.linspace(-1.5, 2.5, 50), "x1": np.linspace(0.8, 3.5, 50)})  # beyond the data
    np.testing.assert_allclose(evaluate_expr(best.expr, Xt), 3 * Xt["x0"] / (Xt["x1"] + 0.5), rtol=1e-6, atol=1e-8)
    # the denominator's root is the true pole x1 = -0.5, outside the data
    (den,) = [d for d in sp.fraction(sp.together(best.expr))[1:]]
    (root,) = sp.solve(den, sp.Symbol("x1"))
    assert float(root) == pytest.approx(-0.5, abs=1e-6)


def test_fronts_pass_the_pole_and_finiteness_checks(sine_product, ratio):
    for X, _, eng in (sine_product, ratio):
        assert [c.complexity for c in eng.pareto_front_] == sorted({c.complexity for c in eng.pareto_front_})
        for cand in eng.pareto_front_:
            report = check_finite_and_bounded(cand.expr, X)
            assert report.ok, (cand.expr, report.reason)


def test_deterministic_under_a_seed(sine_product):
    X, y, eng = sine_product
    again = EQLEngine(**FAST, random_state=0).fit(X, y)
    assert [sp.srepr(c.expr) for c in again.pareto_front_] == [sp.srepr(c.expr) for c in eng.pareto_front_]
    assert not again.budget_exhausted_


def test_registered_and_parameters_checked():
    eng = get_engine("eql", units=3, random_state=1)
    assert isinstance(eng, EQLEngine) and eng.get_params()["units"] == 3
    with pytest.raises(TypeError, match="no parameter"):
        get_engine("eql", hidden=3)
    X = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(ValueError, match="operators"):
        EQLEngine(operators=("identity", "tanh")).fit(X, [1.0, 2.0, 3.0, 4.0])


def test_time_limit_is_respected():
    rng = np.random.default_rng(2)
    X = pd.DataFrame(rng.uniform(-1, 1, (300, 4)), columns=list("abcd"))
    y = X["a"] * X["b"] + np.cos(X["c"])
    eng = EQLEngine(epochs=200000, units=2, l1_strengths=(1e-3,), n_restarts=1, time_limit=6.0).fit(X, y)
    assert eng.budget_exhausted_
    assert eng.fit_seconds_ < 6.0 * 1.5 + 3.0  # compilation of a new shape is not interruptible


def test_small_sine_arguments_become_linear():
    X = pd.DataFrame({"x": np.linspace(0.0, 2.0, 20)})
    x = sp.Symbol("x")
    out = linearize_small_arguments(3.0 * sp.sin(0.01 * x) + sp.cos(2.0 * x), X)
    assert not out.has(sp.sin) and out.has(sp.cos)
    assert float(out.diff(x).subs(x, 0.0).evalf()) == pytest.approx(0.03, rel=1e-3)
