"""What a fit says about its own scores: folds that hold materials out, the methods mixed, failed folds, budgets.

New-user trials found a bulk fit of several methods per metal scored with shuffled folds (the
metal's other rows in training: R² 0.87 against 0.29 holding metals out), no word of the
methods in a fit, a two-host per-configuration fit whose every nested fold failed yet printed
``cross-validated R² = -0.000`` with an interval built from the failures, and a time budget
the sparse engine ignores without a word.  These tests pin the fixes.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, RegressorMixin
from sqlalchemy import text
from sqlmodel import Session

from matstore import crud
from tests.test_group_by import populate_configurations

#: Elements (cohesive energy, eV/atom) × methods (factor on the vacancy energy) of the bulk table.
ELEMENTS = {"Fe": 4.28, "W": 8.90, "Ti": 4.85, "Cu": 3.49}
METHODS = {"DFT-PBE": ("dft", 1.00), "EAM": ("interatomic_potential", 0.95), "MEAM": ("interatomic_potential", 1.06)}


def populate_bulk(engine, methods: dict = METHODS) -> None:
    """``vacancy_formation_energy`` (eV) = 0.4·E_c·(method factor) + a per-element offset, every element × method."""
    run = crud.start_job_run(engine=engine, kind="test", parameters={})
    with Session(engine) as s:
        defs, rows = crud.definitions(session=s), []
        source = crud.claim_source(session=s, kind="computation", sha256="a" * 64)
        for i, (element, cohesive) in enumerate(ELEMENTS.items()):
            material = crud.get_or_create_material(session=s, formula=element)
            for name, (kind, factor) in methods.items():
                method = crud.get_or_create_method(session=s, name=name, kind=kind)
                for prop, value in (("cohesive_energy", cohesive * factor),
                                    ("vacancy_formation_energy", 0.4 * cohesive * factor + 0.1 * (-1) ** i)):
                    rows.append(dict(material_id=material, method_id=method, definition_id=defs[prop].id,
                                     value=value, source_id=source, job_run_id=run))
        crud.add_bulk_properties(session=s, rows=rows)
        s.commit()


def _spec(**kw):
    from matstore.models.spec import FitSpec

    base = dict(name="vf", target="vacancy_formation_energy", features=["cohesive_energy"], engine="sparse",
                time_budget=10, seed=0)
    return FitSpec(**(base | kw))


def test_bulk_table_with_several_rows_per_material_holds_materials_out(engine):
    """Default grouping of a bulk target whose metals each have three methods: one metal (all its rows) per fold."""
    from matstore.models.report import methods_note, methods_text, scheme_text
    from matstore.models.service import fit_model

    populate_bulk(engine)
    outcome = fit_model(engine, _spec())
    report = outcome.version.report
    assert report["cv_scheme"] == "LeaveOneGroupOut (4 groups) by material"
    assert report["cv_grouping"] == ("the default for a bulk target whose materials have several rows (4 of 4 "
                                     "materials, e.g. one per method): each fold holds out every row of its materials")
    assert scheme_text(report) == f"LeaveOneGroupOut (4 groups) by material ({report['cv_grouping']})"
    assert [(f["held_out"], f["n_test"]) for f in report["folds"]] == [([e], 3) for e in sorted(ELEMENTS)]
    assert report["rows_per_method"] == {"DFT-PBE": 4, "EAM": 4, "MEAM": 4} == outcome.rows_per_method
    assert methods_text(report["rows_per_method"]) == "DFT-PBE (4 rows), EAM (4), MEAM (4)"
    assert methods_note(report["rows_per_method"]).startswith("3 methods mixed in one fit: one equation for all")
    # asked for explicitly, another grouping is used as asked
    by_method = fit_model(engine, _spec(name="vf_by_method", group_by="method")).version.report
    assert by_method["cv_scheme"] == "LeaveOneGroupOut (3 groups) by method"
    assert by_method["cv_grouping"] == "as asked (--group-by method)"


def test_bulk_table_with_one_row_per_material_keeps_shuffled_folds(engine):
    from matstore.models.report import methods_note
    from matstore.models.service import fit_model

    populate_bulk(engine, {"DFT-PBE": METHODS["DFT-PBE"]})
    report = fit_model(engine, _spec()).version.report
    assert report["cv_scheme"] == "KFold(4, shuffle, random_state=0)"
    assert report["cv_grouping"] == "every material has one row, so each fold holds out whole materials"
    assert report["rows_per_method"] == {"DFT-PBE": 4} and methods_note(report["rows_per_method"]) == ""


def test_default_rule_of_bulk_targets_groups_repeated_materials():
    """The rule on bare tables: repeated materials → material; one row each → shuffled; one material → shuffled, said so."""
    from matstore.models.service import _cv_grouping

    bulk = SimpleNamespace(target_scope="bulk")
    metals = pd.DataFrame({"material": ["Cu", "Cu", "Ni"], "material_id": [1, 1, 2], "method": ["u3", "emt", "emt"],
                           "chemical_system": ["Cu", "Cu", "Ni"]})
    assert _cv_grouping(metals, _spec(), bulk) == (
        "material", "the default for a bulk target whose materials have several rows (1 of 2 materials, e.g. one per "
                    "method): each fold holds out every row of its materials")
    # two polymorphs of one formula are two materials (composition and prototype), one row each
    polymorphs = metals.assign(material_id=[1, 3, 2])
    assert _cv_grouping(polymorphs, _spec(), bulk)[0] is None
    one = metals[metals["material"] == "Cu"]
    assert _cv_grouping(one, _spec(), bulk) == (
        None, "one material only (Cu): nothing to hold out as a group, so shuffled folds (its rows are in training "
              "and test folds)")


#: Two host materials of the per-configuration table (offset of the formation energy, eV).
TWO_HOSTS = {"MoS2": 0.0, "WSe2": 0.4}


def populate_two_hosts(engine) -> None:
    """``formation_energy`` (eV) = 1.5·d_vv_1 + the host's offset ± 0.01 for 12 configurations of each of two hosts."""
    populate_configurations(engine, hosts=TWO_HOSTS, noise=0.01, source_hash="b" * 64)


