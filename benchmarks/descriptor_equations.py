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

Separately, a synthetic check of the sparse engine alone:

3. **Sparse recovery** (``--datasets recovery``, synthetic, no database): does the sparse
   engine find a known law?  ``--tables`` (20) seeded tables of 100–300 rows per law, each
   fitted by the estimator ``matstore fit --engine sparse`` builds
   (:func:`matstore.models.fitting.make_estimator`: :class:`~matstore.models.EquationSearch`
   with the sparse engine's defaults and the default ``stable`` selection; ``matstore fit``
   adds nested CV around it, not run here).  Laws (:data:`LAWS`): the 2D-defect formation
   energy ``E_f = 2.8·n − 4/d1 − 2/d2`` (eV; n ∈ {1, 2, 3} a count, d1, d2 uniform in
   3–12 Å; noise σ = 0.01 eV) and a regular-solution mixing enthalpy of lanthanide
   orthophosphate-like solid solutions ``ΔH = W·x(1−x)·δ²`` (kJ/mol; W = 1600 kJ/mol,
   x = k/16 supercell compositions, δ = Δr/r̄ uniform in 0.01–0.12; σ = 0.1 kJ/mol, about
   1 meV per formula unit: a symmetric, regular-solution Margules model whose interaction
   parameter is an elastic strain energy ∝ δ²; for the size-mismatch trend of W see P. K.
   Davies and A. Navrotsky, J. Solid State Chem. 46, 1 (1983)), each with ``--distractors``
   (0 and 1) extra columns the law does not use (d3 in 3–12 Å; r̄ in 1.0–1.2 Å).  A fit
   recovers the law when the selected equation, expanded, has exactly the law's terms
   (SymPy monomials, compared symbolically) with every coefficient within 5 % of the law's,
   and an intercept, if it has one, within 0.05·std(y) of 0 (neither law has one).  Reported per law,
   out of the tables: recovered (the selected equation), the law's terms among the selected
   one's (with extra terms: a selection miss), the law on the Pareto front (not there: a
   search miss), and the least training RMSE / σ on the front at the law's complexity
   (about 1 when the law was found, larger when it was missed); then the selected
   equation's training RMSE / σ and its RMSE against the noiseless law on 1000 fresh rows
   / σ, its complexity, the CPU seconds of one ``fit`` (one BLAS thread) and the first miss.

Run: ``python benchmarks/descriptor_equations.py [--engines sparse operon eql] [--budgets 30]
[--vacancy-table clusters.csv]`` (the table is computed when not given, ~1 min on 2 cores);
``python benchmarks/descriptor_equations.py --datasets recovery [--tables 20] [--seed 0]
[--laws defect mixing] [--distractors 0 1]`` (about 1 min on one core).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from _common import console, markdown_table, print_machine, print_table
from sklearn.ensemble import ExtraTreesRegressor, HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import GroupKFold, KFold

from matstore.models.engines import get_engine
from matstore.models.engines.base import evaluate_expr, expression_complexity, real_or_nan
from matstore.models.fitting import make_estimator
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


# --------------------------------------------------------------------------- sparse recovery


@dataclass(frozen=True)
class SyntheticLaw:
    """A known law ``y = f(X) + N(0, noise²)`` and how its descriptor tables are drawn.

    ``law``: SymPy text of f in the column names; ``unit``: unit of y; ``noise``: σ in that
    unit; ``columns``: draws the law's columns, ``(rng, rows) -> DataFrame (rows, k)``;
    ``distractor``: draws one column f does not use, ``(rng, rows) -> ndarray (rows,)``.
    """

    name: str
    law: str
    unit: str
    noise: float
    columns: Callable[[np.random.Generator, int], pd.DataFrame]
    distractor: tuple[str, Callable[[np.random.Generator, int], np.ndarray]]

    @property
    def expr(self):
        """f as a SymPy expression of plain symbols named as the columns."""
        import sympy as sp

        return sp.sympify(self.law)


def _defect_columns(rng: np.random.Generator, rows: int) -> pd.DataFrame:
    """n ∈ {1, 2, 3} (count), d1, d2 uniform in 3–12 Å."""
    return pd.DataFrame({"n": rng.choice([1.0, 2.0, 3.0], rows), "d1": rng.uniform(3, 12, rows),
                         "d2": rng.uniform(3, 12, rows)})


def _mixing_columns(rng: np.random.Generator, rows: int) -> pd.DataFrame:
    """x = k/16 (k = 1 … 15, supercell compositions), δ = Δr/r̄ uniform in 0.01–0.12."""
    return pd.DataFrame({"x": rng.integers(1, 16, rows) / 16.0, "delta": rng.uniform(0.01, 0.12, rows)})


