"""``predict`` outside the training domain, and ``--method`` only where something is read from the store.

Defects found by new-user trials: an input far outside its training range (a = 55.8 Å, trained
on 3.52–4.09 Å) or an orientation the fit never saw printed a value with the trained interval
and no word of warning; a model trained on (111) alone printed the (111) value relabelled (110);
``--method`` was required when ``--set`` gave every input, and an unknown one was ignored
silently.  Two factorised γ models are fitted once for the module (sparse engine, seconds):
seven synthetic metals at (100), (110), (111), and the same metals at (111) only.
"""

from __future__ import annotations

import logging
import re
from types import SimpleNamespace

import pandas as pd
import pytest
import sympy as sp
from sqlalchemy import text

from matstore.cli.models import _assignments, _reference_and_assignments
from matstore.models.factorize import orientation_support_warning
from matstore.models.service import PredictionInputError, fit_model, predict, predict_frame
from matstore.models.spec import FitSpec
from tests.conftest import DATA_TABLES
from tests.test_cli_db import run_cli, server_env
from tests.test_models_store import populate

THREE, ONE = "three_faces", "one_face"
#: A metal not in the store, inside the training ranges: a (Å) and E_c (eV/atom).
NEW = {"lattice_constant": 3.839, "cohesive_energy": 5.0}
RANGE_TAIL = "the prediction is extrapolated and its interval is not calibrated there"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def store(session_engine):
    """Models ``g_three`` (3 orientations) and ``g_one`` ((111) only), with the fit-time warnings of each."""
    populate(session_engine, method_name=THREE, millers=((1, 0, 0), (1, 1, 0), (1, 1, 1)), source_hash="6" * 64)
    populate(session_engine, method_name=ONE, millers=((1, 1, 1),), source_hash="7" * 64)
    logger, warned = logging.getLogger("matstore.models.factorize"), {}
    versions = {}
    for name, method in (("g_three", THREE), ("g_one", ONE)):
        records = _Records()
        logger.addHandler(records)
        try:
            versions[name] = fit_model(session_engine, FitSpec(
                name=name, target="surface_energy", features=["lattice_constant", "cohesive_energy"], methods=[method],
                factorize="orientation", engine="sparse", seed=0, selection="knee", n_splits=3)).version
        finally:
            logger.removeHandler(records)
        warned[name] = records.messages
    yield SimpleNamespace(engine=session_engine, warned=warned, **versions)
    with session_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))


def test_an_input_outside_its_training_range_is_predicted_with_a_warning_and_a_flag(store) -> None:
    engine = store.engine
    inside = predict(engine, "g_three", material="Cu", method=THREE, miller=(1, 1, 1))
    assert inside.extrapolated == () and inside.warnings == ()
    far = predict(engine, "g_three", material="Cu", method=THREE, miller=(1, 1, 1), overrides={"lattice_constant": 55.8})
    assert far.extrapolated == ("lattice_constant",)
    assert far.warnings == ("lattice_constant = 55.8 angstrom is outside the training range 3.52 … 4.09 angstrom "
                            f"(51.7 angstrom above the maximum, 90.7× the range's width): {RANGE_TAIL}",)
    below = predict(engine, "g_three", material="Cu", method=THREE, miller=(1, 1, 1),
                    overrides={"cohesive_energy": 2.0})
    assert below.warnings == ("cohesive_energy = 2 eV/atom is outside the training range 2.85 … 5.77 eV/atom "
                              f"(0.85 eV/atom below the minimum, 0.291× the range's width): {RANGE_TAIL}",)
    # a sign the training data never had is still refused
    with pytest.raises(PredictionInputError, match=r"^lattice_constant = -1 is out of range: must be > 0"):
        predict(engine, "g_three", material="Cu", method=THREE, miller=(1, 1, 1), overrides={"lattice_constant": -1.0})
    domain = store.g_three.report["domain"]
    assert domain["lattice_constant"] == {"min": 3.52, "max": 4.09}
    assert (domain["orientations"]["count"], domain["orientations"]["keys"]) == (3, ["hkl:1,0,0", "hkl:1,1,0", "hkl:1,1,1"])
    assert domain["orientations"]["descriptors"]["theta_deg"] == {"min": 0.0, "max": pytest.approx(54.7356103)}
    frame = pd.DataFrame({"lattice_constant": [3.615, 55.8, 3.615, 55.8], "cohesive_energy": [3.54] * 4,
                          "miller_h": [1, 1, 5, 5], "miller_k": [1, 1, 3, 3], "miller_l": [0, 0, 1, 1]},
                         index=["in", "far", "new face", "both"])
    table = predict_frame(engine, "g_three", frame)
    assert table["extrapolated"].tolist() == ["", "lattice_constant", "orientation", "lattice_constant, orientation"]
    assert list(table.columns) == ["value", "lower", "upper", "level", "uncertainty", "unit", "extrapolated"]


