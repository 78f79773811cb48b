"""Surface orientations of cubic crystals: Miller indices, unit normals, stereographic angles.

Conventions (used by the ``surface`` table and every ingest path):

- The cubic point group m-3m maps any normal to a representative with
  ``n_x >= n_y >= n_z >= 0`` (sort the absolute values in descending order).
- Its angles in the standard stereographic triangle [100]–[110]–[111]:
  ``theta`` = angle between the normal and [100] (0 … 54.7356°),
  ``phi`` = azimuth about [100] from the (001) mirror plane, ``atan2(n_z, n_y)`` (0 … 45°).
  [100] has θ = 0; [110] has θ = 45°, φ = 0; [111] has θ = 54.7356°, φ = 45°.
- The reduced Miller index of a rational normal is its representative divided by the gcd,
  written ``(h, k, l)`` with ``h >= k >= l >= 0``; e.g. (1,2,0), (0,-2,1) and (2,1,0) are one
  surface ``(2,1,0)``.

Reference: the standard stereographic projection of cubic crystals, e.g. J. F. Nye,
*Physical Properties of Crystals* (Oxford, 1985), and the orientation maps of surface
energy in cubic metals.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache, reduce
from itertools import product

import numpy as np

THETA_MAX_DEG = math.degrees(math.acos(1 / math.sqrt(3)))  # 54.7356°, the [111] corner


class OrientationError(ValueError):
    """An orientation is invalid (zero vector, non-finite, angles outside the triangle)."""


@dataclass(frozen=True)
class Orientation:
    """A surface orientation reduced to the standard triangle.

    Attributes
    ----------
    normal: (3,) float, unit normal with ``n_x >= n_y >= n_z >= 0``
    theta_deg, phi_deg: angles in the standard triangle, degrees
    miller: reduced (h, k, l) with h >= k >= l >= 0, or ``None`` when the normal is not a
        rational direction with indices up to ``max_miller`` (see :func:`from_normal`)
    """

    normal: tuple[float, float, float]
    theta_deg: float
    phi_deg: float
    miller: tuple[int, int, int] | None

    @property
    def key(self) -> str:
        """Unique key used by ``surface.orientation_key``: ``hkl:2,1,0`` or ``n:x,y,z``."""
        if self.miller is not None:
            return "hkl:" + ",".join(str(i) for i in self.miller)
        return "n:" + ",".join(f"{c:.6f}" for c in self.normal)

    @property
    def label(self) -> str:
        """Human-readable label, ``(2,1,0)`` or ``θ=12.3°,φ=4.5°``."""
        if self.miller is not None:
            return "(" + ",".join(str(i) for i in self.miller) + ")"
        return f"θ={self.theta_deg:.2f}°,φ={self.phi_deg:.2f}°"


def _representative(vectors: np.ndarray) -> np.ndarray:
    """The m-3m representative of each vector (last axis): absolute values, sorted descending."""
    return np.sort(np.abs(vectors), axis=-1)[..., ::-1]


def angles_of(normal: np.ndarray) -> tuple[float, float]:
    """Stereographic-triangle angles (θ, φ) in degrees of a representative unit normal."""
    nx, ny, nz = (float(c) for c in normal)
    theta = math.degrees(math.acos(max(-1.0, min(1.0, nx))))
    phi = math.degrees(math.atan2(nz, ny)) if (ny > 0 or nz > 0) else 0.0
    return theta, phi


def from_miller(h: int, k: int, l: int) -> Orientation:  # noqa: E741 - crystallographic name
    """Orientation of the plane (h k l) of a cubic crystal.

    Raises
    ------
    OrientationError
        If all three indices are zero or not integers.
    """
    try:
        ints = [int(h), int(k), int(l)]
    except (TypeError, ValueError) as exc:
        raise OrientationError(f"Miller index must be integers, got {(h, k, l)!r}") from exc
    if any(float(v) != i for v, i in zip((h, k, l), ints, strict=True)):
        raise OrientationError(f"Miller index must be integers, got {(h, k, l)!r}")
    if ints == [0, 0, 0]:
        raise OrientationError("Miller index (0,0,0) is not a plane")
    rep = _representative(np.array(ints, dtype=np.int64))
    g = reduce(math.gcd, (int(v) for v in rep))
    miller = tuple(int(v) // g for v in rep)
    normal = rep / np.linalg.norm(rep)
    theta, phi = angles_of(normal)
    return Orientation(tuple(float(c) for c in normal), theta, phi, miller)  # type: ignore[arg-type]


def from_normal(normal: np.ndarray | list[float], *, max_miller: int = 12, tol: float = 1e-6,
                tol_deg: float | None = None) -> Orientation:
    """Orientation of a surface given by its normal vector (any length, any octant).

    The Miller index is set when some integer vector with entries up to ``max_miller`` is
    parallel to the normal within ``tol`` (in the unit-vector components), or, when
    ``tol_deg`` is given, within that angle in degrees (then ``tol`` is not used); the
    lowest such index wins (see :func:`from_normals`).

    Raises
    ------
    OrientationError
        If the normal is zero or not finite.
    """
    return from_normals(np.asarray(normal, dtype=float).reshape(1, 3), max_miller=max_miller, tol=tol,
                        tol_deg=tol_deg)[0]


def from_normals(normals: np.ndarray, *, max_miller: int = 12, tol: float = 1e-6,
                 tol_deg: float | None = None) -> list[Orientation]:
    """Orientations of many surface normals at once; :func:`from_normal` of each row.

    Parameters
    ----------
    normals : (n, 3) float array, any length and octant per row
    max_miller : largest Miller index searched
    tol : largest difference of the unit-vector components for a normal to be given a Miller index
    tol_deg : if given, the largest angle (degrees) between the normal and the plane normal
        instead of ``tol``; a normal is then snapped to the lowest-index plane within it
        (lowest largest index, e.g. (1,1,1) before (12,12,11)) and stored as that plane.

    Returns
    -------
    list of n :class:`Orientation`, in row order.  The rational-index search runs on the whole
    array (2,100 normals: about 20 ms, against 0.6 s one by one).

    Raises
    ------
    OrientationError
        If a row is zero or not finite (the message names the first such row).
    """
    vec = np.asarray(normals, dtype=float).reshape(-1, 3)
    norm = np.linalg.norm(vec, axis=1)
    bad = ~np.isfinite(vec).all(axis=1) | (norm == 0.0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        where = f" (row {i})" if len(vec) > 1 else ""
        raise OrientationError(f"surface normal must be a finite non-zero vector, got {vec[i].tolist()}{where}")
    rep = _representative(vec / norm[:, None])
    millers = _rational_millers(rep, max_miller=max_miller, tol=tol, tol_deg=tol_deg)
    out = []
    for r, m in zip(rep, millers, strict=True):
        if m[0] > 0:
            out.append(from_miller(*(int(v) for v in m)))
        else:
            theta, phi = angles_of(r)
            out.append(Orientation(tuple(float(c) for c in r), theta, phi, None))  # type: ignore[arg-type]
    return out


def from_angles(theta_deg: float, phi_deg: float, *, max_miller: int = 12, tol: float = 1e-6,
                tol_deg: float | None = None) -> Orientation:
    """Orientation from stereographic-triangle angles (θ from [100], φ about [100]).

    ``max_miller``, ``tol`` and ``tol_deg`` as in :func:`from_normal`.

    Raises
    ------
    OrientationError
        If the angles are not finite or lie outside the standard triangle
        (0 <= φ <= 45°, 0 <= θ, and tan θ · sin φ <= 1 i.e. n_y >= n_z ... n_x >= n_y).
    """
    if not (math.isfinite(theta_deg) and math.isfinite(phi_deg)):
        raise OrientationError(f"angles must be finite, got θ={theta_deg}, φ={phi_deg}")
    t, p = math.radians(theta_deg), math.radians(phi_deg)
    normal = np.array([math.cos(t), math.sin(t) * math.cos(p), math.sin(t) * math.sin(p)])
    eps = 1e-9
    inside = (-eps <= phi_deg <= 45 + eps) and theta_deg >= -eps and normal[0] + eps >= normal[1] >= normal[2] - eps
    if not inside:
        raise OrientationError(
            f"angles θ={theta_deg}°, φ={phi_deg}° lie outside the standard triangle [100]-[110]-[111]"
        )
    return from_normal(normal, max_miller=max_miller, tol=tol, tol_deg=tol_deg)


def _rational_millers(rep: np.ndarray, *, max_miller: int, tol: float, tol_deg: float | None = None) -> np.ndarray:
    """(n, 3) int: the smallest integer vector parallel to each row of ``rep`` within ``tol``
    (largest entry up to ``max_miller``), or zeros where there is none.

    Each row is scaled so its largest component is n = 1 … ``max_miller`` and rounded; the
    first n whose rounded unit vector matches the row wins.  With ``tol_deg`` the match is an
    angle below ``tol_deg`` degrees (chord |u − rep| < 2 sin(tol_deg/2)) instead of every
    component within ``tol``.
    """
    found = np.zeros(rep.shape, dtype=np.int64)
    done = np.zeros(len(rep), dtype=bool)
    chord = None if tol_deg is None else 2.0 * math.sin(math.radians(tol_deg) / 2.0)
    for n in range(1, max_miller + 1):
        rounded = np.rint(rep / rep[:, :1] * n)
        length = np.linalg.norm(rounded, axis=1)
        ok = ~done & (rounded >= 0).all(axis=1) & (length > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            diff = rounded / length[:, None] - rep
            ok &= (np.max(np.abs(diff), axis=1) < tol) if chord is None else (np.linalg.norm(diff, axis=1) < chord)
        found[ok] = rounded[ok].astype(np.int64)
        done |= ok
    return found


def distinct_miller_indices(max_index: int) -> list[tuple[int, int, int]]:
    """All symmetry-distinct reduced Miller indices with every |index| <= ``max_index``.

    Returns the representatives (h >= k >= l >= 0, gcd 1) sorted by (h²+k²+l², h, k, l);
    for ``max_index=3`` there are 13: (1,0,0) (1,1,0) (1,1,1) (2,1,0) (2,1,1) (2,2,1)
    (3,1,0) (3,1,1) (3,2,0) (3,2,1) (3,2,2) (3,3,1) (3,3,2).

    Raises
    ------
    OrientationError
        If ``max_index`` < 1.
    """
    if max_index < 1:
        raise OrientationError(f"max_index must be >= 1, got {max_index}")
    seen = set()
    for h, k, l in product(range(max_index + 1), repeat=3):  # noqa: E741
        if (h, k, l) == (0, 0, 0):
            continue
        seen.add(from_miller(h, k, l).miller)
    return sorted(seen, key=lambda m: (m[0] ** 2 + m[1] ** 2 + m[2] ** 2, m))


def broken_bond_g(miller: tuple[int, int, int]) -> float:
    """Broken-bond orientation factor of an FCC surface, (2h + k)/sqrt(h²+k²+l²) for h>=k>=l.

    Counts nearest-neighbour bonds cut per unit area in the broken-bond model of FCC
    surfaces (e.g. Mackenzie, Moore & Nicholas, J. Phys. Chem. Solids 23, 185 (1962));
    γ(hkl) ∝ this factor.  Valid for h >= k >= l >= 0 with h odd-even rules ignored.
    """
    h, k, l = sorted((abs(int(v)) for v in miller), reverse=True)  # noqa: E741
    return (2 * h + k) / math.sqrt(h * h + k * k + l * l)


def in_plane_frame(miller: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Orthonormal surface frame (e1, e2, n) of the plane (h k l), each (3,) in crystal axes.

    ``e1`` is along the shortest in-plane lattice direction found among small integer
    vectors; ``e2 = n × e1``.  Surface tensor components (τ_ij, S_ijkl) are given in this frame.
    """
    n = np.asarray(miller, dtype=float)
    n = n / np.linalg.norm(n)
    best = None
    for v in product(range(-3, 4), repeat=3):
        vec = np.asarray(v, dtype=float)
        if not vec.any() or abs(vec @ n) > 1e-9:
            continue
        length = float(np.linalg.norm(vec))
        key = (length, -vec[0], -vec[1], -vec[2])
        if best is None or key < best[0]:
            best = (key, vec / length)
    e1 = best[1]  # type: ignore[index]
    e2 = np.cross(n, e1)
    return e1, e2, n



