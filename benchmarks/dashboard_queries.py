"""Dashboard query and page-load times on a store with 10^6 bulk property rows.

Creates a throw-away database on the server named by ``--server`` (default
``$MATSTORE_TEST_DATABASE_URL``), migrates it, adds the dashboard test store
(``tests/dashboard_fixtures.py``) plus ``--rows`` bulk values generated with
``generate_series`` (40 materials × 250 methods × 21 properties × 5 sources), then times

- every query of :mod:`matstore.dashboard.queries` (uncached: the underlying function), and
- every page under Streamlit's AppTest (caches cleared before each run),

and prints a table of median and p95 in milliseconds.  The database is dropped at the end
unless ``--keep`` is given.

Usage::

    python benchmarks/dashboard_queries.py --rows 1000000 --repeat 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.dashboard_fixtures

console = Console()

BULK_NAMES = (
    "lattice_constant", "cohesive_energy", "c11", "c12", "c44", "bulk_modulus", "shear_modulus_prime",
    "shear_modulus_c44", "zener_ratio", "stacking_fault_energy", "extrinsic_stacking_fault_energy",
    "unstable_stacking_fault_energy", "unstable_twinning_energy", "vacancy_formation_energy",
    "vacancy_migration_energy", "thermal_expansion_coefficient", "surface_energy_100", "surface_energy_110",
    "surface_energy_111", "surface_energy_121", "strength",
)
N_MATERIALS, N_METHODS, N_SOURCES = 40, 250, 5
ELEMENTS = ("Ag Al Au Co Cr Cu Fe Ir Mo Nb Ni Pb Pd Pt Rh Ta Ti V W Zr Mg Zn Cd Ca Sr Ba Li Na K Rb Cs Be Sc Y "
            "Hf Re Os Ru Tc Mn").split()


def _fill(url: str, rows: int) -> None:
    from matstore.admin import migrate
    from tests.dashboard_fixtures import populate

    engine = create_engine(url)
    migrate(engine)
    populate(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO material (formula, prototype) SELECT unnest(CAST(:f AS text[])), 'bcc'"),
                     {"f": ELEMENTS[:N_MATERIALS]})
        conn.execute(text(
            "INSERT INTO method (name, kind, parameters_sha256) "
            "SELECT 'bench_potential_' || i, 'interatomic_potential', md5(i::text) || md5(i::text) "
            "FROM generate_series(1, :n) AS i"), {"n": N_METHODS})
        conn.execute(text(
            "INSERT INTO source (kind, sha256, uri) SELECT 'dataset', md5('src' || i) || md5('src' || i), "
            "'bench://source/' || i FROM generate_series(1, :n) AS i"), {"n": N_SOURCES})
        # Arrays of ids, then one INSERT ... SELECT over generate_series: i -> (definition, method,
        # material, source) in mixed radix, so every row is unique by the table's constraint.
        conn.execute(text(
            """
            WITH d AS (SELECT array_agg(id ORDER BY name) AS ids FROM property_definition
                       WHERE name = ANY(CAST(:names AS text[]))),
                 me AS (SELECT array_agg(id ORDER BY id) AS ids FROM method WHERE name LIKE 'bench\\_%'),
                 m AS (SELECT array_agg(id ORDER BY id) AS ids FROM material WHERE prototype = 'bcc'),
                 s AS (SELECT array_agg(id ORDER BY id) AS ids FROM source WHERE uri LIKE 'bench://%'),
                 j AS (SELECT min(id) AS id FROM job_run)
            INSERT INTO bulk_property (material_id, method_id, definition_id, value, source_id, job_run_id)
            SELECT m.ids[1 + (i / (k.nd * k.nme)) % k.nm], me.ids[1 + (i / k.nd) % k.nme], d.ids[1 + i % k.nd],
                   1 + random() * 10, s.ids[1 + (i / (k.nd * k.nme * k.nm)) % k.ns], j.id
            FROM generate_series(0, CAST(:rows AS int) - 1) AS i, d, me, m, s, j,
                 (SELECT CAST(:nd AS int) AS nd, CAST(:nme AS int) AS nme, CAST(:nm AS int) AS nm,
                         CAST(:ns AS int) AS ns) AS k
            """),
            {"names": list(BULK_NAMES), "nd": len(BULK_NAMES), "nme": N_METHODS, "nm": N_MATERIALS,
             "ns": N_SOURCES, "rows": rows})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()


def _time(fn: Callable[[], object], repeat: int) -> tuple[float, float, int]:
    times = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    n = len(result) if hasattr(result, "__len__") else 0
    return statistics.median(times), p95, n


def _query_cases(q) -> list[tuple[str, Callable[[], object]]]:  # noqa: ANN001
    from sqlalchemy import text as sql

    with q.engine().connect() as conn:
        cu = conn.execute(sql("SELECT id FROM material WHERE formula = 'Fe'")).scalar_one()
        pot = conn.execute(sql("SELECT id FROM method WHERE name = 'bench_potential_7'")).scalar_one()
        lc = conn.execute(sql("SELECT id FROM property_definition WHERE name = 'lattice_constant'")).scalar_one()
        last = conn.execute(sql("SELECT max(id) FROM bulk_property")).scalar_one()
        version = conn.execute(sql("SELECT max(id) FROM equation_version")).scalar_one()
        model = conn.execute(sql("SELECT max(id) FROM equation_model")).scalar_one()
        surf = conn.execute(sql("SELECT material_id, method_id FROM surface_property p "
                                "JOIN surface s ON s.id = p.surface_id LIMIT 1")).one()
    raw = {name: getattr(q, name).__wrapped__ for name in dir(q) if hasattr(getattr(q, name), "__wrapped__")}
    return [
        ("counts (overview)", lambda: raw["counts"]()),
        ("job_runs", lambda: raw["job_runs"]()),
        ("job_status_counts", lambda: raw["job_status_counts"]()),
        ("materials", lambda: raw["materials"]()),
        ("methods", lambda: raw["methods"]()),
        ("bulk_definitions", lambda: raw["bulk_definitions"]()),
        ("bulk_values (no filter)", lambda: raw["bulk_values"]()),
        ("bulk_values_count (no filter)", lambda: raw["bulk_values_count"]()),
        ("bulk_values (material)", lambda: raw["bulk_values"](material_ids=(cu,))),
        ("bulk_values (method+property)", lambda: raw["bulk_values"](method_ids=(pot,), definition_ids=(lc,))),
        ("bulk_values (search 'vacancy')", lambda: raw["bulk_values"](search="vacancy")),
        ("bulk_values (search, no match)", lambda: raw["bulk_values"](search="'; DROP TABLE material; --")),
        ("bulk_values_count (search)", lambda: raw["bulk_values_count"](search="vacancy")),
        ("bulk_pair (E_v^m vs strength)", lambda: raw["bulk_pair"](x="vacancy_migration_energy", y="strength")),
        ("bulk_pair (one material)", lambda: raw["bulk_pair"](x="c44", y="strength", material_ids=(cu,))),
        ("lattice_constant", lambda: raw["lattice_constant"](material_id=cu, method_id=pot)),
        ("surface_choices", lambda: raw["surface_choices"]()),
        ("surface_values", lambda: raw["surface_values"](material_id=surf[0], method_id=surf[1])),
        ("search_values (empty)", lambda: raw["search_values"]()),
        ("search_values ('Fe')", lambda: raw["search_values"](search="Fe")),
        ("search_values (value id)", lambda: raw["search_values"](search=str(last))),
        ("value_provenance", lambda: raw["value_provenance"](scope="bulk", value_id=last)),
        ("equation_models", lambda: raw["equation_models"]()),
        ("equation_versions", lambda: raw["equation_versions"](model_id=model)),
        ("equation_predictions", lambda: raw["equation_predictions"](version_id=version)),
        ("procrastinate_present", lambda: raw["procrastinate_present"]()),
    ]


def _page_cases(q) -> list[tuple[str, Callable[[], object]]]:  # noqa: ANN001
    from streamlit.testing.v1 import AppTest

    from matstore.dashboard import APP_PATH

    def load(page: str) -> Callable[[], object]:
        def run() -> object:
            q.clear_caches()
            at = AppTest.from_file(str(APP_PATH), default_timeout=120)
            at.run()
            if page != "overview":
                at.switch_page(f"pages/{page}.py").run()
            if at.exception:
                raise RuntimeError(f"page {page} raised: {at.exception[0].value}")
            return []
        return run

    return [(f"page: {p} (AppTest, cold cache)", load(p))
            for p in ("overview", "jobs", "bulk", "surfaces", "provenance", "equations")]


def main() -> None:
    """Build the benchmark database, time queries and pages, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default=os.environ.get("MATSTORE_TEST_DATABASE_URL"),
                        help="PostgreSQL server URL (a database is created on it)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    parser.add_argument("--database", help="reuse this existing, filled database instead of creating one")
    args = parser.parse_args()

    import logging

    logging.getLogger("streamlit").setLevel(logging.ERROR)
    from matstore.config import get_settings, normalise_database_url

    if not args.server and not args.database:
        parser.error("give --server or set MATSTORE_TEST_DATABASE_URL")
    server = make_url(normalise_database_url(args.server or args.database))
    name = make_url(normalise_database_url(args.database)).database if args.database else \
        f"matstore_bench_{uuid.uuid4().hex[:8]}"
    url = server.set(database=name).render_as_string(hide_password=False)
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    created = False
    try:
        if not args.database:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            created = True
            start = time.perf_counter()
            _fill(url, args.rows)
            console.print(f"filled {name} with {args.rows:,} bulk rows in {time.perf_counter() - start:.1f} s")
        os.environ["MATSTORE_DATABASE_URL"] = url
        os.environ.pop("MATSTORE_DASHBOARD_DATABASE_URL", None)
        get_settings.cache_clear()
        from matstore.dashboard import queries

        with queries.engine().connect() as conn:
            n = conn.execute(text("SELECT count(*) FROM bulk_property")).scalar_one()
        table = Table(title=f"dashboard on {n:,} bulk_property rows ({args.repeat} runs each)")
        for column in ("query / page", "median ms", "p95 ms", "rows"):
            table.add_column(column, justify="left" if column == "query / page" else "right")
        for label, fn in _query_cases(queries) + _page_cases(queries):
            median, p95, rows = _time(fn, args.repeat)
            table.add_row(label, f"{median:.1f}", f"{p95:.1f}", f"{rows:,}" if rows else "")
        console.print(table)
    finally:
        from matstore.db import get_engine

        get_engine(url).dispose() if created or args.database else None
        if created and not args.keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
