"""Tensor components of tables keep their in-plane frame; bulk columns of per-configuration tables are the material's.

1. Surface-tensor components (τ_ij, S_ijkl) depend on the in-plane frame: a table's value
   is stored with ``details.frame`` (declared ``matstore`` or e1, or ``source (undeclared)``)
   and ``details.given_normal`` (the normal as written), and values in different frames are
   never compared as conflicting.
2. A bulk-scope column of a keyed table (a band gap repeated on every configuration row) is
   stored once per material and method, in ``bulk_property``, and a fit of a configuration
   target finds it as a feature.
"""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import text

from matstore.ingest.errors import DuplicateRowError, IngestError, MappingError, ParseError
from matstore.ingest.table import ingest_table
from matstore.models.dataset import build_training_set
from matstore.orientation import in_plane_frame
from tests.test_ingest_published_shapes import _vocab_add

EQ_HEADER = "metal,nx,ny,nz,tau_11,tau_22"


def _tensor_mapping(frame=None, *, method: str = "frame test", orientation=None) -> dict:
    orient = orientation or {"normal_columns": ["nx", "ny", "nz"]}
    if frame is not None:
        orient = {**orient, "frame": frame}
    return {
        "material": {"column": "metal", "prototype": "fcc"},
        "method": {"name": method, "kind": "other"},
        "columns": {
            "tau_11": {"definition": "surface_stress_11", "unit": "N/m", "orientation": orient},
            "tau_22": {"definition": "surface_stress_22", "unit": "N/m", "orientation": orient},
        },
    }


def _write(tmp_path, name: str, lines: list[str]):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _surface_values(engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT d.name, s.miller_h, s.miller_k, s.miller_l, p.value, p.details FROM surface_property p "
            "JOIN surface s ON s.id = p.surface_id JOIN property_definition d ON d.id = p.definition_id "
            "ORDER BY p.source_id, d.name")).all()


def test_undeclared_frame_is_recorded_with_the_given_normal(engine, tmp_path):
    """One row: τ11 = 1.30 N/m stored at (4,3,0), details name the undeclared frame and the normal (0.8, 0.6, 0)."""
    path = _write(tmp_path, "eq1.csv", [EQ_HEADER, "Cu,0.8,0.6,0.0,1.30,0.90"])
    report = ingest_table(path, _tensor_mapping(), engine=engine)
    assert report.surface_inserted == 2
    rows = _surface_values(engine)
    assert [(r[0], r[1:4], r[4]) for r in rows] == [("surface_stress_11", (4, 3, 0), pytest.approx(1.30)),
                                                    ("surface_stress_22", (4, 3, 0), pytest.approx(0.90))]
    details = rows[0][5]
    assert details["frame"] == "source (undeclared)" and details["given_normal"] == [0.8, 0.6, 0.0]
    assert details["column"] == "tau_11" and details["row"] == 1
    assert report.notes == [
        "tensor components stored in the source's undeclared in-plane frame (1 surface_stress_11, 1 surface_stress_22): "
        "details.frame = 'source (undeclared)', details.given_normal = the table's normal; they are compared with no "
        "other frame's values. Declare it with orientation.frame: matstore (matstore's in_plane_frame of the reduced "
        "index) or frame: [e1x, e1y, e1z] (e1 in crystal axes)"]


def test_symmetry_equivalent_normals_in_undeclared_frames_are_not_conflicts(engine, tmp_path):
    """The reporter's table: (0.8,0.6,0) and (0.6,0.8,0) are one surface, the frame rotated 90°: no error."""
    path = _write(tmp_path, "eq.csv", [EQ_HEADER, "Cu,0.8,0.6,0.0,1.30,0.90", "Cu,0.6,0.8,0.0,0.90,1.30"])
    report = ingest_table(path, _tensor_mapping(), engine=engine)
    assert (report.surface_inserted, report.repeated, len(report.skipped)) == (2, 0, 2)
    assert [r[4] for r in _surface_values(engine)] == [pytest.approx(1.30), pytest.approx(0.90)]  # row 1's frame
    skipped = report.skipped[0]
    assert (skipped["row"], skipped["column"], skipped["value"], skipped["given_normal"]) == (2, "tau_11", 0.9, [0.6, 0.8, 0.0])
    assert skipped["reason"].startswith(
        "another frame: surface_stress_11 of Cu (fcc) by frame test on (4,3,0) is given in row 1 (normal (0.8,0.6,0)) "
        "and here (normal (0.6,0.8,0)), frames source (undeclared) and source (undeclared); components in different "
        "frames are not compared")
    assert report.notes[1] == ("2 tensor components given again in another frame of the same surface were not stored "
                               "(listed in skipped); the first row's frame is stored")
    assert report.dropped_rows[0]["row"] == 2