# --- which prototypes are cubic --------------------------------------------------------------

#: The one statement of what this module's orientations are, used in every refusal of a non-cubic surface.
CUBIC_ONLY = "surface orientations are cubic (m-3m) in matstore"

_SYSTEM_WORDS = ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic")
#: Prototype names (lower case, without spaces, ``-``, ``_``, ``'``, ``.``) → crystal system.  Structure
#: names, Strukturbericht designations and type compounds as in M. J. Mehl et al., "The AFLOW Library of
#: Crystallographic Prototypes: Part 1", Comput. Mater. Sci. 136, S1 (2017), and the crystal-system words.
_PROTOTYPE_SYSTEMS: dict[str, str] = {
    **{w: w for w in _SYSTEM_WORDS},
    "rhombohedral": "trigonal", "hex": "hexagonal", "ortho": "orthorhombic",
    **dict.fromkeys(("fcc", "bcc", "sc", "simplecubic", "diamond", "diamondcubic", "a1", "a2", "a4", "ah", "a12", "a13",
                     "a15", "cr3si", "cu", "w", "po", "cu3au", "l12", "b1", "nacl", "rocksalt", "halite", "b2", "cscl",
                     "b3", "zincblende", "sphalerite", "c1", "fluorite", "caf2", "antifluorite", "c1b", "halfheusler",
                     "l21", "heusler", "fullheusler", "d03", "bif3", "fe3al", "c15", "mgcu2", "b20", "fesi", "d21", "cab6",
                     "e21", "cubicperovskite", "perovskitecubic", "h11", "spinel", "pyrochlore", "pyrite", "cuprite"),
                    "cubic"),
    **dict.fromkeys(("hcp", "dhcp", "a3", "mg", "2h", "4h", "6h", "wurtzite", "b4", "graphite", "a9", "nias", "b81",
                     "wc", "bh", "c14", "mgzn2", "c36", "mgni2", "c32", "alb2", "d019", "ni3sn", "d024", "ni3ti",
                     "hexagonalclosepacked", "hexagonalclosedpacked"), "hexagonal"),
    **dict.fromkeys(("bct", "fct", "l10", "cuau", "a5", "betasn", "βsn", "whitetin", "a6", "c4", "rutile", "anatase",
                     "c11b", "mosi2", "d022", "al3ti", "tial3", "l60"), "tetragonal"),
    **dict.fromkeys(("1t", "3r", "a7", "a8", "c6", "cdi2", "corundum", "d51"), "trigonal"),
    **dict.fromkeys(("a20", "alphau", "bco", "c49", "zrsi2", "brookite", "orthorhombicperovskite"), "orthorhombic"),
    "monazite": "monoclinic",
}


