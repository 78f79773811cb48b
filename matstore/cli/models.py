"""``matstore fit``, ``refit``, ``predict`` and ``models list|show|transfer|promote``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from matstore.cli.common import cli_errors, console, engine

models_app = typer.Typer(help="Equation models: list, show, transfer, promote.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``fit``, ``refit``, ``predict`` and the ``models`` group to ``app``."""
    app.command("fit")(fit)
    app.command("refit")(refit)
    app.command("predict")(predict)
    app.add_typer(models_app, name="models")


def fit(
    name: str | None = typer.Option(None, "--name", help="Model name."),
    target: str | None = typer.Option(None, help="Target property, e.g. surface_energy."),
    features: list[str] | None = typer.Option(None, "--features", help="Bulk property names (repeat or space-separate)."),
    method: list[str] | None = typer.Option(None, "--method", help="Method name(s) or LIKE pattern(s); default all."),
    prototype: list[str] | None = typer.Option(
        None, "--prototype", help="Crystal prototype(s) as stored (material.prototype, e.g. Fm-3m, fcc); repeat it; "
                                  "default all."),
    factorize: str | None = typer.Option(None, help="'orientation' fits y = C(bulk)·g(orientation)."),
    engine_name: str | None = typer.Option(None, "--engine", help="operon (default), pysr, sparse or eql."),
    time_budget: float | None = typer.Option(
        None, help="Seconds for the whole fit, every cross-validation fold included (default 60)."),
    seed: int | None = typer.Option(None, help="Random seed."),
    selection: str | None = typer.Option(
        None, help="Criterion (factorised fits: of g): stable (default), stable:1se (default for g), aicc, knee, best, "
                   "within:5%, cv:5%, cv:1se, min_loss."),
    coefficient_form: str | None = typer.Option(
        None, help="auto, scaling or free. Factorised fits: the form of C(bulk) (auto: a scaling law when units "
                   "allow). Direct fits: scaling fits y = k·Π x_i^p_i with y's units (auto, free: the engine's search)."),
    coefficient_selection: str | None = typer.Option(None, help="Factorised fits: criterion for C(bulk), default stable:1se."),
    coefficient_terms: int | None = typer.Option(
        None, help="Most monomials in a scaling law, C(bulk) or a direct fit's y (default 1: k·Π x_i^p_i)."),
    products: int | None = typer.Option(
        None, help="Factorised fits: most products s_j(bulk)·g_j(orientation) in the sum (default 1; 2 for targets "
                   "such as surface stress and stiffness that are not one product)."),
    n_splits: int | None = typer.Option(
        None, "--n-splits", help="Cross-validation folds (default: leave one material out, up to 20 materials)."),
    group_by: str | None = typer.Option(
        None, "--group-by", help="What CV folds hold out together: material (default), method, chemical_system "
                                 "(e.g. Ce-La-O-P), configuration_key, a feature, or any stored property (not an input)."),
    interval_level: float | None = typer.Option(
        None, "--interval-level", help="Level of the stored cross-conformal prediction interval (default 0.9)."),
    spec_file: Path | None = typer.Option(None, "--spec", help="YAML file with the same fields."),
    promote_to: str | None = typer.Option(None, "--promote", help="Alias to point at the new version."),
) -> None:
    """Fit a symbolic equation from the store and store it as a new version."""
    from matstore.models.service import fit_model
    from matstore.models.spec import FitSpec

    fields = dict(name=name, target=target, features=_split(features), methods=method, prototypes=prototype,
                  factorize=factorize, engine=engine_name, time_budget=time_budget, seed=seed, selection=selection,
                  coefficient_form=coefficient_form, coefficient_selection=coefficient_selection,
                  coefficient_terms=coefficient_terms, products=products, n_splits=n_splits,
                  group_by=group_by, interval_level=interval_level)
    with cli_errors():
        spec = FitSpec.from_yaml(spec_file, **fields) if spec_file else FitSpec(**{k: v for k, v in fields.items() if v is not None})
        searched = "sparse, scaling law" if spec.coefficient_form == "scaling" and not spec.factorize else spec.engine
        with console.status(escape(f"fitting {spec.name} ({searched}, {spec.time_budget:g} s budget, CV folds included)")):
            outcome = fit_model(engine(), spec)
        if promote_to and outcome.version is not None:
            from matstore.models.versioning import promote

            promote(engine(), name=spec.name, version=outcome.version.version, alias=promote_to)
    _report_outcome(spec.name, outcome)
    if group_by == "material":
        _warn_ungrouped_bulk(spec.target, outcome.version)


