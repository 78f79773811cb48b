"""The dashboard's pages under Streamlit's AppTest on a store built by matstore's own paths.

The store (:mod:`tests.dashboard_fixtures`) holds EMT computations of Cu, Ni and Al, the
published OpenKIM table with its flags, and the models the pipeline fits (a factorised
surface-energy model with ``normal_x``-style descriptors, a strength model).  The tests
check what a scientist reads: the g map of the pipeline model, flagged values marked and left
out of r, R² without a unit, predictions filled from the store, links that survive a reload.
"""

from __future__ import annotations

import base64
import math
import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io
import pytest
import sympy
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from streamlit.testing.v1 import AppTest

from matstore import orientation as ori
from matstore.dashboard import APP_PATH, charts, expressions, labels, queries, reports
from matstore.dashboard.orientation_g import (
    descriptor_frame,
    read_orientation_function,
    triangle_grid,
)
from tests.dashboard_fixtures import (  # noqa: F401
    CONFIG_E0,
    CONFIG_MODEL,
    CONFIG_SLOPE,
    N_CONFIGURATIONS,
    STRENGTH_MODEL,
    STRESS_MODEL,
    SURFACE_MODEL,
    Store,
    dashboard_store,
    free_port,
    restore,
    start_dashboard,
    use_store,
)

INJECTION = "'; DROP TABLE material; --"
PAGES = ("overview", "jobs", "bulk", "surfaces", "compare", "configurations", "provenance", "equations")


def run_page(page: str, **params: str) -> AppTest:
    """Run the app on ``page`` (file stem in ``pages/``) with URL query parameters ``params``."""
    at = AppTest.from_file(str(APP_PATH), default_timeout=90)
    at.query_params.update(params)
    at.run()
    if page != "overview":
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def figures(at: AppTest) -> list[go.Figure]:
    """The Plotly figures of the page."""
    return [plotly.io.from_json(chart.proto.spec) for chart in at.get("plotly_chart")]


def title(fig: go.Figure) -> str:
    return fig.layout.title.text or ""