def _system_of_number(number: int) -> str | None:
    """The crystal system of space group ``number`` (1 … 230), else ``None``.

    Ranges of the International Tables for Crystallography, Vol. A (2016), Table 2.1.2.1:
    1–2 triclinic, 3–15 monoclinic, 16–74 orthorhombic, 75–142 tetragonal, 143–167 trigonal,
    168–194 hexagonal, 195–230 cubic.
    """
    for last, system in ((2, "triclinic"), (15, "monoclinic"), (74, "orthorhombic"), (142, "tetragonal"),
                         (167, "trigonal"), (194, "hexagonal"), (230, "cubic")):
        if 1 <= number <= last:
            return system
    return None


@lru_cache(maxsize=1)
def _standard_symbols() -> dict[str, int]:
    """Short Hermann–Mauguin symbol of each standard space group → its number (``P6_3/mmc`` and ``P63/mmc`` → 194).

    From pymatgen's ``sg_symbol_from_int_number`` (about 0.3 s, once): building a ``SpaceGroup``
    builds its symmetry operations (up to 1 s for Fm-3m), which a crystal system does not need.
    """
    from pymatgen.symmetry.groups import sg_symbol_from_int_number

    symbols = {sg_symbol_from_int_number(n): n for n in range(1, 231)}
    return {**{k.replace("_", ""): n for k, n in symbols.items()}, **symbols}