def refit(name: str = typer.Argument(..., help="Model to refit with its stored spec.")) -> None:
    """Re-run a model's stored spec; a new version only when data or spec changed."""
    from matstore.models.service import refit_model

    with cli_errors(), console.status(escape(f"refitting {name}")):
        outcome = refit_model(engine(), name)
    _report_outcome(name, outcome)


def predict(
    ref: str = typer.Argument(..., help="NAME, NAME:VERSION or NAME@ALIAS"),
    more_values: list[str] | None = typer.Argument(
        None, metavar="NAME=VALUE", show_default=False,
        help="More inputs after one --set: --set lattice_constant=3.84 cohesive_energy=6.94."),
    material: str = typer.Option(..., help="Material formula, e.g. Cu or La0.5Y0.5PO4 (need not be stored)."),
    method: str | None = typer.Option(
        None, help="Method whose stored values are the inputs, e.g. emt; not needed when --set and the formula "
                   "give every input."),
    prototype: str | None = typer.Option(
        None, "--prototype", help="Crystal prototype as stored (material.prototype, e.g. Im-3m) of the material whose "
                                  "values are read, for a formula stored under several (e.g. Fe as Im-3m and Fm-3m)."),
    hkl: tuple[int, int, int] | None = typer.Option(None, "--hkl", help="Miller index h k l."),
    normal: tuple[float, float, float] | None = typer.Option(
        None, "--normal", help="Surface normal x y z (any length and octant)."),
    angles: tuple[float, float] | None = typer.Option(
        None, "--angles", help="THETA PHI in degrees: θ from [100], φ about [100] from (001), in the standard triangle."),
    configuration: str | None = typer.Option(
        None, "--configuration", help="Key of a material configuration, for per-configuration models (e.g. V3:0.7071-0.7071-1.0000)."),
    set_values: list[str] | None = typer.Option(
        None, "--set", help="Give or override an input of the equation: NAME=VALUE (canonical unit); repeat it, or "
                            "give several after one --set."),
) -> None:
    """Evaluate a stored equation and print the value with unit and prediction interval.

    Only the inputs the equation uses are needed; composition descriptors are computed from
    ``--material``'s formula, and ``--method`` is needed only for inputs read from the store.
    A surface model needs one of ``--hkl``, ``--normal`` or ``--angles``.  The ± is the
    half-width of the version's cross-conformal interval (its level in brackets): in the
    target unit, or in percent of the value for a relative interval (``value·(1 ± q)``,
    factorised fits of a positive target); the residual σ for versions fitted without one.
    An input outside its training range, an orientation the fit never saw, or a stored material
    of a crystal prototype the fit did not train on, is predicted with one ``warning:`` line each
    on stderr (by how much): the interval is not calibrated there.  A formula stored under several
    prototypes is read as the one ``--prototype`` names; without it, reading its stored inputs is
    refused (they could mix structures).
    Unknown ``--set`` names or methods, non-finite or out-of-range (wrong sign) inputs are
    refused with a one-line error (exit status 1).
    """
    from matstore.cli.common import err_console
    from matstore.db import reader_engine
    from matstore.models.service import predict as run_predict

    with cli_errors():
        ref, overrides = _reference_and_assignments(ref, set_values, more_values)
        result = run_predict(reader_engine(), ref, material=material, method=method, miller=hkl, normal=normal,
                             angles=angles, configuration=configuration, overrides=overrides, prototype=prototype)
    where = f" ({prototype})" if prototype else ""
    where += f" {result.orientation.label}" if result.orientation is not None else ""
    where += f" [{configuration}]" if configuration else ""
    where += f" [{result.method}]" if result.method is not None else ""
    # escape: "[method]" is user text, not Rich markup (unescaped, a lower-case method vanished)
    console.print(escape(f"{result.model}:{result.version}  {material}{where}: ")
                  + f"[bold]{escape(_value_text(result))}[/]{escape(_interval_note(result))}", highlight=False)
    for line in result.warnings:  # on stderr: stdout keeps the one line a script reads
        err_console.print("  [yellow]warning:[/] " + escape(line), highlight=False, soft_wrap=True)


