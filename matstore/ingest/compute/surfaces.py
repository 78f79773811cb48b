"""Surface energy, surface stress and surface stiffness of FCC (hkl) slabs.

Geometry
--------
The slab of orientation (h k l) is built directly from the FCC primitive lattice
(a1, a2, a3) = a/2 [(0,1,1), (1,0,1), (1,1,0)]: the plane normal in primitive reciprocal
coordinates is p = (k+l, h+l, h+k)/gcd, in-plane lattice vectors are the integer m with
m·p = 0, and one primitive atom per lattice plane is stacked along a vector with m·p = 1.
The in-plane cell is the *shortest* (Lagrange-reduced) basis of the 2D lattice, whose area
A = V_prim/d is the minimum possible (d = interplanar spacing), so high-index slabs stay
small (one atom per layer).  Cartesian axes are the surface frame of
:func:`matstore.orientation.in_plane_frame`: x = e1, y = e2, z = n, so tensors come out
directly in (e1, e2).  Top and bottom faces are related by the inversion symmetry of the
lattice, so both surfaces are identical.

Definitions (per unit *reference* area A0, both faces, Shenoy 2005)
----------------------------------------------------------------
surface energy    γ = (E_slab − N e_bulk) / (2 A0)
surface stress    τ_ij = (1/2A0) [∂E_slab/∂η_ij − N ∂e_bulk/∂η_ij],  i, j ∈ {1, 2}
surface stiffness S_ijkl = ∂τ_ij/∂η_kl (Voigt, engineering shear: S11, S22, S12, S16,
                  S26, S66)
with η the in-plane Lagrangian strain, ∂E/∂η = F⁻¹ (V σ) F⁻ᵀ from the calculator's Cauchy
stress σ (ASE convention: tension positive, so τ > 0 means the surface would like to
shrink) and the bulk term taken from a periodic bulk cell of the same orientation under the
same in-plane strain with its normal stresses relaxed (σ_i3 = 0) — the state of the slab
interior.  The stiffness is obtained from central differences of τ at in-plane strains
±``strain``; slab atoms are relaxed at every strain.  Units: 1 eV/Å² = 16.0217663 J/m²
(= N/m).

V. B. Shenoy, Phys. Rev. B 71, 094104 (2005), doi:10.1103/PhysRevB.71.094104;
R. C. Cammarata, Prog. Surf. Sci. 46, 1 (1994), doi:10.1016/0079-6816(94)90005-1.

Thickness convergence
---------------------
The slab grows from ``min_thickness`` in steps of ``thickness_step`` (Å, converted to whole
layers of spacing d) until |Δγ| <= max(``gamma_tol_abs``, ``gamma_tol_rel``·γ) and, when
``tau_tol`` is set, max|Δτ_ij| <= ``tau_tol`` (N/m) between consecutive thicknesses.
Surface stress converges more slowly with thickness than γ (it is the strain derivative of
γ and picks up the slowly decaying relaxation of the sub-surface layers), which is why the
default includes ``tau_tol = 0.02 N/m``.  The convergence history is returned.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from functools import reduce
from typing import Any

import numpy as np
from ase import Atoms

from matstore.orientation import from_miller, in_plane_frame

from ._common import (
    EV_PER_A2_TO_J_PER_M2,
    check_finite,
    deform,
    freeze,
    relax_positions,
    single_threaded_blas,
)
from .calculators import CalculationError, CalculatorBackend, get_backend

logger = logging.getLogger(__name__)

_PRIMITIVE = 0.5 * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=float)

UNITS = {
    "surface_energy": "J/m**2",
    "surface_stress_mean": "N/m",
    "surface_stress_11": "N/m",
    "surface_stress_22": "N/m",
    "surface_stress_12": "N/m",
    "surface_stiffness_11": "N/m",
    "surface_stiffness_22": "N/m",
    "surface_stiffness_12": "N/m",
    "surface_stiffness_66": "N/m",
}


@dataclass(frozen=True)
class SurfaceTolerances:
    """Numerical settings of :func:`compute_surface` (part of the task specification).

    Attributes
    ----------
    min_thickness : float
        Smallest slab thickness N·d tried (Å).
    thickness_step : float
        Thickness added per convergence step (Å, rounded up to whole layers).
    max_thickness : float
        Largest thickness tried before giving up (Å); the result is then flagged
        ``converged=False`` (no exception).
    gamma_tol_abs : float
        Absolute tolerance on γ between consecutive thicknesses (J/m²).
    gamma_tol_rel : float
        Relative tolerance on γ (the looser of the two applies).
    tau_tol : float or None
        Tolerance on every τ_ij (N/m); ``None`` leaves τ out of the criterion.
    vacuum : float
        Vacuum between periodic images of the slab (Å), at least 12 Å.
    fmax : float
        Force tolerance (eV/Å) of the relaxations of the thickness-convergence loop.
        1e-3 eV/Å converges γ to < 0.1 mJ/m² but leaves ~0.01 N/m noise in τ, hence 1e-4.
    strain : float
        In-plane strain amplitude of the stiffness finite differences.
    stiffness_fmax : float
        Force tolerance (eV/Å) of the slab relaxations used for the stiffness and the
        final surface stress.  S is a small difference of large slab and bulk virials
        (a ±0.5 % strain changes τ by only ~0.01 N/m), so positions must be converged
        much more tightly than for γ.
    stiffness : bool
        Compute the surface stiffness (6 extra relaxations at the final thickness).
    """

    min_thickness: float = 12.0
    thickness_step: float = 3.0
    max_thickness: float = 40.0
    gamma_tol_abs: float = 1e-3
    gamma_tol_rel: float = 1e-3
    tau_tol: float | None = 0.02
    vacuum: float = 12.0
    fmax: float = 1e-4
    strain: float = 5e-3
    stiffness: bool = True
    stiffness_fmax: float = 1e-5


@dataclass
class SurfaceResult:
    """Surface properties of one (h k l) orientation of an FCC element.

    Attributes
    ----------
    element, calculator : str
        Element symbol and method label.
    miller : tuple of int
        (h, k, l) as requested (gcd-reduced); the frame follows this sign/order.
    orientation_key : str
        :attr:`matstore.orientation.Orientation.key` of the representative, e.g. ``hkl:2,1,0``.
    lattice_constant : float
        Bulk lattice constant used (Å); the in-plane cell is fixed to it.
    surface_energy : float
        γ (J/m²).
    surface_stress : list of list of float
        τ, shape (2, 2), N/m, in the frame (e1, e2); symmetric.
    surface_stress_mean : float
        (τ11 + τ22)/2 (N/m).
    surface_stiffness : list of list of float or None
        Voigt matrix S, shape (3, 3), N/m, rows/columns (11, 22, 12) with engineering shear.
    s11, s22, s12, s66 : float or None
        S_1111, S_2222, S_1122 (symmetrised) and S_1212 (N/m).
    n_layers, n_atoms : int
        Atomic planes and atoms of the final slab (one atom per plane).
    thickness : float
        N·d (Å).
    interlayer_spacing : float
        d (Å).
    area : float
        In-plane cell area A0 (Å²).
    converged : bool
        Whether the thickness criterion was met.
    convergence : list of dict
        One entry per thickness: n_layers, thickness, surface_energy, surface_stress,
        relaxation_steps.
    frame : dict
        ``e1``, ``e2``, ``normal``: (3,) lists in crystal axes.
    method : dict
        :meth:`CalculatorBackend.method_record`.
    details : dict
        Tolerances, stiffness finite-difference data, bulk-reference stresses.
    atoms : ase.Atoms
        Relaxed slab with energy/forces/stress attached (x = e1, y = e2, z = n).
    """

    element: str
    calculator: str
    miller: tuple[int, int, int]
    orientation_key: str
    lattice_constant: float
    surface_energy: float
    surface_stress: list[list[float]]
    surface_stress_mean: float
    n_layers: int
    n_atoms: int
    thickness: float
    interlayer_spacing: float
    area: float
    converged: bool
    convergence: list[dict[str, Any]] = field(default_factory=list)
    surface_stiffness: list[list[float]] | None = None
    s11: float | None = None
    s22: float | None = None
    s12: float | None = None
    s66: float | None = None
    frame: dict[str, list[float]] = field(default_factory=dict)
    method: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    atoms: Atoms | None = None

    def properties(self) -> dict[str, tuple[float, str]]:
        """Scalar properties ``{name: (value, unit)}`` in canonical units (``None`` skipped)."""
        tau = self.surface_stress
        values = {
            "surface_energy": self.surface_energy,
            "surface_stress_mean": self.surface_stress_mean,
            "surface_stress_11": tau[0][0],
            "surface_stress_22": tau[1][1],
            "surface_stress_12": tau[0][1],
            "surface_stiffness_11": self.s11,
            "surface_stiffness_22": self.s22,
            "surface_stiffness_12": self.s12,
            "surface_stiffness_66": self.s66,
        }
        return {k: (float(v), UNITS[k]) for k, v in values.items() if v is not None}


# ----------------------------------------------------------------------- geometry -----
@dataclass(frozen=True)
class SlabGeometry:
    """Lattice geometry of an FCC (hkl) stack in the surface frame (lattice constant 1).

    Attributes
    ----------
    miller : tuple of int
        Reduced (h, k, l) as given.
    rotation : numpy.ndarray, shape (3, 3)
        Rows e1, e2, n: maps crystal-axis vectors to the surface frame.
    v1, v2 : numpy.ndarray, shape (3,)
        Reduced in-plane lattice vectors (frame coordinates, z = 0, right-handed).
    v3 : numpy.ndarray, shape (3,)
        Stacking vector from one plane to the next (z = d).
    """

    miller: tuple[int, int, int]
    rotation: np.ndarray
    v1: np.ndarray
    v2: np.ndarray
    v3: np.ndarray

    @property
    def spacing(self) -> float:
        """Interplanar spacing d (units of a)."""
        return float(self.v3[2])

    @property
    def area(self) -> float:
        """In-plane cell area (units of a²)."""
        return float(abs(self.v1[0] * self.v2[1] - self.v1[1] * self.v2[0]))


def _reduced_miller(miller) -> tuple[int, int, int]:
    ints = [int(v) for v in miller]
    g = reduce(math.gcd, (abs(v) for v in ints))
    if g == 0:
        raise ValueError(f"Miller index {miller} is not a plane")
    return tuple(v // g for v in ints)  # type: ignore[return-value]


def _lattice_candidates(p: np.ndarray, span: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer primitive coordinates m in [-span, span]³ and their dot products m·p."""
    r = np.arange(-span, span + 1)
    m = np.stack(np.meshgrid(r, r, r, indexing="ij"), axis=-1).reshape(-1, 3)
    return m, m @ p