def test_same_given_normal_in_an_undeclared_frame_is_still_compared(engine, tmp_path):
    """One written normal is one frame of the source: a different number there is the usual conflict."""
    path = _write(tmp_path, "c.csv", [EQ_HEADER, "Cu,0.8,0.6,0.0,1.30,0.90", "Cu,1.6,1.2,0.0,1.25,0.90"])
    with pytest.raises(DuplicateRowError) as err:
        ingest_table(path, _tensor_mapping(), engine=engine)
    assert str(err.value).replace(f"{tmp_path}/", "").startswith(
        "c.csv, row 2, line 3, column 'tau_11': conflicting values: surface_stress_11 of Cu (fcc) by frame test on (4,3,0) "
        "is 1.25 here but 1.3 in row 1 (line 2)")
    assert _surface_values(engine) == []


def test_matstore_frame_is_stored_and_compared_across_equivalent_normals(engine, tmp_path):
    """frame: matstore: e1, e2, n of in_plane_frame((1,1,0)); (1,1,0) and (-1,1,0) rows agree, so stored once."""
    mapping = _tensor_mapping("matstore", orientation={"miller_column": "hkl"})
    path = _write(tmp_path, "m.csv", ["metal,hkl,tau_11,tau_22", "Cu,110,1.30,0.90", "Cu,-110,1.30,0.90"])
    report = ingest_table(path, mapping, engine=engine)
    assert (report.surface_inserted, report.repeated) == (2, 2)
    details = _surface_values(engine)[0][5]
    e1, e2, n = in_plane_frame((1, 1, 0))
    np.testing.assert_allclose(details["frame"]["e1"], e1, atol=1e-12)
    np.testing.assert_allclose(details["frame"]["e2"], e2, atol=1e-12)
    np.testing.assert_allclose(details["frame"]["normal"], [2 ** -0.5, 2 ** -0.5, 0.0], atol=1e-12)
    assert details["frame"]["declared"] == "matstore" and details["given_normal"] == [1.0, 1.0, 0.0]
    assert report.notes == []

    bad = _write(tmp_path, "m2.csv", ["metal,hkl,tau_11,tau_22", "Cu,110,1.30,0.90", "Cu,-110,0.90,1.30"])
    with pytest.raises(DuplicateRowError, match=r"m2\.csv, row 2, line 3, column 'tau_11': conflicting values: "
                       r"surface_stress_11 of Cu \(fcc\) by frame test on \(1,1,0\) is 0\.9 here but 1\.3 in row 1"):
        ingest_table(bad, mapping, engine=engine)


def test_other_sources_are_compared_only_in_equal_declared_frames(engine, tmp_path):
    """A second file: in the matstore frame, 1.25 vs 1.30 conflicts; in an undeclared frame it is stored beside."""
    mapping = _tensor_mapping("matstore", orientation={"miller_column": "hkl"})
    ingest_table(_write(tmp_path, "a.csv", ["metal,hkl,tau_11,tau_22", "Cu,110,1.30,0.90"]), mapping, engine=engine)
    other = ["metal,hkl,tau_11,tau_22", "Cu,1 1 0,1.25,0.90"]
    with pytest.raises(IngestError) as err:
        ingest_table(_write(tmp_path, "b.csv", other), mapping, engine=engine)
    assert str(err.value).replace(f"{tmp_path}/", "").startswith(
        "b.csv, row 1, line 2, column 'tau_11': conflicting values: surface_stress_11 of Cu (fcc) by frame test on (1,1,0) "
        "is 1.25 N/m here but 1.3 N/m in source 1 (a.csv, job run 1)")
    report = ingest_table(_write(tmp_path, "c.csv", other), _tensor_mapping(orientation={"miller_column": "hkl"}),
                          engine=engine)
    assert report.surface_inserted == 2
    assert [r[4] for r in _surface_values(engine) if r[0] == "surface_stress_11"] == [pytest.approx(1.30), pytest.approx(1.25)]


