"""The property vocabulary and bulk property values."""

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
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from matstore.schema.base import created_at_field, finite_check, jsonb_field

#: Relative tolerance within which two stored values of one property of one entity and method
#: agree: |a − b| ≤ CONFLICT_RTOL · max(|a|, |b|).  It lets the same number through in another
#: unit (3.615 Å and 0.3615 nm); any other published digit conflicts.  Ingest refuses a
#: value from another source beyond it (:func:`matstore.ingest.storing.check_conflicts`); a fit
#: reports stored values beyond it (:func:`matstore.models.dataset.build_training_set`).
CONFLICT_RTOL = 1e-6

PROPERTY_SCOPES = ("bulk", "surface", "configuration", "composition", "defect", "mechanical")


class PropertyDefinition(SQLModel, table=True):
    """A controlled vocabulary entry: property name, canonical unit, scope, description.

    In the spirit of the OpenKIM property definitions and ColabFit: every stored value refers
    to one definition and is expressed in its canonical ``unit`` (converted with pint at
    ingest).  ``scope`` says whether the value belongs to a material, a surface or a
    configuration (see :mod:`matstore.schema.vocabulary`).  Built-in definitions
    (``builtin``) are seeded at migration; user definitions are added with
    :func:`matstore.crud.add_definition`, which validates the unit with pint and records the
    addition with its job run in ``vocabulary_addition``.
    """

    __tablename__ = "property_definition"
    __table_args__ = (
        UniqueConstraint("name"),
        CheckConstraint("unit <> ''", name="unit_given"),
        CheckConstraint(f"scope IN {PROPERTY_SCOPES!r}", name="scope_known"),
        CheckConstraint("name ~ '^[a-z][a-z0-9_]*$'", name="name_snake_case"),
        {"comment": "Controlled vocabulary of property names with canonical units."},
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(Text, nullable=False, comment="snake_case name, e.g. lattice_constant"))
    unit: str = Field(sa_column=Column(Text, nullable=False, comment="Canonical unit (pint syntax)"))
    scope: str = Field(sa_column=Column(Text, nullable=False, comment="bulk | surface | configuration | composition | defect | mechanical"))
    symbol: str | None = Field(default=None, sa_column=Column(Text, comment="Symbol, e.g. γ, C11"))
    description: str = Field(sa_column=Column(Text, nullable=False))
    builtin: bool = Field(default=True, sa_column=Column(Boolean, nullable=False, server_default="true",
                                                         comment="Seeded with matstore (not redefinable); false: added by a user"))


class VocabularyAddition(SQLModel, table=True):
    """The job run that added a user definition (one row per user definition).

    Kept apart from ``property_definition`` so that the vocabulary never depends on the
    lifetime of job-run rows; built-in definitions have no row here.
    """

    __tablename__ = "vocabulary_addition"
    __table_args__ = ({"comment": "Which job run added each user-defined property definition."},)

    definition_id: int = Field(sa_column=Column(ForeignKey("property_definition.id", ondelete="CASCADE"), primary_key=True))
    job_run_id: int = Field(sa_column=Column(ForeignKey("job_run.id"), nullable=False, index=True))
    created_at: datetime = created_at_field()


class BulkProperty(SQLModel, table=True):
    """One bulk property value of a material computed or measured by a method.

    ``value`` is in the definition's canonical unit; ``uncertainty`` (same unit) is optional.
    ``flag`` is set when a value failed validation but was kept because the ingest mapping
    said so (e.g. ``implausible: cohesive_energy > 20 eV/atom``); unflagged values passed.
    Unique by (material, method, definition, source): the same source never stores a value twice.
    """

    __tablename__ = "bulk_property"
    __table_args__ = (
        UniqueConstraint("material_id", "method_id", "definition_id", "source_id"),
        CheckConstraint(finite_check("value"), name="value_finite"),
        CheckConstraint("uncertainty IS NULL OR (uncertainty >= 0 AND " + finite_check("uncertainty") + ")", name="uncertainty_valid"),
        {"comment": "Bulk property values in canonical units, with method, source and job run."},
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    # References are checked by triggers once per statement (alembic revision 0013), not by
    # per-row foreign-key triggers: see that revision.
    material_id: int = Field(sa_column=Column(Integer, nullable=False, index=True, comment="material.id (checked by a trigger)"))
    method_id: int = Field(sa_column=Column(Integer, nullable=False, index=True, comment="method.id (checked by a trigger)"))
    definition_id: int = Field(sa_column=Column(Integer, nullable=False, index=True, comment="property_definition.id (checked by a trigger)"))
    value: float = Field(sa_column=Column(Float, nullable=False, comment="Value in the definition's canonical unit"))
    uncertainty: float | None = Field(default=None, sa_column=Column(Float))
    flag: str | None = Field(default=None, sa_column=Column(Text, comment="Validation failure kept on purpose, else NULL"))
    source_id: int = Field(sa_column=Column(Integer, nullable=False, index=True, comment="source.id (checked by a trigger)"))
    job_run_id: int = Field(sa_column=Column(Integer, nullable=False, index=True, comment="job_run.id (checked by a trigger)"))
    configuration_id: int | None = Field(default=None, sa_column=Column(BigInteger, index=True, comment="configuration.id (checked by a trigger)"))
    details: dict[str, Any] = jsonb_field(comment="Computation details: fit residuals, strain steps, original unit/column")
    created_at: datetime = created_at_field()
