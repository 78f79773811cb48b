"""A frame that gives both a virial and a stress: stored once when W = −V·σ holds, refused when not.

Convention (ASE's, and matstore's): σ in eV/Å³, positive in tension; W = −V·σ in eV.  Frames
with only one of the two keep their old behaviour (virial as is; virial from −V·σ).
"""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import text

from matstore.ingest.copy import read_configurations
from matstore.ingest.errors import ParseError
from matstore.ingest.extxyz_reader import (
    VIRIAL_STRESS_ATOL,
    VIRIAL_STRESS_RTOL,
    FrameLabelError,
    virials_from_stress,
)
from matstore.ingest.structures import (
    frame_from_atoms,
    ingest_structure_file,
    read_frames,
    stress_to_virial,
)

_CELL = 'Lattice="3.6 0.0 0.0 0.0 3.6 0.0 0.0 0.0 3.6"'  # V = 46.656 Å³
_NOTE = ("1 of 1 frames gave both a virial and a stress; they agree (within 0.0001 of the larger norm + 0.001 eV) "
         "and the virial is stored")


def _strained_emt_cu():
    """4-atom fcc Cu, strained (1 % along x, 0.5 % shear xy) and rattled, with EMT energy, forces and stress."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.set_cell(atoms.cell.array @ np.array([[1.01, 0.005, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), scale_atoms=True)
    atoms.rattle(0.02, seed=3)
    atoms.calc = EMT()
    atoms.get_potential_energy()
    atoms.get_stress()
    del atoms.calc.results["energies"]  # per-atom energies have no column (and would add their own note)
    return atoms


def _counts(engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (conn.execute(text("SELECT count(*) FROM configuration")).scalar_one(),
                conn.execute(text("SELECT count(*) FROM source")).scalar_one())


def _frame(comment_labels: str, energy: float = -1.0) -> str:
    return (f"2\n{_CELL} Properties=species:S:1:pos:R:3:forces:R:3 energy={energy} {comment_labels} pbc=\"T T T\"\n"
            "Cu 0.0 0.0 0.0 0.1 0.0 0.0\nCu 1.8 1.8 0.0 -0.1 0.0 0.0\n")


def test_tolerance_allows_print_precision_only():
    """1e-4 of the larger norm + 1 meV: six printed decimals pass, a sign or a factor V does not."""
    assert VIRIAL_STRESS_RTOL == 1e-4 and VIRIAL_STRESS_ATOL == 1e-3


@pytest.mark.parametrize("fmt", [None, "ase"])
def test_agreeing_virial_and_stress_are_stored_once_with_a_note(engine, tmp_path, fmt):
    """EMT on a strained Cu cell: the file has virial = −V·σ and the stress; both readers store the virial as given."""
    import ase.io

    atoms = _strained_emt_cu()
    volume = atoms.get_volume()
    sigma = atoms.get_stress(voigt=False)
    assert abs(sigma[0, 0]) > 1e-3 and abs(sigma[0, 1]) > 1e-5  # a real, sheared stress (eV/Å³)
    atoms.info["virial"] = -volume * sigma
    path = tmp_path / "cu_both.extxyz"
    ase.io.write(path, atoms)
    head = path.read_text().splitlines()[1]
    assert "virial=" in head and "stress=" in head

    report = ingest_structure_file(path, engine=engine, method="emt", method_kind="calculator", format=fmt)
    assert (report.frames, report.inserted, report.virial_and_stress) == (1, 1, 1)
    assert report.notes == [_NOTE]
    written = ase.io.read(path).info["virial"]
    with engine.connect() as conn:
        summary = conn.execute(text(
            "SELECT j.summary FROM configuration c JOIN job_run j ON j.id = c.job_run_id")).scalar_one()
        stored = read_configurations(conn, source_id=report.source_id)["virial"][0]
    assert np.array_equal(stored, written)  # the virial key, as is
    np.testing.assert_allclose(stored, -volume * sigma, rtol=1e-12, atol=1e-12)  # and it is W = −V·σ
    assert np.sign(stored[0, 0]) == -np.sign(sigma[0, 0])
    assert summary["notes"] == [_NOTE] and summary["virial_and_stress"] == 1
    assert _counts(engine) == (1, 1)


def test_both_readers_give_the_same_hash_for_an_agreeing_pair(tmp_path):
    import ase.io

    from matstore.ingest.copy import content_hashes

    atoms = _strained_emt_cu()
    atoms.info["virial"] = -atoms.get_volume() * atoms.get_stress(voigt=False)
    path = tmp_path / "both.extxyz"
    ase.io.write(path, atoms)
    c_frames, ase_frames = read_frames(path), read_frames(path, format="ase")
    assert content_hashes(c_frames) == content_hashes(ase_frames)
    assert c_frames[0]["stress_agreed"] and ase_frames[0]["stress_agreed"]


def _conflict_message(path, line: str) -> str:
    return (f"{path}{line}: frame 2: the virial and the stress disagree: W_xx is 42.4 eV from the virial but 0 eV from "
            "-V*stress (V = 46.656 Å³), a difference of 42.4 eV beyond the tolerance of 0.00524 eV (relative 0.0001 "
            "of the larger norm + 0.001 eV); drop or correct one of the two")


@pytest.mark.parametrize(("fmt", "line"), [(None, ", line 10"), ("ase", "")])
def test_disagreeing_virial_and_stress_are_refused_and_nothing_is_written(engine, tmp_path, fmt, line):
    """Frame 2 (lines 9–12) has stress all zeros but virial W_xx = 42.4 eV: one line, nothing stored."""
    path = tmp_path / "conflict.extxyz"
    good = _frame('virial="1 0 0 0 1 0 0 0 1"')
    bad = _frame('virial="42.4 0 0 0 0 0 0 0 0" stress="0 0 0 0 0 0 0 0 0"', energy=-2.0)
    path.write_text(good + _frame("", energy=-1.5) + bad)
    with pytest.raises(ParseError) as caught:
        ingest_structure_file(path, engine=engine, method="DFT-PBE", method_kind="dft", format=fmt)
    assert str(caught.value) == _conflict_message(path, line)
    assert "\n" not in str(caught.value)
    assert _counts(engine) == (0, 0)
    with engine.connect() as conn:
        runs = conn.execute(text("SELECT status FROM job_run")).scalars().all()
    assert runs == ["failed"]


def test_ase_calculator_stress_against_info_virial():
    """SinglePointCalculator stress vs ``info['virial']`` (the pair ASE's extxyz reader makes)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = _strained_emt_cu()
    sigma = atoms.get_stress()  # Voigt (6,)
    volume = atoms.get_volume()
    atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy(), stress=sigma)
    atoms.info["virial"] = stress_to_virial(sigma, volume)
    frame = frame_from_atoms(atoms)
    assert frame["stress_agreed"] and np.array_equal(frame["virial"], atoms.info["virial"])
    atoms.info["virial"] = stress_to_virial(sigma, volume) * (1 + 1e-2)
    with pytest.raises(ValueError, match=r"^the virial and the stress disagree: W_\w\w is .* eV from the virial but .* eV "):
        frame_from_atoms(atoms)


