"""``predict`` needs only what the equation uses: unused features, ``--set`` names, orientations
given as a normal or angles, composition descriptors of a new formula, configuration keys.

Each model is fitted from the store with the sparse engine (seconds); each prediction is
checked against the stored equation evaluated by hand with SymPy at the same inputs.
"""

from __future__ import annotations

import math
import re

import pytest
import sympy as sp
from sqlalchemy import text
from sqlmodel import Session

from matstore import crud
from matstore.composition import composition_descriptor, parse_formula
from matstore.ingest.table import ingest_table
from matstore.models.dataset import DatasetError
from matstore.models.expressions import parse_srepr
from matstore.models.service import equation_inputs, fit_model, predict, predict_frame
from matstore.models.spec import FitSpec
from matstore.models.versioning import promote
from matstore.orientation import OrientationError, from_angles, from_miller, from_normal
from tests.test_cli_db import run_cli, server_env
from tests.test_ingest_published_shapes import E0, A, _defect_table, _vocab_add
from tests.test_models_store import populate, true_gamma

#: Ir, a metal the synthetic store does not hold: a (Å) and E_c (eV/atom).
IR = {"lattice_constant": 3.839, "cohesive_energy": 6.94}


def by_hand(version, inputs: dict[str, float], orientation=None) -> float:
    """The stored equation evaluated with SymPy's ``subs`` at ``inputs`` and the orientation's descriptors."""
    values = dict(inputs)
    if orientation is not None:
        values |= dict(zip(("normal_x", "normal_y", "normal_z"), orientation.normal, strict=True))
        values |= {"theta_deg": orientation.theta_deg, "phi_deg": orientation.phi_deg}
    expr = parse_srepr(version.equation_srepr)
    return float(expr.subs({s: values[str(s)] for s in expr.free_symbols}).evalf(17))


@pytest.fixture
def gamma(engine):
    """γ of seven synthetic metals fitted from a, E_c and C44; the equation uses a and E_c only."""
    populate(engine)
    spec = FitSpec(name="gamma_synth", target="surface_energy", features=["lattice_constant", "cohesive_energy", "c44"],
                   methods=["synth"], factorize="orientation", engine="sparse", seed=0, selection="knee", n_splits=3)
    version = fit_model(engine, spec).version
    promote(engine, name="gamma_synth", version=1, alias="production")
    return version


def test_only_the_inputs_the_equation_uses_are_needed(engine, gamma) -> None:
    assert equation_inputs(gamma) == ["lattice_constant", "cohesive_energy"]  # C44 is a feature of the fit only
    result = predict(engine, "gamma_synth", material="Ir", method="synth", miller=(1, 1, 1), overrides=IR)
    assert result.inputs == IR
    assert result.value == pytest.approx(by_hand(gamma, IR, from_miller(1, 1, 1)), rel=1e-12)
    assert result.value == pytest.approx(true_gamma(3.839, 6.94, (1, 1, 1)), rel=0.02)  # 3.700·E_c/a² = 1.742 J/m²
    # a stored metal: only a and E_c are read, even though C44 is stored too
    cu = predict(engine, "gamma_synth", material="Cu", method="synth", miller=(1, 1, 0))
    assert cu.inputs == {"lattice_constant": 3.615, "cohesive_energy": 3.54}
    # the range check covers the used inputs only: a frame without C44, or with a negative one, is accepted
    frame = {"lattice_constant": [3.839, 3.839], "cohesive_energy": [6.94, 6.94], "miller_h": [1, 1],
             "miller_k": [1, 1], "miller_l": [1, 1]}
    import pandas as pd

    without = predict_frame(engine, "gamma_synth", pd.DataFrame(frame))
    with_bad_c44 = predict_frame(engine, "gamma_synth", pd.DataFrame(frame | {"c44": [-5.0, float("nan")]}))
    assert without["value"].tolist() == pytest.approx([result.value] * 2, rel=1e-12)
    assert with_bad_c44["value"].tolist() == pytest.approx([result.value] * 2, rel=1e-12)
    with pytest.raises(ValueError, match=r"^no stored lattice_constant, cohesive_energy for Ir with method 'synth' "
                                         r"\(needed by gamma_synth:1\); give them with --set NAME=VALUE$"):
        predict(engine, "gamma_synth", material="Ir", method="synth", miller=(1, 1, 1))


