"""Database-free fitting core (matstore.models): engines, validation, selection, dimensions,
orientation factorisation, cross-validated fitting.  Fast (small budgets); no database."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sympy as sp

from matstore.models import (
    Candidate,
    EngineSetupError,
    check_dimensions,
    check_finite_and_bounded,
    expr_from_srepr,
    fit_equation,
    get_engine,
    is_finite_and_bounded,
    orientation_descriptors,
    predict,
    select,
    versions,
)
from matstore.models.engines.base import expression_complexity, pareto_filter
from matstore.orientation import (
    OrientationError,
    broken_bond_g,
    distinct_miller_indices,
    from_miller,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
STRENGTH_CSV = REPO_ROOT.parent / "shared" / "data" / "strength_covariance" / "data" / "models_w_props.csv"


@pytest.fixture(scope="module")
def product_data() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.uniform(1.0, 3.0, size=(150, 3)), columns=["x1", "x2", "x3"])
    y = 2.5 * X["x1"] * X["x2"] / X["x3"]
    return X, y.to_numpy()


def _r2(y, p):
    return 1.0 - np.sum((y - p) ** 2) / np.sum((y - np.mean(y)) ** 2)


def surface_table(n_materials: int = 7, seed: int = 3) -> pd.DataFrame:
    """Synthetic y = (E_c / a²) · g_bb(hkl) over n_materials × 13 Miller indices."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_materials):
        mat = {
            "material": f"M{i}",
            "cohesive_energy": rng.uniform(2.5, 6.5),  # eV/atom
            "lattice_constant": rng.uniform(3.5, 4.2),  # Å
            "c44": rng.uniform(30.0, 130.0),  # GPa, a distractor
        }
        for hkl in distinct_miller_indices(3):
            g = broken_bond_g(hkl)
            rows.append(mat | {"miller_h": hkl[0], "miller_k": hkl[1], "miller_l": hkl[2],
                               "surface_energy": mat["cohesive_energy"] / mat["lattice_constant"] ** 2 * g})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- engines


def test_sparse_recovers_exact_formula(product_data):
    X, y = product_data
    eng = get_engine("sparse", max_terms=3).fit(X, y)
    best = min(eng.pareto_front_, key=lambda c: c.loss)
    assert _r2(y, eng.predict(X)) > 0.999
    x1, x2, x3 = sp.symbols("x1 x2 x3")
    # exact structure and coefficient, no intercept
    assert sp.simplify(best.expr - 2.5 * x1 * x2 / x3) == 0 or abs(
        float((best.expr / (x1 * x2 / x3)).subs({x1: 1, x2: 1, x3: 1})) - 2.5) < 1e-9
    coeffs = [float(f) for f in best.expr.atoms(sp.Float)]
    assert len(coeffs) == 1 and abs(coeffs[0] - 2.5) < 1e-9
    # front is sorted by complexity with strictly decreasing loss
    cs = [c.complexity for c in eng.pareto_front_]
    ls = [c.loss for c in eng.pareto_front_]
    assert cs == sorted(cs) and all(a > b for a, b in zip(ls, ls[1:], strict=False))
    assert {str(s) for c in eng.pareto_front_ for s in c.expr.free_symbols} <= {"x1", "x2", "x3"}
    pickle.dumps(eng)  # fitted engines hold only SymPy objects


def test_sparse_multi_term_and_params():
    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.uniform(1.0, 3.0, size=(200, 4)), columns=list("abcd"))
    y = 1.3 * X["a"] ** 2 / X["b"] + 0.7 * np.sqrt(X["c"]) - 2.0
    eng = get_engine("sparse", max_terms=3).fit(X, y)
    best = min(eng.pareto_front_, key=lambda c: c.loss)
    assert best.loss < 1e-20
    a, b, c = sp.symbols("a b c")
    diff = sp.expand(best.expr - (1.3 * a**2 / b + 0.7 * sp.sqrt(c) - 2.0))
    assert all(abs(float(f)) < 1e-8 for f in diff.atoms(sp.Float)) or diff == 0
    assert eng.get_params()["max_terms"] == 3
    assert set(eng.get_params()) == set(type(eng).default_parameters)
    with pytest.raises(TypeError):
        get_engine("sparse", no_such_parameter=1)
    with pytest.raises(KeyError):
        get_engine("no_such_engine")


