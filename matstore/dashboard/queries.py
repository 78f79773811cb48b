"""All SQL of the dashboard.

Every function returns a :class:`pandas.DataFrame`, runs in a ``READ ONLY`` transaction with
a statement timeout (:func:`matstore.db.read_only_connection`) and is cached with
``st.cache_data(ttl=TTL_S)`` (its arguments are the cache key).  User input only ever
reaches the database as bound parameters; optional ``WHERE`` clauses are chosen from
constant SQL fragments in this module, never built from the input's text.

The engine is created once per URL (``st.cache_resource``).  It connects with
``MATSTORE_DASHBOARD_DATABASE_URL`` (the SELECT-only role of ``matstore db grant-reader``)
when set, else with the main database URL, always in read-only transactions.

Queries are written for a store of millions of property rows: they page with ``ORDER BY id
DESC LIMIT n`` (primary-key index), filter by foreign-key ids (indexed) and probe the
vocabulary with ``EXISTS`` rather than ``DISTINCT`` over the value tables.

A query that shows one value per key (material × method × property, surface, configuration)
takes the newest *unflagged* value (``DISTINCT ON (key) ... ORDER BY key, p.flag IS NOT NULL,
p.created_at DESC, p.id DESC``), the one the wide views (revision 0015) and the fits use; only
where a key has no unflagged value is the newest flagged one shown, with its flag (the pages
mark or leave out flagged values).  :func:`lattice_constant`, a number that scales the Wulff
chart, takes unflagged values only.  Lists of values (:func:`bulk_values`,
:func:`search_values`) show every value with its flag.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy import Engine, text

from matstore.config import get_settings
from matstore.db import get_engine, read_only_connection

#: Seconds a cached query result is reused before the database is asked again.
TTL_S = 60

#: Most rows a table query returns (the UI says when a result was cut).
MAX_ROWS = 2000


def _dashboard_url() -> str:
    # A login of the matstore_reader group only: never the main (possibly superuser) URL.
    from matstore.readers import reader_url

    return reader_url(get_settings(), dashboard=True)


@st.cache_resource(show_spinner=False)
def _engine_for(url: str) -> Engine:
    return get_engine(url)


def engine() -> Engine:
    """The dashboard's engine: a reader login (:func:`matstore.readers.reader_url`), never a superuser.

    Raises
    ------
    matstore.readers.ReaderUnavailableError
        If the configured reader URL can do more than read, or no reader login can be had.
    """
    return _engine_for(_dashboard_url())


def _frame(sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    with read_only_connection(engine(), timeout_ms=get_settings().statement_timeout_ms) as conn:
        result = conn.execute(text(sql), params or {})
        return _sql_nulls(pd.DataFrame(result.fetchall(), columns=list(result.keys())))


def _sql_nulls(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns as objects with ``None`` for SQL NULL.

    pandas 3 infers its ``str`` dtype for text and turns ``None`` into NaN, which is truthy:
    a page's ``value or "–"`` would show ``nan`` and ``" " + value if value`` would fail.
    """
    for column in frame.columns:
        if frame[column].dtype != object and pd.api.types.is_string_dtype(frame[column]):
            frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return frame


def _like(search: str) -> str:
    """``%search%`` with LIKE wildcards in ``search`` escaped (``ESCAPE '\\'``)."""
    escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _ids(values: Sequence[int] | None) -> list[int]:
    return [int(v) for v in values or ()]


#: Most words of a search (more are ignored; each word adds a lookup in the vocabulary).
MAX_SEARCH_WORDS = 8

#: ASCII names of the Greek letters of property symbols: ``gamma`` finds γ (surface_energy),
#: ``tau`` finds τ (surface_stress); a Greek letter typed as such works too.
GREEK_NAMES = {"alpha": "α", "gamma": "γ", "delta": "δ", "Delta": "Δ", "sigma": "σ", "tau": "τ", "chi": "χ"}

#: Three indices written apart (``1 1 1``, ``(1 -1 0)``, ``[2, 1, 0]``): joined into one search word.
_SPACED_MILLER = re.compile(r"(?<!\S)[(\[{]?\s*(-?\d{1,2})(?:\s*[,;]\s*|\s+)(-?\d{1,2})(?:\s*[,;]\s*|\s+)"
                            r"(-?\d{1,2})\s*[)\]}]?(?!\S)")
#: A word that may be a Miller index: digits, signs, separators and brackets only (``111``, ``(1,1,0)``, ``1̄10``).
_MILLER_WORD = re.compile("[(\\[{]?[-\u2212\\d,;\u0304\u0305]+[)\\]}]?")


def _search_words(search: str) -> list[str]:
    """The words of a search, at most :data:`MAX_SEARCH_WORDS`; spaced indices ``1 1 1`` become one word ``(1,1,1)``."""
    joined = _SPACED_MILLER.sub(lambda m: f"({m[1]},{m[2]},{m[3]})", search)
    return joined.split()[:MAX_SEARCH_WORDS]


def _miller(word: str) -> tuple[int, int, int] | None:
    """The reduced Miller index (h >= k >= l >= 0) a search word names, else ``None``.

    ``111``, ``(111)``, ``(1,1,1)``, ``{111}`` give (1, 1, 1); ``-110`` and ``1̄10`` give
    (1, 1, 0) (the cubic point group, :func:`matstore.orientation.from_miller`); words with
    letters or a decimal point (``Cu``, ``1.0``, ``2016``) are not Miller indices.
    """
    if not _MILLER_WORD.fullmatch(word) or not re.search(r"\d", word):
        return None
    from matstore.orientation import from_miller, miller_indices

    try:
        return from_miller(*miller_indices(word)).miller
    except ValueError:  # not three indices, or (0,0,0)
        return None


