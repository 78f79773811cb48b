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
    """Return ``url`` with a ``postgresql+psycopg://`` scheme and a percent-encoded password.

    ``postgres://`` and ``postgresql://`` (as printed by Heroku-style hosts, ``psql`` and
    pgserver) are rewritten so that SQLAlchemy uses psycopg 3.  A password holding ``@``,
    ``:``, ``/``, ``%`` or quotes unencoded (``postgresql://u:p@ss@host/db``) is split at the
    *last* ``@`` of the authority and percent-encoded, so that no parser ever reads part of it
    as the host.  The password is registered with :func:`matstore.masking.register_secret`.

    Raises
    ------
    ValueError
        If the URL is not a PostgreSQL URL (matstore has no other backend) or its port is not
        a number; the message never quotes the URL.
    """
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return _encode_password("postgresql+psycopg://" + url[len(prefix):])
    raise ValueError(
        f"the database URL must be a PostgreSQL URL (postgresql+psycopg://...), got scheme "
        f"{url.split(':', 1)[0][:30]!r}; matstore supports PostgreSQL only"
    )


def _encode_password(url: str) -> str:
    from urllib.parse import quote, unquote

    from matstore.masking import register_secret

    scheme, rest = url.split("://", 1)
    path_start = rest.find("/", rest.rfind("@", 0, rest.find("?") if "?" in rest else len(rest)) + 1)
    authority, path = (rest, "") if path_start < 0 else (rest[:path_start], rest[path_start:])
    userinfo, at, hostport = authority.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if password:
        decoded = unquote(password)
        register_secret(password)
        register_secret(decoded)
        if quote(decoded, safe="") != password:  # not (validly) encoded yet
            password = quote(password, safe="")
    port = hostport.rsplit("]", 1)[-1].rpartition(":")[2] if ":" in hostport.rsplit("]", 1)[-1] else ""
    if port and not port.isdigit():
        raise ValueError("the database URL's port is not a number (if the password holds '@' or ':', "
                         "percent-encode it: '@' is %40, ':' is %3A)")
    return f"{scheme}://{user}{colon}{password}{at}{hostport}{path}"


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
    reader_url:
        URL of a login that is a member of ``matstore_reader`` only (``MATSTORE_READER_URL``);
        ``matstore sql`` and the dashboard connect with it.  ``None``: matstore creates and
        uses its own reader login (see :mod:`matstore.readers`).
    dashboard_database_url:
        Older name of ``reader_url`` for the dashboard alone (``MATSTORE_DASHBOARD_DATABASE_URL``);
        checked like it: a URL whose role can do more than read is refused.
    reader_password:
        Password for the login ``matstore db grant-reader`` makes (``MATSTORE_READER_PASSWORD``).
    fit_jobs:
        Processes that run the nested-CV folds of one fit side by side (``MATSTORE_FIT_JOBS``);
        ``None``: the CPUs this process may use, at most one per fold.  Set 1 where several
        fits share a machine (e.g. several procrastinate workers).
    """

    model_config = SettingsConfigDict(env_prefix="MATSTORE_", env_file=".env", extra="ignore")

    database_url: str | None = None
    data_dir: Path = Field(default_factory=lambda: user_data_path("matstore", appauthor=False))
    statement_timeout_ms: int = 30_000
    dataset_dir: Path | None = None
    reader_url: str | None = None
    dashboard_database_url: str | None = None
    reader_password: str | None = None
    fit_jobs: int | None = Field(default=None, ge=1)

    @field_validator("reader_password")
    @classmethod
    def _register(cls, value: str | None) -> str | None:
        from matstore.masking import register_secret

        register_secret(value)
        return value or None

    @field_validator("database_url", "reader_url", "dashboard_database_url")
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