@pytest.mark.parametrize(("overrides", "message"), [
    ({"bogus": 3.0}, "--set bogus: not an input of gamma_synth:1's equation "
                     "(accepted: lattice_constant, cohesive_energy)"),
    ({"c44": 80.0}, "--set c44: not an input of gamma_synth:1's equation (accepted: lattice_constant, cohesive_energy)"),
    ({"normal_x": 0.9}, "--set normal_x: not an input of gamma_synth:1's equation (accepted: lattice_constant, "
                        "cohesive_energy); give the orientation with --hkl, --normal or --angles"),
])
def test_set_names_that_are_not_inputs_are_refused(engine, gamma, overrides, message) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        predict(engine, "gamma_synth", material="Cu", method="synth", miller=(1, 1, 1), overrides=overrides)


def test_orientation_as_miller_index_normal_or_angles(engine, gamma) -> None:
    at_111 = predict(engine, "gamma_synth", material="Cu", method="synth", miller=(1, 1, 1)).value
    assert predict(engine, "gamma_synth", material="Cu", method="synth", normal=(-2.0, 2.0, 2.0)).value \
        == pytest.approx(at_111, rel=1e-12)
    assert predict(engine, "gamma_synth", material="Cu", method="synth", angles=(math.degrees(math.acos(3 ** -0.5)), 45.0)
                   ).value == pytest.approx(at_111, rel=1e-9)
    at_110 = predict(engine, "gamma_synth", material="Cu", method="synth", angles=(45.0, 0.0))
    assert at_110.orientation.miller == (1, 1, 0)
    assert at_110.value == pytest.approx(predict(engine, "gamma_synth", material="Cu", method="synth",
                                                 miller=(1, 1, 0)).value, rel=1e-12)
    # an irrational orientation: θ = 20°, φ = 10°, evaluated by hand at its normal and angles
    irrational = predict(engine, "gamma_synth", material="Cu", method="synth", angles=(20.0, 10.0))
    assert irrational.orientation.miller is None
    assert irrational.value == pytest.approx(by_hand(gamma, {"lattice_constant": 3.615, "cohesive_energy": 3.54},
                                                     from_angles(20.0, 10.0)), rel=1e-12)
    t, p = math.radians(20.0), math.radians(10.0)
    same = from_normal([math.cos(t), math.sin(t) * math.cos(p), math.sin(t) * math.sin(p)])
    assert predict(engine, "gamma_synth", material="Cu", method="synth", normal=same.normal).value \
        == pytest.approx(irrational.value, rel=1e-12)
    with pytest.raises(ValueError, match=r"^give one orientation, not --hkl and --normal$"):
        predict(engine, "gamma_synth", material="Cu", method="synth", miller=(1, 1, 1), normal=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match=r"^model gamma_synth:1 predicts a surface property: give --hkl, --normal or "
                                         r"--angles$"):
        predict(engine, "gamma_synth", material="Cu", method="synth")
    with pytest.raises(OrientationError, match="outside the standard triangle"):
        predict(engine, "gamma_synth", material="Cu", method="synth", angles=(10.0, 60.0))
    import pandas as pd

    with pytest.raises(ValueError, match="gamma_synth predicts a surface property: give columns miller_h"):
        predict_frame(engine, "gamma_synth", pd.DataFrame({"lattice_constant": [3.6], "cohesive_energy": [3.5]}))


