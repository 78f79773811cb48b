"""Materials: a composition with a crystal prototype."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from matstore.schema.base import created_at_field, jsonb_field


class Material(SQLModel, table=True):
    """A material: reduced formula (``Cu``, ``AlNi``, ``MoS2``, ``La0.5Ce0.5PO4``) and prototype.

    ``formula`` is the reduced formula of pymatgen's ``Composition`` (elements ordered by
    electronegativity, amounts of 1 omitted; see :func:`matstore.composition.parse_formula`)
    and ``composition`` its element amounts, e.g. ``{"La": 0.5, "Ce": 0.5, "P": 1, "O": 4}``.
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
