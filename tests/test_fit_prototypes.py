"""Fits across crystal prototypes: the mixed-prototypes note, ``--prototype``, and predict's prototype check.

A new-user trial fitted y = C(bulk)·g(hkl) to 7 FCC and 4 BCC metals in one model without a
word, predicted BCC Fe with an FCC-only model warning only about its lattice constant, and
printed a pooled nested R² of 0.891 beside a stored per-fold mean of −9.1.  The store here:
the seven synthetic metals of tests/test_models_store.py at (100), (110), (111), relabelled
``Fm-3m`` (Ag, Au, Ni, Pt) and ``Im-3m`` (Cu, Pd, Al): the Im-3m lattice constants and cohesive
energies lie inside the Fm-3m ranges, so the only thing out of domain when predicting Cu
with the Fm-3m model is its prototype.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest
from sqlalchemy import text

from matstore.models.dataset import DatasetError, build_training_set
from matstore.models.service import fit_model, predict, refit_model
from matstore.models.spec import FitSpec
from matstore.models.versioning import load_spec
from tests.conftest import DATA_TABLES
from tests.test_cli_db import run_cli, server_env
from tests.test_models_store import populate, spec

MILLERS = ((1, 0, 0), (1, 1, 0), (1, 1, 1))
BCC = ("Cu", "Pd", "Al")
FEATURES = ["lattice_constant", "cohesive_energy"]
#: The fit flags of both models: the test spec's (sparse, g by the knee, three group folds).
FIT = ("--target", "surface_energy", "--features", *FEATURES, "--method", "synth", "--factorize", "orientation",
       "--engine", "sparse", "--selection", "knee", "--n-splits", "3")
MIXED_NOTE = ("  note: 2 prototypes mixed in one fit: one C(bulk) and one g(orientation) for all of them, although a "
              "lattice constant is another length, and a Miller index another surface, in an fcc, a bcc or another "
              "cell (--prototype NAME fits one)")
UNTRAINED = ("prototype Im-3m: the model was trained on Fm-3m only; the prediction is extrapolated and its interval "
             "is not calibrated there")


@pytest.fixture(scope="module")
def store(session_engine, database_url):
    """The relabelled store, ``mixed`` fitted by the CLI (its stdout kept) and ``fcc`` (Fm-3m only) by the service."""
    populate(session_engine, millers=MILLERS, source_hash="9" * 64)
    with session_engine.begin() as conn:
        conn.execute(text("UPDATE material SET prototype = CASE WHEN formula = ANY(:bcc) THEN 'Im-3m' ELSE 'Fm-3m' END"),
                     {"bcc": list(BCC)})
    env = server_env(database_url)
    mixed = run_cli("fit", "--name", "mixed", *FIT, env=env).stdout
    fcc = fit_model(session_engine, spec(name="fcc", features=FEATURES, prototypes=["Fm-3m"]))
    yield SimpleNamespace(engine=session_engine, env=env, mixed=mixed, fcc=fcc)
    with session_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))


def _stored(engine, name: str) -> tuple[dict, dict]:  # noqa: ANN001
    """(report, metrics) of the latest version of model ``name``."""
    with engine.connect() as conn:
        row = conn.execute(text("SELECT v.report, v.metrics FROM equation_version v JOIN equation_model m "
                                "ON m.id = v.model_id WHERE m.name = :n ORDER BY v.version DESC LIMIT 1"),
                           {"n": name}).one()
    return row.report, row.metrics


def test_a_fit_across_prototypes_prints_and_stores_them_with_a_note(store) -> None:
    lines = store.mixed.splitlines()
    assert lines[0] == "mixed: created (version 1): first version; 21 rows, 0 dropped for missing features"
    assert "  prototypes: Fm-3m (4 materials), Im-3m (3)" in lines, store.mixed
    assert MIXED_NOTE in lines, store.mixed
    report, _ = _stored(store.engine, "mixed")
    assert report["materials_per_prototype"] == {"Fm-3m": 4, "Im-3m": 3}
    assert report["domain"]["prototypes"] == ["Fm-3m", "Im-3m"]
    shown = run_cli("models", "show", "mixed", env=store.env).stdout.splitlines()
    assert "  prototypes: Fm-3m (4 materials), Im-3m (3)" in shown and MIXED_NOTE in shown


def test_the_pooled_r2_says_so_beside_the_per_fold_mean(store) -> None:
    report, metrics = _stored(store.engine, "mixed")
    fold_r2 = [f["nested_r2"] for f in report["folds"]]
    assert metrics["cv_r2_mean"] == pytest.approx(np.mean(fold_r2))
    assert re.search(rf"^  cross-validated R² = {metrics['cv_r2']:.3f}, pooled over the held-out rows of all 3 folds "
                     r"\(nested: the whole fit re-run per fold; GroupKFold\(3\) by material \(the default for a "
                     r"factorised fit: ", store.mixed, re.M), store.mixed
    per_fold = (f"  per-fold R²: mean {np.mean(fold_r2):.3g}, from {min(fold_r2):.3g} to {max(fold_r2):.3g} over 3 "
                "folds (metrics cv_r2_mean): each fold's held-out rows against their own mean, so a fold holding out "
                "one material scores only its spread within that material")
    assert per_fold in store.mixed.splitlines(), store.mixed
    shown = run_cli("models", "show", "mixed", env=store.env).stdout.splitlines()
    assert (f"  nested CV (whole procedure re-run per fold): R² {report['nested_cv']['r2']:.3f}, RMSE "
            f"{report['nested_cv']['rmse']:.3g} J/m^2, pooled over the held-out rows of all 3 folds") in shown, shown
    assert per_fold in shown
    assert not any("more group" in line for line in shown)  # 7 groups: all listed


def test_prototype_restricts_the_training_rows(store) -> None:
    engine = store.engine
    both = build_training_set(engine, target="surface_energy", features=FEATURES, methods=["synth"])
    fcc = build_training_set(engine, target="surface_energy", features=FEATURES, methods=["synth"],
                             prototypes=["Fm-3m"])
    assert (both.n_rows, fcc.n_rows) == (21, 12)
    assert sorted(fcc.table["material"].unique()) == ["Ag", "Au", "Ni", "Pt"]
    assert set(fcc.table["prototype"]) == {"Fm-3m"} and fcc.sha256 != both.sha256
    # without prototypes the recorded query is the one fits recorded before the filter existed
    assert "prototype" not in both.query and "m.prototype = ANY" in fcc.query
    by_structure = build_training_set(engine, target="surface_energy", features=FEATURES, methods=["synth"],
                                      group_by="prototype")
    assert sorted(set(by_structure.groups)) == ["Fm-3m", "Im-3m"]
    outcome = store.fcc
    assert (outcome.created, outcome.n_rows, outcome.materials_per_prototype) == (True, 12, {"Fm-3m": 4})
    report, _ = _stored(engine, "fcc")
    assert report["materials_per_prototype"] == {"Fm-3m": 4} and report["domain"]["prototypes"] == ["Fm-3m"]
    assert load_spec(engine, "fcc").prototypes == ["Fm-3m"]
    again = refit_model(engine, "fcc")  # the stored spec keeps its filter: same rows, no new version
    assert (again.created, again.n_rows, again.reason) == (False, 12, "data snapshot and spec unchanged since version 1")


def test_an_unmatched_prototype_lists_those_with_values(store) -> None:
    with pytest.raises(DatasetError) as caught:
        build_training_set(store.engine, target="surface_energy", features=FEATURES, methods=["synth"],
                           prototypes=["fcc"])
    assert str(caught.value) == (
        "no stored values of 'surface_energy' for prototypes ['fcc'] (methods ['synth']); prototypes with values of "
        "'surface_energy', closest first: 'Fm-3m' (4 materials), 'Im-3m' (3); --prototype takes exact names "
        "(case-sensitive) (did you mean 'Fm-3m'?)")
    refused = run_cli("fit", "--name", "typo", *FIT, "--prototype", "im-3m", env=store.env, check=False)
    assert refused.returncode == 1 and not refused.stdout
    assert refused.stderr.strip().splitlines() == [
        "error: no stored values of 'surface_energy' for prototypes ['im-3m'] (methods ['synth']); prototypes with "
        "values of 'surface_energy', closest first: 'Im-3m' (3 materials), 'Fm-3m' (4); --prototype takes exact "
        "names (case-sensitive) (did you mean 'Im-3m'?)"]


def test_predicting_a_material_of_an_untrained_prototype_warns(store) -> None:
    engine = store.engine
    cu = predict(engine, "fcc", material="Cu", method="synth", miller=(1, 1, 1))
    assert cu.extrapolated == ("prototype",) and cu.warnings == (UNTRAINED,)
    ni = predict(engine, "fcc", material="Ni", method="synth", miller=(1, 1, 1))
    assert ni.extrapolated == () and ni.warnings == ()
    both = predict(engine, "mixed", material="Cu", method="synth", miller=(1, 1, 1))
    assert both.extrapolated == () and both.warnings == ()
    inputs = {"lattice_constant": 3.615, "cohesive_energy": 3.54}
    new = predict(engine, "fcc", material="Ir", miller=(1, 1, 1), overrides=inputs)  # not stored: structure unknown
    assert new.extrapolated == () and new.warnings == ()
    done = run_cli("predict", "fcc", "--material", "Cu", "--method", "synth", "--hkl", "1", "1", "1", env=store.env)
    assert done.stdout.startswith(f"fcc:1  Cu (1,1,1) [synth]: {cu.value:.4g} J/m^2 ± ")
    assert done.stderr.splitlines() == [f"  warning: {UNTRAINED}"]
    with engine.begin() as conn:  # Cu stored under both prototypes, its inputs given: both are named
        conn.execute(text("INSERT INTO material (formula, prototype, composition) VALUES ('Cu', 'Fm-3m', '{\"Cu\": 1}')"))
    twice = predict(engine, "fcc", material="Cu", miller=(1, 1, 1), overrides=inputs)
    assert twice.warnings == ("Cu is stored as Fm-3m and Im-3m, its prototype checked as any of them: give "
                              "--prototype NAME (Fm-3m or Im-3m) to check one", UNTRAINED)
    assert predict(engine, "fcc", material="Cu", method="synth", miller=(1, 1, 1)).warnings == (UNTRAINED,)


def test_notes_of_one_prototype_of_unknown_and_of_a_direct_fit() -> None:
    from matstore.models.report import prototypes_note, prototypes_text

    assert prototypes_note({"Fm-3m": 4}, True) == "" and prototypes_note(None) == ""
    assert prototypes_text({"Fm-3m": 1}) == "Fm-3m (1 material)"
    assert prototypes_text({"unknown": 2, "fcc": 5}) == "fcc (5 materials), unknown (2)"
    assert prototypes_note({"fcc": 5, "unknown": 2}) == (
        "2 prototypes mixed in one fit: one equation for all of them, although a lattice constant is another length "
        "in an fcc, a bcc or another cell (--prototype NAME fits one); unknown: no prototype recorded at ingest, any "
        "structure")


def test_spec_prototypes_are_sorted_optional_and_out_of_the_old_hash(tmp_path) -> None:
    from matstore.hashing import sha256_json

    path = tmp_path / "spec.yaml"
    path.write_text("name: g\ntarget: surface_energy\nfeatures: [lattice_constant]\nprototypes: [Im-3m, Fm-3m, Fm-3m]\n")
    assert FitSpec.from_yaml(path).prototypes == ["Fm-3m", "Im-3m"]
    old = {"name": "g", "target": "surface_energy", "features": ["lattice_constant"], "selection": "stable"}
    stored = FitSpec.from_stored(old)
    assert stored.prototypes is None
    assert stored.sha256() == sha256_json(stored.model_dump(exclude={"name", "description", "products", "prototypes",
                                                                     "coefficient_terms"}))
    assert FitSpec.from_stored(old | {"prototypes": ["Fm-3m"]}).sha256() != stored.sha256()
    with pytest.raises(ValueError, match="at least 1 item"):
        FitSpec(**old, prototypes=[])


def test_the_per_group_table_says_how_many_groups_it_left_out() -> None:
    from matstore.cli import models as cli

    groups = [{"group": f"M{k}", "n": 3, "rmse": 1.0 / (k + 1), "mean_relative_error": 0.1, "r2": None}
              for k in range(12)]
    with cli.console.capture() as captured:
        cli._show_groups(groups, "J/m^2")
    out = captured.get()
    assert out.splitlines()[-1] == "  … 2 more groups (all 12 in the stored report: per_group)"
    assert all(f" M{k} " in out for k in range(10)) and " M10 " not in out and " M11 " not in out
    with cli.console.capture() as captured:
        cli._show_groups(groups[:11], "J/m^2")
    assert captured.get().splitlines()[-1] == "  … 1 more group (all 11 in the stored report: per_group)"
