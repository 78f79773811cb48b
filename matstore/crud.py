"""Data access: small keyword-only functions over the schema.

CLI commands, jobs, ingest and model code call these instead of writing SQL of their own.
Writers take a ``session`` that the caller owns (one transaction per source); job-run
bookkeeping uses its own short transactions so that a failed ingest still leaves a
``failed`` job_run row while its data is rolled back.
"""

from __future__ import annotations

import logging
import math
import os
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import Session

from matstore.hashing import sha256_json
from matstore.orientation import Orientation
from matstore.provenance import code_version, git_commit, host_name, scrub, scrub_text
from matstore.schema import (
    BulkProperty,
    ConfigurationProperty,
    JobRun,
    Material,
    MaterialConfiguration,
    Method,
    PropertyDefinition,
    Source,
    Surface,
    SurfaceProperty,
    VocabularyAddition,
)
from matstore.schema.vocabulary import PROPERTY_DEFINITIONS, USER_SCOPES

log = logging.getLogger(__name__)


# --- vocabulary --------------------------------------------------------------------------

def seed_vocabulary(*, session: Session) -> int:
    """Insert missing built-in property definitions and refresh built-in descriptions (idempotent).

    A built-in definition's ``description`` (and ``symbol``) is code-owned text: when a release
    words it differently (e.g. a descriptor's documented definition changed), the stored row is
    updated to it.  Name, unit and scope are never changed, and user definitions
    (``builtin`` false) are never touched.  Returns how many definitions were added.
    """
    rows = [d._asdict() for d in PROPERTY_DEFINITIONS]
    stmt = insert(PropertyDefinition).values(rows).on_conflict_do_nothing(index_elements=["name"])
    added = len(session.execute(stmt.returning(PropertyDefinition.id)).all())
    table = PropertyDefinition.__table__
    for row in rows:
        session.execute(table.update()
                        .where(table.c.name == row["name"], table.c.builtin.is_(True),
                               (table.c.description != row["description"])
                               | table.c.symbol.is_distinct_from(row["symbol"]))
                        .values(description=row["description"], symbol=row["symbol"]))
    return added


def definitions(*, session: Session) -> dict[str, PropertyDefinition]:
    """All property definitions by name."""
    return {d.name: d for d in session.execute(select(PropertyDefinition)).scalars()}


class VocabularyError(ValueError):
    """A definition cannot be added (bad name, unit or scope; a clash) or is unknown."""


def list_definitions(*, session: Session, scope: str | None = None) -> list[PropertyDefinition]:
    """Property definitions ordered by scope and name, optionally of one ``scope`` only."""
    stmt = select(PropertyDefinition).order_by(PropertyDefinition.scope, PropertyDefinition.name)
    if scope is not None:
        stmt = stmt.where(PropertyDefinition.scope == scope)
    return list(session.execute(stmt).scalars())