@lru_cache(maxsize=512)
def _system_of_symbol(symbol: str) -> str | None:
    """The crystal system of a Hermann–Mauguin space-group symbol (``P6_3/mmc``, ``Fm-3m``, ``P 63/m m c``), else ``None``.

    A standard short symbol is looked up (:func:`_standard_symbols`); any other is read by
    pymatgen's ``SpaceGroup(symbol).crystal_system`` (full symbols, other settings).  Also tried:
    the lattice letter upper-cased (``fm-3m``) and an overbar's minus restored before a 3
    (``Fm3m``, ``Pm3m``: the inversion keeps the crystal system).
    """
    if not re.fullmatch(r"[PIFCABRpifcabr][0-9A-Za-z_/\- :]*", symbol):
        return None
    from pymatgen.symmetry.groups import SpaceGroup

    capital = symbol[0].upper() + symbol[1:].replace(" ", "")
    candidates = dict.fromkeys((symbol, capital, re.sub(r"(?<![_\-0-9])3", "-3", capital)))
    for candidate in candidates:
        if candidate in _standard_symbols():
            return _system_of_number(_standard_symbols()[candidate])
    for candidate in candidates:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return str(SpaceGroup(candidate).crystal_system)
        except (ValueError, KeyError):
            continue
    return None


