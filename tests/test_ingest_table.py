"""Property tables through YAML mappings: units, orientations, validation, the OpenKIM dataset."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from matstore.ingest.errors import DatasetUnavailableError, IngestError, InvalidValueError
from matstore.ingest.registry import DATASETS, fetch, ingest_dataset
from matstore.ingest.table import ingest_table, load_mapping
from matstore.ingest.units import conversion_factor
from tests.conftest import run_concurrently

GOOD = Path(__file__).parent / "data" / "good"
FBD_CU = "EAM_Dynamo_FoilesBaskesDaw_1986Universal3_Cu__MO_666348409573_004"


def _scalar(engine, sql, **params):
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def test_conversion_factors():
    assert conversion_factor("eV/angstrom^2", "J/m^2") == pytest.approx(16.021766, rel=1e-7)
    assert conversion_factor("eV/Å^2", "J/m^2") == pytest.approx(16.02176634, rel=1e-12)
    assert conversion_factor("kbar", "GPa") == pytest.approx(0.1)
    assert conversion_factor("eV", "eV/atom") == 1.0
    with pytest.raises(ValueError, match="cannot be converted"):
        conversion_factor("eV", "GPa")


def test_small_wide_table(engine):
    report = ingest_table(GOOD / "small_table.csv", GOOD / "small_table.yaml", engine=engine)
    assert report.status == "inserted"
    assert (report.rows, report.bulk_inserted, report.surface_inserted, report.missing) == (3, 11, 3, 1)
    assert not report.flagged and not report.skipped
    gamma = _scalar(engine, "SELECT value FROM property_values WHERE material='Cu' AND method='EAM_A' AND property='surface_energy_111'")
    assert gamma == pytest.approx(0.0737 * 16.02176634, rel=1e-12)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT su.miller_h, su.miller_k, su.miller_l, su.theta_deg, su.phi_deg, p.value, p.details->>'unit' "
            "FROM surface_property p JOIN surface su ON su.id = p.surface_id JOIN material m ON m.id = su.material_id "
            "WHERE m.formula = 'Ni'"
        )).one()
    assert rows[:3] == (1, 1, 1)
    assert rows[3] == pytest.approx(54.7356, abs=1e-4) and rows[4] == pytest.approx(45.0)
    assert rows[5] == pytest.approx(0.12 * 16.02176634) and rows[6] == "eV/angstrom^2"


def test_long_form_orientations(engine):
    report = ingest_table(GOOD / "surface_long.csv", GOOD / "surface_long.yaml", engine=engine)
    assert report.surface_inserted == 5 and report.bulk_inserted == 0
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT method, miller_h, miller_k, miller_l, theta_deg, phi_deg, value, uncertainty "
            "FROM property_values ORDER BY method, value"
        )).all()
    by = {(r.method, r.value): r for r in rows}
    assert (by["EAM_A", 1.18].miller_h, by["EAM_A", 1.18].miller_k, by["EAM_A", 1.18].miller_l) == (1, 1, 1)
    assert by["EAM_A", 1.18].uncertainty == pytest.approx(0.01)
    assert (by["EAM_A", 1.35].miller_h, by["EAM_A", 1.35].miller_k, by["EAM_A", 1.35].miller_l) == (1, 0, 0)
    assert (by["EAM_A", 1.30].miller_h, by["EAM_A", 1.30].miller_k, by["EAM_A", 1.30].miller_l) == (2, 1, 1)
    assert (by["EAM_B", 1.40].miller_h, by["EAM_B", 1.40].miller_k, by["EAM_B", 1.40].miller_l) == (2, 1, 0)
    angle = by["EAM_C", 1.25]
    assert angle.miller_h is None
    assert angle.theta_deg == pytest.approx(30.0) and angle.phi_deg == pytest.approx(20.0)


def test_headerless_whitespace_table_with_unit_conversion(engine):
    report = ingest_table(GOOD / "whitespace_table.txt", GOOD / "whitespace_table.yaml", engine=engine)
    assert report.bulk_inserted == 8
    c44 = _scalar(engine, "SELECT value FROM property_values WHERE material='Al' AND property='c44'")
    assert c44 == pytest.approx(28.2)
    assert _scalar(engine, "SELECT kind FROM method WHERE name='LJ_test'") == "model"


@pytest.mark.parametrize("policy", ["flag", "skip", "error"])
def test_invalid_values_policies(engine, tmp_path, policy):
    mapping = load_mapping(GOOD / "invalid_values.yaml").raw | {"on_invalid": policy}
    if policy == "error":
        with pytest.raises(InvalidValueError, match=r"invalid_values.csv, row 1, line 2, column 'c44_GPa'.*c44 = -5"):
            ingest_table(GOOD / "invalid_values.csv", mapping, engine=engine)
        assert _scalar(engine, "SELECT count(*) FROM bulk_property") == 0
        assert _scalar(engine, "SELECT status FROM job_run") == "failed"
        return
    report = ingest_table(GOOD / "invalid_values.csv", mapping, engine=engine)
    issues = report.flagged + report.skipped
    found = sorted((i["row"], i["column"]) for i in issues)
    # -5 GPa (row 1), nan (row 2), 206.5 eV/atom (row 3), inf (row 4); blank (row 5) is just missing.
    assert found == [(1, "c44_GPa"), (2, "c44_GPa"), (3, "Ec_eV"), (4, "c44_GPa")]
    assert report.missing == 1
    stored_flags = _scalar(engine, "SELECT count(*) FROM bulk_property WHERE flag IS NOT NULL")
    if policy == "flag":
        # Finite invalid values are stored with their flag; non-finite ones cannot be and are skipped.
        assert sorted((i["row"], i["column"]) for i in report.flagged) == [(1, "c44_GPa"), (3, "Ec_eV")]
        assert stored_flags == 2
        flag = _scalar(engine, "SELECT flag FROM property_values WHERE material='Al' AND property='cohesive_energy'")
        assert flag.startswith("implausible: cohesive_energy = 206.5")
        assert all("non-finite" in i["reason"] for i in report.skipped)
    else:
        assert stored_flags == 0 and not report.flagged
    assert _scalar(engine, "SELECT count(*) FROM bulk_property WHERE flag IS NULL") == 5


@pytest.fixture
def openkim(engine, strength_data_dir, monkeypatch):
    from matstore.config import get_settings

    monkeypatch.setenv("MATSTORE_DATASET_DIR", str(strength_data_dir))
    get_settings.cache_clear()
    try:
        report = ingest_dataset("strength_covariance", engine=engine)
    finally:
        monkeypatch.delenv("MATSTORE_DATASET_DIR")
        get_settings.cache_clear()
    return report


def test_openkim_table(engine, openkim, strength_data_dir):
    table, dft = openkim.tables
    assert Path(table.path).name == "models_w_props_full.csv" and table.status == "inserted"
    assert table.rows == 177
    # One method per OpenKIM model: the 177 rows name 144 distinct models (alloy potentials
    # appear once per element), plus the DFT method of dft.csv.
    assert _scalar(engine, "SELECT count(*) FROM method WHERE kind = 'interatomic_potential'") == 144
    assert _scalar(engine, "SELECT count(*) FROM method WHERE kind = 'dft'") == 1
    assert _scalar(engine, "SELECT count(DISTINCT (material_id, method_id)) FROM bulk_property b JOIN source s ON s.id = b.source_id WHERE s.uri LIKE '%models_w_props_full.csv'") == 176

    # Unit conversion: FBD-1986 u3 Cu γ(111) 0.07369624388094669 eV/Å² → 1.18074 J/m²; C44 in GPa unchanged.
    with open(strength_data_dir / "data" / "models_w_props_full.csv") as handle:
        row = next(r for r in csv.DictReader(handle) if r["model"] == FBD_CU)
    with engine.connect() as conn:
        values = dict(conn.execute(text(
            "SELECT property, value FROM property_values WHERE method = :m AND scope = 'bulk'"), {"m": FBD_CU}).all())
        surface = conn.execute(text(
            "SELECT value FROM property_values WHERE method = :m AND property = 'surface_energy' AND miller_h = 1 AND miller_k = 1 AND miller_l = 1"
        ), {"m": FBD_CU}).scalar_one()
    assert float(row["surface_energy_111_fcc"]) == 0.07369624388094669
    assert values["surface_energy_111"] == pytest.approx(1.18074, abs=1e-4)
    assert surface == values["surface_energy_111"]
    assert values["c44"] == float(row["c44_fcc"])
    assert values["strength"] == float(row["strength_MPa"])
    assert values["vacancy_formation_energy"] == float(row["relaxed_formation_potential_energy_fcc"])
    assert values["stacking_fault_energy"] == pytest.approx(float(row["intr_stack_fault_energy_fcc"]) * 16.02176634, rel=1e-12)

    # Implausible values are flagged (stored, with their reason), listed with their rows, never dropped.
    implausible = [f for f in table.flagged if f["reason"].startswith(("implausible", "non-finite", "negative"))
                   or "outside" in f["reason"]]
    flagged = {(f["row"], f["column"]): f for f in implausible}
    cohesive = [f for f in implausible if f["column"] == "cohesive_energy_fcc"]
    assert len(cohesive) == 1 and cohesive[0]["value"] == pytest.approx(206.485746, rel=1e-6)
    assert cohesive[0]["row"] == 150 and cohesive[0]["line"] == 151
    assert (150, "c44_fcc") in flagged and flagged[(150, "c44_fcc")]["value"] == pytest.approx(61594.411181)
    assert any(f["column"].startswith("surface_energy") and f["value"] < 0 for f in implausible)
    assert len(implausible) == 20
    # Rows the study set aside are flagged by the mapping's row_flags: every value of the 14
    # disqualified potentials, and the strength of the SF_jamming = yes simulations.
    disqualified = [f for f in table.flagged if "disqualified" in f["reason"]]
    assert len({f["row"] for f in disqualified}) == 14
    jamming = [f for f in table.flagged if "SF_jamming" in f["reason"]]
    assert {f["definition"] for f in jamming} == {"strength"} and len({f["row"] for f in jamming}) == 13
    n_flagged_rows = _scalar(engine, "SELECT count(*) FROM property_values WHERE flag IS NOT NULL")
    assert n_flagged_rows == len(table.flagged)
    usable_strength = _scalar(engine, "SELECT count(*) FROM property_values WHERE property = 'strength' AND flag IS NULL")
    assert usable_strength == 177 - 1 - len({f["row"] for f in table.flagged if f["definition"] == "strength"} - {15})
    assert _scalar(engine, "SELECT value FROM property_values WHERE property='cohesive_energy' AND flag LIKE 'implausible%'") == pytest.approx(206.485746, rel=1e-6)
    # The repeated (model, species) of rows 14/15 keeps row 14 and reports row 15's values as skipped.
    assert {s["row"] for s in table.skipped} == {15} and len(table.skipped) == 22
    # Every non-blank mapped cell is accounted for: stored, flagged (also stored) or skipped.
    assert table.values == table.bulk_inserted + table.surface_inserted + len(table.skipped)

    # Source metadata.
    with engine.connect() as conn:
        src = conn.execute(text("SELECT kind, sha256, doi, license, commit, uri, details FROM source WHERE uri LIKE '%models_w_props_full.csv'")).one()
    assert src.kind == "dataset"
    assert src.sha256 == "ef1cead1d1883d487be2c004ce0e27371d360060b4f39e6d568bf8aa0b177991"
    assert (src.doi, src.license, src.commit) == ("10.1038/s41524-024-01453-w", "MIT", "137c733fac2f21da69c317f4c808b2a79623ea51")
    assert src.uri == "https://raw.githubusercontent.com/bjasperson/strength_covariance/137c733fac2f21da69c317f4c808b2a79623ea51/data/models_w_props_full.csv"
    assert src.details["mapping"]["name"] == "openkim_strength_covariance"

    # The DFT table is in J/m² already.
    assert dft.status == "inserted" and dft.bulk_inserted == 42 and dft.surface_inserted == 7 and not dft.flagged
    assert _scalar(engine, "SELECT value FROM property_values WHERE method='DFT' AND material='Cu' AND property='surface_energy_111'") == 1.61155

    # A scientist's query: per potential, γ(111) in J/m² beside C44 in GPa.
    with engine.connect() as conn:
        per_potential = conn.execute(text("""
            SELECT me.name AS potential, m.formula,
                   max(p.value) FILTER (WHERE d.name = 'surface_energy_111') AS gamma_111_j_m2,
                   max(p.value) FILTER (WHERE d.name = 'c44') AS c44_gpa
            FROM bulk_property p
            JOIN method me ON me.id = p.method_id
            JOIN material m ON m.id = p.material_id
            JOIN property_definition d ON d.id = p.definition_id
            WHERE me.kind = 'interatomic_potential'
            GROUP BY me.name, m.formula ORDER BY me.name, m.formula
        """)).all()
    assert len(per_potential) == 176
    fbd = next(r for r in per_potential if r.potential == FBD_CU)
    assert fbd.gamma_111_j_m2 == pytest.approx(1.18074, abs=1e-4) and fbd.c44_gpa == pytest.approx(76.6436365)


def test_openkim_surfaces_and_rerun(engine, openkim, strength_data_dir):
    with engine.connect() as conn:
        keys = conn.execute(text("SELECT DISTINCT orientation_key FROM surface ORDER BY 1")).scalars().all()
    assert keys == ["hkl:1,0,0", "hkl:1,1,0", "hkl:1,1,1", "hkl:2,1,1"]
    counts = _scalar(engine, "SELECT count(*) FROM bulk_property") , _scalar(engine, "SELECT count(*) FROM surface_property")
    again = ingest_dataset("strength_covariance", engine=engine, dataset_dir=strength_data_dir)
    assert [t.status for t in again.tables] == ["already stored", "already stored"]
    assert (_scalar(engine, "SELECT count(*) FROM bulk_property"), _scalar(engine, "SELECT count(*) FROM surface_property")) == counts


def test_provenance_by_sql(engine, openkim):
    """From any stored value back to its job run, method and source file hash."""
    with engine.connect() as conn:
        rows = conn.execute(text("""
            SELECT pv.value, pv.property, j.kind AS job_kind, j.status, j.code_version, me.name AS method, me.kind AS method_kind,
                   s.sha256, s.commit
            FROM property_values pv
            JOIN job_run j ON j.id = pv.job_run_id
            JOIN method me ON me.name = pv.method
            JOIN source s ON s.sha256 = pv.source_sha256
            WHERE pv.material = 'Cu' AND pv.property = 'c44'
        """)).all()
    assert rows and all(r.status == "succeeded" and r.job_kind == "ingest_dataset" for r in rows)
    shas = {r.sha256 for r in rows}
    assert shas == {"ef1cead1d1883d487be2c004ce0e27371d360060b4f39e6d568bf8aa0b177991",
                    "13be2c983bd3a0c3956f05a887e8423906c3742043fe7fb06c948b38ca821e85"}
    assert {r.method_kind for r in rows} == {"interatomic_potential", "dft"}


def test_dataset_unavailable(tmp_path, monkeypatch, engine):
    with pytest.raises(DatasetUnavailableError, match="not in the local mirror"):
        fetch("strength_covariance", "data/models_w_props_full.csv", dataset_dir=tmp_path)
    with pytest.raises(DatasetUnavailableError, match="no registered dataset"):
        ingest_dataset("nope", engine=engine)
    # No mirror and no network: a clear DatasetUnavailableError, nothing stored.
    import pooch

    from matstore.config import get_settings

    def offline(**kwargs):
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(pooch, "retrieve", offline)
    monkeypatch.delenv("MATSTORE_DATASET_DIR", raising=False)
    get_settings.cache_clear()
    with pytest.raises(DatasetUnavailableError, match="could not be downloaded from https://raw.githubusercontent.com/bjasperson/strength_covariance/137c733f"):
        ingest_dataset("strength_covariance", engine=engine)
    assert _scalar(engine, "SELECT count(*) FROM source") == 0


def test_checksum_mismatch(tmp_path):
    from matstore.ingest.errors import ChecksumError

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dft.csv").write_text("species\nCu\n")
    with pytest.raises(ChecksumError, match="differs from the registered"):
        fetch("strength_covariance", "data/dft.csv", dataset_dir=tmp_path)


def test_registry_pins(strength_data_dir):
    from matstore.hashing import sha256_file

    ds = DATASETS["strength_covariance"]
    for f in ds.files:
        assert sha256_file(strength_data_dir / f.path) == f.sha256
        assert ds.url(f.path).startswith("https://raw.githubusercontent.com/bjasperson/strength_covariance/137c733fac2f21da69c317f4c808b2a79623ea51/")


def test_cli_table_and_error_line(engine):
    from matstore.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["ingest", "table", str(GOOD / "small_table.csv"), "--mapping", str(GOOD / "small_table.yaml")])
    assert result.exit_code == 0, result.output
    assert "small_table.csv" in result.output and "inserted" in result.output
    result = runner.invoke(app, ["ingest", "table", str(GOOD / "invalid_values.csv"), "--mapping", str(GOOD / "small_table.yaml")])
    assert result.exit_code == 1
    assert "invalid_values.csv" in result.output and "a_A" in result.output
    result = runner.invoke(app, ["ingest", "table", str(GOOD / "invalid_values.csv"), "--mapping", str(GOOD / "invalid_values.yaml")])
    assert result.exit_code == 0 and "flagged" in result.output


def test_mapping_errors_are_typed(tmp_path):
    bad = tmp_path / "m.yaml"
    bad.write_text("material: {column: a}\nmethod: {name: x}\ncolumns: {v: {definition: no_such_thing, unit: eV}}\n")
    with pytest.raises(IngestError, match="unknown property definition 'no_such_thing'"):
        load_mapping(bad)
    bad.write_text("material: {column: a}\nmethod: {name: x}\ncolumns: {v: {definition: surface_energy, unit: J/m^2}}\n")
    with pytest.raises(IngestError, match="needs exactly one orientation"):
        load_mapping(bad)


def test_concurrent_table_ingest_stores_one_copy(engine):

    reports = run_concurrently(lambda: ingest_table(GOOD / "small_table.csv", GOOD / "small_table.yaml", engine=engine))
    assert sorted(r.status for r in reports) == ["already stored", "inserted"]
    assert _scalar(engine, "SELECT count(*) FROM bulk_property") == 11
    assert _scalar(engine, "SELECT count(*) FROM source") == 1
    assert _scalar(engine, "SELECT count(*) FROM method") == 2


def test_a_dataset_stored_under_an_earlier_shipped_mapping(engine, openkim, strength_data_dir, tmp_path, monkeypatch):
    """A release whose shipped mapping reads a dataset file differently (here the DFT method
    label): the dataset ingest is refused naming the stored source, and with --supersede that
    source's values are flagged, never deleted, and the other file stays as it is."""
    import matstore.data as shipped
    from matstore.ingest import registry

    original = shipped.mapping_path
    changed = tmp_path / "dft_strength_covariance.yaml"
    changed.write_text(original("dft_strength_covariance").read_text().replace("  name: DFT\n", "  name: DFT-PW91\n"))
    monkeypatch.setattr(shipped, "mapping_path", lambda name: changed if name.startswith("dft_") else original(name))
    dft_source = _scalar(engine, "SELECT id FROM source WHERE uri LIKE '%/data/dft.csv'")
    bulk = _scalar(engine, "SELECT count(*) FROM bulk_property")
    with pytest.raises(IngestError, match=rf"already stored as source {dft_source} under another mapping"):
        ingest_dataset("strength_covariance", engine=engine, dataset_dir=strength_data_dir)
    assert _scalar(engine, "SELECT count(*) FROM bulk_property") == bulk
    with pytest.raises(DatasetUnavailableError, match=r"--supersede \[999\]: not a stored reading"):
        ingest_dataset("strength_covariance", engine=engine, dataset_dir=strength_data_dir, supersede=[999])
    report = registry.ingest_dataset("strength_covariance", engine=engine, dataset_dir=strength_data_dir,
                                     supersede=[dft_source])
    assert [t.status for t in report.tables] == ["already stored", "inserted"]
    flagged = _scalar(engine, "SELECT count(*) FROM bulk_property WHERE source_id = :s AND flag LIKE 'superseded%'",
                      s=dft_source)
    unflagged_old = _scalar(engine, "SELECT count(*) FROM bulk_property WHERE source_id = :s AND flag IS NULL", s=dft_source)
    assert flagged > 0 and unflagged_old == 0
    assert _scalar(engine, "SELECT count(DISTINCT p.id) FROM bulk_property p JOIN method me ON me.id = p.method_id "
                           "WHERE me.name = 'DFT-PW91'") == flagged