def _symbol_matches(word: str, symbol: str) -> bool:
    """Whether a search word names a property symbol: the whole symbol (case-insensitive, ``c44`` is
    C44) or its leading letters (case-sensitive: ``γ``/``gamma`` is γ, γ(111), γ_isf; ``E`` is
    E_c, E_f; ``a`` is a, not A)."""
    word = GREEK_NAMES.get(word, GREEK_NAMES.get(word.lower(), word))
    stem = re.match(r"[^\W\d_]+", symbol)
    return word.lower() == symbol.lower() or (stem is not None and word == stem.group(0))


def _search_clause(search: str, *, material_column: str, params: dict[str, Any],
                   method_column: str = "p.method_id", surface_alias: str | None = None) -> str:
    """SQL condition "every word of ``search`` names the row" on alias ``p``.

    ``search`` is split at white space (:func:`_search_words`); the condition is the AND of
    one condition per word (:func:`_word_clause`): a word matches (case-insensitive
    substring) the material formula, the method name or the property name, or the
    property's symbol (:func:`_symbol_matches`), or, for surface values (``surface_alias``,
    the ``surface`` table's alias), the surface's Miller index (:func:`_miller`), so
    ``Cu surface`` finds copper's surface values and ``Cu 111``, ``Cu (111)``, ``Cu 1 1 1``
    copper's (1,1,1) surfaces (and its bulk ``surface_energy_111``); a word equal to a
    formula matches that material only.  The matching ids are looked up first in the small
    vocabulary tables, so the condition on the value table is ``= ANY(array)`` (planned with
    the actual ids) or plain ``FALSE`` when a word matches nothing; a correlated ``IN
    (SELECT ...)`` would make PostgreSQL walk the whole value table.  User text reaches SQL
    only as bound parameters.
    """
    conditions = []
    for n, word in enumerate(_search_words(search)):
        conditions.append(_word_clause(word, n, material_column=material_column, method_column=method_column,
                                       params=params, surface_alias=surface_alias))
    return "(" + " AND ".join(conditions) + ")" if conditions else "TRUE"


def _word_clause(word: str, n: int, *, material_column: str, method_column: str, params: dict[str, Any],
                 surface_alias: str | None = None) -> str:
    """Condition for one search word; a word that is exactly a formula (``Cu``) means that
    material only, not every potential whose name contains it (``…_CuNi_…``).  A Miller word
    also matches names by its digits (``(1,1,1)`` finds ``surface_energy_111``)."""
    exact = _frame("SELECT id FROM material WHERE lower(formula) = lower(:word)", {"word": word})
    if not exact.empty:
        params[f"search_{n}_material_ids"] = [int(i) for i in exact["id"]]
        return f"{material_column} = ANY(:search_{n}_material_ids)"
    miller = _miller(word)
    patterns = [_like(word)]
    if miller is not None and max(miller) <= 9:
        patterns.append(_like("".join(map(str, miller))))
    found = _frame(
        """
        SELECT 'material' AS kind, id FROM material WHERE formula ILIKE ANY(:patterns)
        UNION ALL SELECT 'method', id FROM method WHERE name ILIKE ANY(:patterns)
        UNION ALL SELECT 'definition', id FROM property_definition WHERE name ILIKE ANY(:patterns)
        """,
        {"patterns": patterns},  # LIKE's default escape character is the backslash of _like
    )
    symbols = _frame("SELECT id, symbol FROM property_definition WHERE symbol IS NOT NULL")
    by_symbol = [int(r.id) for r in symbols.itertuples() if _symbol_matches(word, r.symbol)]
    clauses = []
    for kind, column in (("material", material_column), ("method", method_column), ("definition", "p.definition_id")):
        ids = [int(i) for i in found.loc[found["kind"] == kind, "id"]]
        if kind == "definition":
            ids = sorted({*ids, *by_symbol})
        if ids:
            params[f"search_{n}_{kind}_ids"] = ids
            clauses.append(f"{column} = ANY(:search_{n}_{kind}_ids)")
    if miller is not None and surface_alias is not None:
        params.update({f"search_{n}_h": miller[0], f"search_{n}_k": miller[1], f"search_{n}_l": miller[2]})
        clauses.append(f"({surface_alias}.miller_h = :search_{n}_h AND {surface_alias}.miller_k = :search_{n}_k "
                       f"AND {surface_alias}.miller_l = :search_{n}_l)")
    return "(" + " OR ".join(clauses) + ")" if clauses else "FALSE"


_cache = st.cache_data(ttl=TTL_S, show_spinner=False)


# --- overview -----------------------------------------------------------------------------

@_cache
def counts() -> pd.DataFrame:
    """Row counts of the store, one row.

    Returns
    -------
    pandas.DataFrame
        Columns ``materials, methods, surfaces, bulk_properties, surface_properties,
        configuration_properties, configurations, equation_models, equation_versions, job_runs, failed_job_runs``.
    """
    return _frame(
        """
        SELECT (SELECT count(*) FROM material) AS materials,
               (SELECT count(*) FROM method) AS methods,
               (SELECT count(*) FROM surface) AS surfaces,
               (SELECT count(*) FROM bulk_property) AS bulk_properties,
               (SELECT count(*) FROM surface_property) AS surface_properties,
               (SELECT count(*) FROM configuration_property) AS configuration_properties,
               (SELECT count(*) FROM configuration) AS configurations,
               (SELECT count(*) FROM equation_model) AS equation_models,
               (SELECT count(*) FROM equation_version) AS equation_versions,
               (SELECT count(*) FROM job_run) AS job_runs,
               (SELECT count(*) FROM job_run WHERE status = 'failed') AS failed_job_runs
        """
    )


