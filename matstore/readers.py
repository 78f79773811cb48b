"""Reader connections: a session user that can only SELECT, for ``matstore sql`` and the dashboard.

A ``SET ROLE`` on a superuser's connection is no boundary (``RESET ROLE`` or
``SELECT set_config('role', 'postgres', true)`` undoes it), so read-only paths connect as a
login whose *session user* is a member of ``matstore_reader`` and nothing else.  The URL is,
in order:

1. ``MATSTORE_READER_URL`` (or, for the dashboard, ``MATSTORE_DASHBOARD_DATABASE_URL``),
   checked by :func:`privilege_violations`: a URL whose role can do more than read is refused;
2. the managed login ``matstore_sql_reader``: created (or its password reset) through the main
   URL when that role may create roles, with a random password kept in
   ``<data_dir>/secrets/`` (mode 0600, one file per server).  On the embedded server matstore
   controls authentication, so this always works there.

Otherwise :class:`ReaderUnavailableError` says what to configure.  Every reader connection also
sets ``default_transaction_read_only=on`` as a connection option, which overrides whatever
defaults the role may have set for itself.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url

from matstore import roles
from matstore.config import Settings, get_settings, normalise_database_url
from matstore.masking import register_secret

log = logging.getLogger(__name__)

#: The login matstore creates and uses when no reader URL is configured.
MANAGED_LOGIN = "matstore_sql_reader"

#: Predefined roles a reader may hold: they only read statistics or settings.
HARMLESS_GROUPS = frozenset({roles.READER, "pg_read_all_data", "pg_read_all_stats", "pg_read_all_settings",
                             "pg_stat_scan_tables", "pg_monitor"})

_READ_ONLY_OPTION = "-cdefault_transaction_read_only=on"  # no space: URL query encoding


class ReaderUnavailableError(RuntimeError):
    """No login that can only read is available, and matstore refuses to read as a stronger one."""


_VIOLATIONS = """
SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls,
  ARRAY(SELECT g.rolname::text FROM pg_roles g
        WHERE g.oid <> r.oid AND pg_has_role(r.oid, g.oid, 'MEMBER') ORDER BY 1),
  ARRAY(SELECT c.relname::text FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
          AND has_table_privilege(r.oid, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE') ORDER BY 1 LIMIT 5),
  has_schema_privilege(r.oid, 'public', 'CREATE'),
  has_database_privilege(r.oid, current_database(), 'CREATE, TEMPORARY')
FROM pg_roles r WHERE r.rolname = %s
"""


def privilege_violations(conn: psycopg.Connection, role: str) -> list[str]:
    """What ``role`` can do beyond reading the store (empty list: a proper reader).

    Parameters
    ----------
    conn:
        An open connection to the store's database (any role may run the check).
    role:
        The role to check.

    Returns
    -------
    list[str]
        Human-readable reasons, e.g. ``["is a superuser", "may write to material, source"]``.
    """
    row = conn.execute(_VIOLATIONS, (role,)).fetchone()
    if row is None:
        return [f"role {role} does not exist"]
    superuser, createrole, createdb, replication, bypassrls, groups, writable, create_schema, create_db = row
    if superuser:
        return ["is a superuser"]  # everything else follows
    flags = {"is a superuser": superuser, "may create roles": createrole, "may create databases": createdb,
             "is a replication role": replication, "bypasses row-level security": bypassrls,
             "may create objects in schema public": create_schema,
             "may create schemas or temporary tables in the database": create_db}
    reasons = [reason for reason, held in flags.items() if held]
    if extra := sorted(set(groups) - HARMLESS_GROUPS):
        reasons.append(f"is a member of {', '.join(extra)}")
    if writable:
        reasons.append(f"may write to {', '.join(writable)}")
    return reasons


def reader_url(settings: Settings | None = None, *, dashboard: bool = False) -> str:
    """The URL of a login that can only read the store (see the module docstring for the order).

    Parameters
    ----------
    settings:
        Settings to use (default: :func:`matstore.config.get_settings`).
    dashboard:
        Also accept ``MATSTORE_DASHBOARD_DATABASE_URL`` (it wins over ``MATSTORE_READER_URL``).

    Raises
    ------
    ReaderUnavailableError
        If the configured reader URL can do more than read, or no reader login exists and the
        main URL's role may not create one.
    """
    settings = settings or get_settings()
    configured = (settings.dashboard_database_url if dashboard else None) or settings.reader_url
    key = (configured, settings.database_url, str(settings.data_dir))
    if key not in _checked:  # checked once per process, like the engine it feeds
        _checked[key] = _configured_reader(configured) if configured else _managed_reader(settings)
    return _checked[key]


#: Reader URLs already checked in this process, by (reader URL, main URL, data dir).
_checked: dict[tuple[str | None, str | None, str], str] = {}


def _configured_reader(configured: str) -> str:
    url = _with_read_only_option(configured)
    _refuse_if_stronger(url, source="MATSTORE_READER_URL")
    return url


def _managed_reader(settings: Settings) -> str:
    from matstore.db import resolve_url

    main = make_url(resolve_url(settings))
    password_file = _password_file(settings.data_dir, main)
    url = _managed_url(main, _read_or_create_password(password_file))
    if _can_log_in(url):
        return url
    _provision(main, _read_or_create_password(password_file))
    _refuse_if_stronger(url, source=f"the reader login {MANAGED_LOGIN}", hint="run `matstore db migrate`")
    return url


def _with_read_only_option(url: str) -> str:
    parsed = make_url(normalise_database_url(url))
    return parsed.update_query_dict({"options": _READ_ONLY_OPTION}).render_as_string(hide_password=False)


def _managed_url(main: URL, password: str) -> str:
    url = main.set(username=MANAGED_LOGIN, password=password)
    return _with_read_only_option(url.render_as_string(hide_password=False))


def libpq_url(url: str | URL) -> str:
    """``url`` as a libpq/psycopg conninfo URL (no ``+psycopg`` driver suffix), password included."""
    parsed = make_url(url) if isinstance(url, str) else url
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def _refuse_if_stronger(url: str, *, source: str, hint: str = "create one with `matstore db grant-reader NAME`") -> None:
    with psycopg.connect(libpq_url(url), connect_timeout=10) as conn:
        user = conn.execute("SELECT session_user").fetchone()[0]
        reasons = privilege_violations(conn, user)
    if reasons:
        raise ReaderUnavailableError(
            f"{source} logs in as {user}, which {'; '.join(reasons)}: matstore reads only as a login that is "
            f"a member of {roles.READER} alone ({hint})"
        )


def _can_log_in(url: str) -> bool:
    try:
        with psycopg.connect(libpq_url(url), connect_timeout=10) as conn:
            member = conn.execute("SELECT pg_has_role(session_user, %s, 'MEMBER')", (roles.READER,)).fetchone()[0]
            return bool(member) and not privilege_violations(conn, MANAGED_LOGIN)
    except psycopg.OperationalError:
        return False


def _provision(main: URL, password: str) -> None:
    """Create (or repair) the managed login through the main URL; refuse if that is impossible."""
    try:
        conn = psycopg.connect(libpq_url(main), autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise ReaderUnavailableError(f"could not connect to create the reader login: {exc}") from None
    with conn:
        can_create, group = conn.execute(
            "SELECT rolsuper OR rolcreaterole, EXISTS (SELECT FROM pg_roles WHERE rolname = %s) "
            "FROM pg_roles WHERE rolname = current_user", (roles.READER,)).fetchone()
        if not group:
            raise ReaderUnavailableError(f"the group role {roles.READER} does not exist: run `matstore db migrate`")
        if not can_create:
            raise ReaderUnavailableError(
                "matstore sql and the dashboard read only as a login that cannot write, and the database URL's "
                "role may not create one: set MATSTORE_READER_URL to a login made by `matstore db grant-reader`"
            )
        create_reader_login(conn, MANAGED_LOGIN, password)
    log.info("reader login %s is ready", MANAGED_LOGIN)


def create_reader_login(conn: psycopg.Connection, name: str, password: str | None) -> None:
    """Create or update login ``name`` as a member of the reader group only (``password`` may be None)."""
    ident = sql.Identifier(name)
    try:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(ident))
    except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
        pass  # made earlier, or by a concurrent session
    # Sent via psycopg with the literal composed client-side; never through SQLAlchemy, whose
    # errors echo the statement ("[SQL: ALTER ROLE ... PASSWORD '...']").
    secret = sql.Literal(password) if password is not None else sql.SQL("NULL")
    conn.execute(sql.SQL("ALTER ROLE {} LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                         "NOBYPASSRLS PASSWORD {}").format(ident, secret))
    conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(ident))
    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(roles.READER), ident))


def _password_file(data_dir: Path, main: URL) -> Path:
    """One password file per server (host, port or socket directory)."""
    server = f"{main.host or main.query.get('host', '')}:{main.port or ''}"
    digest = hashlib.sha256(server.encode()).hexdigest()[:16]
    return Path(data_dir) / "secrets" / f"reader-{digest}.password"


def _read_or_create_password(path: Path) -> str:
    """The stored password, or a new random one written with mode 0600 (atomically: O_EXCL)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        password = path.read_text().strip()
    else:
        password = secrets.token_urlsafe(32)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
    register_secret(password)
    return password
