"""The dashboard's pages under Streamlit's AppTest on a populated test database.

Every page runs without an exception and shows the numbers written by
:mod:`dashboard_fixtures`; filters are injection-proof; queries are read-only and bounded
by the statement timeout.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import sympy
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from streamlit.testing.v1 import AppTest

from matstore.dashboard import APP_PATH, charts, expressions, queries
from tests.conftest import DATA_TABLES
from tests.dashboard_fixtures import KIM_ID, Populated, populate

INJECTION = "'; DROP TABLE material; --"
PAGES = ("overview", "jobs", "bulk", "surfaces", "provenance", "equations")


def run_page(page: str) -> AppTest:
    """Run the app and switch to ``page`` (file stem in ``pages/``)."""
    at = AppTest.from_file(str(APP_PATH), default_timeout=60).run()
    if page != "overview":
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def frames(at: AppTest) -> list[pd.DataFrame]:
    """The DataFrames of every st.dataframe / st.table on the page."""
    return [d.value for d in at.dataframe] + [t.value for t in at.table]


def contains_number(at: AppTest, value: float, rel: float = 1e-9) -> bool:
    """Whether some table cell on the page equals ``value``."""
    for frame in frames(at):
        numeric = frame.select_dtypes("number")
        if np.isclose(numeric.to_numpy(dtype=float), value, rtol=rel, atol=0).any():
            return True
    return False


def page_text(at: AppTest) -> str:
    """All visible text elements and table cells, joined."""
    parts = [e.value for kind in ("title", "header", "subheader", "markdown", "caption", "info", "success",
                                  "warning", "error", "code", "latex") for e in getattr(at, kind)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    parts += [frame.astype(str).to_string() for frame in frames(at)]
    return "\n".join(str(p) for p in parts)


@pytest.fixture(scope="module", autouse=True)
def _reader_env(database_url: str) -> Iterator[None]:
    # The tests read the test database with the main URL (in READ ONLY transactions).
    saved = os.environ.pop("MATSTORE_DASHBOARD_DATABASE_URL", None)
    from matstore.config import get_settings

    get_settings.cache_clear()
    queries.clear_caches()
    yield
    if saved is not None:
        os.environ["MATSTORE_DASHBOARD_DATABASE_URL"] = saved
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def populated(session_engine: Engine) -> Iterator[Populated]:
    """The dashboard fixture store, emptied again after this module."""
    out = populate(session_engine)
    queries.clear_caches()
    yield out
    with session_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))
    queries.clear_caches()


# --- empty store (runs before the module fixture fills it) --------------------------------

@pytest.mark.parametrize("page", PAGES)
def test_pages_on_an_empty_store(session_engine: Engine, page: str) -> None:
    with session_engine.connect() as conn:
        if conn.execute(text("SELECT count(*) FROM material")).scalar_one():
            pytest.skip("store not empty (populated by an earlier test)")
    queries.clear_caches()
    at = run_page(page)
    assert not at.error


# --- pages --------------------------------------------------------------------------------

def test_overview_counts_and_failures(populated: Populated) -> None:
    at = run_page("overview")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Materials"] == "3"
    assert metrics["Methods"] == "2"
    assert metrics["Surfaces"] == "7"
    assert metrics["Property values"] == f"{populated.n_bulk + populated.n_surface_values}"
    assert metrics["Configurations"] == "1"
    assert metrics["Equation versions"] == "2"
    assert metrics["Job runs"] == "4"
    assert populated.failed_error in page_text(at)
    assert not at.error


def test_jobs_page_lists_runs_and_errors(populated: Populated) -> None:
    at = run_page("jobs")
    assert any(populated.failed_error in c.value for c in at.code)
    runs = at.dataframe[0].value
    assert set(runs["status"]) == {"succeeded", "failed"}
    at.multiselect[0].set_value(["failed"]).run()
    assert not at.exception
    assert list(at.dataframe[0].value["status"]) == ["failed"]


def test_bulk_page_table_scatter_and_filters(populated: Populated) -> None:
    at = run_page("bulk")
    assert contains_number(at, populated.lattice_constant_cu)
    table = at.dataframe[0].value
    assert len(table) == populated.n_bulk
    assert "Å" in set(table["unit"]) and "MPa" in set(table["unit"])
    # The scatter defaults to strength against vacancy migration energy.
    assert at.selectbox[0].value == "vacancy_migration_energy"
    assert at.selectbox[1].value == "strength"
    assert at.get("plotly_chart")
    at.multiselect[0].set_value([populated.material_ids["Cu"]]).run()
    table = at.dataframe[0].value
    assert set(table["material"]) == {"Cu"} and set(table["method"]) == {"emt", KIM_ID}
    at.text_input[0].set_value("vacancy").run()
    assert not at.exception
    assert set(at.dataframe[0].value["property"]) == {"vacancy_migration_energy"}


def test_bulk_pair_query_is_one_point_per_material_and_method(populated: Populated) -> None:
    pairs = queries.bulk_pair(x="vacancy_migration_energy", y="strength")
    assert len(pairs) == 4
    cu = pairs[(pairs["material"] == "Cu") & (pairs["method"] == "emt")].iloc[0]
    assert cu["x"] == pytest.approx(0.6821) and cu["y"] == pytest.approx(1180.5)
    assert (cu["x_unit"], cu["y_unit"]) == ("eV", "MPa")


def test_surfaces_page_values_map_and_wulff(populated: Populated) -> None:
    at = run_page("surfaces")
    assert any(o.startswith("Cu (fcc) · emt") for o in at.selectbox[0].options)
    table = at.dataframe[0].value
    rows = dict(zip(table["orientation"], table["surface_energy"], strict=True))
    assert rows["(1,1,1)"] == pytest.approx(populated.gamma_cu_111)
    assert rows["θ=20.00°, φ=10.00°"] == pytest.approx(populated.gamma_cu_angles)
    assert {"surface_stress", "surface_stiffness"} <= set(table.columns)
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["Shape factor"]) > 4.8  # a sphere has 4.84; a polyhedron more
    assert 1.15 < float(metrics["Weighted γ (J/m²)"]) < 1.43  # between the smallest and largest γ
    assert "a = 3.5898 Å" in page_text(at)
    # Ni has only (100) and (111): still a Wulff shape (a truncated octahedron).
    at.selectbox[0].set_value(1).run()
    assert not at.exception
    assert contains_number(at, 1.6113)


def test_provenance_page_links_value_to_method_source_job_and_configuration(populated: Populated) -> None:
    at = run_page("provenance")
    at.text_input[0].set_value("lattice_constant").run()
    at.selectbox[0].set_value(f"bulk:{populated.bulk_value_id}").run()
    assert not at.exception
    shown = page_text(at)
    assert "3.5898 Å" in shown
    assert "EMT" in shown and "asap_cutoff" in str([j.value for j in at.json])
    assert "cu-fcc" not in shown  # hashes are shown, not the hashed text
    assert "Cu" in shown and "-0.0071 eV" in shown  # configuration formula and energy
    # A dataset value: URL, DOI and licence.
    at.text_input[0].set_value("strength").run()
    at.radio[0].set_value("bulk").run()
    label = next(o for o in at.selectbox[0].options if KIM_ID in o)  # "bulk #28: Cu · strength = ..."
    at.selectbox[0].set_value("bulk:" + label.split("#")[1].split(":")[0]).run()
    shown = page_text(at)
    assert "10.1038/s41524-024-01453-w" in shown and "MIT" in shown and "models_w_props.csv" in shown
    # Surface values carry their orientation; search by value id works.
    at.radio[0].set_value("surface").run()
    at.text_input[0].set_value("surface_energy").run()
    assert any("(1,1,1)" in o for o in at.selectbox[0].options)


def test_equations_page(populated: Populated) -> None:
    at = run_page("equations")
    shown = page_text(at)
    assert "production" in shown and "candidate" in shown
    assert any("surface\\_energy" in latex.value and "\\mathrm{cohesive\\_energy}" in latex.value
               for latex in at.latex)
    assert any(latex.value.strip("$\n ").startswith("g =") for latex in at.latex)
    assert "r2 0.93" in shown
    assert len(at.get("plotly_chart")) >= 4  # Pareto front, parity, residuals, g map
    # Prediction form: every free symbol of v2 gets an input.
    inputs = {ni.label.split(" (")[0]: ni for ni in at.number_input}
    assert set(inputs) == {"cohesive_energy", "lattice_constant", "n_x", "n_y", "n_z"}
    for name, value in {"cohesive_energy": 3.5, "lattice_constant": 3.6, "n_x": 1.0, "n_y": 0.0, "n_z": 0.0}.items():
        inputs[name].set_value(value)
    next(b for b in at.button if b.label == "Predict").click().run()
    assert not at.exception
    expected = 0.0698 * 3.5 / 3.6**2 * 2.0
    assert at.success, "no prediction shown"
    assert f"{expected:.6g} J/m²" in at.success[0].value
    # Version 1 has g over Miller indices.
    at.radio[0].set_value(populated.version_ids[0]).run()
    assert not at.exception
    assert not [i.value for i in at.info if "g depends" in i.value]


def test_injection_strings_in_filters_change_nothing(populated: Populated, session_engine: Engine) -> None:
    at = run_page("bulk")
    at.text_input[0].set_value(INJECTION).run()
    assert not at.exception and not at.error
    at = run_page("provenance")
    at.text_input[0].set_value(INJECTION).run()
    assert not at.exception and not at.error
    at.text_input[0].set_value("Cu%' OR '1'='1").run()
    assert not at.exception
    for search in (INJECTION, "%", "\\", "c_1"):  # LIKE wildcards match literally (c_1 is not c11)
        assert queries.search_values(search=search).empty
        assert queries.bulk_values(search=search).empty
    with session_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM material")).scalar_one() == 3
        assert conn.execute(text("SELECT count(*) FROM bulk_property")).scalar_one() == populated.n_bulk


def test_queries_are_read_only_and_time_bounded(populated: Populated, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DBAPIError, match="read-only transaction"):
        queries._frame("DELETE FROM material")
    from matstore.config import get_settings

    monkeypatch.setattr(get_settings(), "statement_timeout_ms", 200)
    with pytest.raises(OperationalError, match="statement timeout"):
        queries._frame("SELECT pg_sleep(2)")


def test_reader_url_setting_selects_the_engine(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from matstore.config import get_settings

    reader = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    monkeypatch.setenv("MATSTORE_DASHBOARD_DATABASE_URL", reader)
    get_settings.cache_clear()
    try:
        assert get_settings().dashboard_database_url.startswith("postgresql+psycopg://")
        assert queries.engine().url.render_as_string(hide_password=False) == get_settings().dashboard_database_url
    finally:
        monkeypatch.delenv("MATSTORE_DASHBOARD_DATABASE_URL")
        get_settings.cache_clear()


# --- pure helpers -------------------------------------------------------------------------

def test_stereographic_corners() -> None:
    x, y = charts.stereographic_xy(np.array([[1, 0, 0], [1, 1, 0] / np.sqrt(2), [1, 1, 1] / np.sqrt(3)]))
    assert np.allclose(x, [0, math.sqrt(2) - 1, (math.sqrt(3) - 1) / 2])
    assert np.allclose(y, [0, 0, (math.sqrt(3) - 1) / 2])
    normals = expressions.triangle_normals(20)
    assert np.all(normals[:, 0] >= normals[:, 1] - 1e-9) and np.all(normals[:, 1] >= normals[:, 2] - 1e-9)
    assert np.allclose(np.linalg.norm(normals, axis=1), 1)


def test_stored_expressions_are_parsed_without_eval() -> None:
    for bad in ("__import__('os').system('true')", "Symbol('x').__class__", "open('/etc/passwd')", "lambda: 1"):
        with pytest.raises(expressions.ExpressionError):
            expressions.parse_srepr(bad)
    h, k, l = sympy.symbols("miller_h miller_k miller_l", positive=True)  # noqa: E741
    g = expressions.orientation_function({"srepr": sympy.srepr((2 * h + k) / sympy.sqrt(h**2 + k**2 + l**2))})
    assert g.kind == "normal"
    assert g.evaluate(np.array([[1.0, 0, 0]]))[0] == pytest.approx(2.0)
    theta, phi = sympy.symbols("theta phi")
    g = expressions.orientation_function({"srepr": sympy.srepr(sympy.cos(theta) + phi), "angle_unit": "deg"})
    assert g.kind == "angles" and g.evaluate(np.array([[1.0, 0, 0]]))[0] == pytest.approx(1.0)
    with pytest.raises(expressions.ExpressionError, match="depends on"):
        expressions.orientation_function({"srepr": sympy.srepr(sympy.Symbol("temperature") * h)})
    with pytest.raises(expressions.ExpressionError, match="no value"):
        expressions.evaluate(sympy.Symbol("x") + 1, {})