def test_declared_e1_columns(engine, tmp_path):
    """e1 = [001] on the normal (0.8, 0.6, 0): e2 = n × e1 = (0.6, -0.8, 0); an e1 out of the plane is refused."""
    mapping = _tensor_mapping(["e1x", "e1y", "e1z"])
    header = EQ_HEADER + ",e1x,e1y,e1z"
    ingest_table(_write(tmp_path, "e.csv", [header, "Cu,0.8,0.6,0.0,1.30,0.90,0,0,2"]), mapping, engine=engine)
    frame = _surface_values(engine)[0][5]["frame"]
    np.testing.assert_allclose([frame["e1"], frame["e2"], frame["normal"]], [[0, 0, 1], [0.6, -0.8, 0], [0.8, 0.6, 0]],
                               atol=1e-12)
    with pytest.raises(ParseError) as err:
        ingest_table(_write(tmp_path, "f.csv", [header, "Cu,0.8,0.6,0.0,1.30,0.90,1,0,0"]), mapping, engine=engine)
    assert str(err.value).replace(f"{tmp_path}/", "") == ("f.csv, row 1, line 2, column 'e1x': frame e1 [1.0, 0.0, 0.0] is not in the surface plane "
                              "of the normal [0.8, 0.6, 0.0] (|cos| = 0.8 > 0.001)")


def test_frame_is_refused_for_invariants_and_irrational_matstore_frames(engine, tmp_path):
    mapping = _tensor_mapping()
    mapping["columns"]["tau"] = {"definition": "surface_stress", "unit": "N/m",
                                 "orientation": {"normal_columns": ["nx", "ny", "nz"], "frame": "matstore"}}
    path = _write(tmp_path, "i.csv", [EQ_HEADER + ",tau", "Cu,0.8,0.6,0.0,1.30,0.90,1.10"])
    with pytest.raises(MappingError, match="columns.tau: frame applies to tensor components .*; surface_stress does "
                       "not depend on the in-plane frame"):
        ingest_table(path, mapping, engine=engine)
    irrational = _write(tmp_path, "r.csv", [EQ_HEADER, "Cu,0.8,0.5,0.1234567,1.30,0.90"])
    with pytest.raises(ParseError, match=r"r\.csv, row 1, line 2, column 'nx': frame: matstore needs a Miller plane, "
                       r"and θ=.* is irrational"):
        ingest_table(irrational, _tensor_mapping("matstore"), engine=engine)


def test_invariant_mean_stress_is_unaffected(engine, tmp_path):
    """τ = (τ11 + τ22)/2 = 1.10 N/m on both normals: a repeat, stored once, no frame in its details."""
    mapping = _tensor_mapping()
    mapping["columns"]["tau"] = {"definition": "surface_stress", "unit": "N/m",
                                 "orientation": {"normal_columns": ["nx", "ny", "nz"]}}
    path = _write(tmp_path, "t.csv", [EQ_HEADER + ",tau", "Cu,0.8,0.6,0.0,1.30,0.90,1.10", "Cu,0.6,0.8,0.0,0.90,1.30,1.10"])
    report = ingest_table(path, mapping, engine=engine)
    assert (report.surface_inserted, report.repeated) == (3, 1)
    tau = next(r for r in _surface_values(engine) if r[0] == "surface_stress")
    assert tau[4] == pytest.approx(1.10) and "frame" not in tau[5] and "given_normal" not in tau[5]


# --- 2. bulk columns of per-configuration tables -----------------------------------------------

GAPS = {"MoS2": 1.80, "WSe2": 1.62, "BN": 5.95}


@pytest.fixture
def store(user_vocabulary_engine):
    """The test store with band_gap (bulk) and d_vv_1..3 (configuration), added with the CLI as a user adds them;
    user definitions are removed afterwards (the vocabulary outlives truncation)."""
    _vocab_add("band_gap", "--unit", "eV", "--scope", "bulk")
    for name in ("d_vv_1", "d_vv_2", "d_vv_3"):
        _vocab_add(name, "--unit", "angstrom", "--scope", "configuration")
    return user_vocabulary_engine


def _keyed_table(tmp_path, gap_of):
    """40 configurations per host, the host's band gap ``gap_of(host, i)`` on every row; E_f = 5 + 10 Å/d1 (eV)."""
    rng = np.random.default_rng(3)
    lines = ["host,proto,config_id,band_gap_eV,E_form,d1,d2,d3"]
    for host in GAPS:
        for i in range(40):
            d = np.sort(rng.uniform(3.0, 11.0, size=3))
            lines.append(f"{host},2H,{i},{gap_of(host, i)},{5.0 + 10.0 / d[0]:.6f},"
                         f"{d[0]:.4f},{d[1]:.4f},{d[2]:.4f}")
    path = tmp_path / "tmd.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


