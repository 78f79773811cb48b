"""Stream the frames of an extended XYZ file through the ``extxyz`` package's C parser.

The C parser (libAtoms/extxyz, ``extxyz.cextxyz``; Kermode et al., https://github.com/libAtoms/extxyz)
reads a frame's comment line with the extxyz key=value grammar and its atom lines with a
validating tokenizer, 6–9× faster than ASE's Python reader (docs/benchmarks.md, section 6).
The comment line goes through the package's first-character dispatch parser
(``use_cleri=False``), which accepts the same language as its libcleri grammar (the package
checks this with a differential conformance test) and was 1.3–1.9× faster on the benchmark
set.  Frames are read one at a time from a C ``FILE*``, so memory does not grow with the file.

What Python adds around it:

- **Guards.** The atom count of every frame is read here first (extxyz 0.4.6 crashes the
  process on a count of 0 or one that overflows ``int``), and a parse that stops early is
  checked against the rest of the file, so a truncated last frame or a blank line between
  frames is an error, not a silent end of file.
- **Line numbers.** Frames take ``natoms + 2`` lines, so the first line of every frame is
  known without a pre-scan.  Only when the C parser fails are the lines of that one frame
  re-read (:func:`_diagnose`) to name the line and the reason.
- **The comment line.** A line the extxyz grammar rejects is refused when it holds ``=`` or a
  quote (a corrupt key=value header: storing the frame would drop its cell, pbc, energy and
  force columns); free text without them is a plain-XYZ title, read with the default
  ``Properties=species:S:1:pos:R:3``, no cell and no periodicity, as ASE reads it.
- **Labels.** ``energy`` (else ``free_energy``), ``forces`` (or libAtoms' ``force``),
  ``virial`` and ``stress`` are taken as in :func:`matstore.ingest.structures.frame_from_atoms`
  (same numbers bit for bit, so content hashes agree with files ingested through ASE); when a
  frame has none of them, the same keys with the prefix ``REF_`` (MACE's convention, what
  ``matstore export structures`` writes) are read instead.

Units: positions and cell in Å, energy in eV, forces in eV/Å, virial in eV, stress in eV/Å³
(positive in tension, ASE's convention); the virial from a stress is W = −V·σ.  A frame that
gives both a virial and a stress keeps its virial only if the two agree
(:func:`virial_stress_differences`, :data:`VIRIAL_STRESS_RTOL`, :data:`VIRIAL_STRESS_ATOL`);
otherwise it is refused (:class:`FrameLabelError`), never stored with one of them dropped.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from extxyz import cextxyz

from matstore.ingest.errors import (
    EmptyFileError,
    ParseError,
    TruncatedFileError,
    UnknownElementError,
)
from matstore.ingest.labels import jsonable

#: Per-frame keys that are labels (stored in columns), not metadata; with and without ``REF_``.
LABEL_KEYS = ("energy", "free_energy", "forces", "force", "virial", "stress")
_LABEL_PREFIXES = ("", "REF_")
_STRUCTURE_KEYS = ("Lattice", "Properties", "pbc")
_PLAIN_XYZ_PROPERTIES = "Properties=species:S:1:pos:R:3"
_ATOM_LINE = re.compile(r"atom line (\d+)")
_BAD_FIELD = re.compile(r"invalid field '(.*)' for property '(\w+)' on atom line (\d+)")
_COLUMN_NAMES = {"pos": "positions", "species": "species", "Z": "numbers"}
_PEEK_BUFFER = 1 << 20  # the count lines are read ahead of the parser: seeks stay inside the buffer
_MIN_ATOM_LINE_BYTES = 2  # a count larger than the bytes left / 2 cannot fit: truncated
# The C parser keeps state between calls (its comment-line dispatcher): one parse at a time
# per process, whichever thread runs it.
_PARSER_LOCK = threading.Lock()


def _numbers_of_species(species: np.ndarray, cache: dict[bytes, np.ndarray]) -> np.ndarray | int:
    """Atomic numbers (N,) of chemical symbols (N,); the index of the first unknown symbol if any."""
    key = species.tobytes()
    numbers = cache.get(key)
    if numbers is not None:
        return numbers
    from ase.data import atomic_numbers

    symbols, inverse = np.unique(species, return_inverse=True)
    z = np.array([atomic_numbers.get(str(s), 0) for s in symbols], dtype=np.int64)
    numbers = z[inverse.reshape(-1)]
    if np.any(numbers == 0):
        return int(np.flatnonzero(numbers == 0)[0])
    if len(cache) > 4096:
        cache.clear()
    cache[key] = numbers
    return numbers


def _as_matrix(value: Any, name: str) -> np.ndarray:
    """A 3×3 float matrix from the parser's value (3×3, or 9 numbers in column order as ASE reads them)."""
    arr = np.asarray(value, dtype=float)
    if arr.shape == (9,):
        arr = arr.reshape((3, 3), order="F")
    if arr.shape != (3, 3):
        raise ValueError(f"{name} must have 9 numbers, got {arr.size}")
    return arr