def _value_text(result) -> str:  # noqa: ANN001
    """``1.234 ± 0.05 J/m^2`` (absolute interval or residual σ) or ``1.234 J/m^2 ± 9.5 %`` (relative)."""
    if result.upper is not None and result.relative_width is not None:
        return f"{result.value:.4g} {result.unit} ± {_percent(result.relative_width)}"
    return f"{result.value:.4g}{_spread(result)} {result.unit}"


def _spread(result) -> str:  # noqa: ANN001
    if result.upper is not None:
        return f" ± {result.upper - result.value:.3g}"
    return f" ± {result.uncertainty:.3g}" if result.uncertainty is not None else ""


def _percent(fraction: float) -> str:
    """A relative half-width as the CLI prints it: 0.095 → ``9.5 %``."""
    return f"{100 * fraction:.3g} %"


def _width_text(half_width: float | None, relative_half_width: float | None, unit: str) -> str | None:
    """``± 0.12 J/m^2`` (absolute interval), ``± 9.5 %`` (relative), or None without a width."""
    if half_width is not None:
        return f"± {half_width:.3g} {unit}"
    return f"± {_percent(relative_half_width)}" if relative_half_width is not None else None


def _interval_note(result) -> str:  # noqa: ANN001
    if result.upper is None or result.level is None:
        return " (residual σ)" if result.uncertainty is not None else ""
    return f" ({result.level:.0%} prediction interval {result.lower:.4g} to {result.upper:.4g})"


@models_app.command("list")
def list_models() -> None:
    """List equation models with their versions and aliases."""
    from matstore.db import reader_engine
    from matstore.models.versioning import list_models as run_list

    with cli_errors():
        rows = run_list(reader_engine())
    table = Table("model", "target", "unit", "versions", "latest", "aliases")
    for r in rows:
        table.add_row(*(escape(str(x)) for x in (r["name"], r["target"], r["target_unit"], r["versions"],
                                                  r["latest"] or "", r["aliases"] or "")))
    console.print(table)