#: The laws of the recovery benchmark (module docstring, item 3).
LAWS = {
    "defect": SyntheticLaw("defect", "2.8*n - 4/d1 - 2/d2", "eV", 0.01, _defect_columns,
                           ("d3", lambda rng, rows: rng.uniform(3, 12, rows))),
    "mixing": SyntheticLaw("mixing", "1600*x*(1 - x)*delta**2", "kJ/mol", 0.1, _mixing_columns,
                           ("rbar", lambda rng, rows: rng.uniform(1.0, 1.2, rows))),
}


def law_table(law: SyntheticLaw, rng: np.random.Generator, rows: int, distractors: int) -> tuple[pd.DataFrame, np.ndarray]:
    """``rows`` rows of the law's columns (+ ``distractors`` unused ones, 0 or 1) and y with noise.

    The law's columns and the noise are drawn first, so tables with and without the
    distractor from the same ``rng`` state share them.  Returns X (rows, k [+1]), y (rows,).
    """
    X = law.columns(rng, rows)
    y = real_or_nan(evaluate_expr(law.expr, X)) + law.noise * rng.standard_normal(rows)
    if distractors:
        name, draw = law.distractor
        X[name] = draw(rng, rows)
    return X, np.asarray(y, dtype=float)


def term_coefficients(expr) -> dict:
    """``{monomial: coefficient}`` of an expanded expression (the constant under key 1).

    Symbols are replaced by plain ones of the same name, so that an engine's symbols (with
    assumptions) compare equal to the law's.
    """
    import sympy as sp

    plain = expr.xreplace({s: sp.Symbol(s.name) for s in expr.free_symbols})
    out: dict = {}
    for term in sp.Add.make_args(sp.expand(plain)):
        coeff, mono = term.as_coeff_Mul()
        out[mono] = out.get(mono, 0.0) + float(coeff)
    return out


def has_law_terms(expr, law: SyntheticLaw) -> bool:
    """Whether every non-constant term of the law is a term of ``expr`` (coefficients not compared)."""
    import sympy as sp

    return set(term_coefficients(law.expr)) - {sp.S.One} <= set(term_coefficients(expr))


def recovers(expr, law: SyntheticLaw, y_sd: float, rel: float = 0.05) -> bool:
    """Whether ``expr`` has exactly the law's terms, each coefficient within ``rel`` of the law's.

    An intercept where the law has none must be within ``rel·y_sd`` of 0.
    """
    import sympy as sp

    got, want = term_coefficients(expr), term_coefficients(law.expr)
    c0 = got.pop(sp.S.One, 0.0) - want.pop(sp.S.One, 0.0)
    if set(got) != set(want) or abs(c0) > rel * y_sd:
        return False
    return all(abs(got[m] - c) <= rel * abs(c) for m, c in want.items())


def recovery_fit(law: SyntheticLaw, seed: int, k: int, distractors: int) -> dict:
    """Fit table ``k`` of ``law`` as ``matstore fit --engine sparse`` does and score it.

    The table has 100–300 rows (drawn from ``default_rng([seed, law index, k])``); the
    error against the noiseless law is measured on 1000 fresh rows.  CPU seconds of ``fit``
    with one BLAS thread.
    """
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng([seed, list(LAWS).index(law.name), k])
    X, y = law_table(law, rng, int(rng.integers(100, 301)), distractors)
    fresh, _ = law_table(law, np.random.default_rng([seed, list(LAWS).index(law.name), k, 1]), 1000, distractors)
    est = make_estimator(list(X.columns), engine="sparse")
    with threadpool_limits(1):
        t = time.process_time()
        est.fit(X, y)
        cpu = time.process_time() - t
    y_sd = float(np.std(y))
    law_cx = expression_complexity(law.expr.expand().evalf())
    return {
        "rows": len(y), "cpu": cpu, "expr": est.equation_,
        "selected": recovers(est.equation_, law, y_sd),
        "front": any(recovers(c.expr, law, y_sd) for c in est.front_),
        "terms": has_law_terms(est.equation_, law),
        "front_at_law": min(c.loss for c in est.front_ if c.complexity <= law_cx) ** 0.5 / law.noise,
        "complexity": expression_complexity(est.equation_),
        "rmse": float(np.sqrt(np.mean((est.predict(X) - y) ** 2))) / law.noise,
        "fresh": float(np.sqrt(np.mean((est.predict(fresh) - real_or_nan(evaluate_expr(law.expr, fresh))) ** 2)))
        / law.noise,
    }


