"""Shared pieces of the schema: metadata naming convention, time stamps, JSONB columns."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

# Deterministic constraint names, so that Alembic migrations can refer to them and
# error messages name the rule that was broken (e.g. ck_bulk_property_value_finite).
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = SQLModel.metadata

#: Units a property definition may use (pint-parsable).  The CHECK constraint on
#: ``property_definition.unit`` is generated from this tuple.
KNOWN_UNITS: tuple[str, ...] = (
    "angstrom",
    "eV",
    "eV/atom",
    "GPa",
    "MPa",
    "J/m^2",
    "N/m",
    "1/K",
    "dimensionless",
    "percent",
)


def utcnow() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(UTC)


def created_at_field() -> Any:
    """A ``created_at timestamptz NOT NULL DEFAULT now()`` column."""
    return Field(
        default_factory=utcnow,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


def jsonb_field(*, nullable: bool = False, comment: str | None = None) -> Any:
    """A JSONB column defaulting to an empty object."""
    return Field(
        default_factory=dict,
        sa_column=Column(JSONB, nullable=nullable, server_default="{}", comment=comment),
    )


def finite_check(column: str) -> str:
    """SQL for "``column`` is a finite number" (PostgreSQL floats admit NaN and ±Infinity)."""
    return f"{column} <> 'NaN'::float8 AND {column} <> 'Infinity'::float8 AND {column} <> '-Infinity'::float8"
