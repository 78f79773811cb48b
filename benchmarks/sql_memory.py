"""Peak memory of ``matstore sql`` against table size: streamed (server-side cursor) vs fetchall.

A throw-away database gets a table ``wide`` of N rows shaped like ``configuration`` (an id, a
300-element ``float8[]`` ~2.4 kB, a text column).  For each N, in a fresh child process each:

- ``matstore sql "SELECT * FROM wide"`` (default ``--limit 1000``, table output);
- ``matstore sql "SELECT * FROM wide" --csv --limit 0 > /dev/null`` (every row, streamed);
- the pre-issue-13 way, ``cursor.execute(...); cursor.fetchall()`` on the same reader URL.

Peak resident memory is the child's ``ru_maxrss``; wall time includes interpreter start-up
(~1.5 s for the CLI).  Run: ``python benchmarks/sql_memory.py --rows 20000 100000``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from _common import add_server_argument, console, print_machine, print_table, temp_database

_CHILD = """
import resource, subprocess, sys, time
t = time.perf_counter()
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - t)
"""

_FETCHALL = """
import sys, psycopg
from matstore.readers import libpq_url, reader_url
with psycopg.connect(libpq_url(reader_url())) as conn:
    rows = conn.execute("SELECT * FROM wide").fetchall()
print(len(rows))
"""


def _measure(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of ``command`` run in a fresh child."""
    out = subprocess.run([sys.executable, "-c", _CHILD, *command], capture_output=True, text=True, env=env, check=True)
    kib, seconds = out.stdout.split()
    return int(kib) / 1024, float(seconds)


def _fill(url: str, rows: int) -> None:
    import psycopg

    from matstore.readers import libpq_url

    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS wide")
        conn.execute("CREATE TABLE wide (id bigint PRIMARY KEY, positions float8[], label text)")
        conn.execute("INSERT INTO wide SELECT g, array_fill(g::float8 / 7, ARRAY[300]), md5(g::text) "
                     "FROM generate_series(1, %s) g", (rows,))
        conn.execute("GRANT SELECT ON wide TO matstore_reader")
        conn.execute("ANALYZE wide")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_server_argument(parser)
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 100_000])
    args = parser.parse_args()
    print_machine(args.server)
    results = []
    with temp_database(args.server, prefix="matstore_sqlmem", keep=args.keep) as url:
        env = {**os.environ, "MATSTORE_DATABASE_URL": url, "COLUMNS": "200"}
        cli = [sys.executable, "-m", "matstore", "sql", "SELECT * FROM wide"]
        for n in args.rows:
            start = time.perf_counter()
            _fill(url, n)
            console.print(f"filled {n:,} rows in {time.perf_counter() - start:.1f} s")
            for label, command in (("sql (limit 1000, table)", cli),
                                   ("sql --csv --limit 0 (all rows)", [*cli, "--csv", "--limit", "0"]),
                                   ("fetchall (before issue 13)", [sys.executable, "-c", _FETCHALL])):
                peak, seconds = _measure(command, env)
                results.append((f"{n:,}", label, f"{peak:.0f}", f"{seconds:.1f}"))
    print_table("matstore sql: peak memory vs table size", ("rows", "how", "peak RSS (MiB)", "wall (s)"), results,
                caption="each in a fresh child process; 2 shared CPU cores, timings noisy")


if __name__ == "__main__":
    main()