# Flat (row-major) indices of xx, yy, zz, yz, xz, xy in a 3×3 matrix.
_VOIGT_INDEX = np.array([0, 4, 8, 5, 2, 1])


def _stress(stress: Any) -> np.ndarray:
    """The stress as the file gives it, eV/Å³: Voigt (6,) (xx, yy, zz, yz, xz, xy) or (3, 3)
    (9 numbers in column order)."""
    arr = np.asarray(stress, dtype=float)
    if arr.shape == (6,):
        return arr
    if arr.size != 9:
        raise ValueError(f"stress must have 6 (Voigt) or 9 numbers, got {arr.size}")
    return _as_matrix(arr, "stress")


def _voigt(stress: np.ndarray) -> np.ndarray:
    """Stress as ASE's extxyz reader gives it to its calculator: Voigt (6,), the upper triangle of a 3×3."""
    return stress if stress.shape == (6,) else stress.reshape(9)[_VOIGT_INDEX]


_PREFIXED_LABEL_KEYS = tuple((prefix, tuple(prefix + key for key in LABEL_KEYS)) for prefix in _LABEL_PREFIXES)


def _label_prefix(info: dict[str, Any], arrays: dict[str, Any]) -> str:
    for prefix, keys in _PREFIXED_LABEL_KEYS:
        for key in keys:
            if key in info or key in arrays:
                return prefix
    return ""


def _number(value: Any, what: str) -> float:
    """A float from a parsed scalar (the parser leaves ``nan``/``inf`` and typos as strings)."""
    if isinstance(value, (bool, np.bool_)) or isinstance(value, np.ndarray):
        raise ValueError(f"{what} must be one number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} is not a number: {value!r}") from None


def _labels(info: dict[str, Any], arrays: dict[str, Any], prefix: str) -> dict[str, Any]:
    """energy (eV), forces (N, 3) eV/Å, virial (3, 3) eV and stress ((6,) Voigt or (3, 3), eV/Å³) of one frame.

    The stress is returned whenever the frame has one; :func:`virials_from_stress` turns it
    into W = −V·σ for a whole batch at once, or, when the frame has a virial too, checks that
    the two agree.
    """
    energy = info.get(prefix + "energy", info.get(prefix + "free_energy"))
    forces = arrays.get(prefix + "forces", arrays.get(prefix + "force"))
    virial = info.get(prefix + "virial")
    stress = info.get(prefix + "stress")
    labels = {
        "energy": None if energy is None else _number(energy, "energy"),
        "forces": None if forces is None else np.asarray(forces, dtype=float),
        "virial": None if virial is None else _as_matrix(virial, "virial"),
    }
    if stress is not None:
        labels["stress"] = _stress(stress)
    return labels


# Index pairs that turn Voigt (xx, yy, zz, yz, xz, xy) into the symmetric 3×3 matrix.
_VOIGT_TO_MATRIX = np.array([[0, 5, 4], [5, 1, 3], [4, 3, 2]])