def _system_of_token(token: str, *, bare_number: bool) -> str | None:
    """Crystal system of one word of a prototype: a name, a space-group number (``225``, ``#225``,
    ``sg 194``; a bare number only when ``bare_number``) or a space-group symbol; else ``None``."""
    key = re.sub(r"[\s\-_'’.]", "", token.lower())
    if key in _PROTOTYPE_SYSTEMS:
        return _PROTOTYPE_SYSTEMS[key]
    number = re.fullmatch(r"(?:#|no|sg|spacegroup)?([0-9]{1,3})" if bare_number else r"(?:#|no|sg|spacegroup)([0-9]{1,3})", key)
    if number:
        return _system_of_number(int(number.group(1)))
    return _system_of_symbol(token.strip())


@lru_cache(maxsize=1024)
def crystal_system(prototype: str) -> str | None:
    """The crystal system a material's prototype names, or ``None`` when it is not recognised.

    ``prototype`` is matched, first whole and then word by word (``hcp (Mg)``, ``Fm-3m (225)``,
    ``2H-MoS2``, ``body-centred cubic``), against: structure names and Strukturbericht
    designations (``fcc``, ``bcc``, ``diamond``, ``B2``/``CsCl``, ``L1_2``, ``rocksalt``/``B1``,
    ``zincblende``/``B3``, ``fluorite``/``C1``, ``cubic perovskite``, ``A15``, ``Cu``, ``W`` → cubic;
    ``hcp``, ``2H``, ``wurtzite``, ``L1_0``, ``rutile`` … → not; Mehl et al., Comput. Mater. Sci.
    136, S1 (2017)), the crystal-system words (``tetragonal``, ``hexagonal``, ``trigonal``,
    ``rhombohedral``, ``orthorhombic``, ``monoclinic``, ``triclinic``, ``cubic``), space-group
    numbers (195–230 cubic; a bare number only as the whole prototype) and Hermann–Mauguin symbols
    (pymatgen ``SpaceGroup``).  Words naming two systems (``fcc/hcp``) are ambiguous: ``None``.

    Returns
    -------
    str or None
        ``"cubic"``, ``"hexagonal"``, ``"trigonal"``, ``"tetragonal"``, ``"orthorhombic"``,
        ``"monoclinic"``, ``"triclinic"``; ``None`` for ``unknown``, free text and anything else.
    """
    text = prototype.strip()
    if not text or text.lower() == "unknown":
        return None
    whole = _system_of_token(text, bare_number=True)
    if whole is not None:
        return whole
    words = [w for w in re.split(r"[\s,;()\[\]{}]+", text) if w]
    found = {s for w in words if (s := _system_of_token(w, bare_number=False)) is not None}
    if not found:
        found = {_PROTOTYPE_SYSTEMS[w] for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 1 and w in _PROTOTYPE_SYSTEMS}
    return found.pop() if len(found) == 1 else None


def non_cubic_system(prototype: str) -> str | None:
    """The crystal system of ``prototype`` when it is known and not cubic, else ``None``.

    matstore's orientations are those of cubic crystals (:func:`from_miller` reduces by m-3m), so
    a surface of a material whose prototype names another system would be misplaced (hcp Mg
    (0,0,1) stored as (1,0,0)).  An unrecognised prototype (``unknown``, free text) is assumed
    cubic: ``None``.  See :func:`crystal_system`.
    """
    system = crystal_system(prototype)
    return system if system is not None and system != "cubic" else None


