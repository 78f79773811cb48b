"""The fit specification: what ``matstore fit`` is asked to do, from flags or a YAML file.

A spec is stored with the equation model (``equation_model.spec``) so that
``matstore refit NAME`` re-runs exactly the same request; its canonical sha256 is stored
with every version (``equation_version.spec_sha256``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from matstore.hashing import sha256_json
from matstore.models.factorize import DEFAULT_SCALING_TERMS, LEGACY_SCALING_TERMS
from matstore.models.selection import DEFAULT_COEFFICIENT_SELECTION


class SpecError(ValueError):
    """A fit specification is invalid (unknown field, bad value, unreadable YAML)."""


class FitSpec(BaseModel):
    """Everything that determines an equation version besides the data.

    Attributes
    ----------
    name: model name (``[A-Za-z0-9][A-Za-z0-9_.-]*``)
    target: property name of the target (a surface or bulk property definition)
    features: bulk property names used as inputs (canonical units)
    methods: method names whose values are used; ``None`` = every method.  A name containing
        ``%`` is a SQL LIKE pattern (e.g. ``EAM_Dynamo_%``).
    prototypes: crystal prototypes (``material.prototype``, exact names such as ``Fm-3m``, ``fcc``,
        ``Im-3m``; ``unknown`` where ingest recorded none) whose materials are used; ``None`` =
        every prototype.  Stored sorted and without repeats; specs stored before this field
        existed load with ``None`` (and keep their hash, :meth:`sha256`)
    factorize: ``"orientation"`` fits y = C(bulk) · g(orientation); ``None`` fits y directly
    engine: ``operon`` (default), ``pysr``, ``sparse`` or ``eql`` (docs/eql.md)
    engine_params: engine hyper-parameters (passed through, recorded)
    time_budget: seconds for the whole fit, every cross-validation fold included: split over
        the full-data fit and the nested-CV folds (engines with a time limit; see
        :func:`matstore.models.fitting.fit_equation`)
    seed: random seed (same data + spec + seed ⇒ same equation)
    selection: criterion choosing the equation (factorised fits: g) from the Pareto front;
        default ``stable`` (stability selection over the CV folds) for a direct fit and
        ``stable:1se`` for g (:func:`matstore.models.selection.default_selection`; the spec
        stores the resolved name), or ``knee``, ``within:5%``, ``cv:1se``... (see
        :mod:`matstore.models.selection`)
    coefficient_form: factorised fits: ``auto`` (a dimensionally homogeneous scaling law
        of the bulk features when their units allow, else the engine's free search),
        ``scaling`` or ``free``; see :func:`matstore.models.factorize.fit_factorized`.  Direct
        fits: ``scaling`` fits the target itself as such a law of the features (the sparse
        engine; every feature and the target need units), ``auto`` and ``free`` the engine's
        search (:func:`matstore.models.fitting.make_estimator`)
    coefficient_terms: scaling laws only (C of a factorised fit, or a direct fit with
        ``coefficient_form: scaling``): most monomials (default
        1, ``k·Π x_i^p_i``; :data:`matstore.models.factorize.DEFAULT_SCALING_TERMS`).  Specs
        stored before this field existed load with 3, the number they were fitted with
    products: factorised fits only: most products in ``y = Σ_j s_j(bulk) · g_j(orientation)``
        (default 1: one product C(bulk)·g(orientation)); 2 or more fits a sum of natural
        scales of the bulk times orientation functions, their number chosen by
        leave-one-group-out CV (:class:`matstore.models.estimators.SumOfProducts`; needs units)
    coefficient_selection: factorised fits only: criterion for C(bulk) (default ``stable:1se``:
        the one-standard-error rule over the complexity budget, the search repeated on every
        leave-one-material-out subsample, and the form those subsamples chose most often; a constant is never a candidate for a dimensional
        target)
    n_splits: folds of cross-validation; default: leave one group out up to 20 groups (else
        10 group folds), 5 shuffled folds for ungrouped targets
    group_by: what the cross-validation folds hold out together: ``material`` (default),
        ``method``, ``chemical_system`` (the sorted elements, e.g. ``Ce-La-O-P``: all
        compositions of a solid-solution series in one fold), ``configuration_key``, a
        feature or orientation column, or any stored property name (fetched for grouping
        only, never an input); see :func:`matstore.models.dataset.build_training_set`.  The
        default ``material`` groups surface, configuration and factorised fits by material,
        and bulk targets by ``chemical_system`` when a system has several compositions in the
        table, else not at all (shuffled KFold; :func:`matstore.models.service._cv_groups`)
    interval_level: confidence level of the stored cross-conformal prediction interval
        (default 0.9)
    include_flagged: use values flagged at ingest (default: no)
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    target: str
    features: list[str] = Field(min_length=1)
    methods: list[str] | None = None
    prototypes: list[str] | None = Field(default=None, min_length=1)
    factorize: Literal["orientation"] | None = None
    engine: Literal["operon", "pysr", "sparse", "eql"] = "operon"
    engine_params: dict[str, Any] = Field(default_factory=dict)
    time_budget: float = Field(default=60.0, gt=0)
    seed: int = 0
    selection: str | None = None
    coefficient_form: Literal["auto", "scaling", "free"] = "auto"
    coefficient_selection: str = DEFAULT_COEFFICIENT_SELECTION
    coefficient_terms: int = Field(default=DEFAULT_SCALING_TERMS, ge=1, le=4)
    products: int = Field(default=1, ge=1, le=3)
    n_splits: int | None = Field(default=None, ge=2)
    group_by: str = Field(default="material", min_length=1)
    interval_level: float = Field(default=0.9, gt=0, lt=1)
    include_flagged: bool = False
    description: str | None = None

    @field_validator("selection", "coefficient_selection")
    @classmethod
    def _criterion(cls, value: str | None) -> str | None:
        from matstore.models.selection import parse_criterion

        if value is not None:
            parse_criterion(value)
        return value

    @model_validator(mode="after")
    def _default_selection(self) -> FitSpec:
        """Resolve an unset ``selection`` to the default of the fit's kind, stored as such."""
        from matstore.models.selection import default_selection

        if self.selection is None:
            self.selection = default_selection(self.factorize)
        return self

    @model_validator(mode="after")
    def _products_need_factorize(self) -> FitSpec:
        if self.products > 1 and self.factorize is None:
            raise ValueError("products > 1 needs factorize: orientation (a sum of s_j(bulk)·g_j(orientation))")
        return self

    @field_validator("prototypes")
    @classmethod
    def _prototype_names(cls, value: list[str] | None) -> list[str] | None:
        """Sorted, without repeats: ``[Im-3m, Fm-3m, Fm-3m]`` and ``[Fm-3m, Im-3m]`` are one request (one hash)."""
        if value is None:
            return None
        if any(not name.strip() for name in value):
            raise ValueError("prototypes must be non-empty names, e.g. Fm-3m or fcc")
        return sorted(set(value))

    @field_validator("features")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("features must be unique")
        return value

    def fit_options(self) -> dict[str, Any]:
        """The spec's fields under the names of :func:`matstore.models.fitting.fit_equation`'s options.

        One spelling from the CLI/YAML to the estimator: ``seed`` is the estimators'
        ``random_state``; the rest keep their names.
        """
        keep = ("engine", "engine_params", "factorize", "selection", "coefficient_form", "coefficient_selection",
                "coefficient_terms", "products", "n_splits", "time_budget", "interval_level", "seed")
        return {k: getattr(self, k) for k in keep}

    @classmethod
    def from_stored(cls, stored: dict[str, Any]) -> FitSpec:
        """A spec as stored with a version; fields added since keep the behaviour it was fitted with."""
        return cls(**{"coefficient_terms": LEGACY_SCALING_TERMS, **stored})

    def sha256(self) -> str:
        """Canonical hash of everything but the name and description.

        A field added later is left out at the value specs stored before it behaved as
        (``coefficient_terms`` 3, ``products`` 1, ``prototypes`` None), so their versions keep
        their hash and refit as unchanged.
        """
        exclude = {"name", "description"} | ({"coefficient_terms"} if self.coefficient_terms == LEGACY_SCALING_TERMS else set())
        exclude |= {"products"} if self.products == 1 else set()
        exclude |= {"prototypes"} if self.prototypes is None else set()
        return sha256_json(self.model_dump(exclude=exclude))

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> FitSpec:
        """Read a spec from a YAML file; ``overrides`` (non-None) replace its fields.

        Raises
        ------
        SpecError
            If the file cannot be read or the spec is invalid (the message names the file).
        """
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SpecError(f"{path}: cannot read fit spec: {exc}") from exc
        if not isinstance(data, dict):
            raise SpecError(f"{path}: a fit spec is a mapping of fields, got {type(data).__name__}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**data)
        except ValueError as exc:
            raise SpecError(f"{path}: invalid fit spec: {exc}") from exc