#: Flat (row-major) indices that fill a 3×3 matrix from its diagonal and upper triangle.
_UPPER_TO_MATRIX = np.array([[0, 1, 2], [1, 4, 5], [2, 5, 8]])

#: Relative tolerance within which a frame's virial W and its −V·σ agree: the largest element
#: difference may be ``VIRIAL_STRESS_RTOL`` times the larger Frobenius norm of the two, plus
#: :data:`VIRIAL_STRESS_ATOL`.  Looser than the store's ``CONFLICT_RTOL`` (1e-6) on purpose: the
#: two keys of one frame are often printed at different precision (a stress in eV/Å³ with six
#: decimals is a relative 1e-5 off at 0.05 eV/Å³), while the mistakes this check exists for (a
#: sign, a missing factor V, kbar read as eV/Å³, a zeroed or stale key) are off by far more.
VIRIAL_STRESS_RTOL = 1e-4
#: Absolute part of the virial/stress tolerance, eV: lets a frame near zero stress through with
#: print round-off (1e-6 eV/Å³ on a 1,000 Å³ cell is 1 meV; 1 meV over 100 Å³ is 1.6 MPa).
VIRIAL_STRESS_ATOL = 1e-3

_COMPONENT = (("xx", "xy", "xz"), ("yx", "yy", "yz"), ("zx", "zy", "zz"))


class FrameLabelError(ValueError):
    """A frame's labels cannot be stored: ``index`` is its position in the batch checked."""

    def __init__(self, reason: str, index: int) -> None:
        super().__init__(reason)
        self.index = index


def virial_stress_differences(
    virials: np.ndarray, stresses: list[np.ndarray], volumes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Compare frames' virials W with the virials −V·σ of their stresses.

    A stress given as 3×3 is compared element by element with W.  A Voigt stress (6,) holds
    no lower triangle: it is compared with W's diagonal and upper triangle (how ASE's extxyz
    reader and this reader fold a 3×3 stress) or with W's symmetric part (how
    ``ase.stress.full_3x3_to_voigt_6_stress`` folds it), whichever is closer; for a symmetric W,
    the usual case, the two are the same.

    Parameters
    ----------
    virials : (k, 3, 3) float, eV
    stresses : k arrays of shape (6,) (Voigt xx, yy, zz, yz, xz, xy) or (3, 3), eV/Å³, positive in tension
    volumes : (k,) float, Å³ (cell volumes, > 0)

    Returns
    -------
    difference : (k,) float, eV
        Largest |ΔW| element of each frame.
    tolerance : (k,) float, eV
        ``VIRIAL_STRESS_RTOL · max(‖W‖, ‖V·σ‖) + VIRIAL_STRESS_ATOL`` (Frobenius norms); the
        frame's two labels agree when ``difference <= tolerance``.
    compared : (k, 3, 3) float, eV
        W as compared (itself, or its upper-triangle or symmetric fold for a Voigt stress).
    from_stress : (k, 3, 3) float, eV
        −V·σ.
    """
    sigma, full = _stress_matrices(stresses)
    return _differences(np.asarray(virials, dtype=float).reshape(len(stresses), 3, 3), sigma, full, volumes)


def _stress_matrices(stresses: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(k, 3, 3) stresses from k arrays (6,) Voigt or (3, 3), and (k,) bool: which were 3×3."""
    full = np.array([s.shape == (3, 3) for s in stresses], dtype=bool)
    if full.all():
        return np.stack(stresses), full
    if not full.any():
        return np.stack(stresses)[:, _VOIGT_TO_MATRIX], full
    sigma = np.empty((len(stresses), 3, 3))
    sigma[full] = np.stack([s for s in stresses if s.shape == (3, 3)])
    sigma[~full] = np.stack([s for s in stresses if s.shape != (3, 3)])[:, _VOIGT_TO_MATRIX]
    return sigma, full


