"""Equation models and versions in the store: create, refit, promote, resolve, list.

A new version is created only when the data snapshot or the spec changed; concurrent fits
of one model serialise on a row lock of ``equation_model`` so that two refits at once end
with exactly one new version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import Session

from matstore.models.dataset import TrainingSet
from matstore.models.spec import FitSpec
from matstore.schema import EquationAlias, EquationModel, EquationPrediction, EquationVersion

_REF = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*?)(?::(?P<version>\d+)|@(?P<alias>[a-z][a-z0-9_-]*))?$")


class ModelNotFoundError(LookupError):
    """No equation model, version or alias matches the reference."""


@dataclass(frozen=True)
class VersionOutcome:
    """Result of :func:`store_version`: the version row and whether it is new."""

    version: EquationVersion
    created: bool
    reason: str


def ensure_model(session: Session, spec: FitSpec, target_unit: str) -> EquationModel:
    """The ``equation_model`` row of ``spec.name``, created or with its spec updated, locked FOR UPDATE."""
    session.execute(
        insert(EquationModel)
        .values(name=spec.name, target=spec.target, target_unit=target_unit,
                spec=spec.model_dump(mode="json"), description=spec.description)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    model = session.execute(
        select(EquationModel).where(EquationModel.name == spec.name).with_for_update()
    ).scalar_one()
    model.spec = spec.model_dump(mode="json")
    model.target = spec.target
    model.target_unit = target_unit
    return model


def latest_version(session: Session, model_id: int) -> EquationVersion | None:
    """The highest version of a model, or ``None``."""
    return session.execute(
        select(EquationVersion).where(EquationVersion.model_id == model_id)
        .order_by(EquationVersion.version.desc()).limit(1)
    ).scalar_one_or_none()


def unchanged_reason(latest: EquationVersion | None, spec: FitSpec, training: TrainingSet) -> str | None:
    """Why no new version is needed (same data snapshot and spec as ``latest``), else ``None``."""
    if latest is None:
        return None
    if latest.dataset_sha256 == training.sha256 and latest.spec_sha256 == spec.sha256():
        return f"data snapshot and spec unchanged since version {latest.version}"
    return None


def store_version(
    engine: Engine,
    *,
    spec: FitSpec,
    training: TrainingSet,
    values: dict[str, Any],
    predictions: list[dict[str, Any]],
    job_run_id: int | None,
) -> VersionOutcome:
    """Insert a new version (and its per-row predictions) unless nothing changed.

    ``values`` holds the EquationVersion columns produced by the fit (equation, front,
    metrics, ...).  Runs in one transaction holding the model's row lock.
    """
    with Session(engine, expire_on_commit=False) as session:
        model = ensure_model(session, spec, training.units["target"])
        latest = latest_version(session, model.id)
        reason = unchanged_reason(latest, spec, training)
        if reason:
            session.commit()
            return VersionOutcome(latest, False, reason)  # type: ignore[arg-type]
        version = EquationVersion(
            model_id=model.id,
            version=(latest.version + 1) if latest else 1,
            parent_id=latest.id if latest else None,
            dataset_sha256=training.sha256,
            dataset_query=training.query,
            n_rows=training.n_rows,
            spec_sha256=spec.sha256(),
            features=[{"name": n, "unit": training.units[n]} for n in spec.features],
            target_unit=training.units["target"],
            seed=spec.seed,
            job_run_id=job_run_id,
            **values,
        )
        session.add(version)
        session.flush()
        if predictions:
            session.execute(insert(EquationPrediction), [dict(p, version_id=version.id) for p in predictions])
        session.commit()
        why = "first version" if latest is None else (
            "data snapshot changed" if latest.dataset_sha256 != training.sha256 else "spec changed")
        return VersionOutcome(version, True, why)


def promote(engine: Engine, *, name: str, version: int, alias: str) -> EquationVersion:
    """Point ``alias`` of model ``name`` at ``version`` (creating or moving the alias).

    Raises
    ------
    ModelNotFoundError
        If the model or version does not exist.
    """
    with Session(engine, expire_on_commit=False) as session:
        row = resolve(session, f"{name}:{version}")
        stmt = insert(EquationAlias).values(model_id=row.model_id, alias=alias, version_id=row.id)
        session.execute(stmt.on_conflict_do_update(
            index_elements=["model_id", "alias"], set_={"version_id": row.id, "updated_at": text("now()")}))
        session.commit()
        return row


def resolve(session: Session, ref: str) -> EquationVersion:
    """The version named by ``NAME``, ``NAME:VERSION`` or ``NAME@ALIAS`` (``NAME`` = latest).

    Raises
    ------
    ModelNotFoundError
        If nothing matches; the message says what exists.
    """
    match = _REF.match(ref)
    if not match:
        raise ModelNotFoundError(f"{ref!r} is not NAME, NAME:VERSION or NAME@ALIAS")
    model = session.execute(select(EquationModel).where(EquationModel.name == match["name"])).scalar_one_or_none()
    if model is None:
        known = session.execute(select(EquationModel.name)).scalars().all()
        raise ModelNotFoundError(f"no equation model {match['name']!r}; known: {', '.join(known) or 'none'}")
    query = select(EquationVersion).where(EquationVersion.model_id == model.id)
    if match["version"]:
        query = query.where(EquationVersion.version == int(match["version"]))
    elif match["alias"]:
        query = query.join(EquationAlias, EquationAlias.version_id == EquationVersion.id).where(
            EquationAlias.alias == match["alias"])
    else:
        query = query.order_by(EquationVersion.version.desc()).limit(1)
    row = session.execute(query).scalar_one_or_none()
    if row is None:
        raise ModelNotFoundError(f"{ref!r}: no such version or alias of model {model.name!r}")
    return row


def load_spec(engine: Engine, name: str) -> FitSpec:
    """The stored spec of model ``name`` (for ``matstore refit``).

    Raises
    ------
    ModelNotFoundError
        If no model has this name.
    """
    with Session(engine) as session:
        model = session.execute(select(EquationModel).where(EquationModel.name == name)).scalar_one_or_none()
        if model is None:
            raise ModelNotFoundError(f"no equation model {name!r}")
        return FitSpec.from_stored(model.spec)


def list_models(engine: Engine) -> list[dict[str, Any]]:
    """One dict per model: name, target, unit, number of versions, latest, aliases."""
    sql = text("""
        SELECT m.name, m.target, m.target_unit, count(v.id) AS versions, max(v.version) AS latest,
               (SELECT string_agg(a.alias || '→' || vv.version, ', ' ORDER BY a.alias)
                  FROM equation_alias a JOIN equation_version vv ON vv.id = a.version_id
                 WHERE a.model_id = m.id) AS aliases
        FROM equation_model m LEFT JOIN equation_version v ON v.model_id = m.id
        GROUP BY m.id ORDER BY m.name""")
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sql).mappings()]


def aliases_of(session: Session, version: EquationVersion) -> list[str]:
    """Aliases pointing at ``version``."""
    return list(session.execute(select(EquationAlias.alias).where(EquationAlias.version_id == version.id)).scalars())


def lineage(session: Session, version: EquationVersion) -> list[int]:
    """Version numbers from ``version`` back to the first (parent chain)."""
    chain, current = [], version
    while current is not None:
        chain.append(current.version)
        current = session.get(EquationVersion, current.parent_id) if current.parent_id else None
    return chain