def test_an_orientation_not_in_the_training_set_is_flagged_and_a_trained_one_is_not(store) -> None:
    engine = store.engine
    new = predict(engine, "g_three", material="Cu", method=THREE, miller=(5, 3, 1))
    assert new.extrapolated == ("orientation",)
    assert new.warnings == ("orientation (5,3,1) was not in the training set (3 orientations: (1,0,0), (1,1,0), "
                            "(1,1,1)); g(orientation) is extrapolated and the interval is not calibrated there",)
    for known in (dict(miller=(1, 1, 0)), dict(normal=(0.0, -2.0, 2.0)), dict(angles=(45.0, 0.0))):
        assert predict(engine, "g_three", material="Cu", method=THREE, **known).warnings == ()
    # trained on (111) alone: any other orientation is flagged, and the fit said why
    relabelled = predict(engine, "g_one", material="Cu", method=ONE, miller=(1, 1, 0))
    assert relabelled.extrapolated == ("orientation",)
    assert relabelled.warnings == (
        "orientation (1,1,0) was not in the training set (1 orientation: (1,1,1)); g(orientation) is extrapolated "
        "and the interval is not calibrated there: trained on one orientation, the model cannot tell orientations "
        "apart",)
    assert predict(engine, "g_one", material="Cu", method=ONE, miller=(1, 1, 1)).warnings == ()
    assert store.warned["g_one"] == [
        "the training set has one orientation ((1,1,1)): g(orientation) is fitted to that one point, so the model "
        "cannot tell orientations apart; a prediction at another orientation is extrapolated and its interval is "
        "not calibrated there"]


def test_method_is_needed_only_for_inputs_read_from_the_store(store) -> None:
    engine = store.engine
    given = predict(engine, "g_three", material="Ir", miller=(1, 1, 1), overrides=NEW)
    assert given.method is None and given.warnings == ()
    assert given.value == predict(engine, "g_three", material="Ir", method=THREE, miller=(1, 1, 1), overrides=NEW).value
    with pytest.raises(ValueError, match="^" + re.escape(
            "give --method: g_three:1 reads lattice_constant, cohesive_energy of Cu from the store (stored methods: "
            "one_face, three_faces), or give each with --set NAME=VALUE") + "$"):
        predict(engine, "g_three", material="Cu", miller=(1, 1, 1))
    with pytest.raises(ValueError, match="^" + re.escape(
            "give --method: g_three:1 reads cohesive_energy of Cu from the store (stored methods: one_face, "
            "three_faces), or give it with --set NAME=VALUE") + "$"):
        predict(engine, "g_three", material="Cu", miller=(1, 1, 1), overrides={"lattice_constant": 3.6})


def test_an_unknown_method_is_refused_or_said_unused(store) -> None:
    engine = store.engine
    with pytest.raises(ValueError, match="^" + re.escape(
            "method 'three_face' is not stored (stored methods, closest first: three_faces, one_face); g_three:1 "
            "reads lattice_constant, cohesive_energy of Cu under it") + "$"):
        predict(engine, "g_three", material="Cu", method="three_face", miller=(1, 1, 1))
    unused = predict(engine, "g_three", material="Ir", method="nonexistent", miller=(1, 1, 1), overrides=NEW)
    assert unused.method is None
    assert unused.warnings == ("method 'nonexistent' is not stored and was not used: every input of g_three:1 was "
                               "given with --set or computed from the formula",)