@models_app.command("show")
def show(ref: str = typer.Argument(..., help="NAME, NAME:VERSION or NAME@ALIAS")) -> None:
    """Print an equation (text and LaTeX), its metrics, parts and lineage."""
    from sqlmodel import Session

    from matstore.db import reader_engine
    from matstore.models.report import criterion_text, methods_lines, parts_lines, prototypes_lines
    from matstore.models.versioning import aliases_of, lineage, resolve

    with cli_errors(), Session(reader_engine()) as session:
        v = resolve(session, ref)
        aliases, chain = aliases_of(session, v), lineage(session, v)
        repeated = _repeated_materials(session, v.id)
    console.print(f"[bold]{escape(ref)}[/] → version {v.version} ({escape(', '.join(aliases) or 'no alias')}); "
                  f"lineage {' ← '.join(map(str, chain))}")
    _print_equation(v.target_unit, v.equation_text)
    console.print(f"  LaTeX: {v.equation_latex}", markup=False, highlight=False)
    for line, how in parts_lines(v.parts):
        console.print(f"  {escape(line)}" + (f"  [dim]({escape(how)})[/]" if how else ""))
    console.print(f"  selected by: {criterion_text(v.selection_criterion)}; engine {v.engine}; seed {v.seed}; "
                  f"rows {v.n_rows}", markup=False, highlight=False)
    _print_lines(methods_lines((v.report or {}).get("rows_per_method")))
    _print_lines(prototypes_lines((v.report or {}).get("materials_per_prototype"),
                                  bool((v.hyperparameters or {}).get("factorize"))))
    console.print(f"  dimensions: {v.dimension_check}", markup=False)
    console.print(f"  data snapshot sha256 {v.dataset_sha256[:16]}…  residual σ {v.residual_std}")
    _show_report(v.report or {}, v.target_unit, (v.hyperparameters or {}).get("group_by"), repeated, v.engine)
    table = Table("metric", "value")
    for key, value in sorted((v.metrics or {}).items()):
        table.add_row(escape(key), f"{value:.4g}" if isinstance(value, float) else escape(str(value)))
    console.print(table)


def _print_lines(lines: list[str]) -> None:
    """Report lines (:func:`matstore.models.report.methods_lines`, :func:`~matstore.models.report.prototypes_lines`),
    indented, as plain text.

    The prototypes line is printed for a fit of one prototype too (``prototypes: Fm-3m (7
    materials)``): which cell the model knows is part of what it is.
    """
    for line in lines:
        console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)


def _print_notes(report: dict) -> None:
    """The report's notes (2-group estimate, inner-CV fallback) and its failed folds, one line each."""
    from matstore.models.report import cv_notes, failure_lines

    for line in cv_notes(report):
        console.print(f"  note: {line}", markup=False, highlight=False, soft_wrap=True)
    for line in failure_lines(report):
        console.print("  [yellow]warning:[/] " + escape(line), highlight=False, soft_wrap=True)


def _print_time(report: dict, engine_name: str | None) -> None:
    """Wall time against the budget, the least time of an overrun, and a budget the engine ignores."""
    from matstore.models.report import time_lines

    for line in time_lines(report, engine_name):
        console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)


def _print_equation(unit: str, equation: str) -> None:
    """``  y [eV] = …``: the unit and equation as text, not Rich markup (``[eV]`` is no style tag)."""
    console.print(f"  y [{unit}] = {equation}", markup=False)


def _repeated_materials(session, version_id: int) -> int:  # noqa: ANN001
    """How many materials have more than one training row (e.g. one per method) in version ``version_id``.

    Counted from the version's stored predictions (one per training row), so versions fitted
    before this count was shown have it too.
    """
    from sqlalchemy import func, select

    from matstore.schema import EquationPrediction

    per_material = (select(EquationPrediction.material_id).where(EquationPrediction.version_id == version_id)
                    .group_by(EquationPrediction.material_id).having(func.count() > 1).subquery())
    return int(session.execute(select(func.count()).select_from(per_material)).scalar_one())


def _warn_ungrouped_bulk(target: str, version) -> None:  # noqa: ANN001
    """Warn when an explicit ``--group-by material`` left a bulk target's folds ungrouped (shuffled KFold).

    ``FitSpec.group_by`` defaults to ``material``, and for a bulk target of one composition per
    chemical system that default means shuffled folds (:func:`matstore.models.service._cv_groups`);
    a user who asked for material grouping is told what the folds did and how to hold materials out.
    """
    from sqlalchemy import select
    from sqlmodel import Session

    from matstore.models.report import grouping_text
    from matstore.schema import PropertyDefinition

    scheme = (version.report or {}).get("cv_scheme") or (version.metrics or {}).get("cv_scheme") or ""
    if not scheme or " by " in scheme or (version.report or {}).get("cv_grouping"):
        return  # grouped, or fitted with the reason stored (printed with the nested R²)
    with Session(engine()) as session:
        scope = session.execute(select(PropertyDefinition.scope).where(PropertyDefinition.name == target)).scalar()
        if scope is None or scope in ("surface", "configuration"):
            return
        repeated = _repeated_materials(session, version.id)
    console.print("  [yellow]warning:[/] " + escape(f"--group-by material did not group the folds of bulk target "
                                                     f"{target}: {grouping_text(scheme, 'material', repeated)}"),
                  highlight=False, soft_wrap=True)


