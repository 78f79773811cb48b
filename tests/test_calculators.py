"""Calculator backends: registry, provenance records, entry points, LAMMPS setup."""

from __future__ import annotations

import json
import os

import pytest

from matstore.ingest.compute import calculators as calc_mod
from matstore.ingest.compute.calculators import (
    CalculatorBackend,
    CalculatorSetupError,
    EMTBackend,
    LammpsEAMBackend,
    get_backend,
    known_backends,
)


def _lammps_ok() -> bool:
    try:
        calc_mod.ensure_lammps()
    except CalculatorSetupError:
        return False
    return True


needs_lammps = pytest.mark.skipif(not _lammps_ok(), reason="lammps module/MPI library not usable")

RECORD_KEYS = {"name", "kind", "calculator", "potential", "potential_sha256", "parameters", "software"}


def test_registry_names_and_alias():
    assert isinstance(get_backend("emt"), EMTBackend)
    assert isinstance(get_backend("EMT"), EMTBackend)
    assert isinstance(get_backend("lammps-eam-u3"), LammpsEAMBackend)
    assert {"emt", "lammps", "lammps-eam-u3", "asap3"} <= set(known_backends())


def test_unknown_backend_lists_known_names():
    with pytest.raises(CalculatorSetupError, match="known: .*emt.*lammps"):
        get_backend("no-such-calculator")


def test_unknown_parameter_rejected():
    with pytest.raises(CalculatorSetupError, match="no parameters"):
        get_backend("emt", cutoff=3.0)


def test_unsupported_element():
    with pytest.raises(CalculatorSetupError, match="does not implement"):
        get_backend("emt").make("Fe")
    with pytest.raises(CalculatorSetupError):
        get_backend("lammps").method_record("Al")


def test_emt_method_record():
    rec = get_backend("emt").method_record("Cu")
    assert set(rec) == RECORD_KEYS
    assert rec["name"] == "emt" and rec["kind"] == "calculator"
    assert rec["potential"] is None and rec["potential_sha256"] is None
    assert rec["parameters"] == {"asap_cutoff": False}
    assert "ase" in rec["software"] and "numpy" in rec["software"]
    json.dumps(rec)


def test_emt_isolated_atom_energy_not_zero():
    assert get_backend("emt").isolated_atom_energy("Cu") > 1.0


def test_missing_potential_file(tmp_path):
    backend = get_backend("lammps", potential_dir=str(tmp_path))
    with pytest.raises(CalculatorSetupError, match="potential file not found"):
        backend.potential_path("Cu")


@needs_lammps
def test_lammps_method_record_and_quiet(tmp_path, monkeypatch):
    from ase.build import bulk

    monkeypatch.chdir(tmp_path)
    backend = get_backend("lammps")
    rec = backend.method_record("Cu")
    assert rec["name"] == "lammps:Cu_u3.eam" and rec["kind"] == "interatomic_potential"
    assert rec["potential"] == "Cu_u3.eam" and len(rec["potential_sha256"]) == 64
    assert rec["software"]["lammps"].isdigit()
    atoms = bulk("Cu", "fcc", a=3.615)
    atoms.calc = backend.make("Cu")
    assert atoms.get_potential_energy() == pytest.approx(-3.54, abs=1e-4)
    assert os.listdir(tmp_path) == []  # no log.lammps or other files


class _FakeBackend(CalculatorBackend):
    name = "fake"
    implemented_elements = ("Cu",)
    default_parameters = {"scale": 1.0}

    def make(self, element):
        from ase.calculators.emt import EMT

        self.check_element(element)
        return EMT()


class _FakeEntryPoint:
    def __init__(self, name, target):
        self.name, self._target = name, target

    def load(self):
        return self._target


def test_entry_point_backends(monkeypatch):
    eps = {"fake": _FakeEntryPoint("fake", _FakeBackend), "bad": _FakeEntryPoint("bad", object)}
    monkeypatch.setattr(calc_mod, "_entry_point_backends", lambda: eps)
    backend = get_backend("fake", scale=2.0)
    assert isinstance(backend, _FakeBackend) and backend.parameters == {"scale": 2.0}
    assert "fake" in known_backends()
    with pytest.raises(CalculatorSetupError, match="CalculatorBackend subclass"):
        get_backend("bad")


def test_backends_are_picklable():
    import pickle

    backend = pickle.loads(pickle.dumps(get_backend("lammps")))
    assert backend.parameters["pair_style"] == "eam"


@pytest.mark.skipif(not calc_mod.Asap3EMTBackend.available(), reason="asap3 not installed")
def test_asap3_backend():
    from ase.build import bulk

    backend = get_backend("asap3")
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.calc = backend.make("Cu")
    assert abs(atoms.get_potential_energy()) < 0.1
    assert backend.method_record("Cu")["software"]["asap3"] != "unknown"
