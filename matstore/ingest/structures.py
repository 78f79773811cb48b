"""Ingest atomistic structures (extxyz and anything ASE reads; CIF, POSCAR, vasprun.xml via pymatgen).

Each file is one source (keyed by the sha256 of its bytes) ingested in one transaction:
frames are read and validated first, then the source row is claimed
(:func:`matstore.crud.claim_source`, which serialises concurrent ingests of one file) and the
frames are written with :func:`matstore.ingest.copy.write_configurations`, de-duplicated by
:func:`configuration_hash`.  A malformed file raises an :class:`~matstore.ingest.errors.IngestError`
naming the file and line before anything is written.

Units: positions and cell in Å, energy in eV, forces in eV/Å, virial in eV.  When a file
gives the stress σ (eV/Å³, ASE's sign convention: positive in tension) the virial is
W = −V·σ with V the cell volume (Å³); an extxyz ``virial`` is taken as is.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from matstore.hashing import sha256_file
from matstore.ingest.copy import content_hashes, write_configurations
from matstore.ingest.errors import (
    EmptyFileError,
    IngestError,
    ParseError,
    TruncatedFileError,
    UnknownElementError,
    UnsupportedFormatError,
)

log = logging.getLogger(__name__)

#: ``atoms.info`` keys that are labels, not metadata (not copied into ``info``).
_LABEL_KEYS = {"energy", "free_energy", "stress", "virial", "forces"}


# --- hashing and unit conversion -----------------------------------------------------------------

def configuration_hash(
    numbers: np.ndarray,
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray | Sequence[bool] = (True, True, True),
    energy: float | None = None,
    forces: np.ndarray | None = None,
    virial: np.ndarray | None = None,
) -> str:
    """sha256 (hex) of the canonical bytes of a configuration: ``configuration.content_sha256``.

    The canonical bytes are a version tag, N as int64, the presence flags of energy, forces
    and virial, then ``numbers`` (N,) as little-endian int64, ``positions`` (N, 3) Å, ``cell``
    (3, 3) Å, ``pbc`` (3,) as bytes, and, when present, ``energy`` eV, ``forces`` (N, 3) eV/Å,
    ``virial`` (3, 3) eV, all float64 little-endian with −0.0 written as 0.0.  Two frames have
    the same hash exactly when all these arrays are bitwise equal.

    Parameters
    ----------
    numbers : (N,) int
    positions : (N, 3) float, Å
    cell : (3, 3) float, Å
    pbc : (3,) bool
    energy : float or None, eV
    forces : (N, 3) float or None, eV/Å
    virial : (3, 3) float or None, eV

    Returns
    -------
    str
        64 hex characters.

    Raises
    ------
    ValueError
        If an array is not finite or ``numbers`` is empty.
    """
    frame = {
        "numbers": numbers, "positions": positions, "cell": cell, "pbc": pbc,
        "energy": energy, "forces": forces, "virial": virial,
    }
    return content_hashes([frame])[0]


def stress_to_virial(stress: np.ndarray, volume: float) -> np.ndarray:
    """Virial W = −V·σ (eV) from the stress σ (eV/Å³).

    Parameters
    ----------
    stress : (6,) Voigt (xx, yy, zz, yz, xz, xy) or (3, 3) float, eV/Å³, positive in tension
    volume : float, Å³

    Returns
    -------
    (3, 3) float, eV
    """
    s = np.asarray(stress, dtype=float)
    if s.shape == (6,):
        xx, yy, zz, yz, xz, xy = s
        s = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    elif s.shape != (3, 3):
        raise ValueError(f"stress must have shape (6,) or (3, 3), got {s.shape}")
    return -volume * s


# --- frames from ASE and pymatgen ----------------------------------------------------------------

def _jsonable_info(info: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in info.items():
        if key in _LABEL_KEYS:
            continue
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        elif not isinstance(value, (str, int, float, bool, list, dict, type(None))):
            value = str(value)
        out[str(key)] = value
    return out


def frame_from_atoms(atoms: Any, index: int = 0) -> dict[str, Any]:
    """A frame dict (see :func:`matstore.ingest.copy.write_configurations`) from an ASE ``Atoms``.

    Labels are read from ``atoms.calc.results`` and ``atoms.info`` directly (not through the
    getters, which cost ~0.4 ms per frame): ``energy`` (else ``free_energy``), ``forces``, and
    ``virial`` from ``info['virial']`` or −V·``stress``.

    Raises
    ------
    ValueError
        If the frame has a stress but no cell volume.
    """
    results = dict(atoms.calc.results) if atoms.calc is not None else {}
    info = atoms.info
    energy = results.get("energy", results.get("free_energy", info.get("energy")))
    forces = results.get("forces")
    if forces is None and "forces" in atoms.arrays:
        forces = atoms.arrays["forces"]
    cell = np.array(atoms.cell.array, dtype=float)
    virial = info.get("virial")
    if virial is None:
        virial = results.get("virial")
    stress = results.get("stress", info.get("stress"))
    if virial is None and stress is not None:
        volume = abs(float(np.linalg.det(cell)))
        if volume == 0.0:
            raise ValueError("the frame has a stress but its cell has no volume")
        virial = stress_to_virial(stress, volume)
    meta = _jsonable_info(info)
    meta["frame"] = index
    if "free_energy" in results and "energy" in results and results["free_energy"] != results["energy"]:
        meta.setdefault("free_energy", float(results["free_energy"]))
    return {
        "numbers": np.asarray(atoms.numbers, dtype=np.int64),
        "positions": np.asarray(atoms.positions, dtype=float),
        "cell": cell,
        "pbc": np.asarray(atoms.pbc, dtype=bool),
        "energy": None if energy is None else float(energy),
        "forces": None if forces is None else np.asarray(forces, dtype=float),
        "virial": None if virial is None else np.asarray(virial, dtype=float).reshape(3, 3),
        "info": meta,
    }


def _frame_from_structure(structure: Any, index: int, **labels: Any) -> dict[str, Any]:
    numbers = []
    for site in structure:
        if not site.is_ordered:
            raise ValueError(f"disordered site {site.species} cannot be stored as a configuration")
        numbers.append(int(getattr(site.specie, "Z", 0)))
    info = {"frame": index}
    info.update({k: v for k, v in labels.pop("info", {}).items()})
    return {
        "numbers": np.array(numbers, dtype=np.int64),
        "positions": np.array(structure.cart_coords, dtype=float),
        "cell": np.array(structure.lattice.matrix, dtype=float),
        "pbc": np.array(getattr(structure.lattice, "pbc", (True, True, True)), dtype=bool),
        "info": info,
        **labels,
    }


# --- format detection and readers -------------------------------------------------------------

def detect_format(path: Path) -> str:
    """Reader name for ``path``: ``extxyz``, ``cif``, ``poscar``, ``vasprun`` or ``ase``."""
    name = path.name.lower()
    if name.endswith((".extxyz", ".xyz")):
        return "extxyz"
    if name.endswith(".cif"):
        return "cif"
    if name.startswith(("poscar", "contcar")) or name.endswith((".vasp", ".poscar")):
        return "poscar"
    if name.startswith("vasprun") and name.endswith(".xml"):
        return "vasprun"
    return "ase"


def _scan_xyz(path: Path, lines: list[str]) -> list[tuple[int, int]]:
    """(first line, atom count) of every frame of an (ext)xyz file; checks counts and symbols."""
    from ase.data import atomic_numbers

    frames: list[tuple[int, int]] = []
    i = 0
    total = len(lines)
    while i < total:
        head = lines[i].strip()
        if not head:
            if all(not line.strip() for line in lines[i:]):
                break
            raise ParseError("blank line where the atom count of a frame was expected", path=path, line=i + 1)
        try:
            natoms = int(head)
        except ValueError:
            raise ParseError(f"expected the atom count of frame {len(frames)}, got {head[:40]!r}", path=path, line=i + 1) from None
        if natoms < 1:
            raise ParseError(f"frame {len(frames)} declares {natoms} atoms", path=path, line=i + 1)
        available = total - (i + 2)
        if available < natoms:
            got = max(available, 0)
            raise TruncatedFileError(
                f"frame {len(frames)} (line {i + 1}) declares {natoms} atoms but the file ends after {got} atom lines",
                path=path, line=total,
            )
        comment = lines[i + 1]
        check_species = "Properties=" not in comment or "Properties=species:S:1" in comment
        n_tokens = None
        for j in range(i + 2, i + 2 + natoms):
            tokens = lines[j].split()
            if not tokens:
                raise TruncatedFileError(f"frame {len(frames)} has a blank line among its {natoms} atom lines", path=path, line=j + 1)
            if n_tokens is None:
                n_tokens = len(tokens)
            elif len(tokens) != n_tokens:
                raise ParseError(f"atom line has {len(tokens)} fields, the frame's first atom line has {n_tokens}", path=path, line=j + 1)
            if check_species and tokens[0] not in atomic_numbers:
                raise UnknownElementError(f"unknown element {tokens[0]!r}", path=path, line=j + 1)
            if check_species and atomic_numbers[tokens[0]] == 0:
                raise UnknownElementError(f"{tokens[0]!r} is a dummy atom, not an element", path=path, line=j + 1)
        frames.append((i + 1, natoms))
        i += 2 + natoms
    return frames


def _locate_bad_number(path: Path, lines: list[str], start: int, natoms: int) -> int:
    """Line number of the first atom line of the frame at ``start`` with an unparsable number."""
    first = lines[start + 1].split()
    numeric = []
    for k, token in enumerate(first):
        try:
            float(token)
            numeric.append(k)
        except ValueError:
            continue
    for j in range(start + 1, start + 1 + natoms):
        tokens = lines[j].split()
        for k in numeric:
            try:
                float(tokens[k])
            except (ValueError, IndexError):
                return j + 1
    # Column types of the first atom line itself: positions must be numbers.
    for k in range(1, min(4, len(first))):
        if k not in numeric:
            return start + 2
    # No bad number on an atom line: the comment line (Lattice=, Properties=, key=value) is at fault.
    return start + 1


def _read_extxyz(path: Path) -> list[dict[str, Any]]:
    from ase.io.extxyz import read_xyz

    text = path.read_text(errors="replace")
    lines = text.splitlines()
    if not text.strip():
        raise EmptyFileError("the file is empty", path=path)
    starts = _scan_xyz(path, lines)
    if not starts:
        raise EmptyFileError("the file holds no frames", path=path)
    frames: list[dict[str, Any]] = []
    with open(path) as handle:
        iterator = read_xyz(handle, index=slice(None))
        for k, (start, natoms) in enumerate(starts):
            try:
                atoms = next(iterator)
            except StopIteration:
                raise TruncatedFileError(f"frame {k} could not be read", path=path, line=start) from None
            except Exception as exc:  # noqa: BLE001 - ASE raises many kinds; all mean "malformed"
                line = _locate_bad_number(path, lines, start, natoms)
                raise ParseError(f"frame {k}: {exc.__class__.__name__}: {exc}", path=path, line=line) from exc
            try:
                frames.append(frame_from_atoms(atoms, k))
            except ValueError as exc:
                raise ParseError(f"frame {k}: {exc}", path=path, line=start) from exc
            # Validated here, where the frame's line is known (read_frames skips extxyz frames).
            _validate_frame(path, k, frames[-1], start=start)
    return frames


def _read_ase(path: Path, fmt: str | None) -> list[dict[str, Any]]:
    import ase.io

    try:
        images = ase.io.read(path, index=":", format=fmt)
    except Exception as exc:  # noqa: BLE001
        raise ParseError(f"ASE could not read the file: {exc.__class__.__name__}: {exc}", path=path) from exc
    if not isinstance(images, list):
        images = [images]
    return [frame_from_atoms(atoms, k) for k, atoms in enumerate(images)]


def _read_cif(path: Path) -> list[dict[str, Any]]:
    from pymatgen.io.cif import CifParser

    try:
        structures = CifParser(str(path)).parse_structures(primitive=False)
    except Exception as exc:  # noqa: BLE001
        raise ParseError(f"pymatgen could not read the CIF: {exc}", path=path) from exc
    try:
        return [_frame_from_structure(s, k) for k, s in enumerate(structures)]
    except ValueError as exc:
        raise ParseError(str(exc), path=path) from exc


def _read_poscar(path: Path) -> list[dict[str, Any]]:
    from pymatgen.io.vasp import Poscar

    try:
        poscar = Poscar.from_file(str(path), check_for_potcar=False)
    except Exception as exc:  # noqa: BLE001
        raise ParseError(f"pymatgen could not read the POSCAR: {exc}", path=path) from exc
    return [_frame_from_structure(poscar.structure, 0, info={"comment": poscar.comment})]


def _read_vasprun(path: Path) -> list[dict[str, Any]]:
    from ase.units import GPa
    from pymatgen.io.vasp import Vasprun

    try:
        run = Vasprun(str(path), parse_dos=False, parse_eigen=False, parse_projected_eigen=False, parse_potcar_file=False)
    except Exception as exc:  # noqa: BLE001
        raise ParseError(f"pymatgen could not read vasprun.xml: {exc}", path=path) from exc
    frames = []
    for k, step in enumerate(run.ionic_steps):
        structure = step["structure"]
        energy = step.get("e_0_energy", step.get("e_fr_energy"))
        forces = step.get("forces")
        stress = step.get("stress")
        virial = None
        if stress is not None:
            # VASP prints the stress in kBar with the opposite sign to ASE's (positive in tension).
            sigma = -0.1 * GPa * np.asarray(stress, dtype=float)
            virial = stress_to_virial(sigma, float(structure.volume))
        info = {"e_fr_energy": step.get("e_fr_energy"), "e_wo_entrp": step.get("e_wo_entrp")}
        frames.append(_frame_from_structure(
            structure, k, energy=None if energy is None else float(energy),
            forces=None if forces is None else np.asarray(forces, dtype=float), virial=virial,
            info={key: v for key, v in info.items() if v is not None},
        ))
    return frames


def read_frames(path: str | Path, *, format: str | None = None) -> list[dict[str, Any]]:  # noqa: A002
    """Read every frame of a structure file into frame dicts.

    Parameters
    ----------
    path
        The file.
    format
        ``extxyz``, ``cif``, ``poscar``, ``vasprun``, or any ASE format name; default: from
        the file name (:func:`detect_format`), falling back to ASE's guess.

    Returns
    -------
    list of dict
        Frame dicts as :func:`matstore.ingest.copy.write_configurations` takes them.

    Raises
    ------
    EmptyFileError, TruncatedFileError, ParseError, UnknownElementError, UnsupportedFormatError
        The message names the file and, for extxyz, the line.
    FileNotFoundError
        If ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise EmptyFileError("the file is empty", path=path)
    fmt = format or detect_format(path)
    readers: dict[str, Callable[[Path], list[dict[str, Any]]]] = {
        "extxyz": _read_extxyz, "xyz": _read_extxyz, "cif": _read_cif, "poscar": _read_poscar,
        "vasp": _read_poscar, "vasprun": _read_vasprun,
    }
    reader = readers.get(fmt)
    if reader is not None:
        frames = reader(path)
    else:
        try:
            frames = _read_ase(path, None if fmt == "ase" else fmt)
        except ValueError as exc:
            raise UnsupportedFormatError(str(exc), path=path) from exc
    if not frames:
        raise EmptyFileError("the file holds no frames", path=path)
    if reader is not _read_extxyz:
        for k, frame in enumerate(frames):
            _validate_frame(path, k, frame)
    return frames


