"""The seeded property vocabulary (name, canonical unit, scope, symbol, description).

Scopes say what a value belongs to: ``bulk``, ``defect`` and ``mechanical`` values belong to
a material computed by a method (``bulk_property``); ``surface`` values to one orientation of
it (``surface_property``); ``configuration`` values to one identified configuration of it
(``configuration_property``: a defect arrangement, a supercell, an alloy sample);
``composition`` descriptors are computed from the material's composition when a training set
is built and never stored (see :mod:`matstore.composition`).  Users add definitions of the
first three kinds with ``matstore vocab add`` (:func:`matstore.crud.add_definition`); the
built-in ones below cannot be redefined.

Names follow the field's usage and OpenKIM's property definitions.  Surface tensor
components are in the surface frame (axes 1, 2 in the surface plane, see
:mod:`matstore.orientation`); surface stiffness follows Voigt-like indexing
(11 = 1111, 22 = 2222, 12 = 1122, 66 = 1212).
"""

from __future__ import annotations

from typing import NamedTuple


class Definition(NamedTuple):
    """One vocabulary entry."""

    name: str
    unit: str
    scope: str
    symbol: str
    description: str


PROPERTY_DEFINITIONS: tuple[Definition, ...] = (
    Definition("lattice_constant", "angstrom", "bulk", "a", "Equilibrium cubic lattice constant at 0 K"),
    Definition("cohesive_energy", "eV/atom", "bulk", "E_c", "Energy per atom of the isolated atom minus that of the crystal (positive)"),
    Definition("c11", "GPa", "bulk", "C11", "Cubic elastic constant C11"),
    Definition("c12", "GPa", "bulk", "C12", "Cubic elastic constant C12"),
    Definition("c44", "GPa", "bulk", "C44", "Cubic elastic constant C44"),
    Definition("bulk_modulus", "GPa", "bulk", "B", "Bulk modulus (C11 + 2 C12)/3"),
    Definition("shear_modulus_prime", "GPa", "bulk", "G'", "Tetragonal shear modulus (C11 − C12)/2"),
    Definition("shear_modulus_c44", "GPa", "bulk", "G''", "Trigonal shear modulus C44"),
    Definition("zener_ratio", "dimensionless", "bulk", "A", "Zener anisotropy ratio 2 C44/(C11 − C12)"),
    Definition("stacking_fault_energy", "J/m^2", "defect", "γ_isf", "Intrinsic stacking-fault energy on {111}"),
    Definition("extrinsic_stacking_fault_energy", "J/m^2", "defect", "γ_esf", "Extrinsic stacking-fault energy on {111}"),
    Definition("unstable_stacking_fault_energy", "J/m^2", "defect", "γ_usf", "Unstable stacking-fault energy on {111}<112>"),
    Definition("unstable_twinning_energy", "J/m^2", "defect", "γ_utf", "Unstable twinning fault energy"),
    Definition("vacancy_formation_energy", "eV", "defect", "E_v^f", "Relaxed vacancy formation energy"),
    Definition("vacancy_migration_energy", "eV", "defect", "E_v^m", "Vacancy migration energy"),
    Definition("thermal_expansion_coefficient", "1/K", "bulk", "α", "Linear thermal expansion coefficient"),
    Definition("surface_energy_100", "J/m^2", "bulk", "γ(100)", "Relaxed (100) surface energy, as tabulated per material (OpenKIM)"),
    Definition("surface_energy_110", "J/m^2", "bulk", "γ(110)", "Relaxed (110) surface energy, as tabulated per material (OpenKIM)"),
    Definition("surface_energy_111", "J/m^2", "bulk", "γ(111)", "Relaxed (111) surface energy, as tabulated per material (OpenKIM)"),
    Definition("surface_energy_121", "J/m^2", "bulk", "γ(121)", "Relaxed (121) surface energy, as tabulated per material (OpenKIM)"),
    Definition("strength", "MPa", "mechanical", "σ_y", "Large-scale strength (e.g. nanocrystal/polycrystal flow stress from MD)"),
    Definition("surface_energy", "J/m^2", "surface", "γ", "Surface energy: excess energy per area of a relaxed surface"),
    Definition("surface_stress", "N/m", "surface", "τ", "Mean residual surface stress (τ11 + τ22)/2"),
    Definition("surface_stress_11", "N/m", "surface", "τ11", "Residual surface stress component along in-plane axis 1"),
    Definition("surface_stress_22", "N/m", "surface", "τ22", "Residual surface stress component along in-plane axis 2"),
    Definition("surface_stress_12", "N/m", "surface", "τ12", "Residual surface stress shear component"),
    Definition("surface_stiffness", "N/m", "surface", "S", "Mean in-plane surface stiffness (S11 + S22)/2"),
    Definition("surface_stiffness_11", "N/m", "surface", "S11", "Surface elastic constant S1111"),
    Definition("surface_stiffness_22", "N/m", "surface", "S22", "Surface elastic constant S2222"),
    Definition("surface_stiffness_12", "N/m", "surface", "S12", "Surface elastic constant S1122"),
    Definition("surface_stiffness_66", "N/m", "surface", "S66", "Surface elastic constant S1212"),
    Definition("formation_energy", "eV", "configuration", "E_f", "Formation energy of one configuration (defect arrangement, cluster, compound) from its reference chemical potentials"),
    Definition("mean_atomic_mass", "u", "composition", "⟨M⟩", "Atomic-fraction-weighted mean atomic mass (pymatgen element data)"),
    Definition("mean_electronegativity", "dimensionless", "composition", "⟨χ⟩", "Atomic-fraction-weighted mean Pauling electronegativity (pymatgen element data)"),
    Definition("electronegativity_difference", "dimensionless", "composition", "Δχ", "Largest minus smallest Pauling electronegativity of the elements present"),
    Definition("mean_atomic_radius", "angstrom", "composition", "⟨r⟩", "Atomic-fraction-weighted mean empirical atomic radius (Slater 1964, via pymatgen)"),
    Definition("mean_ionic_radius", "angstrom", "composition", "⟨r_ion⟩", "Atomic-fraction-weighted mean of each element's average ionic radius (Shannon 1976, via pymatgen)"),
    Definition("n_elements", "dimensionless", "composition", "n_el", "Number of distinct elements in the composition"),
    Definition("atomic_size_mismatch", "dimensionless", "composition", "δ", "Atomic size mismatch sqrt(Σ c_i (1 − r_i/r̄)²) over all elements, metallic radii (Zhang et al. 2008, doi:10.1002/adem.200700240)"),
    Definition("electronegativity_mismatch", "dimensionless", "composition", "Δχ_rms", "Pauling electronegativity mismatch sqrt(Σ c_i (χ_i − χ̄)²) over all elements (Guo & Liu 2011, doi:10.1016/S1002-0071(12)60080-X)"),
    Definition("cation_size_mismatch", "dimensionless", "composition", "δ_M", "Size mismatch sqrt(Σ c_i (1 − r_i/r̄)²) over the metal elements only, Shannon ionic radius of each metal in its charge-balanced oxidation state (average radius where none is found; Zhang et al. 2008)"),
    Definition("cation_electronegativity_mismatch", "dimensionless", "composition", "Δχ_M", "Pauling electronegativity mismatch sqrt(Σ c_i (χ_i − χ̄)²) over the metal elements only (Guo & Liu 2011)"),
)

#: Scopes whose values are stored in ``bulk_property`` (one value per material and method).
MATERIAL_SCOPES = ("bulk", "defect", "mechanical")
#: Scopes a user may give to a definition added with ``matstore vocab add``.
USER_SCOPES = ("bulk", "surface", "configuration", "defect", "mechanical")

DEFINITIONS_BY_NAME = {d.name: d for d in PROPERTY_DEFINITIONS}
