"""Reader connections: a session user that can only SELECT, for ``matstore sql`` and the dashboard.

A ``SET ROLE`` on a superuser's connection is no boundary (``RESET ROLE`` or
``SELECT set_config('role', 'postgres', true)`` undoes it), so read-only paths connect as a
login whose *session user* is a member of ``matstore_reader`` and nothing else.  The URL is,
in order:

1. ``MATSTORE_READER_URL`` (or, for the dashboard, ``MATSTORE_DASHBOARD_DATABASE_URL``),
   checked by :func:`privilege_violations`: a URL whose role can do more than read is refused;
2. the managed login ``matstore_sql_reader``, with the password kept in ``<data_dir>/secrets/``
   (mode 0600, one file per server).  ``matstore db migrate`` (:func:`ensure_managed_reader`,
   called by :func:`matstore.admin.migrate`) creates it, or resets its password, through the
   main URL when that role may create roles.  A read path never does: it only logs in as the
   login, so no read-only command opens a connection with the main URL's (often a
   superuser's) power.

Otherwise :class:`ReaderUnavailableError` says what to run or configure.  Every reader connection also
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

#: Roles a reader may be a member of.  No predefined role: ``pg_read_all_data`` reads every
#: table of every database, ``pg_monitor``/``pg_read_all_stats`` other sessions' query text,
#: ``pg_read_all_settings`` server paths, ``pg_stat_scan_tables`` takes long locks.
HARMLESS_GROUPS = frozenset({roles.READER})

#: Role-level bounds of the managed reader login and of every ``grant-reader`` login, so each
#: read-only path is bounded, not only ``matstore sql`` (which also sets its own, lower,
#: per-transaction timeout).  ``temp_file_limit`` can be set only by a superuser, and a
#: reader cannot lift it.
READER_ROLE_SETTINGS = {
    "statement_timeout": "60s",
    "idle_in_transaction_session_timeout": "60s",
    "temp_file_limit": "1GB",
}

#: Connection options of every reader URL (no space inside an option: URL query encoding).
_READ_ONLY_OPTION = "-cdefault_transaction_read_only=on"


class ReaderUnavailableError(RuntimeError):
    """No login that can only read is available, and matstore refuses to read as a stronger one."""


class ReaderMayNotBeCreatedError(ReaderUnavailableError):
    """The main URL's role may not create roles, so it cannot make the managed reader login."""


#: Cluster-wide checks: role attributes, memberships, and in *every* database, CREATE,
#: ownership, and TEMPORARY granted to the role or a group (not PUBLIC's default).
_ROLE_VIOLATIONS = """
SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls,
  ARRAY(SELECT g.rolname::text FROM pg_roles g
        WHERE g.oid <> r.oid AND pg_has_role(r.oid, g.oid, 'MEMBER') ORDER BY 1),
  ARRAY(SELECT d.datname::text FROM pg_database d
        WHERE d.datdba = r.oid OR has_database_privilege(r.oid, d.oid, 'CREATE')
           OR EXISTS (SELECT FROM aclexplode(d.datacl) a
                      WHERE a.grantee <> 0 AND a.privilege_type = 'TEMPORARY' AND pg_has_role(r.oid, a.grantee, 'MEMBER'))
        ORDER BY 1 LIMIT 5),
  has_database_privilege(r.oid, current_database(), 'TEMPORARY')
FROM pg_roles r WHERE r.rolname = %s
"""

