"""Labels of atomistic configurations: stress ↔ virial, and JSON-ready per-frame metadata.

Sign conventions (ASE's, and those of MACE, NequIP and GAP training files):

- the stress σ (eV/Å³) is σ = (1/V) ∂E/∂ε, positive in tension (a cell that wants to shrink);
- the virial W (eV) is W = −V·σ, with V the cell volume (Å³), so W is positive under
  compression.  (Tadmor & Miller, *Modeling Materials*, CUP 2011, §8.2; ASE's ``ase.io.extxyz``
  and libAtoms/GAP use the same pair.)
"""

from __future__ import annotations

from typing import Any

import numpy as np


def stress_to_virial(stress: np.ndarray, volume: float) -> np.ndarray:
    """Virial W = −V·σ (eV) from the stress σ (eV/Å³).

    Parameters
    ----------
    stress : (6,) Voigt (xx, yy, zz, yz, xz, xy) or (3, 3) float, eV/Å³, positive in tension
    volume : float, Å³

    Returns
    -------
    (3, 3) float, eV

    Raises
    ------
    ValueError
        If ``stress`` has another shape.
    """
    s = np.asarray(stress, dtype=float)
    if s.shape == (6,):
        xx, yy, zz, yz, xz, xy = s
        s = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    elif s.shape != (3, 3):
        raise ValueError(f"stress must have shape (6,) or (3, 3), got {s.shape}")
    return -volume * s


def virial_to_stress(virial: np.ndarray, volume: np.ndarray | float) -> np.ndarray:
    """Stress σ = −W/V (eV/Å³, positive in tension) from the virial W (eV).

    Parameters
    ----------
    virial : (..., 3, 3) float, eV
    volume : (...) float or float, Å³ (must be > 0)

    Returns
    -------
    (..., 3, 3) float, eV/Å³

    Raises
    ------
    ValueError
        If a volume is not positive (a non-periodic or degenerate cell has no stress).
    """
    v = np.asarray(volume, dtype=float)
    if np.any(~(v > 0)):
        raise ValueError("the stress needs a cell of positive volume")
    return -np.asarray(virial, dtype=float) / v[..., None, None]


def jsonable(value: Any) -> Any:
    """``value`` as JSON can hold it: arrays → lists, numpy scalars → Python, others → str."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool, list, dict, type(None))):
        return value
    return str(value)


__all__ = ["jsonable", "stress_to_virial", "virial_to_stress"]
