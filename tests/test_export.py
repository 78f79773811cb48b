"""Training-set export: MLIP key names, units and signs, round trips, named reproducible sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from matstore.export import ExportError, Selection, export_structures, training_set_hash
from matstore.ingest.copy import content_hashes, read_configurations
from matstore.ingest.structures import ingest_structure_file, read_frames


def _emt_images(n: int, element: str = "Cu", a: float = 3.61, seed: int = 0, strain: float = 0.02):
    """Rattled, sheared fcc cells with EMT energy, forces and stress (eV, eV/Å, eV/Å³)."""
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        atoms = bulk(element, "fcc", a=a, cubic=True).repeat((2, 1, 1))
        eps = rng.uniform(-strain, strain, (3, 3))
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + (eps + eps.T) / 2), scale_atoms=True)
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        atoms.calc = EMT()
        results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(), "stress": atoms.get_stress()}
        atoms.calc = SinglePointCalculator(atoms, **results)
        atoms.info["config_type"] = "rattled_bulk"
        images.append(atoms)
    return images


@pytest.fixture
def stored(engine, tmp_path):
    """Six EMT Cu frames (method emt) and one NiAl frame with an explicit virial and no stress (DFT)."""
    import ase.io

    cu = tmp_path / "cu.extxyz"
    ase.io.write(cu, _emt_images(6))
    nial = tmp_path / "nial.extxyz"
    nial.write_text(
        "2\n"
        'Lattice="2.9 0.0 0.0 0.0 2.9 0.0 0.0 0.0 2.9" Properties=species:S:1:pos:R:3:forces:R:3 '
        'energy=-9.5 virial="0.5 0.1 0.0 0.1 0.4 0.0 0.0 0.0 0.3" pbc="T T T"\n'
        "Ni 0.0 0.0 0.0 0.01 0.0 0.0\n"
        "Al 1.45 1.45 1.45 -0.01 0.0 0.0\n"
        "1\n"
        'Properties=species:S:1:pos:R:3 energy=-1.25 pbc="F F F"\n'
        "Al 0.0 0.0 0.0\n"
    )
    reports = [
        ingest_structure_file(cu, engine=engine, method="emt", method_kind="calculator"),
        ingest_structure_file(nial, engine=engine, method="DFT-PBE", method_kind="dft"),
    ]
    return engine, reports


def _stored_arrays(engine):
    with engine.connect() as conn:
        return read_configurations(conn)


def test_mace_keys_units_and_values_read_back_by_ase(stored, tmp_path):
    import ase.io

    engine, _ = stored
    out = tmp_path / "train.extxyz"
    report = export_structures(out, engine=engine)
    assert report.frames == 8
    assert report.with_virial == {"DFT-PBE": 1, "emt": 6} and report.without_virial == {"DFT-PBE": 1, "emt": 0}
    db = _stored_arrays(engine)
    images = ase.io.read(out, index=":")
    assert len(images) == 8
    for i, atoms in enumerate(images):
        a, b = db["offsets"][i], db["offsets"][i + 1]
        assert atoms.info["REF_energy"] == db["energy"][i]  # bit for bit
        np.testing.assert_array_equal(atoms.positions, db["positions"][a:b])
        np.testing.assert_array_equal(atoms.cell.array, db["cell"][i])
        assert atoms.info["units"] == "energy:eV forces:eV/Ang virial:eV stress:eV/Ang^3"
        assert atoms.info["virial_convention"] == "W=-V*stress"
        assert atoms.info["matstore_sha256"] == db["content_sha256"][i]
        if np.isnan(db["virial"][i]).all():
            assert "REF_virial" not in atoms.info and "REF_stress" not in atoms.info
            continue
        # ASE reshapes 9 numbers column-major for its own keys only; REF_ keys stay flat.
        np.testing.assert_array_equal(np.reshape(atoms.info["REF_virial"], (3, 3), order="F"), db["virial"][i])
        np.testing.assert_array_equal(atoms.arrays["REF_forces"], db["forces"][a:b])
        volume = abs(np.linalg.det(db["cell"][i]))
        np.testing.assert_allclose(np.reshape(atoms.info["REF_stress"], (3, 3), order="F"), -db["virial"][i] / volume, rtol=1e-15)
    # The EMT frames: REF_stress is EMT's own stress (ASE sign, eV/Å³) up to rounding of W = −V·σ.
    for atoms, emt in zip(images[:6], _emt_images(6), strict=True):
        np.testing.assert_allclose(atoms.info["REF_stress"].reshape(3, 3), emt.get_stress(voigt=False), rtol=1e-12, atol=1e-17)
        assert atoms.info["config_type"] == "rattled_bulk"
    assert images[7].pbc.tolist() == [False] * 3 and "REF_forces" not in images[7].arrays


def test_export_then_ingest_again_stores_nothing_new(stored, tmp_path):
    engine, _ = stored
    before = _stored_arrays(engine)
    for prefix in ("REF_", ""):
        out = tmp_path / f"set_{prefix or 'plain'}.extxyz"
        export_structures(out, engine=engine, prefix=prefix)
        assert content_hashes(read_frames(out)) == before["content_sha256"].tolist()
        again = ingest_structure_file(out, engine=engine, method="emt")
        assert (again.frames, again.inserted, again.duplicates) == (8, 0, 8)
    after = _stored_arrays(engine)
    assert after["content_sha256"].tolist() == before["content_sha256"].tolist()


def test_plain_prefix_is_what_ase_calculators_read(stored, tmp_path):
    import ase.io

    engine, _ = stored
    out = tmp_path / "gap.extxyz"
    export_structures(out, engine=engine, prefix="", selection=Selection(method="emt"))
    db = _stored_arrays(engine)
    for i, (atoms, emt) in enumerate(zip(ase.io.read(out, index=":"), _emt_images(6), strict=True)):
        assert atoms.get_potential_energy() == db["energy"][i]
        a, b = db["offsets"][i], db["offsets"][i + 1]
        np.testing.assert_array_equal(atoms.get_forces(), db["forces"][a:b])  # as stored (ASE wrote 8 decimals)
        np.testing.assert_allclose(atoms.get_stress(), emt.get_stress(), rtol=1e-12, atol=1e-17)
        np.testing.assert_array_equal(atoms.info["virial"], db["virial"][i])


def test_compression_has_negative_stress_and_positive_virial(engine, tmp_path):
    """Sign convention on physics: a uniformly compressed fcc crystal pushes outwards."""
    import ase.io
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = bulk("Cu", "fcc", a=3.61 * 0.97, cubic=True)
    atoms.calc = EMT()
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(), "stress": atoms.get_stress()}
    atoms.calc = SinglePointCalculator(atoms, **results)
    path = tmp_path / "compressed.extxyz"
    ase.io.write(path, atoms)
    ingest_structure_file(path, engine=engine, method="emt")
    out = tmp_path / "out.extxyz"
    export_structures(out, engine=engine)
    back = ase.io.read(out)
    stress, virial = back.info["REF_stress"].reshape(3, 3), back.info["REF_virial"].reshape(3, 3)
    pressure = -np.trace(stress) / 3  # eV/Å³
    assert pressure > 0 and np.all(np.diag(virial) > 0)
    assert np.trace(virial) == pytest.approx(3 * pressure * back.get_volume(), rel=1e-12)


def test_named_training_set_is_written_again_identically(stored, tmp_path):
    import ase.io

    engine, _ = stored
    first = export_structures(tmp_path / "a.extxyz", engine=engine, selection=Selection(method="emt"), name="cu_v1")
    assert first.recorded and first.frames == 6
    assert first.content_sha256 == training_set_hash(_stored_arrays(engine)["content_sha256"][:6])
    more = tmp_path / "more.extxyz"
    ase.io.write(more, _emt_images(3, seed=5))
    ingest_structure_file(more, engine=engine, method="emt")
    again = export_structures(tmp_path / "b.extxyz", engine=engine, name="cu_v1")
    assert not again.recorded and again.content_sha256 == first.content_sha256 and again.frames == 6
    assert (tmp_path / "a.extxyz").read_bytes() == (tmp_path / "b.extxyz").read_bytes()
    grown = export_structures(tmp_path / "c.extxyz", engine=engine, selection=Selection(method="emt"))
    assert grown.frames == 9 and grown.content_sha256 != first.content_sha256
    with pytest.raises(ExportError, match="recorded with the selection"):
        export_structures(tmp_path / "d.extxyz", engine=engine, selection=Selection(method="DFT-PBE"), name="cu_v1")
    assert not (tmp_path / "d.extxyz").exists()
    with engine.connect() as conn:
        row = conn.execute(text("SELECT selection, n_configurations FROM training_set WHERE name = 'cu_v1'")).one()
        members = conn.execute(text("SELECT count(*) FROM training_set_member")).scalar_one()
    assert row.selection == {"method": "emt"} and row.n_configurations == 6 and members == 6


def test_selection_by_source_and_material(stored, tmp_path):
    engine, reports = stored
    by_source = export_structures(tmp_path / "s.extxyz", engine=engine, selection=Selection(source=reports[1].sha256[:10]))
    assert by_source.frames == 2
    nial = export_structures(tmp_path / "m.extxyz", engine=engine, selection=Selection(material="NiAl"))
    cu = export_structures(tmp_path / "cu.extxyz", engine=engine, selection=Selection(material="Cu"))
    assert (nial.frames, cu.frames) == (1, 6)
    for bad, message in ((Selection(method="nope"), "no method named 'nope'"), (Selection(source="abc"), "at least 8"),
                         (Selection(material="Xq2"), "not a chemical formula"), (Selection(material="Pt"), "no configuration matches")):
        with pytest.raises(ExportError, match=message):
            export_structures(tmp_path / "x.extxyz", engine=engine, selection=bad)


def test_selection_by_config_type(stored, tmp_path):
    """The six Cu frames carry config_type rattled_bulk in their extxyz info; the NiAl ones none."""
    import ase.io

    engine, _ = stored
    report = export_structures(tmp_path / "r.extxyz", engine=engine, selection=Selection(config_type="rattled_bulk"))
    frames = ase.io.read(tmp_path / "r.extxyz", index=":")
    assert report.frames == 6 and {f.info["config_type"] for f in frames} == {"rattled_bulk"}
    assert report.selection == {"config_type": "rattled_bulk"}
    with pytest.raises(ExportError, match="no configuration matches"):
        export_structures(tmp_path / "x.extxyz", engine=engine, selection=Selection(config_type="rattled_bulk", method="DFT-PBE"))
    with pytest.raises(ExportError, match=r"^no configuration has config_type 'surface' \(stored config_types: rattled_bulk\)$"):
        export_structures(tmp_path / "x.extxyz", engine=engine, selection=Selection(config_type="surface"))


def test_cli_prints_virial_counts_per_method(stored, tmp_path):
    from matstore.cli import app

    runner = CliRunner()
    out = tmp_path / "cli.extxyz"
    result = runner.invoke(app, ["export", "structures", str(out), "--name", "all_v1"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    cells = [line.replace("│", " ").replace("┃", " ").split() for line in result.output.splitlines()]
    rows = {c[0]: c[1:3] for c in cells if c and c[0] in ("emt", "DFT-PBE")}
    assert rows == {"emt": ["6", "0"], "DFT-PBE": ["1", "1"]}
    assert "recorded as training set 'all_v1'" in result.output
    bad = runner.invoke(app, ["export", "structures", str(tmp_path / "y.extxyz"), "--method", "nope"])
    assert bad.exit_code == 1 and bad.output.strip().startswith("error:") and len(bad.output.strip().splitlines()) == 1


def test_large_export_streams_in_batches(engine, tmp_path):
    """Several id batches; the file holds every frame once, in id order."""
    from matstore import crud
    from matstore.ingest.copy import write_configurations
    from matstore.schema import Source

    rng = np.random.default_rng(1)
    frames = [{"numbers": np.array([13, 28, 28]), "positions": rng.normal(size=(3, 3)) * 2, "cell": np.eye(3) * 6,
               "pbc": np.array([True, True, True]), "energy": float(i), "forces": rng.normal(size=(3, 3)),
               "virial": None if i % 3 else np.eye(3) * i, "info": {"i": i}} for i in range(250)]
    job = crud.start_job_run(engine=engine, kind="test", parameters={})
    with engine.begin() as conn:
        source_id = conn.execute(Source.__table__.insert().values(kind="file", sha256="aa" * 32).returning(Source.id)).scalar()
        write_configurations(conn, frames, source_id, job)
    report = export_structures(tmp_path / "big.extxyz", engine=engine, batch_size=64)
    back = read_frames(tmp_path / "big.extxyz")
    assert [f["energy"] for f in back] == [float(i) for i in range(250)]
    assert report.with_virial == {"(none)": 84} and report.without_virial == {"(none)": 166}
    assert content_hashes(back) == content_hashes(frames)


def test_exported_file_path_is_only_replaced_when_complete(stored, tmp_path):
    engine, _ = stored
    out = tmp_path / "keep.extxyz"
    out.write_text("old")
    with pytest.raises(ExportError):
        export_structures(out, engine=engine, selection=Selection(method="nope"))
    assert out.read_text() == "old"
    assert [p.name for p in Path(tmp_path).iterdir() if p.name.endswith(".tmp")] == []