def test_operon_recovers_formula(product_data):
    X, y = product_data
    t0 = time.perf_counter()
    eng = get_engine("operon", time_limit=8, generations=60, population_size=300, random_state=1).fit(X, y)
    assert time.perf_counter() - t0 < 30
    best = min(eng.pareto_front_, key=lambda c: c.loss)
    assert _r2(y, eng.predict(X, best.expr)) > 0.999
    assert {str(s) for s in best.expr.free_symbols} <= {"x1", "x2", "x3"}
    pickle.dumps(eng)  # the pyoperon estimator itself is not kept


def test_pysr_raises_setup_error_quickly(product_data, monkeypatch):
    X, y = product_data
    monkeypatch.delenv("PYTHON_JULIAPKG_EXE", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    from matstore.models.engines import pysr as pysr_mod

    if pysr_mod.find_julia() is not None:
        pytest.skip("a Julia is available here")
    t0 = time.perf_counter()
    with pytest.raises(EngineSetupError) as info:
        get_engine("pysr", time_limit=5).fit(X, y)
    assert time.perf_counter() - t0 < 5
    msg = str(info.value)
    assert "PYTHON_JULIAPKG_EXE" in msg and "PYTHON_JULIAPKG_OFFLINE" in msg and "JULIA_DEPOT_PATH" in msg
    monkeypatch.setenv("PYTHON_JULIAPKG_EXE", "/nonexistent/julia")
    with pytest.raises(EngineSetupError):
        get_engine("pysr").fit(X, y)


def test_versions_and_complexity():
    v = versions()
    assert v["sympy"] and v["numpy"] and "pyoperon" in v
    x, y = sp.symbols("x y")
    assert expression_complexity(x) == 1
    assert expression_complexity(x + y) == 3
    assert expression_complexity(2.5 * x * y) == 5


# ----------------------------------------------------------------------------- validation


def test_pole_rejection():
    x1, x2 = sp.symbols("x1 x2")
    dom = pd.DataFrame({"x1": np.linspace(0.0, 2.0, 9), "x2": np.linspace(1.0, 3.0, 9)})
    assert not is_finite_and_bounded(1 / (x1 - 1.0), dom)  # pole on a training row
    assert not is_finite_and_bounded(1 / (x1 - 1.07), dom)  # pole between training rows
    assert not is_finite_and_bounded(1 / (x2 - 0.95), dom)  # pole in the widened margin
    assert not is_finite_and_bounded(sp.log(x1 - 0.5), dom)  # NaN (complex) region
    assert is_finite_and_bounded(x1 / x2 + sp.sqrt(x1), dom)
    assert is_finite_and_bounded(x1 - 1.07, dom)  # a zero crossing is not a pole
    report = check_finite_and_bounded(1 / (x1 - 1.07), dom)
    assert not report.ok and report.reason


# ----------------------------------------------------------------------------- selection


def test_selection_criteria():
    x = sp.Symbol("x")
    front = [
        Candidate(1, 10.0, sp.Float(1.0)),
        Candidate(3, 1.0, x),
        Candidate(5, 0.97, x + 1.0),
        Candidate(9, 0.96, x**2 + x + 1.0),
    ]
    cand, crit = select(front, "knee")
    assert cand.complexity == 3 and crit == "knee"
    cand, crit = select(front, "within:5%")
    assert cand.complexity == 3 and crit == "within:5%"
    cand, crit = select(front, "within:1%")
    assert cand.complexity == 9
    cand, crit = select(front, "min_loss")
    assert cand.complexity == 9 and crit == "min_loss"
    cand, crit = select(front, "max_complexity:5")
    assert cand.complexity == 5
    with pytest.raises(ValueError):
        select(front, "nonsense")
    assert [c.complexity for c in pareto_filter([*front, Candidate(4, 2.0, x)])] == [1, 3, 5, 9]


# ----------------------------------------------------------------------------- dimensions


def test_dimension_verdicts():
    E, a, c44 = sp.symbols("cohesive_energy lattice_constant c44")
    units = {"cohesive_energy": "eV", "lattice_constant": "angstrom", "c44": "GPa"}
    assert check_dimensions(E / a**2, units, "J/m**2").verdict == "consistent"
    assert check_dimensions(c44 * a, units, "J/m**2").verdict == "consistent"
    # a fitted coefficient of a homogeneous term is a pure number (here it folds in eV/Å² → J/m²)
    assert check_dimensions(9.25 * E / a**2, units | {"cohesive_energy": "eV/atom"}, "J/m^2").verdict == "consistent"
    assert check_dimensions(1.73 * E / a**2 + 0.1, units, "J/m**2").verdict == "consistent up to fitted constants"
    assert check_dimensions(1.73 * E / a, units, "J/m**2").verdict == "consistent up to fitted constants"
    bad = check_dimensions(E + a, units, "J/m**2")
    assert bad.verdict.startswith("inconsistent:") and not bad.consistent
    bad = check_dimensions(E / a**3, units, "J/m**2")
    assert bad.verdict.startswith("inconsistent:")
    assert check_dimensions(E / a**2, {"cohesive_energy": "eV"}, "J/m**2").verdict.startswith("undetermined")
    assert check_dimensions(sp.exp(a), units, "J/m**2").verdict.startswith("inconsistent")


# ----------------------------------------------------------------------------- factorisation


def test_orientation_descriptors_from_normals_and_angles():
    hkl = distinct_miller_indices(3)
    by_miller = pd.DataFrame(hkl, columns=["miller_h", "miller_k", "miller_l"])
    normals = pd.DataFrame([from_miller(*m).normal for m in hkl], columns=["n_x", "n_y", "n_z"])
    angles = pd.DataFrame([(from_miller(*m).theta_deg, from_miller(*m).phi_deg) for m in hkl], columns=["theta", "phi"])
    d1, d2, d3 = (orientation_descriptors(t) for t in (by_miller, normals, angles))
    cols = ["normal_x", "normal_y", "normal_z", "theta_deg", "phi_deg"]
    np.testing.assert_allclose(d1[cols].to_numpy(), d2[cols].to_numpy(), atol=1e-9)
    np.testing.assert_allclose(d1[cols].to_numpy(), d3[cols].to_numpy(), atol=1e-9)
    irrational = orientation_descriptors(pd.DataFrame({"theta_deg": [20.0], "phi_deg": [10.0]}))
    assert irrational["orientation_key"].iloc[0].startswith("n:")
    mixed = pd.DataFrame(  # each row from the first kind it has: Miller, else normal, else angles
        {"h": [1, None, None], "k": [1, None, None], "l": [1, None, None], "n_x": [None, 0.0, None],
         "n_y": [None, -3.0, None], "n_z": [None, 3.0, None], "theta": [None, 9.0, 45.0], "phi": [None, 9.0, 0.0]},
        index=["r1", "r2", "r3"],
    )
    assert orientation_descriptors(mixed)["orientation_key"].tolist() == ["hkl:1,1,1", "hkl:1,1,0", "hkl:1,1,0"]
    with pytest.raises(OrientationError, match=r"row 'r2'.*zero"):
        orientation_descriptors(mixed.assign(n_z=[None, 0.0, None], n_y=[None, 0.0, None]))
    with pytest.raises(OrientationError, match=r"row 'r3' has no"):
        orientation_descriptors(mixed.assign(theta=[None, None, None]))


def test_descriptors_are_computed_once_for_a_table_and_its_folds(monkeypatch):
    """A table ``add_orientation_descriptors`` prepared (it wrote ``orientation_key``) keeps its
    descriptors in every fold; a row without them is computed afresh."""
    from matstore.models import factorize

    prepared = factorize.add_orientation_descriptors(surface_table())
    fold = prepared.iloc[::2]

    def fail(table):  # noqa: ANN001, ANN202
        raise AssertionError("descriptors recomputed")

    monkeypatch.setattr(factorize, "orientation_descriptors", fail)
    pd.testing.assert_frame_equal(factorize.add_orientation_descriptors(fold), fold)
    blank = fold.copy()
    blank.loc[blank.index[0], "orientation_key"] = None
    with pytest.raises(AssertionError, match="recomputed"):
        factorize.add_orientation_descriptors(blank)


def test_factorisation_recovers_broken_bond_model():
    table = surface_table()
    res = fit_equation(
        table, "surface_energy", ["cohesive_energy", "lattice_constant", "c44"],
        engine="sparse", factorize="orientation", groups="material", n_splits=7, seed=0, selection="knee",
        feature_units={"cohesive_energy": "eV", "lattice_constant": "angstrom", "c44": "GPa"},
        target_unit="J/m**2",
    )
    assert res.cv["scheme"].startswith("LeaveOneGroupOut")
    assert res.metrics["cv_r2"] > 0.95
    assert res.metrics["cv_failed_folds"] == 0
    # g is normalised at (111) and equals the broken-bond factor up to that normalisation
    g = expr_from_srepr(res.parts["orientation"]["srepr"])
    d = orientation_descriptors(table)
    g_vals = predict(g, d)
    g_bb = np.array([broken_bond_g(tuple(m)) for m in table[["miller_h", "miller_k", "miller_l"]].to_numpy()])
    np.testing.assert_allclose(g_vals, g_bb / np.sqrt(3.0), rtol=1e-6)
    # C depends on E_c/a² only
    c_syms = {str(s) for s in expr_from_srepr(res.parts["coefficient"]["srepr"]).free_symbols}
    assert c_syms == {"cohesive_energy", "lattice_constant"}
    assert res.dimension_check in ("consistent", "consistent up to fitted constants")
    # predict() on Miller-only input recomputes the descriptors
    p = predict(res.srepr, table.drop(columns=[]))
    np.testing.assert_allclose(p, table["surface_energy"].to_numpy(), rtol=1e-6)


def test_factorisation_with_angles_only():
    table = surface_table(n_materials=6, seed=5)
    o = [from_miller(*m) for m in table[["miller_h", "miller_k", "miller_l"]].to_numpy()]
    table = table.drop(columns=["miller_h", "miller_k", "miller_l"])
    table["theta_deg"] = [x.theta_deg for x in o]
    table["phi_deg"] = [x.phi_deg for x in o]
    res = fit_equation(table, "surface_energy", ["cohesive_energy", "lattice_constant"],
                       factorize="orientation", groups="material", n_splits=3, seed=0, selection="knee")
    assert res.metrics["cv_r2"] > 0.95


# ----------------------------------------------------------------------------- fitting


def test_fit_equation_determinism_and_srepr_roundtrip(product_data):
    X, y = product_data
    table = X.assign(y=y + np.random.default_rng(7).normal(0, 0.01, len(y)))
    r1 = fit_equation(table.iloc[:60], "y", ["x1", "x2", "x3"], engine="sparse", seed=11, n_splits=4)
    r2 = fit_equation(table.iloc[:60], "y", ["x1", "x2", "x3"], engine="sparse", seed=11, n_splits=4)
    assert r1.canonical_hash == r2.canonical_hash and r1.srepr == r2.srepr
    np.testing.assert_array_equal(r1.oof_predictions, r2.oof_predictions)
    assert r1.metrics["cv_r2"] > 0.999 and r1.selection.startswith("stable: max(AICc, SICc, EBIC) form chosen in")
    assert np.isfinite(r1.residual_std) and r1.residual_std < 0.05
    assert len(r1.oof_predictions) == 60 and np.all(np.isfinite(r1.oof_predictions))
    np.testing.assert_allclose(predict(r1.srepr, table.iloc[:60]), r1.predictions)
    assert all({"complexity", "loss", "srepr", "latex", "text"} <= set(f) for f in r1.front)
    with pytest.raises(ValueError):
        expr_from_srepr("__import__('os').system('true')")


def test_operon_fit_equation_is_deterministic(product_data):
    X, y = product_data
    table = X.iloc[:80].assign(y=y[:80])
    params = {"time_limit": 20, "generations": 15, "population_size": 200, "n_threads": 1}
    r1 = fit_equation(table, "y", ["x1", "x2", "x3"], engine="operon", engine_params=params, seed=3, cross_validate=False)
    r2 = fit_equation(table, "y", ["x1", "x2", "x3"], engine="operon", engine_params=params, seed=3, cross_validate=False)
    assert r1.canonical_hash == r2.canonical_hash


@pytest.mark.skipif(not STRENGTH_CSV.exists(), reason="shared strength_covariance data not present")
def test_strength_linear_model_matches_publication():
    df = pd.read_csv(STRENGTH_CSV)
    # The published 3-factor model (arXiv:2406.05146) excludes the 10 potentials flagged
    # SF_jamming == "yes" (its LOO table lists the other 153); drop NaN rows here.
    df = df[df["SF_jamming"].astype(str).str.strip() != "yes"]
    cols = ["vacancy_migration_energy_fcc", "surface_energy_111_fcc", "lattice_constant_fcc"]
    df = df.dropna(subset=[*cols, "strength_MPa"])
    res = fit_equation(df, "strength_MPa", cols, engine="sparse",
                       engine_params={"library": "linear", "max_terms": 3},
                       selection="min_loss", n_splits=5, seed=0)
    assert abs(res.metrics["cv_r2"] - 0.856) < 0.05
    assert abs(res.metrics["cv_r2_mean"] - 0.856) < 0.05
    assert 170 < res.metrics["cv_rmse"] < 225
    assert {str(s) for s in res.expr.free_symbols} == set(cols)
    assert res.n_rows == len(df)


# ----------------------------------------------------------------------------- robustness




def _fake_engine_class():
    from matstore.models.engines.base import Candidate as C
    from matstore.models.engines.base import SymbolicEngine

    class _Fake(SymbolicEngine):
        name = "fake"
        default_parameters = {"random_state": None}

        def __init__(self, random_state=None):
            self.random_state = random_state

        def _fit_front(self, X, y):
            x = sp.Symbol("x")
            nan = float("nan")  # the base class computes the training MSE
            return [C(1, nan, sp.Float(float(np.mean(y)))), C(3, nan, 1.9 * x),
                    C(7, nan, 2.0 * x + 1e-6 / (x - 10.0))]

    return _Fake


FakeEngine = _fake_engine_class()  # registered as engine "fake" below (pole at x = 10)


def test_candidates_non_finite_on_held_out_rows_are_rejected():
    from matstore.models.engines.base import register_engine

    register_engine("fake", f"{__name__}:FakeEngine")
    x = np.r_[np.linspace(0.0, 1.0, 19), 10.0]
    table = pd.DataFrame({"x": x, "y": 2.0 * x})
    res = fit_equation(table, "y", ["x"], engine="fake", selection="min_loss", n_splits=5, seed=0)
    # full data contains x = 10: the pole candidate is non-finite there and dropped
    assert res.text == "1.9*x"
    assert all("x - 10" not in f["text"] for f in res.front)
    # the fold holding x = 10 out never saw it, picks the pole candidate and cannot predict
    # there: nested CV counts that fold as failed (penalised with its training mean), as the
    # procedure would fail on such an unseen point
    assert res.metrics["cv_failed_folds"] == 1
    failed = [f for f in res.report["folds"] if f["failed"]]
    assert len(failed) == 1 and failed[0]["equation"] != "1.9*x"
    assert np.all(np.isfinite(res.oof_predictions))


def test_operon_retries_dtype_type_error(product_data, monkeypatch):
    from pyoperon.sklearn import SymbolicRegressor

    calls = []
    original = SymbolicRegressor.fit

    def flaky(self, X, y):
        calls.append(X.dtype)
        if X.dtype == np.float64:
            raise TypeError("Unable to convert function return value to a Python type")
        return original(self, X, y)

    monkeypatch.setattr(SymbolicRegressor, "fit", flaky)
    X, y = product_data
    eng = get_engine("operon", time_limit=3, generations=5, population_size=100).fit(X, y)
    assert calls == [np.float64, np.float32] and eng.pareto_front_


def test_operon_retry_after_a_whole_failed_run_gets_what_is_left_of_the_limit(product_data, monkeypatch):
    """pyoperon 0.6.2 raises its float64 TypeError after the whole run: the float32 retry then
    runs under pyoperon's least limit (1 s), not the whole 3 s again."""
    import time

    from pyoperon.sklearn import SymbolicRegressor

    limits = []
    original = SymbolicRegressor.fit

    def late_failure(self, X, y):
        limits.append(self.max_time)
        if X.dtype == np.float64:
            time.sleep(2.5)  # most of the 3 s limit spent, then the post-processing fails
            raise TypeError("FitLeastSquares(): incompatible function arguments")
        return original(self, X, y)

    monkeypatch.setattr(SymbolicRegressor, "fit", late_failure)
    X, y = product_data
    eng = get_engine("operon", time_limit=3, generations=5, population_size=100).fit(X, y)
    assert limits == [3, 1] and eng.pareto_front_


def test_operon_fits_a_read_only_target_in_float64_on_the_first_try(monkeypatch):
    """The cause of pyoperon 0.6.2's late float64 TypeError: a read-only target (pandas'
    copy-on-write views are read-only).  The engine passes writeable copies, so the first,
    float64 run succeeds and no float32 retry is needed."""
    pytest.importorskip("pyoperon")
    from pyoperon.sklearn import SymbolicRegressor

    dtypes = []
    original = SymbolicRegressor.fit

    def record(self, X, y):
        dtypes.append((X.dtype, y.dtype, y.flags.writeable))
        return original(self, X, y)

    monkeypatch.setattr(SymbolicRegressor, "fit", record)
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.uniform(1, 3, (60, 2)), columns=["x1", "x2"])
    y = (2.0 * X.x1 * X.x2 + 0.01 * rng.standard_normal(60)).to_numpy()
    y.setflags(write=False)
    eng = get_engine("operon", time_limit=1, generations=20, population_size=100).fit(X, y)
    assert dtypes == [(np.float64, np.float64, True)] and eng.pareto_front_