#: Checks in the current database: writes to any relation (also column grants and
#: sequences), CREATE on any schema, owned objects, SECURITY DEFINER functions it may call.
_OBJECT_VIOLATIONS = """
WITH r AS (SELECT oid FROM pg_roles WHERE rolname = %s),
user_ns AS (SELECT oid, nspname FROM pg_namespace
            WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\\_toast%%'
              AND nspname NOT LIKE 'pg\\_temp\\_%%')
SELECT
  ARRAY(SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN user_ns n ON n.oid = c.relnamespace, r
        WHERE (c.relkind IN ('r', 'p', 'v', 'm', 'f')
               AND (has_table_privilege(r.oid, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
                    OR has_any_column_privilege(r.oid, c.oid, 'INSERT, UPDATE, REFERENCES')))
           OR (c.relkind = 'S' AND has_sequence_privilege(r.oid, c.oid, 'USAGE, UPDATE'))
        ORDER BY 1 LIMIT 5),
  ARRAY(SELECT n.nspname::text FROM pg_namespace n, r
        WHERE has_schema_privilege(r.oid, n.oid, 'CREATE') ORDER BY 1 LIMIT 5),
  ARRAY(SELECT o FROM (
          SELECT 'schema ' || nspname AS o FROM pg_namespace, r WHERE nspowner = r.oid
          UNION ALL SELECT 'relation ' || c.oid::regclass::text FROM pg_class c, r
                    WHERE c.relowner = r.oid AND c.relpersistence <> 't'
          UNION ALL SELECT 'function ' || p.oid::regprocedure::text FROM pg_proc p, r WHERE p.proowner = r.oid
          UNION ALL SELECT 'large object ' || l.oid FROM pg_largeobject_metadata l, r WHERE l.lomowner = r.oid
        ) owned ORDER BY 1 LIMIT 5),
  ARRAY(SELECT p.oid::regprocedure::text FROM pg_proc p JOIN user_ns n ON n.oid = p.pronamespace, r
        WHERE p.prosecdef AND p.proowner <> r.oid AND has_function_privilege(r.oid, p.oid, 'EXECUTE')
        ORDER BY 1 LIMIT 5)
"""


def privilege_violations(conn: psycopg.Connection, role: str) -> list[str]:
    """What ``role`` can do beyond reading the store (empty list: a proper reader).

    Checked: role attributes (superuser, CREATEROLE, CREATEDB, REPLICATION, BYPASSRLS);
    membership of any role but ``matstore_reader`` (predefined roles included); in every
    database of the server, ownership, ``CREATE`` and ``TEMPORARY`` granted to it or a group;
    in this database, ``TEMPORARY`` (also through ``PUBLIC``), any write privilege on a table,
    view or sequence of any schema (column grants included), ``CREATE`` on any schema,
    ownership of any schema, relation, function or large object, and ``EXECUTE`` on a
    ``SECURITY DEFINER`` function.  Tables of *other* databases are not visible from here.

    Parameters
    ----------
    conn:
        An open connection to the store's database (any role may run the check).
    role:
        The role to check.

    Returns
    -------
    list[str]
        Human-readable reasons, e.g. ``["is a superuser"]`` or
        ``["may write to public.material", "may create objects in schema matstore_extra"]``.
    """
    row = conn.execute(_ROLE_VIOLATIONS, (role,)).fetchone()
    if row is None:
        return [f"role {role} does not exist"]
    superuser, createrole, createdb, replication, bypassrls, groups, databases, temporary = row
    if superuser:
        return ["is a superuser"]  # everything else follows
    flags = {"may create roles": createrole, "may create databases": createdb,
             "is a replication role": replication, "bypasses row-level security": bypassrls,
             "may create temporary tables in this database": temporary}
    reasons = [reason for reason, held in flags.items() if held]
    if extra := sorted(set(groups) - HARMLESS_GROUPS):
        reasons.append(f"is a member of {', '.join(extra)}")
    if databases:
        reasons.append(f"owns, may create in or make temporary tables in database {', '.join(databases)}")
    writable, schemas, owned, definers = conn.execute(_OBJECT_VIOLATIONS, (role,)).fetchone()
    lists = {"may write to": writable, "may create objects in schema": schemas, "owns": owned,
             "may execute SECURITY DEFINER function": definers}
    reasons += [f"{label} {', '.join(items)}" for label, items in lists.items() if items]
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
    from_dashboard = dashboard and bool(settings.dashboard_database_url)
    configured = settings.dashboard_database_url if from_dashboard else settings.reader_url
    source = "MATSTORE_DASHBOARD_DATABASE_URL (--reader-url)" if from_dashboard else "MATSTORE_READER_URL"
    key = (configured, settings.database_url, str(settings.data_dir))
    if key not in _checked:  # checked once per process, like the engine it feeds
        _checked[key] = _configured_reader(configured, source) if configured else _managed_reader(settings)
    return _checked[key]


