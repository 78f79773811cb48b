"""The information criterion of the ``stable`` vote: the largest penalty of the AICc, the SICc and the EBIC.

The AICc's penalty stays near 2 per constant however many rows there are, while a library
search tries hundreds of candidate terms: on a table of 150 rows one of them lowers the loss
by more than that by chance.  The small-sample Schwarz criterion (SICc) charges ln n per
constant, but with 6 rows less than the AICc.  These tests pin both penalties, show the
spurious term the AICc alone kept on a seeded mixing-enthalpy table, and the seven-metal
table where the SICc alone lost the fold agreement the AICc had.  The extended BIC (Chen & Chen,
Biometrika 95, 759 (2008)) charges for the C(p, k) supports of k terms a search over a library
of p terms could try: it removes the spurious term max(AICc, SICc) still kept on a
per-configuration table (8 metals × 6 configurations).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import sympy as sp

import matstore.models.selection as selection
from matstore.models.engines.base import Candidate
from matstore.models.fitting import make_estimator
from matstore.models.selection import (
    aicc,
    ebic,
    n_library_terms,
    select_aicc,
    select_stable,
    sicc,
    stricter_ic,
)


def test_sicc_values_by_hand():
    # n ln(MSE) + n k ln(n) / (n - k - 2), k fitted constants (McQuarrie & Tsai 1998).
    assert sicc(1.0, 7, 2) == pytest.approx(7 * 2 * math.log(7) / 3)  # 9.08
    assert sicc(0.5, 200, 3) == pytest.approx(200 * math.log(0.5) + 200 * 3 * math.log(200) / 195)
    assert sicc(1.0, 4, 2) == math.inf  # n - k - 2 = 0: too few rows
    # Few rows: close to the AICc (K = k + 1); many rows: more than twice its penalty per constant.
    assert sicc(1.0, 7, 2) < aicc(1.0, 7, 2)
    extra_sicc = sicc(1.0, 200, 3) - sicc(1.0, 200, 2)
    extra_aicc = aicc(1.0, 200, 3) - aicc(1.0, 200, 2)
    assert extra_aicc == pytest.approx(2.0, abs=0.1) and extra_sicc > 2.5 * extra_aicc
    # The vote's criterion takes the larger penalty: the AICc's with 7 rows, the SICc's with 200.
    assert stricter_ic(1.0, 7, 2) == aicc(1.0, 7, 2)
    assert stricter_ic(0.5, 200, 3) == sicc(0.5, 200, 3)


def _mixing_table(seed: int, rows: int = 150) -> tuple[pd.DataFrame, np.ndarray]:
    """ΔH = 1600·x(1 − x)·δ² kJ/mol + N(0, 0.1): x = k/16, δ uniform in 0.01–0.12."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"x": rng.integers(1, 16, rows) / 16.0, "delta": rng.uniform(0.01, 0.12, rows)})
    y = 1600 * X.x * (1 - X.x) * X.delta**2 + 0.1 * rng.standard_normal(rows)
    return X, y.to_numpy()


def _terms(expr) -> set[str]:
    return {str(term.as_coeff_Mul()[1]) for term in sp.Add.make_args(sp.expand(expr))}


@pytest.mark.parametrize("seed", [3, 6])
def test_stable_keeps_the_law_where_the_aicc_added_a_term(seed, monkeypatch):
    X, y = _mixing_table(seed)
    law = {"delta**2*x", "delta**2*x**2"}
    chosen = make_estimator(["x", "delta"], engine="sparse").fit(X, y)
    assert _terms(chosen.equation_) == law
    assert chosen.selection_.startswith("stable: max(AICc, SICc, EBIC) form chosen in")
    assert chosen.selection_.endswith("; EBIC over a library of 82 terms")
    coeffs = {str(m): c for c, m in (t.as_coeff_Mul() for t in sp.Add.make_args(sp.expand(chosen.equation_)))}
    assert coeffs["delta**2*x"] == pytest.approx(1600, rel=0.05)
    assert coeffs["delta**2*x**2"] == pytest.approx(-1600, rel=0.05)

    monkeypatch.setattr(selection, "STABLE_CRITERION", "AICc")
    before = make_estimator(["x", "delta"], engine="sparse").fit(X, y)
    assert law < _terms(before.equation_)  # the law's two terms and a spurious third
    assert before.selection_.startswith("stable: AICc form chosen in")


def test_seven_metals_keep_the_agreement_the_sicc_alone_lost(monkeypatch):
    """C = 9.25·E_c/a² with 12 % scatter, 7 metals (tests/test_estimators.py's table, seed 4):
    every leave-one-metal-out fold re-selects the full-data form; with the SICc alone (6
    training rows: its penalty is the weaker) none does."""
    from tests.test_estimators import _fold_agreement

    assert _fold_agreement("stable", seed=4) == 7
    monkeypatch.setattr(selection, "STABLE_CRITERION", "SICc")
    assert _fold_agreement("stable", seed=4) == 0