def test_factorised_result_has_parts_and_front():
    table = surface_table(n_materials=5, seed=9)
    res = fit_equation(table, "surface_energy", ["cohesive_energy", "lattice_constant"],
                       factorize="orientation", groups="material", seed=0, cross_validate=False)
    assert set(res.parts) == {"coefficient", "orientation"}
    for part in res.parts.values():
        assert part["front"] and part["srepr"]
    # g's default criterion in a factorised fit (selection.default_selection)
    assert res.parts["orientation"]["criterion"].startswith("stable:1se: complexity <= ")
    # C is fitted on one value per material: its size is chosen by the leave-one-out error of
    # the whole search, not by training loss; without units C is the engine's free form
    assert res.parts["coefficient"]["criterion"].startswith("stable:1se: complexity <= ")
    assert "search repeated per fold" in res.parts["coefficient"]["criterion"]
    assert res.parts["coefficient"]["form"].startswith("free (auto: no unit")
    assert res.parts["orientation"]["normalization"] == "g(hkl:1,1,1)=1"
    assert len(res.parts["coefficient"]["values"]) == 5
    assert res.front and any(f["srepr"] == res.srepr for f in res.front)
    assert np.isnan(res.oof_predictions).all() and res.metrics["train_r2"] > 0.999


# ----------------------------------------------------------------------------- scaling laws for C

