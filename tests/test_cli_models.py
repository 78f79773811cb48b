"""``matstore fit / models / predict / refit`` through the real command line."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import text

from tests.test_cli_db import run_cli, server_env
from tests.test_models_store import populate, true_gamma


def test_fit_show_promote_predict_refit(engine, database_url: str, tmp_path) -> None:
    populate(engine)
    env = server_env(database_url)
    out = run_cli("fit", "--name", "g", "--target", "surface_energy", "--features", "lattice_constant",
                  "cohesive_energy", "c44", "--method", "synth", "--factorize", "orientation", "--engine", "sparse",
                  "--seed", "0", "--selection", "knee", "--group-by", "material", "--interval-level", "0.9",
                  env=env).stdout
    assert "created (version 1)" in out
    assert "cross-validated R²" in out and "fixed-form R²" in out and "7 of 7 folds selected the full-data form (C: 7 of 7, g: 7 of 7, every fold's g within" in out

    listing = run_cli("models", "list", env=env).stdout
    assert "g" in listing and "surface_energy" in listing

    run_cli("models", "promote", "g", "1", "production", env=env)
    shown = run_cli("models", "show", "g@production", env=env).stdout
    assert "version 1 (production)" in shown
    assert "LaTeX" in shown and "coefficient" in shown and "orientation" in shown
    # C = γ(111) = 0.4 · 16.02/√3 · E_c/a² = 3.700 E_c/a², found as a one-term scaling law
    coefficient_line = next(line for line in shown.splitlines() if line.strip().startswith("coefficient:"))
    assert "*cohesive_energy/lattice_constant**2" in coefficient_line and "form scaling" in coefficient_line
    assert float(coefficient_line.split(":")[1].split("*")[0]) == pytest.approx(0.4 * 16.0217663 / 3**0.5, rel=1e-3)
    assert "dimensions: consistent" in shown

    predicted = run_cli("predict", "g@production", "--material", "Cu", "--method", "synth", "--hkl", "5", "3", "1",
                        env=env).stdout
    value = float(predicted.split(":")[-1].split("J/m^2")[0].strip())
    assert value == pytest.approx(true_gamma(3.615, 3.54, (5, 3, 1)), rel=0.02)
    assert "90% prediction interval" in predicted
    # factorised γ > 0: a relative interval, value·(1 ± q), printed as a percentage
    percent = float(re.search(r"J/m\^2 ± ([0-9.e+-]+) %", predicted).group(1))
    low, high = map(float, re.search(r"interval ([0-9.]+) to ([0-9.]+)", predicted).groups())
    assert (low, high) == pytest.approx((value * (1 - percent / 100), value * (1 + percent / 100)), rel=2e-3)
    # nested and fixed-form CV, fold agreement and the interval are shown
    nested = re.search(r"nested CV \(whole procedure re-run per fold\): R² ([0-9.]+)", shown)
    fixed = re.search(r"fixed-form CV \(selected form, constants refitted per fold\): R² ([0-9.]+)", shown)
    assert float(nested.group(1)) > 0.99 and float(fixed.group(1)) > 0.99
    agreement = re.search(r"nested CV: 7 of 7 held-out folds re-selected the full-data form \(C: 7 of 7, g: 7 of 7, "
                          r"every fold's g within ([0-9.e-]+)×rms\(g\) of the full-data g\): "
                          r"\(c\*cohesive_energy/lattice_constant\*\*2\)\*\(", shown)
    assert agreement and float(agreement.group(1)) < 0.02
    ceiling = re.search(r"ceiling: no C\(bulk\)·g\(orientation\) can exceed training R² ([0-9.]+) on these rows, "
                        r"a sum of two such products C₁·g₁ \+ C₂·g₂ ([0-9.]+)", shown)
    assert ceiling and 0.99 < float(ceiling.group(1)) <= float(ceiling.group(2))  # the synthetic γ is a product C·g
    assert re.search(r"90% prediction interval: ± [0-9.e+-]+ %", shown)
    assert "coverage on held-out groups" in shown
    assert re.search(r"90% prediction interval ± [0-9.e+-]+ %", out)  # the fit's own summary
    for bad, reason in (("cohesive_energy=nan", "cohesive_energy = nan is not a finite number"),
                        ("cohesive_energy=-5", "cohesive_energy = -5 is out of range"),
                        ("lattice_constant=0", "lattice_constant = 0 is out of range")):
        refused = run_cli("predict", "g@production", "--material", "Cu", "--method", "synth", "--hkl", "1", "1", "1",
                          "--set", bad, env=env, check=False)
        assert refused.returncode == 1 and reason in refused.stderr and "±" not in refused.stdout
        assert len(refused.stderr.strip().splitlines()) == 1

    assert "no new version" in run_cli("refit", "g", env=env).stdout


def test_fit_coefficient_form_and_folds_flags(engine, database_url: str) -> None:
    populate(engine)
    env = server_env(database_url)
    run_cli("fit", "--name", "free_c", "--target", "surface_energy", "--features", "lattice_constant", "cohesive_energy",
            "--method", "synth", "--factorize", "orientation", "--engine", "sparse", "--coefficient-form", "free",
            "--coefficient-selection", "cv:5%", "--n-splits", "3", "--selection", "knee", env=env)
    shown = run_cli("models", "show", "free_c", env=env).stdout
    assert "form free" in shown and "selected by cv:5%" in shown and "GroupKFold(3)" in shown
    # transfer: each equation on the other's training data; the diagonal is its training R²
    run_cli("fit", "--name", "law_c", "--target", "surface_energy", "--features", "lattice_constant", "cohesive_energy",
            "--method", "synth", "--factorize", "orientation", "--engine", "sparse", "--n-splits", "3",
            "--selection", "knee", env=env)
    out = run_cli("models", "transfer", "free_c", "law_c@production", "law_c", env=env, check=False)
    assert out.returncode == 1 and "no such version or alias" in out.stderr  # law_c was not promoted
    table = run_cli("models", "transfer", "free_c", "law_c", env=env).stdout
    with engine.connect() as conn:
        train = dict(conn.execute(text("SELECT m.name, (v.metrics->>'train_r2')::float FROM equation_version v "
                                       "JOIN equation_model m ON m.id = v.model_id")).all())
    rows = {line.split("│")[1].strip(): [float(x) for x in line.split("│")[2:4]]
            for line in table.splitlines() if line.startswith("│")}
    assert rows["free_c"][0] == pytest.approx(train["free_c"], abs=1e-3)
    assert rows["law_c"][1] == pytest.approx(train["law_c"], abs=1e-3)
    assert rows["free_c"][1] == pytest.approx(rows["free_c"][0], abs=1e-3)  # the same synthetic rows
    run_cli("fit", "--name", "sum_c", "--target", "surface_energy", "--features", "lattice_constant", "cohesive_energy",
            "--method", "synth", "--factorize", "orientation", "--engine", "sparse", "--n-splits", "3",
            "--products", "2", env=env)
    shown = run_cli("models", "show", "sum_c", env=env).stdout
    assert "product 1: (cohesive_energy/lattice_constant**2) · (" in shown  # γ is one product: the rule keeps one
    assert "products: 1" in shown and "1-SE rule on the number of products" in shown
    bad = run_cli("fit", "--name", "bad_c", "--target", "surface_energy", "--features", "lattice_constant",
                  "--factorize", "orientation", "--coefficient-selection", "cv:lots", env=env, check=False)
    assert bad.returncode == 1 and "unknown selection criterion 'cv:lots'" in bad.stderr


def test_fit_from_yaml_spec(engine, database_url: str, tmp_path) -> None:
    populate(engine)
    spec = tmp_path / "spec.yaml"
    # knee and three folds keep the fit to seconds (the default stable:1se over 7 folds took 20 s)
    spec.write_text("name: from_yaml\ntarget: surface_energy\nfeatures: [lattice_constant, cohesive_energy]\n"
                    "methods: [synth]\nfactorize: orientation\nengine: sparse\nseed: 1\nselection: knee\nn_splits: 3\n")
    out = run_cli("fit", "--spec", str(spec), "--coefficient-terms", "2", env=server_env(database_url)).stdout
    assert "from_yaml: created (version 1)" in out
    with engine.connect() as conn:  # the YAML's fields are the stored spec
        stored = conn.execute(text("SELECT spec FROM equation_model WHERE name = 'from_yaml'")).scalar_one()
    assert (stored["selection"], stored["n_splits"], stored["seed"], stored["engine"]) == ("knee", 3, 1, "sparse")
    assert stored["coefficient_terms"] == 2  # a flag overrides the file


def test_bad_spec_is_a_clear_error(engine, database_url: str, tmp_path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: x\ntarget: surface_energy\nfeatures: []\nunknown_field: 1\n")
    proc = run_cli("fit", "--spec", str(spec), env=server_env(database_url), check=False)
    assert proc.returncode == 1
    assert "bad.yaml" in proc.stderr and "invalid fit spec" in proc.stderr