KEYED_MAPPING = {
    "name": "tmd_three_vacancies",
    "material": {"column": "host", "prototype_column": "proto"},
    "method": {"name": "DFT-PBE (2D defects paper)", "kind": "dft"},
    "key": {"column": "config_id", "prefix": "3v:"},
    "columns": {"band_gap_eV": {"definition": "band_gap", "unit": "eV"},
                "E_form": {"definition": "formation_energy", "unit": "eV"},
                "d1": {"definition": "d_vv_1", "unit": "angstrom"},
                "d2": {"definition": "d_vv_2", "unit": "angstrom"},
                "d3": {"definition": "d_vv_3", "unit": "angstrom"}},
}


def test_bulk_column_of_a_keyed_table_is_stored_once_per_material(store, tmp_path):
    report = ingest_table(_keyed_table(tmp_path, lambda host, i: GAPS[host]), KEYED_MAPPING, engine=store)
    assert (report.rows, report.bulk_inserted, report.configuration_inserted, report.repeated) == (120, 3, 480, 117)
    assert report.configurations == 120
    with store.connect() as conn:
        gaps = conn.execute(text("SELECT material, scope, value, configuration_key FROM property_values "
                                 "WHERE property = 'band_gap' ORDER BY material")).all()
        n_configs = conn.execute(text("SELECT count(*) FROM material_configuration")).scalar()
    assert [(m, s, k) for m, s, _, k in gaps] == [("BN", "bulk", None), ("MoS2", "bulk", None), ("WSe2", "bulk", None)]
    assert [v for _, _, v, _ in gaps] == [pytest.approx(5.95), pytest.approx(1.80), pytest.approx(1.62)]
    assert n_configs == 120

    ts = build_training_set(store, target="formation_energy", features=["d_vv_1", "d_vv_2", "d_vv_3", "band_gap"])
    assert ts.n_rows == 120 and ts.dropped == []
    by_material = ts.table.groupby("material").band_gap.agg(["min", "max", "count"])
    assert by_material.loc["WSe2"].tolist() == [pytest.approx(1.62), pytest.approx(1.62), 40]


def test_disagreeing_bulk_repeats_of_a_keyed_table_are_one_line_errors(store, tmp_path):
    """Configuration 2 of each host gives another band gap: refused naming rows 3 and 1, nothing stored."""
    path = _keyed_table(tmp_path, lambda host, i: GAPS[host] + (0.1 if i == 2 else 0.0))
    with pytest.raises(DuplicateRowError) as err:
        ingest_table(path, KEYED_MAPPING, engine=store)
    assert str(err.value).replace(f"{tmp_path}/", "") == (
        "tmd.csv, row 3, line 4, column 'band_gap_eV': conflicting values: band_gap of MoS2 (2H) by DFT-PBE (2D defects "
        "paper) is 1.9 here but 1.8 in row 1 (line 2); fix the table, or set `on_duplicate: keep_first` to keep row 1's")
    with store.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM property_values WHERE method LIKE 'DFT-PBE (2D%'")).scalar() == 0


def test_constant_orientation_takes_its_frame_beside_it(tmp_path):
    """miller: [1,1,1] with frame: [1,-1,0]: e1 = [1,-1,0]/√2, e2 = n × e1 = [1,1,-2]/√6; an e1 out of the plane is refused."""
    from matstore.ingest.reading import read_table
    from matstore.ingest.table import load_mapping
    from matstore.ingest.table_report import TableReport
    from matstore.ingest.validating import parse_values

    path = _write(tmp_path, "c.csv", ["metal,t11", "Cu,1.5"])

    def mapping(frame):
        return {"material": {"column": "metal", "prototype": "fcc"}, "method": {"name": "x"},
                "columns": {"t11": {"definition": "surface_stress_11", "unit": "N/m", "miller": [1, 1, 1], "frame": frame}}}

    parsed = load_mapping(mapping([1, -1, 0]))
    value = parse_values(path, parsed, read_table(path, parsed), TableReport(path=str(path), sha256="", mapping=""))[0]
    np.testing.assert_allclose([value.frame["e1"], value.frame["e2"]],
                               [np.array([1, -1, 0]) / 2 ** 0.5, np.array([1, 1, -2]) / 6 ** 0.5], atol=1e-12)
    assert value.given_normal == [1.0, 1.0, 1.0] and value.frame["declared"] == "mapping"
    with pytest.raises(MappingError) as err:
        load_mapping(mapping([1, 0, 0]))
    assert str(err.value) == ("column 't11': columns.t11: frame: e1 [1.0, 0.0, 0.0] is not in the surface plane [1, 1, 1] "
                              "(|cos| = 0.577 > 0.001)")
