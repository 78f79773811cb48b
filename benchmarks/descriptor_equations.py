"""Descriptor-table equations: symbolic engines against a tree ensemble and a physical baseline.

Two per-row descriptor tables, one protocol (no setting tuned to either table):

1. **Vacancy clusters** (computed here by matstore, :mod:`matstore.ingest.compute.vacancy_clusters`,
   LAMMPS u3 EAM and EMT, the FCC metals): target the relaxed tri-vacancy formation energy
   (eV); descriptors the three sorted vacancy–vacancy distances (Å), the number of
   nearest-neighbour pairs, and per material/potential the lattice constant (Å), the
   monovacancy formation energy and the nearest-neighbour divacancy binding energy (eV).
   Folds are grouped by (metal, potential): every test fold holds metals the fit has never
   seen.  Physical baseline: pair additivity, ``E_f(V3) = 3 E_f(V1) − Σ_pairs E_b(V2, d_ij)``
   with the same metal's computed divacancy binding energies (no fitted parameter).
2. **Strength of the OpenKIM potentials** (Jasperson et al., arXiv:2406.05146, table in
   ``/work/shared/data/strength_covariance``): target strength_MPa; ten indicator
   properties; folds grouped by element.  Physical baseline: the published three-factor
   linear model (vacancy migration energy, γ(111), lattice constant) refitted per fold.

Each symbolic engine (``sparse``, ``operon``, ``eql``, default parameters, ``time_limit`` =
the budget) is fitted on every training fold; from its Pareto front the lowest-training-loss
equation of complexity ≤ 25 that passes the pole/finiteness checks
(:func:`matstore.models.validation.check_finite_and_bounded`, on the training and held-out
descriptors) predicts the held-out fold.  Reported: pooled out-of-fold MAE, its ratio to the
tree ensemble's (the target is ≤ 1.5), the complexity and wall time of the equation fitted
on all rows.  References: ExtraTrees (Geurts et al., Mach. Learn. 63, 3 (2006)) and
HistGradientBoosting (scikit-learn), same folds.

Run: ``python benchmarks/descriptor_equations.py [--engines sparse operon eql] [--budgets 30]
[--vacancy-table clusters.csv]`` (the table is computed when not given, ~1 min on 2 cores).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import console, markdown_table, print_machine, print_table
from sklearn.ensemble import ExtraTreesRegressor, HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import GroupKFold, KFold

from matstore.models.engines import get_engine
from matstore.models.engines.base import evaluate_expr, real_or_nan
from matstore.models.validation import check_finite_and_bounded

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "strength_covariance"
MAX_COMPLEXITY = 25
N_SPLITS = 5
VACANCY_FEATURES = ["vv_distance_1", "vv_distance_2", "vv_distance_3", "n_nearest_neighbour_pairs",
                    "lattice_constant", "monovacancy_formation_energy", "divacancy_binding_energy"]
#: Indicator columns of the strength table (fcc), named as in matstore's vocabulary.
STRENGTH_COLUMNS = {
    "vacancy_migration_energy_fcc": "vacancy_migration_energy", "surface_energy_111_fcc": "surface_energy_111",
    "lattice_constant_fcc": "lattice_constant", "c44_fcc": "c44", "c11_fcc": "c11", "c12_fcc": "c12",
    "cohesive_energy_fcc": "cohesive_energy", "intr_stack_fault_energy_fcc": "stacking_fault_energy",
    "unstable_stack_energy_fcc": "unstable_stacking_fault_energy",
    "relaxed_formation_potential_energy_fcc": "vacancy_formation_energy",
}
PUBLISHED = ["vacancy_migration_energy", "surface_energy_111", "lattice_constant"]


# --------------------------------------------------------------------------- data


def vacancy_dataset(path: str | None) -> tuple[pd.DataFrame, list[str], str, np.ndarray, np.ndarray]:
    """Tri-vacancy rows with their descriptors, groups and the pair-additive prediction."""
    if path:
        table = pd.read_csv(path)
    else:
        from matstore.ingest.compute.vacancy_clusters import vacancy_cluster_table

        t0 = time.perf_counter()
        table, failures = vacancy_cluster_table(["Ag", "Al", "Au", "Cu", "Ni", "Pd", "Pt"], ["lammps", "emt"])
        console.print(f"vacancy clusters: {len(table)} configurations in {time.perf_counter() - t0:.0f} s"
                      + (f"; failed: {failures}" if failures else ""))
    table["group"] = table["method"] + " " + table["element"]
    di = table[table["n_vacancies"] == 2]
    shell = di.assign(shell=(di["vv_distance_1"] / di["lattice_constant"]).round(3))
    binding = {(g, s): e for g, s, e in shell[["group", "shell", "binding_energy"]].itertuples(index=False)}
    nn = shell[shell["shell"] == round(np.sqrt(0.5), 3)].set_index("group")["binding_energy"]
    tri = table[table["n_vacancies"] == 3].reset_index(drop=True)
    tri["divacancy_binding_energy"] = tri["group"].map(nn)

    def pair_additive(row) -> float:
        pairs = [round(row[c] / row["lattice_constant"], 3) for c in ("vv_distance_1", "vv_distance_2", "vv_distance_3")]
        return 3 * row["monovacancy_formation_energy"] - sum(binding.get((row["group"], s), 0.0) for s in pairs)

    baseline = tri.apply(pair_additive, axis=1).to_numpy()
    return tri, VACANCY_FEATURES, "formation_energy", tri["group"].to_numpy(), baseline


def strength_dataset() -> tuple[pd.DataFrame, list[str], str, np.ndarray, None]:
    """OpenKIM potentials with every indicator present; groups = element."""
    raw = pd.read_csv(SHARED / "data" / "models_w_props.csv")
    table = raw.rename(columns=STRENGTH_COLUMNS)[["species", "strength_MPa", *STRENGTH_COLUMNS.values()]]
    table = table.dropna().reset_index(drop=True)
    return table, list(STRENGTH_COLUMNS.values()), "strength_MPa", table["species"].to_numpy(), None


# --------------------------------------------------------------------------- models


def select_equation(front, X_domain: pd.DataFrame):
    """Lowest-loss valid candidate of complexity <= MAX_COMPLEXITY (None if there is none)."""
    for cand in sorted((c for c in front if c.complexity <= MAX_COMPLEXITY), key=lambda c: c.loss):
        if check_finite_and_bounded(cand.expr, X_domain).ok:
            return cand
    return None


def engine_cv(name: str, budget: float, X: pd.DataFrame, y: np.ndarray, folds) -> tuple[np.ndarray, list[int]]:
    """Out-of-fold predictions of one engine (fold mean where no equation is usable)."""
    oof = np.full(len(y), np.nan)
    complexities = []
    for tr, te in folds:
        eng = _engine(name, budget).fit(X.iloc[tr].reset_index(drop=True), y[tr])
        cand = select_equation(eng.pareto_front_, X.iloc[np.concatenate([tr, te])])
        if cand is None:
            oof[te] = float(np.mean(y[tr]))
            continue
        pred = real_or_nan(evaluate_expr(cand.expr, X.iloc[te].reset_index(drop=True)))
        oof[te] = np.where(np.isfinite(pred), pred, float(np.mean(y[tr])))
        complexities.append(cand.complexity)
    return oof, complexities


def _short(expr, digits: int = 3, width: int = 140) -> str:
    """An equation's text with its numbers rounded to ``digits`` significant figures."""
    import sympy as sp

    expr = expr.xreplace({f: sp.Float(float(f"{float(f):.{digits}g}"), digits + 1) for f in expr.atoms(sp.Float)})
    text = str(expr)
    return text if len(text) <= width else text[: width - 1] + "…"