def test_two_hosts_per_configuration_fall_back_to_an_ungrouped_inner_cv(user_vocabulary_engine):
    """Each fold trains on one host: its selection's inner CV falls back to shuffled folds instead of failing."""
    from sklearn.metrics import r2_score

    from matstore.models.report import cv_notes, failure_lines
    from matstore.models.service import fit_model

    engine = user_vocabulary_engine
    populate_two_hosts(engine)
    version = fit_model(engine, _spec(name="tmd", target="formation_energy", features=["d_vv_1"])).version
    report, metrics = version.report, version.metrics
    assert report["cv_scheme"] == "LeaveOneGroupOut (2 groups) by material"
    assert report["cv_grouping"].startswith("the default for a configuration target: many rows per material")
    assert [f["held_out"] for f in report["folds"]] == [["MoS2"], ["WSe2"]]
    assert [f["failed"] for f in report["folds"]] == [False, False] and metrics["cv_failed_folds"] == 0
    fallback = "KFold(5, shuffle, random_state=0), ungrouped: one group only"
    assert [f["inner_cv"] for f in report["folds"]] == [fallback, fallback]
    assert cv_notes(report) == [
        "2 groups only: the nested R² is a 2-group transfer estimate (each fold fits one group and predicts the "
        "other), not an average over many unseen groups",
        f"inner CV of the selection in 2 of 2 folds: {fallback} (their training rows hold one group; grouped CV "
        "needs two)"]
    assert failure_lines(report) == []
    # the nested R² is the score of the real out-of-fold predictions, every row predicted by its host's fold
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT observed, cv_predicted FROM equation_prediction")).all()
    observed, predicted = np.array([r[0] for r in rows]), np.array([r[1] for r in rows], dtype=float)
    assert len(rows) == 24 and np.all(np.isfinite(predicted))
    assert metrics["cv_r2"] == pytest.approx(r2_score(observed, predicted), rel=1e-9)
    assert metrics["cv_r2"] > 0.5  # 1.5·d_vv_1 transfers between the hosts up to their 0.4 eV offset
    assert version.interval_half_width is not None


