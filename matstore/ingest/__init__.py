"""Ingest layer: structure files, property tables and registered datasets into the store.

- :mod:`~matstore.ingest.structures`: extxyz/ASE/pymatgen structure files → ``configuration``
- :mod:`~matstore.ingest.copy`: fast binary ``COPY`` writer and reader of configurations
- :mod:`~matstore.ingest.table`: property tables with a YAML mapping → ``bulk_property``,
  ``surface_property``
- :mod:`~matstore.ingest.registry`: pinned, checksummed datasets (pooch)
- :mod:`~matstore.ingest.units`: pint conversions and plausibility bounds
- :mod:`~matstore.ingest.errors`: the typed errors every ingest raises

Submodules are imported lazily so that ``import matstore.ingest`` stays cheap.
"""

from __future__ import annotations

from matstore.ingest.errors import DatasetUnavailableError, IngestError

__all__ = ["DatasetUnavailableError", "IngestError"]
