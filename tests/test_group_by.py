"""What cross-validation folds hold out together: ``--group-by`` and its default (issue: groups).

A solid-solution series A(1-x)B(x)PO4 has several compositions per chemical system; the
folds must be able to hold a whole system out (``chemical_system``), or the values of a
stored property that is not a feature, and every report must say which grouping it used.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from sqlalchemy import text
from sqlmodel import Session

from matstore import crud
from tests.test_cli_db import run_cli, server_env

#: Cation pairs (A, B) of the synthetic monazite-type series A(1-x)B(x)PO4: seven chemical systems.
PAIRS = (("La", "Ce"), ("La", "Nd"), ("Ce", "Nd"), ("Pr", "Sm"), ("Sm", "Gd"), ("Eu", "Dy"), ("Y", "Gd"))
FRACTIONS = (0.25, 0.5, 0.75)
FEATURES = ["mean_ionic_radius", "mean_electronegativity"]


def formula(a: str, b: str, x: float) -> str:
    """``La0.75Ce0.25PO4`` for (La, Ce, 0.25)."""
    return f"{a}{1 - x:g}{b}{x:g}PO4"


def stored(a: str, b: str, x: float) -> str:
    """The formula the store keeps for (a, b, x) (pymatgen's reduced formula)."""
    from matstore.composition import parse_formula

    return parse_formula(formula(a, b, x)).formula


def system_offset(a: str, b: str) -> float:
    """A per-system term (kJ/mol) the composition descriptors do not explain, fixed by the pair."""
    return float(np.random.default_rng(sum(map(ord, a + b))).normal(0.0, 2.0))


def mixing_enthalpy(a: str, b: str, x: float, radius: float) -> float:
    """Synthetic target (kJ/mol): linear in the mean ionic radius (Å) plus the system's own offset."""
    return 300.0 * (radius - 1.1) + system_offset(a, b)


@pytest.fixture
def store(user_vocabulary_engine):
    """The test store; the definitions added here are removed afterwards."""
    return user_vocabulary_engine


def populate_series(engine, *, without_host: str | None = None) -> dict[str, str]:
    """Store ``mixing_enthalpy`` (kJ/mol) and ``host_radius`` (Å, the A cation's mean ionic radius) of every
    composition of :data:`PAIRS` × :data:`FRACTIONS`; return each formula's chemical system.

    ``without_host`` names one formula stored without ``host_radius``.
    """
    from pymatgen.core import Element

    from matstore.composition import composition_descriptor, parse_formula

    run = crud.start_job_run(engine=engine, kind="test", parameters={})
    systems = {}
    with Session(engine) as s:
        crud.add_definition(session=s, name="mixing_enthalpy", unit="kJ/mol", scope="bulk", job_run_id=run)
        crud.add_definition(session=s, name="host_radius", unit="angstrom", scope="bulk", job_run_id=run)
        method = crud.get_or_create_method(session=s, name="synthetic", kind="model")
        source = crud.claim_source(session=s, kind="computation", sha256="9" * 64)
        defs, rows = crud.definitions(session=s), []
        for a, b in PAIRS:
            for x in FRACTIONS:
                parsed = parse_formula(formula(a, b, x))
                systems[parsed.formula] = "-".join(sorted(parsed.composition))
                radius = composition_descriptor("mean_ionic_radius", parsed.composition)
                material = crud.get_or_create_material(session=s, formula=parsed.formula)
                values = {"mixing_enthalpy": mixing_enthalpy(a, b, x, radius),
                          "host_radius": float(Element(a).average_ionic_radius)}
                if parsed.formula == without_host:
                    del values["host_radius"]
                rows += [dict(material_id=material, method_id=method, definition_id=defs[name].id, value=value,
                              source_id=source, job_run_id=run) for name, value in values.items()]
        crud.add_bulk_properties(session=s, rows=rows)
        s.commit()
    return systems


def _spec(**kw):
    from matstore.models.spec import FitSpec

    return FitSpec(**{"name": "dh", "target": "mixing_enthalpy", "features": FEATURES, "engine": "sparse",
                      "time_budget": 20, "seed": 0, **kw})


def _folds_hold_whole_groups(report: dict, labels: dict[str, str]) -> list[list[str]]:
    """The held-out groups of each stored fold, after checking that each fold held out exactly one group."""
    held = [f["held_out"] for f in report["folds"]]
    assert all(len(h) == 1 for h in held)
    per_group = {g["group"]: g["n"] for g in report["per_group"]}
    expected = {}
    for label in labels.values():
        expected[label] = expected.get(label, 0) + 1
    assert per_group == expected  # every composition of a group was predicted in its group's one fold
    return held


def test_default_groups_a_solid_solution_by_chemical_system(store):
    from matstore.models.dataset import build_training_set
    from matstore.models.service import fit_model

    systems = populate_series(store)
    assert systems[stored("La", "Ce", 0.5)] == "Ce-La-O-P"
    ts = build_training_set(store, target="mixing_enthalpy", features=FEATURES)
    assert dict(zip(ts.table["material"], ts.table["chemical_system"], strict=True)) == systems
    assert "chemical_system" not in ts.units and ts.n_rows == 21
    version = fit_model(store, _spec()).version  # group_by left at "material": the default rule
    report = version.report
    assert report["cv_scheme"] == "LeaveOneGroupOut (7 groups) by chemical_system"
    assert version.metrics["cv_scheme"] == report["cv_scheme"]
    held = _folds_hold_whole_groups(report, systems)
    assert sorted(h[0] for h in held) == sorted(set(systems.values()))


def test_default_rule_of_bulk_targets():
    """Grouped by chemical system where a system holds several compositions, by material where a material has several
    rows; as asked otherwise."""
    from types import SimpleNamespace

    import pandas as pd

    from matstore.models.service import _cv_groups

    bulk, surface = SimpleNamespace(target_scope="bulk"), SimpleNamespace(target_scope="surface")
    metals = pd.DataFrame({"material": ["Cu", "Cu", "Ni", "Ni"], "method": ["u3", "emt"] * 2,
                           "chemical_system": ["Cu", "Cu", "Ni", "Ni"]})  # one element, two potentials
    # several rows per material (one per potential): grouped by material (shuffled folds tested Cu's u3 row
    # with its emt row in training, an optimistic score)
    assert _cv_groups(metals, _spec(), bulk) == "material"
    assert _cv_groups(metals, _spec(), surface) == "material"
    assert _cv_groups(metals, _spec(group_by="chemical_system"), bulk) == "chemical_system"
    assert _cv_groups(metals, _spec(group_by="method"), bulk) == "method"
    series = pd.DataFrame({"material": ["CuNi", "Cu3Ni", "AgAu", "Ag3Au"], "method": ["emt"] * 4,
                           "chemical_system": ["Cu-Ni", "Cu-Ni", "Ag-Au", "Ag-Au"]})
    assert _cv_groups(series, _spec(), bulk) == "chemical_system"
    assert _cv_groups(series.iloc[:2], _spec(), bulk) is None  # one system: nothing to hold out
    with pytest.raises(ValueError, match=r"^--group-by 'colour' is not a column of the training table; give material, "):
        _cv_groups(series, _spec(group_by="colour"), bulk)


def test_group_by_a_stored_property_that_is_not_a_feature(store):
    from matstore.models.dataset import build_training_set
    from matstore.models.service import fit_model

    populate_series(store, without_host=stored("La", "Ce", 0.5))
    ts = build_training_set(store, target="mixing_enthalpy", features=FEATURES, group_by="host_radius")
    assert ts.grouping == ["host_radius"] and ts.units["host_radius"] == "angstrom"
    assert ts.dropped == [{"material": stored("La", "Ce", 0.5), "method": "synthetic", "missing": ["host_radius"]}]
    row = ts.table.set_index("material").loc[stored("Pr", "Sm", 0.5)]
    assert row.host_radius == pytest.approx(1.06)  # Pr's average ionic radius (pymatgen), Å
    # the grouping property changes the snapshot: it decides the folds
    plain = build_training_set(store, target="mixing_enthalpy", features=FEATURES)
    assert plain.sha256 != ts.sha256 and "host_radius" not in plain.table.columns

    version = fit_model(store, _spec(group_by="host_radius")).version
    hosts = {a for a, _ in PAIRS}
    assert version.report["cv_scheme"] == f"LeaveOneGroupOut ({len(hosts)} groups) by host_radius"
    assert [f["name"] for f in version.features] == FEATURES
    assert "host_radius" not in version.equation_srepr and "host_radius" not in version.equation_text
    labels = {m: str(h) for m, h in zip(ts.table["material"], ts.table["host_radius"], strict=True)}
    held = _folds_hold_whole_groups(version.report, labels)
    assert len(held) == len(hosts) and version.n_rows == 20
    assert version.hyperparameters["group_by"] == "host_radius"


@pytest.mark.parametrize(("group_by", "message"), [
    ("colour", "group_by 'colour' is unknown: give material, method, chemical_system, configuration_key "
               "(per-configuration targets), a feature or orientation column, or a stored property name "
               "(matstore vocab list)"),
    ("host_radus", "group_by 'host_radus' is unknown (did you mean host_radius?): give material, method, "
                   "chemical_system, configuration_key (per-configuration targets), a feature or orientation "
                   "column, or a stored property name (matstore vocab list)"),
    ("configuration_key", "group_by 'configuration_key' is not a column of this bulk-scope training table; give "
                          "material, method, chemical_system, configuration_key (per-configuration targets), a "
                          "feature or orientation column, or a stored property name (matstore vocab list)"),
    ("mixing_enthalpy", "group_by 'mixing_enthalpy' is the target; group by material, chemical_system or another "
                        "property"),
    ("surface_energy", "group_by 'surface_energy' is a surface property and cannot group bulk-scope rows; give a "
                       "bulk property, a composition descriptor or chemical_system"),
])
def test_unknown_grouping_is_one_line_naming_what_is_accepted(store, group_by, message):
    from matstore.models.dataset import DatasetError, build_training_set

    populate_series(store)
    with pytest.raises(DatasetError) as caught:
        build_training_set(store, target="mixing_enthalpy", features=FEATURES, group_by=group_by)
    assert str(caught.value) == message


def test_cli_error_and_show_say_what_folds_and_subsamples_count(store, database_url):
    populate_series(store)
    env = server_env(database_url)
    with store.connect() as conn:
        versions_before = conn.execute(text("SELECT count(*) FROM equation_version")).scalar()
    bad = run_cli("fit", "--name", "dh", "--target", "mixing_enthalpy", "--features", *FEATURES, "--engine", "sparse",
                  "--group-by", "colour", env=env, check=False)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
    assert bad.stderr.strip().startswith("error: group_by 'colour' is unknown: give material, method, chemical_system")
    with store.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM equation_version")).scalar() == versions_before

    out = run_cli("fit", "--name", "dh", "--target", "mixing_enthalpy", "--features", *FEATURES, "--engine", "sparse",
                  "--time-budget", "20", env=env).stdout
    assert ("(nested: the whole fit re-run per fold; LeaveOneGroupOut (7 groups) by chemical_system (the default for a "
            "bulk target whose chemical systems hold several compositions))") in out
    shown = run_cli("models", "show", "dh", env=env).stdout
    assert ("cross-validation: LeaveOneGroupOut (7 groups) by chemical_system (the default for a bulk target "
            "whose chemical systems hold several compositions)") in shown
    stable = re.search(r"selected by: stable — stability selection on all rows: the max\(AICc, SICc, EBIC\) chose this form in "
                       r"(\d) of 7 subsamples \(each all rows but one fold of LeaveOneGroupOut \(7 groups\)\)", shown)
    nested = re.search(r"nested CV: (\d) of 7 held-out folds re-selected the full-data form: (.+)", shown)
    assert stable and nested
    with store.connect() as conn:
        stored = conn.execute(text("SELECT report, selection_criterion FROM equation_version")).one()
    agreement, folds = stored.report["fold_agreement"], stored.report["folds"]
    assert int(nested.group(1)) == agreement["agree"] == sum(f["same_as_full"] for f in folds)
    assert stored.selection_criterion.startswith(f"stable: max(AICc, SICc, EBIC) form chosen in {stable.group(1)} of 7 subsamples")
    others = [f["form"] for f in folds if not f["same_as_full"]]
    assert nested.group(2).startswith(agreement["full_form"])
    assert ("; the others chose " in nested.group(2)) == bool(others)


def test_selection_texts_say_what_they_count():
    from matstore.models.report import criterion_text, grouping_text, nested_agreement_text

    assert criterion_text("stable: AICc form chosen in 4 of 4 subsamples (LeaveOneGroupOut (4 groups))") == (
        "stable — stability selection on all rows: the AICc chose this form in 4 of 4 subsamples "
        "(each all rows but one fold of LeaveOneGroupOut (4 groups))")
    assert criterion_text("stable: max(AICc, SICc) form chosen in 5 of 7 subsamples (GroupKFold(7))") == (
        "stable — stability selection on all rows: the max(AICc, SICc) chose this form in 5 of 7 subsamples "
        "(each all rows but one fold of GroupKFold(7))")
    assert criterion_text("stable: max(AICc, SICc, EBIC) form chosen in 6 of 8 subsamples (LeaveOneGroupOut (8 groups)); "
                          "EBIC over a library of 731 terms") == (
        "stable — stability selection on all rows: the max(AICc, SICc, EBIC) chose this form in 6 of 8 subsamples "
        "(each all rows but one fold of LeaveOneGroupOut (8 groups)); EBIC over a library of 731 terms")
    assert criterion_text("stable:1se: complexity <= 7 by cv:1se (search repeated per fold, GroupKFold(10)); "
                          "form chosen in 6 of 7 folds") == (
        "stable:1se: complexity <= 7 by cv:1se (search repeated per fold, GroupKFold(10)); stability selection on "
        "all rows: the searches of 6 of 7 subsamples (all rows but one fold each) chose this form")
    assert criterion_text("knee") == "knee" and criterion_text(None) == ""
    folds = [{"form": "c*x", "same_as_full": True}, {"form": "c*x + c", "same_as_full": False},
             {"form": "c*x + c", "same_as_full": False}, {"form": "", "same_as_full": False}]
    agreement = {"agree": 1, "n": 4, "fraction": 0.25, "full_form": "c*x"}
    assert nested_agreement_text(agreement, folds) == (
        "nested CV: 1 of 4 held-out folds re-selected the full-data form: c*x; the others chose c*x + c (2), "
        "nothing (failed) (1)")
    assert nested_agreement_text({}, folds) == ""
    assert grouping_text("KFold(5, shuffle, random_state=0)", "material") == (
        "KFold(5, shuffle, random_state=0), not grouped: rows of one material may be in training and test folds")
    assert grouping_text("KFold(5, shuffle, random_state=0)", "material", 3) == (
        "KFold(5, shuffle, random_state=0), not grouped although 3 materials have several rows: rows of one "
        "material are in training and test folds (--group-by chemical_system holds materials out; for elements "
        "one group per element)")
    assert grouping_text("KFold(5, shuffle, random_state=0)", "material", 0) == (
        "KFold(5, shuffle, random_state=0), not grouped: every material has one row, so each fold holds out "
        "whole materials")
    assert grouping_text("LeaveOneGroupOut (3 groups) by host_radius", "host_radius") == (
        "LeaveOneGroupOut (3 groups) by host_radius")


#: Host materials of the per-configuration table: each has the same 12 arrangements 3v:0 … 3v:11.
HOSTS = {"MoS2": 0.0, "WSe2": 0.4, "BN": -0.3}
KEYS = [f"3v:{i}" for i in range(12)]


def populate_configurations(engine, *, hosts: dict[str, float] = HOSTS, noise: float = 0.0,
                            source_hash: str = "8" * 64) -> None:
    """Store ``formation_energy`` (eV) and ``d_vv_1`` (Å) of every key of :data:`KEYS` in every host of ``hosts``.

    formation_energy = 1.5·d_vv_1 + the host's offset (``hosts``: host → offset, eV) + ``noise``·(−1)^i
    for the i-th key; d_vv_1 differs between hosts for one key.
    """
    run = crud.start_job_run(engine=engine, kind="test", parameters={})
    with Session(engine) as s:
        crud.add_definition(session=s, name="d_vv_1", unit="angstrom", scope="configuration", job_run_id=run)
        method = crud.get_or_create_method(session=s, name="synthetic", kind="model")
        source = crud.claim_source(session=s, kind="computation", sha256=source_hash)
        for h, (host, offset) in enumerate(hosts.items()):
            material = crud.get_or_create_material(session=s, formula=host)
            values = {key: {"d_vv_1": 3.0 + 0.1 * i + 0.05 * h,
                            "formation_energy": 1.5 * (3.0 + 0.1 * i + 0.05 * h) + offset + noise * (-1) ** i}
                      for i, key in enumerate(KEYS)}
            crud.add_configuration_values(session=s, material_id=material, method_id=method, source_id=source,
                                          job_run_id=run, values=values)
        s.commit()


def test_group_by_configuration_key_holds_out_one_configuration_of_one_material(store):
    """``--group-by configuration_key``: 3v:17 of MoS2 and 3v:17 of BN are two groups, labelled ``MoS2 [3v:17]``."""
    from matstore.models.report import grouping_text
    from matstore.models.service import fit_model

    populate_configurations(store)
    version = fit_model(store, _spec(name="tmd3v", target="formation_energy", features=["d_vv_1"],
                                     group_by="configuration_key")).version
    report = version.report
    assert version.n_rows == 36
    assert report["cv_scheme"] == "GroupKFold(10) by configuration"
    held = [label for f in report["folds"] for label in f["held_out"]]
    expected = {f"{host} [{key}]" for host in HOSTS for key in KEYS}
    assert sorted(held) == sorted(expected)  # each configuration of each host in exactly one fold (≤ 4 per fold)
    assert {g["group"] for g in report["per_group"]} == expected and all(g["n"] == 1 for g in report["per_group"])
    assert grouping_text(report["cv_scheme"], "configuration_key") == (
        "GroupKFold(10) by configuration: one configuration of one material per group, e.g. MoS2 [3v:17] "
        "(--group-by configuration_key)")
    # a version fitted before: one group per bare key, the same key of every host held out together
    assert grouping_text("GroupKFold(10) by configuration_key", "configuration_key") == (
        "GroupKFold(10) by configuration_key: each configuration key held out in every material that has it "
        "together (as fitted before configurations were grouped per material)")
    assert version.hyperparameters["group_by"] == "configuration_key"