class _FailsOnFolds(BaseEstimator, RegressorMixin):
    """A fitting procedure that fits the full table (12 rows) and raises on any fold's fewer rows."""

    def __init__(self, n_full: int = 12) -> None:
        self.n_full = n_full

    def fit(self, X, y, groups=None):  # noqa: ANN001
        import sympy as sp

        if len(y) < self.n_full:
            raise ValueError("cross-validation by groups needs at least two groups\nsecond line")
        self.equation_ = 2.0 * sp.Symbol("x")
        self.selection_ = "aicc"
        return self

    def predict(self, X):  # noqa: ANN001
        return 2.0 * np.asarray(X["x"], dtype=float)


def test_a_fit_whose_folds_all_failed_has_no_nested_score_and_no_interval(capsys):
    """Every nested fold failed: R² None (not the penalty's −0.000), no interval, the reason printed."""
    from sklearn.model_selection import LeaveOneGroupOut

    from matstore.cli import models as cli
    from matstore.models.fitting import _metrics, fit_report
    from matstore.models.report import failure_lines, failure_reason
    from matstore.models.service import _jsonable

    X = pd.DataFrame({"x": np.arange(12.0)})
    y, groups = 2.0 * np.arange(12.0) + np.tile([0.1, -0.1], 6), np.repeat(["MoS2", "WSe2"], 6)
    est = _FailsOnFolds().fit(X, y)
    report = fit_report(est, X, y, groups, LeaveOneGroupOut(), "LeaveOneGroupOut (2 groups) by material", 0.9)
    assert np.all(np.isnan(report["oof"]))
    assert np.isnan(report["nested_cv"]["r2"]) and report["nested_cv"]["failed_folds"] == 2
    assert report["fixed_form_cv"]["failed_folds"] == 0 and report["fixed_form_cv"]["r2"] > 0.99
    reason = "ValueError: cross-validation by groups needs at least two groups"
    assert [f["failure"] for f in report["folds"]] == [reason, reason]
    assert report["interval"]["half_width"] is None and "every fold failed" in report["interval"]["error"]
    assert all(g["rmse"] is None for g in report["per_group"])
    metrics = _jsonable(_metrics(y, est.predict(X), report))
    assert metrics["cv_r2"] is None and metrics["interval_half_width"] is None
    stored = _jsonable({k: v for k, v in report.items() if k not in ("oof", "time_limited")})
    assert failure_lines(stored) == [f"nested CV: 2 of 2 folds failed: {reason}; nested R² not available"]
    assert failure_reason(ValueError("x" * 300)).endswith("…") and len(failure_reason(ValueError("x" * 300))) == 200

    version = SimpleNamespace(version=1, target_unit="eV", equation_text="2.0*x", metrics=metrics, report=stored,
                              interval_half_width=None, interval_relative_half_width=None, interval_level=0.9,
                              engine="sparse")
    outcome = SimpleNamespace(version=version, created=True, reason="new", n_rows=12, dropped=0, conflicts=(),
                              rows_per_method={"DFT-PBE": 12})
    with cli.console.capture() as captured:
        cli._report_outcome("tmd", outcome)
    lines = captured.get().splitlines()
    assert "  cross-validated R² not available: every nested-CV fold failed (LeaveOneGroupOut (2 groups) by material)" \
        in lines, lines
    assert f"  warning: nested CV: 2 of 2 folds failed: {reason}; nested R² not available" in lines, lines
    assert "  methods: DFT-PBE (12 rows)" in lines
    assert not any("prediction interval" in line or "R² = -0" in line for line in lines), lines


def test_some_failed_folds_are_counted_with_their_reasons():
    from matstore.models.report import CrossFit, failure_text

    report = {"nested_cv": {"failed_folds": 3, "n_folds": 10},
              "folds": [{"failure": "A"}, {"failure": "B"}, {"failure": "A"}] + [{}] * 7}
    assert failure_text(report) == "3 of 10 folds failed: A (2 folds); B (1 fold)"
    old = {"nested_cv": {"failed_folds": 1, "n_folds": 5}, "folds": [{}] * 5}
    assert failure_text(old) == "1 of 5 folds failed: reason not recorded (fitted before fold failures were recorded)"
    assert CrossFit(np.zeros(2), [None], [np.arange(2)], [False]).reasons == []


