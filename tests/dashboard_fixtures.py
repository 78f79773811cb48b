"""A store built by matstore's own paths for the dashboard tests (no hand-made equation rows).

:func:`build_store` fills a fresh database the way the main job does, only smaller:

1. ``compute_and_store``: EMT bulk and surface properties of Cu, Ni, Al and Ag, four
   surface families each, on two worker processes (about 25 s on one core, 15 s on two);
2. ``ingest_dataset("strength_covariance")``: the published OpenKIM indicator table with its
   flags (potentials the study disqualified, strengths with stacking-fault jamming,
   implausible values) and the DFT table;
3. ``ingest_table``: a per-configuration table (20 divacancy-like configurations of Cu, keyed
   by their ``_id``, formation energy = 2.5 − 0.3·d eV with the pair distance d in Å; one row
   marked ``unconverged`` is stored flagged by the mapping's ``row_flags``);
4. ``fit_model``: the factorised surface-energy model of the EMT data (``normal_x``-style
   orientation descriptors, as the pipeline fits it) and the strength model across the
   OpenKIM potentials (sparse engine, as the pipeline), and a configuration-scope model of the
   per-configuration table, promoted to ``production``.

The database is created next to the test run's database and dropped at the end of the session.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from matstore.models.spec import FitSpec
from tests.conftest import REPO_ROOT, STRENGTH_DATA

EMT_METALS = ("Cu", "Ni", "Al", "Ag")
#: Surfaces computed per metal (four families keep the build near 30 s on one core).
EMT_MILLER = [(1, 0, 0), (1, 1, 0), (1, 1, 1), (2, 1, 0)]
SURFACE_MODEL = "surface_energy_emt"
STRENGTH_MODEL = "strength_openkim"
CONFIG_MODEL = "divacancy_emt"
STRESS_MODEL = "surface_stress_emt"
BULK_FEATURES = ["lattice_constant", "cohesive_energy", "c44"]
STRENGTH_FEATURES = ["vacancy_migration_energy", "surface_energy_111", "unstable_stacking_fault_energy"]


@dataclass
class Store:
    """The built store: its URL, an engine, and what the tests look for."""

    url: str
    engine: Engine
    surface_model_id: int
    strength_model_id: int
    config_model_id: int
    n_flagged_strength: int
    stress_model_id: int


def _specs() -> list[FitSpec]:
    surface = FitSpec(name=SURFACE_MODEL, target="surface_energy", features=BULK_FEATURES, methods=["emt"],
                      factorize="orientation", engine="sparse", seed=0,
                      description="Surface energy of EMT metals as C(bulk)·g(orientation)")
    strength = FitSpec(name=STRENGTH_MODEL, target="strength", features=STRENGTH_FEATURES, engine="sparse",
                       engine_params={"max_terms": 2, "max_factors": 1}, selection="cv:5%", seed=0,
                       description="Strength of the OpenKIM potentials from indicator properties")
    divacancy = FitSpec(name=CONFIG_MODEL, target="divacancy_energy", features=["vv_distance"], engine="sparse",
                        seed=0, description="Divacancy energy from the vacancy-vacancy distance (fixture law)")
    stress = FitSpec(name=STRESS_MODEL, target="surface_stress", features=BULK_FEATURES, methods=["emt"],
                     factorize="orientation", products=2, engine="sparse", seed=0,
                     description="Surface stress of EMT metals as a sum of products s_j(bulk)·g_j(orientation)")
    return [surface, strength, divacancy, stress]


#: Per-configuration law of the fixture table: E_f = 2.5 − 0.3·d (eV, d in Å).
CONFIG_E0, CONFIG_SLOPE, N_CONFIGURATIONS = 2.5, -0.3, 20


def _ingest_configurations(engine: Engine, folder: Path) -> None:
    """Define two configuration-scope properties and ingest a keyed table through a mapping."""
    from sqlmodel import Session

    from matstore import crud
    from matstore.ingest.table import ingest_table

    run = crud.start_job_run(engine=engine, kind="vocab_add", parameters={"names": ["vv_distance", "divacancy_energy"]})
    with Session(engine) as session:
        crud.add_definition(session=session, name="vv_distance", unit="angstrom", scope="configuration", job_run_id=run)
        crud.add_definition(session=session, name="divacancy_energy", unit="eV", scope="configuration", job_run_id=run)
        session.commit()
    crud.finish_job_run(engine=engine, job_run_id=run, status="succeeded", summary={})
    table = folder / "divacancies.csv"
    rows = [f"dv{i:02d},{CONFIG_E0 + CONFIG_SLOPE * (2.5 + 0.2 * i)!r},{2.5 + 0.2 * i!r},{'yes' if i == 7 else ''}"
            for i in range(N_CONFIGURATIONS)]
    table.write_text("_id,E_f,d,unconverged\n" + "\n".join(rows) + "\n")
    mapping = folder / "divacancies.yaml"
    mapping.write_text(
        "name: fixture_divacancies\n"
        "material: {formula: Cu, prototype: fcc}\n"
        "method: {name: emt, kind: calculator}\n"
        "key: {column: _id}\n"
        "row_flags:\n"
        "  - {column: unconverged, values: ['yes'], flag: 'relaxation did not converge'}\n"
        "columns:\n"
        "  E_f: {definition: divacancy_energy, unit: eV}\n"
        "  d: {definition: vv_distance, unit: angstrom}\n"
    )
    ingest_table(table, mapping, engine=engine)


def build_store(url: str, dataset_dir: Path) -> Store:
    """Migrate the empty database at ``url`` and fill it through compute, ingest and fit."""
    from matstore.admin import migrate
    from matstore.db import get_engine
    from matstore.ingest.compute.store import compute_and_store
    from matstore.ingest.registry import ingest_dataset
    from matstore.models.service import fit_model
    from matstore.models.versioning import promote

    engine = get_engine(url)
    migrate(engine)
    # Two workers: the same results as in-process (test_compute_element_serial_and_pool_agree).
    compute_and_store(engine, elements=list(EMT_METALS), calculator="emt", max_index=2, workers=2,
                      millers=EMT_MILLER)
    ingest_dataset("strength_covariance", engine=engine, dataset_dir=dataset_dir)
    _ingest_configurations(engine, Path(tempfile.mkdtemp(prefix="matstore-dash-")))
    for spec in _specs():
        outcome = fit_model(engine, spec)
        promote(engine, name=spec.name, version=outcome.version.version, alias="production")
    with engine.connect() as conn:
        ids = dict(conn.execute(text("SELECT name, id FROM equation_model")).all())
        flagged = conn.execute(text(
            "SELECT count(*) FROM bulk_property p JOIN property_definition d ON d.id = p.definition_id "
            "WHERE d.name = 'strength' AND p.flag IS NOT NULL")).scalar_one()
    return Store(url, engine, ids[SURFACE_MODEL], ids[STRENGTH_MODEL], ids[CONFIG_MODEL], int(flagged),
                 ids[STRESS_MODEL])


_BUILT: dict[str, Store] = {}


@pytest.fixture(scope="session")
def dashboard_store(database_url: str) -> Iterator[Store]:
    """The pipeline-built store in its own database (built once per session, then dropped).

    Imported by each dashboard test module; the build is shared through a module-level cache.
    """
    if not STRENGTH_DATA.is_dir():
        pytest.skip(f"shared dataset not found at {STRENGTH_DATA}")
    key = database_url
    if key not in _BUILT:
        name = f"matstore_dash_{uuid.uuid4().hex[:10]}"
        admin = create_engine(make_url(database_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = make_url(database_url).set(database=name).render_as_string(hide_password=False)
        try:
            _BUILT[key] = build_store(url, STRENGTH_DATA)
        except BaseException:
            _drop(database_url, name)  # a failed build leaves no database behind
            raise
    yield _BUILT[key]
    store = _BUILT.pop(key, None)
    if store is not None:
        store.engine.dispose()
        _drop(database_url, make_url(store.url).database)


def _drop(database_url: str, name: str) -> None:
    admin = create_engine(make_url(database_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def use_store(url: str) -> dict[str, str | None]:
    """Point matstore's settings (and so the dashboard's reader) at ``url``; returns what to restore."""
    from matstore.config import get_settings

    saved = {k: os.environ.get(k) for k in ("MATSTORE_DATABASE_URL", "MATSTORE_DASHBOARD_DATABASE_URL",
                                             "MATSTORE_READER_URL")}
    os.environ["MATSTORE_DATABASE_URL"] = url
    os.environ.pop("MATSTORE_DASHBOARD_DATABASE_URL", None)
    os.environ.pop("MATSTORE_READER_URL", None)
    get_settings.cache_clear()
    return saved


def restore(saved: dict[str, str | None]) -> None:
    """Undo :func:`use_store`."""
    from matstore.config import get_settings

    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    get_settings.cache_clear()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_dashboard(database_url: str, port: int, log: Path) -> subprocess.Popen:
    """Run ``matstore dashboard`` on ``port`` against ``database_url`` until it answers its health check.

    Raises
    ------
    AssertionError
        If the server exits or does not answer within 90 s (the message holds its log).
    """
    env = {k: v for k, v in os.environ.items() if k not in ("MATSTORE_DASHBOARD_DATABASE_URL", "MATSTORE_READER_URL")}
    env["MATSTORE_DATABASE_URL"] = database_url
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "matstore", "dashboard", "--host", "127.0.0.1",
                                 "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as resp:
                if resp.read() == b"ok":
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError(f"dashboard did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)