@_cache
def job_runs(*, statuses: tuple[str, ...] = (), limit: int = 50) -> pd.DataFrame:
    """The newest job runs, optionally only those with one of ``statuses``.

    Returns
    -------
    pandas.DataFrame
        ``id, kind, model, status, started_at, finished_at, duration_s, code_version,
        git_commit, host, pid, error, parameters, summary``, newest first; ``model`` is the
        equation model a fit or refit run worked on (``parameters->>'name'``), else NULL.
    """
    where = "WHERE status = ANY(:statuses)" if statuses else ""
    return _frame(
        f"""
        SELECT id, kind,
               CASE WHEN kind LIKE '%fit%' THEN coalesce(parameters->>'name', parameters->>'model') END AS model,
               status, started_at, finished_at,
               extract(epoch FROM finished_at - started_at)::float8 AS duration_s,
               code_version, git_commit, host, pid, error, parameters, summary
        FROM job_run {where}
        ORDER BY started_at DESC, id DESC
        LIMIT :limit
        """,
        {"statuses": list(statuses), "limit": int(limit)},
    )


@_cache
def job_status_counts() -> pd.DataFrame:
    """Number of job runs per kind and status (``kind, status, n``)."""
    return _frame("SELECT kind, status, count(*) AS n FROM job_run GROUP BY kind, status ORDER BY kind, status")


# --- vocabulary and choices ---------------------------------------------------------------

@_cache
def materials() -> pd.DataFrame:
    """All materials (``id, formula, prototype, label``) ordered by formula."""
    return _frame(
        "SELECT id, formula, prototype, formula || ' (' || prototype || ')' AS label "
        "FROM material ORDER BY formula, prototype"
    )


@_cache
def methods() -> pd.DataFrame:
    """All methods (``id, name, kind, calculator, potential``) ordered by name."""
    return _frame("SELECT id, name, kind, calculator, potential FROM method ORDER BY name, id")


@_cache
def bulk_definitions() -> pd.DataFrame:
    """Property definitions that have at least one bulk value.

    Returns
    -------
    pandas.DataFrame
        ``id, name, unit, scope, symbol, description`` ordered by name.
    """
    return _frame(
        """
        SELECT d.id, d.name, d.unit, d.scope, d.symbol, d.description
        FROM property_definition d
        WHERE EXISTS (SELECT 1 FROM bulk_property p WHERE p.definition_id = d.id)
        ORDER BY d.name
        """
    )


# --- bulk properties ----------------------------------------------------------------------

def _bulk_filters(
    material_ids: Sequence[int], method_ids: Sequence[int], definition_ids: Sequence[int], search: str
) -> tuple[str, dict[str, Any]]:
    clauses, params = ["TRUE"], {}
    if material_ids:
        clauses.append("p.material_id = ANY(:material_ids)")
        params["material_ids"] = _ids(material_ids)
    if method_ids:
        clauses.append("p.method_id = ANY(:method_ids)")
        params["method_ids"] = _ids(method_ids)
    if definition_ids:
        clauses.append("p.definition_id = ANY(:definition_ids)")
        params["definition_ids"] = _ids(definition_ids)
    if search.strip():
        clauses.append(_search_clause(search.strip(), material_column="p.material_id", params=params))
    return " AND ".join(clauses), params


@_cache
def bulk_values(
    *,
    material_ids: tuple[int, ...] = (),
    method_ids: tuple[int, ...] = (),
    definition_ids: tuple[int, ...] = (),
    search: str = "",
    limit: int = MAX_ROWS,
) -> pd.DataFrame:
    """Bulk property values matching the filters, newest first, at most ``limit`` rows.

    Parameters
    ----------
    material_ids, method_ids, definition_ids:
        Keep only these ids (empty: no filter).
    search:
        Case-insensitive substring of the material formula, method name or property name.
    limit:
        Most rows returned.

    Returns
    -------
    pandas.DataFrame
        ``id, material, prototype, method, method_kind, method_calculator, method_potential,
        property, value, unit, uncertainty, flag, source_kind, source_uri, job_run_id,
        created_at``; ``value`` and ``uncertainty`` in ``unit``.
    """
    where, params = _bulk_filters(material_ids, method_ids, definition_ids, search)
    params["limit"] = int(limit)
    return _frame(
        f"""
        SELECT p.id, m.formula AS material, m.prototype, me.name AS method, me.kind AS method_kind,
               me.calculator AS method_calculator, me.potential AS method_potential, d.name AS property,
               p.value, d.unit, p.uncertainty, p.flag, s.kind AS source_kind, s.uri AS source_uri,
               p.job_run_id, p.created_at
        FROM bulk_property p
        JOIN material m ON m.id = p.material_id
        JOIN method me ON me.id = p.method_id
        JOIN property_definition d ON d.id = p.definition_id
        JOIN source s ON s.id = p.source_id
        WHERE {where}
        ORDER BY p.id DESC
        LIMIT :limit
        """,
        params,
    )


@_cache
def bulk_values_count(
    *,
    material_ids: tuple[int, ...] = (),
    method_ids: tuple[int, ...] = (),
    definition_ids: tuple[int, ...] = (),
    search: str = "",
) -> pd.DataFrame:
    """Number of bulk values matching the filters of :func:`bulk_values` (column ``n``)."""
    where, params = _bulk_filters(material_ids, method_ids, definition_ids, search)
    return _frame(f"SELECT count(*) AS n FROM bulk_property p WHERE {where}", params)