UNITS = {"cohesive_energy": "eV/atom", "lattice_constant": "angstrom", "c44": "GPa"}


def test_dimensional_library_holds_only_terms_of_the_target_dimension():
    from matstore.models.dimensions import unit_dimension
    from matstore.models.engines.sparse import SparseEngine

    rng = np.random.default_rng(1)
    X = pd.DataFrame({"cohesive_energy": rng.uniform(2, 6, 12), "lattice_constant": rng.uniform(3.5, 4.2, 12),
                      "c44": rng.uniform(30, 130, 12)})
    y = 9.25 * X["cohesive_energy"] / X["lattice_constant"] ** 2
    eng = SparseEngine(max_terms=2, fit_intercept=False, feature_units=UNITS, target_unit="J/m^2").fit(X, y)
    assert 0 < eng.library_size_ < 60
    for cand in eng.pareto_front_:
        if cand.expr.free_symbols:
            assert check_dimensions(cand.expr, UNITS, "J/m^2").verdict == "consistent", cand.expr
    best = min(eng.pareto_front_, key=lambda c: c.loss)
    assert sp.simplify(best.expr / (sp.Symbol("cohesive_energy") / sp.Symbol("lattice_constant") ** 2)).is_number
    assert float(next(iter(best.expr.atoms(sp.Float)))) == pytest.approx(9.25, rel=1e-9)
    assert unit_dimension("eV/atom") == unit_dimension("eV")  # atom is a count
    with pytest.raises(ValueError, match="no unit for column"):
        SparseEngine(feature_units={"c44": "GPa"}, target_unit="J/m^2").fit(X, y)