#: A digit followed by a combining macron (U+0304) or overline (U+0305): the overbar of a negative index.
_OVERBAR = re.compile("([0-9])[\u0304\u0305]")
MILLER_FORMS = "111, (1 1 0), [2,1,0], 1;-1;0 or 1̄10"


def _ascii_minus(text: str) -> str:
    """``text`` with overbars (``1̄`` → ``-1``) and the minus sign U+2212 written as ASCII ``-``."""
    return _OVERBAR.sub(r"-\1", text).replace("\u2212", "-")


def miller_integer(text: str) -> int:
    """One Miller index from its text: ``1``, ``-1``, ``−1`` (U+2212), ``1̄`` (overbar) or an integral float ``1.0``.

    Raises
    ------
    ValueError
        With a one-line reason, if the text is not an integer.
    """
    value = _ascii_minus(text.strip())
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not an integer") from None
    if not number.is_integer():
        raise ValueError(f"{text.strip()!r} is not an integer")
    return int(number)


class MillerBravaisError(ValueError):
    """A Miller-index cell holds four indices (h k i l): a hexagonal Miller–Bravais facet, not a cubic (h k l)."""


#: Why a four-index (h k i l) facet is refused, after "<cell> is ": matstore's surfaces are cubic.
MILLER_BRAVAIS = ("a 4-index hexagonal (Miller–Bravais) facet (h k i l); " + CUBIC_ONLY
                  + ": store a hexagonal material's bulk values, not its surfaces")


def miller_indices(text: str) -> tuple[int, int, int]:
    """(h, k, l) of a Miller-index cell, not reduced.

    Accepted: ``111``, ``-110``, ``(1 1 0)``, ``[2,1,0]``, ``1;-1;0``, overbars ``1̄10`` (a
    combining macron U+0304 or overline U+0305 after the digit: −1), the minus sign U+2212,
    and one integral number such as ``111.0`` or ``11.0`` (a derived h*100+k*10+l with
    0 ≤ h, k, l ≤ 9), read as its three digits (``011``).

    Raises
    ------
    MillerBravaisError
        Four integers (``[1, 0, -1, 0]``, ``(0 0 0 1)``, ``10-10``): a hexagonal Miller–Bravais
        facet (h k i l), whose plane the cubic reduction of this module does not describe.
    ValueError
        Any other text that is not three indices, with a one-line reason naming the accepted forms.
    """
    value = _ascii_minus(text.strip()).strip("()[]{}").strip()
    if re.fullmatch(r"[0-9]+\.0*", value):
        digits = value.split(".")[0].lstrip("0") or "0"
        if len(digits) > 3:
            raise ValueError(f"one number is read as three digits h k l, and {text.strip()!r} has {len(digits)}; "
                             f"give {MILLER_FORMS}")
        value = digits.zfill(3)
    if re.fullmatch(r"(-?[0-9]){3}", value):
        return tuple(int(x) for x in re.findall(r"-?[0-9]", value))  # type: ignore[return-value]
    parts = [x for x in re.split(r"[\s,;]+", value) if x]
    if re.fullmatch(r"(-?[0-9]){4}", value) or (len(parts) == 4 and all(re.fullmatch(r"-?[0-9]+", x) for x in parts)):
        raise MillerBravaisError(f"{text.strip()!r} is {MILLER_BRAVAIS}")
    if len(parts) != 3:
        raise ValueError(f"{text.strip()!r} is not three indices; give {MILLER_FORMS}")
    return tuple(miller_integer(x) for x in parts)  # type: ignore[return-value]


__all__ = [
    "CUBIC_ONLY",
    "MILLER_BRAVAIS",
    "MILLER_FORMS",
    "MillerBravaisError",
    "Orientation",
    "OrientationError",
    "THETA_MAX_DEG",
    "angles_of",
    "broken_bond_g",
    "crystal_system",
    "distinct_miller_indices",
    "from_angles",
    "from_miller",
    "from_normal",
    "from_normals",
    "in_plane_frame",
    "miller_indices",
    "miller_integer",
    "non_cubic_system",
]
