"""Property-table ingest: values/s through ``ingest_table`` for bulk and per-configuration tables.

Two generated CSVs of N rows (``--rows``, default 2,000 and 10,000) × 20 properties, each with
its mapping YAML (values inside the plausibility bounds; surface energies in eV/Å² so that
pint converts them):

- **bulk**: one row per potential × element (4 elements per potential), 20 bulk definitions;
- **per-configuration**: one row per configuration of MoS2 by one method, keyed by an ``_id``
  column (``key: {column: _id}``), 20 user definitions of scope ``configuration`` (added
  with :func:`matstore.crud.add_definition`), as in a published defect table.

Timed for each: ``ingest_table`` end to end (what ``matstore ingest table FILE -m MAPPING``
runs: read, parse, convert and validate every cell, claim the source, resolve materials,
methods and configurations in bulk, binary COPY straight into the property table, since a
newly claimed source cannot conflict with stored values), and its parse-only part
(``read_table`` + ``parse_values``).  For the bulk table also the store step alone, both for a
new source (the COPY above) and for a stored one (binary COPY into a staging table and one
``INSERT … ON CONFLICT DO NOTHING``), and, for reference, a plain binary COPY of the same rows
into ``bulk_property`` (its references checked once per statement by triggers, alembic
revision 0013) and into a twin of it without any reference check (same columns, checks and
indexes): the ceiling for this table, and what its reference checks cost.
``--executemany`` also times the former ``INSERT … VALUES`` path
(:func:`matstore.crud.add_bulk_properties`); ``--foreign-keys`` times ``ingest_table`` on a
second throw-away database downgraded to revision 0012, whose property tables still check
their references with one foreign key each, row by row (:func:`bench_foreign_keys`), to compare
the two designs in one run.  Every timed run starts from empty property tables; end-to-end runs
also report CPU seconds of the client and of the server processes (server on this host only).

Usage::

    python benchmarks/property_ingest.py --rows 2000 10000 --repeat 3 [--foreign-keys]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from _common import (
    add_server_argument,
    console,
    fmt_rate,
    libpq_url,
    markdown_table,
    median,
    print_machine,
    print_table,
    temp_database,
    time_call,
)

#: (definition, column unit, low, high) of the 20 generated columns; values are drawn in [low, high].
PROPERTIES = (
    ("lattice_constant", "angstrom", 3.0, 4.5),
    ("cohesive_energy", "eV", 2.0, 6.0),
    ("c11", "GPa", 100.0, 300.0),
    ("c12", "GPa", 60.0, 200.0),
    ("c44", "GPa", 30.0, 130.0),
    ("bulk_modulus", "GPa", 80.0, 250.0),
    ("shear_modulus_prime", "GPa", 10.0, 80.0),
    ("shear_modulus_c44", "GPa", 30.0, 130.0),
    ("zener_ratio", "dimensionless", 0.5, 4.0),
    ("stacking_fault_energy", "J/m^2", 0.01, 0.3),
    ("extrinsic_stacking_fault_energy", "J/m^2", 0.01, 0.3),
    ("unstable_stacking_fault_energy", "J/m^2", 0.1, 0.6),
    ("unstable_twinning_energy", "J/m^2", 0.1, 0.7),
    ("vacancy_formation_energy", "eV", 0.5, 2.0),
    ("vacancy_migration_energy", "eV", 0.3, 1.2),
    ("surface_energy_100", "eV/angstrom^2", 0.05, 0.15),
    ("surface_energy_110", "eV/angstrom^2", 0.05, 0.15),
    ("surface_energy_111", "eV/angstrom^2", 0.05, 0.15),
    ("surface_energy_121", "eV/angstrom^2", 0.05, 0.15),
    ("strength", "MPa", 200.0, 3000.0),
)
ELEMENTS = ("Ag", "Al", "Au", "Cu", "Ni", "Pd", "Pt", "Pb", "Rh", "Ir")
PER_POTENTIAL = 4


def _cached(stem: str) -> tuple[Path, Path]:
    """Paths of a generated table and its mapping in the temp directory (``stem``.csv, ``stem``.yaml)."""
    cache = Path(tempfile.gettempdir()) / "matstore_bench"
    cache.mkdir(exist_ok=True)
    return cache / f"{stem}.csv", cache / f"{stem}.yaml"


def make_table(rows: int, seed: int = 0) -> tuple[Path, Path]:
    """A wide CSV with ``rows`` rows and its mapping YAML, cached in the temp directory."""
    path, mapping = _cached(f"properties_{rows}_s{seed}")
    if path.is_file() and mapping.is_file():
        return path, mapping
    rng = np.random.default_rng(seed)
    lows = np.array([p[2] for p in PROPERTIES])
    highs = np.array([p[3] for p in PROPERTIES])
    values = lows + (highs - lows) * rng.random((rows, len(PROPERTIES)))
    columns = [f"{name}__{unit.replace('/', '_per_').replace('^', '')}" for name, unit, *_ in PROPERTIES]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["potential", "element", *columns])
        for i in range(rows):
            p = i // PER_POTENTIAL
            element = ELEMENTS[(i % PER_POTENTIAL + p) % len(ELEMENTS)]
            writer.writerow([f"EAM_Bench_{p:06d}", element, *(f"{v:.6g}" for v in values[i])])
    spec = {
        "name": f"bench_{rows}",
        "format": "csv",
        "material": {"column": "element", "prototype": "fcc"},
        "method": {"column": "potential", "kind": "interatomic_potential"},
        "source": {"description": "generated benchmark table", "license": "CC0-1.0"},
        "columns": {col: {"definition": name, "unit": unit} for col, (name, unit, *_) in zip(columns, PROPERTIES, strict=True)},
    }
    mapping.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path, mapping


def make_configuration_table(rows: int, seed: int = 0) -> tuple[Path, Path]:
    """A keyed per-configuration CSV with ``rows`` rows × 20 descriptor columns and its mapping."""
    path, mapping = _cached(f"configurations_{rows}_s{seed}")
    if path.is_file() and mapping.is_file():
        return path, mapping
    values = np.random.default_rng(seed).uniform(1.0, 12.0, size=(rows, len(CONFIGURATION_PROPERTIES)))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["_id", *CONFIGURATION_PROPERTIES])
        for i in range(rows):
            writer.writerow([f"cfg{i:07d}", *(f"{v:.6g}" for v in values[i])])
    spec = {
        "name": f"bench_configurations_{rows}",
        "material": {"formula": "MoS2", "prototype": "2H"},
        "method": {"name": "DFT-PBE (bench)", "kind": "dft"},
        "key": {"column": "_id"},
        "columns": {name: {"definition": name, "unit": unit} for name, unit in CONFIGURATION_PROPERTIES.items()},
    }
    mapping.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path, mapping


#: The per-configuration table's user definitions: a formation energy and 19 distances.
CONFIGURATION_PROPERTIES = {"e_formation_bench": "eV"} | {f"d_bench_{k:02d}": "angstrom" for k in range(1, 20)}


def _reset(engine: Any) -> None:
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("TRUNCATE bulk_property, surface_property, configuration_property, material_configuration, "
                          "surface, material, method, source, job_run RESTART IDENTITY CASCADE"))


def _backend_cpu(url: str) -> dict[int, float]:
    """CPU seconds (user + system) so far of every server process connected to the database of ``url``.

    Read from ``/proc/PID/stat``, so only for a server on this host; empty otherwise.
    """
    import os

    import psycopg

    with psycopg.connect(libpq_url(url)) as conn:
        me = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")]
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if pid != me:
            out[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def _time_ingest(engine: Any, path: Path, mapping: Path, repeat: int) -> dict[str, Any]:
    """End-to-end times (wall, and CPU of client and server) and parse-only times of one table.

    Each end-to-end run starts on an emptied store.  The CPU seconds do not depend on what
    else runs on the machine as much as the wall time does: client (this process) plus the
    server processes of the benchmark database (``/proc``, a server on this host only).
    """
    from matstore.ingest.table import (
        TableReport,
        add_derived_columns,
        ingest_table,
        load_mapping,
        parse_values,
        read_table,
        store_vocabulary,
    )

    url = engine.url.render_as_string(hide_password=False)
    out: dict[str, Any] = {"ingest": [], "ingest_cpu": []}
    for _ in range(repeat):
        _reset(engine)
        server, client, start = _backend_cpu(url), time.process_time(), time.perf_counter()
        report = ingest_table(path, mapping, engine=engine)
        out["ingest"].append(time.perf_counter() - start)
        client = time.process_time() - client
        out["ingest_cpu"].append(client + sum(t - server.get(pid, 0.0) for pid, t in _backend_cpu(url).items()))
    assert report.inserted == report.values, (report.inserted, report.values)
    out["values"], out["rows"] = report.values, report.rows
    parsed = load_mapping(mapping, vocabulary=store_vocabulary(engine))

    def parse() -> list[Any]:
        table = add_derived_columns(read_table(path, parsed), parsed, path=path)
        return parse_values(path, parsed, table, TableReport(path=str(path), sha256="", mapping=""))

    out["parse"], out["parsed"] = time_call(parse, repeat)
    return out


def bench(url: str, path: Path, mapping: Path, repeat: int, *, executemany: bool = False) -> dict[str, Any]:
    """Bulk table: end to end, parse only, store only (both COPY paths), plain COPYs with and without reference checks."""
    from sqlalchemy import create_engine, text
    from sqlmodel import Session

    from matstore import crud
    from matstore.ingest.property_copy import copy_rows, json_text
    from matstore.ingest.storing import store_values
    from matstore.ingest.table_report import TableReport

    engine = create_engine(url)
    out = _time_ingest(engine, path, mapping, repeat)
    values = out.pop("parsed")
    with Session(engine) as s:
        source_id = crud.claim_source(session=s, kind="file", sha256="c" * 64, uri="bench://bulk")
        s.commit()
    run_id = crud.start_job_run(engine=engine, kind="benchmark", parameters={})
    with engine.begin() as conn:  # the reference twin: bulk_property's columns, checks and indexes, no reference checks
        conn.execute(text("CREATE TABLE bench_bulk_property_nofk (LIKE bulk_property INCLUDING ALL)"))

    def clear_bench_rows() -> None:
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE bulk_property, bench_bulk_property_nofk"))  # every run into empty tables, as ingest's

    def store(new_source: bool) -> int:
        report = TableReport(path=str(path), sha256="", mapping="")
        with Session(engine) as s:
            store_values(s, values, report, source_id=source_id, job_run_id=run_id, new_source=new_source)
            s.commit()
        return report.inserted

    for key, new_source in (("store_new", True), ("store", False)):
        out[key], n = time_call(lambda new_source=new_source: store(new_source), repeat, setup=clear_bench_rows)
        assert n == len(values)
    with Session(engine) as s:
        defs = {name: d.id for name, d in crud.definitions(session=s).items()}
        mats = dict(s.execute(text("SELECT formula, id FROM material")).all())
        meths = dict(s.execute(text("SELECT name, id FROM method")).all())
    rows = [
        {"material_id": mats[v.formula], "method_id": meths[v.method], "definition_id": defs[v.entry.definition],
         "value": v.value, "uncertainty": None, "flag": None, "source_id": source_id, "job_run_id": run_id,
         "details": {"column": v.column, "row": v.row, "line": v.line, "raw": v.raw, "unit": v.entry.unit}}
        for v in values
    ]
    if executemany:
        def insert() -> int:
            with Session(engine) as s:
                n = sum(crud.add_bulk_properties(session=s, rows=rows[a:a + 2000]) for a in range(0, len(rows), 2000))
                s.commit()
            return n

        out["insert"], n = time_call(insert, repeat, setup=clear_bench_rows)
        assert n == len(rows)
    columns = ("material_id", "method_id", "definition_id", "value", "source_id", "job_run_id", "details")
    tuples = [(*(r[c] for c in columns[:-1]), json_text(r["details"])) for r in rows]

    def copy(table: str) -> int:
        with Session(engine) as s:
            n = copy_rows(s, table, columns, tuples)
            s.commit()
        return n

    for key, table in (("copy", "bulk_property"), ("copy_nofk", "bench_bulk_property_nofk")):
        out[key], n = time_call(lambda table=table: copy(table), repeat, setup=clear_bench_rows)
        assert n == len(rows)
    engine.dispose()
    return out


def bench_configurations(url: str, path: Path, mapping: Path, repeat: int) -> dict[str, Any]:
    """Per-configuration table: end to end and parse only."""
    from sqlalchemy import create_engine

    engine = create_engine(url)
    _add_configuration_definitions(engine)
    out = _time_ingest(engine, path, mapping, repeat)
    out.pop("parsed")
    engine.dispose()
    return out


def _add_configuration_definitions(engine: Any) -> None:
    """The per-configuration table's user definitions (:data:`CONFIGURATION_PROPERTIES`)."""
    from sqlmodel import Session

    from matstore import crud

    run_id = crud.start_job_run(engine=engine, kind="benchmark", parameters={})
    with Session(engine) as s:
        for name, unit in CONFIGURATION_PROPERTIES.items():
            crud.add_definition(session=s, name=name, unit=unit, scope="configuration", job_run_id=run_id)
        s.commit()


