"""Code version, host and credential scrubbing for ``job_run`` records."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

from matstore import __version__

_SECRET_KEYS = re.compile(r"pass(word)?|secret|token|api[_-]?key|credential", re.I)


@lru_cache
def git_commit() -> str | None:
    """The git commit of the matstore checkout, ``$MATSTORE_GIT_COMMIT``, or ``None``."""
    if commit := os.environ.get("MATSTORE_GIT_COMMIT"):
        return commit
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def code_version() -> str:
    """matstore's package version."""
    return __version__


def host_name() -> str:
    """This machine's host name."""
    return socket.gethostname()


def scrub_text(text: str) -> str:
    """Mask credentials in ``text``: :func:`matstore.masking.mask_secrets` (the one masking function)."""
    from matstore.masking import mask_secrets

    return mask_secrets(text)


def scrub(value: Any) -> Any:
    """Return ``value`` with credentials removed: URL passwords and secret-named keys."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: ("***" if _SECRET_KEYS.search(str(k)) else scrub(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