#: Synthetic rare-earth phosphates: a "lattice constant" 6.0 · mean_ionic_radius (Å).
PHOSPHATES = ("LaPO4", "CePO4", "NdPO4", "SmPO4", "GdPO4", "La0.5Ce0.5PO4", "La0.5Gd0.5PO4", "Nd0.5Sm0.5PO4")
SLOPE = 6.0


def _store_phosphates(engine) -> None:
    with Session(engine) as s:
        run = s.execute(text("INSERT INTO job_run (kind, code_version, host) VALUES ('test','0','h') RETURNING id")).scalar_one()
        method = crud.get_or_create_method(session=s, name="synth", kind="model")
        source = crud.claim_source(session=s, kind="computation", sha256="5" * 64)
        definition = crud.definitions(session=s)["lattice_constant"].id
        rows = []
        for formula in PHOSPHATES:
            mat = crud.get_or_create_material(session=s, formula=formula, prototype="monazite")
            value = SLOPE * composition_descriptor("mean_ionic_radius", parse_formula(formula).composition)
            rows.append(dict(material_id=mat, method_id=method, definition_id=definition, value=value,
                             source_id=source, job_run_id=run))
        crud.add_bulk_properties(session=s, rows=rows)
        s.commit()


def test_composition_descriptors_of_a_new_formula(engine, database_url) -> None:
    _store_phosphates(engine)
    spec = FitSpec(name="mono_mix", target="lattice_constant", features=["mean_ionic_radius"], methods=["synth"],
                   engine="sparse", seed=0, n_splits=3)
    version = fit_model(engine, spec).version
    assert equation_inputs(version) == ["mean_ionic_radius"]
    radius = composition_descriptor("mean_ionic_radius", parse_formula("La0.5Y0.5PO4").composition)
    assert radius == pytest.approx(1.116, rel=1e-12)  # atomic-fraction mean of pymatgen's average Shannon radii, Å
    new = predict(engine, "mono_mix", material="La0.5Y0.5PO4", method="synth")
    assert new.inputs == {"mean_ionic_radius": pytest.approx(radius, rel=1e-15)}
    assert new.value == pytest.approx(by_hand(version, {"mean_ionic_radius": radius}), rel=1e-12)
    assert new.value == pytest.approx(SLOPE * radius, rel=1e-6)
    # a stored material: its stored composition, the numbers the fit was trained on
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT predicted FROM model_predictions WHERE model = 'mono_mix' "
                                   "AND material = 'LaGdP2O8'")).scalar_one()  # La0.5Gd0.5PO4 reduced by pymatgen
    assert predict(engine, "mono_mix", material="Gd0.5La0.5PO4", method="synth").value == pytest.approx(stored, rel=1e-12)
    # --set still wins over the computed descriptor
    assert predict(engine, "mono_mix", material="La0.5Y0.5PO4", method="synth",
                   overrides={"mean_ionic_radius": 1.2}).value == pytest.approx(by_hand(version, {"mean_ionic_radius": 1.2}))
    with pytest.raises(DatasetError, match=r"^cannot compute mean_ionic_radius of 'Xx2O': unknown element"):
        predict(engine, "mono_mix", material="Xx2O", method="synth")
    with pytest.raises(ValueError, match=r"^model mono_mix:1 predicts a bulk property that does not depend on "
                                         r"orientation: --hkl does not apply$"):
        predict(engine, "mono_mix", material="LaPO4", method="synth", miller=(1, 1, 1))
    # the command line prints the method for a composition model too (it was taken for Rich markup)
    env = server_env(database_url)
    line = run_cli("predict", "mono_mix", "--material", "La0.5Y0.5PO4", "--method", "synth", env=env).stdout
    assert line.startswith(f"mono_mix:1  La0.5Y0.5PO4 [synth]: {new.value:.4g}")


