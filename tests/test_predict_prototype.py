"""``matstore predict --prototype``: the inputs of a formula stored under several crystal prototypes.

The store: Fe as Im-3m (a = 2.87 Å, E_c = 4.28 eV/atom) and as Fm-3m (a = 3.65 Å, E_c = 4.20
eV/atom) under method ``emt``, stored so that the newest lattice constant is the Fm-3m one and
the newest cohesive energy the Im-3m one (without ``--prototype``, predict reads the newest value
of each, a mix of both); Fe also as P6_3/mmc with no values; Cu as Fm-3m.  The model ``proto`` is
one crafted version (written directly, no fit) of B = 240·E_c/a³ (GPa; cohesive energy per
cubic cell of side a, a fixed scale k), with the training domain a fit stores
(:func:`matstore.models.service._domain`): a in 2.8 … 3.7 Å, E_c in 3.4 … 4.4 eV/atom, trained
on Fm-3m only, and an absolute 90 % interval of ± 2 GPa.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pandas as pd
import pytest
import sympy as sp
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from matstore import crud
from matstore.dashboard import queries
from matstore.models.service import _domain, predict
from matstore.schema import EquationModel, EquationVersion
from tests.conftest import DATA_TABLES
from tests.dashboard_fixtures import restore, use_store
from tests.test_cli_db import run_cli, server_env
from tests.test_dashboard_apptest import run_page

A, EC = sp.symbols("lattice_constant cohesive_energy")
K = 240.0  # GPa·Å³/(eV/atom)
EQUATION = K * EC / A**3
FEATURES = ["lattice_constant", "cohesive_energy"]
#: (a in Å, E_c in eV/atom) of each stored Fe.
FE = {"Im-3m": (2.87, 4.28), "Fm-3m": (3.65, 4.20)}
UNTRAINED = ("prototype Im-3m: the model was trained on Fm-3m only; the prediction is extrapolated and its interval "
             "is not calibrated there")
SEVERAL = ("Fe is stored as Fm-3m and Im-3m with values under emt: give --prototype NAME (Fm-3m or Im-3m) to "
           "choose whose stored inputs are read (they would otherwise mix structures)")


def bulk_modulus(a: float, ec: float) -> float:
    """The crafted equation by hand, GPa."""
    return K * ec / a**3


def _bulk_rows(session: Session, values: list[tuple[int, str, float]], method: int, source: int, run: int) -> None:
    defs = crud.definitions(session=session)
    crud.add_bulk_properties(session=session, rows=[
        dict(material_id=m, method_id=method, definition_id=defs[name].id, value=v, source_id=source, job_run_id=run)
        for m, name, v in values])
    session.flush()


def _add_model(session: Session) -> int:
    """The crafted ``proto`` model (one version); its id."""
    model = EquationModel(name="proto", target="bulk_modulus", target_unit="GPa", spec={}, description=None)
    session.add(model)
    session.flush()
    training = pd.DataFrame({"lattice_constant": [2.8, 3.7], "cohesive_energy": [3.4, 4.4],
                             "prototype": ["Fm-3m", "Fm-3m"]})
    session.add(EquationVersion(
        model_id=model.id, version=1, dataset_sha256="0" * 64, dataset_query="crafted", n_rows=2,
        spec_sha256="0" * 64, features=[{"name": "lattice_constant", "unit": "angstrom"},
                                        {"name": "cohesive_energy", "unit": "eV/atom"}],
        target_unit="GPa", engine="sparse", engine_versions={}, hyperparameters={}, seed=0, pareto_front=[],
        equation_srepr=sp.srepr(EQUATION), equation_text=sp.sstr(EQUATION), equation_latex=sp.latex(EQUATION),
        equation_sha256="0" * 64, parts={}, selection_criterion="knee", metrics={"cv_r2": 0.9}, residual_std=1.5,
        dimension_check="consistent", report={"domain": _domain(training, FEATURES)}, interval_level=0.9,
        interval_half_width=2.0))
    session.flush()
    return int(model.id)


@pytest.fixture(scope="module")
def store(session_engine: Engine, database_url: str) -> Iterator[SimpleNamespace]:
    """The store of the module docstring; emptied afterwards."""
    with Session(session_engine) as s:
        run = s.execute(text("INSERT INTO job_run (kind, code_version, host) VALUES ('test','0','h') RETURNING id")
                        ).scalar_one()
        method = crud.get_or_create_method(session=s, name="emt", kind="model")
        source = crud.claim_source(session=s, kind="computation", sha256="7" * 64)
        bcc, fcc = (crud.get_or_create_material(session=s, formula="Fe", prototype=p) for p in ("Im-3m", "Fm-3m"))
        crud.get_or_create_material(session=s, formula="Fe", prototype="P6_3/mmc")
        cu = crud.get_or_create_material(session=s, formula="Cu", prototype="Fm-3m")
        for rows in ([(bcc, "lattice_constant", FE["Im-3m"][0])],  # oldest: the newest a is the Fm-3m one,
                     [(fcc, "lattice_constant", FE["Fm-3m"][0]), (fcc, "cohesive_energy", FE["Fm-3m"][1])],
                     [(bcc, "cohesive_energy", FE["Im-3m"][1])],  # the newest E_c the Im-3m one
                     [(cu, "lattice_constant", 3.615), (cu, "cohesive_energy", 3.54)]):
            _bulk_rows(s, rows, method, source, run)
        model_id = _add_model(s)
        s.commit()
    saved = use_store(database_url)
    queries.clear_caches()
    yield SimpleNamespace(engine=session_engine, env=server_env(database_url), model_id=model_id, bcc=bcc, fcc=fcc,
                          method=method)
    restore(saved)
    queries.clear_caches()
    with session_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))


@pytest.mark.parametrize("prototype", ["Im-3m", "Fm-3m"])
def test_the_inputs_are_those_of_the_chosen_prototype(store: SimpleNamespace, prototype: str) -> None:
    a, ec = FE[prototype]
    result = predict(store.engine, "proto", material="Fe", method="emt", prototype=prototype)
    assert result.inputs == {"lattice_constant": a, "cohesive_energy": ec}
    assert result.value == pytest.approx(bulk_modulus(a, ec), rel=1e-12)
    assert (result.lower, result.upper) == pytest.approx((result.value - 2.0, result.value + 2.0), rel=1e-12)
    # the model's own prototype check applies to the chosen material: it never saw Im-3m
    untrained = prototype == "Im-3m"
    assert result.extrapolated == (("prototype",) if untrained else ())
    assert result.warnings == ((UNTRAINED,) if untrained else ())


def test_the_two_prototypes_give_their_own_numbers(store: SimpleNamespace) -> None:
    bcc = predict(store.engine, "proto", material="Fe", method="emt", prototype="Im-3m")
    fcc = predict(store.engine, "proto", material="Fe", method="emt", prototype="Fm-3m")
    assert bcc.value == pytest.approx(43.451955, rel=1e-7)  # 240·4.28/2.87³
    assert fcc.value == pytest.approx(20.729171, rel=1e-7)  # 240·4.20/3.65³


def test_without_prototype_stored_inputs_are_not_mixed_across_structures(store) -> None:
    """The newest value of each input would take a from Fm-3m and E_c from Im-3m (21.124 GPa,
    no material's): refused in one line naming the prototypes."""
    with pytest.raises(ValueError) as caught:
        predict(store.engine, "proto", material="Fe", method="emt")
    assert str(caught.value) == SEVERAL
    # every input given: only the prototype check is ambiguous, and said so (P6_3/mmc too: nothing is read)
    given = predict(store.engine, "proto", material="Fe", overrides={"lattice_constant": 2.9, "cohesive_energy": 4.0})
    assert given.value == pytest.approx(bulk_modulus(2.9, 4.0), rel=1e-12)
    assert given.warnings == (
        "Fe is stored as Fm-3m, Im-3m and P6_3/mmc, its prototype checked as any of them: give --prototype NAME "
        "(Fm-3m, Im-3m or P6_3/mmc) to check one", UNTRAINED.replace("Im-3m:", "Im-3m, P6_3/mmc:"))
    cu = predict(store.engine, "proto", material="Cu", method="emt")  # one prototype: no warning
    assert cu.warnings == () and cu.value == pytest.approx(bulk_modulus(3.615, 3.54), rel=1e-12)


@pytest.mark.parametrize(("given", "hint"), [("fcc", " (did you mean 'Fm-3m'?)"), ("im-3m", " (did you mean 'Im-3m'?)"),
                                             ("Pm-3m", "")])
def test_a_prototype_the_formula_is_not_stored_under_is_refused_in_one_line(store, given: str, hint: str) -> None:
    with pytest.raises(ValueError) as caught:
        predict(store.engine, "proto", material="Fe", method="emt", prototype=given)
    assert str(caught.value) == (f"--prototype {given}: Fe is not stored as {given} (stored as Fm-3m, Im-3m, "
                                 f"P6_3/mmc); --prototype takes exact names (case-sensitive){hint}")


def test_a_stored_prototype_without_values_and_a_material_not_stored(store: SimpleNamespace) -> None:
    with pytest.raises(ValueError) as caught:
        predict(store.engine, "proto", material="Fe", method="emt", prototype="P6_3/mmc")
    assert str(caught.value) == ("no stored lattice_constant, cohesive_energy for Fe (P6_3/mmc) with method 'emt' "
                                 "(needed by proto:1); give them with --set NAME=VALUE")
    with pytest.raises(ValueError) as caught:
        predict(store.engine, "proto", material="Ir", prototype="Fm-3m",
                overrides={"lattice_constant": 3.839, "cohesive_energy": 6.94})
    assert str(caught.value) == ("--prototype Fm-3m: Ir is not stored (under any prototype); leave --prototype out "
                                 "to predict a material that is not stored from --set and its formula")


def test_the_cli_reads_the_chosen_prototype_and_refuses_another(store: SimpleNamespace) -> None:
    done = run_cli("predict", "proto", "--material", "Fe", "--method", "emt", "--prototype", "Im-3m", env=store.env)
    value = bulk_modulus(*FE["Im-3m"])
    assert done.stdout.splitlines() == [
        f"proto:1  Fe (Im-3m) [emt]: {value:.4g} ± 2 GPa (90% prediction interval {value - 2:.4g} to {value + 2:.4g})"]
    assert done.stdout.startswith("proto:1  Fe (Im-3m) [emt]: 43.45 ± 2 GPa")
    assert done.stderr.splitlines() == [f"  warning: {UNTRAINED}"]
    fcc = run_cli("predict", "proto", "--material", "Fe", "--method", "emt", "--prototype", "Fm-3m", env=store.env)
    assert fcc.stdout.startswith("proto:1  Fe (Fm-3m) [emt]: 20.73 ± 2 GPa") and fcc.stderr == ""
    both = run_cli("predict", "proto", "--material", "Fe", "--method", "emt", env=store.env, check=False)
    assert both.returncode == 1 and not both.stdout
    assert both.stderr.strip().splitlines() == [f"error: {SEVERAL}"]
    refused = run_cli("predict", "proto", "--material", "Fe", "--method", "emt", "--prototype", "fcc", env=store.env,
                      check=False)
    assert refused.returncode == 1 and not refused.stdout
    assert refused.stderr.strip().splitlines() == [
        "error: --prototype fcc: Fe is not stored as fcc (stored as Fm-3m, Im-3m, P6_3/mmc); --prototype takes exact "
        "names (case-sensitive) (did you mean 'Fm-3m'?)"]


def test_the_dashboard_form_has_a_prototype_box_for_the_formula(store: SimpleNamespace) -> None:
    at = run_page("equations", model=str(store.model_id), view="predict")
    chooser = next(s for s in at.selectbox if s.label == "Fill the inputs from the store")
    fe = [label for label in chooser.options if label.startswith("Fe · emt")]
    assert fe == ["Fe · emt (2/2 features stored; stored as 2 prototypes)"]  # one option for both
    keys = [f"m:{m}:{store.method}" for m in (store.bcc, store.fcc)]  # the first one stored of the two is shown
    chooser.set_value(next(k for k in keys if chooser.format_func(k) == fe[0])).run()
    box = next(s for s in at.selectbox if s.label == "Crystal prototype of Fe (stored under several)")
    assert sorted(box.options) == ["Fm-3m (2/2 features stored)", "Im-3m (2/2 features stored)"]
    for prototype, material_id in (("Im-3m", store.bcc), ("Fm-3m", store.fcc)):
        box = next(s for s in at.selectbox if s.label.startswith("Crystal prototype of Fe"))
        box.set_value(f"m:{material_id}:{store.method}").run()
        assert not at.exception, [e.value for e in at.exception]
        inputs = {n.label.split(" (")[0]: n.value for n in at.number_input}
        assert inputs == pytest.approx(dict(zip(FEATURES, FE[prototype], strict=True)))
        value = bulk_modulus(*FE[prototype])
        flag = " (extrapolated: prototype)" if prototype == "Im-3m" else ""
        assert at.success[0].value == (f"bulk_modulus = {value:.5g} GPa{flag}; 90% prediction interval "
                                       f"[{value - 2:.5g} GPa, {value + 2:.5g} GPa] (stored interval)")
        assert [w.value for w in at.warning if w.value.startswith("prototype ")] == (
            [UNTRAINED] if prototype == "Im-3m" else [])


def test_the_interval_of_a_positive_target_starts_at_zero(store: SimpleNamespace) -> None:
    """A bulk modulus is positive for a stable crystal: the ± 2 GPa interval around 0.024 GPa
    is 0 to 2.024, not −1.976 to 2.024 (a trial printed C44 "−30.59 to 190.9" GPa)."""
    from matstore.models.service import predict_frame

    small = predict(store.engine, "proto", material="Ir", overrides={"lattice_constant": 10.0, "cohesive_energy": 0.1})
    assert small.value == pytest.approx(0.024, rel=1e-12)
    assert (small.lower, small.upper) == (0.0, pytest.approx(2.024, rel=1e-12))
    frame = predict_frame(store.engine, "proto", pd.DataFrame({"lattice_constant": [10.0, 3.65],
                                                                "cohesive_energy": [0.1, 4.20]}))
    assert frame["lower"].tolist() == [0.0, pytest.approx(bulk_modulus(3.65, 4.20) - 2.0, rel=1e-12)]