#: Reader URLs already checked in this process, by (reader URL, main URL, data dir).
_checked: dict[tuple[str | None, str | None, str], str] = {}


def _configured_reader(configured: str, source: str) -> str:
    url = _with_read_only_option(configured)
    _refuse_if_stronger(url, source=source)
    return url


def _managed_reader(settings: Settings) -> str:
    """The managed login's URL; it must exist already (made by ``matstore db migrate``)."""
    from matstore.db import resolve_url

    main = make_url(resolve_url(settings))
    password_file = _password_file(settings.data_dir, main)
    url = _managed_url(main, _stored_password(password_file))
    problem = _login_problem(url, password_file)
    if problem is not None:
        raise ReaderUnavailableError(
            f"the reader login {MANAGED_LOGIN} {problem}: run `matstore db migrate` as the store's owner (it creates "
            "or repairs the login), or set MATSTORE_READER_URL to a login made by `matstore db grant-reader`"
        )
    return url


def ensure_managed_reader(main_url: str | URL, settings: Settings | None = None) -> str:
    """Create (or repair) the managed reader login through ``main_url``; a one-line status.

    Called by :func:`matstore.admin.migrate`, never by a read path.  When the login already logs
    in with the password kept under ``settings.data_dir`` and holds only the reader group and
    :data:`READER_ROLE_SETTINGS`, nothing is changed (so concurrent migrations do not reset each
    other's password).  Otherwise the login is created or altered and given that password (a new
    random one when none is kept yet).

    Returns
    -------
    str
        ``"reader login matstore_sql_reader ready"`` or, when ``main_url``'s role may not create
        roles or the password cannot be kept under the data directory, a line saying so and
        what to configure instead (the migration itself is not failed for that: a reader URL
        may be configured, as docker-compose.yml does).

    Raises
    ------
    ReaderUnavailableError
        If the main URL cannot be reached, the ``matstore_reader`` group is missing (the schema
        is not migrated), or the login, once made, can do more than read.
    """
    settings = settings or get_settings()
    main = make_url(main_url) if isinstance(main_url, str) else main_url
    path = _password_file(settings.data_dir, main)
    try:
        password = _read_or_create_password(path)
    except OSError as exc:  # e.g. a read-only data directory in a migration container
        return f"reader login {MANAGED_LOGIN} not checked: cannot keep its password in {path} ({exc.strerror})"
    url = _managed_url(main, password)
    if _can_log_in(url):
        return f"reader login {MANAGED_LOGIN} ready"
    try:
        _provision(main, password)
    except ReaderMayNotBeCreatedError as exc:
        return f"reader login {MANAGED_LOGIN} not created: {exc}"
    _refuse_if_stronger(url, source=f"the reader login {MANAGED_LOGIN}", hint="drop it and run `matstore db migrate`")
    return f"reader login {MANAGED_LOGIN} ready"


def _with_read_only_option(url: str) -> str:
    parsed = make_url(normalise_database_url(url))
    return parsed.update_query_dict({"options": _READ_ONLY_OPTION}).render_as_string(hide_password=False)


def _managed_url(main: URL, password: str | None) -> str:
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
    return _login_problem(url, "") is None