def _differences(
    virials: np.ndarray, sigma: np.ndarray, full: np.ndarray, volumes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`virial_stress_differences` of virials (k, 3, 3) and stresses as (k, 3, 3) (``full``: given as 3×3)."""
    k = len(virials)
    from_stress = -np.asarray(volumes, dtype=float)[:, None, None] * sigma
    upper = virials.reshape(k, 9)[:, _UPPER_TO_MATRIX]
    symmetric = 0.5 * (virials + virials.transpose(0, 2, 1))
    with np.errstate(invalid="ignore"):
        closer_upper = np.abs(upper - from_stress).max(axis=(1, 2)) <= np.abs(symmetric - from_stress).max(axis=(1, 2))
    compared = np.where(full[:, None, None], virials, np.where(closer_upper[:, None, None], upper, symmetric))
    difference = np.abs(compared - from_stress).max(axis=(1, 2))
    scale = np.maximum(np.linalg.norm(compared, axis=(1, 2)), np.linalg.norm(from_stress, axis=(1, 2)))
    return difference, VIRIAL_STRESS_RTOL * scale + VIRIAL_STRESS_ATOL, compared, from_stress


def virial_stress_conflict(compared: np.ndarray, from_stress: np.ndarray, volume: float, tolerance: float) -> str:
    """One line saying where a frame's virial (3, 3) eV and −V·σ (3, 3) eV differ most, both values in eV."""
    diff = np.abs(compared - from_stress)
    i, j = np.unravel_index(int(np.argmax(diff)), (3, 3))
    return (
        f"the virial and the stress disagree: W_{_COMPONENT[i][j]} is {compared[i, j] + 0.0:.10g} eV from the virial "
        f"but {from_stress[i, j] + 0.0:.10g} eV from -V*stress (V = {volume:.10g} Å³), a difference of "
        f"{diff[i, j]:.6g} eV beyond the tolerance of {tolerance:.3g} eV (relative {VIRIAL_STRESS_RTOL:g} of the "
        f"larger norm + {VIRIAL_STRESS_ATOL:g} eV); drop or correct one of the two"
    )


def virials_from_stress(frames: list[dict[str, Any]]) -> None:
    """Turn each frame's ``stress`` ((6,) Voigt or (3, 3), eV/Å³) into its ``virial`` W = −V·σ (3, 3) eV, in place.

    V = |det(cell)| (Å³).  One batched ``numpy.linalg.det`` for all frames gives the same
    numbers bit for bit as :func:`matstore.ingest.labels.stress_to_virial` frame by frame (the
    path through ASE), so content hashes do not depend on the reader.  A 3×3 stress is
    converted through its Voigt form (diagonal and upper triangle), as ASE's reader does.

    A frame that has a virial too keeps its virial, and its stress is only checked against it
    (:func:`virial_stress_differences`); such a frame gets ``stress_agreed = True`` (counted
    in the ingest report).  A frame whose virial is not finite is left to the frame checks.

    Raises
    ------
    FrameLabelError
        For the first frame (``index``: position in ``frames``) whose stress comes with a cell
        of no volume, whose stress is not finite while it has a virial, or whose virial and
        stress disagree; then no frame is changed.
    """
    todo = [k for k, frame in enumerate(frames) if frame.get("stress") is not None]
    if not todo:
        return
    volumes = np.abs(np.linalg.det(np.stack([frames[k]["cell"] for k in todo])))
    bad: list[tuple[int, str]] = []
    if np.any(volumes == 0.0):
        bad.append((todo[int(np.flatnonzero(volumes == 0.0)[0])], "the frame has a stress but its cell has no volume"))
    has_virial = np.fromiter((frames[k]["virial"] is not None for k in todo), dtype=bool, count=len(todo))
    both = np.flatnonzero(has_virial & (volumes != 0.0))
    checked = np.zeros(0, dtype=np.int64)
    if len(both):
        virials = np.stack([frames[todo[j]]["virial"] for j in both])
        sigma, full = _stress_matrices([frames[todo[j]]["stress"] for j in both])
        finite_stress = np.isfinite(sigma).all(axis=(1, 2))
        if not finite_stress.all():
            bad.append((todo[both[int(np.flatnonzero(~finite_stress)[0])]], "stress has non-finite values"))
        keep = finite_stress & np.isfinite(virials).all(axis=(1, 2))  # a non-finite virial: the frame checks
        checked = both[keep]
        if len(checked):
            diff, tol, compared, from_stress = _differences(virials[keep], sigma[keep], full[keep], volumes[checked])
            over = np.flatnonzero(~(diff <= tol))
            if len(over):
                m = int(over[0])
                j = int(checked[m])
                bad.append((todo[j], virial_stress_conflict(compared[m], from_stress[m], float(volumes[j]), float(tol[m]))))
    if bad:
        index, reason = min(bad, key=lambda item: item[0])
        raise FrameLabelError(reason, index)
    for j in both:
        del frames[todo[j]]["stress"]
    for j in checked:
        frames[todo[j]]["stress_agreed"] = True
    only = todo if not len(both) else [todo[j] for j in np.flatnonzero(~has_virial).tolist()]
    if not only:
        return
    stress = np.stack([_voigt(frames[k].pop("stress")) for k in only])
    virials = -(volumes if not len(both) else volumes[~has_virial])[:, None, None] * stress[:, _VOIGT_TO_MATRIX]
    for k, virial in zip(only, virials, strict=True):
        frames[k]["virial"] = virial


@lru_cache(maxsize=8)
def _skipped_keys(prefix: str) -> frozenset[str]:
    return frozenset(_STRUCTURE_KEYS) | {prefix + key for key in LABEL_KEYS}


def _metadata(info: dict[str, Any], prefix: str, index: int) -> dict[str, Any]:
    """JSON-ready per-frame metadata: every comment-line key but structure and label keys."""
    skip = _skipped_keys(prefix)
    meta = {str(k): jsonable(v) for k, v in info.items() if k not in skip}
    meta["frame"] = index
    energy, free = info.get(prefix + "energy"), info.get(prefix + "free_energy")
    if energy is not None and free is not None and free != energy:
        meta.setdefault("free_energy", jsonable(free))
    return meta


def frame_from_parsed(
    info: dict[str, Any], arrays: dict[str, Any], index: int, species_cache: dict[bytes, np.ndarray] | None = None
) -> dict[str, Any]:
    """A frame dict (see :func:`matstore.ingest.copy.write_configurations`) from the C parser's output.

    Parameters
    ----------
    info
        Per-frame dict from ``extxyz.cextxyz.read_frame_dicts`` (``Lattice`` 3×3 with the cell
        vectors as columns, ``pbc``, labels, metadata).
    arrays
        Per-atom dict (``species`` (N,) or ``Z`` (N,), ``pos`` (N, 3) Å, ``forces`` (N, 3) eV/Å, ...).
    index
        0-based frame index (stored as ``info['frame']``).
    species_cache
        Symbols → numbers cache shared across frames.

    Returns
    -------
    dict
        ``numbers`` (N,) int64, ``positions`` (N, 3) Å, ``cell`` (3, 3) Å (rows are vectors),
        ``pbc`` (3,) bool, ``energy`` eV or None, ``forces`` (N, 3) eV/Å or None, ``virial``
        (3, 3) eV or None, ``stress`` ((6,) Voigt or (3, 3), eV/Å³) when the frame has one (see
        :func:`virials_from_stress`), ``info`` dict, and ``unstored_arrays`` (names of the
        per-atom columns that are not stored, e.g. ASE's ``energies``) when there are any.

    Raises
    ------
    ValueError
        For a bad Lattice, label or missing column (the caller adds file and line).
    UnknownElementError
        With ``line`` set to the 0-based atom index of the first unknown symbol.
    """
    lattice = info.get("Lattice")
    cell = np.zeros((3, 3)) if lattice is None else _as_matrix(lattice, "Lattice").T.copy()
    pbc = np.asarray(info.get("pbc", lattice is not None), dtype=bool)
    if pbc.shape != (3,):
        pbc = np.full(3, bool(pbc.reshape(-1)[0])) if pbc.size == 1 else pbc
    if "pos" not in arrays:
        raise ValueError("the frame has no pos column")
    if "species" in arrays:
        numbers = _numbers_of_species(arrays["species"], {} if species_cache is None else species_cache)
        if isinstance(numbers, int):
            raise UnknownElementError(f"unknown element {str(arrays['species'][numbers])!r}", line=numbers)
    elif "Z" in arrays:
        numbers = np.asarray(arrays["Z"], dtype=np.int64).reshape(-1)
    else:
        raise ValueError("the frame has neither a species nor a Z column")
    prefix = _label_prefix(info, arrays)
    frame = {
        "numbers": numbers,
        "positions": np.asarray(arrays["pos"], dtype=float),
        "cell": cell,
        "pbc": pbc,
        **_labels(info, arrays, prefix),
        "info": _metadata(info, prefix, index),
    }
    unstored = _unstored_arrays(arrays, prefix)
    if unstored:
        frame["unstored_arrays"] = unstored
    return frame


def _unstored_arrays(arrays: dict[str, Any], prefix: str) -> tuple[str, ...]:
    """Names of the per-atom columns that are not stored (all but species/Z, pos and the forces read)."""
    forces = prefix + "forces" if prefix + "forces" in arrays else prefix + "force"
    return tuple(k for k in arrays if k not in ("species", "Z", "pos", forces))


# --- reading ------------------------------------------------------------------------------------

class _Cursor:
    """Where the reader is: byte offset, 1-based line and index of the next frame."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size
        self.pos = 0
        self.line = 1
        self.frame = 0


def _rest_is_blank(peek: BinaryIO, pos: int, block: int = 1 << 20) -> bool:
    peek.seek(pos)
    while data := peek.read(block):
        if data.strip():
            return False
    return True


def _read_lines(peek: BinaryIO, pos: int, count: int) -> list[str]:
    """Up to ``count`` lines from byte ``pos`` (fewer at the end of the file)."""
    peek.seek(pos)
    lines = []
    for _ in range(count):
        raw = peek.readline()
        if not raw:
            break
        lines.append(raw.decode(errors="replace"))
    return lines


def _atom_count(peek: BinaryIO, at: _Cursor) -> int | None:
    """The atom count of the frame at ``at``; ``None`` at the end of the file."""
    peek.seek(at.pos)
    head = peek.readline().strip()
    if not head:
        if _rest_is_blank(peek, at.pos):
            return None
        raise ParseError("blank line where the atom count of a frame was expected", path=at.path, line=at.line)
    try:
        natoms = int(head)
    except ValueError:
        text = head.decode(errors="replace")
        raise ParseError(f"expected the atom count of frame {at.frame}, got {text[:40]!r}", path=at.path, line=at.line) from None
    if natoms < 1:
        raise ParseError(f"frame {at.frame} declares {natoms} atoms", path=at.path, line=at.line)
    if natoms > (at.size - at.pos) // _MIN_ATOM_LINE_BYTES:
        _diagnose(peek, at, natoms, "")
    return natoms


def _diagnose(peek: BinaryIO, at: _Cursor, natoms: int, message: str) -> None:
    """Re-read the lines of the frame at ``at`` that failed to parse and raise the error they show."""
    lines = _read_lines(peek, at.pos, natoms + 2)
    k, first = at.frame, at.line
    if len(lines) < natoms + 2:
        got = max(len(lines) - 2, 0)
        raise TruncatedFileError(
            f"frame {k} (line {first}) declares {natoms} atoms but the file ends after {got} atom lines",
            path=at.path, line=first + len(lines) - 1,
        )
    for j, line in enumerate(lines[2:]):
        if not line.strip():
            raise TruncatedFileError(f"frame {k} has a blank line among its {natoms} atom lines", path=at.path, line=first + 2 + j)
    bad = _BAD_FIELD.search(message)
    if bad:
        field, column, atom = bad.group(1), _COLUMN_NAMES.get(bad.group(2), bad.group(2)), int(bad.group(3))
        try:
            finite = np.isfinite(float(field))
        except ValueError:
            finite = True
        reason = f"{column} has non-finite values" if not finite else f"invalid number {field!r} in column {column!r}"
        raise ParseError(f"frame {k}: {reason}", path=at.path, line=first + 2 + atom)
    atom = _ATOM_LINE.search(message)
    line = first + 2 + int(atom.group(1)) if atom else first + 1
    raise ParseError(f"frame {k}: {message or 'could not be read'}", path=at.path, line=line)


def _read_plain_xyz(fp: Any, peek: BinaryIO, at: _Cursor, natoms: int, message: str) -> tuple[int, dict, dict]:
    """Read a frame whose comment line the extxyz grammar rejected, as plain XYZ if it is free text."""
    comment = _read_lines(peek, at.pos, 2)[-1].strip()
    if "=" in comment or '"' in comment or "'" in comment:
        raise ParseError(
            f"frame {at.frame}: the comment line is not valid extended XYZ key=value pairs ({message}); "
            "refusing to read the frame without its Lattice, pbc, energy and Properties",
            path=at.path, line=at.line + 1,
        )
    cextxyz.cfseek(fp, at.pos, 0)
    nat, info, arrays = cextxyz.read_frame_dicts(fp, comment=_PLAIN_XYZ_PROPERTIES, use_cleri=False)
    info.pop("Properties", None)
    if comment:
        info["comment"] = comment
    return nat, info, arrays


def _read_one(fp: Any, peek: BinaryIO, at: _Cursor, natoms: int) -> tuple[int, dict, dict]:
    with _PARSER_LOCK:
        return _read_one_locked(fp, peek, at, natoms)


def _read_one_locked(fp: Any, peek: BinaryIO, at: _Cursor, natoms: int) -> tuple[int, dict, dict]:
    try:
        nat, info, arrays = cextxyz.read_frame_dicts(fp, use_cleri=False)
    except cextxyz.ExtXYZError as exc:
        message = str(exc)
        if not message.startswith("Failed to parse string"):
            _diagnose(peek, at, natoms, message)
        try:
            nat, info, arrays = _read_plain_xyz(fp, peek, at, natoms, message)
        except (cextxyz.ExtXYZError, EOFError) as again:
            _diagnose(peek, at, natoms, str(again))
    except EOFError:
        _diagnose(peek, at, natoms, "")
    if nat != natoms:
        raise ParseError(f"frame {at.frame}: the parser read {nat} atoms, the count line says {natoms}", path=at.path, line=at.line)
    return nat, info, arrays


def _checked_frame(at: _Cursor, info: dict, arrays: dict, cache: dict[bytes, np.ndarray]) -> dict[str, Any]:
    try:
        return frame_from_parsed(info, arrays, at.frame, cache)
    except UnknownElementError as exc:
        raise UnknownElementError(exc.reason, path=at.path, line=at.line + 2 + (exc.line or 0)) from None
    except ValueError as exc:
        raise ParseError(f"frame {at.frame}: {exc}", path=at.path, line=at.line + 1) from exc


def iter_extxyz(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line, frame)`` for every frame of an extended XYZ file, streaming.

    Parameters
    ----------
    path
        An extended (or plain) XYZ file.

    Yields
    ------
    line : int
        1-based line of the frame's atom count.
    frame : dict
        As :func:`frame_from_parsed` returns it (not yet checked for shapes and finiteness).

    Raises
    ------
    EmptyFileError, TruncatedFileError, ParseError, UnknownElementError
        Naming the file and the line, raised when the reader reaches the bad frame (frames
        before it have been yielded already: callers that write must do so in a transaction).
    """
    at = _Cursor(Path(path))
    fp = cextxyz.cfopen(str(at.path), "r")
    if not fp:
        raise FileNotFoundError(f"{at.path}: cannot be opened")
    cache: dict[bytes, np.ndarray] = {}
    try:
        with open(at.path, "rb", buffering=_PEEK_BUFFER) as peek:
            while (natoms := _atom_count(peek, at)) is not None:
                _, info, arrays = _read_one(fp, peek, at, natoms)
                frame = _checked_frame(at, info, arrays, cache)
                yield at.line, frame
                at.pos = cextxyz.cftell(fp)
                at.line += natoms + 2
                at.frame += 1
    finally:
        cextxyz.cfclose(fp)
    if at.frame == 0:
        raise EmptyFileError("the file is empty", path=at.path)


class _Ahead:
    """Iterate ``items`` in a worker thread until the consumer starts, then in the consumer.

    Made to overlap two GIL-free jobs, e.g. parsing a file (the C parser releases the GIL)
    while the caller hashes it: the worker runs ``items`` up to ``depth`` blocks of
    ``block`` items ahead; when the consumer takes the first block, the worker hands
    ``items`` over after its current item, and the consumer drains the queued blocks and
    then continues ``items`` itself.  (Kept running during the write, the worker only
    competed for two cores with the consumer and the server: measured slower.)  An
    exception raised by ``items`` reaches the consumer after the items before it.  Closing
    early (``close()``, or leaving a ``for`` loop by an exception) stops the worker, waits
    for it and closes ``items``, so no parse outlives the iteration.
    """

    _END, _HANDOFF = object(), object()

    def __init__(self, items: Iterator[Any], block: int = 64, depth: int = 8) -> None:
        self._items, self._block = items, block
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop, self._consuming = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._work, name="matstore-extxyz-reader", daemon=True)
        self._thread.start()

    def _put(self, value: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        block: list[Any] = []
        try:
            for item in self._items:
                block.append(item)
                if self._consuming.is_set():
                    if self._put(block):
                        self._put(self._HANDOFF)
                    return
                if len(block) == self._block:
                    if not self._put(block):
                        return
                    block = []
            if self._put(block):
                self._put(self._END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            if self._put(block):
                self._put(exc)

    def __iter__(self) -> Iterator[Any]:
        self._consuming.set()
        try:
            while True:
                value = self._queue.get()
                if value is self._END:
                    return
                if value is self._HANDOFF:
                    self._thread.join()
                    yield from self._items
                    return
                if isinstance(value, BaseException):
                    raise value
                yield from value
        finally:
            self.close()

    def close(self) -> None:
        """Stop the worker, wait for it and close ``items``."""
        self._stop.set()
        self._thread.join()
        close = getattr(self._items, "close", None)
        if close is not None:
            close()


#: Frames parsed ahead of the consumer at most (blocks of 64): about one write batch, ~40 MB.
AHEAD_FRAMES = 4096


def run_ahead(items: Iterator[Any]) -> _Ahead:
    """Start consuming ``items`` (e.g. :func:`iter_extxyz` of a file) in a worker thread now;
    iterate the result for the items, or ``close()`` it if they are not needed after all.

    The worker stays at most :data:`AHEAD_FRAMES` items ahead, so memory stays bounded, and
    hands ``items`` to the consumer when it starts (see :class:`_Ahead`); meanwhile the
    caller can hash the file (the C parser and hashlib release the GIL).
    """
    return _Ahead(items, block=64, depth=AHEAD_FRAMES // 64)


__all__ = [
    "AHEAD_FRAMES",
    "LABEL_KEYS",
    "VIRIAL_STRESS_ATOL",
    "VIRIAL_STRESS_RTOL",
    "FrameLabelError",
    "frame_from_parsed",
    "iter_extxyz",
    "run_ahead",
    "virial_stress_conflict",
    "virial_stress_differences",
    "virials_from_stress",
]
