"""The Equations page shows the report fields ``matstore fit`` and ``models show`` print, in their words.

Two stored versions with crafted reports (written directly, no fit: the page only reads them):

- ``mixed_failed``: 3 DFT-PBE and 2 EAM rows, every nested-CV fold failed, and the stale
  nested R² 0.937 and interval ± 0.2 an older fit would have stored from the failed folds;
- ``one_method``: 5 EMT rows, 1 of 2 nested folds failed, nested R² 0.81, interval ± 0.05 J/m².

Both predict γ = 0.25·a·(1 + n_x) (J/m², a in Å) with the training domain the fits store
(:func:`matstore.models.service._domain`: a in 3.52 … 4.09 Å, orientations (100) and (111)).
The texts are those of :mod:`matstore.models.report` and of ``matstore predict``
(tests/test_predict_domain.py checks the same lines from the CLI side).
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pandas as pd
import pytest
import sympy as sp
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from matstore.dashboard import queries
from matstore.models.service import _domain
from matstore.schema import EquationModel, EquationVersion
from tests.conftest import DATA_TABLES
from tests.dashboard_fixtures import restore, use_store
from tests.test_dashboard_apptest import page_text, run_page

A, NX = sp.symbols("lattice_constant normal_x")
EQUATION = 0.25 * A * (1 + NX)
#: Training rows of the stored domain: a (Å) and Miller index; (100) and (111) only.
TRAINING = pd.DataFrame({"lattice_constant": [3.52, 4.09, 3.8, 3.6], "miller_h": [1, 1, 1, 1],
                         "miller_k": [0, 1, 0, 1], "miller_l": [0, 1, 0, 1]})
FAILURE = "ValueError: the constants of this form cannot be determined from these rows"
MIXED_NOTE = ("note: 2 methods mixed in one fit: one equation for all of them, so their systematic differences "
              "count as scatter (--method NAME fits one)")
EXTRAPOLATED = "the prediction is extrapolated and its interval is not calibrated there"


def _fold(k: int, material: str, failure: str | None, r2: float | None) -> dict:
    record = {"fold": k, "held_out": [material], "n_test": 2, "form": "" if failure else "a*x*(1 + y)",
              "equation": "", "same_as_full": failure is None, "failed": failure is not None,
              "nested_r2": r2, "nested_rmse": None if failure else 0.04, "fixed_form_r2": 0.8,
              "fixed_form_rmse": 0.05}
    return record | ({"failure": failure} if failure else {})


def _report(rows_per_method: dict[str, int], failures: list[str | None], nested_r2: float | None,
            half_width: float) -> dict:
    """A fit report as fit_report stores it (only the keys the page reads)."""
    folds = [_fold(k, m, f, None if f else nested_r2) for k, (m, f) in enumerate(zip(("Cu", "Ni"), failures,
                                                                                        strict=True))]
    failed = sum(f is not None for f in failures)
    return {"cv_scheme": "LeaveOneGroupOut (2 groups) by material", "rows_per_method": rows_per_method,
            "nested_cv": {"r2": nested_r2, "rmse": 0.04, "mae": 0.03, "failed_folds": failed, "n_folds": 2},
            "fixed_form_cv": {"r2": 0.8, "rmse": 0.05, "mae": 0.04, "failed_folds": 0},
            "fold_agreement": {"agree": 2 - failed, "n": 2, "fraction": (2 - failed) / 2, "full_form": "a*x*(1 + y)"},
            "folds": folds, "per_group": [], "discrepancy": "",
            "interval": {"method": "cross-conformal (crafted)", "score": "absolute", "level": 0.9,
                         "half_width": half_width, "relative_half_width": None, "held_out_coverage": 0.9},
            "domain": _domain(TRAINING, ["lattice_constant"])}


def _add_version(session: Session, name: str, report: dict, metrics: dict, residual_std: float | None) -> int:
    model = EquationModel(name=name, target="surface_energy", target_unit="J/m^2", spec={}, description=None)
    session.add(model)
    session.flush()
    session.add(EquationVersion(
        model_id=model.id, version=1, dataset_sha256="0" * 64, dataset_query="crafted", n_rows=5,
        spec_sha256="0" * 64, features=[{"name": "lattice_constant", "unit": "angstrom"}], target_unit="J/m^2",
        engine="sparse", engine_versions={}, hyperparameters={"group_by": "material"}, seed=0, pareto_front=[],
        equation_srepr=sp.srepr(EQUATION), equation_text=sp.sstr(EQUATION), equation_latex=sp.latex(EQUATION),
        equation_sha256="0" * 64, parts={}, selection_criterion="knee", metrics=metrics,
        residual_std=residual_std, dimension_check="consistent", report=report, interval_level=0.9,
        interval_half_width=report["interval"]["half_width"]))
    session.flush()
    return int(model.id)


@pytest.fixture(scope="module")
def models(session_engine: Engine, database_url: str) -> Iterator[SimpleNamespace]:
    """The two crafted models in the test database, read by the dashboard; emptied afterwards."""
    with Session(session_engine) as session:
        ids = SimpleNamespace(
            mixed_failed=_add_version(
                session, "mixed_failed", _report({"EAM": 2, "DFT-PBE": 3}, [FAILURE, FAILURE], 0.937, 0.2)
                | {"materials_per_prototype": {"Im-3m": 1, "Fm-3m": 1}},
                {"cv_r2": 0.937, "cv_rmse": 0.04, "cv_n_splits": 2.0, "cv_failed_folds": 2.0,
                 "fixed_form_cv_r2": 0.8, "train_r2": 0.95, "interval_half_width": 0.2}, None),
            one_method=_add_version(
                session, "one_method", _report({"EMT": 5}, [None, "non-finite predictions on 1 held-out row"],
                                               0.81, 0.05) | {"materials_per_prototype": {"fcc": 2}},
                {"cv_r2": 0.81, "cv_rmse": 0.04, "cv_n_splits": 2.0, "cv_failed_folds": 1.0,
                 "fixed_form_cv_r2": 0.8, "train_r2": 0.95, "interval_half_width": 0.05}, 0.04))
        session.commit()
    saved = use_store(database_url)
    queries.clear_caches()
    yield ids
    restore(saved)
    queries.clear_caches()
    with session_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))


def _warnings(at: AppTest) -> list[str]:
    return [w.value for w in at.warning]


def test_methods_and_failed_folds_read_as_models_show_prints_them(models: SimpleNamespace) -> None:
    at = run_page("equations", model=str(models.mixed_failed), view="report")
    captions = [c.value for c in at.caption]
    assert "methods: DFT-PBE (3 rows), EAM (2)" in captions
    assert MIXED_NOTE in _warnings(at)
    # the crystal prototypes, in fit's words (a direct fit: "one equation for all of them")
    assert "prototypes: Fm-3m (1 material), Im-3m (1)" in captions
    assert [w for w in _warnings(at) if w.startswith("note: 2 prototypes mixed in one fit: one equation for all")]
    assert f"nested CV: 2 of 2 folds failed: {FAILURE}; nested R² not available" in _warnings(at)
    # no nested R² number, no interval from the failed folds: only "not available"
    shown = page_text(at)
    assert "0.937" not in shown and "0.9370" not in shown
    assert {m.label: m.value for m in at.metric}["nested CV R²"] == "not available"
    assert "No prediction interval: every nested-CV fold failed." in captions
    assert not [c for c in captions if "prediction interval: value" in c]
    comparison = at.dataframe[0].value
    nested = comparison.iloc[0]
    assert nested["cross-validation"] == "nested (search and selection re-run per fold): not available, every fold failed"
    assert pd.isna(nested["R²"]) and nested["failed folds"] == 2
    assert comparison.iloc[1]["R²"] == pytest.approx(0.8)


def test_lineage_leaves_the_cv_r2_of_failed_folds_blank(models: SimpleNamespace) -> None:
    failed = run_page("equations", model=str(models.mixed_failed), view="lineage").dataframe[0].value
    assert failed.iloc[0]["cv_r2"] == "" and failed.iloc[0]["train_r2"] == pytest.approx(0.95)
    kept = run_page("equations", model=str(models.one_method), view="lineage").dataframe[0].value
    assert kept.iloc[0]["cv_r2"] == pytest.approx(0.81)


def test_one_method_and_one_failed_fold_keep_the_nested_score(models: SimpleNamespace) -> None:
    at = run_page("equations", model=str(models.one_method), view="report")
    captions = [c.value for c in at.caption]
    assert "methods: EMT (5 rows)" in captions and "prototypes: fcc (2 materials)" in captions
    assert _warnings(at) == ["nested CV: 1 of 2 folds failed: non-finite predictions on 1 held-out row"]
    assert {m.label: m.value for m in at.metric}["nested CV R²"] == "0.81"
    assert "90% prediction interval: value -0.05 … +0.05 J/m² (cross-conformal (crafted)); held-out coverage 90%." \
        in captions


def _predict(model_id: int, a: float, hkl: tuple[int, int, int]) -> AppTest:
    at = run_page("equations", model=str(model_id), view="predict")
    at.number_input(key="x_lattice_constant_typed").set_value(a)
    for name, index in zip("hkl", hkl, strict=True):
        at.number_input(key=f"p_{name}").set_value(index)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_predict_inside_the_training_domain_has_no_warning(models: SimpleNamespace) -> None:
    at = _predict(models.one_method, 3.8, (1, 1, 1))
    assert _warnings(at) == ["nested CV: 1 of 2 folds failed: non-finite predictions on 1 held-out row"]
    value = 0.25 * 3.8 * (1 + 3**-0.5)  # 1.4985 J/m²
    assert at.success[0].value == (f"surface_energy = {value:.5g} J/m²; 90% prediction interval "
                                   f"[{value - 0.05:.5g} J/m², {value + 0.05:.5g} J/m²] (cross-conformal (crafted))")


def test_predict_outside_the_training_domain_warns_and_marks_the_result(models: SimpleNamespace) -> None:
    at = _predict(models.one_method, 5.0, (1, 1, 0))
    assert _warnings(at)[1:] == [
        "lattice_constant = 5 angstrom is outside the training range 3.52 … 4.09 angstrom (0.91 angstrom above "
        f"the maximum, 1.6× the range's width): {EXTRAPOLATED}",
        "orientation (1,1,0) was not in the training set (2 orientations: (1,0,0), (1,1,1)); the equation's "
        "orientation dependence is extrapolated and the interval is not calibrated there"]
    value = 0.25 * 5.0 * (1 + 2**-0.5)
    assert at.success[0].value.startswith(
        f"surface_energy = {value:.5g} J/m² (extrapolated: lattice_constant, orientation); 90% prediction interval")


def test_predict_after_every_fold_failed_shows_no_interval(models: SimpleNamespace) -> None:
    at = _predict(models.mixed_failed, 3.8, (1, 0, 0))
    assert [s.value for s in at.success] == [f"surface_energy = {0.25 * 3.8 * 2:.5g} J/m²"]


def test_predict_from_a_stored_material_of_an_untrained_prototype_warns(models: SimpleNamespace,
                                                                       session_engine: Engine) -> None:
    """The Predict tab's inputs from stored bcc Fe, for a model trained on Fm-3m only: predict's warning."""
    from matstore.dashboard.predict_form import prototype_check
    from matstore.schema import Material

    with Session(session_engine) as session:
        fe, cu = Material(formula="Fe", prototype="Im-3m", composition={"Fe": 1}), \
            Material(formula="Cu", prototype="Fm-3m", composition={"Cu": 1})
        session.add_all([fe, cu])
        session.commit()
        fe_id, cu_id = fe.id, cu.id
    queries.clear_caches()
    trained = {"id": 1, "report": {"domain": {"prototypes": ["Fm-3m"]}}}
    assert prototype_check(trained, f"m:{fe_id}:1") == [
        f"prototype Im-3m: the model was trained on Fm-3m only; {EXTRAPOLATED}"]
    assert prototype_check(trained, f"m:{cu_id}:1") == []
    assert prototype_check(trained, "typed") == []
    assert prototype_check({"id": 1, "report": {"domain": {}}}, f"m:{fe_id}:1") == []  # fitted before prototypes