@_cache
def bulk_pair(
    *,
    x: str,
    y: str,
    material_ids: tuple[int, ...] = (),
    method_ids: tuple[int, ...] = (),
) -> pd.DataFrame:
    """Two bulk properties side by side, one row per material × method that has both.

    Where a material × method has several values (several sources), the newest unflagged one
    is used (module docstring), else the newest flagged one, shown with its flag.

    Parameters
    ----------
    x, y:
        Property definition names, e.g. ``vacancy_migration_energy`` and ``strength``.
    material_ids, method_ids:
        Keep only these ids (empty: all).

    Returns
    -------
    pandas.DataFrame
        ``material, prototype, method, method_kind, method_calculator, method_potential,
        x, y, x_unit, y_unit, x_flag, y_flag, x_id, y_id`` (flags: the validation flag of the
        value, NULL when it passed; ids: ``bulk_property.id`` for the provenance link).
    """
    clauses, params = ["TRUE"], {"x": x, "y": y}
    if material_ids:
        clauses.append("p.material_id = ANY(:material_ids)")
        params["material_ids"] = _ids(material_ids)
    if method_ids:
        clauses.append("p.method_id = ANY(:method_ids)")
        params["method_ids"] = _ids(method_ids)
    where = " AND ".join(clauses)
    newest = """
        SELECT DISTINCT ON (p.material_id, p.method_id) p.material_id, p.method_id, p.value, d.unit,
               p.flag, p.id
        FROM bulk_property p JOIN property_definition d ON d.id = p.definition_id
        WHERE d.name = :{name} AND {where}
        ORDER BY p.material_id, p.method_id, p.flag IS NOT NULL, p.created_at DESC, p.id DESC
    """
    return _frame(
        f"""
        WITH px AS ({newest.format(name="x", where=where)}),
             py AS ({newest.format(name="y", where=where)})
        SELECT m.formula AS material, m.prototype, me.name AS method, me.kind AS method_kind,
               me.calculator AS method_calculator, me.potential AS method_potential,
               px.value AS x, py.value AS y, px.unit AS x_unit, py.unit AS y_unit,
               px.flag AS x_flag, py.flag AS y_flag, px.id AS x_id, py.id AS y_id
        FROM px JOIN py USING (material_id, method_id)
        JOIN material m ON m.id = px.material_id
        JOIN method me ON me.id = px.method_id
        ORDER BY m.formula, me.name
        """,
        params,
    )


@_cache
def lattice_constant(*, material_id: int, method_id: int | None = None) -> pd.DataFrame:
    """Newest unflagged ``lattice_constant`` (Å) of a material, preferring the given method.

    Unflagged only, as the wide views (revision 0015) and the fits: a value kept with a
    validation flag (e.g. ``implausible``, a superseded reading) never scales the Wulff shape.

    Returns
    -------
    pandas.DataFrame
        Zero or one row: ``value, unit, method, same_method``.
    """
    return _frame(
        """
        SELECT p.value, d.unit, me.name AS method, (p.method_id = :method_id) AS same_method
        FROM bulk_property p
        JOIN property_definition d ON d.id = p.definition_id
        JOIN method me ON me.id = p.method_id
        WHERE d.name = 'lattice_constant' AND p.material_id = :material_id AND p.flag IS NULL
        ORDER BY (p.method_id = :method_id) DESC NULLS LAST, p.created_at DESC, p.id DESC
        LIMIT 1
        """,
        {"material_id": int(material_id), "method_id": None if method_id is None else int(method_id)},
    )


# --- surfaces -----------------------------------------------------------------------------

@_cache
def surface_choices() -> pd.DataFrame:
    """Material × method pairs with surface values.

    Returns
    -------
    pandas.DataFrame
        ``material_id, material, prototype, method_id, method, method_kind,
        method_calculator, method_potential, n_surfaces, n_values, n_flagged``.
    """
    return _frame(
        """
        SELECT su.material_id, m.formula AS material, m.prototype, p.method_id, me.name AS method,
               me.kind AS method_kind, me.calculator AS method_calculator, me.potential AS method_potential,
               count(DISTINCT su.id) AS n_surfaces, count(*) AS n_values,
               count(*) FILTER (WHERE p.flag IS NOT NULL) AS n_flagged
        FROM surface_property p
        JOIN surface su ON su.id = p.surface_id
        JOIN material m ON m.id = su.material_id
        JOIN method me ON me.id = p.method_id
        GROUP BY su.material_id, m.formula, m.prototype, p.method_id, me.name, me.kind, me.calculator, me.potential
        ORDER BY m.formula, me.name
        """
    )


@_cache
def surface_values(*, material_id: int, method_id: int) -> pd.DataFrame:
    """Every surface value of one material and method in long form (newest per property).

    Newest unflagged value per surface and property, else the newest flagged one with its
    flag (module docstring).

    Returns
    -------
    pandas.DataFrame
        ``surface_id, miller_h, miller_k, miller_l, theta_deg, phi_deg, normal_x, normal_y,
        normal_z, property, symbol, unit, value, uncertainty, flag, value_id``.
    """
    return _frame(
        """
        SELECT DISTINCT ON (su.id, d.id)
               su.id AS surface_id, su.miller_h, su.miller_k, su.miller_l, su.theta_deg, su.phi_deg,
               su.normal_x, su.normal_y, su.normal_z, d.name AS property, d.symbol, d.unit,
               p.value, p.uncertainty, p.flag, p.id AS value_id
        FROM surface_property p
        JOIN surface su ON su.id = p.surface_id
        JOIN property_definition d ON d.id = p.definition_id
        WHERE su.material_id = :material_id AND p.method_id = :method_id
        ORDER BY su.id, d.id, p.flag IS NOT NULL, p.created_at DESC, p.id DESC
        """,
        {"material_id": int(material_id), "method_id": int(method_id)},
    )


# --- comparison of methods ---------------------------------------------------------------