def add_definition(
    *,
    session: Session,
    name: str,
    unit: str,
    scope: str,
    job_run_id: int,
    symbol: str | None = None,
    description: str | None = None,
) -> tuple[int, bool]:
    """Add a user property definition; return ``(id, added)``.

    Idempotent: adding a definition that exists with the same unit and scope returns its id
    and ``added=False``.  The unit is validated by pint and stored in the form given
    (e.g. ``eV``, ``angstrom``, ``kJ/mol``); values are converted to it at ingest.

    Parameters
    ----------
    name
        snake_case, ``^[a-z][a-z0-9_]*$``, e.g. ``defect_formation_energy``.
    unit
        Canonical unit of the definition (pint syntax).
    scope
        One of :data:`~matstore.schema.vocabulary.USER_SCOPES`: ``bulk`` (one value per
        material and method), ``surface`` (per orientation), ``configuration`` (per
        identified configuration), ``defect``, ``mechanical`` (per material).
    job_run_id
        The job run recording the addition (``vocabulary_addition``).

    Raises
    ------
    VocabularyError
        If the name is not snake_case, the unit or symbol holds a control character or a
        bidirectional override (the description may hold tabs and line feeds, nothing else of
        those: :mod:`matstore.names`), the unit is unknown to pint, the scope not a
        user scope, or a definition of that name exists with another unit or scope (built-in
        ones can never be redefined).
    """
    import re

    from matstore.names import TEXT, UnsafeTextError
    from matstore.units import parse_unit

    if not re.fullmatch(r"[a-z][a-z0-9_]*", name or ""):
        raise VocabularyError(f"definition name {name!r} must be snake_case (lower-case letters, digits, _; a letter first)")
    try:
        check_names(("unit", unit), ("symbol", symbol))
        check_names(("description", description), policy=TEXT)
    except UnsafeTextError as exc:
        raise VocabularyError(f"definition {name}: {exc}") from None
    if scope not in USER_SCOPES:
        raise VocabularyError(f"scope {scope!r} is not one of {', '.join(USER_SCOPES)}")
    try:
        parse_unit(unit)
    except Exception as exc:  # noqa: BLE001 - pint raises many kinds (ZeroDivisionError for "1/0")
        raise VocabularyError(f"definition {name}: not a unit: {unit!r} ({exc})") from None
    # ON CONFLICT: two writers adding one name at once serialise on the unique index.
    stmt = insert(PropertyDefinition).values(
        name=name, unit=unit, scope=scope, symbol=symbol, builtin=False,
        description=description or f"{name} ({unit}), added by a user",
    ).on_conflict_do_nothing(index_elements=["name"]).returning(PropertyDefinition.id)
    definition_id = session.execute(stmt).scalar()
    if definition_id is not None:
        session.execute(insert(VocabularyAddition).values(definition_id=definition_id, job_run_id=job_run_id))
        return definition_id, True
    existing = session.execute(select(PropertyDefinition).where(PropertyDefinition.name == name)).scalar_one()
    if (existing.unit, existing.scope) == (unit, scope):
        return existing.id, False  # type: ignore[return-value]
    kind = "a built-in definition" if existing.builtin else "already defined"
    raise VocabularyError(f"{name} is {kind} ({existing.scope}, {existing.unit}); choose another name")


def check_names(*named: tuple[str, str | None], policy: str = "name") -> None:
    """Refuse names that hold a control character or a bidirectional override: ``("unit", "eV")`` pairs, ``None`` passes.

    The store's last line of defence (ingest refuses them first, naming file, row and
    column): a name stored with ESC ``[8m`` or U+202E in it would act on the terminal of
    whoever prints it.  ``policy``: ``"name"`` refuses every control character, ``"text"``
    (descriptions) allows tab and line feed (:mod:`matstore.names`).

    Raises
    ------
    matstore.names.UnsafeTextError
        ``"the method name 'PBE\\x1b[8m' contains the control character U+001B (ESC)"`` (a ValueError).
    """
    from matstore.names import check_text

    for what, value in named:
        check_text(value, f"the {what}", policy)  # type: ignore[arg-type]


def unknown_definition_message(name: str, known: Sequence[str]) -> str:
    """"unknown property definition 'x'; did you mean …? …how to add one" (one line)."""
    import difflib

    near = difflib.get_close_matches(name, list(known), n=4, cutoff=0.6)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    return (f"unknown property definition {name!r}{hint} (list them with `matstore vocab list`; add one with "
            f"`matstore vocab add {name} --unit UNIT --scope bulk|surface|configuration`)")


# --- materials, methods, surfaces ---------------------------------------------------------

def get_or_create_material(*, session: Session, formula: str, prototype: str = "fcc") -> int:
    """Id of the material (formula, prototype), inserting it when new.

    ``formula`` is any formula pymatgen parses; it is stored reduced with its composition
    (:func:`matstore.composition.parse_formula`), so ``Mo2S4`` and ``MoS2`` are one material.

    Raises
    ------
    matstore.composition.FormulaError
        If the formula does not parse or names an unknown element.
    matstore.names.UnsafeTextError
        If the formula or prototype holds a control character or a bidirectional override.
    """
    from matstore.composition import parse_formula

    check_names(("formula", formula), ("prototype", prototype))
    parsed = parse_formula(formula)
    formula = parsed.formula
    stmt = (
        insert(Material)
        .values(formula=formula, prototype=prototype, composition=parsed.composition)
        .on_conflict_do_nothing(index_elements=["formula", "prototype"])
        .returning(Material.id)
    )
    new_id = session.execute(stmt).scalar()
    if new_id is not None:
        return new_id
    return session.execute(
        select(Material.id).where(Material.formula == formula, Material.prototype == prototype)
    ).scalar_one()