def _fmt(value, spec: str = ".3f") -> str:  # noqa: ANN001
    return "—" if value is None else format(value, spec)


def _show_report(report: dict, unit: str, group_by: str | None = None, repeated: int | None = None,
                 engine_name: str | None = None) -> None:
    """Grouping and folds, nested and fixed-form CV, notes and failed folds, fold agreement, the discrepancy
    note, folds, groups, interval, time against the budget."""
    if not report:
        console.print("  [dim]no fit report (version fitted before reports were stored)[/]")
        return
    from matstore.models.report import (
        ceiling_text,
        nested_agreement_text,
        per_fold_r2_text,
        pooled_text,
        scheme_text,
    )
    nested, fixed, agree = report["nested_cv"], report["fixed_form_cv"], report["fold_agreement"]
    console.print(f"  cross-validation: {scheme_text(report, group_by, repeated)}", markup=False,
                  highlight=False, soft_wrap=True)
    console.print(f"  nested CV (whole procedure re-run per fold): R² {_fmt(nested['r2'])}, "
                  f"RMSE {_fmt(nested['rmse'], '.3g')} {unit}, {pooled_text(nested.get('n_folds'))}", markup=False,
                  soft_wrap=True)
    _print_lines([line for line in [per_fold_r2_text(report)] if line])
    console.print(f"  fixed-form CV (selected form, constants refitted per fold): R² {_fmt(fixed['r2'])}, "
                  f"RMSE {_fmt(fixed['rmse'], '.3g')} {unit}", markup=False)
    _print_notes(report)
    console.print(f"  {nested_agreement_text(agree, report.get('folds'))}", markup=False, highlight=False)
    if ceiling_text(report):
        console.print(f"  ceiling: {ceiling_text(report)}", markup=False, highlight=False)
    if report.get("discrepancy"):
        console.print(f"  [yellow]{escape(report['discrepancy'])}[/]", highlight=False)
    folds = Table("fold", "held out", "selected form", "nested R²", "fixed-form R²")
    for f in report.get("folds", []):
        held_out = ", ".join(f["held_out"]) or f"{f.get('n_test', '?')} rows (ungrouped folds)"
        folds.add_row(str(f["fold"]), escape(held_out[:40]),
                      escape(f["form"][:60] + ("" if f["same_as_full"] else " ≠")),
                      _fmt(f.get("nested_r2")), _fmt(f.get("fixed_form_r2")))
    console.print(folds)
    _show_groups(report.get("per_group", []), unit)
    _show_interval(report.get("interval", {}), unit)
    _print_time(report, engine_name)


#: Groups the per-group table of ``models show`` lists (the worst); the rest are counted below it.
SHOWN_GROUPS = 10


def _show_groups(groups: list, unit: str) -> None:
    """The per-group errors, worst first: the first :data:`SHOWN_GROUPS` rows, then ``… 2 more groups (all 12
    in the stored report: per_group)`` when there are more (they were cut without a word)."""
    if not groups:
        return
    table = Table("group (worst first)", "rows", escape(f"RMSE ({unit})"), "mean rel. error", "R²")
    for g in groups[:SHOWN_GROUPS]:
        table.add_row(escape(str(g["group"])), str(g["n"]), _fmt(g["rmse"], ".3g"), _fmt(g["mean_relative_error"], ".1%"), _fmt(g["r2"]))
    console.print(table)
    more = len(groups) - SHOWN_GROUPS
    if more > 0:
        console.print(f"  … {more} more group{'s' if more > 1 else ''} (all {len(groups)} in the stored report: "
                      "per_group)", markup=False, highlight=False)