@_cache
def method_choices(*, material_id: int) -> pd.DataFrame:
    """Methods with values for one material, most values first.

    Returns
    -------
    pandas.DataFrame
        ``method_id, method, method_kind, method_calculator, method_potential, n_bulk, n_surface``.
    """
    return _frame(
        """
        WITH counts AS (
            SELECT method_id, count(*) AS n_bulk, 0::bigint AS n_surface FROM bulk_property
            WHERE material_id = :material_id GROUP BY method_id
            UNION ALL
            SELECT p.method_id, 0, count(*) FROM surface_property p JOIN surface su ON su.id = p.surface_id
            WHERE su.material_id = :material_id GROUP BY p.method_id)
        SELECT me.id AS method_id, me.name AS method, me.kind AS method_kind,
               me.calculator AS method_calculator, me.potential AS method_potential,
               sum(c.n_bulk)::bigint AS n_bulk, sum(c.n_surface)::bigint AS n_surface
        FROM counts c JOIN method me ON me.id = c.method_id
        GROUP BY me.id ORDER BY sum(c.n_surface) DESC, sum(c.n_bulk) DESC, me.name
        """,
        {"material_id": int(material_id)},
    )


@_cache
def surface_comparison(*, material_id: int, method_ids: tuple[int, ...], property_name: str) -> pd.DataFrame:
    """One surface property of one material under several methods (newest value per surface).

    Newest unflagged value, else the newest flagged one with its flag (module docstring).

    Returns
    -------
    pandas.DataFrame
        ``method, method_kind, method_calculator, method_potential, miller_h, miller_k,
        miller_l, theta_deg, phi_deg, value, unit, flag, value_id``.
    """
    return _frame(
        """
        SELECT DISTINCT ON (p.method_id, su.id)
               me.name AS method, me.kind AS method_kind, me.calculator AS method_calculator,
               me.potential AS method_potential, su.miller_h, su.miller_k, su.miller_l, su.theta_deg,
               su.phi_deg, p.value, d.unit, p.flag, p.id AS value_id
        FROM surface_property p
        JOIN surface su ON su.id = p.surface_id
        JOIN property_definition d ON d.id = p.definition_id
        JOIN method me ON me.id = p.method_id
        WHERE su.material_id = :material_id AND p.method_id = ANY(:method_ids) AND d.name = :name
        ORDER BY p.method_id, su.id, p.flag IS NOT NULL, p.created_at DESC, p.id DESC
        """,
        {"material_id": int(material_id), "method_ids": _ids(method_ids), "name": property_name},
    )


@_cache
def bulk_comparison(*, material_id: int, method_ids: tuple[int, ...]) -> pd.DataFrame:
    """Bulk properties of one material under several methods (newest value of each).

    Newest unflagged value, else the newest flagged one with its flag (module docstring).

    Returns
    -------
    pandas.DataFrame
        ``method, property, value, unit, flag, value_id``.
    """
    return _frame(
        """
        SELECT DISTINCT ON (p.method_id, p.definition_id)
               me.name AS method, d.name AS property, p.value, d.unit, p.flag, p.id AS value_id
        FROM bulk_property p
        JOIN property_definition d ON d.id = p.definition_id
        JOIN method me ON me.id = p.method_id
        WHERE p.material_id = :material_id AND p.method_id = ANY(:method_ids)
        ORDER BY p.method_id, p.definition_id, p.flag IS NOT NULL, p.created_at DESC, p.id DESC
        """,
        {"material_id": int(material_id), "method_ids": _ids(method_ids)},
    )


@_cache
def feature_choices(*, names: tuple[str, ...], version_id: int | None = None) -> pd.DataFrame:
    """Material × method pairs with stored bulk values of ``names``, most complete first.

    Parameters
    ----------
    names : bulk property names (an equation's features)
    version_id : pairs among this equation version's training rows come first

    Returns
    -------
    pandas.DataFrame
        ``material_id, material, method_id, method, n_features, trained`` (how many of
        ``names`` are stored; whether the pair is in the version's training data).
    """
    return _frame(
        """
        SELECT p.material_id, m.formula AS material, p.method_id, me.name AS method,
               count(DISTINCT p.definition_id) AS n_features,
               EXISTS (SELECT 1 FROM equation_prediction ep WHERE ep.version_id = :version_id
                       AND ep.material_id = p.material_id AND ep.method_id = p.method_id) AS trained
        FROM bulk_property p
        JOIN property_definition d ON d.id = p.definition_id
        JOIN material m ON m.id = p.material_id
        JOIN method me ON me.id = p.method_id
        WHERE d.name = ANY(:names)
        GROUP BY p.material_id, m.formula, p.method_id, me.name
        ORDER BY count(DISTINCT p.definition_id) DESC, 6 DESC, m.formula, me.name
        LIMIT :limit
        """,
        {"names": list(names), "limit": MAX_ROWS, "version_id": None if version_id is None else int(version_id)},
    )


@_cache
def material_identity(*, material_id: int) -> tuple[str, str] | None:
    """``(formula, prototype)`` of one stored material (``material.prototype`` as stored), or None."""
    rows = _frame("SELECT formula, prototype FROM material WHERE id = :id", {"id": int(material_id)})
    return None if rows.empty else (str(rows.formula.iloc[0]), str(rows.prototype.iloc[0]))


@_cache
def feature_values(*, material_id: int, method_id: int, names: tuple[str, ...]) -> pd.DataFrame:
    """Newest bulk value of each of ``names`` for one material and method (a prediction's inputs).

    Newest unflagged value (what a fit and :func:`matstore.models.dataset.stored_inputs` use),
    else the newest flagged one with its flag (module docstring).

    Returns
    -------
    pandas.DataFrame
        ``property, value, unit, flag, value_id``.
    """
    return _frame(
        """
        SELECT DISTINCT ON (d.id) d.name AS property, p.value, d.unit, p.flag, p.id AS value_id
        FROM bulk_property p JOIN property_definition d ON d.id = p.definition_id
        WHERE p.material_id = :material_id AND p.method_id = :method_id AND d.name = ANY(:names)
        ORDER BY d.id, p.flag IS NOT NULL, p.created_at DESC, p.id DESC
        """,
        {"material_id": int(material_id), "method_id": int(method_id), "names": list(names)},
    )


