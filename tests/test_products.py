"""Sums of products y = Σ_j s_j(bulk) · g_j(orientation) (matstore.models.products, SumOfProducts)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sympy as sp
from sklearn.base import clone

from matstore.models import EquationSearch, FactorizedEquation
from matstore.models.estimators import SumOfProducts
from matstore.models.fitting import fit_equation
from matstore.models.products import fold_losses, scale_library, select_scales
from matstore.models.report import ceiling_text, parts_lines
from matstore.models.spec import FitSpec
from tests.test_models_core import surface_table

UNITS = {"cohesive_energy": "eV/atom", "lattice_constant": "angstrom", "c11": "GPa", "c44": "GPa"}


def stress_table(n_materials: int = 7, seed: int = 1, noise: float = 0.01) -> pd.DataFrame:
    """Synthetic τ (N/m) = c11·a·g₁ + c44·a·g₂ over 13 orientations, g₂ changing sign with the orientation.

    The material-to-material mix of the two orientation patterns changes (c11/c44 ranges
    over 1–4), so no single product C(bulk)·g(orientation) fits it.  GPa·Å = 0.1 N/m.
    """
    from matstore.orientation import distinct_miller_indices

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_materials):
        mat = {"material": f"M{i}", "cohesive_energy": rng.uniform(2.5, 6.5), "lattice_constant": rng.uniform(3.5, 4.2),
               "c11": rng.uniform(100, 300), "c44": rng.uniform(40, 120)}
        for hkl in distinct_miller_indices(3):
            n = np.array(hkl, dtype=float) / np.linalg.norm(hkl)
            g1, g2 = 0.01 * (1 + n[0]), 0.03 * (n[2] - 0.3)
            tau = 0.1 * mat["lattice_constant"] * (mat["c11"] * g1 + mat["c44"] * g2)
            rows.append(mat | {"miller_h": hkl[0], "miller_k": hkl[1], "miller_l": hkl[2],
                               "surface_stress": tau * (1 + noise * rng.standard_normal())})
    return pd.DataFrame(rows)


def _fit(table: pd.DataFrame, target: str, unit: str, products: int):  # noqa: ANN202
    return fit_equation(table, target, list(UNITS), factorize="orientation", groups="material", engine="sparse",
                        products=products, feature_units=UNITS, target_unit=unit)


def test_scale_library_holds_one_property_per_scale_in_the_target_dimension() -> None:
    bulk = pd.DataFrame({"cohesive_energy": [3.5, 4.4, 2.9], "lattice_constant": [3.6, 3.5, 4.1],
                         "c11": [170.0, 250.0, 120.0], "c44": [75.0, 120.0, 45.0]})
    values, exprs = scale_library(bulk, UNITS, "N/m")
    a, ec, c11, c44 = sp.symbols("lattice_constant cohesive_energy c11 c44")
    assert set(exprs) == {ec / a**2, c11 * a, c44 * a}
    assert values[:, exprs.index(c11 * a)] == pytest.approx((bulk.c11 * bulk.lattice_constant).to_numpy())
    with pytest.raises(ValueError, match="units of the target and of every bulk feature"):
        scale_library(bulk, {"c11": "GPa"}, "N/m")
    with pytest.raises(ValueError, match="dimension of s"):
        scale_library(bulk[["c11"]], UNITS, "s")


def test_sum_of_two_products_is_found_where_one_product_fails() -> None:
    """τ = c11·a·g₁ + c44·a·g₂: the two scales, each g_j, and an honest leave-one-metal-out R²."""
    table = stress_table()
    two, one = _fit(table, "surface_stress", "N/m", 2), _fit(table, "surface_stress", "N/m", 1)
    assert {p["scale"] for p in two.parts["products"]} == {"c11*lattice_constant", "c44*lattice_constant"}
    assert two.parts["scale_selection"]["products"] == 2
    assert two.report["nested_cv"]["r2"] > 0.97 and two.report["fixed_form_cv"]["r2"] > 0.97
    assert one.report["nested_cv"]["r2"] < two.report["nested_cv"]["r2"] - 0.1
    assert two.report["product_ceiling_r2"] < 0.99 < two.report["two_product_ceiling_r2"]
    assert ceiling_text(one.report).endswith("try a sum, --products 2")  # the single product is told
    assert "--products" not in ceiling_text(two.report)
    agreement = two.report["fold_agreement"]
    assert agreement["coefficient"]["agree"] == 7  # the scales in every fold
    assert agreement["orientation"]["max_deviation"] < 0.3  # each fold's g_j near the full-data g_j
    # the fitted sum predicts an orientation it never saw on a metal it never saw
    mat = {"cohesive_energy": 4.0, "lattice_constant": 3.8, "c11": 210.0, "c44": 60.0}
    n = np.array([5.0, 3.0, 1.0]) / np.sqrt(35.0)
    truth = 0.1 * 3.8 * (210 * 0.01 * (1 + n[0]) + 60 * 0.03 * (n[2] - 0.3))
    row = pd.DataFrame([mat | {"normal_x": n[0], "normal_y": n[1], "normal_z": n[2]}])
    from matstore.models.expressions import evaluate

    assert evaluate(two.expr, row)[0] == pytest.approx(truth, rel=0.05)
    lines = [line for line, _ in parts_lines(two.parts)]
    assert lines[0].startswith("product 1: (c") and lines[-1] == "products: 2"


def test_one_product_is_kept_where_it_suffices() -> None:
    """γ = E_c/a² · g_bb: the 1-SE rule keeps one product, the broken-bond scale."""
    table = surface_table(n_materials=7, seed=3)
    table["c11"] = 2.5 * table["c44"]
    table["surface_energy"] *= 1 + 0.02 * np.random.default_rng(5).standard_normal(len(table))
    res = _fit(table, "surface_energy", "J/m^2", 2)
    assert [p["scale"] for p in res.parts["products"]] == ["cohesive_energy/lattice_constant**2"]
    assert res.report["nested_cv"]["r2"] > 0.95


def test_selection_by_cv_and_the_one_standard_error_rule() -> None:
    rng = np.random.default_rng(0)
    mat_idx = np.repeat(np.arange(6), 4)
    scales = rng.uniform(1, 3, (6, 3))
    P = np.tile(np.eye(4), (6, 1))
    g = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, -1.0, 1.0, -1.0]])
    y = scales[mat_idx, 0] * (P @ g[0]) + scales[mat_idx, 2] * (P @ g[1])
    folds = [(np.flatnonzero(mat_idx != m), np.flatnonzero(mat_idx == m)) for m in range(6)]
    chosen, record = select_scales(y, scales[mat_idx], P, folds, max_products=2)
    assert chosen == (0, 2) and record["products"] == 2 and record["cv_mse"]["2"] < 1e-20
    assert fold_losses(y, scales[mat_idx][:, [0, 2]], P, folds) == pytest.approx(np.zeros(6), abs=1e-18)
    with pytest.raises(ValueError, match="at least 1"):
        select_scales(y, scales[mat_idx], P, folds, max_products=0)


def test_estimator_shape_and_spec_option() -> None:
    est = SumOfProducts(orientation=EquationSearch(engine="sparse"), bulk_features=("c11",), feature_units=UNITS,
                        target_unit="N/m")
    assert clone(est).get_params(deep=False).keys() == est.get_params(deep=False).keys()
    spec = FitSpec(name="tau", target="surface_stress", features=list(UNITS), factorize="orientation", products=2)
    assert spec.fit_options()["products"] == 2
    with pytest.raises(ValueError):
        FitSpec(name="tau", target="surface_stress", features=["c11"], products=0)
    with pytest.raises(ValueError, match="needs factorize"):
        FitSpec(name="tau", target="surface_stress", features=["c11"], products=2)
    from matstore.models.fitting import make_estimator

    assert isinstance(make_estimator(["c11"], factorize="orientation", material="m", products=1), FactorizedEquation)
    assert isinstance(make_estimator(["c11"], factorize="orientation", material="m", products=2), SumOfProducts)


def published_style_table(seed: int, n_normals: int = 40) -> pd.DataFrame:
    """Each metal its own unit normals (none shared), τ = c11·a·0.01(1 + n_x) + c44·a·0.03(n_z − 0.3), 2 % noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(7):
        mat = {"material": f"M{i}", "cohesive_energy": rng.uniform(2.5, 6.5), "lattice_constant": rng.uniform(3.5, 4.2),
               "c11": rng.uniform(100, 300), "c44": rng.uniform(40, 120)}
        normals = -np.sort(-np.abs(rng.standard_normal((n_normals, 3))), axis=1)
        for n in normals / np.linalg.norm(normals, axis=1)[:, None]:
            tau = 0.1 * mat["lattice_constant"] * (mat["c11"] * 0.01 * (1 + n[0]) + mat["c44"] * 0.03 * (n[2] - 0.3))
            rows.append(mat | {"normal_x": n[0], "normal_y": n[1], "normal_z": n[2],
                               "surface_stress": tau * (1 + 0.02 * rng.standard_normal())})
    return pd.DataFrame(rows)