def _gauss_reduce(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lagrange–Gauss reduction of a 2D lattice basis (shortest basis)."""
    if u @ u > v @ v:
        u, v = v, u
    while True:
        mu = round(float(u @ v) / float(u @ u))
        v = v - mu * u
        if v @ v >= u @ u - 1e-12:
            return u, v
        u, v = v, u


def slab_geometry(miller) -> SlabGeometry:
    """Minimal in-plane cell and stacking vector of the FCC (hkl) planes.

    Parameters
    ----------
    miller : sequence of 3 int
        Plane indices in cubic axes (any order/sign; gcd-reduced here).

    Returns
    -------
    SlabGeometry
        In lattice-constant units.

    Raises
    ------
    ValueError
        For (0, 0, 0).
    """
    hkl = _reduced_miller(miller)
    h, k, l = hkl  # noqa: E741
    p = np.array([k + l, h + l, h + k])
    p //= reduce(math.gcd, (abs(int(v)) for v in p))
    e1, e2, n = in_plane_frame(hkl)
    rot = np.array([e1, e2, n])
    span = 3 * int(np.abs(p).max()) + 1
    m, dots = _lattice_candidates(p, span)
    inplane = (_PRIMITIVE.T @ m[dots == 0].T).T
    inplane = inplane[np.linalg.norm(inplane, axis=1) > 1e-9]
    area_min = 0.25 * np.linalg.norm(np.linalg.inv(_PRIMITIVE) @ p)  # V_prim / d = V_prim · |g|
    order = np.argsort(np.linalg.norm(inplane, axis=1), kind="stable")
    u = inplane[order[0]]
    areas = np.linalg.norm(np.cross(u, inplane[order]), axis=1)
    v = inplane[order][np.argmax(np.abs(areas - area_min) < 1e-8)]
    u, v = _gauss_reduce(rot @ u, rot @ v)
    u[2] = v[2] = 0.0
    if u[0] * v[1] - u[1] * v[0] < 0:
        v = -v
    stack = (_PRIMITIVE.T @ m[dots == 1].T).T
    w = rot @ stack[np.argmin(np.linalg.norm(stack, axis=1))]
    basis = np.array([u[:2], v[:2]]).T
    w[:2] -= basis @ np.floor(np.linalg.solve(basis, w[:2]) + 0.5)
    return SlabGeometry(hkl, rot, u, v, w)


def build_slab(element: str, a: float, miller, n_layers: int, vacuum: float) -> Atoms:
    """Slab of ``n_layers`` (hkl) planes with the minimal in-plane cell (one atom per plane).

    Returns
    -------
    ase.Atoms
        Fully periodic cell (x = e1, y = e2, z = n) with ``vacuum`` Å between images.
    """
    g = slab_geometry(miller)
    positions = a * np.outer(np.arange(n_layers), g.v3)
    height = a * g.spacing * (n_layers - 1) + vacuum
    cell = np.array([a * g.v1, a * g.v2, [0.0, 0.0, height]])
    atoms = Atoms(element * n_layers, positions=positions, cell=cell, pbc=True)
    atoms.positions[:, 2] += vacuum / 2
    atoms.wrap(pbc=[True, True, False])
    return atoms


def build_oriented_bulk(element: str, a: float, miller, min_height: float = 6.0) -> Atoms:
    """Periodic bulk cell sharing the slab's in-plane cell (stack of whole planes).

    Its height is at least ``min_height`` Å so that calculators with a small-cell limit
    behave; the third vector is n_b·v3 with its in-plane part reduced.
    """
    g = slab_geometry(miller)
    n_b = max(1, math.ceil(min_height / (a * g.spacing)))
    c = n_b * g.v3
    basis = np.array([g.v1[:2], g.v2[:2]]).T
    c[:2] -= basis @ np.floor(np.linalg.solve(basis, c[:2]) + 0.5)
    positions = a * np.outer(np.arange(n_b), g.v3)
    atoms = Atoms(element * n_b, positions=positions, cell=a * np.array([g.v1, g.v2, c]), pbc=True)
    atoms.wrap()
    return atoms


# ------------------------------------------------------------------------ physics -----
def _virial(atoms: Atoms) -> np.ndarray:
    """V σ (eV), shape (3, 3): the energy derivative with respect to small strain."""
    return atoms.get_volume() * atoms.get_stress(voigt=False)


def relaxed_bulk_virial(bulk: Atoms, calc, f2: np.ndarray, fmax: float) -> tuple[np.ndarray, int]:
    """In-plane-strained oriented bulk with σ_i3 = 0: (V σ per atom, Newton iterations).

    The in-plane vectors are deformed by the (2, 2) gradient ``f2``; the third cell vector
    is solved for zero normal stresses by Newton's method with a finite-difference Jacobian
    (positions move affinely; monatomic Bravais stacks carry no internal forces).

    Raises
    ------
    CalculationError
        If the normal stresses do not vanish (|σ_i3| > 1e-7 eV/Å³) after 20 iterations.
    """
    f = np.eye(3)
    f[:2, :2] = f2
    atoms = deform(bulk, f)
    atoms.calc = calc

    def normal_stress(c: np.ndarray) -> np.ndarray:
        cell = np.array(atoms.cell)
        cell[2] = c
        atoms.set_cell(cell, scale_atoms=True)
        return atoms.get_stress(voigt=False)[:, 2].copy()

    c = np.array(atoms.cell[2])
    s = normal_stress(c)
    h = 1e-4 * np.linalg.norm(c)
    jac = np.column_stack([(normal_stress(c + h * np.eye(3)[j]) - s) / h for j in range(3)])
    for iteration in range(20):
        s = normal_stress(c)
        if np.abs(s).max() < 1e-9:
            return _virial(atoms) / len(atoms), iteration
        c = c - np.linalg.solve(jac, s)
    if np.abs(s).max() > 1e-7:
        raise CalculationError(f"normal stresses of the strained bulk did not relax: {s}")
    return _virial(atoms) / len(atoms), 20


def _excess_stress(slab: Atoms, bulk_virial_per_atom: np.ndarray, f2: np.ndarray, area0: float):
    """τ^L (2, 2) in eV/Å² from slab and bulk virials (PK2 pull-back with F2)."""
    excess = _virial(slab)[:2, :2] - len(slab) * bulk_virial_per_atom[:2, :2]
    f2inv = np.linalg.inv(f2)
    return f2inv @ excess @ f2inv.T / (2.0 * area0)


def relax_slab(slab: Atoms, calc, fmax: float, what: str) -> int:
    """Attach ``calc`` and relax all atoms at fixed cell; return the optimiser steps."""
    slab.calc = calc
    return relax_positions(slab, fmax=fmax, what=what)


def slab_energy_stress(
    element: str, calc, a: float, e_bulk: float, miller, n_layers: int, tol: SurfaceTolerances
) -> tuple[Atoms, float, np.ndarray, int]:
    """Relax one slab: (slab, γ in J/m², τ (2, 2) in N/m, optimiser steps).

    The bulk stress at the (unstrained) lattice constant is zero to within the lattice
    constant tolerance, so τ uses only the slab virial here; the strained cases subtract
    the bulk term explicitly (:func:`surface_stiffness`).
    """
    slab = build_slab(element, a, miller, n_layers, tol.vacuum)
    steps = relax_slab(slab, calc, tol.fmax, f"{element}{tuple(miller)} N={n_layers}")
    area = float(np.linalg.norm(np.cross(slab.cell[0], slab.cell[1])))
    gamma = (check_finite(slab, "slab") - n_layers * e_bulk) / (2 * area)
    tau = _excess_stress(slab, np.zeros((3, 3)), np.eye(2), area)
    return slab, gamma * EV_PER_A2_TO_J_PER_M2, tau * EV_PER_A2_TO_J_PER_M2, steps


def surface_stiffness(
    slab: Atoms, calc, element: str, a: float, miller, tol: SurfaceTolerances
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Surface stress and Voigt surface stiffness (N/m) by central differences.

    Returns
    -------
    tau0 : numpy.ndarray, shape (2, 2)
        Surface stress with the bulk term subtracted (N/m).
    stiffness : numpy.ndarray, shape (3, 3)
        S[i, j] = ∂τ_i/∂e_j, Voigt (11, 22, 12), engineering shear e_3 = 2 η_12 (N/m).
    details : dict
        τ at every strain and the Newton iterations of the bulk references.
    """
    area0 = float(np.linalg.norm(np.cross(slab.cell[0], slab.cell[1])))
    slab = slab.copy()
    relax_slab(slab, calc, tol.stiffness_fmax, f"{element}{tuple(miller)} reference")
    bulk = build_oriented_bulk(element, a, miller)
    modes = [np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[0.0, 0.0], [0.0, 1.0]]),
             np.array([[0.0, 0.5], [0.5, 0.0]])]
    b0, _ = relaxed_bulk_virial(bulk, calc, np.eye(2), tol.fmax)
    tau0 = _excess_stress(slab, b0, np.eye(2), area0) * EV_PER_A2_TO_J_PER_M2
    stiffness = np.zeros((3, 3))
    record = []
    for j, mode in enumerate(modes):
        taus = []
        for sign in (1.0, -1.0):
            f2 = np.eye(2) + sign * tol.strain * mode
            f = np.eye(3)
            f[:2, :2] = f2
            strained = deform(slab, f)
            relax_slab(strained, calc, tol.stiffness_fmax, f"strained slab {j}{sign:+}")
            bvir, iters = relaxed_bulk_virial(bulk, calc, f2, tol.fmax)
            tau = _excess_stress(strained, bvir, f2, area0) * EV_PER_A2_TO_J_PER_M2
            taus.append(np.array([tau[0, 0], tau[1, 1], tau[0, 1]]))
            record.append({"mode": j, "sign": sign, "tau": taus[-1].tolist(), "bulk_newton": iters})
        stiffness[:, j] = (taus[0] - taus[1]) / (2 * tol.strain)
    return tau0, stiffness, {"strain": tol.strain, "points": record}


