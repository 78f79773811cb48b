"""Static checks that run with the tests: ruff lint over the package, tests and benchmarks."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def test_ruff_is_clean() -> None:
    if shutil.which("ruff") is None and subprocess.run([sys.executable, "-m", "ruff", "--version"],
                                                       capture_output=True).returncode != 0:
        pytest.skip("ruff is not installed (it is in the test extra)")
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "matstore", "tests", "benchmarks", "alembic"],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_layers_import_one_way() -> None:
    """ingest → schema ← models ← dashboard: schema imports no layer; ingest and models not the dashboard."""
    rules = {"schema": ("matstore.ingest", "matstore.models", "matstore.dashboard", "matstore.cli", "matstore.jobs"),
             "ingest": ("matstore.models", "matstore.dashboard", "matstore.cli"),
             "models": ("matstore.ingest", "matstore.dashboard", "matstore.cli"),
             "dashboard": ("matstore.ingest", "matstore.cli", "matstore.jobs")}
    offenders = []
    for layer, forbidden in rules.items():
        for path in (REPO_ROOT / "matstore" / layer).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                stripped = line.strip()
                if stripped.startswith(("import ", "from ")) and any(f" {f}" in stripped + " " for f in forbidden):
                    offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}: {stripped}")
    assert not offenders, "\n".join(offenders)


def test_sqlalchemy_runs_without_its_compiled_rows_under_matstore() -> None:
    """Importing matstore before SQLAlchemy switches the compiled result rows off (matstore/__init__.py)."""
    import os

    code = "import matstore, sqlalchemy.util._has_cy as h; print(h.HAS_CYEXTENSION)"
    env = {k: v for k, v in os.environ.items() if k != "DISABLE_SQLALCHEMY_CEXT_RUNTIME"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False"
    from sqlalchemy.util import _has_cy

    assert _has_cy.HAS_CYEXTENSION is False  # the tests run as the product does