def _engine(name: str, budget: float):
    params = {"time_limit": budget, "random_state": 0} if name in ("operon", "eql") else {}
    return get_engine(name, **params)


def reference_cv(model, X: pd.DataFrame, y: np.ndarray, folds) -> np.ndarray:
    """Out-of-fold predictions of a scikit-learn regressor on the given folds."""
    oof = np.full(len(y), np.nan)
    for tr, te in folds:
        oof[te] = model.fit(X.iloc[tr], y[tr]).predict(X.iloc[te])
    return oof


def dataset_rows(label: str, data, engines: list[str], budgets: list[float], schemes: list[str]) -> list[list]:
    """Rows of the results table for one dataset, per CV scheme (``grouped`` and/or ``shuffled``)."""
    table, features, target, groups, physical = data
    X, y = table[features].astype(float), table[target].to_numpy(dtype=float)
    rows = []
    for scheme in schemes:
        if scheme == "grouped":
            folds = list(GroupKFold(n_splits=N_SPLITS).split(X, y, groups))
            name = f"{label}, GroupKFold({N_SPLITS}) of {len(set(groups))}"
        else:
            folds = list(KFold(n_splits=N_SPLITS, shuffle=True, random_state=0).split(X, y))
            name = f"{label}, KFold({N_SPLITS}, shuffled)"
        rows += _scheme_rows(name, table, X, y, folds, physical, engines, budgets)
        console.print(f"[dim]{name}: {len(y)} rows done[/]")
    return rows


