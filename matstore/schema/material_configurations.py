"""Identified configurations of a material and their property values (per-configuration data).

A *material configuration* is one identified instance of a material computed or measured by
a method: a defect arrangement in a MoS2 monolayer, a vacancy cluster in a Cu supercell, an
alloy sample.  It is named by a key unique within (material, method), for example the
``_id`` column of a published table or ``divacancy:1NN``, and may point at its atomic
structure in ``configuration`` when one is stored.  Its values (a formation energy, the
distances between its defects, ...) live in ``configuration_property``, one row per
(configuration, property definition, source), exactly as bulk values do per material.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
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


class MaterialConfiguration(SQLModel, table=True):
    """One identified configuration of a material by a method (see the module docstring).

    Unique by (material, method, key).  ``structure_id`` links the atomic positions
    (``configuration``) when they are known; ``source_id`` and ``job_run_id`` record where
    the configuration was first named.
    """

    __tablename__ = "material_configuration"
    __table_args__ = (
        UniqueConstraint("material_id", "method_id", "key"),
        CheckConstraint("length(key) BETWEEN 1 AND 200", name="key_given"),
        {"comment": "Identified configurations (defect arrangements, supercells, samples) of a material by a method."},
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    material_id: int = Field(sa_column=Column(ForeignKey("material.id"), nullable=False, index=True))
    method_id: int = Field(sa_column=Column(ForeignKey("method.id"), nullable=False, index=True))
    key: str = Field(sa_column=Column(Text, nullable=False, comment="Identifier within (material, method), e.g. a table's row id"))
    structure_id: int | None = Field(default=None, sa_column=Column(BigInteger, ForeignKey("configuration.id"), index=True,
                                                                    comment="Atomic structure, when stored"))
    source_id: int = Field(sa_column=Column(ForeignKey("source.id"), nullable=False, index=True))
    job_run_id: int = Field(sa_column=Column(ForeignKey("job_run.id"), nullable=False, index=True))
    details: dict[str, Any] = jsonb_field(comment="Anything the source says about the configuration")
    created_at: datetime = created_at_field()


class ConfigurationProperty(SQLModel, table=True):
    """One property value of a material configuration, in the definition's canonical unit.

    Unique by (configuration, definition, source); ``flag`` as for bulk values.
    """

    __tablename__ = "configuration_property"
    __table_args__ = (
        UniqueConstraint("configuration_id", "definition_id", "source_id"),
        CheckConstraint(finite_check("value"), name="value_finite"),
        CheckConstraint("uncertainty IS NULL OR (uncertainty >= 0 AND " + finite_check("uncertainty") + ")", name="uncertainty_valid"),
        {"comment": "Per-configuration property values in canonical units, with source and job run."},
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    # References are checked by triggers once per statement (alembic revision 0013), not by
    # per-row foreign-key triggers: see that revision.
    configuration_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True, comment="material_configuration.id (checked by a trigger)"))
    definition_id: int = Field(sa_column=Column(Integer, nullable=False, index=True, comment="property_definition.id (checked by a trigger)"))
    value: float = Field(sa_column=Column(Float, nullable=False, comment="Value in the definition's canonical unit"))
    uncertainty: float | None = Field(default=None, sa_column=Column(Float))
    flag: str | None = Field(default=None, sa_column=Column(Text, comment="Validation failure kept on purpose, else NULL"))
    source_id: int = Field(sa_column=Column(Integer, nullable=False, index=True, comment="source.id (checked by a trigger)"))
    job_run_id: int = Field(sa_column=Column(Integer, nullable=False, index=True, comment="job_run.id (checked by a trigger)"))
    details: dict[str, Any] = jsonb_field(comment="Original column, row, raw text and unit")
    created_at: datetime = created_at_field()