def layers_for(thickness: float, spacing: float) -> int:
    """Number of planes N with N·d >= ``thickness`` (at least 3)."""
    return max(3, math.ceil(thickness / spacing - 1e-9))


def compute_surface(
    element: str,
    backend: CalculatorBackend | str,
    miller,
    lattice_constant: float,
    bulk_energy_per_atom: float,
    *,
    tolerances: SurfaceTolerances | None = None,
) -> SurfaceResult:
    """Converged surface energy, stress and stiffness of the FCC (hkl) surface.

    Parameters
    ----------
    element : str
        Chemical symbol.
    backend : CalculatorBackend or str
        Calculator backend or registry name.
    miller : sequence of 3 int
        Plane (h, k, l) in cubic axes.
    lattice_constant : float
        Relaxed bulk lattice constant a0 (Å) of the same backend.
    bulk_energy_per_atom : float
        Bulk energy per atom at a0 (eV) of the same backend.
    tolerances : SurfaceTolerances, optional
        Convergence and numerical settings.

    Returns
    -------
    SurfaceResult

    Raises
    ------
    CalculatorSetupError
        If the backend cannot be set up.
    CalculationError
        If a relaxation fails.
    """
    with single_threaded_blas():
        return _compute_surface(element, backend, miller, lattice_constant,
                                bulk_energy_per_atom, tolerances)