def array(value) -> np.ndarray:  # noqa: ANN001
    """A figure's data array, decoding Plotly's typed-array JSON (``{"dtype", "bdata"}``)."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    return np.asarray(value, dtype=float)


def page_text(at: AppTest) -> str:
    """All visible text elements and table cells, joined."""
    parts = [e.value for kind in ("title", "header", "subheader", "markdown", "caption", "info", "success",
                                  "warning", "error", "code", "latex") for e in getattr(at, kind)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    parts += [d.value.astype(str).to_string() for d in at.dataframe]
    return "\n".join(str(p) for p in parts)


@pytest.fixture(scope="module")
def store(dashboard_store: Store) -> Iterator[Store]:  # noqa: F811 - the imported fixture
    """The pipeline-built store, read by the dashboard for this module."""
    saved = use_store(dashboard_store.url)
    queries.clear_caches()
    yield dashboard_store
    restore(saved)
    queries.clear_caches()


def scalar(engine: Engine, sql: str, **params):  # noqa: ANN201
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


# --- empty store --------------------------------------------------------------------------

@pytest.mark.parametrize("page", PAGES)
def test_pages_on_an_empty_store(session_engine: Engine, page: str) -> None:
    if scalar(session_engine, "SELECT count(*) FROM material"):
        pytest.skip("the test database is not empty")
    queries.clear_caches()
    at = run_page(page)
    assert not at.error, [e.value for e in at.error]


# --- every page on the pipeline store -----------------------------------------------------

@pytest.mark.parametrize("page", PAGES)
def test_every_page_runs(store: Store, page: str) -> None:
    at = run_page(page)
    assert not at.error, [e.value for e in at.error]
    assert "None" not in [c for d in at.dataframe for c in d.value.astype(str).to_numpy().ravel()]


def test_fit_runs_are_listed_with_their_model(store: Store) -> None:
    at = run_page("jobs")
    runs = at.dataframe[0].value
    assert set(runs.loc[runs["kind"] == "fit", "model"]) == {SURFACE_MODEL, STRENGTH_MODEL, CONFIG_MODEL, STRESS_MODEL}
    assert set(runs.loc[runs["kind"] != "fit", "model"]) == {""}  # blank, not "None"


def test_g_of_the_pipeline_model_is_drawn(store: Store) -> None:
    at = run_page("equations", model=str(store.surface_model_id), view="g")
    assert not [i.value for i in at.info if "g depends" in i.value or "no orientation function" in i.value]
    g_maps = [f for f in figures(at) if "g over the stereographic triangle" in title(f)]
    assert len(g_maps) == 1
    assert "normal_" in title(g_maps[0])  # the fit's own descriptor names
    values = array(g_maps[0].data[0].marker.color)
    assert len(values) > 500 and np.isfinite(values).all()
    # The map shows the stored g: at [111] (the normalisation orientation) g = 1.
    with store.engine.connect() as conn:
        parts = conn.execute(text("SELECT parts FROM equation_version v JOIN equation_model m ON m.id = v.model_id "
                                  "WHERE m.name = :n"), {"n": SURFACE_MODEL}).scalar_one()
    g = read_orientation_function(parts["orientation"])
    assert set(g.variables) <= {"normal_x", "normal_y", "normal_z", "theta_deg", "phi_deg"}
    assert parts["orientation"]["normalization"] == "g(hkl:1,1,1)=1"
    assert g.evaluate(np.array([[1, 1, 1]]) / math.sqrt(3))[0] == pytest.approx(1.0, abs=1e-6)


def test_metrics_have_the_right_units(store: Store) -> None:
    at = run_page("equations", model=str(store.surface_model_id))
    metrics = {m.label: m.value for m in at.metric}
    with store.engine.connect() as conn:
        stored = conn.execute(text("SELECT metrics FROM equation_version WHERE model_id = :m"),
                              {"m": store.surface_model_id}).scalar_one()
    assert float(metrics["nested CV R²"]) == pytest.approx(stored["cv_r2"], rel=1e-3)  # a bare number: no unit
    assert float(metrics["train R²"]) == pytest.approx(stored["train_r2"], rel=1e-3)
    assert metrics["nested CV RMSE"].endswith(" J/m²")
    assert float(metrics["nested CV RMSE"].split()[0]) == pytest.approx(stored["cv_rmse"], rel=1e-3)
    # Losses are mean squared errors: the unit squared on the axis of the fronts (default view).
    axes = [f.layout.yaxis.title.text or "" for f in figures(at)]
    assert "training MSE ((J/m²)²)" in axes and "training MSE (dimensionless)" in axes
    at = run_page("equations", model=str(store.surface_model_id), view="lineage")
    lineage = next(d.value for d in at.dataframe if "cv_r2" in d.value.columns)
    assert lineage["cv_r2"].iloc[0] == pytest.approx(stored["cv_r2"])
    assert lineage["train_r2"].iloc[0] == pytest.approx(stored["train_r2"])
    at = run_page("equations", model=str(store.surface_model_id), view="report")
    table = next(d.value for d in at.dataframe if {"metric", "unit"} <= set(d.value.columns))
    units = dict(zip(table["metric"], table["unit"], strict=True))
    assert units["nested CV R²"] == "" and units["train R²"] == "" and units["nested CV RMSE"] == "J/m²"
    assert units["fold agreement"] == ""
    # the stored width: in the target unit (absolute), or a fraction of the value (relative, value·(1 ± q))
    assert labels.metric_unit("interval_half_width", "J/m^2") == "J/m²"
    assert labels.metric_unit("interval_relative_half_width", "J/m^2") == ""
    relative = scalar(store.engine, "SELECT interval_relative_half_width FROM equation_version WHERE model_id = :m",
                      m=store.surface_model_id)
    assert units["interval half width"] == ("" if relative is not None else "J/m²")  # blank: not stored
    if relative is not None:  # factorised γ > 0: the relative interval, as a percentage of the value
        shown = next(c.value for c in at.caption if "prediction interval" in c.value)
        assert f"value·(1 ± {100 * relative:.3g} %)" in shown and "held-out coverage" in shown
    comparison = next(d.value for d in at.dataframe if "cross-validation" in d.value.columns)
    assert comparison["R²"].tolist() == pytest.approx([stored["cv_r2"], stored["fixed_form_cv_r2"]])


def test_selected_star_matches_the_criterion_front(store: Store) -> None:
    at = run_page("equations", model=str(store.surface_model_id))
    captions = [c.value for c in at.caption]
    stars = [c for c in captions if c.startswith("Selected (star): complexity")]
    criteria = [c for c in captions if c.startswith("Criterion:")]
    # Front of C: the criterion's "complexity <= N" names the drawn star's complexity or more.
    star_c = int(stars[0].split()[-1])
    bound = criteria[0].split("complexity <=")[-1].split(".")[0].strip()
    if bound.isdigit():
        assert star_c <= int(bound)


def test_a_sum_of_products_shows_each_scale_and_orientation_function(store: Store) -> None:
    at = run_page("equations", model=str(store.stress_model_id))
    latex = [x.value for x in at.latex]
    with store.engine.connect() as conn:
        parts = conn.execute(text("SELECT parts FROM equation_version WHERE model_id = :m"),
                             {"m": store.stress_model_id}).scalar_one()
    k = len(parts["products"])
    assert "= " + " + ".join(rf"s_{j} \cdot g_{j}" for j in range(1, k + 1)) in latex[0]
    assert [f"s_{j} = " in x and f"g_{j} = " in x for j, x in enumerate(latex[1:k + 1], start=1)] == [True] * k
    assert not at.exception
    at = run_page("equations", model=str(store.stress_model_id), view="g")  # one map per product
    maps = [title(f) for f in figures(at) if "over the stereographic triangle" in title(f)]
    assert [m.split(" over")[0] for m in maps] == [f"g_{j}" for j in range(1, k + 1)] and not at.exception


def test_constants_shown_with_four_significant_digits(store: Store) -> None:
    at = run_page("equations", model=str(store.surface_model_id))
    latex = " ".join(x.value for x in at.latex)
    numbers = re.findall(r"\d+\.\d+", latex)
    assert numbers and all(len(n.replace(".", "").lstrip("0")) <= 5 for n in numbers), numbers


def test_predict_fills_inputs_from_the_store_and_matches_the_fit(store: Store) -> None:
    at = run_page("equations", model=str(store.surface_model_id), view="predict")
    chooser = next(s for s in at.selectbox if s.label.startswith("Fill the inputs"))
    assert "in the training data" in chooser.options[chooser.index]
    _, material, method = chooser.value.split(":")
    inputs = {n.label.split(" (")[0]: n.value for n in at.number_input}
    assert (inputs["h"], inputs["k"], inputs["l"]) == (1, 1, 1)
    with store.engine.connect() as conn:
        row = conn.execute(text("""
            SELECT ep.predicted FROM equation_prediction ep JOIN equation_version v ON v.id = ep.version_id
            JOIN surface su ON su.id = ep.surface_id
            WHERE v.model_id = :m AND ep.material_id = :mat AND ep.method_id = :meth
              AND su.orientation_key = 'hkl:1,1,1'"""),
            {"m": store.surface_model_id, "mat": int(material), "meth": int(method)}).one()
    assert at.success, "no prediction shown"
    shown = float(at.success[0].value.split("=")[1].split()[0])
    assert shown == pytest.approx(row.predicted, rel=1e-4)
    # The same surface given by its angles: same prediction.
    next(r for r in at.radio if r.label == "Orientation given as").set_value("angles (θ, φ)").run()
    assert float(at.success[0].value.split("=")[1].split()[0]) == pytest.approx(row.predicted, rel=1e-4)
    with store.engine.connect() as conn:
        half_width, relative = conn.execute(text(
            "SELECT interval_half_width, interval_relative_half_width FROM equation_version WHERE model_id = :m"),
            {"m": store.surface_model_id}).one()
    if half_width is not None or relative is not None:  # the stored cross-conformal interval, around the prediction
        assert "90% prediction interval" in at.success[0].value
        low = float(at.success[0].value.split("[")[1].split()[0])
        expected = row.predicted - half_width if half_width is not None else row.predicted * (1 - relative)
        assert low == pytest.approx(expected, rel=1e-4)
    else:
        assert "out-of-fold residuals" in page_text(at)


def test_predict_from_a_configuration_for_a_configuration_scope_model(store: Store) -> None:
    dv03 = scalar(store.engine, "SELECT id FROM material_configuration WHERE key = 'dv03'")
    at = run_page("equations", model=str(store.config_model_id), view="predict", **{"from": f"c:{dv03}"})
    inputs = {n.label.split(" (")[0]: n.value for n in at.number_input}
    assert inputs == {"vv_distance": pytest.approx(3.1)}
    shown = float(at.success[0].value.split("=")[1].split()[0])
    assert shown == pytest.approx(CONFIG_E0 + CONFIG_SLOPE * 3.1, rel=1e-3)  # the fixture's exact law
    parity = run_page("equations", model=str(store.config_model_id), view="parity")
    assert not parity.exception and len(figures(parity)) == 2


def test_bulk_scatter_marks_flagged_values_and_leaves_them_out_of_r(store: Store) -> None:
    at = run_page("bulk")
    fig = next(f for f in figures(at) if "Pearson r" in title(f))
    pairs = queries.bulk_pair(x="vacancy_migration_energy", y="strength")
    flagged = pairs["x_flag"].notna() | pairs["y_flag"].notna()
    assert flagged.sum() > 0
    marked = next(t for t in fig.data if t.name == charts.FLAGGED_TRACE)
    assert len(array(marked.x)) == flagged.sum()
    clean = pairs[~flagged]
    r = np.corrcoef(clean["x"], clean["y"])[0, 1]
    assert f"Pearson r = {r:.3f}" in title(fig)
    assert f"{int(flagged.sum())} flagged left out" in title(fig)
    # The highest strengths are the flagged ones (the study's disqualified potentials).
    top = pairs.sort_values("y", ascending=False).head(5)
    assert (top["y_flag"].notna() | top["x_flag"].notna()).all()
    # Hidden on request, and the choice is kept in the URL.
    next(t for t in at.toggle if t.label == "Show flagged values").set_value(False).run()
    fig = next(f for f in figures(at) if "Pearson r" in title(f))
    assert not [t for t in fig.data if t.name == charts.FLAGGED_TRACE]
    assert at.query_params.get("flagged") in ("0", ["0"])


def test_bulk_table_links_values_to_provenance_and_shows_sources(store: Store) -> None:
    at = run_page("bulk", q="Cu lattice")
    table = at.dataframe[0].value
    assert set(table["property"]) == {"lattice_constant"} and set(table["material"]) == {"Cu"}
    assert {"EMT", "OpenKIM", "DFT"} <= set(table["source"])
    link = table["link"].iloc[0]
    assert link.startswith("provenance?value=bulk:")
    prov = run_page("provenance", value=link.split("=", 1)[1])
    assert f"#{link.split(':')[1]}" in prov.selectbox[0].options[prov.selectbox[0].index]
    assert "Source:" in page_text(prov)


def test_surfaces_page_opens_on_the_richest_set_and_draws_a_light_wulff_shape(store: Store) -> None:
    at = run_page("surfaces")
    chosen = at.selectbox[0].options[at.selectbox[0].index]
    assert "· emt [EMT] — 4 surfaces" in chosen  # the most surfaces; computed before table sets
    # The Wulff shape opens as flat SVG polygons (one per visible facet), the 3D view on request.
    assert not [f for f in figures(at) if any(t.type == "mesh3d" for t in f.data)]
    flat = next(f for f in figures(at) if f.data and all(t.type == "scatter" and t.fill == "toself" for t in f.data))
    assert {t.name for t in flat.data} <= {"(1,0,0)", "(1,1,0)", "(1,1,1)", "(2,1,0)"}
    next(t for t in at.toggle if t.label.startswith("3D")).set_value(True).run()
    wulff = next(f for f in figures(at) if any(t.type == "mesh3d" for t in f.data))
    assert len(wulff.data) == 2  # one mesh for all facets, one line trace for the edges
    assert at.query_params.get("wulff") in ("3d", ["3d"])
    metrics = {m.label: m.value for m in at.metric}
    shape_help = next(m for m in at.metric if m.label == "Shape factor").help
    assert "volume^(2/3)" in shape_help and "area^1.5" not in shape_help
    assert 4.836 < float(metrics["Shape factor"]) < 6.0  # between a sphere and a cube
    # Flagged OpenKIM surface energies are marked (negative γ flagged at ingest).
    assert any("flagged values" in o and "[OpenKIM]" in o for o in at.selectbox[0].options)


def test_compare_page_puts_methods_side_by_side(store: Store) -> None:
    cu = int(queries.materials().query("formula == 'Cu'")["id"].iloc[0])
    at = run_page("compare", material=str(cu))
    fig = figures(at)[0]
    methods = {t.name.split(",")[0] for t in fig.data}
    assert "emt" in methods and len(methods) >= 2
    assert at.dataframe[0].value.shape[1] >= 2  # one column per method


def test_configurations_page_browses_per_configuration_values(store: Store) -> None:
    at = run_page("configurations")
    table = at.dataframe[0].value.set_index("key")
    assert len(table) == N_CONFIGURATIONS
    assert table.loc["dv03", "divacancy_energy"] == pytest.approx(CONFIG_E0 + CONFIG_SLOPE * 3.1)
    assert table.loc["dv07", "flag"] == "relaxation did not converge" and table.loc["dv06", "flag"] == ""
    fig = next(f for f in figures(at) if "Pearson r" in title(f))
    assert "Pearson r = -1.000" in title(fig) and "1 flagged left out" in title(fig)  # the exact linear law
    value_id = scalar(store.engine, "SELECT p.id FROM configuration_property p JOIN material_configuration mc "
                                    "ON mc.id = p.configuration_id JOIN property_definition d ON d.id = p.definition_id "
                                    "WHERE mc.key = 'dv07' AND d.name = 'divacancy_energy'")
    prov = run_page("provenance", value=f"configuration:{value_id}")
    shown = page_text(prov)
    assert "configuration dv07" in shown and "relaxation did not converge" in shown


def test_multi_word_search(store: Store) -> None:
    found = queries.search_values(search="Cu surface_energy", scope="surface")
    assert not found.empty and set(found["material"]) == {"Cu"} and set(found["property"]) == {"surface_energy"}
    assert queries.search_values(search="Cu nosuchword").empty
    found = queries.search_values(search="divacancy_energy emt", scope="configuration")
    assert len(found) == N_CONFIGURATIONS and set(found["orientation"].str.split().str[0]) == {"configuration"}


def test_selections_survive_a_reload(store: Store) -> None:
    at = run_page("equations", model=str(store.surface_model_id))
    assert at.selectbox[0].value == store.surface_model_id
    again = run_page("equations", **{k: v for k, v in at.query_params.items()})
    assert again.selectbox[0].value == store.surface_model_id


def test_injection_strings_in_filters_change_nothing(store: Store) -> None:
    before = scalar(store.engine, "SELECT count(*) FROM material")
    at = run_page("bulk")
    at.text_input[0].set_value(INJECTION).run()
    assert not at.exception and not at.error
    at = run_page("provenance")
    at.text_input[0].set_value("Cu%' OR '1'='1").run()
    assert not at.exception
    for search in (INJECTION, "%", "\\", "c_1"):  # LIKE wildcards match literally (c_1 is not c11)
        assert queries.search_values(search=search).empty
        assert queries.bulk_values(search=search).empty
    assert scalar(store.engine, "SELECT count(*) FROM material") == before


def test_queries_are_read_only_and_time_bounded(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DBAPIError, match="read-only transaction|permission denied"):
        queries._frame("DELETE FROM material")
    from matstore.config import get_settings

    monkeypatch.setattr(get_settings(), "statement_timeout_ms", 200)
    with pytest.raises(OperationalError, match="statement timeout"):
        queries._frame("SELECT pg_sleep(2)")


# --- process hygiene ----------------------------------------------------------------------

def test_sigterm_stops_the_dashboard_and_frees_the_port(database_url: str, tmp_path) -> None:  # noqa: ANN001
    port = free_port()
    proc = start_dashboard(database_url, port, tmp_path / "dashboard.log")
    try:
        # The web server holds the checked reader URL only, never the main (here superuser) URL.
        environ = dict(item.split("=", 1) for item in
                       Path(f"/proc/{proc.pid}/environ").read_bytes().decode().split("\0") if "=" in item)
        assert "MATSTORE_DATABASE_URL" not in environ and "MATSTORE_READER_URL" not in environ
        assert "matstore_sql_reader" in environ["MATSTORE_DASHBOARD_DATABASE_URL"]
        proc.send_signal(signal.SIGTERM)  # the pid of `matstore dashboard` is the server itself (exec)
        proc.wait(timeout=20)
        with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
            sock.connect(("127.0.0.1", port))  # nothing listens any more: no orphaned server
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- pure helpers -------------------------------------------------------------------------

def test_metric_units() -> None:
    assert labels.metric_unit("cv_r2", "J/m^2") == "" and labels.metric_unit("train_r2", "MPa") == ""
    assert labels.metric_unit("cv_n_splits", "MPa") == "" and labels.metric_unit("coverage_90", "MPa") == ""
    assert labels.metric_unit("train_rmse", "J/m^2") == "J/m²" and labels.metric_unit("cv_mae", "MPa") == "MPa"
    assert labels.metric_unit("train_mse", "MPa") == "(MPa)²"
    assert labels.format_metric("cv_r2", 0.884312, "MPa") == "0.8843"
    assert labels.format_metric("cv_rmse", 197.4977, "MPa") == "197.5 MPa"


def test_source_labels() -> None:
    kim = "EAM_Dynamo_FoilesBaskesDaw_1986Universal3_Cu__MO_666348409573_004"
    assert labels.source_label(method_name=kim, method_kind="interatomic_potential", calculator=None,
                               potential=kim) == "OpenKIM"
    assert labels.source_label(method_name="emt", method_kind="calculator", calculator="ase.calculators.emt.EMT",
                               potential=None) == "EMT"
    assert labels.source_label(method_name="lammps_Cu_u3", method_kind="interatomic_potential",
                               calculator="ase.calculators.lammpslib.LAMMPSlib", potential="Cu_u3.eam") == "LAMMPS Cu_u3.eam"
    assert labels.source_label(method_name="DFT", method_kind="dft", calculator=None, potential=None) == "DFT"


def test_constants_rounded_for_display_only() -> None:
    x = sympy.Symbol("cohesive_energy")
    expr = sympy.Float(0.124318684583561) * x + sympy.Float(1835.27607728367)
    shown = labels.round_floats(expr)
    assert sorted(float(f) for f in shown.atoms(sympy.Float)) == pytest.approx([0.1243, 1835.0], rel=1e-6)
    assert expr.atoms(sympy.Float) != shown.atoms(sympy.Float)  # the original is untouched


def test_orientation_descriptors_follow_matstore_conventions() -> None:
    miller = [(1, 0, 0), (1, 1, 0), (1, 1, 1), (2, 1, 0)]
    orientations = [ori.from_miller(*m) for m in miller]
    frame = descriptor_frame(np.array([o.normal for o in orientations]), [o.miller for o in orientations])
    assert frame["theta_deg"].tolist() == pytest.approx([o.theta_deg for o in orientations])
    assert frame["phi_deg"].tolist() == pytest.approx([o.phi_deg for o in orientations])
    assert frame.loc[1, "theta_deg"] == pytest.approx(45.0) and frame.loc[2, "phi_deg"] == pytest.approx(45.0)
    assert frame["miller_h"].tolist() == [1, 1, 1, 2]
    assert (frame["n_x"] == frame["normal_x"]).all()
    # A broken-bond-like g of normal components, as the fits store it.
    nx, ny, nz = sympy.symbols("normal_x normal_y normal_z")
    g = read_orientation_function({"srepr": sympy.srepr(nx + ny / 2 + nz / 3)})
    n = np.array([[1.0, 0, 0], [1, 1, 1] / np.sqrt(3)])
    assert g.evaluate(n) == pytest.approx([1.0, (1 + 0.5 + 1 / 3) / math.sqrt(3)])
    with pytest.raises(expressions.ExpressionError, match="not an orientation descriptor"):
        read_orientation_function({"srepr": sympy.srepr(sympy.Symbol("temperature") * nx)})
    grid = triangle_grid(20)
    assert np.all(grid[:, 0] >= grid[:, 1] - 1e-9) and np.all(grid[:, 1] >= grid[:, 2] - 1e-9)


def test_stored_interval_is_read_when_present() -> None:
    assert reports.stored_interval({"metrics": {}}) is None
    got = reports.stored_interval({"report": {"interval": {"level": 0.9, "half_width": 0.12, "method": "cross-conformal"}}})
    assert (got.lower, got.upper, got.level) == (-0.12, 0.12, 0.9)
    assert got.bounds(2.0) == pytest.approx((1.88, 2.12)) and got.offsets_text("J/m²") == "value -0.12 … +0.12 J/m²"
    # a relative interval (alembic 0012): value·(1 ± q), from the column or the report
    for version in ({"interval_half_width": float("nan"), "interval_relative_half_width": 0.095, "interval_level": 0.9},
                    {"report": {"interval": {"level": 0.9, "score": "relative", "half_width": None,
                                             "relative_half_width": 0.095}}}):
        got = reports.stored_interval(version)
        assert got.relative and (got.lower, got.upper, got.level) == (-0.095, 0.095, 0.9)
        assert got.bounds(2.0) == pytest.approx((2.0 * 0.905, 2.0 * 1.095))
        assert got.offsets_text("J/m²") == "value·(1 ± 9.5 %)"


def test_group_errors_from_predictions() -> None:
    frame = pd.DataFrame({"material": ["Cu", "Cu", "Ni"], "observed": [1.0, 2.0, 3.0],
                          "predicted": [1.1, 1.9, 3.0], "cv_predicted": [1.2, 1.8, 2.5]})
    table = reports.group_errors(frame).set_index("material")
    assert table.loc["Cu", "cv_rmse"] == pytest.approx(0.2) and table.loc["Ni", "cv_mean_error"] == pytest.approx(-0.5)


def test_a_failed_run_without_a_model_is_listed(store: Store) -> None:
    """A failed ingest (no model, no finish time) next to the fits: its expander names it without
    a model and shows its error (pandas 3 read SQL NULL text as NaN, which is truthy)."""
    with store.engine.begin() as conn:
        run_id = conn.execute(text("INSERT INTO job_run (kind, code_version, host, status, error) "
                                   "VALUES ('ingest_table', '0', 'h', 'failed', 'bad.csv, row 2: not a number') "
                                   "RETURNING id")).scalar_one()
    queries.clear_caches()  # the run is new to the cached job list
    try:
        at = run_page("jobs")
        assert not at.error, [e.value for e in at.error]
        label = next(e.label for e in at.expander if e.label.startswith(f"Run {run_id} "))
        assert label.startswith(f"Run {run_id} (ingest_table) failed at ") and "nan" not in label
        assert "bad.csv, row 2: not a number" in [c.value for c in at.code]
    finally:
        with store.engine.begin() as conn:
            conn.execute(text("DELETE FROM job_run WHERE id = :i"), {"i": run_id})
        queries.clear_caches()
