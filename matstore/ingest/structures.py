"""Ingest atomistic structures (extxyz and anything ASE reads; CIF, POSCAR, vasprun.xml via pymatgen).

Each file is one source (keyed by the sha256 of its bytes) ingested in one transaction: the
source row is claimed (:func:`matstore.crud.claim_source`, which serialises concurrent ingests
of one file), then frames are read, validated and written in batches with
:func:`matstore.ingest.copy.write_configurations`, de-duplicated by :func:`configuration_hash`.
Extended XYZ is streamed through the ``extxyz`` package's C parser
(:mod:`matstore.ingest.extxyz_reader`), so memory is bounded by one batch, not by the file.
A malformed file raises an :class:`~matstore.ingest.errors.IngestError` naming the file and
line, and the transaction is rolled back: nothing of the file is stored.

Units: positions and cell in Å, energy in eV, forces in eV/Å, virial in eV.  When a file
gives the stress σ (eV/Å³, ASE's sign convention: positive in tension) the virial is
W = −V·σ with V the cell volume (Å³); an extxyz ``virial`` is taken as is.  A frame that
gives both is stored with its virial only when −V·σ agrees with it
(:func:`matstore.ingest.extxyz_reader.virial_stress_differences`); the report counts such
frames, and a frame where they disagree is refused, naming the largest difference.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from matstore.hashing import sha256_file
from matstore.ingest.copy import content_hashes, write_configuration_stream
from matstore.ingest.errors import (
    EmptyFileError,
    IngestError,
    ParseError,
    UnknownElementError,
    UnsupportedFormatError,
)
from matstore.ingest.extxyz_reader import (
    VIRIAL_STRESS_ATOL,
    VIRIAL_STRESS_RTOL,
    FrameLabelError,
    iter_extxyz,
    run_ahead,
    virial_stress_conflict,
    virial_stress_differences,
    virials_from_stress,
)
from matstore.ingest.labels import jsonable, stress_to_virial
from matstore.names import NAME, TEXT, strings_in, unsafe_reason

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


# --- frames from ASE and pymatgen ----------------------------------------------------------------

def _jsonable_info(info: dict[str, Any]) -> dict[str, Any]:
    return {str(key): jsonable(value) for key, value in info.items() if key not in _LABEL_KEYS}


def frame_from_atoms(atoms: Any, index: int = 0) -> dict[str, Any]:
    """A frame dict (see :func:`matstore.ingest.copy.write_configurations`) from an ASE ``Atoms``.

    Labels are read from ``atoms.calc.results`` and ``atoms.info`` directly (not through the
    getters, which cost ~0.4 ms per frame): ``energy`` (else ``free_energy``), ``forces``, and
    ``virial`` from ``info['virial']`` (else ``results['virial']``) or −V·``stress`` (eV/Å³,
    ``results`` else ``info``).  When there are both a virial and a stress (e.g. ASE's extxyz
    reader puts a ``stress=`` key into a SinglePointCalculator and leaves ``virial=`` in
    ``info``), the virial is kept if −V·σ agrees with it
    (:func:`matstore.ingest.extxyz_reader.virial_stress_differences`), and the frame gets
    ``stress_agreed = True``.

    Raises
    ------
    ValueError
        If the frame has a stress but no cell volume, or a virial and a stress that disagree
        (the message names the largest difference, both values in eV).
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
    agreed = False
    if stress is not None:
        volume = abs(float(np.linalg.det(cell)))
        if volume == 0.0:
            raise ValueError("the frame has a stress but its cell has no volume")
        if virial is None:
            virial = stress_to_virial(stress, volume)
        else:
            agreed = _check_virial_against_stress(virial, stress, volume)
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
        **({"stress_agreed": True} if agreed else {}),
    }


def _check_virial_against_stress(virial: Any, stress: Any, volume: float) -> bool:
    """Whether a frame's virial (3, 3) eV was compared with −V·σ (σ (6,) Voigt or (3, 3) eV/Å³) and agrees.

    ``False`` when the virial is not finite (the frame checks report it).

    Raises
    ------
    ValueError
        If the stress is not finite or has another shape, or the two disagree.
    """
    w = np.asarray(virial, dtype=float)
    sigma = np.asarray(stress, dtype=float)
    if w.size != 9 or sigma.shape not in ((6,), (3, 3)):
        raise ValueError(f"virial must have 9 numbers and stress shape (6,) or (3, 3), got {w.size} and {sigma.shape}")
    if not np.isfinite(sigma).all():
        raise ValueError("stress has non-finite values")
    if not np.isfinite(w).all():
        return False
    diff, tol, compared, from_stress = virial_stress_differences(w.reshape(1, 3, 3), [sigma], np.array([volume]))
    if not diff[0] <= tol[0]:
        raise ValueError(virial_stress_conflict(compared[0], from_stress[0], volume, float(tol[0])))
    return True