def _login_problem(url: str, password_file: Path | str) -> str | None:
    """Why the managed login cannot serve as a reader at ``url`` (None: it can), in a few words.

    Read from the server's refusal: the role does not exist (a store not migrated, or migrated
    before ``db migrate`` made readers), it may not log in, the password kept in
    ``password_file`` is refused; or, logged in, it is not a plain reader with its bounds.
    """
    try:
        with psycopg.connect(libpq_url(url), connect_timeout=10) as conn:
            member = conn.execute("SELECT pg_has_role(session_user, %s, 'MEMBER')", (roles.READER,)).fetchone()[0]
            if bool(member) and _has_role_settings(conn) and not privilege_violations(conn, MANAGED_LOGIN):
                return None
            return f"is not a member of {roles.READER} alone with the reader bounds"
    except psycopg.OperationalError as exc:
        text = str(exc)
        if f'role "{MANAGED_LOGIN}" does not exist' in text:
            return "does not exist on this server (the store is not migrated yet, or was migrated before `db migrate` made it)"
        if "not permitted to log in" in text:
            return "may not log in (NOLOGIN)"
        if "password authentication failed" in text:
            return f"refuses the password kept in {password_file} (another data directory's `db migrate` reset it)"
        return f"cannot connect ({text.strip().splitlines()[-1] if text.strip() else type(exc).__name__})"


def _has_role_settings(conn: psycopg.Connection) -> bool:
    """Whether the session user has every bound of :data:`READER_ROLE_SETTINGS` as a role default."""
    row = conn.execute("SELECT setconfig FROM pg_db_role_setting WHERE setdatabase = 0 "
                       "AND setrole = (SELECT oid FROM pg_roles WHERE rolname = session_user)").fetchone()
    wanted = {f"{name}={value}" for name, value in READER_ROLE_SETTINGS.items()}
    return row is not None and wanted <= set(row[0] or ())


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
            raise ReaderMayNotBeCreatedError(
                "matstore sql and the dashboard read only as a login that cannot write, and the database URL's "
                "role may not create one: set MATSTORE_READER_URL to a login made by `matstore db grant-reader`"
            )
        create_reader_login(conn, MANAGED_LOGIN, password)
    log.info("reader login %s is ready", MANAGED_LOGIN)


def create_reader_login(conn: psycopg.Connection, name: str, password: str | None) -> None:
    """Create or update login ``name`` as a member of the reader group only, with the reader bounds.

    ``password`` ``None`` keeps an existing login's password (a new login gets none).  The
    login gets ``default_transaction_read_only = on`` and :data:`READER_ROLE_SETTINGS`;
    ``temp_file_limit`` needs a superuser, so a ``CREATEROLE`` administrator's run skips it
    with a warning.  ``conn`` must be in autocommit mode.
    """
    ident = sql.Identifier(name)
    try:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(ident))
    except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
        pass  # made earlier, or by a concurrent session
    # Sent via psycopg with the literal composed client-side; never through SQLAlchemy, whose
    # errors echo the statement ("[SQL: ALTER ROLE ... PASSWORD '...']").
    secret = sql.SQL(" PASSWORD {}").format(sql.Literal(password)) if password is not None else sql.SQL("")
    conn.execute(sql.SQL("ALTER ROLE {} LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                         "NOBYPASSRLS{}").format(ident, secret))
    conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(ident))
    for setting, value in READER_ROLE_SETTINGS.items():
        try:
            conn.execute(sql.SQL("ALTER ROLE {} SET {} = {}").format(ident, sql.Identifier(setting), sql.Literal(value)))
        except psycopg.errors.InsufficientPrivilege:
            log.warning("%s: %s not set (only a superuser may set it); set it as a superuser: "
                        "ALTER ROLE %s SET %s = '%s'", name, setting, name, setting, value)
    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(roles.READER), ident))


def _password_file(data_dir: Path, main: URL) -> Path:
    """One password file per server (host, port or socket directory)."""
    server = f"{main.host or main.query.get('host', '')}:{main.port or ''}"
    digest = hashlib.sha256(server.encode()).hexdigest()[:16]
    return Path(data_dir) / "secrets" / f"reader-{digest}.password"


def _stored_password(path: Path) -> str | None:
    """The password kept in ``path``, or ``None`` (read paths never create one)."""
    try:
        password = path.read_text().strip()
    except FileNotFoundError:
        return None
    register_secret(password)
    return password


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
