"""Configuration: the one place where matstore reads its environment.

Every setting is an environment variable with the ``MATSTORE_`` prefix (or a line in a
``.env`` file in the working directory).  With no configuration at all, matstore uses an
embedded PostgreSQL server in the user data directory (see :mod:`matstore.embedded`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from platformdirs import user_data_path
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def normalise_database_url(url: str) -> str:
    """Return ``url`` with a ``postgresql+psycopg://`` scheme.

    ``postgres://`` and ``postgresql://`` (as printed by Heroku-style hosts, ``psql`` and
    pgserver) are rewritten so that SQLAlchemy uses psycopg 3.

    Raises
    ------
    ValueError
        If the URL is not a PostgreSQL URL: matstore has no other backend.
    """
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    if url.startswith("postgresql+psycopg://"):
        return url
    raise ValueError(
        f"MATSTORE_DATABASE_URL must be a PostgreSQL URL (postgresql+psycopg://...), got scheme "
        f"{url.split(':', 1)[0]!r}; matstore supports PostgreSQL only"
    )


class Settings(BaseSettings):
    """matstore's settings, read from ``MATSTORE_*`` environment variables.

    Attributes
    ----------
    database_url:
        SQLAlchemy URL of the PostgreSQL database; ``None`` selects the embedded server.
    data_dir:
        Directory for the embedded server's cluster and downloaded datasets
        (default: the platform's user data directory, e.g. ``~/.local/share/matstore``).
    statement_timeout_ms:
        Upper bound for every read-only query issued by the dashboard and ``matstore sql``.
    dataset_dir:
        A local directory that mirrors dataset repositories at their relative paths; when set,
        the dataset registry reads files from it instead of downloading them.
    dashboard_database_url:
        URL the dashboard connects with (typically the SELECT-only role made by
        ``matstore db grant-reader``); ``None`` uses ``database_url``.  The dashboard always
        reads in READ ONLY transactions, whichever URL it uses.
    """

    model_config = SettingsConfigDict(env_prefix="MATSTORE_", env_file=".env", extra="ignore")

    database_url: str | None = None
    data_dir: Path = Field(default_factory=lambda: user_data_path("matstore", appauthor=False))
    statement_timeout_ms: int = 30_000
    dataset_dir: Path | None = None
    reader_role: str = "matstore_reader"
    dashboard_database_url: str | None = None

    @field_validator("database_url", "dashboard_database_url")
    @classmethod
    def _normalise(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        return normalise_database_url(value)

    @property
    def embedded(self) -> bool:
        """True when no server URL is configured and the embedded PostgreSQL is used."""
        return self.database_url is None

    @property
    def embedded_dir(self) -> Path:
        """Directory of the embedded PostgreSQL cluster."""
        return self.data_dir / "pgdata"


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide :class:`Settings` (read once, then cached)."""
    return Settings()
