"""Export configurations as extended XYZ training sets for machine-learned potentials.

``matstore export structures OUT.extxyz`` writes the selected configurations with their
labels under the key names MLIP trainers read: ``REF_energy``, ``REF_forces``, ``REF_virial``
and ``REF_stress`` by default (MACE's convention, ``--energy_key REF_energy`` etc.), or with
another prefix (``''`` gives ``energy``/``forces``/``virial``/``stress``, what ACE and GAP
fits read).  Every frame's comment line states units and sign conventions:

- energy in eV, forces in eV/Å, virial in eV, stress in eV/Å³;
- virial W = −V·σ (V the cell volume), stress σ positive in tension (ASE's sign), so a
  compressed cell has a negative stress and a positive virial; the stress is written only
  for cells of positive volume.

Numbers are written in the shortest form that reads back to the same float64 (orjson's
Ryu), so ingesting the exported file again gives the same content hashes and stores nothing
new.  Frames are read from the store in batches of ids and written as they come (a worker
thread reads the next batch while this one is formatted): memory does not grow with the set.

A training set exported with a name is recorded (``training_set``: selection, members in
file order, :func:`training_set_hash` over their content hashes), and the same name writes
the same set again later, whatever has been added to the store since.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from operator import add
from pathlib import Path
from typing import Any

import numpy as np
import orjson

#: Key prefix of the labels by default (MACE's convention).
DEFAULT_PREFIX = "REF_"
_SET_HASH_TAG = b"matstore.training_set.v1\x00"
_UNITS = 'units="energy:eV forces:eV/Ang virial:eV stress:eV/Ang^3"'
_CONVENTIONS = 'virial_convention="W=-V*stress" stress_convention="positive_in_tension(ASE)"'
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BARE = re.compile(r"^[A-Za-z0-9_.+\-/:@]+$")
_RESERVED = {
    "Lattice", "Properties", "pbc", "units", "virial_convention", "stress_convention", "frame",
    "matstore_id", "matstore_sha256",
}


class ExportError(ValueError):
    """The selection or the training-set name cannot be exported (nothing is written)."""


@dataclass(frozen=True)
class Selection:
    """Which configurations to export; filters combine with AND, ``None`` means any.

    Attributes
    ----------
    method
        ``method.name`` that produced the labels (e.g. ``emt``, ``DFT-PBE``).
    source
        sha256 of the source file, or a unique prefix of it (at least 8 hex digits).
    material
        A formula (``Cu``, ``NiAl``): configurations whose composition reduces to it, and
        those linked to a stored material of that formula (``material_configuration``).
    config_type
        The frame's ``config_type`` as its file gave it (extxyz info, stored in
        ``configuration.info``), e.g. ``rattled_bulk``: the usual grouping of MLIP training data.
    """

    method: str | None = None
    source: str | None = None
    material: str | None = None
    config_type: str | None = None

    def to_dict(self) -> dict[str, str]:
        """The filters that are set (stored as ``training_set.selection``)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def is_empty(self) -> bool:
        """No filter set."""
        return not self.to_dict()


@dataclass
class ExportReport:
    """Outcome of an export.

    Attributes
    ----------
    path: the file written; frames: configurations written; content_sha256: their
    :func:`training_set_hash`; name: the training set's name (``None`` when not recorded);
    recorded: the set was recorded by this export (else it was written again by name);
    with_virial / without_virial: frames per method name with and without a virial;
    job_run_id: the export's job run.
    """

    path: str
    frames: int = 0
    content_sha256: str = ""
    name: str | None = None
    recorded: bool = False
    selection: dict[str, str] = field(default_factory=dict)
    prefix: str = DEFAULT_PREFIX
    with_virial: dict[str, int] = field(default_factory=dict)
    without_virial: dict[str, int] = field(default_factory=dict)
    job_run_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the job run's summary)."""
        return asdict(self)


def training_set_hash(content_hashes: Iterable[str]) -> str:
    """sha256 (hex) of the tag ``matstore.training_set.v1`` and the members' content hashes in order.

    Parameters
    ----------
    content_hashes
        ``configuration.content_sha256`` of each member (64 hex characters), in file order.

    Returns
    -------
    str
        64 hex characters; equal for two sets exactly when they hold the same structures and
        labels in the same order.
    """
    digest = hashlib.sha256(_SET_HASH_TAG)
    for h in content_hashes:
        digest.update(h.encode("ascii"))
    return digest.hexdigest()


