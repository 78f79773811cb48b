"""Database roles: the three NOLOGIN groups and the SQL that gives them their privileges.

matstore's privileges live on three group roles (PostgreSQL, "Database Roles"; group roles
are ``NOLOGIN`` and login roles are their members):

``matstore_reader``
    ``SELECT`` on every table and view of the ``public`` schema (now and, through
    ``ALTER DEFAULT PRIVILEGES``, later), nothing else: no ``TEMPORARY``, no function of the
    job queue, no large-object function (``lo_*`` is revoked from ``PUBLIC`` in the database).
    ``matstore sql`` and the dashboard connect as a login member of this group.
``matstore_writer``
    ``SELECT/INSERT/UPDATE/DELETE`` on the store's tables, ``USAGE/SELECT/UPDATE`` on the
    sequences, ``EXECUTE`` on the job queue's functions and ``TEMPORARY`` (COPY staging):
    ingest, fits and workers, which run as this group (:func:`matstore.db.writer_engine`).
    Revision 0014 narrows it (:func:`narrow_writer_sql`): ``alembic_version`` and the views
    read-only, ``job_run`` (the audit trail) insert-only but for its outcome columns,
    ``procrastinate_events`` insert-only.
``matstore_owner``
    The group whose members run the migrations (own the schema).

Roles are cluster-wide while grants are per database, and many databases may share one
server (every test run creates its own): the statements below are idempotent and tolerate
another session creating the same role at the same moment.
"""

from __future__ import annotations

READER = "matstore_reader"
WRITER = "matstore_writer"
OWNER = "matstore_owner"
GROUPS = (READER, WRITER, OWNER)


def ensure_group_sql(name: str) -> str:
    """A ``DO`` block creating NOLOGIN group ``name`` if missing (race-safe, idempotent).

    A migrating role without ``CREATEROLE`` gets a message naming the missing role.
    """
    return f"""
DO $do$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') THEN
    BEGIN
      CREATE ROLE {name} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    EXCEPTION
      WHEN duplicate_object OR unique_violation THEN NULL;  -- created by a concurrent session
      WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'group role {name} does not exist and % may not create roles; '
          'create it as a superuser: CREATE ROLE {name} NOLOGIN', current_user;
    END;
  END IF;
END
$do$"""


def grant_sql(database: str) -> list[str]:
    """The grants of the three groups in ``database`` (a quoted identifier), run by the migrating role."""
    return [
        f"GRANT CONNECT ON DATABASE {database} TO {READER}, {WRITER}, {OWNER}",
        f"GRANT USAGE ON SCHEMA public TO {READER}, {WRITER}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {READER}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {WRITER}",
        f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {WRITER}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {READER}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {WRITER}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {WRITER}",
        # The job queue's functions: writers only (PUBLIC may execute any new function by default).
        "REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC",
        f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {WRITER}, {OWNER}",
        "ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC",
        f"ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO {WRITER}, {OWNER}",
        # Temporary tables are a write path too; PostgreSQL grants them to PUBLIC by default.
        f"REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC",
        f"GRANT TEMPORARY ON DATABASE {database} TO {WRITER}, {OWNER}",
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
    ]


def revoke_sql(database: str) -> list[str]:
    """Undo :func:`grant_sql` in ``database`` (the cluster-wide groups are left in place)."""
    return [
        f"REVOKE ALL ON DATABASE {database} FROM {READER}, {WRITER}, {OWNER}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {READER}, {WRITER}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {WRITER}",
        f"REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM {WRITER}, {OWNER}",
        f"REVOKE USAGE ON SCHEMA public FROM {READER}, {WRITER}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM {READER}, {WRITER}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM {WRITER}",
        f"ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM {WRITER}, {OWNER}",
        "ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO PUBLIC",
        "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO PUBLIC",
        f"GRANT TEMPORARY ON DATABASE {database} TO PUBLIC",
    ]



#: ``job_run`` columns a writer may update: a run's outcome, never what or who ran.
JOB_RUN_OUTCOME_COLUMNS = ("status", "finished_at", "error", "summary")

#: Relations a writer only reads or appends to (revision 0014), by what is revoked.
_WRITER_NARROWED = {
    "alembic_version": "INSERT, UPDATE, DELETE",  # migrations only
    "job_run": "UPDATE, DELETE",  # the audit trail: append, then record the outcome
    "procrastinate_events": "UPDATE, DELETE",  # appended by the queue's triggers; cascades run as the owner
}


def narrow_writer_sql(views: list[str]) -> list[str]:
    """Revision 0014: take from ``matstore_writer`` what no writer path needs.

    ``views`` are the quoted names of the views in ``public`` (writing through a view is no
    path of matstore's).  procrastinate's worker keeps ``SELECT/INSERT/UPDATE/DELETE`` on
    ``procrastinate_jobs``, ``_workers`` and ``_periodic_defers``: its functions
    (``procrastinate_fetch_job``, ``..._unregister_worker``, ``..._defer_periodic_job``) run
    as the caller and update and delete rows there.
    """
    statements = [f"REVOKE {privileges} ON {table} FROM {WRITER}" for table, privileges in _WRITER_NARROWED.items()]
    statements.append(f"GRANT UPDATE ({', '.join(JOB_RUN_OUTCOME_COLUMNS)}) ON job_run TO {WRITER}")
    statements += [f"REVOKE INSERT, UPDATE, DELETE ON {view} FROM {WRITER}" for view in views]
    return statements


def widen_writer_sql(views: list[str]) -> list[str]:
    """Undo :func:`narrow_writer_sql` (revision 0014's downgrade)."""
    statements = [f"REVOKE UPDATE ({', '.join(JOB_RUN_OUTCOME_COLUMNS)}) ON job_run FROM {WRITER}"]
    tables = list(_WRITER_NARROWED) + views
    return statements + [f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {WRITER}" for table in tables]


#: Large-object functions: a SELECT-only role could otherwise store data (``lo_from_bytea``)
#: that outlives its read-only transaction, or read server files (``lo_import``).
LARGE_OBJECT_FUNCTIONS = """
SELECT p.oid::regprocedure::text FROM pg_proc p
WHERE p.pronamespace = 'pg_catalog'::regnamespace
  AND (p.proname LIKE 'lo\\_%' OR p.proname IN ('loread', 'lowrite'))
"""