def test_scaling_law_coefficient_of_the_broken_bond_model():
    """y = 9.25·E_c/a² · g(hkl) + 1 % noise: C is found as a one-term scaling law, with c44·a
    (also of the target's dimension) as a distractor, and the combined equation is homogeneous."""
    table = surface_table(n_materials=7, seed=3)
    table["surface_energy"] *= 9.25 / broken_bond_g((1, 1, 1))  # so that γ(111) = 9.25·E_c/a²
    table["surface_energy"] *= 1 + 0.01 * np.random.default_rng(0).standard_normal(len(table))
    res = fit_equation(table, "surface_energy", list(UNITS), engine="sparse", factorize="orientation",
                       groups="material", seed=0, feature_units=UNITS, target_unit="J/m^2")
    coeff = res.parts["coefficient"]
    assert coeff["form"] == "scaling" and coeff["engine"] == "sparse"
    assert coeff["criterion"].startswith("stable:1se: complexity <= ")
    assert "(search repeated per fold, LeaveOneGroupOut (7 groups)); form chosen in 7 of 7 folds" in coeff["criterion"]
    assert res.cv["scheme"].startswith("LeaveOneGroupOut (7 groups)")
    C = expr_from_srepr(coeff["srepr"])
    E, a = sp.symbols("cohesive_energy lattice_constant")
    assert C.free_symbols == {E, a}
    assert float(C / (E / a**2)) == pytest.approx(9.25, rel=0.01)
    assert res.dimension_check == "consistent"
    assert res.metrics["cv_r2"] > 0.98


