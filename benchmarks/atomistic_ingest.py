"""Atomistic ingest and read-back: matstore vs ase.db (PostgreSQL) vs raw binary COPY.

One extxyz set (default 20,000 frames of 32–108 atoms: rattled and strained Cu, Ni and Pd
fcc supercells labelled with ASE's EMT energy, forces and stress) is generated once and cached
under ``$TMPDIR/matstore_bench/``.  Frames come in runs ("trajectories") of ``--block`` frames
of one element and supercell, the way MD or relaxation output does.  With the frames already
in memory the script times, in one run and on one server:

(a) matstore: :func:`matstore.ingest.copy.write_configurations` (content-hash de-duplication
    on) + commit, then :func:`~matstore.ingest.copy.read_configurations` into numpy; also a
    second write of the same frames (all duplicates);
(b) ASE's database on PostgreSQL (``ase.db.connect('postgresql://...')``, ase-db-backends):
    ``db.write`` of every frame inside one ``with db:`` transaction, then ``db.select()``
    reading ``row.numbers/positions/cell/pbc/energy/forces/stress``;
(c) a raw binary ``COPY`` of the same arrays as ``bytea`` into a plain table (no hashing, no
    constraints, no indexes) and a binary ``COPY ... TO STDOUT`` back into numpy: the ceiling;

and, separately, the end-to-end file ingest (:func:`matstore.ingest.structures.ingest_structure_file`,
what ``matstore ingest structures FILE`` runs: the ``extxyz`` package's C parser, streamed in
batches into one binary COPY) next to the parsers alone (ASE's extxyz reader and the C
parser), the export of the stored set (:func:`matstore.export.export_structures`, what
``matstore export structures OUT`` runs), and the peak resident memory of ``matstore ingest
structures`` on a generated file of about 1 GB next to one of about 0.1 GB (memory must not grow
with the file; the files are deleted afterwards).

Usage::

    python benchmarks/atomistic_ingest.py                  # 20,000 frames, 3 repeats
    python benchmarks/atomistic_ingest.py --frames 5000    # quick run
    python benchmarks/atomistic_ingest.py --skip ase raw --memory-gb 1   # file paths and memory only
    python benchmarks/atomistic_ingest.py --skip ase store file --cpu    # wall and CPU time of the four paths
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
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

ELEMENTS = {"Cu": 3.61, "Ni": 3.52, "Pd": 3.89}
REPEATS = ((2, 2, 2), (2, 2, 3), (2, 3, 3), (3, 3, 3))  # 32, 48, 72, 108 atoms


# --- data -------------------------------------------------------------------------------------

def _block(args: tuple[str, tuple[int, int, int], int, int]) -> list[Any]:
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    element, rep, count, seed = args
    rng = np.random.default_rng(seed)
    base = bulk(element, "fcc", a=ELEMENTS[element], cubic=True).repeat(rep)
    calc = EMT()
    out = []
    for _ in range(count):
        atoms = base.copy()
        strain = np.eye(3) + rng.uniform(-0.02, 0.02, (3, 3))
        atoms.set_cell((strain + strain.T) / 2 @ atoms.cell.array, scale_atoms=True)
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        atoms.calc = calc
        energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, stress=stress)
        out.append(atoms)
    return out


def dataset(frames: int, block: int, seed: int = 0) -> Path:
    """The cached extxyz file of ``frames`` frames (generated on first use, 2 processes)."""
    import ase.io

    cache = Path(tempfile.gettempdir()) / "matstore_bench"
    cache.mkdir(exist_ok=True)
    path = cache / f"emt_{frames}_b{block}_s{seed}.extxyz"
    if path.is_file():
        return path
    rng = np.random.default_rng(seed)
    jobs, left, k = [], frames, 0
    while left > 0:
        n = min(block, left)
        element = list(ELEMENTS)[rng.integers(len(ELEMENTS))]
        rep = REPEATS[rng.integers(len(REPEATS))]
        jobs.append((element, rep, n, seed * 1_000_003 + k))
        left -= n
        k += 1
    start = time.perf_counter()
    from multiprocessing import Pool

    with Pool(2) as pool:
        images = [a for chunk in pool.map(_block, jobs) for a in chunk]
    tmp = path.with_suffix(".tmp")
    ase.io.write(tmp, images, format="extxyz")
    tmp.rename(path)
    console.print(f"generated {frames:,} frames in {time.perf_counter() - start:.0f} s → {path}")
    return path


# --- (a) matstore -------------------------------------------------------------------------------

def bench_matstore(url: str, frames: list[dict[str, Any]], repeat: int) -> dict[str, Any]:
    import psycopg
    from sqlalchemy import create_engine
    from sqlmodel import Session

    from matstore import crud
    from matstore.ingest.copy import read_configurations, write_configurations

    engine = create_engine(url)
    with Session(engine) as s:
        source_id = crud.claim_source(session=s, kind="file", sha256="b" * 64, uri="bench://atomistic")
        method_id = crud.get_or_create_method(session=s, name="emt", kind="calculator")
        s.commit()
    run_id = crud.start_job_run(engine=engine, kind="benchmark", parameters={})
    engine.dispose()
    conn = psycopg.connect(libpq_url(url))

    def truncate() -> None:
        conn.execute("TRUNCATE configuration CASCADE")
        conn.commit()

    def write() -> int:
        n = write_configurations(conn, frames, source_id, run_id, method_id)
        conn.commit()
        return int(n)

    write_times, inserted = time_call(write, repeat, setup=truncate)
    assert inserted == len(frames), (inserted, len(frames))
    dup_times, again = time_call(write, repeat)
    assert again == 0
    read_times, arrays = time_call(lambda: read_configurations(conn, source_id=source_id), repeat)
    assert len(arrays["id"]) == len(frames)
    # Spot-check the round trip.
    last = frames[-1]
    a = int(arrays["offsets"][-2])
    np.testing.assert_array_equal(arrays["positions"][a:], last["positions"])
    np.testing.assert_array_equal(arrays["forces"][a:], last["forces"])
    assert arrays["energy"][-1] == last["energy"]
    conn.close()
    return {"write": write_times, "dup": dup_times, "read": read_times}


# --- (b) ase.db ----------------------------------------------------------------------------------

def bench_asedb(server: str, images: list[Any], repeat: int) -> dict[str, Any]:
    import ase.db

    writes, reads = [], []
    for _ in range(repeat):
        with temp_database(server, prefix="ase_bench", migrate=False) as url:
            db = ase.db.connect(libpq_url(url))
            start = time.perf_counter()
            with db:
                for atoms in images:
                    db.write(atoms)
            writes.append(time.perf_counter() - start)
            start = time.perf_counter()
            rows = []
            for row in db.select():
                rows.append((row.numbers, row.positions, row.cell, row.pbc, row.energy, row.forces, row.stress))
            reads.append(time.perf_counter() - start)
            assert len(rows) == len(images)
            del db
    return {"write": writes, "read": reads}


# --- (c) raw binary COPY -------------------------------------------------------------------------

_RAW_TYPES = ["int4", "bytea", "bytea", "bytea", "bytea", "float8", "bytea", "bytea"]


def bench_raw(url: str, frames: list[dict[str, Any]], repeat: int) -> dict[str, Any]:
    import psycopg

    conn = psycopg.connect(libpq_url(url))
    conn.execute(
        "CREATE TABLE raw_frames (n int4, numbers bytea, positions bytea, cell bytea, pbc bytea, "
        "energy float8, forces bytea, virial bytea)"
    )
    conn.commit()

    def truncate() -> None:
        conn.execute("TRUNCATE raw_frames")
        conn.commit()

    def write() -> None:
        with conn.cursor() as cur, cur.copy("COPY raw_frames FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_RAW_TYPES)
            for f in frames:
                copy.write_row((
                    len(f["numbers"]), np.asarray(f["numbers"], dtype=np.int16).tobytes(), f["positions"].tobytes(),
                    f["cell"].tobytes(), np.asarray(f["pbc"], dtype=bool).tobytes(), f["energy"],
                    f["forces"].tobytes(), f["virial"].tobytes(),
                ))
        conn.commit()

    def read() -> list[tuple]:
        out = []
        with conn.cursor() as cur, cur.copy("COPY raw_frames TO STDOUT (FORMAT BINARY)") as copy:
            copy.set_types(_RAW_TYPES)
            for n, numbers, positions, cell, pbc, energy, forces, virial in copy.rows():
                out.append((
                    np.frombuffer(numbers, dtype=np.int16), np.frombuffer(positions).reshape(n, 3),
                    np.frombuffer(cell).reshape(3, 3), np.frombuffer(pbc, dtype=bool), energy,
                    np.frombuffer(forces).reshape(n, 3), np.frombuffer(virial).reshape(3, 3),
                ))
        return out

    write_times, _ = time_call(write, repeat, setup=truncate)
    read_times, rows = time_call(read, repeat)
    assert len(rows) == len(frames)
    conn.close()
    return {"write": write_times, "read": read_times}


# --- end to end ----------------------------------------------------------------------------------

def bench_file(url: str, path: Path, repeat: int) -> dict[str, list[float]]:
    """End-to-end ingest of ``path``, the parsers alone, and the export of what was stored."""
    import ase.io
    from extxyz import cextxyz
    from sqlalchemy import create_engine, text

    from matstore.export import export_structures
    from matstore.ingest.structures import ingest_structure_file, read_frames

    out: dict[str, list[float]] = {}
    engine = create_engine(url)

    def reset() -> None:
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE configuration, source, job_run, method RESTART IDENTITY CASCADE"))

    out["ingest_structure_file (C parser + checks + de-dup + COPY)"], report = time_call(
        lambda: ingest_structure_file(path, engine=engine, method="emt", method_kind="calculator"), repeat, setup=reset)
    assert report.inserted == report.frames
    exported = path.with_name(path.stem + ".export.extxyz")
    out["export_structures (REF_ keys, shortest round-trip numbers)"], report = time_call(
        lambda: export_structures(exported, engine=engine), repeat)
    assert report.frames == len(read_frames(exported)) and report.with_virial == {"emt": report.frames}
    exported.unlink()
    engine.dispose()
    out["matstore read_frames (C parser + checks, no database)"], _ = time_call(lambda: read_frames(path), repeat)

    def c_parser_alone(use_cleri: bool) -> int:
        fp, n = cextxyz.cfopen(str(path), "r"), 0
        try:
            while True:
                cextxyz.read_frame_dicts(fp, use_cleri=use_cleri)
                n += 1
        except EOFError:
            return n
        finally:
            cextxyz.cfclose(fp)

    out["extxyz C parser alone, dispatch comment parser (as matstore reads)"], _ = time_call(lambda: c_parser_alone(False), repeat)
    out["extxyz C parser alone, libcleri grammar (the package's default)"], _ = time_call(lambda: c_parser_alone(True), repeat)
    out["ase.io.read(':') alone"], _ = time_call(lambda: ase.io.read(path, index=":", format="extxyz"), repeat)
    return out


# --- CPU time: client process and server backends ------------------------------------------------

def _backend_cpu(database: str) -> dict[str, float]:
    """CPU seconds (user + system) of each local process whose command line names ``database``
    (the PostgreSQL backends serving it; empty if the server runs elsewhere)."""
    import glob
    import os

    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for proc in glob.glob("/proc/[0-9]*"):
        try:
            with open(proc + "/cmdline", "rb") as handle:
                if database.encode() not in handle.read():
                    continue
            with open(proc + "/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            out[proc] = (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            continue
    return out


def bench_cpu(server: str, path: Path, frames: list[dict[str, Any]], repeat: int) -> list[list[str]]:
    """Wall time, client CPU and server CPU of write, read, file ingest and export (medians by wall)."""
    import psycopg
    from sqlalchemy import create_engine, text

    from matstore import crud
    from matstore.export import export_structures
    from matstore.ingest.copy import read_configurations, write_configurations
    from matstore.ingest.structures import ingest_structure_file

    rows = []
    with temp_database(server) as url:
        database = url.rsplit("/", 1)[1]
        engine = create_engine(url)
        conn = psycopg.connect(libpq_url(url))
        source_id = conn.execute("INSERT INTO source (kind, sha256, uri) VALUES ('file', repeat('c', 64), 'bench://cpu') RETURNING id").fetchone()[0]
        conn.commit()
        run_id = crud.start_job_run(engine=engine, kind="benchmark", parameters={})

        def truncate() -> None:
            conn.execute("TRUNCATE configuration CASCADE")
            conn.commit()

        def reset() -> None:
            with engine.begin() as c:
                c.execute(text("TRUNCATE configuration, source, job_run, method RESTART IDENTITY CASCADE"))

        exported = path.with_name(path.stem + ".cpu-export.extxyz")
        for label, fn, setup in (
            ("write_configurations + commit", lambda: (write_configurations(conn, frames, source_id, run_id), conn.commit()), truncate),
            ("read_configurations", lambda: read_configurations(conn, source_id=source_id), None),
            ("ingest_structure_file", lambda: ingest_structure_file(path, engine=engine, method="emt"), reset),
            ("export_structures", lambda: export_structures(exported, engine=engine), None),
        ):
            if label == "ingest_structure_file":
                conn.close()
            runs = []
            for _ in range(repeat):
                if setup is not None:
                    setup()
                before, cpu, start = _backend_cpu(database), time.process_time(), time.perf_counter()
                fn()
                wall, cpu = time.perf_counter() - start, time.process_time() - cpu
                server_cpu = sum(v - before.get(k, 0.0) for k, v in _backend_cpu(database).items())
                runs.append((wall, cpu, server_cpu))
            wall, cpu, server_cpu = sorted(runs)[len(runs) // 2]
            rows.append([label, f"{wall:.2f}", fmt_rate(len(frames) / wall), f"{cpu:.2f}", f"{server_cpu:.2f}"])
        exported.unlink(missing_ok=True)
        engine.dispose()
    return rows


# --- memory on a large file ------------------------------------------------------------------------

def write_large_file(path: Path, target_bytes: int, atoms: int = 64, seed: int = 0) -> int:
    """A synthetic labelled extxyz file of about ``target_bytes`` (distinct random frames); returns frames."""
    import orjson

    rng = np.random.default_rng(seed)
    frames = 0
    with open(path, "wb") as handle:
        while handle.tell() < target_bytes:
            block = []
            for _ in range(1000):
                positions = rng.uniform(0.0, 9.0, (atoms, 3))
                forces = rng.normal(0.0, 0.5, (atoms, 3))
                rows = orjson.dumps(np.hstack([positions, forces]), option=orjson.OPT_SERIALIZE_NUMPY)
                body = rows[2:-2].replace(b"],[", b"\nCu ").replace(b",", b" ")
                stress = " ".join(repr(v) for v in rng.normal(0.0, 0.01, 6).tolist())
                block.append(
                    b"%d\n" % atoms
                    + f'Lattice="9.0 0.0 0.0 0.0 9.0 0.0 0.0 0.0 9.0" Properties=species:S:1:pos:R:3:forces:R:3 '
                      f'energy={float(rng.normal(-200.0, 5.0))!r} stress="{stress}" pbc="T T T"\n'.encode()
                    + b"Cu " + body + b"\n"
                )
            handle.write(b"".join(block))
            frames += len(block)
    return frames


_RSS_SCRIPT = """
import resource, sys, time
from sqlalchemy import create_engine
from matstore.ingest.structures import ingest_structure_file
engine = create_engine(sys.argv[1])
start = time.perf_counter()
report = ingest_structure_file(sys.argv[2], engine=engine, method="synthetic")
print(report.frames, report.inserted, time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def bench_memory(server: str, sizes_gb: list[float]) -> list[list[str]]:
    """Peak RSS of a fresh ``ingest_structure_file`` process per file size (files deleted afterwards)."""
    import subprocess
    import sys

    rows = []
    cache = Path(tempfile.gettempdir()) / "matstore_bench"
    cache.mkdir(exist_ok=True)
    for size in sizes_gb:
        path = cache / f"synthetic_{size:g}GB.extxyz"
        try:
            frames = write_large_file(path, int(size * 1e9))
            with temp_database(server) as url:
                done = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, url, str(path)], capture_output=True, text=True, check=True)
            n, inserted, seconds, rss_kb = done.stdout.split()
            assert int(n) == frames == int(inserted), (n, frames, inserted)
            rows.append([f"{path.stat().st_size / 1e9:.2f} GB", f"{frames:,}", f"{int(rss_kb) / 1024:.0f}", f"{float(seconds):.0f}",
                         fmt_rate(frames / float(seconds))])
        finally:
            path.unlink(missing_ok=True)
    return rows


