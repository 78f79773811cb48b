"""Relaxed formation energies of di- and tri-vacancy clusters in FCC metals: a per-configuration table.

For every element and calculator backend (LAMMPS u3 EAM, EMT, ...), the perfect crystal is
relaxed once — the lattice constant ``a`` is the root of the hydrostatic pressure
(:func:`~.bulk.refine_lattice_constant`) and ``e_bulk`` its energy per atom — and every
cluster of :func:`enumerate_clusters` is cut out of an ``n × n × n`` conventional supercell
(``N = 4 n³`` sites) and relaxed at constant volume.  The formation energy of a cluster of
``m`` vacancies is

    E_f = E(N − m) − (N − m) · e_bulk                                   [eV]

and its binding energy ``E_b = m · E_f(1v) − E_f`` (positive = bound), with ``E_f(1v)`` the
monovacancy formation energy in the same supercell (e.g. A. C. Damask, G. J. Dienes,
*Point Defects in Metals*, Gordon & Breach (1963); P. Ehrhart et al., Landolt–Börnstein
III/25 (1991) for the definitions).  Descriptors per configuration: the sorted pairwise
vacancy–vacancy distances ``vv_distance_1 ≤ vv_distance_2 ≤ vv_distance_3`` (Å; one for a
di-vacancy) and the number of nearest-neighbour vacancy pairs; per material: ``a`` (Å) and
``E_f(1v)`` (eV).  The table has the shape of published defect tables (formation energy
against a few distances) and is the benchmark of descriptor equations
(``benchmarks/descriptor_equations.py``).

Clusters are enumerated up to lattice symmetry by their sorted distance triple (distances
are geometric, not minimum-image: ``max_distance`` must stay below half the supercell);
finite-size effects of the periodic supercell (elastic image interaction, ~meV for
4×4×4) are not corrected.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from ._common import check_finite, relax_positions, single_threaded_blas
from .bulk import fcc_cell, guess_lattice_constant, refine_lattice_constant
from .calculators import CalculationError, CalculatorBackend, get_backend

logger = logging.getLogger(__name__)

#: Canonical units of the table's value columns.
UNITS = {
    "formation_energy": "eV",
    "binding_energy": "eV",
    "unrelaxed_formation_energy": "eV",
    "monovacancy_formation_energy": "eV",
    "lattice_constant": "angstrom",
    "vv_distance_1": "angstrom",
    "vv_distance_2": "angstrom",
    "vv_distance_3": "angstrom",
    "n_nearest_neighbour_pairs": "dimensionless",
}
DISTANCE_COLUMNS = ("vv_distance_1", "vv_distance_2", "vv_distance_3")


@dataclass(frozen=True)
class ClusterSettings:
    """Numerical settings of the vacancy-cluster task.

    Attributes
    ----------
    repeat : int
        Supercell of ``repeat³`` conventional cells (``4·repeat³`` sites).
    max_distance : float
        Largest vacancy–vacancy distance in a cluster, in units of ``a`` (< ``repeat/2``,
        so that each pair distance is that of the nearest periodic images).
    max_link : float
        A tri-vacancy's two shorter distances are at most this (units of ``a``): the
        cluster is connected by such links.
    fmax : float
        Force tolerance of the constant-volume relaxation (eV/Å).
    max_steps : int
        Optimiser steps per relaxation (LBFGS, then FIRE).
    """

    repeat: int = 4
    max_distance: float = 1.75
    max_link: float = math.sqrt(2.0)
    fmax: float = 0.02
    max_steps: int = 200

    def __post_init__(self) -> None:
        if self.max_distance >= self.repeat / 2:
            raise ValueError(f"max_distance={self.max_distance} a must be below half the supercell ({self.repeat / 2} a)")


@dataclass(frozen=True)
class VacancyCluster:
    """One cluster geometry: removed sites of the supercell and its pair distances.

    Attributes
    ----------
    key : str
        ``"V2:<d>"`` or ``"V3:<d1>-<d2>-<d3>"``, distances in units of ``a`` (4 decimals).
    sites : tuple of int
        Indices of the removed sites in ``fcc_cell(el, a).repeat(repeat)``.
    distances : tuple of float
        Sorted pair distances in units of ``a``.
    """

    key: str
    sites: tuple[int, ...]
    distances: tuple[float, ...]


def enumerate_clusters(settings: ClusterSettings = ClusterSettings()) -> list[VacancyCluster]:
    """Di-vacancies up to ``max_distance`` and connected tri-vacancies, one per distance set.

    Returns
    -------
    list of VacancyCluster
        Di-vacancies first, each group sorted by distances.  Site 0 is always a vacancy.
    """
    from ase.geometry import find_mic

    cell = fcc_cell("Cu", 1.0).repeat(settings.repeat)
    # minimum-image vectors from site 0; with every distance below half the supercell
    # they are also the geometric vectors of the cluster
    rel, dist0 = find_mic(cell.positions - cell.positions[0], cell.cell, pbc=True)
    tol = 1e-6
    near = [int(j) for j in np.argsort(dist0, kind="stable") if 0 < dist0[j] <= settings.max_distance + tol]
    found: dict[tuple[float, ...], tuple[int, ...]] = {}
    for j in near:
        found.setdefault((round(float(dist0[j]), 4),), (0, j))
    for j, k in combinations(near, 2):
        d = sorted((float(dist0[j]), float(dist0[k]), float(np.linalg.norm(rel[j] - rel[k]))))
        if d[2] <= settings.max_distance + tol and d[1] <= settings.max_link + tol:
            found.setdefault(tuple(round(x, 4) for x in d), (0, j, k))
    out = []
    for dists, sites in sorted(found.items(), key=lambda kv: (len(kv[0]), kv[0])):
        key = f"V{len(sites)}:" + "-".join(f"{x:.4f}" for x in dists)
        out.append(VacancyCluster(key, sites, dists))
    return out


def _relaxed_energy(atoms, calc, settings: ClusterSettings, what: str) -> tuple[float, float, int]:
    """(unrelaxed, relaxed energy in eV, optimiser steps) of ``atoms`` at constant cell."""
    atoms.calc = calc
    unrelaxed = check_finite(atoms, what)
    steps = relax_positions(atoms, fmax=settings.fmax, steps=settings.max_steps, what=what)
    return unrelaxed, check_finite(atoms, what), steps


def compute_element_clusters(
    element: str, backend: CalculatorBackend | str, settings: ClusterSettings = ClusterSettings()
) -> pd.DataFrame:
    """Relaxed formation and binding energies of every cluster of ``element`` with one backend.

    Parameters
    ----------
    element : str
        FCC element supported by the backend, e.g. ``"Cu"``.
    backend : CalculatorBackend or str
    settings : ClusterSettings

    Returns
    -------
    DataFrame, one row per cluster (the monovacancy ``"V1"`` first)
        Columns ``method, element, configuration_key, n_vacancies``, the values of
        :data:`UNITS` (canonical units; ``vv_distance_2/3`` NaN for di-vacancies),
        ``relaxation_steps, n_sites``.

    Raises
    ------
    CalculatorSetupError
        If the backend cannot be set up for ``element``.
    CalculationError
        If the lattice constant or a relaxation fails.
    """
    backend = get_backend(backend) if isinstance(backend, str) else backend
    with single_threaded_blas():
        calc = backend.make(element)
        a = refine_lattice_constant(element, calc, guess_lattice_constant(element), xtol=1e-6)
        crystal = fcc_cell(element, a).repeat(settings.repeat)
        crystal.calc = calc
        n_sites = len(crystal)
        e_bulk = check_finite(crystal, f"{element} supercell") / n_sites
        mono = _cluster_row(crystal, VacancyCluster("V1", (0,), ()), calc, settings, a, e_bulk, 0.0)
        e_1v = mono["formation_energy"]
        mono["binding_energy"] = 0.0
        rows = [mono] + [_cluster_row(crystal, c, calc, settings, a, e_bulk, e_1v) for c in enumerate_clusters(settings)]
    table = pd.DataFrame(rows)
    table.insert(0, "element", element)
    table.insert(0, "method", backend.label(element))
    table["lattice_constant"] = a
    table["monovacancy_formation_energy"] = e_1v
    table["n_sites"] = n_sites
    return table


def _cluster_row(crystal, cluster: VacancyCluster, calc, settings: ClusterSettings, a: float, e_bulk: float,
                 e_1v: float) -> dict[str, Any]:
    atoms = crystal.copy()
    del atoms[list(cluster.sites)]
    m = len(cluster.sites)
    unrelaxed, relaxed, steps = _relaxed_energy(atoms, calc, settings, f"{atoms.get_chemical_formula()} {cluster.key}")
    e_f = relaxed - len(atoms) * e_bulk
    distances = [d * a for d in cluster.distances] + [np.nan] * (3 - len(cluster.distances))
    nn = sum(1 for d in cluster.distances if abs(d - math.sqrt(0.5)) < 1e-3)
    return {
        "configuration_key": cluster.key, "n_vacancies": m,
        **dict(zip(DISTANCE_COLUMNS, distances, strict=True)),
        "n_nearest_neighbour_pairs": nn,
        "formation_energy": e_f, "binding_energy": m * e_1v - e_f,
        "unrelaxed_formation_energy": unrelaxed - len(atoms) * e_bulk,
        "relaxation_steps": steps,
    }


def _element_task(args: tuple[str, str, dict[str, Any]]) -> pd.DataFrame | str:
    element, calculator, settings = args
    try:
        return compute_element_clusters(element, calculator, ClusterSettings(**settings))
    except CalculationError as exc:
        return f"{calculator} {element}: {exc}"


def vacancy_cluster_table(
    elements: list[str],
    calculators: list[str],
    settings: ClusterSettings = ClusterSettings(),
    workers: int = 2,
) -> tuple[pd.DataFrame, list[str]]:
    """The vacancy-cluster table of every supported (element, calculator) pair.

    Elements a backend does not implement are skipped (EMT has Al, LAMMPS u3 has not).
    Each (element, calculator) pair runs in its own worker process when ``workers > 1``.

    Returns
    -------
    table : DataFrame
        Rows of :func:`compute_element_clusters`, concatenated (calculator, element order).
    failures : list of str
        One message per pair whose calculation failed.

    Raises
    ------
    CalculatorSetupError
        If a calculator name is unknown or cannot be set up.
    """
    jobs = [(el, calc, asdict(settings)) for calc in calculators for el in elements if get_backend(calc).supports(el)]
    t0 = time.perf_counter()
    if workers > 1 and len(jobs) > 1:
        # spawn, as the surface runner does: a forked child would inherit the parent's MPI
        # state (LAMMPS) and the threads of JAX or BLAS, which fork does not copy safely.
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_element_task, jobs))
    else:
        results = [_element_task(job) for job in jobs]
    logger.info("vacancy clusters: %d pairs in %.1f s", len(jobs), time.perf_counter() - t0)
    tables = [r for r in results if isinstance(r, pd.DataFrame)]
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return table, [r for r in results if isinstance(r, str)]


__all__ = [
    "ClusterSettings",
    "DISTANCE_COLUMNS",
    "UNITS",
    "VacancyCluster",
    "compute_element_clusters",
    "enumerate_clusters",
    "vacancy_cluster_table",
]