def _show_interval(interval: dict, unit: str) -> None:
    from matstore.models.report import coverage_text

    width = _width_text(interval.get("half_width"), interval.get("relative_half_width"), unit)
    if width is not None:
        console.print(f"  {interval['level']:.0%} prediction interval: {width} "
                      f"({interval['method']}); coverage on held-out groups {coverage_text(interval)}", markup=False)
    elif interval.get("error"):
        console.print(f"  no prediction interval: {interval['error']}", markup=False, highlight=False)


@models_app.command("transfer")
def transfer(refs: list[str] = typer.Argument(..., help="Two or more NAME, NAME:VERSION or NAME@ALIAS of one target.")) -> None:
    """R² of each equation on every other model's training data, not refitted (rows: equations).

    Runs as a login that can only read (:func:`matstore.db.reader_engine`), as ``matstore sql`` does.
    """
    from matstore.db import reader_engine
    from matstore.models.transfer import stored_equations, transfer_matrix

    with cli_errors():
        eng = reader_engine()
        matrix = transfer_matrix(eng, stored_equations(eng, refs))
    table = Table("equation ↓ / data of →", *(escape(str(c)) for c in matrix.columns),
                  title="R² without refitting (diagonal: training R²)")
    for name, row in matrix.iterrows():
        table.add_row(escape(str(name)), *("—" if value != value else f"{value:.3f}" for value in row))
    console.print(table)


@models_app.command("promote")
def promote_cmd(
    name: str = typer.Argument(...), version: int = typer.Argument(...), alias: str = typer.Argument(..., help="e.g. production"),
) -> None:
    """Point ALIAS of model NAME at VERSION."""
    from matstore.models.versioning import promote

    with cli_errors():
        promote(engine(), name=name, version=version, alias=alias)
    console.print(f"{name}@{alias} → version {version}", markup=False)


def _print_descriptor_notes(notes: tuple[str, ...]) -> None:
    """Materials whose composition descriptors used a fallback: the first line and a count (all in the job run)."""
    if notes:
        n = len(notes) - 1
        more = f" (and {n} more material{'s' if n > 1 else ''}; job run summary: descriptor_notes)" if n else ""
        console.print(f"  [yellow]note:[/] {escape(notes[0])}{more}")