# --- selection ------------------------------------------------------------------------------------

def _source_id(cur: Any, prefix: str) -> int:
    if not re.fullmatch(r"[0-9a-fA-F]{8,64}", prefix):
        raise ExportError(f"--source must be the sha256 of a source (or at least 8 of its hex digits), got {prefix!r}")
    cur.execute("SELECT id, sha256 FROM source WHERE sha256 LIKE %s ORDER BY id LIMIT 2", (prefix.lower() + "%",))
    rows = cur.fetchall()
    if not rows:
        raise ExportError(f"no source has a sha256 starting with {prefix!r}")
    if len(rows) > 1:
        raise ExportError(f"{prefix!r} matches several sources ({rows[0][1][:16]}…, {rows[1][1][:16]}…): give more digits")
    return int(rows[0][0])


def _formulas_of_material(cur: Any, material: str) -> list[str]:
    """Stored configuration formulas (Hill) whose composition reduces to ``material``."""
    from pymatgen.core import Composition, Element

    try:
        target = Composition(material).reduced_composition
        bad = [str(e) for e in target.elements if not isinstance(e, Element)]
    except Exception as exc:  # noqa: BLE001 - pymatgen raises several kinds
        raise ExportError(f"--material {material!r} is not a chemical formula: {exc}") from None
    if bad or not target.elements:
        raise ExportError(f"--material {material!r} is not a chemical formula: unknown element(s) {bad}")
    cur.execute("SELECT DISTINCT formula FROM configuration")
    return [f for (f,) in cur.fetchall() if Composition(f).reduced_composition.almost_equals(target)]


def select_configuration_ids(conn: Any, selection: Selection) -> np.ndarray:
    """Ids (ascending) of the configurations a selection picks.

    Parameters
    ----------
    conn
        psycopg connection (or SQLAlchemy connection/session on psycopg).
    selection
        The filters.

    Returns
    -------
    (M,) int64

    Raises
    ------
    ExportError
        For an unknown method, an unknown or ambiguous source prefix, or a bad formula.
    """
    from matstore.ingest.copy import raw_connection

    where, params = [], []
    with raw_connection(conn).cursor() as cur:
        if selection.method is not None:
            cur.execute("SELECT id FROM method WHERE name = %s", (selection.method,))
            row = cur.fetchone()
            if row is None:
                raise ExportError(f"no method named {selection.method!r} is stored")
            where.append("c.method_id = %s")
            params.append(row[0])
        if selection.source is not None:
            where.append("c.source_id = %s")
            params.append(_source_id(cur, selection.source))
        if selection.material is not None:
            where.append(
                "(c.formula = ANY(%s) OR c.id IN (SELECT mc.structure_id FROM material_configuration mc "
                "JOIN material m ON m.id = mc.material_id WHERE m.formula = %s))"
            )
            params += [_formulas_of_material(cur, selection.material), selection.material]
        if selection.config_type is not None:
            _check_config_type(cur, selection.config_type)
            where.append("c.info->>'config_type' = %s")
            params.append(selection.config_type)
        sql = "SELECT c.id FROM configuration c" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY c.id"
        cur.execute(sql, params, prepare=False)
        return np.array([r[0] for r in cur.fetchall()], dtype=np.int64)


def _check_config_type(cur: Any, config_type: str) -> None:
    """Raise :class:`ExportError` naming the stored ``config_type`` values when none is ``config_type``."""
    cur.execute("SELECT DISTINCT info->>'config_type' FROM configuration WHERE info ? 'config_type' ORDER BY 1")
    stored = [r[0] for r in cur.fetchall()]
    if config_type not in stored:
        known = ", ".join(stored[:10]) + (", …" if len(stored) > 10 else "") if stored else "none"
        raise ExportError(f"no configuration has config_type {config_type!r} (stored config_types: {known})")


# --- writing --------------------------------------------------------------------------------------

def _rows_text(values: np.ndarray) -> list[bytes]:
    """Each row of ``values`` (m, k) as space-separated shortest round-trip decimals (NaN → ``null``)."""
    flat = np.ascontiguousarray(values, dtype=np.float64).reshape(len(values), -1)
    if not len(flat):
        return []
    text = orjson.dumps(flat, option=orjson.OPT_SERIALIZE_NUMPY)[2:-2]
    return text.replace(b",", b" ").split(b"] [")


