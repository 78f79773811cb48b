"""The deployment files: docker-compose.yml against the Compose specification and its structure.

Docker is not needed: the file is validated offline with check-jsonschema's vendored Compose
schema, and its structure (services, health checks, start order, published ports, secrets)
is checked on the parsed YAML.  The workers it starts are exercised for real, against
PostgreSQL, in ``tests/test_jobs.py``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?([-?])([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _check_jsonschema() -> list[str]:
    exe = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    if not Path(exe).exists():
        pytest.skip("check-jsonschema is not installed (pip install -e '.[test]')")
    return [exe]


def test_compose_file_matches_the_compose_specification() -> None:
    result = subprocess.run(
        [*_check_jsonschema(), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_services_and_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", "worker", "dashboard"}  # no scheduler: workers defer periodic jobs
    pg = services["postgres"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert any(str(v).split(":")[0] == "pgdata" and str(v).endswith("/var/lib/postgresql/data") for v in pg["volumes"])
    assert "pgdata" in compose["volumes"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "matstore db migrate" in " ".join(services["migrate"]["command"])
    assert services["migrate"]["environment"]["MATSTORE_DATABASE_URL"].startswith("postgresql://matstore_migrator:")
    assert services["worker"]["environment"]["MATSTORE_DATABASE_URL"].startswith("postgresql://matstore_worker:")
    assert services["migrate"].get("restart") == "no"
    for name in ("worker", "dashboard"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    dashboard = services["dashboard"]
    assert dashboard["command"] == ["matstore", "dashboard", "--host", "0.0.0.0", "--port", "8501"]
    assert any(str(p).endswith(":8501") for p in dashboard["ports"])


def test_database_is_not_published_and_workers_scale(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "ports" not in services["postgres"] and "expose" not in services["postgres"]
    worker = services["worker"]
    # `--scale worker=N` needs no fixed container name and no published host port
    assert "container_name" not in worker and "ports" not in worker
    assert worker["command"][:2] == ["matstore", "worker"]
    assert "--schedule" in worker["command"]


def test_no_literal_secrets(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    # every password is an interpolated variable; the required ones fail loudly when unset
    assert "${POSTGRES_PASSWORD:?" in text and "${MATSTORE_READER_PASSWORD:?" in text
    for line in text.splitlines():
        code = line.split("#", 1)[0]
        if re.search(r"PASSWORD\s*:", code):
            assert "${" in code, f"literal secret in: {line.strip()}"
        for match in re.finditer(r"postgres(?:ql)?(?:\+\w+)?://([^:@/\s]+):([^@\s]*)@", code):
            assert match.group(2).startswith("${"), f"literal password in URL: {line.strip()}"
    dashboard_env = compose["services"]["dashboard"]["environment"]
    assert all("matstore_dashboard:" in v for k, v in dashboard_env.items() if k.endswith("_URL"))


def test_env_example_lists_every_required_variable() -> None:
    used = {m.group(1) for m in INTERPOLATION.finditer(COMPOSE.read_text())}
    required = {m.group(1) for m in INTERPOLATION.finditer(COMPOSE.read_text()) if m.group(2) == "?"}
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z0-9_]+)=", example, flags=re.MULTILINE))
    assert required <= documented, f"not in .env.example: {required - documented}"
    assert used <= documented, f"not in .env.example: {used - documented}"
    values = dict(re.findall(r"^([A-Z0-9_]+)=(.*)$", example, flags=re.MULTILINE))
    assert all(values[name] == "" for name in required), ".env.example must not ship passwords"


def test_schedule_in_compose_is_valid(compose: dict[str, Any]) -> None:
    from matstore.jobs.app import app
    from matstore.jobs.schedule import parse_schedule

    entries = parse_schedule(yaml.safe_load(compose["configs"]["schedule"]["content"]))
    app.perform_import_paths()
    assert {e.task for e in entries} <= set(app.tasks)
    assert "scan_drop_dir" in {e.task for e in entries}
    worker = compose["services"]["worker"]
    assert worker["configs"][0]["target"] == worker["command"][worker["command"].index("--schedule") + 1]


def test_dockerfile_and_dockerignore() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, flags=re.MULTILINE)
    assert re.search(r"pip install .*-e \.", dockerfile)
    assert re.search(r"^USER (?!root)", dockerfile, flags=re.MULTILINE)
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".env", ".git", ".venv"):
        assert entry in ignored
    assert "alembic" not in ignored and "!.env.example" in ignored
