"""Direct (unfactorised) fits as dimensional scaling laws: ``--coefficient-form scaling``.

A new-user trial fitted γ (J/m²) directly from the cohesive energy (eV/atom) and the lattice
constant (Å) and got γ ∝ E_c/a, "consistent up to fitted constants", where the
broken-bond estimate γ ∝ E_c/a² was wanted.  With ``coefficient_form="scaling"`` a direct fit
searches only monomials k·Π x_i^p_i with γ's dimension and a pure-number k, through the same
estimator and nested cross-validation as every fit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sympy as sp
import yaml
from sqlalchemy import text

from matstore.models.fitting import fit_equation, make_estimator
from matstore.models.spec import FitSpec
from matstore.units import unit_registry
from tests.conftest import DATA_TABLES
from tests.test_cli_db import run_cli, server_env
from tests.test_models_store import populate, true_gamma

UNITS = {"cohesive_energy": "eV/atom", "lattice_constant": "angstrom", "c44": "GPa"}
#: 1 eV/Å² in J/m² (16.0218), from pint.
EV_PER_A2 = unit_registry().Quantity(1.0, "eV/angstrom**2").to("J/m**2").magnitude
K_TRUE = 0.27 * EV_PER_A2


def _table(n: int = 10, seed: int = 0) -> pd.DataFrame:
    """``n`` materials: γ = 0.27·E_c/a² (eV/Å² → J/m²) with 1 % noise, and C44 (GPa) as a distractor."""
    rng = np.random.default_rng(seed)
    ec, a, c44 = rng.uniform(2.0, 9.0, n), rng.uniform(2.5, 5.5, n), rng.uniform(20.0, 200.0, n)
    gamma = K_TRUE * ec / a**2 * (1 + 0.01 * rng.standard_normal(n))
    return pd.DataFrame({"material": [f"M{i}" for i in range(n)], "surface_energy": gamma,
                         "cohesive_energy": ec, "lattice_constant": a, "c44": c44})


def test_pint_conversion_of_ev_per_square_angstrom() -> None:
    assert EV_PER_A2 == pytest.approx(16.0218, rel=1e-5)


def test_scaling_fit_recovers_ec_over_a_squared() -> None:
    """Operon asked for, as the CLI's default: the scaling law is the sparse engine's dimensional library."""
    res = fit_equation(_table(), "surface_energy", list(UNITS), groups="material", engine="operon",
                       coefficient_form="scaling", feature_units=UNITS, target_unit="J/m^2", seed=0)
    E, a = sp.symbols("cohesive_energy lattice_constant")
    k, monomial = res.expr.as_coeff_Mul()
    assert monomial.as_powers_dict() == {E: 1, a: -2}
    assert float(k) == pytest.approx(K_TRUE, rel=0.02)  # fitted 4.342 against 4.326 (0.4 %)
    assert res.engine == "sparse" and res.dimension_check == "consistent"
    assert res.selection.startswith("stable: max(AICc, SICc, EBIC) form chosen in 10 of 10 subsamples")
    assert res.cv["scheme"] == "LeaveOneGroupOut (10 groups) by material"
    assert res.report["fold_agreement"] == {"agree": 10, "n": 10, "fraction": 1.0,
                                            "full_form": "c*cohesive_energy/lattice_constant**2"}
    assert res.metrics["cv_r2"] > 0.999 and res.metrics["fixed_form_cv_r2"] > 0.999
    # every candidate on the front is a homogeneous monomial with a pure-number constant
    assert all(sp.sympify(c["text"]).as_coeff_Mul()[0].is_Float for c in res.front)


def test_a_direct_fit_keeps_the_free_search_unless_scaling_is_asked_for() -> None:
    for form in ("auto", "free"):
        est = make_estimator(list(UNITS), engine="sparse", coefficient_form=form, feature_units=UNITS,
                             target_unit="J/m^2")
        assert est.form == "free"
    est = make_estimator(list(UNITS), coefficient_form="scaling", coefficient_terms=2, feature_units=UNITS,
                         target_unit="J/m^2")
    assert (est.form, est.scaling_terms) == ("scaling", 2)
    with pytest.raises(ValueError, match="coefficient_form must be one of"):
        make_estimator(list(UNITS), coefficient_form="power", feature_units=UNITS, target_unit="J/m^2")


@pytest.mark.parametrize(("units", "target_unit", "message"), [
    (UNITS, None, "coefficient_form scaling needs a target with units: the target has no unit; "
                  "use coefficient_form free"),
    ({**UNITS, "c44": ""}, "J/m^2", "coefficient_form scaling needs units on every feature: feature c44 has no unit; "
                                    "drop it or use coefficient_form free"),
])
def test_scaling_without_units_is_refused_in_one_line(units, target_unit, message) -> None:  # noqa: ANN001
    with pytest.raises(ValueError) as info:
        fit_equation(_table(), "surface_energy", list(UNITS), groups="material", coefficient_form="scaling",
                     feature_units=units, target_unit=target_unit, cross_validate=False)
    assert str(info.value) == message


def test_no_homogeneous_monomial_names_the_dimensions() -> None:
    units = {"lattice_constant": "angstrom", "c44": "GPa"}
    with pytest.raises(ValueError) as info:
        fit_equation(_table(), "surface_energy", list(units), coefficient_form="scaling", feature_units=units,
                     target_unit="K", cross_validate=False)
    assert str(info.value) == (
        "coefficient_form scaling: no power law of the features has the target's dimension "
        "[temperature] (K); features: lattice_constant [length] (angstrom); "
        "c44 [length] ** -1 * [mass] * [time] ** -2 (GPa) (exponents -3, -2, -1, -0.5, 0.5, 1, 2, 3, "
        "at most 3 factors)")


def test_spec_key_is_the_factorised_one_and_the_default_hash_is_unchanged(tmp_path) -> None:
    path = tmp_path / "gamma.yaml"
    fields = {"name": "g", "target": "surface_energy", "features": ["cohesive_energy", "lattice_constant"]}
    path.write_text(yaml.safe_dump(fields | {"coefficient_form": "scaling"}))
    spec = FitSpec.from_yaml(path)
    assert spec.factorize is None and spec.fit_options()["coefficient_form"] == "scaling"
    default = FitSpec(**fields)
    assert default.coefficient_form == "auto"
    assert FitSpec(**fields, coefficient_form="auto").sha256() == default.sha256() != spec.sha256()


@pytest.fixture
def gamma_111(session_engine, database_url):  # noqa: ANN001
    """The seven synthetic metals of tests/test_models_store.py with γ(111) only, and the CLI environment."""
    populate(session_engine, millers=((1, 1, 1),), source_hash="7" * 64)
    yield server_env(database_url)
    with session_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))


def test_cli_direct_scaling_fit_prints_and_stores_the_law(gamma_111) -> None:
    """γ(111) = 0.4/√3 · E_c/a² (eV/Å² → J/m²) of 7 metals, c44 a distractor, operon (the default) asked for."""
    fit = ("fit", "--name", "g111", "--target", "surface_energy", "--features", "lattice_constant",
           "cohesive_energy", "c44", "--method", "synth", "--coefficient-form", "scaling", "--time-budget", "20")
    out = run_cli(*fit, env=gamma_111).stdout.splitlines()
    assert out[0] == "g111: created (version 1): first version; 7 rows, 0 dropped for missing features"
    k = true_gamma(1.0, 1.0, (1, 1, 1))
    assert any(line.startswith("  y [J/m^2] = ") and line.endswith("*cohesive_energy/lattice_constant**2")
               and float(line.split("= ")[1].split("*")[0]) == pytest.approx(k, rel=1e-6) for line in out), out
    assert any(line.startswith("  cross-validated R² = 1.000, ") for line in out), out
    assert "  fixed-form R² = 1.000; 7 of 7 folds selected the full-data form" in out, out
    shown = run_cli("models", "show", "g111", env=gamma_111).stdout
    assert "engine sparse" in shown and "  dimensions: consistent\n" in shown, shown


def test_dimensionless_features_and_targets_are_units() -> None:
    """As for the factorised fit's C: a dimensionless feature may enter a scaling law with any
    exponent, and a dimensionless target needs a dimensionless monomial (c11/c12 is one)."""
    units = {**UNITS, "zener_ratio": "dimensionless"}
    est = make_estimator(list(units), coefficient_form="scaling", feature_units=units, target_unit="J/m^2")
    assert est.form == "scaling"
    moduli = {"c11": "GPa", "c12": "GPa"}
    assert make_estimator(list(moduli), coefficient_form="scaling", feature_units=moduli,
                          target_unit="dimensionless").form == "scaling"
    with pytest.raises(ValueError, match=r"no power law of the features has the target's dimension"):
        make_estimator(["lattice_constant"], coefficient_form="scaling", feature_units={"lattice_constant": "angstrom"},
                       target_unit="dimensionless")



def test_a_free_direct_fit_homogeneous_only_through_its_constants_names_the_scaling_form() -> None:
    """A trial's C44 fit printed ``2.79e-8*c11**3*c12/cohesive_energy + 60.89`` as "consistent
    up to fitted constants" with no word of the form that keeps the units."""
    from matstore.models.report import scaling_hint_lines

    features = [{"name": "c11", "unit": "GPa"}, {"name": "c12", "unit": "GPa"},
                {"name": "cohesive_energy", "unit": "eV/atom"}]
    free = {"factorize": None, "coefficient_form": "auto"}
    assert scaling_hint_lines("consistent up to fitted constants", features, "GPa", free) == [
        "note: this equation is consistent up to fitted constants (its constants carry units); --coefficient-form "
        "scaling searches power laws of the features with the target's units"]
    assert scaling_hint_lines("consistent", features, "GPa", free) == []
    assert scaling_hint_lines("consistent up to fitted constants", features, "GPa",
                              {**free, "coefficient_form": "scaling"}) == []
    assert scaling_hint_lines("consistent up to fitted constants", features, "GPa", {"factorize": "orientation"}) == []
    assert scaling_hint_lines("consistent up to fitted constants", features, "K", free) == []  # no power law