def get_or_create_method(
    *,
    session: Session,
    name: str,
    kind: str,
    calculator: str | None = None,
    potential: str | None = None,
    potential_sha256: str | None = None,
    parameters: dict[str, Any] | None = None,
    software: dict[str, Any] | None = None,
    description: str | None = None,
) -> int:
    """Id of the method (name, parameters), inserting it when new.

    A method is identified by its name and the sha256 of its canonical parameters; the
    software versions are recorded with the first use.

    Raises
    ------
    matstore.names.UnsafeTextError
        If the name, kind, calculator or potential holds a control character or a
        bidirectional override, or the description one other than tab and line feed.
    """
    check_names(("method name", name), ("method kind", kind), ("calculator", calculator), ("potential", potential))
    check_names(("method description", description), policy="text")
    parameters = parameters or {}
    params_hash = sha256_json(parameters)
    stmt = (
        insert(Method)
        .values(
            name=name,
            kind=kind,
            calculator=calculator,
            potential=potential,
            potential_sha256=potential_sha256,
            parameters=parameters,
            parameters_sha256=params_hash,
            software=software or {},
            description=description,
        )
        .on_conflict_do_nothing(index_elements=["name", "parameters_sha256"])
        .returning(Method.id)
    )
    new_id = session.execute(stmt).scalar()
    if new_id is not None:
        return new_id
    return session.execute(
        select(Method.id).where(Method.name == name, Method.parameters_sha256 == params_hash)
    ).scalar_one()


def get_or_create_methods(*, session: Session, methods: Sequence[tuple[str, str, str | None]]) -> dict[tuple[str, str, str | None], int]:
    """Ids of many methods without parameters, ``(name, kind, potential)`` each, inserting new ones.

    One statement for all (a table may name hundreds of potentials); a method is identified
    by its name and the sha256 of its (empty) parameters, as in :func:`get_or_create_method`,
    so a name already stored keeps its kind and potential.

    Returns
    -------
    dict
        (name, kind, potential) → ``method.id``.

    Raises
    ------
    matstore.names.UnsafeTextError
        If a name, kind or potential holds a control character or a bidirectional override.
    """
    unique = list(dict.fromkeys(methods))
    if not unique:
        return {}
    for name, kind, potential in unique:
        check_names(("method name", name), ("method kind", kind), ("potential", potential))
    names, kinds, potentials = (list(c) for c in zip(*unique, strict=True))
    empty = sha256_json({})
    session.execute(text(
        "INSERT INTO method (name, kind, potential, parameters, parameters_sha256, software) "
        "SELECT n, k, p, '{}'::jsonb, :sha, '{}'::jsonb FROM unnest(CAST(:n AS text[]), CAST(:k AS text[]), CAST(:p AS text[])) "
        "AS u(n, k, p) ON CONFLICT (name, parameters_sha256) DO NOTHING"
    ), {"n": names, "k": kinds, "p": potentials, "sha": empty})
    ids = dict(session.execute(
        select(Method.name, Method.id).where(Method.name.in_(names), Method.parameters_sha256 == empty)  # type: ignore[attr-defined]
    ).all())
    return {m: ids[m[0]] for m in unique}


def get_or_create_surface(*, session: Session, material_id: int, orientation: Orientation) -> int:
    """Id of the surface of ``material_id`` with ``orientation``, inserting it when new."""
    miller = orientation.miller or (None, None, None)
    stmt = (
        insert(Surface)
        .values(
            material_id=material_id,
            orientation_key=orientation.key,
            miller_h=miller[0],
            miller_k=miller[1],
            miller_l=miller[2],
            normal_x=orientation.normal[0],
            normal_y=orientation.normal[1],
            normal_z=orientation.normal[2],
            theta_deg=orientation.theta_deg,
            phi_deg=orientation.phi_deg,
        )
        .on_conflict_do_nothing(index_elements=["material_id", "orientation_key"])
        .returning(Surface.id)
    )
    new_id = session.execute(stmt).scalar()
    if new_id is not None:
        return new_id
    return session.execute(
        select(Surface.id).where(Surface.material_id == material_id, Surface.orientation_key == orientation.key)
    ).scalar_one()