def test_time_budget_lines_say_overruns_and_engines_that_ignore_the_budget():
    from matstore.models.report import time_budget_engines, time_lines

    assert time_budget_engines() == ["eql", "operon", "pysr"]
    over = {"seconds": {"total": 12.44}, "time_budget": 10, "fold_jobs": 2,
            "time_budget_floor": {"floor_seconds": 11.6, "engine_runs": 3, "engine_floor_seconds": 3.0,
                                  "fixed_seconds_per_fit": 2.9}}
    assert time_lines(over, "operon") == [
        "wall time 12.4 s (budget 10 s, 2.4 s over), CV folds 2 at a time",
        "the 10 s budget is below this fit's least time, ≈ 12 s: 3 time-limited engine runs of at least 3.0 s in "
        "all, and ≈ 2.9 s of checks and selection per fit"]
    assert time_lines({"seconds": {"total": 0.8}, "time_budget": 10}, "sparse") == [
        "wall time 0.8 s (budget 10 s)",
        "the sparse engine has no time limit: --time-budget applies only to engines that honour it (eql, operon, pysr)"]
    assert time_lines({}, "sparse") == []


def test_cli_fit_prints_methods_grouping_and_budget_note(engine, database_url):
    """``matstore fit`` on the three-method table: methods line, mixed-methods note, why the folds, the sparse note."""
    from tests.test_cli_db import run_cli, server_env

    populate_bulk(engine)
    env = server_env(database_url)
    out = run_cli("fit", "--name", "vf", "--target", "vacancy_formation_energy", "--features", "cohesive_energy",
                  "--engine", "sparse", "--time-budget", "10", "--group-by", "material", env=env).stdout
    lines = out.splitlines()
    assert "  methods: DFT-PBE (4 rows), EAM (4), MEAM (4)" in lines, out
    assert ("  note: 3 methods mixed in one fit: one equation for all of them, so their systematic differences count "
            "as scatter (--method NAME fits one)") in lines, out
    assert re.search(r"^  cross-validated R² = -?\d\.\d{3}, pooled over the held-out rows of all 4 folds \(nested: the whole "
                     r"fit re-run per fold; LeaveOneGroupOut "
                     r"\(4 groups\) by material \(the default for a bulk target whose materials have several rows "
                     r"\(4 of 4 materials, e\.g\. one per method\): each fold holds out every row of its materials\)\)$",
                     out, re.M), out
    assert re.search(r"^  wall time \d+\.\d s \(budget 10 s\)$", out, re.M), out
    assert ("  the sparse engine has no time limit: --time-budget applies only to engines that honour it "
            "(eql, operon, pysr)") in lines, out
    assert "warning" not in out, out
    shown = run_cli("models", "show", "vf", env=env).stdout
    assert "  methods: DFT-PBE (4 rows), EAM (4), MEAM (4)" in shown.splitlines(), shown
    assert "  cross-validation: LeaveOneGroupOut (4 groups) by material (the default for a bulk target" in shown


def test_dashboard_says_why_the_folds_were_chosen_as_fit_and_show_do():
    """The dashboard's "how obtained" sentence carries the stored ``cv_grouping`` reason, as
    ``matstore fit`` and ``models show`` print it; a report without one keeps the older wording."""
    from matstore.dashboard.reports import how_obtained
    from matstore.models.report import grouping_text

    scheme = "LeaveOneGroupOut (4 groups) by material"
    why = "the default for a bulk target whose materials have several rows (4 of 4 materials, e.g. one per method)"
    new = {"report": {"cv_scheme": scheme, "cv_grouping": why}, "metrics": {}, "hyperparameters": {"group_by": "material"}}
    old = {"report": {"cv_scheme": scheme}, "metrics": {}, "hyperparameters": {"group_by": "material"}}
    assert how_obtained(new).startswith(f"Cross-validation: {scheme} ({why});")
    assert how_obtained(old).startswith(f"Cross-validation: {grouping_text(scheme, 'material')};")
