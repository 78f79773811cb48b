"""A small, fully linked store for the dashboard tests.

:func:`populate` writes through :mod:`matstore.crud` (materials, methods, sources, property
values, surfaces, job runs) and plain SQLAlchemy inserts into the schema tables
(configuration, equation model/versions/alias/predictions).  It returns the numbers the
tests look for on the pages.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import sympy
from sqlalchemy import Engine, text
from sqlmodel import Session

from matstore import crud
from matstore.orientation import broken_bond_g, from_angles, from_miller
from matstore.schema import (
    Configuration,
    EquationAlias,
    EquationModel,
    EquationPrediction,
    EquationVersion,
)

KIM_ID = "EAM_Dynamo_FoilesBaskesDaw_1986Universal3_Cu__MO_666348409573_004"

#: Surface values of Cu (EMT): Miller index (or angles) → (γ J/m², τ N/m, S N/m).
CU_SURFACES: dict[Any, tuple[float, float, float]] = {
    (1, 0, 0): (1.2856, 1.0412, -3.3101),
    (1, 1, 0): (1.3967, 0.8123, -2.9874),
    (1, 1, 1): (1.1587, 1.3944, -4.1129),
    (2, 1, 0): (1.4213, 0.9311, -3.0456),
    ("angles", 20.0, 10.0): (1.3377, 0.9902, -3.2003),
}
NI_SURFACES: dict[Any, tuple[float, float, float]] = {
    (1, 0, 0): (1.8751, 1.6012, -4.4021),
    (1, 1, 1): (1.6113, 2.0125, -5.0133),
}

#: Bulk values per (material, method): property → value in canonical unit.
BULK: dict[tuple[str, str], dict[str, float]] = {
    ("Cu", "emt"): {"lattice_constant": 3.5898, "cohesive_energy": 3.5098, "c11": 176.42, "c12": 116.03,
                    "c44": 90.59, "vacancy_migration_energy": 0.6821, "strength": 1180.5},
    ("Ni", "emt"): {"lattice_constant": 3.5156, "cohesive_energy": 4.4352, "c11": 246.51, "c12": 147.62,
                    "c44": 124.73, "vacancy_migration_energy": 1.0373, "strength": 1893.2},
    ("Al", "emt"): {"lattice_constant": 4.0522, "cohesive_energy": 3.2811, "c11": 99.87, "c12": 61.45,
                    "c44": 39.52, "vacancy_migration_energy": 0.5512, "strength": 701.4},
    ("Cu", KIM_ID): {"lattice_constant": 3.6150, "cohesive_energy": 3.5400, "c11": 167.31, "c12": 124.22,
                     "c44": 76.43, "vacancy_migration_energy": 0.7003, "strength": 1327.7},
}


@dataclass
class Populated:
    """Ids and values written by :func:`populate`."""

    material_ids: dict[str, int] = field(default_factory=dict)
    method_ids: dict[str, int] = field(default_factory=dict)
    surface_ids: dict[Any, int] = field(default_factory=dict)
    gamma_cu_111: float = CU_SURFACES[(1, 1, 1)][0]
    gamma_cu_angles: float = CU_SURFACES[("angles", 20.0, 10.0)][0]
    lattice_constant_cu: float = BULK[("Cu", "emt")]["lattice_constant"]
    failed_error: str = "RuntimeError: relaxation of Cu(3,2,1) did not converge in 500 steps"
    model_name: str = "gamma_broken_bond"
    version_ids: list[int] = field(default_factory=list)
    n_bulk: int = 0
    n_surface_values: int = 0
    configuration_id: int = 0
    bulk_value_id: int = 0


def _sha(text_: str) -> str:
    return hashlib.sha256(text_.encode()).hexdigest()


def _finish(engine: Engine, run_id: int, status: str, error: str | None = None) -> None:
    crud.finish_job_run(engine=engine, job_run_id=run_id, status=status, error=error, summary={"rows": 1})


def populate(engine: Engine) -> Populated:
    """Write the dashboard test store into the (migrated, empty) database behind ``engine``."""
    out = Populated()
    ingest_run = crud.start_job_run(engine=engine, kind="ingest_table", parameters={"path": "models_w_props.csv"})
    compute_run = crud.start_job_run(engine=engine, kind="ingest_compute", parameters={"calculator": "emt"})
    failed_run = crud.start_job_run(engine=engine, kind="ingest_compute", parameters={"miller": [3, 2, 1]})
    fit_run = crud.start_job_run(engine=engine, kind="fit", parameters={"model": out.model_name})

    with Session(engine) as session:
        for formula in ("Cu", "Ni", "Al"):
            out.material_ids[formula] = crud.get_or_create_material(session=session, formula=formula, prototype="fcc")
        out.method_ids["emt"] = crud.get_or_create_method(
            session=session, name="emt", kind="calculator", calculator="EMT",
            parameters={"asap_cutoff": False}, software={"ase": "3.23.0"}, description="ASE effective medium theory",
        )
        out.method_ids[KIM_ID] = crud.get_or_create_method(
            session=session, name=KIM_ID, kind="interatomic_potential", calculator="KIM", potential=KIM_ID,
            potential_sha256=_sha("Cu_u3.eam"), parameters={"model": KIM_ID}, software={"kimpy": "2.1.1"},
        )
        compute_source = crud.claim_source(session=session, kind="computation", sha256=_sha("emt surfaces"),
                                           description="EMT slab calculations", details={"layers": 12})
        dataset_source = crud.claim_source(
            session=session, kind="dataset", sha256=_sha("models_w_props.csv"),
            uri="https://github.com/bjasperson/strength_covariance/blob/main/data/models_w_props.csv",
            doi="10.1038/s41524-024-01453-w", license="MIT", commit="137c733fac2f21da69c317f4c808b2a79623ea51",
        )
        config = Configuration(
            content_sha256=_sha("cu-fcc-primitive"), n_atoms=1, formula="Cu", numbers=[29],
            positions=[[0.0, 0.0, 0.0]], cell=[[0.0, 1.7949, 1.7949], [1.7949, 0.0, 1.7949], [1.7949, 1.7949, 0.0]],
            pbc=[True, True, True], energy=-0.0071, forces=[[0.0, 0.0, 0.0]],
            virial=[[0.01, 0.0, 0.0], [0.0, 0.01, 0.0], [0.0, 0.0, 0.01]], method_id=out.method_ids["emt"],
            source_id=compute_source, job_run_id=compute_run, info={"frame": 0},
        )
        session.add(config)
        session.flush()
        out.configuration_id = config.id
        defs = crud.definitions(session=session)

        rows = []
        for (formula, method), values in BULK.items():
            from_dataset = method == KIM_ID  # OpenKIM values come from the published dataset
            for name, value in values.items():
                rows.append({
                    "material_id": out.material_ids[formula], "method_id": out.method_ids[method],
                    "definition_id": defs[name].id, "value": value,
                    "source_id": dataset_source if from_dataset else compute_source,
                    "job_run_id": ingest_run if from_dataset else compute_run,
                    "configuration_id": config.id if (formula, method, name) == ("Cu", "emt", "lattice_constant") else None,
                    "details": {"note": "dashboard fixture"},
                })
        out.n_bulk = crud.add_bulk_properties(session=session, rows=rows)

        srows = []
        for formula, surfaces in (("Cu", CU_SURFACES), ("Ni", NI_SURFACES)):
            for key, (gamma, tau, stiff) in surfaces.items():
                orientation = from_angles(key[1], key[2]) if key[0] == "angles" else from_miller(*key)
                sid = crud.get_or_create_surface(session=session, material_id=out.material_ids[formula],
                                                 orientation=orientation)
                out.surface_ids[(formula, key)] = sid
                for name, value in (("surface_energy", gamma), ("surface_stress", tau), ("surface_stiffness", stiff)):
                    srows.append({
                        "surface_id": sid, "method_id": out.method_ids["emt"], "definition_id": defs[name].id,
                        "value": value, "source_id": compute_source, "job_run_id": compute_run,
                        "details": {"layers": 12, "frame": "e1,e2 in plane"},
                    })
        out.n_surface_values = crud.add_surface_properties(session=session, rows=srows)
        out.bulk_value_id = session.execute(
            text("SELECT id FROM bulk_property WHERE configuration_id = :c"), {"c": config.id}
        ).scalar_one()
        _equations(session, out, fit_run)
        session.commit()

    _finish(engine, ingest_run, "succeeded")
    _finish(engine, compute_run, "succeeded")
    _finish(engine, failed_run, "failed", error=out.failed_error)
    _finish(engine, fit_run, "succeeded")
    return out


def _equations(session: Session, out: Populated, fit_run: int) -> None:
    e_c, a = sympy.symbols("cohesive_energy lattice_constant", positive=True)
    h, k, l = sympy.symbols("miller_h miller_k miller_l", positive=True)  # noqa: E741
    nx, ny, nz = sympy.symbols("n_x n_y n_z", positive=True)
    g_miller = (2 * h + k) / sympy.sqrt(h**2 + k**2 + l**2)
    g_normal = (2 * nx + ny) / sympy.sqrt(nx**2 + ny**2 + nz**2) + sympy.Float(0.05) * nz
    model = EquationModel(name=out.model_name, target="surface_energy", target_unit="J/m^2",
                          spec={"features": ["cohesive_energy", "lattice_constant"], "engine": "operon", "seed": 7},
                          description="Broken-bond factorised surface energy γ = c·E_c/a²·g(hkl)")
    session.add(model)
    session.flush()
    parent = None
    for version, (coef, g) in enumerate(((0.0712, g_miller), (0.0698, g_normal)), start=1):
        coefficient = sympy.Float(coef) * e_c / a**2
        expr = coefficient * g
        candidates = [sympy.Float(1.31) + 0 * e_c, sympy.Float(0.37) * e_c, coefficient * sympy.Float(2.6), expr,
                      expr + sympy.Float(0.001) * a]
        front = [{"complexity": i * 3 + 1, "loss": 0.05 / (i + 1) ** 2 + 1e-4, "srepr": sympy.srepr(c),
                  "latex": sympy.latex(c), "text": str(c)} for i, c in enumerate(candidates)]
        row = EquationVersion(
            model_id=model.id, version=version, parent_id=parent, dataset_sha256=_sha(f"dataset v{version}"),
            dataset_query="SELECT ... FROM surface_properties_wide", n_rows=7, spec_sha256=_sha("spec"),
            features=[{"name": "cohesive_energy", "unit": "eV/atom"}, {"name": "lattice_constant", "unit": "angstrom"}],
            target_unit="J/m^2", engine="operon", engine_versions={"pyoperon": "0.5.0"},
            hyperparameters={"generations": 100, "population_size": 500}, seed=7, pareto_front=front,
            equation_srepr=sympy.srepr(expr), equation_text=str(expr), equation_latex=sympy.latex(expr),
            equation_sha256=_sha(sympy.srepr(expr)),
            parts={"coefficient": {"srepr": sympy.srepr(coefficient), "latex": sympy.latex(coefficient)},
                   "orientation": {"srepr": sympy.srepr(g), "latex": sympy.latex(g)}},
            selection_criterion="knee of the Pareto front", metrics={"r2": 0.91 + version / 100, "rmse": 0.061,
                                                                     "cv_rmse": 0.074, "mae": 0.048},
            residual_std=0.061, dimension_check="consistent: J/m^2", job_run_id=fit_run,
        )
        session.add(row)
        session.flush()
        out.version_ids.append(row.id)
        parent = row.id
        for i, ((formula, key), sid) in enumerate(out.surface_ids.items()):
            if key[0] == "angles":
                continue
            observed = (CU_SURFACES if formula == "Cu" else NI_SURFACES)[key][0]
            # A fit that is good to a few per cent, with the broken-bond trend in its error.
            predicted = observed * (1 + 0.02 * (broken_bond_g(key) - 2.0) + 0.01 * (-1) ** i / version)
            session.add(EquationPrediction(version_id=row.id, material_id=out.material_ids[formula],
                                           method_id=out.method_ids["emt"], surface_id=sid, observed=observed,
                                           predicted=predicted, cv_predicted=predicted * 1.02))
    session.add(EquationAlias(model_id=model.id, alias="production", version_id=out.version_ids[-1]))
    session.add(EquationAlias(model_id=model.id, alias="candidate", version_id=out.version_ids[0]))
    session.flush()
