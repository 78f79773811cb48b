"""Bulk properties of an FCC element with one calculator backend.

All values are returned in canonical units (:data:`UNITS`): Å, eV/atom, GPa, J/m², eV.

Methods
-------
Lattice constant
    Energy–volume points of the 4-atom conventional cell over ±``eos_range`` are fitted with
    the Birch–Murnaghan equation of state (:class:`ase.eos.EquationOfState`; F. Birch,
    Phys. Rev. 71, 809 (1947), doi:10.1103/PhysRev.71.809); the minimum is then refined by
    Brent root finding of the hydrostatic pressure P(a) = −tr σ/3 = 0 to ``xtol`` (1e-7 Å by
    default, so the lattice constant is converged far below the requested 1e-5 Å).
Cohesive energy
    E_coh = E_atom − E_bulk/N (positive for a bound crystal); E_atom is a single atom in a
    20 Å non-periodic box (EMT's isolated-atom energy is not zero).
Elastic constants
    Central finite differences of the stress with respect to each of the six Voigt strains
    ±δ of the relaxed cell, with internal relaxation at every strained state:
    C_ij = [σ_i(+δ e_j) − σ_i(−δ e_j)]/(2δ).  At zero initial stress the second-order
    (Cauchy vs. PK2) terms are even in δ and cancel, so the error is O(δ²).  The cubic
    constants are the averages over the equivalent entries; the full 6×6 matrix is kept in
    ``details``.  See e.g. J. F. Nye, *Physical Properties of Crystals* (1985).
Intrinsic stacking fault energy
    A 3D-periodic orthogonal cell x‖[1-10], y‖[11-2], z‖[111] of ``sf_periods`` ABC periods
    whose third vector is tilted by the Shockley partial a/6[11-2] (|b_p| = a/√6), i.e. one
    intrinsic fault ...ABC|BCA... per cell:  γ_isf = (E_faulted − N e_bulk)/A.  The faulted
    cell is relaxed *along the normal only* (atoms along z, cell length c_z to σ_zz = 0);
    the rigid value is kept in ``details``.  (Vítek, Phil. Mag. 18, 773 (1968),
    doi:10.1080/14786436808227500.)
Vacancy formation energy (optional)
    E_v = E(N−1) − (N−1)/N · E(N) for an n×n×n conventional supercell, relaxed at constant
    volume (a finite-size estimate; 108 sites by default).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from ase.build import bulk as ase_bulk
from ase.data import atomic_numbers, reference_states
from ase.lattice.cubic import FaceCenteredCubic
from scipy.optimize import brentq

from ._common import (
    EV_PER_A2_TO_J_PER_M2,
    EV_PER_A3_TO_GPA,
    check_finite,
    deform,
    freeze,
    relax_positions,
    single_threaded_blas,
    voigt_strain_tensor,
)
from .calculators import CalculationError, CalculatorBackend, get_backend

logger = logging.getLogger(__name__)

#: Canonical units of the :class:`BulkResult` values.
UNITS = {
    "lattice_constant": "angstrom",
    "energy_per_atom": "eV",
    "isolated_atom_energy": "eV",
    "cohesive_energy": "eV",
    "c11": "GPa",
    "c12": "GPa",
    "c44": "GPa",
    "bulk_modulus": "GPa",
    "shear_modulus_prime": "GPa",
    "shear_modulus_c44": "GPa",
    "zener_ratio": "dimensionless",
    "stacking_fault_energy": "J/m**2",
    "vacancy_formation_energy": "eV",
}


@dataclass(frozen=True)
class BulkTolerances:
    """Numerical settings of :func:`compute_bulk` (all part of the task specification).

    Attributes
    ----------
    eos_range : float
        Relative half-width of the lattice-constant grid of the EOS fit (0.02 = ±2 %).
    eos_points : int
        Number of E(a) points of the EOS fit.
    lattice_xtol : float
        Absolute tolerance (Å) of the pressure-root refinement of the lattice constant.
    elastic_strain : float
        Voigt strain amplitude δ of the finite differences.
    fmax : float
        Force tolerance (eV/Å) of every internal relaxation.
    sf_periods : int
        ABC periods (3 {111} layers each) in the stacking-fault cell.
    vacancy_size : int
        Conventional cells per edge of the vacancy supercell (4·n³ sites).
    """

    eos_range: float = 0.02
    eos_points: int = 9
    lattice_xtol: float = 1e-7
    elastic_strain: float = 5e-4
    fmax: float = 1e-4
    sf_periods: int = 4
    vacancy_size: int = 3


@dataclass
class BulkResult:
    """FCC bulk properties of one element with one calculator.

    Attributes
    ----------
    element, calculator : str
        Element symbol and method label (``"emt"``, ``"lammps:Cu_u3.eam"``).
    lattice_constant : float
        Cubic lattice constant a0 (Å).
    energy_per_atom : float
        Bulk energy per atom at a0 (eV), the reference for surfaces and faults.
    isolated_atom_energy : float
        Energy of an isolated atom (eV).
    cohesive_energy : float
        E_atom − E_bulk/N (eV/atom), positive.
    c11, c12, c44 : float
        Cubic elastic constants (GPa).
    bulk_modulus : float
        (C11 + 2 C12)/3 (GPa).
    shear_modulus_prime : float
        C' = (C11 − C12)/2 (GPa).
    shear_modulus_c44 : float
        C44 (GPa).
    zener_ratio : float
        Anisotropy 2 C44/(C11 − C12).
    stacking_fault_energy : float
        Intrinsic stacking fault energy (J/m²), relaxed normal to the fault
        (see ``stacking_fault_relaxation``).
    stacking_fault_relaxation : str
        ``"normal"``: atoms and cell relaxed along [111] only.
    vacancy_formation_energy : float or None
        Relaxed mono-vacancy formation energy (eV), or ``None`` if not computed.
    elastic_tensor : list of list of float
        Full (6, 6) Voigt stiffness matrix (GPa) before cubic averaging.
    method : dict
        :meth:`CalculatorBackend.method_record` of the calculator.
    details : dict
        EOS fit (a0, B, rms residual), strain steps, rigid SFE, relaxation steps ...
    atoms : ase.Atoms
        Relaxed 4-atom conventional cell with energy, forces and stress attached.
    """

    element: str
    calculator: str
    lattice_constant: float
    energy_per_atom: float
    isolated_atom_energy: float
    cohesive_energy: float
    c11: float
    c12: float
    c44: float
    bulk_modulus: float
    shear_modulus_prime: float
    shear_modulus_c44: float
    zener_ratio: float
    stacking_fault_energy: float
    stacking_fault_relaxation: str = "normal"
    vacancy_formation_energy: float | None = None
    elastic_tensor: list[list[float]] = field(default_factory=list)
    method: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    atoms: Atoms | None = None

    def properties(self) -> dict[str, tuple[float, str]]:
        """Scalar properties as ``{name: (value, unit)}`` in canonical units (``None`` skipped)."""
        values = asdict(self)
        return {k: (float(values[k]), u) for k, u in UNITS.items() if values.get(k) is not None}


def fcc_cell(element: str, a: float) -> Atoms:
    """4-atom conventional FCC cell of lattice constant ``a`` (Å), cubic axes."""
    return ase_bulk(element, "fcc", a=a, cubic=True)


def guess_lattice_constant(element: str) -> float:
    """Experimental FCC lattice constant from :data:`ase.data.reference_states` (Å), or a
    volume-based estimate for elements that are not FCC there."""
    state = reference_states[atomic_numbers[element]] or {}
    if state.get("symmetry") == "fcc":
        return float(state["a"])
    from ase.data import covalent_radii

    return float(2 * math.sqrt(2) * covalent_radii[atomic_numbers[element]])


def _energy_per_atom(element: str, a: float, calc) -> float:
    atoms = fcc_cell(element, a)
    atoms.calc = calc
    return check_finite(atoms, f"{element} fcc a={a}") / len(atoms)


def _pressure(element: str, a: float, calc) -> float:
    atoms = fcc_cell(element, a)
    atoms.calc = calc
    return float(-np.trace(atoms.get_stress(voigt=False)) / 3.0)


def eos_fit(element: str, calc, a_guess: float, tol: BulkTolerances) -> dict[str, Any]:
    """Birch–Murnaghan fit of E(V) around ``a_guess`` (re-centred up to 4 times).

    Returns
    -------
    dict
        ``a0`` (Å), ``bulk_modulus`` (GPa), ``rms_residual`` (eV/atom), ``lattice_constants``
        and ``energies`` (eV/atom) of the grid.

    Raises
    ------
    CalculationError
        If the fit fails or the minimum stays outside the grid.
    """
    from ase.eos import EquationOfState

    centre = a_guess
    for _ in range(4):
        grid = centre * np.linspace(1 - tol.eos_range, 1 + tol.eos_range, tol.eos_points)
        energies = np.array([_energy_per_atom(element, a, calc) for a in grid])
        volumes = grid**3 / 4.0
        try:
            eos = EquationOfState(volumes, energies, eos="birchmurnaghan")
            v0, e0, b0 = eos.fit()
        except Exception as exc:  # noqa: BLE001 - ase raises generic errors on bad fits
            raise CalculationError(f"EOS fit failed for {element}: {exc}") from exc
        a0 = float((4.0 * v0) ** (1.0 / 3.0))
        if grid[1] <= a0 <= grid[-2]:
            residual = energies - eos.func(volumes, *eos.eos_parameters)
            return {
                "a0": a0,
                "bulk_modulus": float(b0 * EV_PER_A3_TO_GPA),
                "rms_residual": float(np.sqrt(np.mean(residual**2))),
                "lattice_constants": grid.tolist(),
                "energies": energies.tolist(),
            }
        centre = float(np.clip(a0, grid[0], grid[-1])) if math.isfinite(a0) else grid[-1]
    raise CalculationError(f"EOS minimum of {element} did not settle inside the fit range")


def refine_lattice_constant(element: str, calc, a0: float, xtol: float) -> float:
    """Root of the pressure P(a) = −tr σ/3 near ``a0`` by Brent's method (Å).

    Raises
    ------
    CalculationError
        If no sign change of P is found within ±5 % of ``a0``.
    """
    for width in (0.002, 0.01, 0.05):
        lo, hi = a0 * (1 - width), a0 * (1 + width)
        if _pressure(element, lo, calc) * _pressure(element, hi, calc) < 0:
            return float(brentq(lambda a: _pressure(element, a, calc), lo, hi, xtol=xtol, rtol=1e-15))
    raise CalculationError(f"pressure of {element} does not change sign around a={a0:.5f} Å")


def elastic_tensor(atoms: Atoms, calc, *, strain: float, fmax: float) -> np.ndarray:
    """(6, 6) Voigt stiffness (GPa) by central stress differences with internal relaxation.

    Parameters
    ----------
    atoms : ase.Atoms
        Relaxed, stress-free periodic cell.
    calc : ase Calculator
        Calculator to attach to the strained copies.
    strain : float
        Voigt strain amplitude δ (engineering shear for indices 3..5).
    fmax : float
        Force tolerance (eV/Å) of the internal relaxation.

    Returns
    -------
    numpy.ndarray, shape (6, 6)
        C_ij = ∂σ_i/∂e_j (GPa), ASE's Voigt order xx, yy, zz, yz, xz, xy.
    """
    c = np.zeros((6, 6))
    for j in range(6):
        stresses = []
        for sign in (1.0, -1.0):
            strained = deform(atoms, np.eye(3) + voigt_strain_tensor(j, sign * strain))
            strained.calc = calc
            relax_positions(strained, fmax=fmax, what=f"strain {j} {sign:+}")
            stresses.append(strained.get_stress(voigt=True))
        c[:, j] = (stresses[0] - stresses[1]) / (2 * strain) * EV_PER_A3_TO_GPA
    return c


def cubic_constants(c: np.ndarray) -> tuple[float, float, float, float]:
    """Cubic averages (C11, C12, C44) of a (6, 6) matrix and its largest deviation (GPa)."""
    c11 = float(np.mean(np.diag(c)[:3]))
    off = [c[0, 1], c[0, 2], c[1, 2], c[1, 0], c[2, 0], c[2, 1]]
    c12 = float(np.mean(off))
    c44 = float(np.mean(np.diag(c)[3:]))
    ideal = np.zeros((6, 6))
    ideal[:3, :3] = c12
    ideal[np.arange(3), np.arange(3)] = c11
    ideal[np.arange(3, 6), np.arange(3, 6)] = c44
    return c11, c12, c44, float(np.abs(c - ideal).max())


def stacking_fault_cell(element: str, a: float, periods: int, faulted: bool) -> Atoms:
    """Orthogonal {111} cell (x‖[1-10], y‖[11-2], z‖[111]), optionally with one intrinsic fault.

    The fault is made by tilting the third cell vector by the in-plane vector from a layer-A
    site to a layer-B site (a Shockley partial, |b_p| = a/√6), so the periodic image of
    layer A lands on B: ...ABC|BCA...

    Returns
    -------
    ase.Atoms
        6·``periods`` atoms, fully periodic.
    """
    atoms = FaceCenteredCubic(
        directions=[[1, -1, 0], [1, 1, -2], [1, 1, 1]],
        size=(1, 1, periods),
        symbol=element,
        latticeconstant=a,
        pbc=True,
    )
    if faulted:
        z = atoms.positions[:, 2]
        spacing = a / math.sqrt(3)
        r0 = atoms.positions[np.argmin(np.abs(z))]
        layer1 = atoms.positions[np.abs(z - spacing) < 1e-6]
        shift = layer1[np.argmin(np.linalg.norm(layer1[:, :2] - r0[:2], axis=1))] - r0
        cell = np.array(atoms.cell)
        cell[2, :2] += shift[:2]
        atoms.set_cell(cell, scale_atoms=False)
        atoms.wrap()
    return atoms


def stacking_fault_energy(
    element: str, calc, a: float, e_bulk: float, tol: BulkTolerances
) -> tuple[float, dict[str, Any]]:
    """Intrinsic stacking-fault energy (J/m²), relaxed along the fault normal only.

    Returns
    -------
    gamma : float
        Relaxed γ_isf (J/m²).
    details : dict
        ``rigid`` (J/m²), ``n_atoms``, ``area`` (Å²), ``strain_zz`` of the relaxed cell.

    Raises
    ------
    CalculationError
        If the normal relaxation does not converge.
    """
    from ase.constraints import FixCartesian
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    atoms = stacking_fault_cell(element, a, tol.sf_periods, faulted=True)
    atoms.calc = calc
    area = float(np.linalg.norm(np.cross(atoms.cell[0], atoms.cell[1])))
    n = len(atoms)
    rigid = (check_finite(atoms, "stacking fault") - n * e_bulk) / area * EV_PER_A2_TO_J_PER_M2
    height = float(atoms.cell[2, 2])
    atoms.set_constraint(FixCartesian(range(n), mask=(True, True, False)))
    filt = FrechetCellFilter(atoms, mask=[False, False, True, False, False, False])
    opt = BFGS(filt, logfile=None)
    with warnings.catch_warnings():  # scipy's logm accuracy notes inside FrechetCellFilter
        warnings.simplefilter("ignore", RuntimeWarning)
        converged = opt.run(fmax=tol.fmax * 10, steps=500)
    if not converged:
        raise CalculationError(f"stacking-fault relaxation of {element} did not converge")
    relaxed = (check_finite(atoms, "stacking fault") - n * e_bulk) / area * EV_PER_A2_TO_J_PER_M2
    details = {
        "rigid": float(rigid),
        "n_atoms": n,
        "n_layers": 3 * tol.sf_periods,
        "area": area,
        "strain_zz": float(atoms.cell[2, 2] / height - 1.0),
        "relaxation_steps": int(opt.nsteps),
        "relaxation": "normal (atoms along [111], cell c_z)",
    }
    return float(relaxed), details


def vacancy_formation_energy(
    element: str, calc, a: float, e_bulk: float, tol: BulkTolerances
) -> tuple[float, dict[str, Any]]:
    """Relaxed mono-vacancy formation energy (eV) at constant volume.

    E_v = E(N−1) − (N−1) e_bulk with N = 4·``vacancy_size``³.

    Raises
    ------
    CalculationError
        If the relaxation does not converge.
    """
    atoms = fcc_cell(element, a).repeat(tol.vacancy_size)
    n = len(atoms)
    del atoms[0]
    atoms.calc = calc
    unrelaxed = check_finite(atoms, "vacancy") - (n - 1) * e_bulk
    steps = relax_positions(atoms, fmax=max(tol.fmax, 1e-4) * 10, what=f"{element} vacancy")
    relaxed = check_finite(atoms, "vacancy") - (n - 1) * e_bulk
    return float(relaxed), {"unrelaxed": float(unrelaxed), "n_sites": n, "relaxation_steps": steps}


def compute_bulk(
    element: str,
    backend: CalculatorBackend | str,
    *,
    tolerances: BulkTolerances | None = None,
    lattice_guess: float | None = None,
    vacancy: bool = False,
) -> BulkResult:
    """FCC bulk properties of ``element`` (see the module docstring for the methods).

    Parameters
    ----------
    element : str
        Chemical symbol, e.g. ``"Cu"``.
    backend : CalculatorBackend or str
        Backend instance or registry name (:func:`~.calculators.get_backend`).
    tolerances : BulkTolerances, optional
        Numerical settings (defaults: :class:`BulkTolerances`).
    lattice_guess : float, optional
        Starting lattice constant (Å); default :func:`guess_lattice_constant`.
    vacancy : bool
        Also compute the vacancy formation energy (slower; default ``False``).

    Returns
    -------
    BulkResult

    Raises
    ------
    CalculatorSetupError
        If the backend cannot be set up for ``element``.
    CalculationError
        If a fit, root search or relaxation fails.
    """
    with single_threaded_blas():
        return _compute_bulk(element, backend, tolerances, lattice_guess, vacancy)


def _compute_bulk(element, backend, tolerances, lattice_guess, vacancy) -> BulkResult:
    backend = get_backend(backend) if isinstance(backend, str) else backend
    tol = tolerances or BulkTolerances()
    calc = backend.make(element)
    eos = eos_fit(element, calc, lattice_guess or guess_lattice_constant(element), tol)
    a0 = refine_lattice_constant(element, calc, eos["a0"], tol.lattice_xtol)
    atoms = fcc_cell(element, a0)
    atoms.calc = calc
    e_bulk = check_finite(atoms, f"{element} bulk") / len(atoms)
    e_atom = backend.isolated_atom_energy(element)
    c = elastic_tensor(atoms, calc, strain=tol.elastic_strain, fmax=tol.fmax)
    c11, c12, c44, deviation = cubic_constants(c)
    sfe, sf_details = stacking_fault_energy(element, calc, a0, e_bulk, tol)
    vac, vac_details = (None, None)
    if vacancy:
        vac, vac_details = vacancy_formation_energy(element, calc, a0, e_bulk, tol)
    details = {
        "eos": eos,
        "residual_pressure_GPa": float(-np.trace(atoms.get_stress(voigt=False)) / 3 * EV_PER_A3_TO_GPA),
        "elastic_strain": tol.elastic_strain,
        "elastic_cubic_deviation_GPa": deviation,
        "stacking_fault": sf_details,
        "vacancy": vac_details,
        "tolerances": asdict(tol),
    }
    logger.info("bulk %s/%s: a=%.5f Å Ecoh=%.4f eV", element, backend.name, a0, e_atom - e_bulk)
    return BulkResult(
        element=element,
        calculator=backend.label(element),
        lattice_constant=a0,
        energy_per_atom=e_bulk,
        isolated_atom_energy=e_atom,
        cohesive_energy=e_atom - e_bulk,
        c11=c11,
        c12=c12,
        c44=c44,
        bulk_modulus=(c11 + 2 * c12) / 3,
        shear_modulus_prime=(c11 - c12) / 2,
        shear_modulus_c44=c44,
        zener_ratio=2 * c44 / (c11 - c12),
        stacking_fault_energy=sfe,
        vacancy_formation_energy=vac,
        elastic_tensor=c.tolist(),
        method=backend.method_record(element),
        details=details,
        atoms=freeze(atoms),
    )


__all__ = [
    "BulkResult",
    "BulkTolerances",
    "UNITS",
    "compute_bulk",
    "cubic_constants",
    "elastic_tensor",
    "eos_fit",
    "fcc_cell",
    "guess_lattice_constant",
    "refine_lattice_constant",
    "stacking_fault_cell",
    "stacking_fault_energy",
    "vacancy_formation_energy",
]