def test_relative_tolerance_and_folds_of_a_voigt_stress(tmp_path):
    """Within 1e-6 of the norm agrees, 1e-2 does not; a non-symmetric W agrees with a 3×3 stress
    −W/V (what ``matstore export structures`` writes) and with either Voigt fold of it."""
    volume = 3.6**3
    w = np.array([[1.5, 0.25, -0.125], [0.75, -2.0, 0.5], [-0.375, 0.5, 3.0]])  # not symmetric, eV
    sigma = -w / volume
    upper = sigma.reshape(9)[[0, 4, 8, 5, 2, 1]]  # ASE's extxyz reader: xx yy zz yz xz xy from the upper triangle
    symmetric = np.array([sigma[0, 0], sigma[1, 1], sigma[2, 2], (sigma[1, 2] + sigma[2, 1]) / 2,
                          (sigma[0, 2] + sigma[2, 0]) / 2, (sigma[0, 1] + sigma[1, 0]) / 2])  # ase.stress fold

    def text_of(values) -> str:
        return " ".join(repr(float(v)) for v in values)

    flat_w = text_of(w.T.reshape(9))  # column order, as the 9 numbers are read
    cases = {
        "full": (f'virial="{flat_w}" stress="{text_of(sigma.T.reshape(9))}"', True),
        "upper": (f'virial="{flat_w}" stress="{text_of(upper)}"', True),
        "symmetric": (f'virial="{flat_w}" stress="{text_of(symmetric)}"', True),
        "1e-6 off": (f'virial="{flat_w}" stress="{text_of((sigma * (1 + 1e-6)).T.reshape(9))}"', True),
        "1e-2 off": (f'virial="{flat_w}" stress="{text_of((sigma * (1 + 1e-2)).T.reshape(9))}"', False),
        "transposed": (f'virial="{flat_w}" stress="{text_of(sigma.reshape(9))}"', False),
    }
    for name, (labels, agrees) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.extxyz"
        path.write_text(_frame(labels))
        if agrees:
            (frame,) = read_frames(path)
            assert frame["stress_agreed"] and np.array_equal(frame["virial"], w), name
        else:
            with pytest.raises(ParseError, match=r"line 2: frame 0: the virial and the stress disagree"):
                read_frames(path)