def test_coefficient_form_needs_units_for_scaling():
    table = surface_table(n_materials=5, seed=9)
    with pytest.raises(ValueError, match="scaling.*no unit for the target"):
        fit_equation(table, "surface_energy", ["cohesive_energy", "lattice_constant"], factorize="orientation",
                     groups="material", coefficient_form="scaling", cross_validate=False)
    # a target no monomial of the features can match: auto falls back to the free form and says why
    res = fit_equation(table, "surface_energy", ["lattice_constant"], factorize="orientation", groups="material",
                       feature_units={"lattice_constant": "angstrom"}, target_unit="J/m^2", cross_validate=False)
    assert res.parts["coefficient"]["form"] == "free (auto: no monomial of the bulk features has the dimension of J/m^2)"
    res = fit_equation(table, "surface_energy", ["lattice_constant"], factorize="orientation", groups="material",
                       feature_units={"lattice_constant": "furlong_per_fortnight"}, target_unit="J/m^2",
                       cross_validate=False)
    assert res.parts["coefficient"]["form"].startswith("free (auto: unknown unit 'furlong_per_fortnight'")


def test_select_size_by_cv_repeats_the_search_in_each_fold():
    """Seven rows, y ∝ x plus noise, and a library of 200 random columns: the best 3-term
    support fitted to all rows has a tiny leave-one-out error of its constants, but
    cross-validating the search itself picks one term."""
    from matstore.models.cv import splits
    from matstore.models.engines.sparse import SparseEngine
    from matstore.models.selection import cv_loss, select_size_by_cv

    rng = np.random.default_rng(4)
    X = pd.DataFrame(rng.uniform(1, 2, (7, 200)), columns=[f"r{i}" for i in range(200)])
    X["x"] = np.linspace(1, 2, 7)
    y = 3.0 * X["x"].to_numpy() * (1 + 0.02 * rng.standard_normal(7))
    params = dict(max_terms=3, library="linear", fit_intercept=False)
    front = SparseEngine(**params).fit(X, y).pareto_front_
    three = min((c for c in front if len(sp.Add.make_args(c.expr)) == 3), key=lambda c: c.loss)
    one = min((c for c in front if len(sp.Add.make_args(c.expr)) == 1 and c.expr.free_symbols), key=lambda c: c.loss)
    rows = np.arange(7)  # one group per row: leave-one-out
    assert cv_loss(three.expr, X, y, groups=rows) < cv_loss(one.expr, X, y, groups=rows)  # constants-only CV: 3 terms
    n_terms = lambda c: len(sp.Add.make_args(c.expr)) if c.expr.free_symbols else 0  # noqa: E731
    size, crit, losses = select_size_by_cv(lambda Xt, yt: SparseEngine(**params).fit(Xt, yt).pareto_front_,
                                           n_terms, X, y, [1, 2, 3], groups=rows)
    assert size == 1 and set(losses) == {1, 2, 3}
    # refitting only the constants of the forms found on all rows keeps the 3-term form
    from matstore.models.selection import select_by_cv

    chosen, _ = select_by_cv([c for c in front if n_terms(c) >= 1], X, y, n_se=1.0, groups=rows)
    assert n_terms(chosen) == 3
    assert crit == "cv:1se over the model size (search repeated per fold, LeaveOneGroupOut (7 groups))"
    # grouped folds hold whole groups out
    folds = splits(6, np.array(["a", "a", "b", "b", "c", "c"]))
    assert sorted(sorted(map(int, te)) for _, te in folds) == [[0, 1], [2, 3], [4, 5]]