@pytest.fixture
def defects(user_vocabulary_engine):
    """The store of the synthetic per-configuration table (E_f = E0 + A·d1/d2); user definitions removed after."""
    return user_vocabulary_engine


def test_configuration_keys_are_checked_with_close_keys_listed(defects, tmp_path) -> None:
    _vocab_add("defect_formation_energy", "--unit", "eV", "--scope", "configuration")
    for k in (1, 2, 3):
        _vocab_add(f"d_def_{k}", "--unit", "angstrom", "--scope", "configuration")
    path, mapping, d = _defect_table(tmp_path, n=12)
    ingest_table(path, mapping, engine=defects)
    spec = FitSpec(name="defects", target="defect_formation_energy", features=["d_def_1", "d_def_2", "d_def_3"],
                   engine="sparse", seed=0, group_by="configuration_key", n_splits=3)
    version = fit_model(defects, spec).version
    method = "DFT-PBE (synthetic)"
    result = predict(defects, "defects", material="MoS2", method=method, configuration="3def:c005")
    assert result.value == pytest.approx(by_hand(version, {f"d_def_{k}": d[5, k - 1] for k in (1, 2, 3)}), rel=1e-12)
    assert result.value == pytest.approx(E0 + A * d[5, 0] / d[5, 1], rel=1e-6)
    with pytest.raises(DatasetError, match=r"^no configuration 'c005' for MoS2 under method 'DFT-PBE \(synthetic\)'; "
                                           r"stored keys: 3def:c005, .*\(12 in all\)$"):
        predict(defects, "defects", material="MoS2", method=method, configuration="c005")
    used = ", ".join(equation_inputs(version))
    with pytest.raises(DatasetError, match=rf"^{used} are per configuration: give a configuration key "
                                           r"\(--configuration\); for MoS2 under method 'DFT-PBE \(synthetic\)' "
                                           r"stored keys: 3def:c000, 3def:c001, "):
        predict(defects, "defects", material="MoS2", method=method)
    assert sp.Symbol("d_def_1") in parse_srepr(version.equation_srepr).free_symbols


def test_command_line_orientation_flags_and_one_line_errors(engine, gamma, database_url) -> None:
    env = server_env(database_url)
    base = ("predict", "gamma_synth@production", "--material", "Cu", "--method", "synth")
    # one subprocess per call (seconds each on a busy machine): few calls
    at_110 = predict(engine, "gamma_synth", material="Cu", method="synth", miller=(1, 1, 0)).value
    assert run_cli(*base, "--angles", "45", "0", env=env).stdout.startswith(f"gamma_synth:1  Cu (1,1,0) [synth]: {at_110:.4g}")
    at_321 = predict(engine, "gamma_synth", material="Cu", method="synth", miller=(3, 2, 1)).value
    by_normal = run_cli(*base, "--normal", "0.3", "-0.2", "0.1", env=env).stdout
    assert by_normal.startswith(f"gamma_synth:1  Cu (3,2,1) [synth]: {at_321:.4g}")
    ir = run_cli("predict", "gamma_synth", "--material", "Ir", "--method", "synth", "--hkl", "1", "1", "1",
                 "--set", "lattice_constant=3.839", "--set", "cohesive_energy=6.94", env=env).stdout
    value = predict(engine, "gamma_synth", material="Ir", method="synth", miller=(1, 1, 1), overrides=IR).value
    assert ir.startswith(f"gamma_synth:1  Ir (1,1,1) [synth]: {value:.4g} J/m^2 ± ")
    for args, message in (
        (("--hkl", "1", "1", "1", "--set", "bogus=3"), "--set bogus: not an input of gamma_synth:1's equation"),
        ((), "model gamma_synth:1 predicts a surface property: give --hkl, --normal or --angles"),
    ):
        refused = run_cli(*base, *args, env=env, check=False)
        assert refused.returncode == 1 and message in refused.stderr and not refused.stdout
        assert len(refused.stderr.strip().splitlines()) == 1