# --- per-configuration values -------------------------------------------------------------

@_cache
def configuration_choices() -> pd.DataFrame:
    """Material × method pairs with per-configuration values (``material_configuration``).

    Returns
    -------
    pandas.DataFrame
        ``material_id, material, method_id, method, method_kind, method_calculator,
        method_potential, n_configurations, n_values, n_flagged``; empty when the store has
        no per-configuration table yet.
    """
    if not bool(_frame("SELECT to_regclass('configuration_property') IS NOT NULL AS present").iloc[0]["present"]):
        return pd.DataFrame(columns=["material_id", "material", "method_id", "method", "method_kind",
                                     "method_calculator", "method_potential", "n_configurations", "n_values",
                                     "n_flagged"])
    return _frame(
        """
        SELECT mc.material_id, m.formula AS material, mc.method_id, me.name AS method, me.kind AS method_kind,
               me.calculator AS method_calculator, me.potential AS method_potential,
               count(DISTINCT mc.id) AS n_configurations, count(p.id) AS n_values,
               count(p.id) FILTER (WHERE p.flag IS NOT NULL) AS n_flagged
        FROM material_configuration mc
        JOIN material m ON m.id = mc.material_id
        JOIN method me ON me.id = mc.method_id
        LEFT JOIN configuration_property p ON p.configuration_id = mc.id
        GROUP BY mc.material_id, m.formula, mc.method_id, me.name, me.kind, me.calculator, me.potential
        ORDER BY count(DISTINCT mc.id) DESC, m.formula, me.name
        """
    )


@_cache
def configuration_values(*, material_id: int, method_id: int, limit: int = 50 * MAX_ROWS) -> pd.DataFrame:
    """Per-configuration values of one material and method in long form (newest per property).

    Newest unflagged value, else the newest flagged one with its flag (module docstring).

    Returns
    -------
    pandas.DataFrame
        ``configuration_id, key, structure_id, property, unit, value, uncertainty, flag,
        value_id``, at most ``limit`` rows, ordered by configuration key.
    """
    return _frame(
        """
        SELECT DISTINCT ON (mc.key, d.name)
               mc.id AS configuration_id, mc.key, mc.structure_id, d.name AS property, d.unit, p.value,
               p.uncertainty, p.flag, p.id AS value_id
        FROM material_configuration mc
        JOIN configuration_property p ON p.configuration_id = mc.id
        JOIN property_definition d ON d.id = p.definition_id
        WHERE mc.material_id = :material_id AND mc.method_id = :method_id
        ORDER BY mc.key, d.name, p.flag IS NOT NULL, p.created_at DESC, p.id DESC
        LIMIT :limit
        """,
        {"material_id": int(material_id), "method_id": int(method_id), "limit": int(limit)},
    )


@_cache
def configuration_feature_choices(*, names: tuple[str, ...], version_id: int | None = None,
                                  limit: int = 200) -> pd.DataFrame:
    """Material configurations with stored values of ``names``, most complete first.

    Returns
    -------
    pandas.DataFrame
        ``configuration_id, material, method, key, n_features, trained`` (``trained``: the
        configuration is among the version's training rows), at most ``limit`` rows.
    """
    return _frame(
        """
        SELECT mc.id AS configuration_id, m.formula AS material, me.name AS method, mc.key,
               count(DISTINCT p.definition_id) AS n_features,
               EXISTS (SELECT 1 FROM equation_prediction ep WHERE ep.version_id = :version_id
                       AND ep.configuration_id = mc.id) AS trained
        FROM configuration_property p
        JOIN property_definition d ON d.id = p.definition_id
        JOIN material_configuration mc ON mc.id = p.configuration_id
        JOIN material m ON m.id = mc.material_id
        JOIN method me ON me.id = mc.method_id
        WHERE d.name = ANY(:names)
        GROUP BY mc.id, m.formula, me.name, mc.key
        ORDER BY count(DISTINCT p.definition_id) DESC, 6 DESC, m.formula, me.name, mc.key
        LIMIT :limit
        """,
        {"names": list(names), "version_id": None if version_id is None else int(version_id), "limit": int(limit)},
    )


@_cache
def configuration_feature_values(*, configuration_id: int, names: tuple[str, ...]) -> pd.DataFrame:
    """Newest value of each of ``names`` for one material configuration (``property, value, unit, flag, value_id``).

    Newest unflagged value, else the newest flagged one with its flag (module docstring).
    """
    return _frame(
        """
        SELECT DISTINCT ON (d.id) d.name AS property, p.value, d.unit, p.flag, p.id AS value_id
        FROM configuration_property p JOIN property_definition d ON d.id = p.definition_id
        WHERE p.configuration_id = :configuration_id AND d.name = ANY(:names)
        ORDER BY d.id, p.flag IS NOT NULL, p.created_at DESC, p.id DESC
        """,
        {"configuration_id": int(configuration_id), "names": list(names)},
    )


# --- provenance ---------------------------------------------------------------------------

_VALUE_SELECT = """
    SELECT '{scope}'::text AS scope, p.id AS value_id, m.formula AS material, me.name AS method,
           d.name AS property, p.value, d.unit, {orientation} AS orientation, p.created_at
    FROM {table} p
    {surface_join}
    JOIN material m ON m.id = {material}
    JOIN method me ON me.id = {method}
    JOIN property_definition d ON d.id = p.definition_id
    WHERE {where}
    ORDER BY p.id DESC
    LIMIT :limit
"""

_ORIENTATION_SQL = (
    "CASE WHEN su.miller_h IS NOT NULL THEN '(' || su.miller_h || ',' || su.miller_k || ',' || su.miller_l || ')' "
    "ELSE 'θ=' || round(su.theta_deg::numeric, 2) || '°, φ=' || round(su.phi_deg::numeric, 2) || '°' END"
)


