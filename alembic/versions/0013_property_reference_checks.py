"""Property values' references checked once per statement instead of once per row (issue 16).

``bulk_property``, ``surface_property`` and ``configuration_property`` had one foreign key per
reference (five or six per table, all ``NO ACTION``).  PostgreSQL checks a foreign key with a
row-level trigger per key and inserted row (an SPI query and a ``FOR KEY SHARE`` row lock),
which was 70–75 % of the server's time when a table's values arrive in one binary ``COPY``
(docs/benchmarks.md §2: the same rows COPY at 12–15k rows/s with the keys, ~49k without).
The rows of one ``COPY`` share a handful of materials, methods, definitions, one source and
one job run, so this revision replaces the foreign keys by triggers that enforce the same
rules set-wise, as revision 0011 did for ``configuration``:

- ``AFTER INSERT ... FOR EACH STATEMENT`` on each property table (transition table
  ``new_rows``): every distinct non-NULL id of each reference must exist in the referenced
  table; those rows are locked ``FOR KEY SHARE``, as a foreign-key check does, so a
  concurrent delete waits for the inserting transaction and then sees its rows;
- ``BEFORE UPDATE OF <the reference columns>`` on each property table, per row, for a
  changed reference;
- ``BEFORE DELETE OR UPDATE OF id`` on each referenced table, per row: a referenced row
  cannot be deleted or renumbered (``NO ACTION``, as before; no property foreign key had an
  ``ON DELETE`` action);
- ``AFTER TRUNCATE`` on each referenced table: truncating it while a referencing property
  table holds rows fails (``TRUNCATE material CASCADE`` no longer empties ``bulk_property``:
  name the property tables in the same ``TRUNCATE``).

Four generic PL/pgSQL functions serve every table; each trigger passes its references in
``TG_ARGV`` (pairs ``column, referenced table`` on the property tables, pairs ``property
table, column`` on the referenced ones).  Violations raise SQLSTATE 23503
(``foreign_key_violation``), as before, with a message naming the table, the column and the
missing or still referenced id.  The functions are not ``SECURITY DEFINER``: they run with the
privileges of the writing role, which (``matstore_writer``, revision 0007) may select and lock
every table.

Known difference from a foreign key (the same as revision 0011's): under ``REPEATABLE READ``
or ``SERIALIZABLE`` a delete of a referenced row checks with its transaction's snapshot, so it
does not see property rows committed after that snapshot (PostgreSQL's own check uses a
cross-check snapshot).  matstore never deletes referenced rows; do it under the default
``READ COMMITTED``.

No row is changed; ``downgrade`` restores the foreign keys (validating the stored rows).

Revision ID: 0013
Revises: 0012
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (property table, column, referenced table, name of the foreign key it replaces)
REFERENCES = (
    ("bulk_property", "material_id", "material", "fk_bulk_property_material_id_material"),
    ("bulk_property", "method_id", "method", "fk_bulk_property_method_id_method"),
    ("bulk_property", "definition_id", "property_definition", "fk_bulk_property_definition_id_property_definition"),
    ("bulk_property", "source_id", "source", "fk_bulk_property_source_id_source"),
    ("bulk_property", "job_run_id", "job_run", "fk_bulk_property_job_run_id_job_run"),
    ("bulk_property", "configuration_id", "configuration", "fk_bulk_property_configuration_id_configuration"),
    ("surface_property", "surface_id", "surface", "fk_surface_property_surface_id_surface"),
    ("surface_property", "method_id", "method", "fk_surface_property_method_id_method"),
    ("surface_property", "definition_id", "property_definition", "fk_surface_property_definition_id_property_definition"),
    ("surface_property", "source_id", "source", "fk_surface_property_source_id_source"),
    ("surface_property", "job_run_id", "job_run", "fk_surface_property_job_run_id_job_run"),
    ("surface_property", "configuration_id", "configuration", "fk_surface_property_configuration_id_configuration"),
    ("configuration_property", "configuration_id", "material_configuration",
     "fk_configuration_property_configuration_id_material_con_c416"),
    ("configuration_property", "definition_id", "property_definition",
     "fk_configuration_property_definition_id_property_definition"),
    ("configuration_property", "source_id", "source", "fk_configuration_property_source_id_source"),
    ("configuration_property", "job_run_id", "job_run", "fk_configuration_property_job_run_id_job_run"),
)

_ON_INSERT = """
CREATE FUNCTION matstore_references_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
-- AFTER INSERT ... FOR EACH STATEMENT, transition table new_rows; TG_ARGV: column, referenced table, ...
DECLARE
    wanted bigint;
    locked bigint;
    missing bigint;