def test_ref_prefixed_pair_and_non_finite_stress(tmp_path):
    path = tmp_path / "ref.extxyz"
    path.write_text(_frame('REF_virial="-4.6656 0 0 0 0 0 0 0 0" REF_stress="0.1 0 0 0 0 0"').replace(" energy=", " REF_energy=").replace(":forces:", ":REF_forces:"))
    (frame,) = read_frames(path)
    assert frame["stress_agreed"] and frame["virial"][0, 0] == -4.6656  # W = −V·σ = −46.656 · 0.1 eV
    # The C parser leaves "nan 0 ..." a string (refused as not numbers); ASE reads the NaN.
    path.write_text(_frame('virial="1 0 0 0 1 0 0 0 1" stress="nan 0 0 0 0 0 0 0 0"'))
    with pytest.raises(ParseError, match=r"ref\.extxyz: frame 0: stress has non-finite values$"):
        read_frames(path, format="ase")
    frames = [{"cell": np.eye(3) * 3.6, "virial": np.eye(3), "stress": np.array([np.nan, 0, 0, 0, 0, 0])}]
    with pytest.raises(FrameLabelError, match=r"^stress has non-finite values$") as caught:
        virials_from_stress(frames)
    assert caught.value.index == 0 and "stress" in frames[0]  # nothing changed


def test_virial_only_and_stress_only_are_unchanged(engine, tmp_path):
    """A virial alone is taken as is; a stress alone becomes W = −V·σ; no note, no count."""
    virial_only = tmp_path / "virial.extxyz"
    virial_only.write_text(_frame('virial="1.5 0.25 0 0.25 -2 0 0 0 3"'))
    stress_only = tmp_path / "stress.extxyz"
    stress_only.write_text(_frame('stress="0.01 0.02 -0.03 0.004 0.005 0.006"'))
    first = ingest_structure_file(virial_only, engine=engine)
    second = ingest_structure_file(stress_only, engine=engine)
    for report in (first, second):
        assert (report.inserted, report.virial_and_stress, report.notes) == (1, 0, [])
    with engine.connect() as conn:
        stored = [read_configurations(conn, source_id=r.source_id)["virial"][0] for r in (first, second)]
        summaries = conn.execute(text("SELECT summary FROM job_run ORDER BY id")).scalars().all()
    assert np.array_equal(stored[0], [[1.5, 0.25, 0.0], [0.25, -2.0, 0.0], [0.0, 0.0, 3.0]])
    expected = stress_to_virial(np.array([0.01, 0.02, -0.03, 0.004, 0.005, 0.006]), abs(np.linalg.det(np.diag([3.6] * 3))))
    assert np.array_equal(stored[1], expected)
    assert stored[1][0, 0] == pytest.approx(-46.656 * 0.01, rel=1e-12)
    assert [s["notes"] for s in summaries] == [[], []]
    assert all("stress_agreed" not in f for f in read_frames(virial_only) + read_frames(stress_only))


def test_mixed_batch_of_stress_only_both_and_virial_only_frames(tmp_path):
    """One batch: each frame keeps its own rule, in file order."""
    volume = float(abs(np.linalg.det(np.diag([3.6] * 3))))
    path = tmp_path / "mixed.extxyz"
    path.write_text(
        _frame('stress="0.01 0 0 0 0.02 0 0 0 0.03"')
        + _frame(f'virial="{-volume * 0.01!r} 0 0 0 0 0 0 0 0" stress="0.01 0 0 0 0 0"', energy=-2.0)
        + _frame('virial="7 0 0 0 7 0 0 0 7"', energy=-3.0)
    )
    frames = read_frames(path)
    assert [f.get("stress_agreed", False) for f in frames] == [False, True, False]
    assert all("stress" not in f for f in frames)
    np.testing.assert_array_equal(frames[0]["virial"], -volume * np.diag([0.01, 0.02, 0.03]))
    assert frames[1]["virial"][0, 0] == -volume * 0.01 and frames[2]["virial"][0, 0] == 7.0
