"""Provenance: how a number was produced (``method``), where it came from (``source``),
and which run put it in the store (``job_run``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Column, DateTime, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from matstore.schema.base import created_at_field, jsonb_field

METHOD_KINDS = ("calculator", "interatomic_potential", "dft", "experiment", "model", "other")
SOURCE_KINDS = ("computation", "file", "dataset")
JOB_STATUSES = ("running", "succeeded", "failed", "skipped")


class Method(SQLModel, table=True):
    """How a value was produced: a level of theory or an interatomic potential.

    Examples: ASE's EMT (``name='emt'``), a LAMMPS EAM file (``name='lammps:Cu_u3.eam'``,
    ``potential_sha256`` set), an OpenKIM model (``name`` is the KIM id, e.g.
    ``EAM_Dynamo_FoilesBaskesDaw_1986Universal3_Cu__MO_666348409573_004``), ``DFT-PBE``.
    ``parameters`` holds the calculator's parameter dump (ASE ``todict()`` style) and
    ``software`` the versions of the codes used.  A method is unique by name and the
    sha256 of its canonical parameters (``parameters_sha256``).
    """

    __tablename__ = "method"
    __table_args__ = (
        UniqueConstraint("name", "parameters_sha256"),
        CheckConstraint(f"kind IN {METHOD_KINDS!r}", name="kind_known"),
        {"comment": "How a value was produced: calculator, interatomic potential or level of theory."},
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(Text, nullable=False, comment="Short identifier, e.g. emt, lammps:Cu_u3.eam, an OpenKIM model id"))
    kind: str = Field(sa_column=Column(Text, nullable=False, comment="calculator | interatomic_potential | dft | experiment | model | other"))
    calculator: str | None = Field(default=None, sa_column=Column(Text, comment="ASE calculator or code name"))
    potential: str | None = Field(default=None, sa_column=Column(Text, comment="Potential file name or OpenKIM model id"))
    potential_sha256: str | None = Field(default=None, sa_column=Column(Text, comment="sha256 of the potential file's bytes"))
    parameters: dict[str, Any] = jsonb_field(comment="Calculator parameters (todict-style dump)")
    parameters_sha256: str = Field(sa_column=Column(Text, nullable=False, comment="sha256 of canonical JSON of parameters"))
    software: dict[str, Any] = jsonb_field(comment="Software versions, e.g. {'ase': '3.23.0'}")
    description: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = created_at_field()


class Source(SQLModel, table=True):
    """Where records came from: a computation, a file or a published dataset.

    ``sha256`` identifies the source and makes re-ingest idempotent: for a file it is the
    sha256 of its bytes, for a computation the sha256 of its canonical task description.
    Datasets record their URL, DOI, licence and repository commit.
    """

    __tablename__ = "source"
    __table_args__ = (
        UniqueConstraint("sha256"),
        CheckConstraint(f"kind IN {SOURCE_KINDS!r}", name="kind_known"),
        CheckConstraint("sha256 ~ '^[0-9a-f]{64}$'", name="sha256_hex"),
        {"comment": "Origin of records: computation, file (sha256 of bytes) or dataset."},
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(sa_column=Column(Text, nullable=False, comment="computation | file | dataset"))
    sha256: str = Field(sa_column=Column(Text, nullable=False, comment="sha256 of the file bytes or of the canonical computation spec"))
    uri: str | None = Field(default=None, sa_column=Column(Text, comment="File path or URL"))
    doi: str | None = Field(default=None, sa_column=Column(Text))
    license: str | None = Field(default=None, sa_column=Column(Text))
    commit: str | None = Field(default=None, sa_column=Column(Text, comment="Repository commit of a dataset"))
    description: str | None = Field(default=None, sa_column=Column(Text))
    details: dict[str, Any] = jsonb_field(comment="Anything else: citation, mapping used, computation spec")
    created_at: datetime = created_at_field()


class JobRun(SQLModel, table=True):
    """One run of an ingest, fit, refit or pipeline job.

    Holds the job's parameters, the code version (package version and git commit), the
    host and process, start/end times, status and error text.  Credentials never appear
    here: parameters are scrubbed of database URLs before they are stored.
    """

    __tablename__ = "job_run"
    __table_args__ = (
        CheckConstraint(f"status IN {JOB_STATUSES!r}", name="status_known"),
        {"comment": "Every ingest/fit/refit/pipeline run with its parameters and outcome."},
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(sa_column=Column(Text, nullable=False, comment="e.g. ingest_compute, ingest_table, fit, refit, pipeline"))
    parameters: dict[str, Any] = jsonb_field()
    code_version: str = Field(sa_column=Column(Text, nullable=False, comment="matstore package version"))
    git_commit: str | None = Field(default=None, sa_column=Column(Text))
    host: str = Field(sa_column=Column(Text, nullable=False))
    pid: int | None = None
    started_at: datetime = created_at_field()
    finished_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    status: str = Field(default="running", sa_column=Column(Text, nullable=False, server_default="running"))
    error: str | None = Field(default=None, sa_column=Column(Text))
    summary: dict[str, Any] = jsonb_field(comment="Counts and report of the run")