@lru_cache(maxsize=1)
def _species_symbols() -> np.ndarray:
    """``b"Cu"`` etc. by atomic number (object array, index 0..118)."""
    from ase.data import chemical_symbols

    return np.array([symbol.encode() for symbol in chemical_symbols], dtype=object)


@lru_cache(maxsize=128)
def _rows_to_lines(z: int) -> tuple[bytes, bytes]:
    """``bytes.translate`` table and deleted bytes turning orjson rows ``[null,x,...],[null,...``
    into atom lines ``Sy x ... \nSy ...`` of element ``z`` (``null`` holds the species: numbers
    never contain n, u or l)."""
    symbol = bytes(_species_symbols()[z])
    if len(symbol) == 2:
        return bytes.maketrans(b",[nu", b" \n" + symbol), b"]l"
    return bytes.maketrans(b",[n", b" \n" + symbol), b"]ul"


_ROWS_TO_BARE_LINES = (bytes.maketrans(b",[", b" \n"), b"]nul")


def _atom_blocks(numbers: np.ndarray, positions: np.ndarray, forces: np.ndarray, offsets: np.ndarray) -> list[bytes]:
    """The atom lines of each frame (M frames, A atoms in all), joined by newlines.

    A line: species, x y z (Å) and, where not NaN, fx fy fz (eV/Å) (lines but a frame's last
    end in a space).  One orjson call for all atoms of a batch writes the numbers (shortest
    round-trip form) behind a NaN placeholder (``null``); one ``bytes.translate`` per frame
    of one element turns its rows into lines with the species in place of ``null``.  Only
    frames mixing elements are assembled line by line.
    """
    m = len(offsets) - 1
    if not len(numbers):
        return [b""] * m
    table = np.hstack([np.full((len(numbers), 1), np.nan), positions, forces])
    raw = orjson.dumps(table, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]
    if np.isnan(forces).any():
        raw = raw.replace(b",null,null,null]", b"]")
    starts = np.flatnonzero(np.frombuffer(raw, dtype=np.uint8) == ord("[")).tolist() + [len(raw) + 1]
    firsts = offsets[:-1]
    one_element = np.logical_and.reduceat(numbers == np.repeat(numbers[firsts], np.diff(offsets)), firsts).tolist()
    symbols = _species_symbols()
    out = []
    for i, (a, b) in enumerate(zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)):
        block = raw[starts[a] + 1:starts[b] - 2]
        if one_element[i]:
            out.append(block.translate(*_rows_to_lines(int(numbers[a]))))
        else:
            lines = block.translate(*_ROWS_TO_BARE_LINES).split(b"\n")
            out.append(b"\n".join(map(add, symbols[numbers[a:b]].tolist(), lines)))
    return out


def _info_text(info: dict[str, Any] | None, prefix: str) -> bytes:
    """key=value pairs of a frame's stored metadata that extxyz can hold (others are left out)."""
    parts = []
    for key, value in (info or {}).items():
        if not _KEY.match(key) or key in _RESERVED or _is_label_key(key, prefix):
            continue
        if isinstance(value, bool):
            text = "T" if value else "F"
        elif isinstance(value, (int, float)):
            text = repr(value) if np.isfinite(value) else None
        elif isinstance(value, str):
            text = value if _BARE.match(value) else (f'"{value}"' if not re.search(r'["\\\n]', value) and value else None)
        elif isinstance(value, list) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            text = '"' + " ".join(repr(v) for v in value) + '"'
        else:
            text = None
        if text is not None:
            parts.append(f"{key}={text}")
    return " ".join(parts).encode()


_LABELS = ("energy", "forces", "force", "virial", "stress", "free_energy")


def _is_label_key(key: str, prefix: str) -> bool:
    return any(key == p + label for p in {"", "REF_", prefix} for label in _LABELS)


