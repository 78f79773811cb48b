"""Data files shipped with matstore: table mappings of registered datasets (YAML).

Use :func:`mapping_path` to locate one (works from a checkout and an installed wheel).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def mapping_path(name: str) -> Path:
    """Path of the shipped mapping ``name`` (with or without ``.yaml``).

    Raises
    ------
    FileNotFoundError
        If no such mapping is shipped.
    """
    file = name if name.endswith((".yaml", ".yml")) else f"{name}.yaml"
    path = Path(str(resources.files(__name__).joinpath(file)))
    if not path.is_file():
        raise FileNotFoundError(f"no shipped mapping {file!r} in matstore/data")
    return path