def _validate_frame(path: Path, k: int, frame: dict[str, Any], start: int | None = None) -> None:
    """Check shapes and finiteness of frame ``k``; ``start``: 1-based line of its atom count (extxyz).

    With ``start`` the error names the line: the first atom line with a non-finite position or
    force, else the frame's comment line (cell, energy, stress/virial).
    """

    def line_of(key: str, value: Any = None) -> int | None:
        if start is None:
            return None
        if key in ("positions", "forces") and value is not None and value.ndim == 2:
            bad = np.flatnonzero(~np.isfinite(value).all(axis=1))
            if len(bad):
                return start + 2 + int(bad[0])
        return start + 1

    n = len(frame["numbers"])
    if n == 0:
        raise ParseError(f"frame {k} has no atoms", path=path)
    if np.any(frame["numbers"] < 1) or np.any(frame["numbers"] > 118):
        raise UnknownElementError(f"frame {k} has atomic numbers outside 1..118", path=path)
    for key, shape in (("positions", (n, 3)), ("cell", (3, 3)), ("forces", (n, 3)), ("virial", (3, 3))):
        value = frame.get(key)
        if value is None:
            continue
        if value.shape != shape:
            raise ParseError(f"frame {k}: {key} has shape {value.shape}, expected {shape}", path=path)
        if not np.all(np.isfinite(value)):
            raise ParseError(f"frame {k}: {key} has non-finite values", path=path, line=line_of(key, value))
    energy = frame.get("energy")
    if energy is not None and not math.isfinite(energy):
        raise ParseError(f"frame {k}: energy is {energy}", path=path, line=line_of("energy"))