def test_set_takes_several_values_after_one_flag() -> None:
    assert _assignments(["a=1"], ["b=2.5"]) == {"a": 1.0, "b": 2.5}
    assert _assignments(["a=1 b=2", "c=3"], None) == {"a": 1.0, "b": 2.0, "c": 3.0}
    assert _assignments(["a = 1"], None) == {"a": 1.0}
    with pytest.raises(ValueError, match=r"^--set a is given twice$"):
        _assignments(["a=1", "a=2"], None)
    with pytest.raises(ValueError, match=r"^unexpected argument 'Cu': give inputs as --set NAME=VALUE \(several may "
                                         r"follow one --set\)$"):
        _assignments(["a=1"], ["Cu"])
    # predict --set a=1 b=2 MODEL: Click hands b=2 to the reference and MODEL to the extra words
    assert _reference_and_assignments("b=2", ["a=1"], ["g_three"]) == ("g_three", {"a": 1.0, "b": 2.0})
    assert _reference_and_assignments("g_three", ["a=1"], ["b=2"]) == ("g_three", {"a": 1.0, "b": 2.0})


def test_command_line_warnings_without_method_and_unknown_method_error(store, database_url) -> None:
    env = server_env(database_url)
    value = predict(store.engine, "g_three", material="Ir", miller=(5, 3, 1),
                    overrides={"lattice_constant": 55.8, "cohesive_energy": 5.0}).value
    # no --method, two inputs after one --set; the warnings on stderr, the value alone on stdout
    done = run_cli("predict", "g_three", "--material", "Ir", "--hkl", "5", "3", "1",
                   "--set", "lattice_constant=55.8", "cohesive_energy=5", env=env)
    assert len(done.stdout.splitlines()) == 1
    assert done.stdout.startswith(f"g_three:1  Ir (5,3,1): {value:.4g} J/m^2 ± ")
    assert done.stderr.splitlines() == [
        "  warning: lattice_constant = 55.8 angstrom is outside the training range 3.52 … 4.09 angstrom (51.7 angstrom "
        f"above the maximum, 90.7× the range's width): {RANGE_TAIL}",
        "  warning: orientation (5,3,1) was not in the training set (3 orientations: (1,0,0), (1,1,0), (1,1,1)); "
        "g(orientation) is extrapolated and the interval is not calibrated there"]
    refused = run_cli("predict", "g_three", "--material", "Cu", "--method", "nonexistent", "--hkl", "1", "1", "1",
                      env=env, check=False)
    assert refused.returncode == 1 and not refused.stdout
    assert refused.stderr.strip().splitlines() == [
        "error: method 'nonexistent' is not stored (stored methods, closest first: one_face, three_faces); g_three:1 "
        "reads lattice_constant, cohesive_energy of Cu under it"]


def test_fit_time_warning_when_orientations_cannot_support_g() -> None:
    nx, ny = sp.symbols("normal_x normal_y")
    three = ["hkl:1,1,1", "hkl:1,0,0", "hkl:1,1,0"] * 7
    assert orientation_support_warning(three, 0.3 + 0.2 * nx + 0.5 * ny) == (
        "g(orientation) has 3 constants for 3 distinct training orientations ((1,0,0), (1,1,0), (1,1,1)): it can pass "
        "through every one, and the cross-validation (by material) never tests it at another orientation; a "
        "prediction there is extrapolated and its interval is not calibrated there")
    assert orientation_support_warning(three, sp.Float(1.0)) == (
        "g(orientation) is a constant: the model cannot tell the 3 training orientations ((1,0,0), (1,1,0), (1,1,1)) "
        "apart")
    assert orientation_support_warning(three, 1.15 * nx + 0.58 * ny) is None  # g_three's form: 2 constants, 3 faces
