"""Published-table shapes through a mapping alone, then fitted through ``matstore fit``.

1. A per-configuration descriptor table (like the 2D-defect table: a formation energy and
   distances per configuration), synthetic with a known pair law, keyed by its ``_id`` column.
2. A surface-elasticity table (like the 7-metal table): negative cohesive energies, moduli
   given as K and G′ (C11, C12 derived), orientations as spherical angles of the normal, bulk
   columns repeated on every orientation row; fitted as a factorised model.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from matstore.ingest.table import ingest_table
from matstore.models.dataset import build_training_set
from matstore.orientation import from_normal
from tests.test_cli_db import run_cli, server_env

#: Synthetic law of the defect table: E_f = E0 + A·d1/d2 (eV; a dimensionally homogeneous
#: function of the distances in Å, as a pair interaction scaled by a distance ratio would be).
E0, A = 1.5, 2.0


@pytest.fixture
def store(user_vocabulary_engine):
    """The test store; user definitions are removed afterwards."""
    return user_vocabulary_engine


def _vocab_add(*args: str) -> str:
    from matstore.cli import app

    result = CliRunner().invoke(app, ["vocab", "add", *args])
    assert result.exit_code == 0, result.output
    return result.output


def _defect_table(tmp_path, n: int = 60):
    rng = np.random.default_rng(7)
    d = rng.uniform(3.0, 12.0, size=(n, 3))
    path = tmp_path / "defects.csv"
    with path.open("w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["_id", "E_f", "d1", "d2", "d3"])
        for i, (d1, d2, d3) in enumerate(d):
            w.writerow([f"c{i:03d}", *(repr(float(x)) for x in (E0 + A * d1 / d2, d1, d2, d3 / 10))])  # d3 in nm
    mapping = tmp_path / "defects.yaml"
    mapping.write_text(
        "name: synthetic_defects\n"
        "material: {formula: Mo2S4, prototype: 2H}\n"          # stored reduced: MoS2
        "method: {name: DFT-PBE (synthetic), kind: dft}\n"
        "key: {column: _id, prefix: '3def:'}\n"
        "columns:\n"
        "  E_f: {definition: defect_formation_energy, unit: eV}\n"
        "  d1: {definition: d_def_1, unit: angstrom}\n"
        "  d2: {definition: d_def_2, unit: angstrom}\n"
        "  d3: {definition: d_def_3, unit: nm}\n"
    )
    return path, mapping, d


def test_per_configuration_table_is_keyed_and_fitted_through_the_cli(store, database_url, tmp_path):
    _vocab_add("defect_formation_energy", "--unit", "eV", "--scope", "configuration", "--symbol", "E_f")
    for k in (1, 2, 3):
        _vocab_add(f"d_def_{k}", "--unit", "angstrom", "--scope", "configuration")
    from matstore.cli import app

    listing = CliRunner().invoke(app, ["vocab", "list", "--scope", "configuration"])
    assert "d_def_2" in listing.output and "formation_energy" in listing.output
    path, mapping, d = _defect_table(tmp_path)
    report = ingest_table(path, mapping, engine=store)
    assert (report.rows, report.configurations, report.configuration_inserted) == (60, 60, 240)
    assert report.bulk_inserted == report.surface_inserted == 0 and not report.dropped_rows
    with store.connect() as conn:
        d3 = conn.execute(text("SELECT value FROM property_values WHERE configuration_key = '3def:c005' AND property = 'd_def_3'")).scalar()
        material = conn.execute(text("SELECT DISTINCT material FROM property_values WHERE scope = 'configuration'")).scalar()
    assert d3 == pytest.approx(d[5, 2]) and material == "MoS2"

    ts = build_training_set(store, target="defect_formation_energy", features=["d_def_1", "d_def_2", "d_def_3"],
                            group_by="configuration_key")
    assert ts.target_scope == "configuration" and ts.n_rows == 60 and len(set(ts.groups)) == 60
    row = ts.table.set_index("configuration_key").loc["3def:c005"]
    assert row.target == pytest.approx(E0 + A * d[5, 0] / d[5, 1]) and row.d_def_1 == pytest.approx(d[5, 0])

    env = server_env(database_url)
    out = run_cli("fit", "--name", "defects", "--target", "defect_formation_energy", "--features", "d_def_1",
                  "d_def_2", "d_def_3", "--engine", "sparse", "--seed", "0", "--time-budget", "20",
                  "--group-by", "configuration_key", env=env).stdout
    assert "created (version 1)" in out
    with store.connect() as conn:
        preds = conn.execute(text("SELECT observed, predicted, cv_predicted, configuration_key FROM model_predictions "
                                  "WHERE model = 'defects' ORDER BY configuration_key")).all()
    assert len(preds) == 60 and preds[5].configuration_key == "3def:c005"
    assert preds[5].observed == pytest.approx(E0 + A * d[5, 0] / d[5, 1])
    assert max(abs(p.predicted - p.observed) for p in preds) < 1e-6  # the exact law, E0 + A·d1/d2
    assert max(abs(p.cv_predicted - p.observed) for p in preds) < 1e-6
    shown = run_cli("models", "show", "defects", env=env).stdout
    assert "d_def_1/d_def_2" in shown and "GroupKFold" in shown
    assert "no new version" in run_cli("refit", "defects", env=env).stdout  # the snapshot of keyed rows is stable
    # predict reads one configuration's descriptors from the store, as the training set joined them
    predicted = run_cli("predict", "defects", "--material", "MoS2", "--method", "DFT-PBE (synthetic)",
                        "--configuration", "3def:c005", env=env).stdout
    assert "[3def:c005]" in predicted and f"{E0 + A * d[5, 0] / d[5, 1]:.4g}" in predicted


#: Synthetic metals: (a Å, E_c eV/atom, K GPa, G' GPa, C44 GPa)
METALS = {"Cu": (3.615, 3.54, 140.0, 24.0, 76.0), "Ni": (3.52, 4.45, 186.0, 50.0, 125.0),
          "Ag": (4.09, 2.85, 104.0, 15.0, 46.0), "Pt": (3.92, 5.77, 283.0, 26.0, 77.0)}


def _gamma(a: float, ec: float, normal) -> float:
    """γ = 3.0 · E_c/a² (J/m² per eV/Å²) · g(n), g = (2 n1 + n2)/|n| (n1 ≥ n2 ≥ n3 ≥ 0) the broken-bond factor
    of FCC surfaces (Mackenzie, Moore & Nicholas 1962) continued to irrational normals."""
    n1, n2, _ = sorted((abs(c) for c in normal), reverse=True)
    return 3.0 * ec / a**2 * (2 * n1 + n2) / math.sqrt(sum(c * c for c in normal))


def _surface_table(tmp_path):
    rng = np.random.default_rng(3)
    theta, phi = rng.uniform(5, 85, 30), rng.uniform(5, 85, 30)  # degrees: normals all over one octant
    path = tmp_path / "surface_elasticity.csv"
    with path.open("w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["metal", "a0", "CHE", "K", "Gp", "C44", "theta", "phi", "gamma"])
        for metal, (a, ec, k, gp, c44) in METALS.items():
            for t, p in zip(theta, phi, strict=True):
                n = (math.sin(math.radians(t)) * math.cos(math.radians(p)),
                     math.sin(math.radians(t)) * math.sin(math.radians(p)), math.cos(math.radians(t)))
                w.writerow([metal, a, -ec, k, gp, c44, *(repr(float(x)) for x in (t, p, _gamma(a, ec, n)))])
    mapping = tmp_path / "surface_elasticity.yaml"
    mapping.write_text(
        "name: surface_elasticity\n"
        "material: {column: metal, prototype: fcc}\n"
        "method: {name: EAM (synthetic), kind: interatomic_potential}\n"
        "derived:\n"
        "  Ec: {expr: '-CHE'}\n"
        "  C11: {expr: 'K + 4*Gp/3'}\n"
        "  C12: {expr: 'K - 2*Gp/3'}\n"
        "columns:\n"
        "  a0: {definition: lattice_constant, unit: angstrom}\n"
        "  Ec: {definition: cohesive_energy, unit: eV/atom}\n"
        "  K: {definition: bulk_modulus, unit: GPa}\n"
        "  C11: {definition: c11, unit: GPa}\n"
        "  C12: {definition: c12, unit: GPa}\n"
        "  C44: {definition: c44, unit: GPa}\n"
        "  gamma:\n"
        "    definition: surface_energy\n"
        "    unit: J/m^2\n"
        "    orientation: {angle_columns: [theta, phi], convention: spherical}\n"
    )
    return path, mapping, theta, phi


def test_surface_table_through_a_mapping_alone_and_factorised_fit(engine, database_url, tmp_path):
    path, mapping, theta, phi = _surface_table(tmp_path)
    report = ingest_table(path, mapping, engine=engine, report_path=tmp_path / "report.json")
    # 6 bulk values per metal stored once (repeated on 30 rows, agreeing), 30 γ per metal.
    assert (report.bulk_inserted, report.surface_inserted, report.repeated) == (4 * 6, 4 * 30, 4 * 29 * 6)
    assert not report.skipped and not report.dropped_rows
    assert json.loads((tmp_path / "report.json").read_text())["surface_inserted"] == 120
    with engine.connect() as conn:
        bulk = dict(conn.execute(text("SELECT property, value FROM property_values WHERE material = 'Cu' AND scope = 'bulk'")).all())
        surface = conn.execute(text(
            "SELECT su.normal_x, su.normal_y, su.normal_z, p.value FROM surface_property p JOIN surface su ON su.id = p.surface_id "
            "JOIN material m ON m.id = su.material_id WHERE m.formula = 'Cu' AND (p.details->>'row')::int = 1")).one()
    assert bulk["cohesive_energy"] == pytest.approx(3.54)
    assert (bulk["c11"], bulk["c12"]) == (pytest.approx(140 + 4 * 24 / 3), pytest.approx(140 - 2 * 24 / 3))
    t, p = math.radians(theta[0]), math.radians(phi[0])
    expected = from_normal([math.sin(t) * math.cos(p), math.sin(t) * math.sin(p), math.cos(t)])
    assert surface[:3] == pytest.approx(expected.normal, abs=1e-9)
    assert surface[3] == pytest.approx(_gamma(3.615, 3.54, expected.normal))

    env = server_env(database_url)
    out = run_cli("fit", "--name", "gamma_sph", "--target", "surface_energy", "--features", "lattice_constant",
                  "cohesive_energy", "c11", "c12", "--factorize", "orientation", "--engine", "sparse", "--seed", "0",
                  "--time-budget", "30", env=env).stdout
    assert "created (version 1)" in out
    shown = run_cli("models", "show", "gamma_sph", env=env).stdout
    coefficient_line = next(line for line in shown.splitlines() if line.strip().startswith("coefficient:"))
    assert "cohesive_energy/lattice_constant**2" in coefficient_line
    with engine.connect() as conn:
        worst = conn.execute(text("SELECT max(abs(predicted - observed) / observed) FROM model_predictions WHERE model = 'gamma_sph'")).scalar()
    assert worst < 0.02


# --- orientations as published: rounded angles, separate h k l columns, overbars ----------------

_SURFACE_BASE = "material: {column: metal, prototype: fcc}\nmethod: {name: EAM, kind: interatomic_potential}\ncolumns:\n"


def _surface_keys(engine) -> list[tuple[str, str, float]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT m.formula, su.orientation_key, p.value FROM surface_property p JOIN surface su ON su.id = p.surface_id "
            "JOIN material m ON m.id = su.material_id ORDER BY 1, 3")).all()]


def test_miller_tolerance_snaps_angle_to_the_lowest_index_plane():
    """tol_deg: an angle, not components; the default stays exact; the lowest largest index wins."""
    from matstore.ingest.validating import spherical_normal
    from matstore.orientation import from_angles, from_normals

    near_111, near_211 = spherical_normal(54.7, 45.0), spherical_normal(35.26, 45.0)  # 0.036° and 0.0044° off
    assert from_normal(near_111).miller is None and from_normal(near_211).miller is None
    assert from_normal(near_111, tol_deg=0.1).miller == (1, 1, 1)
    assert from_normal(near_111, tol_deg=0.03).miller is None  # 0.036° is outside 0.03°
    assert from_normal(near_211, tol_deg=0.01).miller == (2, 1, 1)
    snapped = from_normal(near_111, tol_deg=0.1)
    assert snapped.normal == pytest.approx((3 ** -0.5,) * 3, abs=1e-15) and snapped.key == "hkl:1,1,1"
    # (4,4,3.6) is 2.79° from (1,1,1), 2.98° from (5,5,4), 0.73° from (8,8,7), 0.32° from (9,9,8):
    # the lowest index within the angle wins, not the nearest plane.
    assert from_normal([4, 4, 3.6], tol_deg=5).miller == (1, 1, 1)
    assert from_normal([4, 4, 3.6], tol_deg=1).miller == (8, 8, 7)
    assert [o.miller for o in from_normals(np.array([near_111, near_211]), tol_deg=0.1)] == [(1, 1, 1), (2, 1, 1)]
    assert from_angles(54.7, 45.0, tol_deg=0.1).miller == (1, 1, 1)


def test_rounded_published_angles_are_noted_then_snapped_with_the_mapping_option(engine, tmp_path):
    table = tmp_path / "rounded.csv"
    table.write_text("metal,theta,phi,gamma\nCu,54.7,45,1.22\nCu,35.26,45,1.39\nCu,12.5,33,1.31\nNi,54.7,45,1.9\n")
    mapping = tmp_path / "rounded.yaml"
    orientation = "{angle_columns: [theta, phi], convention: spherical%s}"
    mapping.write_text(_SURFACE_BASE + f"  gamma: {{definition: surface_energy, unit: J/m^2, orientation: {orientation % ''}}}\n")
    report = ingest_table(table, mapping, engine=engine)
    assert report.notes == [
        "2 values at 1 orientation within 0.036° of (1,1,1) were not stored as (1,1,1); "
        "set orientation.miller_tolerance_deg: 0.1 in the mapping to snap them",
        "1 value at 1 orientation within 0.0044° of (2,1,1) was not stored as (2,1,1); "
        "set orientation.miller_tolerance_deg: 0.1 in the mapping to snap them",
    ]
    assert all(key.startswith("n:") for _, key, _ in _surface_keys(engine))  # (12.5°, 33°) is near no plane: no note

    table2 = tmp_path / "rounded_again.csv"
    table2.write_text(table.read_text().replace("Ni,54.7", "Ag,54.7356"))
    mapping.write_text(_SURFACE_BASE + "  gamma: {definition: surface_energy, unit: J/m^2, orientation: "
                       + orientation % ", miller_tolerance_deg: 0.1" + "}\n")
    report = ingest_table(table2, mapping, engine=engine)
    assert report.notes == [] and report.surface_inserted == 4
    stored = [row for row in _surface_keys(engine) if not row[1].startswith("n:")]
    assert stored == [("Ag", "hkl:1,1,1", pytest.approx(1.9)), ("Cu", "hkl:1,1,1", pytest.approx(1.22)),
                      ("Cu", "hkl:2,1,1", pytest.approx(1.39))]


def test_miller_columns_overbars_and_integral_floats(engine, tmp_path):
    """Separate h, k, l columns; 1̄10 (U+0304 and U+0305) and U+2212 as −1; a derived h*100+k*10+l (111.0, 11.0)."""
    table = tmp_path / "hkl.csv"
    table.write_text("metal,h,k,l,hkl,g1,g2\n"
                     "Cu,1,1,1,1\u030410,1.22,2.0\n"
                     "Cu,2,\u22121,0,(1\u0305 0 0),1.40,2.1\n"
                     "Ni,1.0,1,0,\u22121 1 1,1.9,2.2\n")
    mapping = tmp_path / "hkl.yaml"
    mapping.write_text(_SURFACE_BASE
                       + "  g1: {definition: surface_energy, unit: J/m^2, orientation: {miller_columns: [h, k, l]}}\n"
                       + "  g2: {definition: surface_stress, unit: N/m, orientation: {miller_column: hkl}}\n")
    report = ingest_table(table, mapping, engine=engine)
    assert report.surface_inserted == 6
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT material, property, miller_h, miller_k, miller_l, value FROM property_values "
                                 "WHERE scope = 'surface' ORDER BY property, value")).all()
    assert [tuple(r[:5]) for r in rows] == [
        ("Cu", "surface_energy", 1, 1, 1), ("Cu", "surface_energy", 2, 1, 0), ("Ni", "surface_energy", 1, 1, 0),
        ("Cu", "surface_stress", 1, 1, 0), ("Cu", "surface_stress", 1, 0, 0), ("Ni", "surface_stress", 1, 1, 1)]

    derived = tmp_path / "derived.csv"
    derived.write_text("metal,h,k,l,g1\nAg,1,1,1,1.22\nAg,0,1,1,1.30\nAg,2,1,0,1.40\n")
    mapping.write_text(_SURFACE_BASE.replace("columns:\n", "derived:\n  hkl: {expr: 'h*100 + k*10 + l'}\ncolumns:\n")
                       + "  g1: {definition: surface_energy, unit: J/m^2, orientation: {miller_column: hkl}}\n")
    report = ingest_table(derived, mapping, engine=engine)
    assert report.surface_inserted == 3
    with engine.connect() as conn:
        got = conn.execute(text("SELECT su.miller_h, su.miller_k, su.miller_l FROM surface_property p "
                                "JOIN surface su ON su.id = p.surface_id WHERE p.source_id = :s ORDER BY p.value"),
                           {"s": report.source_id}).all()
    assert [tuple(r) for r in got] == [(1, 1, 1), (1, 1, 0), (2, 1, 0)]  # 11.0 is (0,1,1) = (1,1,0)