def _frame_from_structure(structure: Any, index: int, **labels: Any) -> dict[str, Any]:
    numbers = []
    for site in structure:
        if not site.is_ordered:
            raise ValueError(f"disordered site {site.species} cannot be stored as a configuration")
        numbers.append(int(getattr(site.specie, "Z", 0)))
    info = {"frame": index}
    info.update({k: v for k, v in labels.pop("info", {}).items()})
    unstored = tuple(structure.site_properties)  # e.g. POSCAR velocities, selective_dynamics; CIF magmom
    return {
        "numbers": np.array(numbers, dtype=np.int64),
        "positions": np.array(structure.cart_coords, dtype=float),
        "cell": np.array(structure.lattice.matrix, dtype=float),
        "pbc": np.array(getattr(structure.lattice, "pbc", (True, True, True)), dtype=bool),
        "info": info,
        **labels,
        **({"unstored_arrays": unstored} if unstored else {}),
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


#: Bytes of the file hashed per ``update`` (see :func:`_ingest_file`).
_HASH_CHUNK = 16 << 20

#: Frames checked together (vectorised) while streaming an extxyz file.
_CHECK_BATCH = 256


def _read_extxyz(path: Path) -> Iterator[dict[str, Any]]:
    """Frames of an (ext)xyz file through the C parser, checked in batches (errors name the line)."""
    frames: list[dict[str, Any]] = []
    lines: list[int] = []
    first = 0
    for line, frame in iter_extxyz(path):
        frames.append(frame)
        lines.append(line)
        if len(frames) == _CHECK_BATCH:
            _check_batch(path, frames, lines, first)
            yield from frames
            first += len(frames)
            frames, lines = [], []
    _check_batch(path, frames, lines, first)
    yield from frames


def _check_batch(path: Path, frames: list[dict[str, Any]], lines: list[int], first: int) -> None:
    """Virials from stresses (or stresses checked against virials), then :func:`_validate_frame`
    on each frame only if a vectorised check fails.

    Raises
    ------
    ParseError
        Naming the comment line of the first frame whose metadata holds a control character
        (:func:`_check_texts`), or whose stress has no cell volume or disagrees with its virial (:func:`matstore.ingest.extxyz_reader.virials_from_stress`).
    """
    _check_texts(path, frames, lines, first)
    try:
        virials_from_stress(frames)
    except FrameLabelError as exc:
        raise ParseError(f"frame {first + exc.index}: {exc}", path=path, line=lines[exc.index] + 1) from None
    if not _batch_is_valid(frames):
        for j, frame in enumerate(frames):
            _validate_frame(path, first + j, frame, start=lines[j])


#: Frame metadata keys whose values are names (no tab either): the rest are free text (:data:`~matstore.names.TEXT`).
NAME_INFO_KEYS = frozenset({"config_type", "name", "label"})


def _check_texts(path: Path, frames: list[dict[str, Any]], lines: list[int] | None, first: int) -> None:
    """Refuse a frame whose metadata (``info``: keys, ``config_type``, comments) or per-atom column
    names hold a control character or a bidirectional override (:mod:`matstore.names`).

    Keys and the values of :data:`NAME_INFO_KEYS` are names; other string values are free text,
    which may hold a tab or a line feed.  One scan of the batch's strings is the fast path.

    Raises
    ------
    ParseError
        ``f.extxyz, line 6: frame 1: metadata config_type 'bulk\\x1b[8m' contains the control
        character U+001B (ESC)``; ``lines`` (1-based line of each frame's atom count, extxyz)
        gives the comment line, else no line is named.
    """
    parts: list[str] = []
    for frame in frames:
        info = frame["info"]
        parts.extend(info)
        for v in info.values():
            if isinstance(v, str):
                parts.append(v)
            elif v is not None and not isinstance(v, (int, float)):  # lists, dicts of strings
                parts.extend(t for _, t, _ in strings_in(v))
        parts.extend(frame.get("unstored_arrays", ()))
    if unsafe_reason("".join(parts), "") is None:
        return
    for k, frame in enumerate(frames):
        tree = {**frame["info"], **dict.fromkeys(frame.get("unstored_arrays", ()), 0)}
        for loc, text, is_key in strings_in(tree):
            policy = NAME if is_key or loc[0] in NAME_INFO_KEYS else TEXT
            reason = unsafe_reason(text, "metadata key" if is_key else f"metadata {'.'.join(loc)}", policy)
            if reason is not None:
                raise ParseError(f"frame {first + k}: {reason}", path=path, line=None if lines is None else lines[k] + 1)


def _batch_is_valid(frames: list[dict[str, Any]]) -> bool:
    """All frames pass :func:`_validate_frame` (shapes, finite values, atomic numbers, cell volume)."""
    if not frames:
        return True
    for frame in frames:
        n = len(frame["numbers"])
        forces, virial = frame["forces"], frame["virial"]
        if n == 0 or frame["positions"].shape != (n, 3) or frame["cell"].shape != (3, 3) \
                or (forces is not None and forces.shape != (n, 3)) or (virial is not None and virial.shape != (3, 3)):
            return False
    numbers = np.concatenate([f["numbers"] for f in frames])
    if numbers.min() < 1 or numbers.max() > 118:
        return False
    cells = np.stack([f["cell"] for f in frames])
    parts = [np.concatenate([f["positions"] for f in frames]), cells]
    parts += [np.concatenate(x) for x in ([f["forces"] for f in frames if f["forces"] is not None],
                                          [f["virial"] for f in frames if f["virial"] is not None]) if x]
    energies = [f["energy"] for f in frames if f["energy"] is not None]
    if not (all(np.isfinite(part).all() for part in parts) and np.isfinite(energies).all()):
        return False
    periodic = np.stack([f["pbc"] for f in frames]).all(axis=1)
    return not np.any(_zero_volumes(cells[periodic]))


def _zero_volumes(cells: np.ndarray) -> np.ndarray:
    """(m,) bool: the rows of each cell (m, 3, 3) span no volume (|det| ≤ 1e-10 ∏|aᵢ|)."""
    det = np.einsum("ij,ij->i", cells[:, 0], np.cross(cells[:, 1], cells[:, 2]))
    scale = np.prod(np.linalg.norm(cells, axis=2), axis=1)
    return (scale == 0.0) | (np.abs(det) <= 1e-10 * scale)


def _read_ase(path: Path, fmt: str | None) -> list[dict[str, Any]]:
    import ase.io

    try:
        images = ase.io.read(path, index=":", format=fmt)
    except Exception as exc:  # noqa: BLE001
        raise ParseError(f"ASE could not read the file: {exc.__class__.__name__}: {exc}", path=path) from exc
    if not isinstance(images, list):
        images = [images]
    frames = []
    for k, atoms in enumerate(images):
        try:
            frame = frame_from_atoms(atoms, k)
        except ValueError as exc:
            raise ParseError(f"frame {k}: {exc}", path=path) from exc
        frame.update(unstored_of_atoms(atoms))
        frames.append(frame)
    return frames


#: Calculator results that :func:`frame_from_atoms` stores (as energy, forces and virial).
_STORED_RESULTS = frozenset({"energy", "free_energy", "forces", "stress", "virial"})
#: Per-atom calculator results (as ``ase.io.extxyz.per_atom_properties`` lists them).
_PER_ATOM_RESULTS = frozenset({"energies", "forces", "stresses", "charges", "magmoms", "born_effective_charges"})


def unstored_of_atoms(atoms: Any) -> dict[str, tuple[str, ...]]:
    """What of an ASE ``Atoms`` is not stored by :func:`frame_from_atoms`, by name.

    Returns
    -------
    dict
        ``unstored_arrays``: per-atom arrays (``atoms.arrays`` but numbers, positions and the
        forces read; per-atom calculator results such as ``energies``, ``magmoms``, ``charges``)
        and ``unstored_results``: other per-frame calculator results (``dipole``, ``magmom``);
        each key only when not empty.
    """
    results = dict(atoms.calc.results) if atoms.calc is not None else {}
    stored = {"numbers", "positions"} | ({"forces"} if results.get("forces") is None else set())
    arrays = [k for k in atoms.arrays if k not in stored]
    per_atom = [k for k in results if k not in _STORED_RESULTS and k in _PER_ATOM_RESULTS]
    others = [k for k in results if k not in _STORED_RESULTS and k not in per_atom]
    out = {"unstored_arrays": tuple(dict.fromkeys(arrays + per_atom)), "unstored_results": tuple(others)}
    return {k: v for k, v in out.items() if v}


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
    if has_zero_volume(np.array(poscar.structure.lattice.matrix)):
        raise ParseError("the lattice vectors (lines 3-5, times the scale on line 2) span zero volume", path=path, line=3)
    return [_frame_from_structure(poscar.structure, 0, info={"comment": poscar.comment})]


def _read_vasprun(path: Path) -> list[dict[str, Any]]:
    from ase.units import GPa
    from pymatgen.io.vasp import Vasprun

    try:
        with warnings.catch_warnings(record=True) as caught:  # e.g. UnconvergedVASPWarning: one log line each
            warnings.simplefilter("always")
            run = Vasprun(str(path), parse_dos=False, parse_eigen=False, parse_projected_eigen=False,
                          parse_potcar_file=False)
    except Exception as exc:  # noqa: BLE001
        raise ParseError(f"pymatgen could not read vasprun.xml: {exc}", path=path) from exc
    for warning in dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught):
        log.warning("%s: %s", path, " ".join(warning.split()))
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