def _scheme_rows(label, table, X, y, folds, physical, engines, budgets) -> list[list]:
    rows, ref = [], {}
    for mname, model in (("ExtraTrees(500)", ExtraTreesRegressor(500, random_state=0, n_jobs=1)),
                         ("HistGradientBoosting", HistGradientBoostingRegressor(random_state=0))):
        t = time.perf_counter()
        ref[mname] = float(np.mean(np.abs(reference_cv(model, X, y, folds) - y)))
        rows.append([label, mname, "", f"{ref[mname]:.4g}", "", "—", f"{time.perf_counter() - t:.1f}", "black box"])
    tree = min(ref.values())
    if physical is not None:
        mae = float(np.mean(np.abs(physical - y)))
        rows.append([label, "pair-additive (no fit)", "", f"{mae:.4g}", f"{mae / tree:.2f}", "—", "0", "3·E_1v − Σ E_b(V2, d)"])
    else:
        oof = reference_cv(LinearRegression(), table[PUBLISHED], y, folds)
        mae = float(np.mean(np.abs(oof - y)))
        rows.append([label, "published 3-factor linear", "", f"{mae:.4g}", f"{mae / tree:.2f}", "—", "0", "E_vm, γ(111), a"])
    for name in engines:
        for budget in (budgets if name in ("operon", "eql") else budgets[:1]):
            t = time.perf_counter()
            oof, cx = engine_cv(name, budget, X, y, folds)
            mae = float(np.mean(np.abs(oof - y)))
            cv_seconds = time.perf_counter() - t
            t = time.perf_counter()
            full = select_equation(_engine(name, budget).fit(X, y).pareto_front_, X)
            seconds = time.perf_counter() - t
            text = _short(full.expr) if full else "no valid equation"
            rows.append([label, name, f"{budget:g}" if name != "sparse" else "—", f"{mae:.4g}", f"{mae / tree:.2f}",
                         f"{full.complexity if full else '—'} (folds {min(cx, default=0)}–{max(cx, default=0)})",
                         f"{seconds:.1f} (CV {cv_seconds:.0f})", text])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs="+", default=["sparse", "operon", "eql"])
    parser.add_argument("--budgets", nargs="+", type=float, default=[30.0],
                        help="time limits (s) per engine fit for operon and eql, e.g. 10 30 120")
    parser.add_argument("--vacancy-table", help="CSV of vacancy_cluster_table() (computed when absent)")
    parser.add_argument("--datasets", nargs="+", default=["vacancy", "strength"])
    parser.add_argument("--schemes", nargs="+", default=["grouped", "shuffled"],
                        help="grouped (unseen metal / element) and/or shuffled KFold")
    args = parser.parse_args()
    print_machine(None)
    rows = []
    if "vacancy" in args.datasets:
        rows += dataset_rows("vacancy clusters E_f (eV)", vacancy_dataset(args.vacancy_table), args.engines, args.budgets,
                             args.schemes)
    if "strength" in args.datasets:
        rows += dataset_rows("OpenKIM strength (MPa)", strength_dataset(), args.engines, args.budgets, args.schemes)
    cols = ["data", "model", "budget s", "CV MAE", "÷ best tree", "complexity (all rows; folds)", "fit s (CV s)", "equation"]
    print_table(f"Descriptor equations: pooled out-of-fold MAE, {N_SPLITS} folds", cols, rows)
    console.print(markdown_table(cols, rows), soft_wrap=True)


if __name__ == "__main__":
    main()
