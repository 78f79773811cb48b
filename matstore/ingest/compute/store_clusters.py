"""Store the vacancy-cluster table as per-configuration values (one source per element and calculator).

Each (element, calculator) pair is a ``source`` of kind ``computation`` keyed by the sha256 of
its spec (element, the backend's method record with the potential file hash, the cluster
settings, the matstore version), so re-running stores nothing twice.  Every cluster is a
``material_configuration`` (key ``V1``, ``V2:0.7071``, ``V3:0.7071-0.7071-1.0000``: distances
in units of the lattice constant) with its ``formation_energy`` and ``binding_energy`` (eV),
``vv_distance_1..3`` (Å) and ``n_nearest_neighbour_pairs``; the lattice constant, supercell
size and relaxation details go into the configuration's details.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine
from sqlmodel import Session

from matstore import crud
from matstore.hashing import sha256_json
from matstore.ingest.compute.calculators import get_backend
from matstore.ingest.compute.store import get_method_id
from matstore.ingest.compute.vacancy_clusters import ClusterSettings, vacancy_cluster_table

#: Configuration-scope definitions this task adds (name, unit, symbol, description).
DEFINITIONS = (
    ("binding_energy", "eV", "E_b", "Binding energy of a defect cluster: sum of its isolated defects' formation energies minus its own (positive = bound)"),
    ("vv_distance_1", "angstrom", "d_1", "Shortest vacancy–vacancy distance of a vacancy cluster"),
    ("vv_distance_2", "angstrom", "d_2", "Second vacancy–vacancy distance of a vacancy cluster (sorted)"),
    ("vv_distance_3", "angstrom", "d_3", "Third vacancy–vacancy distance of a vacancy cluster (sorted)"),
    ("n_nearest_neighbour_pairs", "dimensionless", "n_1NN", "Number of nearest-neighbour pairs in a defect cluster"),
)
STORED = ("formation_energy",) + tuple(d[0] for d in DEFINITIONS)
DETAILS = ("n_vacancies", "unrelaxed_formation_energy", "relaxation_steps", "lattice_constant", "n_sites",
           "monovacancy_formation_energy")


def _ensure_definitions(session: Session, job_run_id: int) -> None:
    for name, unit, symbol, description in DEFINITIONS:
        crud.add_definition(session=session, name=name, unit=unit, scope="configuration", job_run_id=job_run_id,
                            symbol=symbol, description=description)


def store_element_clusters(engine: Engine, rows: pd.DataFrame, calculator: str, settings: ClusterSettings, *,
                           job_run_id: int) -> int:
    """Store the clusters of one (element, calculator) in one transaction; return values stored.

    Returns 0 when this computation is already stored.
    """
    element = str(rows["element"].iloc[0])
    record = get_backend(calculator).method_record(element)
    spec = {"task": "vacancy-clusters", "element": element, "method": record["name"],
            "potential_sha256": record.get("potential_sha256"), "parameters": record.get("parameters"),
            "settings": asdict(settings), "matstore": record["software"].get("matstore")}
    with Session(engine) as session:
        source_id = crud.claim_source(session=session, kind="computation", sha256=sha256_json(spec),
                                      description=f"{record['name']} vacancy clusters in fcc {element}",
                                      details={"spec": spec})
        if source_id is None:
            return 0
        _ensure_definitions(session, job_run_id)
        material_id = crud.get_or_create_material(session=session, formula=element, prototype="fcc")
        method_id = get_method_id(session, record)
        values: dict[str, dict[str, float]] = {}
        details: dict[str, dict[str, Any]] = {}
        for row in rows.to_dict("records"):
            key = row["configuration_key"]
            values[key] = {p: float(row[p]) for p in STORED if p in row and np.isfinite(row[p])}
            details[key] = {d: (float(row[d]) if isinstance(row[d], float) else int(row[d])) for d in DETAILS}
        stored = crud.add_configuration_values(session=session, material_id=material_id, method_id=method_id,
                                               source_id=source_id, job_run_id=job_run_id, values=values,
                                               details=details)
        session.commit()
        return stored


def compute_and_store_clusters(
    engine: Engine,
    *,
    elements: list[str],
    calculators: list[str],
    settings: ClusterSettings = ClusterSettings(),
    workers: int = 2,
) -> tuple[pd.DataFrame, int, list[str]]:
    """Compute the vacancy-cluster table and store it, recorded as one job run (``ingest_compute``).

    Returns
    -------
    table : DataFrame
        As :func:`~.vacancy_clusters.vacancy_cluster_table`.
    stored : int
        Values inserted (0 when everything was stored before).
    failures : list of str
        Failed (element, calculator) pairs; the run is then marked failed, the rest stays stored.

    Raises
    ------
    CalculatorSetupError
        If a calculator is unknown or cannot be set up.
    """
    params = {"task": "vacancy-clusters", "elements": elements, "calculators": calculators,
              "settings": asdict(settings), "workers": workers}
    with crud.job_run(engine=engine, kind="ingest_compute", parameters=params) as run:
        table, failures = vacancy_cluster_table(elements, calculators, settings, workers)
        stored = 0
        for calc in calculators:
            labels = {get_backend(calc).label(e) for e in elements if get_backend(calc).supports(e)}
            for _, rows in table[table["method"].isin(labels)].groupby(["method", "element"], sort=True):
                stored += store_element_clusters(engine, rows, calc, settings, job_run_id=run.id)
        run.summary.update(configurations=len(table), values_stored=stored, failures=failures)
        if failures:
            run.status = "failed"
    return table, stored, failures


__all__ = ["DEFINITIONS", "compute_and_store_clusters", "store_element_clusters"]