def test_ebic_values_by_hand():
    # n ln(MSE) + k ln(n) + 2γ ln C(p, j): k constants, j library terms out of p (Chen & Chen 2008).
    assert ebic(1.0, 48, 2, 2, 731) == pytest.approx(2 * math.log(48) + 2 * math.log(731 * 730 / 2))
    assert ebic(0.5, 48, 3, 2, 731, gamma=0.5) == pytest.approx(48 * math.log(0.5) + 3 * math.log(48)
                                                                + math.log(731 * 730 / 2))
    assert ebic(1.0, 48, 1, 0, 731) == pytest.approx(math.log(48))  # a constant: one support, no charge
    assert ebic(1.0, 3, 2, 2, 10) == math.inf  # n - k - 1 = 0
    # The third of 731 terms costs 2 ln(729/3) + ln 48 = 14.9, the SICc's 4.5 on 48 rows.
    third = ebic(1.0, 48, 3, 3, 731) - ebic(1.0, 48, 2, 2, 731)
    assert third == pytest.approx(2 * math.log(729 / 3) + math.log(48))
    assert sicc(1.0, 48, 3) - sicc(1.0, 48, 2) == pytest.approx(4.52, abs=0.01)
    with pytest.raises(ValueError, match="n_terms <= library_size"):
        ebic(1.0, 48, 2, 5, 4)


def test_library_terms_leave_the_intercept_out():
    x, d = sp.symbols("x d")
    assert n_library_terms(0.25 * x + 2.0 / d) == 2
    assert n_library_terms(0.25 * x + 2.0 / d + 0.3) == 2
    assert n_library_terms(sp.Float(1.5)) == 0


def test_ebic_needs_a_library_and_stable_falls_back_without_one():
    """Operon, EQL and PySR search no enumerable library: ``stable`` votes with max(AICc, SICc) and says so."""
    x = sp.Symbol("x")
    X = pd.DataFrame({"x": np.linspace(1.0, 2.0, 12)})
    y = 3.0 * X.x.to_numpy() + 0.01 * np.sin(np.arange(12))
    front = [Candidate(1, float(np.var(y)), sp.Float(float(np.mean(y)))),
             Candidate(3, float(np.mean((y - 3.0 * X.x) ** 2)), sp.Float(3.0) * x)]
    with pytest.raises(ValueError, match="needs the size of the term library"):
        select_aicc(front, 12, "max(AICc, SICc, EBIC)")
    chosen, label = select_stable(front, X, y)
    assert chosen.expr == front[1].expr
    assert label == ("stable: max(AICc, SICc) form chosen in 5 of 5 subsamples (KFold(5, shuffle, random_state=0)); "
                     "max(AICc, SICc, EBIC) needs a term library, this engine has none")
    assert select_stable(front, X, y, library_size=40)[1].endswith("; EBIC over a library of 40 terms")


def _configuration_table(seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """8 metals × 6 configurations: E_f = 0.25·n_b·E_c + 2/d (eV) with 3 % multiplicative noise."""
    rng = np.random.default_rng(seed)
    e_c = {"Al": 3.39, "Ni": 4.44, "Cu": 3.49, "Pd": 3.89, "Ag": 2.95, "Pt": 5.84, "Au": 3.81, "Pb": 2.03}
    rows = []
    for metal, e in e_c.items():
        for _ in range(6):
            nb, d = int(rng.integers(1, 7)), round(float(rng.uniform(2.4, 6.0)), 4)
            rows.append((metal, e, nb, d, round((0.25 * nb * e + 2.0 / d) * (1 + 0.03 * rng.normal()), 5)))
    table = pd.DataFrame(rows, columns=["metal", "cohesive_energy", "n_bonds", "d_pair", "E_f"])
    return table[["cohesive_energy", "n_bonds", "d_pair"]].astype(float), table.E_f.to_numpy(), table.metal.to_numpy()


def test_ebic_drops_the_term_max_aicc_sicc_kept_on_a_configuration_table(monkeypatch):
    X, y, metals = _configuration_table(5)
    chosen = make_estimator(list(X.columns), engine="sparse").fit(X, y, groups=metals)
    assert _terms(chosen.equation_) == {"cohesive_energy*n_bonds", "1/d_pair"}
    assert chosen.library_size_ == 731
    assert chosen.selection_ == ("stable: max(AICc, SICc, EBIC) form chosen in 8 of 8 subsamples (LeaveOneGroupOut "
                                 "(8 groups)); EBIC over a library of 731 terms")
    monkeypatch.setattr(selection, "STABLE_CRITERION", "max(AICc, SICc)")
    before = make_estimator(list(X.columns), engine="sparse").fit(X, y, groups=metals)
    assert {"cohesive_energy*n_bonds", "1/d_pair"} < _terms(before.equation_)  # plus 1.7e-4·d·n_b³


def test_seven_metals_keep_the_agreement_the_ebic_alone_lost(monkeypatch):
    """Seven metals (seed 6): the maximum of AICc, SICc and EBIC keeps 7 of 7 folds; the EBIC
    alone (a dimensional library of tens of terms, 6 training rows) keeps 4."""
    from tests.test_estimators import _fold_agreement

    assert _fold_agreement("stable", seed=6) == 7
    monkeypatch.setattr(selection, "STABLE_CRITERION", "EBIC")
    assert _fold_agreement("stable", seed=6) == 4


def test_ebic_drops_the_term_max_aicc_sicc_kept_on_a_mixing_table(monkeypatch):
    X, y = _mixing_table(2)
    law = {"delta**2*x", "delta**2*x**2"}
    assert _terms(make_estimator(["x", "delta"], engine="sparse").fit(X, y).equation_) == law
    monkeypatch.setattr(selection, "STABLE_CRITERION", "max(AICc, SICc)")
    assert law < _terms(make_estimator(["x", "delta"], engine="sparse").fit(X, y).equation_)