def get_or_create_surfaces(
    *, session: Session, surfaces: Sequence[tuple[int, Orientation]]
) -> dict[tuple[int, str], int]:
    """Ids of many (material_id, orientation) surfaces at once, inserting the new ones.

    One ``INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING`` and one ``SELECT``, however
    many orientations (a published table may hold hundreds per material).

    Returns
    -------
    dict
        (material_id, orientation key) → ``surface.id``.
    """
    unique = {(m, o.key): o for m, o in surfaces}
    if not unique:
        return {}
    cols = list(zip(*[(m, o.key, *(o.miller or (None, None, None)), *o.normal, o.theta_deg, o.phi_deg)
                      for (m, _), o in unique.items()], strict=True))
    names = ("m", "k", "h", "kk", "l", "x", "y", "z", "t", "p")
    types = ("int[]", "text[]", "int[]", "int[]", "int[]", "float8[]", "float8[]", "float8[]", "float8[]", "float8[]")
    arrays = ", ".join(f"CAST(:{n} AS {t})" for n, t in zip(names, types, strict=True))
    session.execute(text(
        "INSERT INTO surface (material_id, orientation_key, miller_h, miller_k, miller_l, normal_x, normal_y, normal_z, "
        f"theta_deg, phi_deg) SELECT * FROM unnest({arrays}) ON CONFLICT (material_id, orientation_key) DO NOTHING"
    ), {n: list(c) for n, c in zip(names, cols, strict=True)})
    rows = session.execute(text(
        "SELECT s.id, s.material_id, s.orientation_key FROM surface s JOIN unnest(CAST(:m AS int[]), CAST(:k AS text[])) "
        "AS u(m, k) ON s.material_id = u.m AND s.orientation_key = u.k"
    ), {"m": list(cols[0]), "k": list(cols[1])}).all()
    return {(r.material_id, r.orientation_key): r.id for r in rows}


# --- sources ------------------------------------------------------------------------------

def find_source(*, session: Session, sha256: str) -> Source | None:
    """The stored source with this sha256, or ``None``."""
    return session.execute(select(Source).where(Source.sha256 == sha256)).scalar_one_or_none()


def claim_source(
    *,
    session: Session,
    kind: str,
    sha256: str,
    uri: str | None = None,
    doi: str | None = None,
    license: str | None = None,  # noqa: A002 - the field's name
    commit: str | None = None,
    description: str | None = None,
    details: dict[str, Any] | None = None,
) -> int | None:
    """Insert the source row in the caller's transaction; ``None`` if it is already stored.

    Two processes claiming the same sha256 at once serialise on the unique index: the
    second waits for the first to commit and then gets ``None``, so a source is ingested
    exactly once.  If the first rolls back, the second proceeds.
    """
    stmt = (
        insert(Source)
        .values(
            kind=kind,
            sha256=sha256,
            uri=uri,
            doi=doi,
            license=license,
            commit=commit,
            description=description,
            details=scrub(details or {}),
        )
        .on_conflict_do_nothing(index_elements=["sha256"])
        .returning(Source.id)
    )
    return session.execute(stmt).scalar()


# --- property values ----------------------------------------------------------------------