def iter_frames(path: str | Path, *, format: str | None = None) -> Iterator[dict[str, Any]]:  # noqa: A002
    """Yield the frames of a structure file, checked; extxyz files are streamed.

    Extended XYZ goes through the ``extxyz`` package's C parser one frame at a time
    (:func:`matstore.ingest.extxyz_reader.iter_extxyz`), so memory stays bounded whatever the
    file's size; other formats are read whole by pymatgen or ASE.

    Parameters
    ----------
    path
        The file.
    format
        ``extxyz``, ``cif``, ``poscar``, ``vasprun``, or any ASE format name (``ase``: ASE's
        guess, also for extxyz); default: from the file name (:func:`detect_format`).

    Yields
    ------
    dict
        Frame dicts as :func:`matstore.ingest.copy.write_configurations` takes them.

    Raises
    ------
    EmptyFileError, TruncatedFileError, ParseError, UnknownElementError, UnsupportedFormatError
        The message names the file and, for extxyz and POSCAR, the line.  For extxyz the error
        comes when the bad frame is reached, after the frames before it were yielded.
    FileNotFoundError
        If ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise EmptyFileError("the file is empty", path=path)
    fmt = format or detect_format(path)
    if fmt in ("extxyz", "xyz"):
        yield from _read_extxyz(path)
        return
    readers: dict[str, Callable[[Path], list[dict[str, Any]]]] = {
        "cif": _read_cif, "poscar": _read_poscar, "vasp": _read_poscar, "vasprun": _read_vasprun,
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
    _check_texts(path, frames, None, 0)
    for k, frame in enumerate(frames):
        _validate_frame(path, k, frame)
    yield from frames


def read_frames(path: str | Path, *, format: str | None = None) -> list[dict[str, Any]]:  # noqa: A002
    """Every frame of a structure file as a list (see :func:`iter_frames`, which streams)."""
    return list(iter_frames(path, format=format))


def has_zero_volume(cell: np.ndarray) -> bool:
    """Whether the cell vectors (rows of ``cell`` (3, 3), Å) span no volume (|det| ≤ 1e-10 ∏|aᵢ|)."""
    return bool(_zero_volumes(np.asarray(cell, dtype=float).reshape(1, 3, 3))[0])


_FRAME_ARRAYS = (("positions", 3), ("cell", 0), ("forces", 3), ("virial", 0))


def _validate_frame(path: Path, k: int, frame: dict[str, Any], start: int | None = None) -> None:
    """Check shapes, finiteness, atomic numbers and cell volume of frame ``k``.

    ``start``: 1-based line of the frame's atom count (extxyz), so that the error names the
    first atom line with a non-finite position or force, else the frame's comment line (cell,
    energy, stress/virial).  One sum over all arrays is the fast path (a sum of finite numbers
    is finite unless it overflows, which only sends the frame to the detailed checks).

    Raises
    ------
    ParseError, UnknownElementError
    """
    numbers = frame["numbers"]
    n = len(numbers)
    if n == 0:
        raise ParseError(f"frame {k} has no atoms", path=path)
    if numbers.min() < 1 or numbers.max() > 118:
        raise UnknownElementError(f"frame {k} has atomic numbers outside 1..118", path=path)
    total = 0.0
    for key, width in _FRAME_ARRAYS:
        value = frame.get(key)
        if value is None:
            continue
        shape = (n, width) if width else (3, 3)
        if value.shape != shape:
            raise ParseError(f"frame {k}: {key} has shape {value.shape}, expected {shape}", path=path, line=None if start is None else start + 1)
        total += float(value.sum())
    energy = frame.get("energy")
    if not math.isfinite(total + (energy or 0.0)):
        _locate_non_finite(path, k, frame, start)
    if bool(np.all(frame["pbc"])) and has_zero_volume(frame["cell"]):
        raise ParseError(
            f"frame {k} is periodic in all three directions but its cell has zero volume",
            path=path, line=None if start is None else start + 1,
        )


def _locate_non_finite(path: Path, k: int, frame: dict[str, Any], start: int | None) -> None:
    """Raise for the first array (or the energy) of frame ``k`` holding NaN or ±inf."""
    for key, _ in _FRAME_ARRAYS:
        value = frame.get(key)
        if value is None or np.all(np.isfinite(value)):
            continue
        line = None
        if start is not None:
            line = start + 1
            if key in ("positions", "forces"):
                line = start + 2 + int(np.flatnonzero(~np.isfinite(value).all(axis=1))[0])
        raise ParseError(f"frame {k}: {key} has non-finite values", path=path, line=line)
    energy = frame.get("energy")
    if energy is not None and not math.isfinite(energy):
        raise ParseError(f"frame {k}: energy is {energy}", path=path, line=None if start is None else start + 1)


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
    unstored_arrays, unstored_results: per-atom arrays (e.g. ASE's ``energies``) and other
        calculator results the file holds but ``configuration`` has no column for, each with
        the number of frames that have it; ``notes`` says so in words
    virial_and_stress: frames that gave both a virial and a stress which agree (the virial
        is stored; frames where they disagree are refused); ``notes`` says so once
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
    unstored_arrays: dict[str, int] = field(default_factory=dict)
    unstored_results: dict[str, int] = field(default_factory=dict)
    virial_and_stress: int = 0

    @property
    def notes(self) -> list[str]:
        """One line per kind of data read but not stored, e.g. "per-atom arrays not stored: energies (3 of 3 frames)",
        and one for frames that gave both a virial and a stress."""
        out = []
        for what, counts in (("per-atom arrays", self.unstored_arrays), ("calculator results", self.unstored_results)):
            if counts:
                names = ", ".join(f"{name} ({n} of {self.frames} frames)" for name, n in counts.items())
                out.append(f"{what} not stored: {names}")
        if self.virial_and_stress:
            out.append(
                f"{self.virial_and_stress} of {self.frames} frames gave both a virial and a stress; they agree "
                f"(within {VIRIAL_STRESS_RTOL:g} of the larger norm + {VIRIAL_STRESS_ATOL:g} eV) and the virial is stored"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (stored as the job run's summary), with ``notes``."""
        return {**asdict(self), "notes": self.notes}