def test_refit_constants_solves_linear_forms_exactly_and_nonlinear_ones_by_least_squares():
    """Linear constants: the exact least-squares solution; nonlinear ones converge; CV refits predict the same."""
    from matstore.models.engines.base import _constant_template, refit_constants, refit_predict
    from matstore.models.expressions import evaluate

    rng = np.random.default_rng(3)
    X = pd.DataFrame({"x": rng.uniform(0.5, 2.0, 40), "z": rng.uniform(0.5, 2.0, 40)})
    x, z = sp.symbols("x z")
    y = 2.5 * X.x**2 - 0.75 * X.z + 0.1 + rng.normal(0, 0.01, 40)
    linear = sp.Float(1.0) * x**2 + sp.Float(-1.0) * z + sp.Float(0.5)
    assert _constant_template(linear).linear
    A = np.column_stack([X.x**2, X.z, np.ones(40)])
    exact, *_ = np.linalg.lstsq(A, y, rcond=None)
    refitted = refit_constants(linear, X, y.to_numpy())
    np.testing.assert_allclose(evaluate(refitted, X), A @ exact, rtol=1e-12)
    nonlinear = sp.Float(2.0) * x / (sp.Float(1.0) + sp.Float(0.5) * z)  # distinct values: one constant each
    assert not _constant_template(nonlinear).linear
    y2 = 3.0 * X.x / (1.0 + 0.2 * X.z)
    got = refit_constants(nonlinear, X, y2.to_numpy())
    np.testing.assert_allclose(evaluate(got, X), y2, rtol=1e-6)
    train, test = X.iloc[:30], X.iloc[30:]
    held_out = refit_predict(linear, train, y.to_numpy()[:30], test)
    np.testing.assert_allclose(held_out, evaluate(refit_constants(linear, train, y.to_numpy()[:30], strict=True), test),
                               rtol=1e-12)
    assert refit_predict(linear, X.iloc[:2], y.to_numpy()[:2], test) is None  # 3 constants, 2 rows