def add_bulk_properties(*, session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert bulk property rows (dicts with BulkProperty's columns); skip exact duplicates.

    Returns the number of rows inserted.  Values must already be in canonical units.
    """
    if not rows:
        return 0
    stmt = insert(BulkProperty).on_conflict_do_nothing(
        index_elements=["material_id", "method_id", "definition_id", "source_id"]
    )
    return _insert_many(session, stmt.returning(BulkProperty.id), rows)


def add_surface_properties(*, session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert surface property rows (dicts with SurfaceProperty's columns); skip duplicates."""
    if not rows:
        return 0
    stmt = insert(SurfaceProperty).on_conflict_do_nothing(
        index_elements=["surface_id", "method_id", "definition_id", "source_id"]
    )
    return _insert_many(session, stmt.returning(SurfaceProperty.id), rows)


def get_or_create_configurations(
    *,
    session: Session,
    material_id: int,
    method_id: int,
    keys: Sequence[str],
    source_id: int,
    job_run_id: int,
    structure_ids: Mapping[str, int] | None = None,
    details: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, int]:
    """Ids of the material configurations ``keys`` of (material, method), inserting new ones.

    One statement for all keys (``unnest`` + ``ON CONFLICT DO NOTHING``) and one to read the
    ids back.  A configuration already stored keeps its structure, source and details.

    Returns
    -------
    dict
        key → ``material_configuration.id``.
    """
    keys = list(dict.fromkeys(str(k) for k in keys))
    structure_ids = structure_ids or {}
    details = details or {}
    session.execute(
        text(
            "INSERT INTO material_configuration (material_id, method_id, key, structure_id, source_id, job_run_id, details) "
            "SELECT :material, :method, k, s, :source, :job, d FROM unnest(CAST(:keys AS text[]), CAST(:structures AS bigint[]), "
            "CAST(:details AS jsonb[])) AS t(k, s, d) ON CONFLICT (material_id, method_id, key) DO NOTHING"
        ),
        {"material": material_id, "method": method_id, "source": source_id, "job": job_run_id, "keys": keys,
         "structures": [structure_ids.get(k) for k in keys],
         "details": [_json(scrub(details.get(k, {}))) for k in keys]},
    )
    rows = session.execute(
        select(MaterialConfiguration.key, MaterialConfiguration.id).where(
            MaterialConfiguration.material_id == material_id, MaterialConfiguration.method_id == method_id,
            MaterialConfiguration.key.in_(keys))  # type: ignore[attr-defined]
    ).all()
    return {r.key: r.id for r in rows}


def add_configuration_values(
    *,
    session: Session,
    material_id: int,
    method_id: int,
    source_id: int,
    job_run_id: int,
    values: Mapping[str, Mapping[str, float]],
    units: Mapping[str, str] | None = None,
    structure_ids: Mapping[str, int] | None = None,
    details: Mapping[str, dict[str, Any]] | None = None,
) -> int:
    """Store per-configuration values: ``values[key][property] = value`` for one material and method.

    The per-configuration API (used by table ingest and by computed datasets such as
    vacancy-cluster formation energies with their pairwise distances as descriptors).

    Parameters
    ----------
    session
        The caller's session; nothing is committed here.
    material_id, method_id
        From :func:`get_or_create_material` and :func:`get_or_create_method`.
    source_id, job_run_id
        From :func:`claim_source` and :func:`job_run`.
    values
        Configuration key (e.g. ``"divacancy:1NN"``, a table's row id) → property name →
        value.  Properties must be definitions of scope ``configuration``, ``bulk``,
        ``defect`` or ``mechanical`` (add new ones with :func:`add_definition`).
    units
        Property name → unit of the given values (pint syntax); values are converted to the
        definition's canonical unit.  Default: already canonical.
    structure_ids
        Configuration key → ``configuration.id`` of its atomic structure, when stored.
    details
        Configuration key → JSON details stored with the configuration.

    Returns
    -------
    int
        Values inserted (a value already stored for (configuration, property, source) is
        left as it is and not counted).

    Raises
    ------
    VocabularyError
        If a property is not a definition, or is of ``surface``/``composition`` scope.
    ValueError
        If a unit does not convert to the canonical unit, or a value is not finite.
    """
    from matstore.ingest.units import conversion_factor

    defs = definitions(session=session)
    factors: dict[str, float] = {}
    for name in {p for per_key in values.values() for p in per_key}:
        d = defs.get(name)
        if d is None:
            raise VocabularyError(unknown_definition_message(name, list(defs)))
        if d.scope in ("surface", "composition"):
            raise VocabularyError(f"{name} is a {d.scope} definition and cannot be a per-configuration value")
        factors[name] = conversion_factor((units or {}).get(name, d.unit), d.unit)
    ids = get_or_create_configurations(session=session, material_id=material_id, method_id=method_id, keys=list(values),
                                       source_id=source_id, job_run_id=job_run_id, structure_ids=structure_ids, details=details)
    rows = []
    for key, per_key in values.items():
        for name, value in per_key.items():
            converted = float(value) * factors[name]
            if not math.isfinite(converted):
                raise ValueError(f"configuration {key!r}: {name} = {value} is not finite")
            rows.append({"configuration_id": ids[str(key)], "definition_id": defs[name].id, "value": converted,
                         "source_id": source_id, "job_run_id": job_run_id,
                         "details": {"unit": (units or {}).get(name, defs[name].unit)}})
    return add_configuration_properties(session=session, rows=rows)


def add_configuration_properties(*, session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert configuration_property rows (dicts of its columns, canonical units); skip duplicates."""
    if not rows:
        return 0
    stmt = insert(ConfigurationProperty).on_conflict_do_nothing(
        index_elements=["configuration_id", "definition_id", "source_id"]
    )
    return _insert_many(session, stmt.returning(ConfigurationProperty.id), rows)


def _json(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, allow_nan=False)


def _insert_many(session: Session, stmt: Any, rows: Sequence[dict[str, Any]]) -> int:
    """Execute ``stmt`` for ``rows`` as one executemany (one cached statement, batched
    VALUES); return how many rows were inserted (those ``RETURNING`` an id).

    Rows are completed to the same keys first, because an executemany binds one key set.
    """
    keys = sorted({k for row in rows for k in row})
    uniform = [{k: row.get(k, _DEFAULTS.get(k)) for k in keys} for row in rows]
    return len(session.execute(stmt, uniform).all())


#: Values of optional columns when some rows of a batch omit them.
_DEFAULTS: dict[str, Any] = {"details": {}}


# --- job runs -----------------------------------------------------------------------------

def start_job_run(*, engine: Engine, kind: str, parameters: dict[str, Any]) -> int:
    """Insert a ``running`` job_run row in its own transaction and return its id."""
    with Session(engine) as session:
        run = JobRun(
            kind=kind,
            parameters=scrub(parameters),
            code_version=code_version(),
            git_commit=git_commit(),
            host=host_name(),
            pid=os.getpid(),
        )
        session.add(run)
        session.commit()
        return run.id  # type: ignore[return-value]


def finish_job_run(
    *,
    engine: Engine,
    job_run_id: int,
    status: str,
    error: str | None = None,
    summary: dict[str, Any] | None = None,
) -> None:
    """Set a job run's end time, status, error text (credentials scrubbed) and summary."""
    values: dict[str, Any] = {"status": status, "finished_at": datetime.now(UTC)}
    if error is not None:
        values["error"] = scrub_text(error)
    if summary is not None:
        values["summary"] = scrub(summary)
    with Session(engine) as session:
        session.execute(update(JobRun).where(JobRun.id == job_run_id).values(**values))
        session.commit()


def reap_lost_runs(*, engine: Engine) -> int:
    """Mark ``failed`` the ``running`` job runs of this host whose process no longer exists.

    A run killed with ``kill -9`` (or by the OOM killer) cannot record its own end; its data
    were rolled back with its transaction, and this makes its ``job_run`` row say so.  Runs
    of other hosts are left alone (queue jobs of lost workers are handled by
    ``matstore.jobs``).  Returns the number of rows marked.
    """
    with Session(engine) as session:
        rows = session.execute(
            select(JobRun.id, JobRun.pid).where(JobRun.status == "running", JobRun.host == host_name())
        ).all()
        lost = [r.id for r in rows if r.pid is not None and r.pid != os.getpid() and not _process_alive(r.pid)]
        if lost:
            session.execute(update(JobRun).where(JobRun.id.in_(lost)).values(
                status="failed", finished_at=datetime.now(UTC), error="process lost (killed or crashed) before it finished"))
            session.commit()
        return len(lost)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobRunHandle:
    """What :func:`job_run` yields: the run's id and a summary dict the job fills in."""

    def __init__(self, job_run_id: int) -> None:
        self.id = job_run_id
        self.summary: dict[str, Any] = {}
        self.status = "succeeded"


@contextmanager
def job_run(*, engine: Engine, kind: str, parameters: dict[str, Any]) -> Iterator[JobRunHandle]:
    """Record a job run around a block: ``running`` → ``succeeded``/``skipped`` or ``failed``.

    On an exception the run is marked ``failed`` with the error message and the exception
    propagates.  The block may set ``handle.status = "skipped"`` (e.g. nothing new to do).
    """
    reap_lost_runs(engine=engine)
    handle = JobRunHandle(start_job_run(engine=engine, kind=kind, parameters=parameters))
    try:
        yield handle
    except BaseException as exc:
        message = f"{exc.__class__.__name__}: {exc}"
        log.debug("job run %s failed:\n%s", handle.id, traceback.format_exc())
        finish_job_run(engine=engine, job_run_id=handle.id, status="failed", error=message, summary=handle.summary)
        raise
    finish_job_run(engine=engine, job_run_id=handle.id, status=handle.status, summary=handle.summary)
