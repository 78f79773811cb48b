"""Shared helpers of the compute layer: unit factors, relaxations, frozen results, strains."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.units import GPa as _EV_PER_A3_PER_GPA
from ase.units import _e

from .calculators import CalculationError

logger = logging.getLogger(__name__)

#: 1 eV/Å² in J/m² (= N/m): e · 1e20 = 16.02176634.
EV_PER_A2_TO_J_PER_M2 = _e * 1e20
#: 1 eV/Å³ in GPa (= 160.21766...).
EV_PER_A3_TO_GPA = 1.0 / _EV_PER_A3_PER_GPA


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Limit BLAS/OpenMP thread pools to one thread inside the block.

    The optimisers diagonalise small (3N × 3N) Hessians; multi-threaded OpenBLAS makes
    these ~10× *slower* on a loaded 2-core machine and oversubscribes process pools.
    Uses :mod:`threadpoolctl` (a scikit-learn dependency) when available.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        yield
        return
    with threadpool_limits(limits=1):
        yield


def voigt_strain_tensor(index: int, value: float) -> np.ndarray:
    """Symmetric (3, 3) strain tensor of one Voigt component (engineering shear).

    ``index`` 0..5 = xx, yy, zz, yz, xz, xy; for shears ε_ij = ε_ji = value/2.
    """
    pairs = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    i, j = pairs[index]
    eps = np.zeros((3, 3))
    if i == j:
        eps[i, i] = value
    else:
        eps[i, j] = eps[j, i] = value / 2.0
    return eps


def deform(atoms: Atoms, gradient: np.ndarray) -> Atoms:
    """Copy of ``atoms`` homogeneously deformed by the (3, 3) deformation gradient F.

    Cell rows are vectors, so the new cell is ``cell @ F.T``; atoms move affinely.
    The calculator is not copied.
    """
    out = atoms.copy()
    out.set_cell(np.asarray(atoms.cell) @ np.asarray(gradient).T, scale_atoms=True)
    return out


def check_finite(atoms: Atoms, what: str) -> float:
    """Energy of ``atoms`` (eV); raise :class:`CalculationError` if it is not finite."""
    energy = float(atoms.get_potential_energy())
    if not math.isfinite(energy):
        raise CalculationError(f"non-finite energy for {what}: {energy}")
    return energy


def max_force(atoms: Atoms) -> float:
    """Largest atomic force norm (eV/Å)."""
    forces = atoms.get_forces()
    return float(np.sqrt((forces**2).sum(axis=1)).max()) if len(forces) else 0.0


def relax_positions(atoms: Atoms, *, fmax: float, steps: int = 1000, what: str = "") -> int:
    """Relax atomic positions at fixed cell (quiet); return the number of optimiser steps.

    Runs ASE's LBFGS; if it stalls, FIRE takes over from where it stopped (full BFGS with
    its dense Hessian was found to stall on nearly converged, slightly strained slabs at
    fmax ~ 1e-5 eV/Å).  Skips the optimisers when the forces are already below ``fmax``.

    Raises
    ------
    CalculationError
        If the forces are not below ``fmax`` (eV/Å) after ``steps`` steps of each optimiser.
    """
    from ase.optimize import FIRE, LBFGS

    if max_force(atoms) < fmax:
        return 0
    total = 0
    for optimizer in (LBFGS, FIRE):
        opt = optimizer(atoms, logfile=None)
        converged = opt.run(fmax=fmax, steps=steps)
        total += int(opt.nsteps)
        if converged:
            return total
        logger.debug("%s stalled on %s at %.2e eV/Å", optimizer.__name__, what, max_force(atoms))
    raise CalculationError(
        f"relaxation of {what or atoms.get_chemical_formula()} did not converge to "
        f"fmax={fmax} eV/Å in {total} steps (max force {max_force(atoms):.2e} eV/Å)"
    )


def freeze(atoms: Atoms) -> Atoms:
    """Copy of ``atoms`` carrying its energy/forces/stress in a picklable SinglePointCalculator."""
    results = {"energy": float(atoms.get_potential_energy()), "forces": atoms.get_forces().copy()}
    if atoms.pbc.all():
        results["stress"] = atoms.get_stress().copy()
    out = atoms.copy()
    out.constraints = []
    out.calc = SinglePointCalculator(out, **results)
    return out