def test_fold_refits_of_an_over_parameterised_form_stop_sooner_at_the_same_loss(monkeypatch):
    """A sum of two rationals with redundant scales (the forms Operon returns for g on
    published-shape tables): the cross-validation refit (``SCORING_FTOL``) stops in under a
    third of the evaluations of the stored-constants refit, its MSE within 0.1 % of it."""
    import scipy.optimize

    from matstore.models.engines.base import SCORING_FTOL, mse_of, refit_constants, refit_predict

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.uniform(0.2, 1.0, 400), "z": rng.uniform(0.2, 1.0, 400)})
    true = ((2 * X.x + X.z) / (1 + 0.5 * X.z)).to_numpy()
    y = true * (1 + 0.02 * rng.standard_normal(400))
    x, z, F = *sp.symbols("x z"), sp.Float
    form = (F(1.3) * (F(1.9) * x + F(1.1) * z) / (F(1.2) + F(0.55) * z)
            + F(0.1) * (F(0.7) * x + F(0.2)) / (F(1.0) + F(0.3) * x))
    runs, solve = [], scipy.optimize.least_squares

    def counted(*args, **kwargs):
        res = solve(*args, **kwargs)
        runs.append((kwargs["ftol"], res.nfev))
        return res

    monkeypatch.setattr(scipy.optimize, "least_squares", counted)
    stored = mse_of(refit_constants(form, X, y), X, y)
    scored = float(np.mean((refit_predict(form, X, y, X) - y) ** 2))
    (tight, tight_nfev), (loose, loose_nfev) = runs
    assert tight == 1e-8 and loose == SCORING_FTOL == 1e-5
    assert loose_nfev * 3 < tight_nfev
    assert scored == pytest.approx(stored, rel=1e-3)
    noise = float(np.mean((y - true) ** 2))  # the true law is one of the form's members
    assert 0.9 * noise < stored <= noise


def test_refit_jacobian_is_scipys_forward_difference_in_one_call():
    """The batched Jacobian of a constant refit equals scipy's "2-point" one, also where the
    template does not broadcast (a Piecewise) and where the residual is not finite."""
    from scipy.optimize._numdiff import approx_derivative

    from matstore.models.engines.base import _constant_template, _masked_residual

    rng = np.random.default_rng(4)
    X = pd.DataFrame({"x": rng.uniform(0.5, 2.0, 30), "z": rng.uniform(-1.0, 2.0, 30)})
    x, z = sp.symbols("x z")
    y = rng.normal(size=30)
    forms = [sp.Float(2.0) * x / (sp.Float(1.0) + sp.Float(0.5) * z),  # broadcasts
             sp.Float(1.5) * sp.sqrt(z) + sp.Float(-0.3) * x,  # NaN where z < 0
             sp.Piecewise((sp.Float(2.0) * x, z > 0), (sp.Float(-1.0) * x ** 2, True))]
    for form in forms:
        tpl = _constant_template(form)
        cols = [X[n].to_numpy() for n in tpl.names]
        with np.errstate(all="ignore"):
            got = tpl.jacobian(tpl.start, cols, y)
            want = approx_derivative(lambda t, tpl=tpl, cols=cols: _masked_residual(tpl.values(t, cols, 30), y),
                                     tpl.start, method="2-point")
        assert got.shape == (30, len(tpl.start))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