@_cache
def search_values(*, search: str = "", scope: str = "all", limit: int = 200) -> pd.DataFrame:
    """Stored values that every word of ``search`` names (:func:`_search_clause`).

    A word matches the material formula, method name or property name (case-insensitive
    substring), a property symbol (``γ`` or ``gamma``, ``tau``, ``C44``) or a surface's Miller
    index (``111``, ``(111)``, ``1 1 1``, ``(1,1,0)``); ``Cu 111`` is copper's (1,1,1) surface
    values and its bulk ``surface_energy_111``.  A search that is a whole number also matches
    the value id.  Newest first, at most ``limit`` values of each scope; flagged values are
    listed too (with the flag on the Provenance page).

    Parameters
    ----------
    search:
        Words as above (or a value id).
    scope:
        ``all``, ``bulk``, ``surface`` or ``configuration`` (per-configuration values).

    Returns
    -------
    pandas.DataFrame
        ``scope, value_id, material, method, property, value, unit, orientation, created_at``.
    """
    params: dict[str, Any] = {"limit": int(limit)}
    text_search = search.strip()
    parts = []
    for name, table, material, method, join, orientation in (
        ("bulk", "bulk_property", "p.material_id", "p.method_id", "", "NULL::text"),
        ("surface", "surface_property", "su.material_id", "p.method_id", "JOIN surface su ON su.id = p.surface_id",
         _ORIENTATION_SQL),
        ("configuration", "configuration_property", "mc.material_id", "mc.method_id",
         "JOIN material_configuration mc ON mc.id = p.configuration_id", "'configuration ' || mc.key"),
    ):
        if scope not in ("all", name):
            continue
        wheres = ["TRUE"]
        if text_search:
            wheres = [_search_clause(text_search, material_column=material, method_column=method, params=params,
                                     surface_alias="su" if name == "surface" else None)]
            if text_search.isdigit() and len(text_search) < 19:
                # A separate branch, so that the primary key answers it (an OR would not).
                params["value_id"] = int(text_search)
                wheres.append("p.id = :value_id")
        parts += [
            "(" + _VALUE_SELECT.format(scope=name, table=table, material=material, method=method, surface_join=join,
                                        orientation=orientation, where=where) + ")"
            for where in wheres
        ]
    if not parts:
        return pd.DataFrame(columns=["scope", "value_id", "material", "method", "property", "value",
                                     "unit", "orientation", "created_at"])
    union = " UNION ".join(parts)  # UNION: a row found by name and by id appears once
    return _frame(f"SELECT * FROM ({union}) AS found ORDER BY created_at DESC, value_id DESC", params)


@_cache
def value_provenance(*, scope: str, value_id: int) -> pd.DataFrame:
    """Everything known about how one stored value was made; zero or one row.

    Parameters
    ----------
    scope:
        ``bulk``, ``surface`` or ``configuration`` (a per-configuration value).
    value_id:
        ``bulk_property.id``, ``surface_property.id`` or ``configuration_property.id``.

    Returns
    -------
    pandas.DataFrame
        Value columns (``material, property, value, unit, uncertainty, flag, details``,
        orientation for surfaces) and prefixed columns ``method_*`` (name, kind, calculator,
        potential, potential_sha256, parameters, software), ``source_*`` (kind, sha256, uri,
        doi, license, commit, description), ``job_*`` (id, kind, status, code_version,
        git_commit, host, started_at, finished_at, parameters) and ``config_*`` (id, formula,
        n_atoms, energy, content_sha256, info).

    Raises
    ------
    ValueError
        If ``scope`` is not ``bulk``, ``surface`` or ``configuration``.
    """
    method, structure = "p.method_id", "p.configuration_id"  # configuration: the atomic structure
    if scope == "bulk":
        table, join, material = "bulk_property", "", "p.material_id"
        orientation = "NULL::text AS orientation, NULL::float8 AS theta_deg, NULL::float8 AS phi_deg"
    elif scope == "surface":
        table, join, material = "surface_property", "JOIN surface su ON su.id = p.surface_id", "su.material_id"
        orientation = f"{_ORIENTATION_SQL} AS orientation, su.theta_deg, su.phi_deg"
    elif scope == "configuration":
        table, material = "configuration_property", "mc.material_id"
        join = "JOIN material_configuration mc ON mc.id = p.configuration_id"
        method, structure = "mc.method_id", "mc.structure_id"
        orientation = "'configuration ' || mc.key AS orientation, NULL::float8 AS theta_deg, NULL::float8 AS phi_deg"
    else:
        raise ValueError(f"scope must be 'bulk', 'surface' or 'configuration', got {scope!r}")
    return _frame(
        f"""
        SELECT p.id AS value_id, m.formula AS material, m.prototype, d.name AS property, d.symbol,
               p.value, d.unit, p.uncertainty, p.flag, p.details, p.created_at, {orientation},
               me.id AS method_id, me.name AS method_name, me.kind AS method_kind,
               me.calculator AS method_calculator, me.potential AS method_potential,
               me.potential_sha256 AS method_potential_sha256, me.parameters AS method_parameters,
               me.software AS method_software, me.description AS method_description,
               s.id AS source_id, s.kind AS source_kind, s.sha256 AS source_sha256, s.uri AS source_uri,
               s.doi AS source_doi, s.license AS source_license, s.commit AS source_commit,
               s.description AS source_description,
               j.id AS job_id, j.kind AS job_kind, j.status AS job_status,
               j.code_version AS job_code_version, j.git_commit AS job_git_commit, j.host AS job_host,
               j.started_at AS job_started_at, j.finished_at AS job_finished_at,
               j.parameters AS job_parameters,
               c.id AS config_id, c.formula AS config_formula, c.n_atoms AS config_n_atoms,
               c.energy AS config_energy, c.content_sha256 AS config_content_sha256, c.info AS config_info,
               c.pbc AS config_pbc, c.cell AS config_cell
        FROM {table} p
        {join}
        JOIN material m ON m.id = {material}
        JOIN method me ON me.id = {method}
        JOIN property_definition d ON d.id = p.definition_id
        JOIN source s ON s.id = p.source_id
        JOIN job_run j ON j.id = p.job_run_id
        LEFT JOIN configuration c ON c.id = {structure}
        WHERE p.id = :value_id
        """,
        {"value_id": int(value_id)},
    )