def _batch_text(arrays: dict[str, Any], prefix: str) -> bytes:
    """Extended XYZ of a batch read with :func:`matstore.ingest.copy.read_configurations` (``include_info``)."""
    m = len(arrays["id"])
    offsets = arrays["offsets"]
    virial = arrays["virial"]
    volume = np.abs(np.linalg.det(arrays["cell"])) if m else np.zeros(0)
    has_virial = ~np.isnan(virial).all(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        stress = np.where((volume > 0)[:, None, None], -virial / volume[:, None, None], np.nan)
    # 3×3 keys as 9 numbers in column order, as ASE and the extxyz parser read them back.
    lattice = _rows_text(arrays["cell"])
    virials, stresses = _rows_text(virial.transpose(0, 2, 1)), _rows_text(stress.transpose(0, 2, 1))
    energies = _rows_text(arrays["energy"][:, None])
    blocks = _atom_blocks(arrays["numbers"].astype(np.int64), arrays["positions"], arrays["forces"], offsets)
    has_forces = ~np.isnan(arrays["forces"][offsets[:-1]]).any(axis=1) if m else np.zeros(0, dtype=bool)
    tail = f"{_UNITS} {_CONVENTIONS}".encode()
    out = []
    for i in range(m):
        a, b = int(offsets[i]), int(offsets[i + 1])
        properties = b"species:S:1:pos:R:3" + (b":%sforces:R:3" % prefix.encode() if has_forces[i] else b"")
        head = [b'Lattice="' + lattice[i] + b'" Properties=' + properties]
        if energies[i] != b"null":
            head.append(b"%senergy=" % prefix.encode() + energies[i])
        if has_virial[i]:
            head.append(b'%svirial="' % prefix.encode() + virials[i] + b'"')
            if volume[i] > 0:
                head.append(b'%sstress="' % prefix.encode() + stresses[i] + b'"')
        head.append(b'pbc="' + b" ".join(b"T" if p else b"F" for p in arrays["pbc"][i].tolist()) + b'"')
        info = _info_text(arrays["info"][i], prefix)
        if info:
            head.append(info)
        head.append(b"matstore_id=%d matstore_sha256=%s " % (int(arrays["id"][i]), arrays["content_sha256"][i].encode()) + tail)
        out.append(b"%d\n%s\n%s\n" % (b - a, b" ".join(head), blocks[i]))
    return b"".join(out)


def _batches_of_ids(ids: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def _read_ahead(conn: Any, ids: np.ndarray, size: int) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    """(ids, arrays of :func:`matstore.ingest.copy.read_configurations`) per batch of ``size`` ids.

    A worker thread reads batch k+1 while the caller formats batch k, so the server's COPY
    and the client's formatting overlap (the connection is used by that thread alone).
    """
    from matstore.ingest.copy import read_configurations

    batches = list(_batches_of_ids(ids, size))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="matstore-export-read") as pool:
        def read(k: int) -> Future[dict[str, Any]]:
            return pool.submit(read_configurations, conn, ids=batches[k].tolist(), include_info=True)

        pending = read(0) if batches else None
        for k, batch in enumerate(batches):
            arrays = pending.result()
            pending = read(k + 1) if k + 1 < len(batches) else None
            yield batch, arrays


def _write_file(conn: Any, ids: np.ndarray, path: Path, prefix: str, batch_size: int) -> str:
    """Write the configurations ``ids`` (in order) to ``path``; return their :func:`training_set_hash`."""
    digest = hashlib.sha256(_SET_HASH_TAG)
    # closing: a failure here stops the read-ahead at once, before the caller rolls back.
    with open(path, "wb") as handle, closing(_read_ahead(conn, ids, batch_size)) as batches:
        for batch, arrays in batches:
            if not np.array_equal(arrays["id"], batch):
                raise ExportError("configurations of the selection vanished while exporting")
            handle.write(_batch_text(arrays, prefix))
            for h in arrays["content_sha256"].tolist():
                digest.update(h.encode("ascii"))
    return digest.hexdigest()


def _stored_set(cur: Any, name: str) -> tuple[int, dict[str, Any], str, np.ndarray] | None:
    """(id, selection, content hash, member ids in order) of the training set ``name``, or ``None``."""
    cur.execute("SELECT id, selection, content_sha256 FROM training_set WHERE name = %s", (name,))
    row = cur.fetchone()
    if row is None:
        return None
    cur.execute("SELECT configuration_id FROM training_set_member WHERE training_set_id = %s ORDER BY position", (row[0],))
    return row[0], row[1], row[2], np.array([r[0] for r in cur.fetchall()], dtype=np.int64)


def _record_set(cur: Any, name: str, selection: Selection, ids: np.ndarray, digest: str, job_run_id: int) -> None:
    cur.execute(
        "INSERT INTO training_set (name, selection, content_sha256, n_configurations, job_run_id) "
        "VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (name, orjson.dumps(selection.to_dict()).decode(), digest, len(ids), job_run_id),
    )
    set_id = cur.fetchone()[0]
    cur.execute(
        "INSERT INTO training_set_member (training_set_id, position, configuration_id) "
        "SELECT %s, (t.o - 1)::int, t.c FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(c, o)",
        (set_id, ids.tolist()),
    )


def _virial_counts(cur: Any, ids: np.ndarray) -> tuple[dict[str, int], dict[str, int]]:
    """Frames with and without a virial, per method name (``(none)`` for configurations without one)."""
    cur.execute(
        "SELECT coalesce(m.name, '(none)'), count(*) FILTER (WHERE c.virial IS NOT NULL), count(*) FILTER (WHERE c.virial IS NULL) "
        "FROM configuration c LEFT JOIN method m ON m.id = c.method_id WHERE c.id = ANY(%s) GROUP BY 1 ORDER BY 1",
        (ids.tolist(),), prepare=False,
    )
    rows = cur.fetchall()
    return {r[0]: int(r[1]) for r in rows}, {r[0]: int(r[2]) for r in rows}


def _members(cur: Any, name: str | None, selection: Selection) -> tuple[np.ndarray, str | None]:
    """Member ids to write and, for a stored training set, the content hash they must have."""
    stored = _stored_set(cur, name) if name else None
    if stored is None:
        ids = select_configuration_ids(cur.connection, selection)
        if not len(ids):
            raise ExportError(f"no configuration matches the selection {selection.to_dict() or '(all)'}")
        return ids, None
    _, recorded, digest, ids = stored
    if not selection.is_empty() and selection.to_dict() != recorded:
        raise ExportError(
            f"training set {name!r} was recorded with the selection {recorded}, not {selection.to_dict()}: "
            "give no filters to write it again, or choose a new name"
        )
    return ids, digest


def export_structures(
    out: str | Path,
    *,
    engine: Any,
    selection: Selection | None = None,
    name: str | None = None,
    prefix: str = DEFAULT_PREFIX,
    batch_size: int = 2000,
) -> ExportReport:
    """Write configurations to an extended XYZ file for MLIP training; optionally record it by name.

    Parameters
    ----------
    out
        The file to write (replaced atomically once complete).
    engine
        SQLAlchemy engine of the store.
    selection
        Filters (method, source, material, config_type); default: every configuration.
    name
        Training-set name.  New: the selected members and their :func:`training_set_hash` are
        recorded.  Already recorded: its members are written again (the filters, if given,
        must equal the recorded ones) and the hash is checked.
    prefix
        Key prefix of the labels (``REF_`` → ``REF_energy``, ``REF_forces``, ``REF_virial``,
        ``REF_stress``; ``''`` → ``energy``, ``forces``, ``virial``, ``stress``).
    batch_size
        Configurations read from the store at a time.

    Returns
    -------
    ExportReport

    Raises
    ------
    ExportError
        Unknown method/source, empty selection, a name recorded with other filters, or a
        recorded set whose content no longer matches its hash (no file is written).
    """
    from matstore import crud
    from matstore.db import session_scope
    from matstore.ingest.copy import raw_connection

    out = Path(out)
    selection = selection or Selection()
    if not re.fullmatch(r"[A-Za-z0-9_]*", prefix):
        raise ExportError(f"--prefix must be letters, digits or _, got {prefix!r}")
    report = ExportReport(path=str(out), name=name, selection=selection.to_dict(), prefix=prefix)
    parameters = {"path": str(out), "name": name, "selection": selection.to_dict(), "prefix": prefix}
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    with crud.job_run(engine=engine, kind="export_structures", parameters=parameters) as run:
        report.job_run_id = run.id
        try:
            with session_scope(engine) as session, raw_connection(session).cursor() as cur:
                ids, expected = _members(cur, name, selection)
                report.content_sha256 = _write_file(cur.connection, ids, tmp, prefix, batch_size)
                if expected is not None and expected != report.content_sha256:
                    raise ExportError(f"training set {name!r} no longer has its recorded content hash {expected[:16]}…")
                if name is not None and expected is None:
                    _record_set(cur, name, selection, ids, report.content_sha256, run.id)
                    report.recorded = True
                report.with_virial, report.without_virial = _virial_counts(cur, ids)
                report.frames = len(ids)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
        run.summary = report.to_dict()
    return report


__all__ = [
    "DEFAULT_PREFIX",
    "ExportError",
    "ExportReport",
    "Selection",
    "export_structures",
    "select_configuration_ids",
    "training_set_hash",
]