def _report_outcome(name: str, outcome) -> None:  # noqa: ANN001
    """The fit or refit summary: version, reason, methods, conflicts, equation with unit, CV scores with the
    folds and why, notes and failed folds, interval, time against the budget (user text escaped)."""
    from matstore.models.report import (
        all_folds_failed,
        methods_lines,
        per_fold_r2_text,
        pooled_text,
        prototypes_lines,
        scaling_hint_lines,
        scheme_text,
    )

    v = outcome.version
    verb = "created" if outcome.created else "no new version"
    console.print(f"{name}: {verb} (version {v.version}): {outcome.reason}; {outcome.n_rows} rows, "
                  f"{outcome.dropped} dropped for missing features", markup=False)
    report = v.report or {}
    _print_lines(methods_lines(getattr(outcome, "rows_per_method", None) or report.get("rows_per_method")))
    _print_lines(prototypes_lines(getattr(outcome, "materials_per_prototype", None)
                                  or report.get("materials_per_prototype"),
                                  bool((getattr(v, "hyperparameters", None) or {}).get("factorize"))))
    for line in outcome.conflicts[:3]:
        console.print(f"  [yellow]warning:[/] conflicting stored values: {escape(line)}")
    if len(outcome.conflicts) > 3:
        console.print(f"  [yellow]warning:[/] {len(outcome.conflicts) - 3} more keys with conflicting values "
                      "(job run summary: conflicting_values)")
    _print_descriptor_notes(getattr(outcome, "descriptor_notes", ()))
    _print_equation(v.target_unit, v.equation_text)
    _print_lines(scaling_hint_lines(getattr(v, "dimension_check", None), getattr(v, "features", None),
                                    v.target_unit, getattr(v, "hyperparameters", None)))
    cv = (v.metrics or {}).get("cv_r2")
    scheme = scheme_text(report) if report else (v.metrics or {}).get("cv_scheme", "")
    if cv is not None:
        pooled = pooled_text((v.metrics or {}).get("cv_n_splits"))
        console.print(f"  cross-validated R² = {cv:.3f}, {pooled} (nested: the whole fit re-run per fold; {scheme})",
                      markup=False, highlight=False, soft_wrap=True)
        _print_lines([line for line in [per_fold_r2_text(report)] if line])
    elif report and all_folds_failed(report):
        console.print(f"  cross-validated R² not available: every nested-CV fold failed ({scheme})",
                      markup=False, highlight=False, soft_wrap=True)
    if report:
        from matstore.models.report import agreement_text
        _print_notes(report)
        agree = report["fold_agreement"]
        console.print(f"  fixed-form R² = {_fmt(report['fixed_form_cv']['r2'])}; {agreement_text(agree)}", markup=False)
        width = _width_text(v.interval_half_width, v.interval_relative_half_width, v.target_unit)
        if width is not None:
            console.print(f"  {v.interval_level:.0%} prediction interval {width}", markup=False)
        _print_time(report, v.engine)


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [part for value in values for part in value.replace(",", " ").split()]


def _reference_and_assignments(ref: str, set_values: list[str] | None,
                               more_values: list[str] | None) -> tuple[str, dict[str, float]]:
    """The model reference and the inputs (:func:`_assignments`) of ``predict``'s words.

    Click gives the first word that is no option's value to ``ref``: in ``predict --set a=1 b=2
    MODEL`` that is ``b=2``.  A reference never holds ``=``, so such a ``ref`` is an input and
    the one other word is the reference.

    Raises
    ------
    ValueError
        No word or several words that could be the reference (one line).
    """
    if "=" not in ref:
        return ref, _assignments(set_values, more_values)
    words = [ref, *(more_values or [])]
    refs = [w for w in words if "=" not in w]
    if len(refs) != 1:
        raise ValueError(f"give one model reference (NAME, NAME:VERSION or NAME@ALIAS), got "
                         f"{', '.join(map(repr, refs)) or 'none'} among {' '.join(words)}")
    return refs[0], _assignments(set_values, [w for w in words if "=" in w])


def _assignments(set_values: list[str] | None, more_values: list[str] | None) -> dict[str, float]:
    """The inputs given on the command line, by name: ``--set`` values (repeated, or several in one
    value, ``--set "a=1 b=2"``) and the ``NAME=VALUE`` words after one ``--set``.

    Raises
    ------
    ValueError
        A word that is not ``NAME=VALUE``, a value that is no number, or a name given twice (one line).
    """
    words = [w for value in set_values or [] for w in (value.replace(",", " ").split() if value.count("=") > 1
                                                         else [value])]
    for word in more_values or []:
        if "=" not in word:
            raise ValueError(f"unexpected argument {word!r}: give inputs as --set NAME=VALUE (several may follow "
                             "one --set)")
        words.append(word)
    pairs = [_parse_assignment(w) for w in words]
    names = [name for name, _ in pairs]
    twice = next((name for name in names if names.count(name) > 1), None)
    if twice is not None:
        raise ValueError(f"--set {twice} is given twice")
    return dict(pairs)


def _parse_assignment(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"--set expects NAME=VALUE, got {text!r}")
    try:
        return name.strip(), float(value)
    except ValueError:
        raise ValueError(f"--set {text!r}: {value.strip()!r} is not a number") from None