# --- main --------------------------------------------------------------------------------------

def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def store_section(args: argparse.Namespace, path: Path, frames: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """(a)–(c): write and read-back rates of frames already in memory; Markdown tables and target rows."""
    n = len(frames)
    n_atoms = sum(len(f["numbers"]) for f in frames)
    results: dict[str, dict[str, Any]] = {}
    with temp_database(args.server, keep=args.keep) as url:
        results["matstore"] = bench_matstore(url, frames, args.repeat)
        if "raw" not in args.skip:
            results["raw"] = bench_raw(url, frames, args.repeat)
    n_ase = min(args.ase_frames or n, n)
    if "ase" not in args.skip:
        import ase.io

        results["ase"] = bench_asedb(args.server, ase.io.read(path, index=f":{n_ase}", format="extxyz"), args.ase_repeat)

    def rate(key: str, what: str, count: int) -> float:
        return count / median(results[key][what])

    m_w, m_r = rate("matstore", "write", n), rate("matstore", "read", n)
    rows = [["matstore (COPY, sha256 de-dup)", fmt_rate(m_w), fmt_rate(m_r), "1.0×", "1.0×", f"{n:,}"]]
    rows.append(["matstore, all duplicates (second write)", fmt_rate(rate("matstore", "dup", n)), "", "", "", f"{n:,}"])
    if "ase" in results:
        a_w, a_r = rate("ase", "write", n_ase), rate("ase", "read", n_ase)
        rows.append(["ase.db PostgreSQL (ase-db-backends)", fmt_rate(a_w), fmt_rate(a_r), f"{m_w / a_w:.1f}× faster", f"{m_r / a_r:.1f}× faster", f"{n_ase:,}"])
    if "raw" in results:
        r_w, r_r = rate("raw", "write", n), rate("raw", "read", n)
        rows.append(["raw binary COPY of bytea (ceiling)", fmt_rate(r_w), fmt_rate(r_r), f"{m_w / r_w:.2f}× of it", f"{m_r / r_r:.2f}× of it", f"{n:,}"])
    columns = ["path", "write frames/s", "read frames/s", "matstore write vs", "matstore read vs", "frames"]
    print_table(f"atomistic ingest: {n:,} frames, {n_atoms / n:.0f} atoms/frame (medians of {args.repeat}; ase.db {args.ase_repeat})", columns, rows)
    targets = [
        ["write ≥ 25,000 frames/s (de-dup on)", fmt_rate(m_w), verdict(m_w >= 25_000)],
        ["read back ≥ 25,000 frames/s into numpy", fmt_rate(m_r), verdict(m_r >= 25_000)],
    ]
    return [markdown_table(columns, rows)], targets


def file_section(args: argparse.Namespace, path: Path, n: int) -> tuple[list[str], list[list[str]]]:
    """End-to-end ingest, parsers alone and export of ``path``; Markdown table and target rows."""
    with temp_database(args.server, keep=args.keep) as url:
        times = bench_file(url, path, args.file_repeat)
    rows = [[label, f"{median(t):.2f}", fmt_rate(n / median(t))] for label, t in times.items()]
    print_table(f"file ingest and export of {path.name} ({n:,} frames, median of {args.file_repeat})", ["step", "seconds", "frames/s"], rows)
    e2e, export, ase_alone = (n / median(v) for k, v in times.items() if k.startswith(("ingest_structure_file", "export_structures", "ase.io")))
    targets = [
        ["end-to-end file ingest ≥ 10,000 frames/s", fmt_rate(e2e), verdict(e2e >= 10_000)],
        ["end-to-end file ingest ≥ 2.5× ase.io.read alone", f"{e2e / ase_alone:.1f}×", verdict(e2e >= 2.5 * ase_alone)],
        ["export ≥ 10,000 frames/s", fmt_rate(export), verdict(export >= 10_000)],
    ]
    return [markdown_table(["step", "seconds", "frames/s"], rows)], targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_argument(parser)
    parser.add_argument("--frames", type=int, default=20_000, help="frames in the extxyz set (default %(default)s)")
    parser.add_argument("--block", type=int, default=250, help="frames per run of one element and size (default %(default)s)")
    parser.add_argument("--ase-frames", type=int, default=None, help="frames written to ase.db (default: all; it is slow)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats of each matstore/raw measurement (median reported)")
    parser.add_argument("--ase-repeat", type=int, default=1, help="repeats of the ase.db measurement")
    parser.add_argument("--file-repeat", type=int, default=1, help="repeats of the end-to-end file measurements")
    parser.add_argument("--skip", nargs="*", default=[], choices=["ase", "raw", "file", "store"], help="parts to leave out")
    parser.add_argument("--cpu", action="store_true", help="also time write, read, file ingest and export with client and server CPU")
    parser.add_argument("--memory-gb", type=float, nargs="*", default=[], help="peak RSS of ingest on generated files of these sizes (GB), e.g. 0.1 1")
    parser.add_argument("--markdown", action="store_true", help="also print the tables as Markdown")
    args = parser.parse_args()

    print_machine(args.server)
    path = dataset(args.frames, args.block)
    from matstore.ingest.structures import read_frames

    frames = read_frames(path)
    n_atoms = sum(len(f["numbers"]) for f in frames)
    console.print(f"{len(frames):,} frames, {n_atoms:,} atoms ({n_atoms / len(frames):.1f} per frame), {path.stat().st_size / 1e6:.0f} MB extxyz")
    md: list[str] = []
    targets: list[list[str]] = []
    for part, section in (("store", store_section), ("file", file_section)):
        if part not in args.skip:
            tables, rows = section(args, path, frames if part == "store" else len(frames))
            md += tables
            targets += rows
    if args.cpu:
        columns = ["path", "seconds", "frames/s", "client CPU s", "server CPU s"]
        rows = bench_cpu(args.server, path, frames, args.repeat)
        print_table(f"wall and CPU time (median of {args.repeat} by wall; server = the benchmark database's backends)", columns, rows)
        md.append(markdown_table(columns, rows))
    if args.memory_gb:
        columns = ["file", "frames", "peak RSS (MiB)", "seconds", "frames/s"]
        rows = bench_memory(args.server, args.memory_gb)
        print_table("peak resident memory of a fresh ingest process (distinct synthetic 64-atom frames)", columns, rows)
        md.append(markdown_table(columns, rows))
    if targets:
        print_table("targets (issue 16)", ["target", "measured", "verdict"], targets)
        md.append(markdown_table(["target", "measured", "verdict"], targets))
    if args.markdown:
        print("\n\n".join(md))


if __name__ == "__main__":
    main()
