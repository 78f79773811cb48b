"""``matstore pipeline`` end to end on a small real input, in-process and on queue workers."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pandas as pd
import pytest
from sqlalchemy import text

from matstore.models.expressions import evaluate
from matstore.pipeline import PipelineOptions, run_pipeline
from tests.conftest import STRENGTH_DATA


def _count(engine, sql: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar_one()


def _small(**kw) -> PipelineOptions:
    base = dict(elements=("Ag", "Cu", "Ni"), max_index=2, calculators=("emt",), workers=2, engine="sparse",
                time_budget=10, dataset="strength_covariance", use_workers=False)
    return PipelineOptions(**(base | kw))


def test_pipeline_in_process_then_rerun_is_idempotent(engine, monkeypatch) -> None:
    if not STRENGTH_DATA.is_dir():
        pytest.skip(f"shared dataset not found at {STRENGTH_DATA}")
    monkeypatch.setenv("MATSTORE_DATASET_DIR", str(STRENGTH_DATA))
    from matstore.config import get_settings

    get_settings.cache_clear()
    reports = run_pipeline(engine, _small())
    status = {r.name: r.status for r in reports}
    assert status == {"migrate": "done", "compute:emt": "done", "dataset:strength_covariance": "done",
                      "fit:surface_energy_emt": "done", "fit:surface_stress_emt": "done",
                      "fit:surface_stiffness_emt": "done", "fit:surface_energy_openkim": "done",
                      "fit:strength_openkim": "done", "transfer:surface_energy": "done"}, reports
    # 3 metals × 6 distinct surfaces up to index 2, each with γ, τ (mean + 3 components), S (mean + 4)
    assert _count(engine, "SELECT count(*) FROM surface_properties_wide WHERE method = 'emt'") == 18
    assert _count(engine, "SELECT count(*) FROM surface_properties_wide WHERE method = 'emt' AND surface_energy > 0"
                          " AND surface_stress IS NOT NULL AND surface_stiffness IS NOT NULL") == 18
    # γ(111) < γ(100) < γ(110) for every metal
    with engine.connect() as conn:
        rows = conn.execute(text("""SELECT material, miller_h, miller_k, miller_l, surface_energy
            FROM surface_properties_wide WHERE method = 'emt'""")).all()
    gamma = {(r.material, (r.miller_h, r.miller_k, r.miller_l)): r.surface_energy for r in rows}
    for metal in ("Ag", "Cu", "Ni"):
        assert gamma[(metal, (1, 1, 1))] < gamma[(metal, (1, 0, 0))] < gamma[(metal, (1, 1, 0))]
    aliases = _count(engine, "SELECT count(*) FROM equation_alias WHERE alias = 'production'")
    assert aliases == 5
    for name in ("fit:surface_energy_emt", "fit:surface_stress_emt", "fit:surface_stiffness_emt"):
        fit = next(r for r in reports if r.name == name)
        report = fit.data["report"]  # nested and fixed-form CV, fold agreement, interval, worst group
        assert report["cv_scheme"] == "LeaveOneGroupOut (3 groups) by material"
        assert report["fold_agreement"]["n"] == 3 and report["interval"]["level"] == 0.9
        assert "fixed-form R²" in fit.detail and "held-out coverage" in fit.detail
        assert 0 < report["product_ceiling_r2"] <= report["two_product_ceiling_r2"] <= 1
        assert "ceiling of any C·g" in fit.detail and "of C₁·g₁ + C₂·g₂" in fit.detail
    for name in ("fit:surface_stress_emt", "fit:surface_stiffness_emt"):  # a sum of at most two products
        parts = next(r for r in reports if r.name == name).data["parts"]
        assert 1 <= parts["scale_selection"]["products"] == len(parts["products"]) <= 2
    openkim = next(r for r in reports if r.name == "fit:surface_energy_openkim")
    # 153 (element, potential) follow one product, the broken-bond law: γ(111) = 4.62·E_c/a² (J/m², eV, Å)
    (term,) = openkim.data["parts"]["products"]
    assert term["scale"] == "cohesive_energy/lattice_constant**2"
    g111 = evaluate(term["orientation"]["srepr"], pd.DataFrame({f"normal_{x}": [3**-0.5] for x in "xyz"}))
    assert g111[0] == pytest.approx(4.62, abs=0.1)
    assert openkim.data["metrics"]["cv_r2"] > 0.55  # leave one element out
    # each γ equation on the other's surfaces, not refitted; the diagonal is its training R²
    transfer = next(r for r in reports if r.name == "transfer:surface_energy")
    r2 = transfer.data["r2"]  # {used on: {fitted on: R²}}
    emt = next(r for r in reports if r.name == "fit:surface_energy_emt")
    for fit in (emt, openkim):
        assert r2[fit.data["model"]][fit.data["model"]] == pytest.approx(fit.data["metrics"]["train_r2"], abs=1e-6)
    assert -50 < r2["surface_energy_emt"]["surface_energy_openkim"] < 1  # 4.6·E_c/a² on EMT's surfaces
    assert "surface_energy_openkim → surface_energy_emt" in transfer.detail
    strength = next(r for r in reports if r.name == "fit:strength_openkim")
    assert strength.data["metrics"]["cv_r2"] > 0.75  # published 3-factor linear model: 0.856

    again = run_pipeline(engine, _small())
    details = {r.name: r.detail for r in again}
    assert details["compute:emt"].startswith("0 tasks run")
    assert "already stored" in details["dataset:strength_covariance"]
    assert "(unchanged)" in details["fit:surface_energy_emt"]
    assert _count(engine, "SELECT count(*) FROM equation_version") == 5


def test_pipeline_without_dataset_or_lammps_reports_skips(engine, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MATSTORE_DATASET_DIR", str(tmp_path))  # an empty mirror, and no network
    from matstore.config import get_settings

    get_settings.cache_clear()
    reports = run_pipeline(engine, _small(elements=("Cu", "Ni"), max_index=1, calculators=("emt", "no_such_calculator")))
    status = {r.name: r.status for r in reports}
    assert status["compute:no_such_calculator"] == "skipped"
    assert status["dataset:strength_covariance"] == "skipped"
    assert "fit:strength_openkim" not in status and "fit:surface_energy_openkim" not in status
    get_settings.cache_clear()


def test_pipeline_runs_compute_chunks_on_queue_workers(engine, database_url: str, tmp_path) -> None:
    env = {**os.environ, "MATSTORE_DATABASE_URL": database_url}
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE procrastinate_jobs, procrastinate_workers, procrastinate_events RESTART IDENTITY CASCADE"))
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen([sys.executable, "-m", "matstore", "worker", "--heartbeat", "0.5"], env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while _count(engine, "SELECT count(*) FROM procrastinate_workers") == 0:
            assert worker.poll() is None and time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.3)
        reports = run_pipeline(engine, _small(elements=("Cu", "Ag"), max_index=1, dataset=None, use_workers=True))
        compute = next(r for r in reports if r.name == "compute:emt")
        assert compute.status == "done", compute
        assert "queue workers" in compute.detail
        done = _count(engine, "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'compute_chunk' AND status = 'succeeded'")
        assert done == 2 + 2 * 3  # bulk chunks, then 3 surfaces per metal, each exactly once
        assert _count(engine, "SELECT count(*) FROM surface_properties_wide WHERE method = 'emt'") == 6
        assert {r.name: r.status for r in reports}["fit:surface_energy_emt"] == "done"
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        log.close()


def test_pipeline_vacancy_clusters_flag_stores_and_fits_per_configuration(engine) -> None:
    """``--vacancy-clusters``: clusters stored per configuration, fitted leaving one metal out."""
    from tests.test_vacancy_clusters import _lammps_ok

    if not _lammps_ok():
        pytest.skip("the lammps Python module cannot be loaded")
    reports = run_pipeline(engine, _small(calculators=("lammps",), max_index=1, dataset=None,
                                          vacancy_clusters=True))
    status = {r.name: r.status for r in reports}
    assert status["compute:vacancy-clusters:lammps"] == "done", reports
    assert status["fit:vacancy_cluster_binding_lammps"] == "done", reports
    # 26 clusters per metal (1 mono-, 6 di-, 19 tri-vacancies), each its own configuration
    assert _count(engine, "SELECT count(*) FROM material_configuration") == 3 * 26
    with engine.connect() as conn:
        binding = conn.execute(text("""SELECT value FROM property_values WHERE property = 'binding_energy'
            AND material = 'Cu' AND configuration_key LIKE 'V2:0.7071%'""")).scalar_one()
    assert 0.1 < binding < 0.3  # nearest-neighbour divacancy binding in Cu u3 (test_vacancy_clusters)
    fit = next(r for r in reports if r.name == "fit:vacancy_cluster_binding_lammps")
    assert fit.data["report"]["cv_scheme"] == "LeaveOneGroupOut (3 groups) by material"


def test_report_line_prints_the_stored_interval_width() -> None:
    """The interval in the report line: ± q in the target unit (absolute) or ± q % (relative)."""
    from matstore.pipeline import _report_line

    report = {"fold_agreement": {"agree": 3, "n": 3}, "fixed_form_cv": {"r2": 0.9}}
    absolute = {"level": 0.9, "score": "absolute", "half_width": 0.12, "relative_half_width": None,
                "held_out_coverage": 0.88}
    relative = absolute | {"score": "relative", "half_width": None, "relative_half_width": 0.095}
    assert "90% interval ± 0.12 (held-out coverage 88%)" in _report_line({}, report | {"interval": absolute})
    assert "90% interval ± 9.5 % (held-out coverage 88%)" in _report_line({}, report | {"interval": relative})


def test_report_line_prints_the_coverage_spread_and_a_budget_too_small() -> None:
    """Coverage with its standard error and fold range; the least time when the budget could not cover the fit."""
    from matstore.pipeline import _report_line

    report = {"fold_agreement": {"agree": 3, "n": 3}, "fixed_form_cv": {"r2": 0.9}, "time_budget": 20,
              "interval": {"level": 0.9, "score": "absolute", "half_width": 0.12, "held_out_coverage": 0.83,
                           "held_out_coverage_spread": {"min": 0.0, "max": 1.0, "standard_error": 0.17, "folds": 6}},
              "time_budget_floor": {"floor_seconds": 64.4, "engine_runs": 16, "engine_floor_seconds": 3.4,
                                    "fixed_seconds_per_fit": 6.0}}
    line = _report_line({}, report)
    assert "(held-out coverage 83% ± 17% (folds 0%–100%))" in line
    assert ("the 20 s budget is below this fit's least time, ≈ 64 s: 16 time-limited engine runs of at least 3.4 s "
            "in all, and ≈ 6.0 s of checks and selection per fit") in line
