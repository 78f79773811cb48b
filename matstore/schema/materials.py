"""Materials: a composition with a crystal prototype."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from matstore.schema.base import created_at_field, jsonb_field


class Material(SQLModel, table=True):
    """A material: canonical formula (``Cu``, ``AlNi``, ``MoS2``, ``LaCeP2O8``) and prototype.

    ``formula`` is the smallest whole-number formula of the composition (elements ordered by
    electronegativity, amounts of 1 omitted; ``La0.5Ce0.5PO4`` → ``LaCeP2O8``, see
    :func:`matstore.composition.parse_formula`; earlier versions stored fractional spellings
    as written) and ``composition`` its element amounts, e.g. ``{"La": 1, "Ce": 1, "P": 2, "O": 8}``.
    Unique by (formula, prototype).  ``prototype`` is a Strukturbericht-free lower-case
    name (fcc, bcc, hcp, diamond, sc, ...) or ``unknown`` for structure sets.
    """

    __tablename__ = "material"
    __table_args__ = (
        UniqueConstraint("formula", "prototype"),
        CheckConstraint("formula ~ '^([A-Z][a-z]?[0-9.]*)+$'", name="formula_valid"),
        {"comment": "A composition with a crystal prototype (e.g. Cu, fcc)."},
    )

    id: int | None = Field(default=None, primary_key=True)
    formula: str = Field(sa_column=Column(Text, nullable=False, comment="Reduced chemical formula, e.g. Cu"))
    prototype: str = Field(sa_column=Column(Text, nullable=False, comment="Crystal prototype, e.g. fcc"))
    composition: dict[str, Any] = jsonb_field(comment="Element amounts of the reduced formula, e.g. {\"Mo\": 1, \"S\": 2}")
    description: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = created_at_field()