BEGIN
    FOR i IN 0 .. TG_NARGS / 2 - 1 LOOP
        EXECUTE format(
            'WITH w AS MATERIALIZED (SELECT DISTINCT %1$I AS id FROM new_rows WHERE %1$I IS NOT NULL) '
            'SELECT (SELECT count(*) FROM w), '
            '(SELECT count(*) FROM (SELECT FROM %2$I r WHERE r.id IN (SELECT id FROM w) FOR KEY SHARE OF r) l)',
            TG_ARGV[2 * i], TG_ARGV[2 * i + 1]) INTO wanted, locked;
        IF locked < wanted THEN
            EXECUTE format('SELECT min(n.%1$I) FROM new_rows n WHERE NOT EXISTS (SELECT FROM %2$I r WHERE r.id = n.%1$I)',
                           TG_ARGV[2 * i], TG_ARGV[2 * i + 1]) INTO missing;
            RAISE EXCEPTION 'insert or update on table "%" violates its reference to "%": key (%)=(%) is not present in table "%"',
                    TG_TABLE_NAME, TG_ARGV[2 * i + 1], TG_ARGV[2 * i], missing, TG_ARGV[2 * i + 1]
                USING ERRCODE = 'foreign_key_violation', TABLE = TG_TABLE_NAME, COLUMN = TG_ARGV[2 * i],
                      DETAIL = format('%s of %s ids of column %s are not present in table "%s".',
                                      wanted - locked, wanted, TG_ARGV[2 * i], TG_ARGV[2 * i + 1]);
        END IF;
    END LOOP;
    RETURN NULL;
END $$
"""

_ON_UPDATE = """
CREATE FUNCTION matstore_references_updated() RETURNS trigger LANGUAGE plpgsql AS $$
-- BEFORE UPDATE OF <columns> ... FOR EACH ROW; TG_ARGV: column, referenced table, ...
DECLARE
    new_id text;
    present boolean;
BEGIN
    FOR i IN 0 .. TG_NARGS / 2 - 1 LOOP
        new_id := to_jsonb(NEW) ->> TG_ARGV[2 * i];
        CONTINUE WHEN new_id IS NULL OR new_id IS NOT DISTINCT FROM to_jsonb(OLD) ->> TG_ARGV[2 * i];
        EXECUTE format('SELECT true FROM %I WHERE id = $1::bigint FOR KEY SHARE', TG_ARGV[2 * i + 1])
            INTO present USING new_id;
        IF present IS NULL THEN
            RAISE EXCEPTION 'insert or update on table "%" violates its reference to "%": key (%)=(%) is not present in table "%"',
                    TG_TABLE_NAME, TG_ARGV[2 * i + 1], TG_ARGV[2 * i], new_id, TG_ARGV[2 * i + 1]
                USING ERRCODE = 'foreign_key_violation', TABLE = TG_TABLE_NAME, COLUMN = TG_ARGV[2 * i];
        END IF;
    END LOOP;
    RETURN NEW;
END $$
"""

_ON_REFERENCED_CHANGE = """
CREATE FUNCTION matstore_referenced_changed() RETURNS trigger LANGUAGE plpgsql AS $$
-- BEFORE DELETE OR UPDATE OF id ... FOR EACH ROW on a referenced table; TG_ARGV: referencing table, column, ...
DECLARE
    referenced boolean;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.id IS NOT DISTINCT FROM OLD.id THEN
        RETURN NEW;
    END IF;
    FOR i IN 0 .. TG_NARGS / 2 - 1 LOOP
        EXECUTE format('SELECT EXISTS (SELECT FROM %I WHERE %I = $1)', TG_ARGV[2 * i], TG_ARGV[2 * i + 1])
            INTO referenced USING OLD.id;
        IF referenced THEN
            RAISE EXCEPTION 'update or delete on table "%" violates the reference from table "%": key (id)=(%) is still referenced by column %',
                    TG_TABLE_NAME, TG_ARGV[2 * i], OLD.id, TG_ARGV[2 * i + 1]
                USING ERRCODE = 'foreign_key_violation', TABLE = TG_TABLE_NAME,
                      DETAIL = format('Key (id)=(%s) is still referenced from table "%s".', OLD.id, TG_ARGV[2 * i]);
        END IF;
    END LOOP;
    IF TG_OP = 'UPDATE' THEN
        RETURN NEW;
    END IF;
    RETURN OLD;
