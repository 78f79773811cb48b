"""Content hashes used for idempotency and de-duplication (sha256, hex)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any


def sha256_bytes(data: bytes) -> str:
    """sha256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, *, chunk_size: int = 1 << 20) -> str:
    """sha256 hex digest of a file's bytes, read in chunks.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    if isinstance(value, Path):
        return str(value)
    return value


def canonical_json(value: Any) -> str:
    """Canonical JSON text of ``value``: sorted keys, no whitespace, numpy arrays as lists."""
    return json.dumps(_jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_json(value: Any) -> str:
    """sha256 of :func:`canonical_json` of ``value``."""
    return sha256_bytes(canonical_json(value).encode())
