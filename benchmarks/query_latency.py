"""Latency of the SQL views and the dashboard's queries on a store with 10^6 property rows.

The store is built by ``benchmarks/dashboard_queries.py``'s ``_fill`` (migrations, the dashboard
test store, and ``--rows`` bulk values from ``generate_series``: 40 materials × 250 methods ×
21 properties × 5 sources), plus ``--surface-rows`` surface values (40 materials × 13
orientations up to index 3 × methods × the 10 surface properties) and ``--prediction-rows``
rows of one equation version (``bench_model``).  Then, each ``--repeat`` times:

- typical queries on the views ``bulk_properties_wide``, ``surface_properties_wide``,
  ``property_values`` and ``model_predictions``;
- every query of :mod:`matstore.dashboard.queries` (the uncached functions, exactly the cases of
  ``dashboard_queries.py``).

``--experiments`` then adds candidate indexes (in this throw-away database only, never in the
schema) and re-times the view queries, printing before/after.

Usage::

    python benchmarks/query_latency.py --rows 1000000 --repeat 7 --experiments
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from _common import (
    add_server_argument,
    console,
    markdown_table,
    print_machine,
    print_table,
    temp_database,
)
from sqlalchemy import create_engine, text

#: (label, SQL) of the view queries; :name placeholders are filled from ``_params``.
VIEW_QUERIES: tuple[tuple[str, str], ...] = (
    ("bulk_properties_wide: all rows", "SELECT * FROM bulk_properties_wide"),
    ("bulk_properties_wide: material = 'Fe'", "SELECT * FROM bulk_properties_wide WHERE material = 'Fe'"),
    ("bulk_properties_wide: method = one potential", "SELECT * FROM bulk_properties_wide WHERE method = :method"),
    ("bulk_properties_wide: material + method", "SELECT * FROM bulk_properties_wide WHERE material = 'Fe' AND method = :method"),
    ("surface_properties_wide: all rows", "SELECT * FROM surface_properties_wide"),
    ("surface_properties_wide: material = 'Fe'", "SELECT * FROM surface_properties_wide WHERE material = 'Fe'"),
    ("surface_properties_wide: material + method + (111)",
     "SELECT * FROM surface_properties_wide WHERE material = 'Fe' AND method = :method "
     "AND miller_h = 1 AND miller_k = 1 AND miller_l = 1"),
    ("property_values: material + property", "SELECT * FROM property_values WHERE material = 'Fe' AND property = 'c44'"),
    ("property_values: method = one potential", "SELECT * FROM property_values WHERE method = :method"),
    ("property_values: one value by id", "SELECT * FROM property_values WHERE scope = 'bulk' AND value_id = :value_id"),
    ("property_values: newest 100", "SELECT * FROM property_values ORDER BY created_at DESC LIMIT 100"),
    ("property_values: property, count(*)", "SELECT count(*) FROM property_values WHERE property = 'strength'"),
    ("property_values: one source, first 1000", "SELECT * FROM property_values WHERE source_sha256 = :sha LIMIT 1000"),
    ("model_predictions: model (all rows)", "SELECT * FROM model_predictions WHERE model = 'bench_model'"),
    ("model_predictions: model + version + material",
     "SELECT * FROM model_predictions WHERE model = 'bench_model' AND version = 1 AND material = 'Fe'"),
    ("model_predictions: fixture model", "SELECT * FROM model_predictions WHERE model = :fixture_model"),
)

#: Candidate indexes tried with ``--experiments`` (name, DDL).
EXPERIMENTS: tuple[tuple[str, str], ...] = (
    ("bulk_property (created_at DESC, id DESC)",
     "CREATE INDEX bench_bulk_created ON bulk_property (created_at DESC, id DESC)"),
    ("surface_property (created_at DESC, id DESC)",
     "CREATE INDEX bench_surface_created ON surface_property (created_at DESC, id DESC)"),
    ("equation_prediction (version_id, material_id)",
     "CREATE INDEX bench_prediction_version_material ON equation_prediction (version_id, material_id)"),
    ("equation_alias (version_id)", "CREATE INDEX bench_alias_version ON equation_alias (version_id)"),
)


def _fill_extra(url: str, surface_rows: int, prediction_rows: int) -> None:
    from sqlmodel import Session

    from matstore import crud
    from matstore.orientation import distinct_miller_indices, from_miller

    engine = create_engine(url)
    with Session(engine) as s:
        mats = [r[0] for r in s.execute(text("SELECT id FROM material WHERE prototype = 'bcc' ORDER BY id"))]
        for mat in mats:
            for miller in distinct_miller_indices(3):
                crud.get_or_create_surface(session=s, material_id=mat, orientation=from_miller(*miller))
        s.commit()
    per_method = len(mats) * len(distinct_miller_indices(3)) * 10
    n_methods = max(1, -(-surface_rows // per_method))
    with engine.begin() as conn:
        conn.execute(text(
            """
            WITH d AS (SELECT array_agg(id ORDER BY name) AS ids FROM property_definition WHERE scope = 'surface'),
                 me AS (SELECT array_agg(id ORDER BY id) AS ids FROM (SELECT id FROM method WHERE name LIKE 'bench\\_%'
                        ORDER BY id LIMIT :nme) x),
                 su AS (SELECT array_agg(s.id ORDER BY s.id) AS ids FROM surface s JOIN material m ON m.id = s.material_id
                        WHERE m.prototype = 'bcc'),
                 src AS (SELECT min(id) AS id FROM source WHERE uri LIKE 'bench://%'),
                 j AS (SELECT min(id) AS id FROM job_run),
                 k AS (SELECT cardinality(d.ids) AS nd, cardinality(me.ids) AS nme, cardinality(su.ids) AS nsu FROM d, me, su)
            INSERT INTO surface_property (surface_id, method_id, definition_id, value, source_id, job_run_id)
            SELECT su.ids[1 + (i / (k.nd * k.nme)) % k.nsu], me.ids[1 + (i / k.nd) % k.nme], d.ids[1 + i % k.nd],
                   random(), src.id, j.id
            FROM generate_series(0, CAST(:rows AS int) - 1) AS i, d, me, su, src, j, k
            """), {"nme": n_methods, "rows": min(surface_rows, per_method * n_methods)})
        version = conn.execute(text("SELECT max(id) FROM equation_version")).scalar_one()
        model = conn.execute(text(
            "INSERT INTO equation_model (name, target, target_unit, spec) "
            "SELECT 'bench_model', em.target, em.target_unit, em.spec FROM equation_model em "
            "JOIN equation_version v ON v.model_id = em.id WHERE v.id = :v RETURNING id"), {"v": version}).scalar_one()
        columns = [c for c in conn.execute(text(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'equation_version' "
            "AND column_name NOT IN ('id', 'model_id', 'version', 'parent_id', 'created_at') ORDER BY ordinal_position"
        )).scalars()]
        new_version = conn.execute(text(
            f"INSERT INTO equation_version (model_id, version, {', '.join(columns)}) "
            f"SELECT :m, 1, {', '.join(columns)} FROM equation_version WHERE id = :v RETURNING id"),
            {"m": model, "v": version}).scalar_one()
        conn.execute(text("INSERT INTO equation_alias (model_id, alias, version_id) VALUES (:m, 'production', :v)"),
                     {"m": model, "v": new_version})
        conn.execute(text(
            """
            WITH me AS (SELECT array_agg(id ORDER BY id) AS ids FROM method WHERE name LIKE 'bench\\_%'),
                 su AS (SELECT array_agg(s.id ORDER BY s.id) AS ids, array_agg(s.material_id ORDER BY s.id) AS mids
                        FROM surface s JOIN material m ON m.id = s.material_id WHERE m.prototype = 'bcc')
            INSERT INTO equation_prediction (version_id, material_id, method_id, surface_id, observed, predicted, cv_predicted)
            SELECT :v, su.mids[1 + i % cardinality(su.ids)], me.ids[1 + (i / cardinality(su.ids)) % cardinality(me.ids)],
                   su.ids[1 + i % cardinality(su.ids)], random(), random(), random()
            FROM generate_series(0, CAST(:rows AS int) - 1) AS i, me, su
            """), {"v": new_version, "rows": prediction_rows})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()


def _view_cases(url: str) -> list[tuple[str, Callable[[], object]]]:
    from matstore.db import read_only_connection

    engine = create_engine(url)
    with engine.connect() as conn:
        params = {
            "method": "bench_potential_7",
            "value_id": conn.execute(text("SELECT max(id) FROM bulk_property")).scalar_one(),
            "sha": conn.execute(text("SELECT sha256 FROM source WHERE uri = 'bench://source/3'")).scalar_one(),
            "fixture_model": conn.execute(text("SELECT name FROM equation_model WHERE name <> 'bench_model' LIMIT 1")).scalar_one(),
        }

    def case(sql: str) -> Callable[[], object]:
        def run() -> list:
            with read_only_connection(engine, timeout_ms=600_000) as conn:
                return conn.execute(text(sql), {k: v for k, v in params.items() if f":{k}" in sql}).fetchall()
        return run

    return [(label, case(sql)) for label, sql in VIEW_QUERIES]


def _run(cases: list[tuple[str, Callable[[], object]]], repeat: int) -> dict[str, tuple[float, float, int]]:
    from dashboard_queries import _time

    out = {}
    for label, fn in cases:
        fn()  # warm the cache once, as a browsing user would
        out[label] = _time(fn, repeat)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_argument(parser)
    parser.add_argument("--rows", type=int, default=1_000_000, help="bulk property rows (default %(default)s)")
    parser.add_argument("--surface-rows", type=int, default=200_000, help="surface property rows (default %(default)s)")
    parser.add_argument("--prediction-rows", type=int, default=100_000, help="equation_prediction rows (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--experiments", action="store_true", help="also time the candidate indexes (before/after)")
    parser.add_argument("--skip-dashboard", action="store_true", help="time the views only")
    parser.add_argument("--markdown", action="store_true", help="also print the tables as Markdown")
    args = parser.parse_args()

    import logging

    logging.getLogger("streamlit").setLevel(logging.ERROR)
    from dashboard_queries import _fill, _query_cases

    from matstore.config import get_settings

    print_machine(args.server)
    md = []
    with temp_database(args.server, migrate=False, keep=args.keep) as url:
        start = time.perf_counter()
        _fill(url, args.rows)  # migrates, too
        _fill_extra(url, args.surface_rows, args.prediction_rows)
        engine = create_engine(url)
        with engine.connect() as conn:
            counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                      for t in ("bulk_property", "surface_property", "equation_prediction")}
        engine.dispose()
        console.print(f"filled in {time.perf_counter() - start:.0f} s: "
                      + ", ".join(f"{v:,} {k}" for k, v in counts.items()))
        columns = ["query", "median ms", "p95 ms", "rows"]

        views = _run(_view_cases(url), args.repeat)
        rows = [[label, f"{m:.1f}", f"{p:.1f}", f"{n:,}"] for label, (m, p, n) in views.items()]
        print_table(f"views ({args.repeat} runs each, after one warm-up)", columns, rows)
        md.append(markdown_table(columns, rows))

        if not args.skip_dashboard:
            os.environ["MATSTORE_DATABASE_URL"] = url
            os.environ.pop("MATSTORE_DASHBOARD_DATABASE_URL", None)
            get_settings.cache_clear()
            from matstore.dashboard import queries

            for name in ("streamlit", "streamlit.runtime.caching.cache_data_api"):
                logging.getLogger(name).setLevel(logging.ERROR)

            dash = _run(_query_cases(queries), args.repeat)
            rows = [[label, f"{m:.1f}", f"{p:.1f}", f"{n:,}"] for label, (m, p, n) in dash.items()]
            print_table(f"dashboard queries (matstore.dashboard.queries, uncached, {args.repeat} runs each)", columns, rows)
            md.append(markdown_table(columns, rows))

        if args.experiments:
            engine = create_engine(url)
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                for _, ddl in EXPERIMENTS:
                    conn.execute(text(ddl))
                conn.execute(text("ANALYZE"))
            engine.dispose()
            after = _run(_view_cases(url), args.repeat)
            rows = [[label, f"{views[label][0]:.1f}", f"{after[label][0]:.1f}", f"{views[label][0] / after[label][0]:.1f}×"]
                    for label in views]
            print_table("views before/after candidate indexes: " + "; ".join(name for name, _ in EXPERIMENTS),
                        ["query", "before median ms", "after median ms", "speed-up"], rows)
            md.append(markdown_table(["query", "before median ms", "after median ms", "speed-up"], rows))
    if args.markdown:
        print("\n\n".join(md))


if __name__ == "__main__":
    main()