def _compute_surface(element, backend, miller, lattice_constant, bulk_energy_per_atom,
                     tolerances) -> SurfaceResult:
    backend = get_backend(backend) if isinstance(backend, str) else backend
    tol = tolerances or SurfaceTolerances()
    if tol.vacuum < 12.0:
        raise ValueError(f"vacuum must be at least 12 Å, got {tol.vacuum}")
    calc = backend.make(element)
    geometry = slab_geometry(miller)
    d = lattice_constant * geometry.spacing
    n = layers_for(tol.min_thickness, d)
    step = max(1, math.ceil(tol.thickness_step / d - 1e-9))
    history: list[dict[str, Any]] = []
    previous = None
    converged = False
    while True:
        slab, gamma, tau, steps = slab_energy_stress(
            element, calc, lattice_constant, bulk_energy_per_atom, geometry.miller, n, tol
        )
        history.append({"n_layers": n, "thickness": n * d, "surface_energy": gamma,
                        "surface_stress": tau.tolist(), "relaxation_steps": steps})
        if previous is not None:
            dgamma = abs(gamma - previous[0])
            ok = dgamma <= max(tol.gamma_tol_abs, tol.gamma_tol_rel * abs(gamma))
            if tol.tau_tol is not None:
                ok = ok and float(np.abs(tau - previous[1]).max()) <= tol.tau_tol
            if ok:
                converged = True
                break
        if (n + step) * d > tol.max_thickness:
            logger.warning("%s%s not converged at %d layers", element, geometry.miller, n)
            break
        previous = (gamma, tau)
        n += step
    details: dict[str, Any] = {"tolerances": asdict(tol), "layer_step": step}
    stiffness = None
    if tol.stiffness:
        tau, stiffness, details["stiffness"] = surface_stiffness(
            slab, calc, element, lattice_constant, geometry.miller, tol
        )
    return _result(element, backend, geometry, lattice_constant, slab, gamma, tau, stiffness,
                   history, converged, details)


