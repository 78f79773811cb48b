"""Atomistic configurations with their energies, forces and virials."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Integer,
    SmallInteger,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from matstore.schema.base import created_at_field, finite_check, jsonb_field


class Configuration(SQLModel, table=True):
    """An atomistic structure with optional energy, forces and virial.

    Arrays (PostgreSQL ``float8[]``, row-major):

    - ``numbers``: (N,) atomic numbers
    - ``positions``: (N, 3) Cartesian positions, Å
    - ``cell``: (3, 3) cell vectors as rows, Å
    - ``pbc``: (3,) periodic boundary flags
    - ``energy``: total potential energy, eV
    - ``forces``: (N, 3) eV/Å
    - ``virial``: (3, 3) eV; the virial W = −V·σ, σ the stress (eV/Å³, positive in tension)

    ``content_sha256`` is the sha256 of the canonical bytes of all arrays above
    (see :func:`matstore.ingest.structures.configuration_hash`), so an identical structure with
    identical labels is stored once.  Machine-learned potentials need energies, forces and
    virials to generalise, so all three are kept whenever the input provides them.
    """

    __tablename__ = "configuration"
    __table_args__ = (
        UniqueConstraint("content_sha256"),
        CheckConstraint("n_atoms > 0", name="n_atoms_positive"),
        CheckConstraint("cardinality(numbers) = n_atoms", name="numbers_length"),
        CheckConstraint("cardinality(positions) = 3 * n_atoms", name="positions_shape"),
        CheckConstraint("forces IS NULL OR cardinality(forces) = 3 * n_atoms", name="forces_shape"),
        CheckConstraint("cardinality(cell) = 9", name="cell_shape"),
        CheckConstraint("virial IS NULL OR cardinality(virial) = 9", name="virial_shape"),
        CheckConstraint("energy IS NULL OR (" + finite_check("energy") + ")", name="energy_finite"),
        {"comment": "Atomistic structures (Å) with energy (eV), forces (eV/Å), virial (eV)."},
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    content_sha256: str = Field(sa_column=Column(Text, nullable=False))
    n_atoms: int = Field(sa_column=Column(Integer, nullable=False))
    formula: str = Field(sa_column=Column(Text, nullable=False, comment="Hill formula"))
    numbers: list[int] = Field(sa_column=Column(ARRAY(SmallInteger), nullable=False))
    positions: list[list[float]] = Field(sa_column=Column(ARRAY(Float, dimensions=2), nullable=False, comment="(N,3) Å"))
    cell: list[list[float]] = Field(sa_column=Column(ARRAY(Float, dimensions=2), nullable=False, comment="(3,3) Å"))
    pbc: list[bool] = Field(sa_column=Column(ARRAY(Boolean), nullable=False))
    energy: float | None = Field(default=None, sa_column=Column(Float, comment="eV"))
    forces: list[list[float]] | None = Field(default=None, sa_column=Column(ARRAY(Float, dimensions=2), comment="(N,3) eV/Å"))
    virial: list[list[float]] | None = Field(default=None, sa_column=Column(ARRAY(Float, dimensions=2), comment="(3,3) eV"))
    # References to method, source and job_run are checked by triggers once per statement
    # (alembic revision 0011), not by per-row foreign-key triggers: see that revision.
    method_id: int | None = Field(default=None, sa_column=Column(Integer, index=True, comment="method.id (checked by a trigger)"))
    source_id: int = Field(sa_column=Column(Integer, nullable=False, index=True, comment="source.id (checked by a trigger)"))
    job_run_id: int = Field(sa_column=Column(Integer, nullable=False, index=True, comment="job_run.id (checked by a trigger)"))
    info: dict[str, Any] = jsonb_field(comment="Per-frame metadata from the file (extxyz info, frame index)")
    created_at: datetime = created_at_field()


class TrainingSet(SQLModel, table=True):
    """A named, reproducible selection of configurations written out as a training set.

    ``selection`` holds the filters that chose the members (method, source, material) when
    the set was first exported; ``training_set_member`` holds the members in file order, so
    the set can be written again by name even after more matching configurations arrive.
    ``content_sha256`` is the sha256 of the version tag ``matstore.training_set.v1`` and the
    members' ``configuration.content_sha256`` in order
    (:func:`matstore.export.training_set_hash`): equal hashes mean equal training data
    (structures and labels), whatever the file format or key prefix.
    """

    __tablename__ = "training_set"
    __table_args__ = (
        UniqueConstraint("name"),
        CheckConstraint("length(name) BETWEEN 1 AND 200", name="name_given"),
        CheckConstraint("n_configurations >= 0", name="n_configurations_nonnegative"),
        {"comment": "Named training sets (selection + content hash) for reproducible export."},
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(Text, nullable=False))
    selection: dict[str, Any] = jsonb_field(comment="Filters that chose the members: method, source, material")
    content_sha256: str = Field(sa_column=Column(Text, nullable=False, comment="sha256 over the members' content hashes, in order"))
    n_configurations: int = Field(sa_column=Column(Integer, nullable=False))
    job_run_id: int = Field(sa_column=Column(ForeignKey("job_run.id"), nullable=False, index=True))
    created_at: datetime = created_at_field()


class TrainingSetMember(SQLModel, table=True):
    """One configuration of a training set, at its 0-based position in the exported file."""

    __tablename__ = "training_set_member"
    __table_args__ = ({"comment": "Members of a training set, in file order."},)

    training_set_id: int = Field(sa_column=Column(ForeignKey("training_set.id", ondelete="CASCADE"), primary_key=True))
    position: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    configuration_id: int = Field(sa_column=Column(BigInteger, ForeignKey("configuration.id"), nullable=False, index=True))