# --- equations ----------------------------------------------------------------------------

@_cache
def equation_models() -> pd.DataFrame:
    """Equation models with their number of versions and newest version.

    Returns
    -------
    pandas.DataFrame
        ``id, name, target, target_unit, description, spec, created_at, n_versions, latest_version``.
    """
    return _frame(
        """
        SELECT em.id, em.name, em.target, em.target_unit, em.description, em.spec, em.created_at,
               count(v.id) AS n_versions, max(v.version) AS latest_version
        FROM equation_model em LEFT JOIN equation_version v ON v.model_id = em.id
        GROUP BY em.id ORDER BY em.name
        """
    )


@_cache
def equation_versions(*, model_id: int) -> pd.DataFrame:
    """Versions of one model (lineage), newest first, with the aliases pointing at each.

    Returns
    -------
    pandas.DataFrame
        ``id, version, parent_id, parent_version, engine, n_rows, equation_text,
        selection_criterion, metrics, residual_std, target_unit, dataset_sha256, job_run_id,
        created_at, aliases`` (aliases: comma-separated names).
    """
    return _frame(
        """
        SELECT v.id, v.version, v.parent_id, pv.version AS parent_version, v.engine, v.n_rows,
               v.equation_text, v.selection_criterion, v.metrics, v.residual_std, v.target_unit,
               v.dataset_sha256, v.job_run_id, v.created_at,
               (SELECT string_agg(a.alias, ', ' ORDER BY a.alias) FROM equation_alias a
                WHERE a.version_id = v.id) AS aliases
        FROM equation_version v LEFT JOIN equation_version pv ON pv.id = v.parent_id
        WHERE v.model_id = :model_id
        ORDER BY v.version DESC
        """,
        {"model_id": int(model_id)},
    )


@_cache
def equation_version(*, version_id: int) -> pd.DataFrame:
    """One equation version with every column (JSON columns as Python objects); 0 or 1 row."""
    return _frame(
        """
        SELECT v.*, em.name AS model_name, em.target
        FROM equation_version v JOIN equation_model em ON em.id = v.model_id
        WHERE v.id = :version_id
        """,
        {"version_id": int(version_id)},
    )


@_cache
def equation_aliases(*, model_id: int) -> pd.DataFrame:
    """Aliases of one model (``alias, version, version_id, updated_at``)."""
    return _frame(
        """
        SELECT a.alias, v.version, a.version_id, a.updated_at
        FROM equation_alias a JOIN equation_version v ON v.id = a.version_id
        WHERE a.model_id = :model_id ORDER BY a.alias
        """,
        {"model_id": int(model_id)},
    )


@_cache
def equation_predictions(*, version_id: int) -> pd.DataFrame:
    """Observed vs predicted values of one version's training rows.

    Returns
    -------
    pandas.DataFrame
        ``material, method, orientation, observed, predicted, cv_predicted`` (target unit);
        ``orientation`` is the surface's Miller index or angles, or ``configuration <key>`` for
        a configuration-scope target, else NULL.
    """
    return _frame(
        f"""
        SELECT m.formula AS material, me.name AS method,
               CASE WHEN su.id IS NOT NULL THEN {_ORIENTATION_SQL}
                    WHEN mc.id IS NOT NULL THEN 'configuration ' || mc.key END AS orientation,
               ep.observed, ep.predicted, ep.cv_predicted
        FROM equation_prediction ep
        JOIN material m ON m.id = ep.material_id
        JOIN method me ON me.id = ep.method_id
        LEFT JOIN surface su ON su.id = ep.surface_id
        LEFT JOIN material_configuration mc ON mc.id = ep.configuration_id
        WHERE ep.version_id = :version_id
        ORDER BY m.formula, me.name, ep.id
        """,
        {"version_id": int(version_id)},
    )


# --- jobs (procrastinate) -----------------------------------------------------------------

@_cache
def procrastinate_present() -> pd.DataFrame:
    """Whether procrastinate's ``procrastinate_jobs`` table exists (one row, column ``present``)."""
    return _frame("SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS present")


@_cache
def procrastinate_jobs(*, limit: int = 200) -> pd.DataFrame:
    """Queued, running and scheduled procrastinate jobs, next first.

    Only call when :func:`procrastinate_present` says the table exists.

    Returns
    -------
    pandas.DataFrame
        ``id, queue_name, task_name, status, scheduled_at, attempts``.
    """
    return _frame(
        """
        SELECT id, queue_name, task_name, status::text AS status, scheduled_at, attempts
        FROM procrastinate_jobs
        WHERE status::text IN ('todo', 'doing')
        ORDER BY scheduled_at NULLS FIRST, id
        LIMIT :limit
        """,
        {"limit": int(limit)},
    )


@_cache
def procrastinate_status_counts() -> pd.DataFrame:
    """Number of procrastinate jobs per status (``status, n``)."""
    return _frame("SELECT status::text AS status, count(*) AS n FROM procrastinate_jobs GROUP BY 1 ORDER BY 1")


def clear_caches() -> None:
    """Forget every cached query result (the next page run reads the database again)."""
    st.cache_data.clear()
