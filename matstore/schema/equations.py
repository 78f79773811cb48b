"""Versioned symbolic equations: models, their versions and aliases."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from matstore.schema.base import created_at_field, jsonb_field


class EquationModel(SQLModel, table=True):
    """A named equation model: what it predicts and the spec it is (re)fitted with.

    ``spec`` is the full fit specification (target, features, method filter, factorisation,
    engine, hyper-parameters, seed); ``matstore refit NAME`` re-runs it.
    """

    __tablename__ = "equation_model"
    __table_args__ = (
        UniqueConstraint("name"),
        CheckConstraint("name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]*$'", name="name_valid"),
        {"comment": "Named equation models with the spec they are fitted from."},
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(Text, nullable=False))
    target: str = Field(sa_column=Column(Text, nullable=False, comment="Target property name"))
    target_unit: str = Field(sa_column=Column(Text, nullable=False))
    spec: dict[str, Any] = jsonb_field()
    description: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = created_at_field()


class EquationVersion(SQLModel, table=True):
    """One fitted version of an equation model, traceable to its data and settings.

    Holds the dataset snapshot (sha256 over the sorted training rows and the query text,
    and the row count), feature/target names with units, engine name and versions, every
    hyper-parameter including the seed, the whole Pareto front (complexity, loss, SymPy
    ``srepr``, LaTeX), the selected equation (SymPy ``srepr``, text, LaTeX, canonical hash)
    with the selection criterion, cross-validated metrics, the residual standard deviation,
    the dimensional-analysis verdict, the job run, and the honest ``report`` of the fit
    (nested CV of the whole procedure, fixed-form CV of the selected equation, the form
    selected in each fold and their agreement, errors per group) with the grouped
    cross-conformal prediction interval at ``interval_level`` (alembic revision 0010): either
    ``value ± interval_half_width`` (absolute conformity score, target unit) or
    ``value·(1 ± interval_relative_half_width)`` (relative score ``|y − ŷ|/ŷ``, a dimensionless
    fraction; factorised fits with positive targets, revision 0012) — at most one of the two is
    set (both NULL without an interval); ``report['interval']['score']`` names the score.
    """

    __tablename__ = "equation_version"
    __table_args__ = (
        UniqueConstraint("model_id", "version"),
        CheckConstraint("version >= 1", name="version_positive"),
        CheckConstraint("n_rows >= 0", name="n_rows_nonnegative"),
        CheckConstraint("interval_half_width IS NULL OR interval_relative_half_width IS NULL",
                        name="interval_one_width"),
        {"comment": "Fitted versions of equation models with data snapshot, Pareto front and metrics."},
    )

    id: int | None = Field(default=None, primary_key=True)
    model_id: int = Field(sa_column=Column(ForeignKey("equation_model.id"), nullable=False, index=True))
    version: int = Field(sa_column=Column(Integer, nullable=False))
    parent_id: int | None = Field(default=None, sa_column=Column(ForeignKey("equation_version.id")))
    dataset_sha256: str = Field(sa_column=Column(Text, nullable=False))
    dataset_query: str = Field(sa_column=Column(Text, nullable=False))
    n_rows: int = Field(sa_column=Column(Integer, nullable=False))
    spec_sha256: str = Field(sa_column=Column(Text, nullable=False))
    features: list[dict[str, Any]] | dict[str, Any] = jsonb_field(comment="[{name, unit}] in order")
    target_unit: str = Field(sa_column=Column(Text, nullable=False))
    engine: str = Field(sa_column=Column(Text, nullable=False))
    engine_versions: dict[str, Any] = jsonb_field()
    hyperparameters: dict[str, Any] = jsonb_field()
    seed: int | None = Field(default=None, sa_column=Column(Integer))
    pareto_front: list[dict[str, Any]] | dict[str, Any] = jsonb_field(comment="[{complexity, loss, srepr, latex, text}]")
    equation_srepr: str = Field(sa_column=Column(Text, nullable=False))
    equation_text: str = Field(sa_column=Column(Text, nullable=False))
    equation_latex: str = Field(sa_column=Column(Text, nullable=False))
    equation_sha256: str = Field(sa_column=Column(Text, nullable=False))
    parts: dict[str, Any] = jsonb_field(comment="Factorised parts: {'coefficient': {...}, 'orientation': {...}}")
    selection_criterion: str = Field(sa_column=Column(Text, nullable=False))
    metrics: dict[str, Any] = jsonb_field()
    residual_std: float | None = Field(default=None, sa_column=Column(Float, comment="In target unit"))
    dimension_check: str | None = Field(default=None, sa_column=Column(Text))
    report: dict[str, Any] = jsonb_field(
        comment="Nested and fixed-form CV, per-fold forms and agreement, per-group errors, interval")
    interval_level: float | None = Field(default=None, sa_column=Column(
        Float, comment="Confidence level of the prediction interval, e.g. 0.9"))
    interval_half_width: float | None = Field(default=None, sa_column=Column(
        Float, comment="Half-width of the cross-conformal prediction interval, in target unit"))
    interval_relative_half_width: float | None = Field(default=None, sa_column=Column(
        Float, comment="Relative half-width q of the prediction interval value*(1 ± q), a dimensionless "
                       "fraction (relative conformity score); NULL when interval_half_width is set"))
    job_run_id: int | None = Field(default=None, sa_column=Column(ForeignKey("job_run.id"), index=True))
    created_at: datetime = created_at_field()


class EquationAlias(SQLModel, table=True):
    """A movable alias (``candidate``, ``production``, ...) pointing at one version."""

    __tablename__ = "equation_alias"
    __table_args__ = (
        UniqueConstraint("model_id", "alias"),
        CheckConstraint("alias ~ '^[a-z][a-z0-9_-]*$'", name="alias_valid"),
        {"comment": "Aliases such as production/candidate pointing at equation versions."},
    )

    id: int | None = Field(default=None, primary_key=True)
    model_id: int = Field(sa_column=Column(ForeignKey("equation_model.id"), nullable=False))
    alias: str = Field(sa_column=Column(Text, nullable=False))
    version_id: int = Field(sa_column=Column(ForeignKey("equation_version.id"), nullable=False))
    updated_at: datetime = created_at_field()


class EquationPrediction(SQLModel, table=True):
    """Observed versus predicted value of one training row of an equation version.

    ``predicted`` comes from the selected equation fitted on all rows; ``cv_predicted`` is
    the out-of-fold prediction from cross-validation (the row's fold did not see it).
    Read through the ``model_predictions`` view.
    """

    __tablename__ = "equation_prediction"
    __table_args__ = (
        # model_predictions filtered by version and material (dashboard parity plots): 2x faster
        # than the version_id index alone at 10^5 rows (docs/benchmarks.md).
        Index("ix_equation_prediction_version_material", "version_id", "material_id"),
        {"comment": "Observed vs predicted values per training row of an equation version."},
    )

    id: int | None = Field(default=None, primary_key=True)
    version_id: int = Field(sa_column=Column(ForeignKey("equation_version.id", ondelete="CASCADE"), nullable=False, index=True))
    material_id: int = Field(sa_column=Column(ForeignKey("material.id"), nullable=False))
    method_id: int = Field(sa_column=Column(ForeignKey("method.id"), nullable=False))
    surface_id: int | None = Field(default=None, sa_column=Column(ForeignKey("surface.id")))
    configuration_id: int | None = Field(default=None, sa_column=Column(BigInteger, ForeignKey("material_configuration.id"),
                                                                        comment="Material configuration of a configuration-scope target"))
    observed: float = Field(sa_column=Column(Float, nullable=False))
    predicted: float | None = Field(default=None, sa_column=Column(Float))
    cv_predicted: float | None = Field(default=None, sa_column=Column(Float))