# --- ingest -----------------------------------------------------------------------------------

@dataclass
class StructureReport:
    """Outcome of ingesting one structure file.

    Attributes
    ----------
    path, sha256: the file and the sha256 of its bytes
    status: ``inserted`` or ``already stored``
    frames: frames read; inserted: configuration rows added; duplicates: frames whose
        content hash was already stored (or repeated in the file)
    source_id, job_run_id, method_id: provenance of the rows
    """

    path: str
    sha256: str
    status: str = "inserted"
    frames: int = 0
    inserted: int = 0
    duplicates: int = 0
    source_id: int | None = None
    job_run_id: int | None = None
    method_id: int | None = None
    format: str | None = None
    flagged: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (stored as the job run's summary)."""
        return asdict(self)


def ingest_structure_file(
    path: str | Path,
    *,
    engine: Any,
    method: str | None = None,
    method_kind: str = "other",
    format: str | None = None,  # noqa: A002
    chunk_size: int = 20_000,
) -> StructureReport:
    """Ingest one structure file as one source, in one transaction.

    Parameters
    ----------
    path
        Structure file (extxyz, CIF, POSCAR, vasprun.xml, or any ASE format).
    engine
        SQLAlchemy engine of the store.
    method
        Name of the method that produced the labels (e.g. ``emt``, ``DFT-PBE``); recorded on
        every configuration.
    method_kind
        ``method.kind`` when the method is new (calculator, interatomic_potential, dft, ...).
    format
        Reader (see :func:`read_frames`).
    chunk_size
        Frames per ``COPY`` batch.

    Returns
    -------
    StructureReport

    Raises
    ------
    IngestError
        If the file is malformed (nothing is stored; the job run is recorded as failed).
    """
    from matstore import crud
    from matstore.db import session_scope

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    sha = sha256_file(path)
    fmt = format or detect_format(path)
    report = StructureReport(path=str(path), sha256=sha, format=fmt)
    parameters = {"path": str(path), "sha256": sha, "method": method, "method_kind": method_kind, "format": fmt}
    with crud.job_run(engine=engine, kind="ingest_structures", parameters=parameters) as run:
        report.job_run_id = run.id
        with session_scope(engine) as session:
            if crud.find_source(session=session, sha256=sha) is not None:
                report.status = "already stored"
        if report.status == "inserted":
            frames = read_frames(path, format=format)
            report.frames = len(frames)
            with session_scope(engine) as session:
                source_id = crud.claim_source(
                    session=session, kind="file", sha256=sha, uri=str(path.resolve()),
                    description=f"structure file ({fmt})", details={"format": fmt, "frames": len(frames), "name": path.name},
                )
                if source_id is None:
                    report.status = "already stored"
                else:
                    report.source_id = source_id
                    if method:
                        report.method_id = crud.get_or_create_method(session=session, name=method, kind=method_kind)
                    for a in range(0, len(frames), chunk_size):
                        report.inserted += int(write_configurations(  # type: ignore[arg-type]
                            session, frames[a:a + chunk_size], source_id, run.id, report.method_id
                        ))
                    report.duplicates = report.frames - report.inserted
        if report.status == "already stored":
            run.status = "skipped"
        run.summary = report.to_dict()
    return report


def ingest_structures(
    paths: Iterable[str | Path],
    *,
    engine: Any,
    method: str | None = None,
    method_kind: str = "other",
    format: str | None = None,  # noqa: A002
    on_file: Callable[[StructureReport], None] | None = None,
) -> list[StructureReport]:
    """Ingest several structure files, one source and one transaction each.

    Stops at the first malformed file (files before it stay stored).  ``on_file`` is called
    after each file (progress bars).

    Raises
    ------
    IngestError
        For the first malformed file.
    """
    reports = []
    for path in paths:
        report = ingest_structure_file(path, engine=engine, method=method, method_kind=method_kind, format=format)
        reports.append(report)
        if on_file is not None:
            on_file(report)
    return reports


__all__ = [
    "IngestError",
    "StructureReport",
    "configuration_hash",
    "detect_format",
    "frame_from_atoms",
    "ingest_structure_file",
    "ingest_structures",
    "read_frames",
    "stress_to_virial",
]
