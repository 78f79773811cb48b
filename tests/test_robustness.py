"""Robustness: more bad inputs, kill -9 in the middle of an ingest, concurrent ingests and refits.

Bad inputs (``tests/data/bad/extra/`` plus the corpus of ``test_ingest_bad_inputs.py``): each
raises a typed :class:`~matstore.ingest.errors.IngestError` naming the file and line/row, the CLI
prints it as one line, and **every** table of the schema is byte-for-byte unchanged (md5 of all
rows), with one documented exception: ``job_run`` gains exactly one row, status ``failed``, that
records the error (existing job_run rows are unchanged).

Crash safety: ``matstore ingest structures BIG.extxyz`` is killed with SIGKILL while it parses
and while its ``COPY`` streams; the store then holds nothing of that source, and a rerun stores
every frame once.  The killed runs' ``job_run`` rows stay ``running`` until the next job on the
same host starts, which marks them ``failed`` (``crud.reap_lost_runs``: their pid is gone).

Concurrency: two *processes* ingesting the same structure file or property table at once end
with one copy; two processes refitting one model after new data arrived end with one new version.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from matstore.hashing import sha256_file
from matstore.ingest import errors as E
from matstore.ingest.structures import ingest_structure_file
from matstore.ingest.table import ingest_table
from tests.conftest import table_checksums as checksums
from tests.test_ingest_bad_inputs import CASES as CORPUS_CASES

DATA = Path(__file__).parent / "data"
GOOD, BAD = DATA / "good", DATA / "bad"
EXTRA = BAD / "extra"
SMALL_MAPPING = GOOD / "small_table.yaml"

# (file relative to tests/data/bad, mapping or None for structures, error class, message pattern)
EXTRA_CASES = [
    ("extra/nan_forces.extxyz", None, E.ParseError, r"nan_forces\.extxyz, line 9: frame 1: forces has non-finite values"),
    ("extra/inf_energy.extxyz", None, E.ParseError, r"inf_energy\.extxyz, line 8: frame 1: energy is inf"),
    ("extra/truncated_header.extxyz", None, E.TruncatedFileError,
     r"truncated_header\.extxyz, line 7: frame 1 \(line 7\) declares 4 atoms but the file ends after 0 atom lines"),
    ("extra/bad_atom_count.extxyz", None, E.ParseError, r"bad_atom_count\.extxyz, line 7: expected the atom count of frame 1, got 'four'"),
    ("extra/malformed_lattice.extxyz", None, E.ParseError, r"malformed_lattice\.extxyz, line 8: frame 1: .*Lattice"),
    ("extra/blank_lines.extxyz", None, E.EmptyFileError, r"blank_lines\.extxyz: the file is empty"),
    ("extra/header_only.csv", SMALL_MAPPING, E.EmptyFileError, r"header_only\.csv: the table has no data rows"),
    ("extra/short_row.csv", SMALL_MAPPING, E.TableShapeError, r"short_row\.csv, row 2, line 3: 5 fields but the header has 6"),
    ("extra/inf_value.csv", SMALL_MAPPING, E.InvalidValueError, r"inf_value\.csv, row 2, line 3, column 'c44_GPa': non-finite: inf"),
    ("../good/small_table.csv", EXTRA / "unknown_unit.yaml", E.UnitError,
     r"unknown_unit\.yaml, line 9, column 'c44_GPa': .*unknown unit 'furlong_per_fortnight'"),
]
ALL_CASES = EXTRA_CASES + CORPUS_CASES


def _case_id(case) -> str:
    name, mapping = case[0].split("/")[-1], case[1]
    return name + ("" if mapping in (None, SMALL_MAPPING) else "+" + Path(mapping).name)


# --- helpers ---------------------------------------------------------------------------------------

def max_job_run(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT coalesce(max(id), 0) FROM job_run")).scalar_one()


def cli_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "COLUMNS": "200", **extra}
    env.pop("MATSTORE_DASHBOARD_DATABASE_URL", None)
    return env


def matstore_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "matstore", *args]


def write_extxyz(path: Path, frames: int, atoms: int = 8, seed: int = 0) -> Path:
    """A synthetic labelled extxyz file (distinct frames: random positions, energies, forces, stress)."""
    rng = np.random.default_rng(seed)
    grid = np.array([(i, j, k) for i in range(2) for j in range(2) for k in range(2)], dtype=float)[:atoms] * 1.8
    lattice = 'Lattice="3.6 0.0 0.0 0.0 3.6 0.0 0.0 0.0 3.6"'
    props = "Properties=species:S:1:pos:R:3:forces:R:3"
    out = []
    for _ in range(frames):
        pos = grid + rng.normal(0.0, 0.05, grid.shape)
        forces = rng.normal(0.0, 0.3, grid.shape)
        stress = rng.normal(0.0, 0.01, 6)
        out.append(f"{atoms}\n{lattice} {props} energy={rng.normal(-28.0, 0.5):.10f} "
                   f'stress="{stress[0]:.8f} {stress[5]:.8f} {stress[4]:.8f} {stress[5]:.8f} {stress[1]:.8f} {stress[3]:.8f} '
                   f'{stress[4]:.8f} {stress[3]:.8f} {stress[2]:.8f}" pbc="T T T"\n')
        block = np.hstack([pos, forces])
        out.append("".join("Cu " + " ".join(f"{v:.8f}" for v in row) + "\n" for row in block))
    path.write_text("".join(out))
    return path


def wait_for(predicate, *, timeout: float, interval: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# --- bad inputs -------------------------------------------------------------------------------------

@pytest.fixture
def populated(engine):
    """A store holding some data already, so that "unchanged" compares real rows."""
    ingest_structure_file(GOOD / "cu_emt.extxyz", engine=engine, method="emt", method_kind="calculator")
    ingest_table(GOOD / "small_table.csv", SMALL_MAPPING, engine=engine)
    return engine


def test_extra_corpus_files_are_all_cased():
    listed = {name.split("/")[-1] for name, *_ in EXTRA_CASES} | {Path(m).name for _, m, *_ in EXTRA_CASES if m}
    on_disk = {p.name for p in EXTRA.iterdir() if p.suffix in (".extxyz", ".csv", ".yaml")}
    assert on_disk <= listed, on_disk - listed


@pytest.mark.parametrize(("name", "mapping", "error", "pattern"), ALL_CASES, ids=[_case_id(c) for c in ALL_CASES])
def test_bad_input_leaves_every_table_unchanged(populated, name, mapping, error, pattern):
    engine = populated
    upto = max_job_run(engine)
    before = checksums(engine, upto)
    path = BAD / name
    with pytest.raises(error) as info:
        if mapping is None:
            ingest_structure_file(path, engine=engine)
        else:
            ingest_table(path, mapping, engine=engine)
    message = str(info.value)
    assert re.search(pattern, message), message
    assert checksums(engine, upto) == before
    # The one documented change: the failed run is recorded, with the typed error.
    with engine.connect() as conn:
        new = conn.execute(text("SELECT status, error FROM job_run WHERE id > :u"), {"u": upto}).all()
    assert len(new) == 1 and new[0].status == "failed" and error.__name__ in new[0].error, new


@pytest.mark.parametrize(("name", "mapping", "error", "pattern"), EXTRA_CASES, ids=[_case_id(c) for c in EXTRA_CASES])
def test_bad_input_cli_prints_one_line(engine, name, mapping, error, pattern):
    from matstore.cli import app

    args = ["ingest", "structures", str(BAD / name)] if mapping is None else \
        ["ingest", "table", str(BAD / name), "--mapping", str(mapping)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert re.search(pattern, lines[0]), lines[0]


# --- crash safety -------------------------------------------------------------------------------------

BIG_FRAMES = 30_000


@pytest.fixture(scope="module")
def big_file(tmp_path_factory) -> Path:
    return write_extxyz(tmp_path_factory.mktemp("big") / "BIG.extxyz", BIG_FRAMES)


def _copy_in_progress(engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND state = 'active' AND query LIKE 'COPY configuration%'")).scalar_one())


def _other_backends(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend' AND state <> 'idle'")).scalar_one()


def test_kill_9_mid_ingest_stores_nothing_then_rerun_completes(engine, big_file):
    sha = sha256_file(big_file)

    def running_run(after: int):
        with engine.connect() as conn:
            return conn.execute(text(
                "SELECT id FROM job_run WHERE id > :a AND kind = 'ingest_structures' AND status = 'running' "
                "AND parameters->>'sha256' = :s"), {"a": after, "s": sha}).scalar()

    killed_runs = []
    for phase in ("parse", "copy"):
        after = max_job_run(engine)
        proc = subprocess.Popen(matstore_cmd("ingest", "structures", str(big_file), "--method", "emt"),
                                env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            run_id = wait_for(lambda after=after: running_run(after), timeout=60, what="the job_run row")
            if phase == "copy":
                wait_for(lambda proc=proc: _copy_in_progress(engine) or proc.poll() is not None, timeout=90, interval=0.005,
                         what="the COPY of configurations")
                assert proc.poll() is None, "the ingest finished before it could be killed in its COPY"
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        killed_runs.append(run_id)
        # The server notices the dead client and rolls its transaction back.
        wait_for(lambda: _other_backends(engine) == 0, timeout=30, interval=0.05, what="the killed backend to end")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM source WHERE sha256 = :s"), {"s": sha}).scalar_one() == 0
            assert conn.execute(text("SELECT count(*) FROM configuration")).scalar_one() == 0
            assert conn.execute(text("SELECT status FROM job_run WHERE id = :i"), {"i": run_id}).scalar_one() == "running"

    done = subprocess.run(matstore_cmd("ingest", "structures", str(big_file), "--method", "emt"), env=cli_env(),
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM configuration")).scalar_one() == BIG_FRAMES
        assert conn.execute(text("SELECT count(DISTINCT content_sha256) FROM configuration")).scalar_one() == BIG_FRAMES
        source_id = conn.execute(text("SELECT id FROM source WHERE sha256 = :s"), {"s": sha}).scalar_one()
        assert conn.execute(text("SELECT count(*) FROM configuration WHERE source_id = :s"), {"s": source_id}).scalar_one() == BIG_FRAMES
        statuses = dict(conn.execute(text("SELECT id, status FROM job_run WHERE kind = 'ingest_structures'")).all())
    # The rerun's start found the killed runs' processes gone and marked them failed.
    assert [statuses[i] for i in killed_runs] == ["failed", "failed"]
    assert sorted(statuses.values()) == ["failed", "failed", "succeeded"]
    with engine.connect() as conn:
        errors = conn.execute(text("SELECT error FROM job_run WHERE id = ANY(:i)"), {"i": killed_runs}).scalars().all()
    assert all("process lost" in e for e in errors)


# --- concurrency --------------------------------------------------------------------------------------

def _run_together(*commands: list[str], gate=None) -> list[subprocess.CompletedProcess]:
    """Start ``commands`` at once; ``gate`` (a context manager) is held while they start, then left."""
    with gate or contextlib.nullcontext():
        procs = [subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for cmd in commands]
    out = []
    for cmd, proc in zip(commands, procs, strict=True):
        stdout, stderr = proc.communicate(timeout=300)
        out.append(subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr))
    return out


@contextlib.contextmanager
def _claims_held_until_both_wait(engine, *, waiters: int = 2):
    """Hold new ``source`` rows back until ``waiters`` backends wait to claim one, then let them race.

    Process start-up (imports) takes longer than a small ingest, so two processes started
    together may run one after the other.  An EXCLUSIVE lock on ``source`` lets both read it
    (``find_source``) but stops both at ``claim_source``'s INSERT; releasing it once both wait
    makes the two claims contend for the same sha256, whatever the machine's speed.
    """
    with engine.connect() as gate:
        gate.execute(text("LOCK TABLE source IN EXCLUSIVE MODE"))
        try:
            yield
        finally:
            wait_for(lambda: _waiting_on_source(engine) >= waiters, timeout=120, interval=0.02,
                     what=f"{waiters} ingests waiting to claim the source")
            gate.commit()


def _waiting_on_source(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT count(DISTINCT pid) FROM pg_locks WHERE relation = 'source'::regclass AND NOT granted")).scalar_one()


def _overlapped(engine, kind: str) -> bool:
    with engine.connect() as conn:
        runs = conn.execute(text("SELECT started_at, finished_at FROM job_run WHERE kind = :k ORDER BY id"), {"k": kind}).all()
    assert len(runs) == 2
    return runs[1].started_at < runs[0].finished_at


def test_same_structure_file_by_two_processes_is_stored_once(engine, tmp_path):
    path = write_extxyz(tmp_path / "shared.extxyz", 6000, seed=7)
    cmd = matstore_cmd("ingest", "structures", str(path), "--method", "emt")
    results = _run_together(cmd, cmd, gate=_claims_held_until_both_wait(engine))
    for r in results:
        assert r.returncode == 0, r.stdout + r.stderr
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM configuration")).scalar_one() == 6000
        assert conn.execute(text("SELECT count(*) FROM source")).scalar_one() == 1
        statuses = sorted(conn.execute(text("SELECT status FROM job_run WHERE kind = 'ingest_structures'")).scalars())
    assert statuses == ["skipped", "succeeded"]
    assert _overlapped(engine, "ingest_structures"), "the two ingests did not run at the same time"


def test_same_property_table_by_two_processes_is_stored_once(engine, tmp_path):
    rows = ["element,method,a_A,c44_GPa,gamma111_eVA2,Ec_eV"]
    elements = ("Cu", "Ni", "Ag", "Au", "Pd", "Pt", "Al", "Pb")
    for i in range(4000):
        rows.append(f"{elements[i % 8]},EAM_{i // 8},{3.5 + i * 1e-5:.5f},{50 + i % 50},{0.07 + (i % 7) * 0.001:.4f},{3 + (i % 9) * 0.1:.2f}")
    table = tmp_path / "shared.csv"
    table.write_text("\n".join(rows) + "\n")
    cmd = matstore_cmd("ingest", "table", str(table), "--mapping", str(SMALL_MAPPING))
    results = _run_together(cmd, cmd, gate=_claims_held_until_both_wait(engine))
    for r in results:
        assert r.returncode == 0, r.stdout + r.stderr
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM source")).scalar_one() == 1
        assert conn.execute(text("SELECT count(*) FROM bulk_property")).scalar_one() == 4000 * 4
        assert conn.execute(text("SELECT count(*) FROM surface_property")).scalar_one() == 4000
        statuses = sorted(conn.execute(text("SELECT status FROM job_run WHERE kind = 'ingest_table'")).scalars())
    assert statuses == ["skipped", "succeeded"]


def test_two_refit_processes_make_one_new_version(engine):
    from matstore.models.service import fit_model
    from tests.test_models_store import populate, spec

    populate(engine)
    fit_model(engine, spec())
    populate(engine, source_hash="4" * 64, scale=1.2)  # new data arrived
    cmd = matstore_cmd("refit", "gamma_synth")
    results = _run_together(cmd, cmd)
    for r in results:
        assert r.returncode == 0, r.stdout + r.stderr
    outputs = sorted("created" if "created (version 2)" in r.stdout else r.stdout for r in results)
    assert outputs[0] == "created" and "no new version (version 2)" in outputs[1], outputs
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM equation_version")).scalar_one() == 2
        assert conn.execute(text("SELECT max(version) FROM equation_version")).scalar_one() == 2
        statuses = sorted(conn.execute(text("SELECT status FROM job_run WHERE kind = 'refit'")).scalars())
    assert statuses == ["skipped", "succeeded"]


# --- issue 13: a missing optional dependency is a skipped stage; units that are not units -----

def test_missing_lammps_is_a_skipped_stage_with_the_reason(monkeypatch, engine):
    """LAMMPS absent: the error surfaces inside compute_and_store (not at set-up); the stage is skipped."""
    from matstore import pipeline
    from matstore.ingest.compute import calculators, store

    class Backend:
        def supports(self, element: str) -> bool:
            return True

    def no_lammps(*args, **kwargs):
        raise calculators.CalculatorSetupError("LAMMPS cannot start: No module named 'lammps'")

    monkeypatch.setattr(calculators, "get_backend", lambda name: Backend())
    monkeypatch.setattr(store, "compute_and_store", no_lammps)
    reports: list = []
    opts = pipeline.PipelineOptions(elements=("Cu",), calculators=("lammps",), use_workers=False, dataset=None)
    report = pipeline.run_stage("compute:lammps", lambda: pipeline._compute(engine, "lammps", opts), reports)
    assert (report.status, report.detail) == ("skipped", "LAMMPS cannot start: No module named 'lammps'")


@pytest.mark.parametrize(("unit", "reason"), [
    ("1/0", "division by zero"),
    ("__import__('os').system('touch /tmp/matstore-unit-pwn')", "characters no unit has"),
    ("eV/A", "neither as ångström nor as ampere"),
])
def test_unit_that_is_not_a_unit_names_file_and_column(engine, tmp_path, unit, reason):
    import yaml

    mapping = yaml.safe_load(SMALL_MAPPING.read_text())
    mapping["columns"]["c44_GPa"]["unit"] = unit
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(mapping))
    before = checksums(engine, 0)  # a failed run leaves its job_run row on purpose; nothing else
    from matstore.cli import app

    result = CliRunner().invoke(app, ["ingest", "table", str(GOOD / "small_table.csv"), "--mapping", str(path)])
    assert result.exit_code == 1
    line = result.output.strip()
    assert "\n" not in line and "mapping.yaml, line" in line and "column 'c44_GPa'" in line and reason in line, line
    assert checksums(engine, 0) == before
    assert not Path("/tmp/matstore-unit-pwn").exists()