def _plain(text: str) -> str:
    """Equation text without Markdown's emphasis characters: ``**`` as ``^``, ``*`` as ``·``."""
    return text.replace("**", "^").replace("*", "·")


def recovery_rows(names: list[str], tables: int, seed: int, distractors: list[int]) -> list[list]:
    """One results row per law and number of distractor columns (``tables`` fits each)."""
    rows = []
    for name in names:
        law = LAWS[name]
        for extra in distractors:
            fits = [recovery_fit(law, seed, k, extra) for k in range(tables)]
            miss = next((f for f in fits if not f["selected"]), None)
            rmse, fresh, cpu, at_law = (np.array([f[key] for f in fits]) for key in ("rmse", "fresh", "cpu", "front_at_law"))
            cx = Counter(f["complexity"] for f in fits).most_common(1)[0][0]
            rows.append([f"{_plain(law.law)} ({law.unit}), σ {law.noise:g}", law.distractor[0] if extra else "—",
                         f"{tables} ({min(f['rows'] for f in fits)}–{max(f['rows'] for f in fits)})",
                         f"{sum(f['selected'] for f in fits)}/{tables}", f"{sum(f['terms'] for f in fits)}/{tables}",
                         f"{sum(f['front'] for f in fits)}/{tables}", f"{np.median(at_law):.2f} ({at_law.max():.2f})",
                         f"{np.median(rmse):.2f} ({rmse.max():.2f})", f"{np.median(fresh):.2f} ({fresh.max():.2f})",
                         cx, f"{np.median(cpu):.2f} ({cpu.max():.2f})",
                         _plain(_short(miss["expr"], width=90)) if miss else "—"])
            console.print(f"[dim]recovery {name}, {extra} distractor(s): {rows[-1][3]} selected[/]")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs="+", default=["sparse", "operon", "eql"])
    parser.add_argument("--budgets", nargs="+", type=float, default=[30.0],
                        help="time limits (s) per engine fit for operon and eql, e.g. 10 30 120")
    parser.add_argument("--vacancy-table", help="CSV of vacancy_cluster_table() (computed when absent)")
    parser.add_argument("--datasets", nargs="+", default=["vacancy", "strength"],
                        help="vacancy, strength and/or recovery (synthetic known laws, no database)")
    parser.add_argument("--schemes", nargs="+", default=["grouped", "shuffled"],
                        help="grouped (unseen metal / element) and/or shuffled KFold")
    parser.add_argument("--tables", type=int, default=20, help="recovery: seeded synthetic tables per law")
    parser.add_argument("--seed", type=int, default=0, help="recovery: base seed of the tables")
    parser.add_argument("--laws", nargs="+", default=list(LAWS), choices=list(LAWS), help="recovery: laws to fit")
    parser.add_argument("--distractors", nargs="+", type=int, default=[0, 1], choices=[0, 1],
                        help="recovery: unused columns added to each table (0 and/or 1)")
    args = parser.parse_args()
    print_machine(None)
    if "recovery" in args.datasets:
        rows = recovery_rows(args.laws, args.tables, args.seed, args.distractors)
        cols = ["law, noise σ", "distractor", "tables (rows)", "selected = law", "selected ⊇ law's terms", "law on front",
                "front RMSE/σ at law's complexity", "RMSE/σ median (max)",
                "error vs law/σ, fresh rows", "complexity (mode)", "CPU s per fit median (max)", "first miss (selected)"]
        print_table("Sparse engine: recovery of known laws (matstore fit --engine sparse's estimator)", cols, rows)
        console.print(markdown_table(cols, rows), soft_wrap=True)
    rows = []
    if "vacancy" in args.datasets:
        rows += dataset_rows("vacancy clusters E_f (eV)", vacancy_dataset(args.vacancy_table), args.engines, args.budgets,
                             args.schemes)
    if "strength" in args.datasets:
        rows += dataset_rows("OpenKIM strength (MPa)", strength_dataset(), args.engines, args.budgets, args.schemes)
    if not rows:
        return
    cols = ["data", "model", "budget s", "CV MAE", "÷ best tree", "complexity (all rows; folds)", "fit s (CV s)", "equation"]
    print_table(f"Descriptor equations: pooled out-of-fold MAE, {N_SPLITS} folds", cols, rows)
    console.print(markdown_table(cols, rows), soft_wrap=True)


if __name__ == "__main__":
    main()
