"""Surfaces (orientation of a crystal face of a material) and their property values."""

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


class Surface(SQLModel, table=True):
    """A surface orientation of a material.

    The orientation is always stored as the unit normal (``normal_x/y/z``, reduced by the
    cubic point group to the representative with ``normal_x >= normal_y >= normal_z >= 0``)
    and as the angles of that normal in the standard stereographic triangle
    [100]–[110]–[111]: ``theta_deg`` is the angle from [100] (0 to 54.74°) and ``phi_deg``
    the azimuth about [100] measured from the (001) mirror plane towards [111] (0 to 45°).
    ``miller_h/k/l`` hold the reduced integer Miller index (h >= k >= l >= 0) when the normal
    is rational with small indices, else NULL (orientations given only as angles).
    ``orientation_key`` (``hkl:2,1,0`` or ``n:0.894427,0.447214,0.000000``) makes
    (material, orientation) unique.  See :mod:`matstore.orientation`.
    """

    __tablename__ = "surface"
    __table_args__ = (
        UniqueConstraint("material_id", "orientation_key"),
        CheckConstraint("NOT (miller_h = 0 AND miller_k = 0 AND miller_l = 0)", name="miller_not_zero"),
        CheckConstraint(
            "(miller_h IS NULL AND miller_k IS NULL AND miller_l IS NULL) OR "
            "(miller_h >= miller_k AND miller_k >= miller_l AND miller_l >= 0)",
            name="miller_reduced",
        ),
        CheckConstraint(
            "abs(normal_x*normal_x + normal_y*normal_y + normal_z*normal_z - 1) < 1e-6",
            name="normal_unit",
        ),
        CheckConstraint("theta_deg >= 0 AND theta_deg <= 54.7357", name="theta_in_triangle"),
        CheckConstraint("phi_deg >= 0 AND phi_deg <= 45.0001", name="phi_in_triangle"),
        {"comment": "Surface orientations: unit normal, stereographic angles, Miller index."},
    )

    id: int | None = Field(default=None, primary_key=True)
    material_id: int = Field(sa_column=Column(ForeignKey("material.id"), nullable=False, index=True))
    orientation_key: str = Field(sa_column=Column(Text, nullable=False))
    miller_h: int | None = Field(default=None, sa_column=Column(Integer))
    miller_k: int | None = Field(default=None, sa_column=Column(Integer))
    miller_l: int | None = Field(default=None, sa_column=Column(Integer))
    normal_x: float = Field(sa_column=Column(Float, nullable=False))
    normal_y: float = Field(sa_column=Column(Float, nullable=False))
    normal_z: float = Field(sa_column=Column(Float, nullable=False))
    theta_deg: float = Field(sa_column=Column(Float, nullable=False, comment="Angle of the normal from [100], degrees"))
    phi_deg: float = Field(sa_column=Column(Float, nullable=False, comment="Azimuth about [100] from (001) plane, degrees"))
    created_at: datetime = created_at_field()


class SurfaceProperty(SQLModel, table=True):
    """One property value of a surface (γ, τ_ij, surface stiffness components, ...).

    Tensor components are expressed in the surface frame described in ``details``
    (``frame``: in-plane axes e1, e2 as crystal directions).  Unique by
    (surface, method, definition, source).
    """

    __tablename__ = "surface_property"
    __table_args__ = (
        UniqueConstraint("surface_id", "method_id", "definition_id", "source_id"),
        CheckConstraint(finite_check("value"), name="value_finite"),
        CheckConstraint("uncertainty IS NULL OR (uncertainty >= 0 AND " + finite_check("uncertainty") + ")", name="uncertainty_valid"),
        {"comment": "Surface property values in canonical units, with method, source and job run."},
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    # References are checked by triggers once per statement (alembic revision 0013), not by
    # per-row foreign-key triggers: see that revision.
    surface_id: int = Field(sa_column=Column(Integer, nullable=False, index=True, comment="surface.id (checked by a trigger)"))
    method_id: int = Field(sa_column=Column(Integer, nullable=False, index=True, comment="method.id (checked by a trigger)"))
    definition_id: int = Field(sa_column=Column(Integer, nullable=False, index=True, comment="property_definition.id (checked by a trigger)"))
    value: float = Field(sa_column=Column(Float, nullable=False))
    uncertainty: float | None = Field(default=None, sa_column=Column(Float))
    flag: str | None = Field(default=None, sa_column=Column(Text))
    source_id: int = Field(sa_column=Column(Integer, nullable=False, index=True, comment="source.id (checked by a trigger)"))
    job_run_id: int = Field(sa_column=Column(Integer, nullable=False, index=True, comment="job_run.id (checked by a trigger)"))
    configuration_id: int | None = Field(default=None, sa_column=Column(BigInteger, index=True, comment="configuration.id (checked by a trigger)"))
    details: dict[str, Any] = jsonb_field(comment="Slab layers, convergence, surface frame, original unit")
    created_at: datetime = created_at_field()