def test_orientations_that_never_repeat_between_metals() -> None:
    """A published-style table: the free g_j are then quadratic in the normal's components
    instead of one value per orientation; the sum and both g_j are still recovered."""
    res = _fit(published_style_table(seed=0), "surface_stress", "N/m", 2)
    assert {p["scale"] for p in res.parts["products"]} == {"c11*lattice_constant", "c44*lattice_constant"}
    assert res.report["nested_cv"]["r2"] > 0.98
    a, c11, c44, nx, nz = sp.symbols("lattice_constant c11 c44 normal_x normal_z")
    truth = 0.1 * a * (c11 * 0.01 * (1 + nx) + c44 * 0.03 * (nz - 0.3))
    point = {a: 3.8, c11: 200.0, c44: 80.0, nx: 0.8, sp.Symbol("normal_y"): 0.52, nz: 0.3}
    assert float(res.expr.subs(point)) == pytest.approx(float(truth.subs(point)), rel=0.03)


def test_each_g_is_chosen_again_on_the_other_products_equations() -> None:
    """Backfitting (``SumOfProducts._backfit``): the first g_j searches see the other
    product's free values, whose error favours forms that fit it; re-chosen on the other
    product's equation, every fold keeps the linear g_1 and g_2 of the law (6 of 7 folds
    without the pass, on this table; a 300-normal table with Operon: 0 of 7 → 7 of 7,
    docs/models.md)."""
    res = _fit(published_style_table(seed=2), "surface_stress", "N/m", 2)
    assert res.report["fold_agreement"]["agree"] == 7
    assert [p["orientation"]["text"].count("normal") for p in res.parts["products"]] == [1, 1]


def test_one_hot_weights_equal_the_dense_minimum_norm_solution() -> None:
    """With one-hot orientations the g_j values are one k × k problem per orientation: the same
    minimum-norm least squares as the dense design, also for an orientation without rows
    (weight 0) and one whose rows cannot separate the two scales (one material)."""
    from matstore.models.products import _one_hot_codes, fit_weights, product_design

    rng = np.random.default_rng(5)
    codes = np.concatenate([np.tile(np.arange(12), 6), [12]])  # 12 orientations × 6 materials, one seen once
    P = np.zeros((len(codes), 14))  # column 13: an orientation no row has
    P[np.arange(len(codes)), codes] = 1.0
    scales = rng.uniform(50, 500, (len(codes), 2))
    y = rng.normal(size=len(codes))
    dense, *_ = np.linalg.lstsq(product_design(scales, P), y, rcond=None)
    got = fit_weights(y, scales, P)
    assert got.shape == (2, 14)
    np.testing.assert_allclose(got, dense.reshape(2, 14), rtol=1e-9, atol=1e-15)
    assert np.all(got[:, 13] == 0.0)
    assert _one_hot_codes(np.column_stack([np.ones(4), np.linspace(0, 1, 4)])) is None  # a quadratic basis: dense
