"""Registered datasets: files pinned by repository commit and sha256, fetched with pooch.

A dataset lists files by their path in a repository; the download URL is pinned to a commit
(``https://raw.githubusercontent.com/<repo>/<commit>/<path>``) and every file is checked
against its sha256.  When ``MATSTORE_DATASET_DIR`` is set (``settings.dataset_dir``), files
are read from that local mirror at the same relative paths, still sha256-checked, and the
network is never used (tests point it at ``../shared/data/strength_covariance``).

:func:`ingest_dataset` fetches a dataset's tables and ingests each with its shipped mapping
(:mod:`matstore.data`), one source per file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from matstore.hashing import sha256_file
from matstore.ingest.errors import ChecksumError, DatasetUnavailableError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetFile:
    """One file of a dataset: repository path, sha256 and the mapping that ingests it."""

    path: str
    sha256: str
    mapping: str | None = None


@dataclass(frozen=True)
class Dataset:
    """A dataset pinned to a repository commit."""

    name: str
    repository: str
    commit: str
    license: str
    doi: str | None
    description: str
    files: tuple[DatasetFile, ...]

    def url(self, path: str) -> str:
        """Download URL of ``path`` pinned to the commit."""
        return f"https://raw.githubusercontent.com/{self.repository}/{self.commit}/{path}"

    def file(self, path: str) -> DatasetFile:
        """The registered file at ``path``.

        Raises
        ------
        KeyError
            If the dataset has no such file.
        """
        for f in self.files:
            if f.path == path:
                return f
        raise KeyError(f"dataset {self.name!r} has no file {path!r}")


#: Registered datasets by name.
DATASETS: dict[str, Dataset] = {
    "strength_covariance": Dataset(
        name="strength_covariance",
        repository="bjasperson/strength_covariance",
        commit="137c733fac2f21da69c317f4c808b2a79623ea51",
        license="MIT",
        doi="10.1038/s41524-024-01453-w",
        description=(
            "Jasperson et al., Cross-scale covariance for material property prediction, "
            "npj Comput. Mater. (2025): OpenKIM indicator properties and strengths of fcc potentials"
        ),
        files=(
            DatasetFile("data/models_w_props_full.csv", "ef1cead1d1883d487be2c004ce0e27371d360060b4f39e6d568bf8aa0b177991", "openkim_strength_covariance"),
            DatasetFile("data/dft.csv", "13be2c983bd3a0c3956f05a887e8423906c3742043fe7fb06c948b38ca821e85", "dft_strength_covariance"),
            DatasetFile("data/models_w_props.csv", "a1475ebb904f0da1db1e993a2b88a05710b0acdd4e3996b465252372d821cda1"),
        ),
    ),
}


def get_dataset(name: str) -> Dataset:
    """The registered dataset ``name``.

    Raises
    ------
    DatasetUnavailableError
        If no dataset of that name is registered.
    """
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetUnavailableError(f"no registered dataset {name!r}; known: {', '.join(sorted(DATASETS))}") from None


def fetch(name: str, path: str, *, dataset_dir: str | Path | None = None, cache_dir: str | Path | None = None) -> Path:
    """Local path of a registered dataset file, sha256-checked.

    Parameters
    ----------
    name
        Dataset name, e.g. ``strength_covariance``.
    path
        Repository-relative path, e.g. ``data/models_w_props_full.csv``.
    dataset_dir
        Local mirror of the repository (default ``settings.dataset_dir``); when set, the file
        is read from ``dataset_dir / path`` and nothing is downloaded.
    cache_dir
        pooch cache (default ``settings.data_dir / "datasets" / name``).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    DatasetUnavailableError
        If the file is neither in the mirror nor downloadable.
    ChecksumError
        If the file's sha256 differs from the registered one.
    """
    from matstore.config import get_settings

    dataset = get_dataset(name)
    entry = dataset.file(path)
    settings = get_settings()
    mirror = dataset_dir if dataset_dir is not None else settings.dataset_dir
    if mirror is not None:
        local = Path(mirror) / path
        if not local.is_file():
            raise DatasetUnavailableError(
                f"dataset {name!r}: {path} is not in the local mirror {mirror} (MATSTORE_DATASET_DIR)", path=local
            )
        digest = sha256_file(local)
        if digest != entry.sha256:
            raise ChecksumError(f"sha256 {digest} differs from the registered {entry.sha256}", path=local)
        return local
    import pooch

    cache = Path(cache_dir) if cache_dir is not None else settings.data_dir / "datasets" / name
    try:
        fetched = pooch.retrieve(
            url=dataset.url(path), known_hash=f"sha256:{entry.sha256}", fname=path.replace("/", "__"), path=cache, progressbar=False
        )
    except ValueError as exc:  # pooch's hash mismatch
        raise ChecksumError(f"downloaded {dataset.url(path)}: {exc}", path=path) from exc
    except Exception as exc:  # noqa: BLE001 - network errors of every kind mean "unavailable"
        raise DatasetUnavailableError(
            f"dataset {name!r}: {path} is not in a local mirror (MATSTORE_DATASET_DIR is unset) and "
            f"could not be downloaded from {dataset.url(path)}: {exc.__class__.__name__}: {exc}",
            path=path,
        ) from exc
    return Path(fetched)


@dataclass
class DatasetReport:
    """Outcome of :func:`ingest_dataset`: one table report per ingested file."""

    name: str
    commit: str
    tables: list[Any] = field(default_factory=list)

    @property
    def inserted(self) -> int:
        """Property rows added over all files."""
        return sum(t.inserted for t in self.tables)

    def describe(self) -> str:
        """One line per file for reports: status, values stored, flagged and skipped."""
        return "; ".join(
            f"{Path(t.path).name}: {t.status}, {t.inserted} values, {len(t.flagged)} flagged, {len(t.skipped)} skipped"
            for t in self.tables
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"name": self.name, "commit": self.commit, "inserted": self.inserted,
                "tables": [t.to_dict() if hasattr(t, "to_dict") else asdict(t) for t in self.tables]}


def ingest_dataset(
    name: str,
    *,
    engine: Any = None,
    dataset_dir: str | Path | None = None,
    files: list[str] | None = None,
    supersede: list[int] | tuple[int, ...] = (),
) -> DatasetReport:
    """Fetch a registered dataset and ingest its tables with their shipped mappings.

    Each file is one source (sha256 of its bytes) ingested in its own transaction;
    re-running adds nothing (each table reports ``already stored``).

    Parameters
    ----------
    name
        Registered dataset, e.g. ``strength_covariance``.
    engine
        SQLAlchemy engine (default: the configured store).
    dataset_dir
        Local mirror overriding ``MATSTORE_DATASET_DIR``.
    files
        Repository paths to ingest (default: every file with a mapping).
    supersede
        Stored source ids that this ingest replaces (see :func:`matstore.ingest.table.ingest_table`):
        needed when a file is stored under an earlier version of its shipped mapping (a
        release that reads the dataset differently).  The old values stay stored, flagged.

    Returns
    -------
    DatasetReport

    Raises
    ------
    DatasetUnavailableError
        If the dataset is unknown, or a file is neither local nor downloadable.
    ChecksumError
        If a file's sha256 differs from the pinned one.
    IngestError
        If a table does not match its mapping, or a file is stored under another mapping
        and ``supersede`` does not name that source (the message gives its id).
    """
    from matstore.data import mapping_path
    from matstore.db import get_engine
    from matstore.ingest.table import ingest_table

    dataset = get_dataset(name)
    engine = engine or get_engine()
    wanted = [f for f in dataset.files if f.mapping and (files is None or f.path in files)]
    if files is not None:
        unknown = set(files) - {f.path for f in wanted}
        if unknown:
            raise DatasetUnavailableError(f"dataset {name!r} has no mapped files {sorted(unknown)}")
    # Fetch everything first, so that a missing file fails before anything is stored.
    local = {f.path: fetch(name, f.path, dataset_dir=dataset_dir) for f in wanted}
    replaced = _supersede_by_file(engine, name, wanted, supersede)
    report = DatasetReport(name=name, commit=dataset.commit)
    for f in wanted:
        overrides = {
            "kind": "dataset", "uri": dataset.url(f.path), "commit": dataset.commit, "license": dataset.license,
            "doi": dataset.doi, "repository": dataset.repository, "path": f.path,
        }
        report.tables.append(
            ingest_table(local[f.path], mapping_path(f.mapping), engine=engine, source=overrides, job_kind="ingest_dataset",  # type: ignore[arg-type]
                         supersede=replaced[f.path])
        )
    return report


def _supersede_by_file(engine: Any, name: str, wanted: list[DatasetFile], supersede: Sequence[int]) -> dict[str, list[int]]:
    """The ``supersede`` ids split by the file whose stored reading each one is.

    Raises
    ------
    DatasetUnavailableError
        An id is not a stored reading of any of the dataset's files.
    """
    from sqlalchemy.orm import Session

    from matstore.ingest.table import stored_readings

    with Session(engine) as session:
        of_file = {f.path: {r.source_id for r in stored_readings(session, f.sha256)} for f in wanted}
    unknown = sorted(set(supersede) - set().union(*of_file.values()))
    if unknown:
        raise DatasetUnavailableError(f"--supersede {unknown}: not a stored reading of a file of dataset {name!r}; "
                                      "nothing stored")
    return {path: sorted(set(supersede) & ids) for path, ids in of_file.items()}


__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetFile",
    "DatasetReport",
    "fetch",
    "get_dataset",
    "ingest_dataset",
]