def bench_foreign_keys(url: str, n_rows: int, repeat: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """End-to-end times of both tables on ``url`` downgraded to revision 0012 (per-row foreign keys).

    Revision 0013 replaced the property tables' foreign keys by statement-level reference checks;
    its ``downgrade`` restores the foreign keys, so the same code runs against the former schema.
    """
    from sqlalchemy import create_engine

    from matstore import migrations

    migrations.downgrade(url, "0012")
    engine = create_engine(url)
    _add_configuration_definitions(engine)
    bulk = _time_ingest(engine, *make_table(n_rows), repeat)
    per_config = _time_ingest(engine, *make_configuration_table(n_rows), repeat)
    engine.dispose()
    return bulk, per_config


STEPS = (("ingest_table (end to end)", "ingest"), ("  read + parse + convert + validate only", "parse"),
         ("  store only, new source (bulk resolve + binary COPY into the table)", "store_new"),
         ("  store only, stored source (binary COPY to staging + INSERT … ON CONFLICT)", "store"),
         ("crud.add_bulk_properties (executemany INSERT, --executemany)", "insert"),
         ("binary COPY into bulk_property (reference)", "copy"),
         ("binary COPY into bulk_property without reference checks (reference)", "copy_nofk"),
         ("former: ingest_table with per-row foreign keys (revision 0012, --foreign-keys)", "foreign_keys"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_argument(parser)
    parser.add_argument("--rows", type=int, nargs="+", default=[2_000, 10_000], help="table sizes (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    parser.add_argument("--executemany", action="store_true", help="also time the former executemany INSERT path (slow)")
    parser.add_argument("--foreign-keys", action="store_true",
                        help="also time ingest_table with the former per-row foreign keys "
                             "(a throw-away database downgraded to revision 0012; see bench_foreign_keys)")
    args = parser.parse_args()
    print_machine(args.server)
    table_rows = []
    for n_rows in args.rows:
        start = time.perf_counter()
        with temp_database(args.server, keep=args.keep) as url:
            bulk = bench(url, *make_table(n_rows), args.repeat, executemany=args.executemany)
            per_config = bench_configurations(url, *make_configuration_table(n_rows), args.repeat)
        if args.foreign_keys:
            with temp_database(args.server, keep=args.keep) as url:
                for into, result in zip((bulk, per_config), bench_foreign_keys(url, n_rows, args.repeat), strict=True):
                    into["foreign_keys"], into["foreign_keys_cpu"] = result["ingest"], result["ingest_cpu"]
        console.print(f"{n_rows:,} rows done in {time.perf_counter() - start:.0f} s")
        for kind, r in (("bulk", bulk), ("per-configuration", per_config)):
            table_rows += _rows(f"{kind}, {n_rows:,} rows × 20", r)
    columns = ["table", "step", "seconds", "CPU s (client + server)", "rows/s", "values/s"]
    print_table(f"property-table ingest (medians of {args.repeat}; 2 shared cores, noisy)", columns, table_rows)
    if args.markdown:
        print(markdown_table(columns, table_rows))


def _rows(label: str, r: dict[str, Any]) -> list[list[str]]:
    """Table rows of one result dict (medians)."""
    rows = []
    for step, key in STEPS:
        if key not in r:
            continue
        t = median(r[key])
        cpu = f"{median(r[key + '_cpu']):.2f}" if key + "_cpu" in r else ""
        rows.append([label, step, f"{t:.2f}", cpu, fmt_rate(r["rows"] / t) if key in ("ingest", "parse", "foreign_keys") else "",
                     fmt_rate(r["values"] / t)])
    return rows


if __name__ == "__main__":
    main()