def _counting_unstored(frames: Iterable[dict[str, Any]], report: StructureReport) -> Iterator[dict[str, Any]]:
    """``frames`` with their ``unstored_*`` and ``stress_agreed`` keys taken out and counted into
    ``report`` (one whole pass)."""
    counts: dict[str, dict[str, int]] = {"unstored_arrays": {}, "unstored_results": {}}
    agreed = 0
    for frame in frames:
        for key, names in counts.items():
            for name in frame.pop(key, ()):
                names[name] = names.get(name, 0) + 1
        agreed += bool(frame.pop("stress_agreed", False))
        yield frame
    report.unstored_arrays, report.unstored_results = counts["unstored_arrays"], counts["unstored_results"]
    report.virial_and_stress = agreed


#: Atoms per write batch at most (about 100 MB of frame arrays).
MAX_BATCH_ATOMS = 1_000_000


def _batches(frames: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Consecutive lists of at most ``size`` frames and :data:`MAX_BATCH_ATOMS` atoms."""
    batch: list[dict[str, Any]] = []
    atoms = 0
    for frame in frames:
        batch.append(frame)
        atoms += len(frame["numbers"])
        if len(batch) >= size or atoms >= MAX_BATCH_ATOMS:
            yield batch
            batch, atoms = [], 0
    if batch:
        yield batch


def _ingest_new_source(
    engine: Any, path: Path, fmt: str, run_id: int, report: StructureReport, *,
    method: str | None, method_kind: str, chunk_size: int, frames: Callable[[], Iterator[dict[str, Any]]],
) -> None:
    """Claim the source and stream the file's frames (``frames()``) into it, all in one transaction.

    A malformed frame anywhere raises before the commit, so nothing of the file is stored.
    A concurrent ingest of the same file waits on the claim and then finds it stored.
    """
    from sqlalchemy import update

    from matstore import crud
    from matstore.db import session_scope
    from matstore.schema import Source

    with session_scope(engine) as session:
        details = {"format": fmt, "name": path.name}
        source_id = crud.claim_source(
            session=session, kind="file", sha256=report.sha256, uri=str(path.resolve()),
            description=f"structure file ({fmt})", details=details,
        )
        if source_id is None:
            report.status = "already stored"
            return
        report.source_id = source_id
        if method:
            report.method_id = crud.get_or_create_method(session=session, name=method, kind=method_kind)
        report.frames, report.inserted = write_configuration_stream(
            session, lambda: _batches(_counting_unstored(frames(), report), max(1, int(chunk_size))), source_id, run_id,
            report.method_id,
        )
        report.duplicates = report.frames - report.inserted
        session.execute(update(Source).where(Source.id == source_id).values(details={**details, "frames": report.frames}))


def ingest_structure_file(
    path: str | Path,
    *,
    engine: Any,
    method: str | None = None,
    method_kind: str = "other",
    format: str | None = None,  # noqa: A002
    chunk_size: int = 5_000,
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
        Frames held in memory and written per ``COPY`` (also capped at
        :data:`MAX_BATCH_ATOMS` atoms), so that memory does not grow with the file.

    Returns
    -------
    StructureReport

    Raises
    ------
    IngestError
        If the file is malformed (nothing is stored; the job run is recorded as failed), or
        ``method`` holds a control character or a bidirectional override (nothing is stored,
        no job run is recorded).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    reason = unsafe_reason(method, "the method name") if method is not None else None
    if reason is not None:
        raise IngestError(reason, path=path)
    fmt = format or detect_format(path)
    frames = _Frames(path, fmt)  # extxyz: the parse starts now, while the file is hashed
    try:
        return _ingest_file(path, fmt, frames, engine=engine, method=method, method_kind=method_kind, chunk_size=chunk_size)
    finally:
        frames.close()


class _Frames:
    """``frames()`` gives the file's checked frames; the first call's extxyz parse starts at construction."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path, self.fmt = path, fmt
        self.ahead = run_ahead(_read_extxyz(path)) if fmt in ("extxyz", "xyz") and path.stat().st_size > 0 else None
        self.calls = 0

    def __call__(self) -> Iterator[dict[str, Any]]:
        self.calls += 1
        if self.calls > 1 or self.ahead is None:
            self.close()  # a second pass: the first parse must have ended (one parse at a time)
            return iter_frames(self.path, format=self.fmt)
        return iter(self.ahead)

    def close(self) -> None:
        """Stop the parse started at construction (and wait for it), consumed or not."""
        if self.ahead is not None:
            self.ahead.close()


def _ingest_file(
    path: Path, fmt: str, frames: _Frames, *, engine: Any, method: str | None, method_kind: str, chunk_size: int
) -> StructureReport:
    """:func:`ingest_structure_file` once the parse of ``path`` has been started."""
    from matstore import crud
    from matstore.db import session_scope

    # Large chunks: hashlib releases the GIL per update, and each re-acquisition may wait for
    # the parsing thread's switch interval (5 ms); 16 MiB chunks keep those waits few.
    sha = sha256_file(path, chunk_size=_HASH_CHUNK)
    report = StructureReport(path=str(path), sha256=sha, format=fmt)
    parameters = {"path": str(path), "sha256": sha, "method": method, "method_kind": method_kind, "format": fmt}
    with crud.job_run(engine=engine, kind="ingest_structures", parameters=parameters) as run:
        report.job_run_id = run.id
        with session_scope(engine) as session:
            if crud.find_source(session=session, sha256=sha) is not None:
                report.status = "already stored"
        if report.status == "inserted":
            _ingest_new_source(engine, path, fmt, run.id, report, method=method, method_kind=method_kind,
                               chunk_size=chunk_size, frames=frames)
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
    "has_zero_volume",
    "ingest_structure_file",
    "ingest_structures",
    "iter_frames",
    "read_frames",
    "stress_to_virial",
    "unstored_of_atoms",
]