END $$
"""

_ON_REFERENCED_TRUNCATE = """
CREATE FUNCTION matstore_referenced_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
-- AFTER TRUNCATE ... FOR EACH STATEMENT on a referenced table; TG_ARGV: the referencing tables
DECLARE
    holds_rows boolean;
BEGIN
    FOR i IN 0 .. TG_NARGS - 1 LOOP
        EXECUTE format('SELECT EXISTS (SELECT FROM %I)', TG_ARGV[i]) INTO holds_rows;
        IF holds_rows THEN
            RAISE EXCEPTION 'cannot truncate table "%" while table "%" holds rows that reference it', TG_TABLE_NAME, TG_ARGV[i]
                USING ERRCODE = 'foreign_key_violation', HINT = format('Truncate table "%s" at the same time.', TG_ARGV[i]);
        END IF;
    END LOOP;
    RETURN NULL;
END $$
"""

_FUNCTIONS = ("matstore_references_inserted", "matstore_references_updated",
              "matstore_referenced_changed", "matstore_referenced_truncated")


def _arguments(pairs: Sequence[tuple[str, str]]) -> str:
    """Trigger arguments: the strings of ``pairs`` in order, quoted (identifiers only, no quotes inside)."""
    return ", ".join(f"'{name}'" for pair in pairs for name in pair)


def _property_tables() -> list[str]:
    """The property tables, in :data:`REFERENCES` order."""
    return list(dict.fromkeys(table for table, *_ in REFERENCES))


def _referenced_tables() -> list[str]:
    """The referenced tables, in :data:`REFERENCES` order."""
    return list(dict.fromkeys(target for _, _, target, _ in REFERENCES))


def _create_property_triggers(table: str) -> None:
    """The insert (per statement) and update (per row) checks of property ``table``."""
    refs = [(column, target) for t, column, target, _ in REFERENCES if t == table]
    op.execute(
        f"CREATE TRIGGER property_references_on_insert AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows "
        f"FOR EACH STATEMENT EXECUTE FUNCTION matstore_references_inserted({_arguments(refs)})"
    )
    op.execute(
        f"CREATE TRIGGER property_references_on_update BEFORE UPDATE OF {', '.join(c for c, _ in refs)} ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION matstore_references_updated({_arguments(refs)})"
    )


def _create_referenced_triggers(target: str) -> None:
    """The delete/renumber (per row) and ``TRUNCATE`` checks of referenced table ``target``."""
    referencing = [(table, column) for table, column, t, _ in REFERENCES if t == target]
    op.execute(
        f"CREATE TRIGGER property_references BEFORE DELETE OR UPDATE OF id ON {target} "
        f"FOR EACH ROW EXECUTE FUNCTION matstore_referenced_changed({_arguments(referencing)})"
    )
    tables = ", ".join(f"'{table}'" for table in dict.fromkeys(table for table, _ in referencing))
    op.execute(
        f"CREATE TRIGGER property_references_truncate AFTER TRUNCATE ON {target} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION matstore_referenced_truncated({tables})"
    )


def upgrade() -> None:
    for table, column, target, name in REFERENCES:
        op.drop_constraint(name, table, type_="foreignkey")
        op.execute(f"COMMENT ON COLUMN {table}.{column} IS '{target}.id (checked by a trigger)'")
    for ddl in (_ON_INSERT, _ON_UPDATE, _ON_REFERENCED_CHANGE, _ON_REFERENCED_TRUNCATE):
        op.execute(ddl)
    for table in _property_tables():
        _create_property_triggers(table)
    for target in _referenced_tables():
        _create_referenced_triggers(target)


def downgrade() -> None:
    for target in _referenced_tables():
        op.execute(f"DROP TRIGGER property_references_truncate ON {target}")
        op.execute(f"DROP TRIGGER property_references ON {target}")
    for table in _property_tables():
        op.execute(f"DROP TRIGGER property_references_on_update ON {table}")
        op.execute(f"DROP TRIGGER property_references_on_insert ON {table}")
    for function in _FUNCTIONS:
        op.execute(f"DROP FUNCTION {function}()")
    for table, column, target, name in REFERENCES:
        op.execute(f"COMMENT ON COLUMN {table}.{column} IS NULL")
        op.create_foreign_key(name, table, target, [column], ["id"])
