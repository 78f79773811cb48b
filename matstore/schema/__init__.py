"""The matstore schema: SQLModel tables, one module per concern.

- :mod:`~matstore.schema.provenance`: ``method``, ``source``, ``job_run``
- :mod:`~matstore.schema.materials`: ``material``
- :mod:`~matstore.schema.properties`: ``property_definition``, ``vocabulary_addition``, ``bulk_property``
- :mod:`~matstore.schema.surfaces`: ``surface``, ``surface_property``
- :mod:`~matstore.schema.configurations`: ``configuration``
- :mod:`~matstore.schema.material_configurations`: ``material_configuration``,
  ``configuration_property`` (per-configuration values)
- :mod:`~matstore.schema.equations`: ``equation_model``, ``equation_version``,
  ``equation_alias``, ``equation_prediction``
- :mod:`~matstore.schema.views`: SQL views; :mod:`~matstore.schema.vocabulary`: seeded names

Tables are created by Alembic migrations only (``matstore db migrate``), never by
``create_all``.
"""

from matstore.schema.base import KNOWN_UNITS, metadata
from matstore.schema.configurations import Configuration
from matstore.schema.equations import (
    EquationAlias,
    EquationModel,
    EquationPrediction,
    EquationVersion,
)
from matstore.schema.material_configurations import ConfigurationProperty, MaterialConfiguration
from matstore.schema.materials import Material
from matstore.schema.properties import BulkProperty, PropertyDefinition, VocabularyAddition
from matstore.schema.provenance import JobRun, Method, Source
from matstore.schema.surfaces import Surface, SurfaceProperty

__all__ = [
    "KNOWN_UNITS",
    "metadata",
    "BulkProperty",
    "Configuration",
    "ConfigurationProperty",
    "EquationAlias",
    "EquationModel",
    "EquationPrediction",
    "EquationVersion",
    "JobRun",
    "Material",
    "MaterialConfiguration",
    "Method",
    "PropertyDefinition",
    "Source",
    "Surface",
    "SurfaceProperty",
    "VocabularyAddition",
]