def _result(element, backend, geometry, a, slab, gamma, tau, stiffness, history, converged,
            details) -> SurfaceResult:
    tau = 0.5 * (tau + tau.T)
    e1, e2, n = geometry.rotation
    kwargs: dict[str, Any] = {}
    if stiffness is not None:
        kwargs = {
            "surface_stiffness": stiffness.tolist(),
            "s11": float(stiffness[0, 0]),
            "s22": float(stiffness[1, 1]),
            "s12": float(0.5 * (stiffness[0, 1] + stiffness[1, 0])),
            "s66": float(stiffness[2, 2]),
        }
    return SurfaceResult(
        element=element,
        calculator=backend.label(element),
        miller=geometry.miller,
        orientation_key=from_miller(*geometry.miller).key,
        lattice_constant=a,
        surface_energy=float(gamma),
        surface_stress=tau.tolist(),
        surface_stress_mean=float(np.trace(tau) / 2),
        n_layers=len(slab),
        n_atoms=len(slab),
        thickness=len(slab) * a * geometry.spacing,
        interlayer_spacing=a * geometry.spacing,
        area=a * a * geometry.area,
        converged=converged,
        convergence=history,
        frame={"e1": e1.tolist(), "e2": e2.tolist(), "normal": n.tolist()},
        method=backend.method_record(element),
        details=details,
        atoms=freeze(slab),
        **kwargs,
    )


__all__ = [
    "SlabGeometry",
    "SurfaceResult",
    "SurfaceTolerances",
    "UNITS",
    "build_oriented_bulk",
    "build_slab",
    "compute_surface",
    "layers_for",
    "relaxed_bulk_virial",
    "slab_energy_stress",
    "slab_geometry",
    "surface_stiffness",
]
