"""``matstore pipeline``: migrate, compute, ingest, fit, promote, report."""

from __future__ import annotations

import typer
from rich.table import Table

from matstore.cli.common import cli_errors, console, engine


def register(app: typer.Typer) -> None:
    """Add ``pipeline`` to ``app``."""
    app.command("pipeline")(pipeline)


def pipeline(
    elements: list[str] | None = typer.Option(None, "--elements", help="FCC metals (default: Ag Al Au Cu Ni Pd Pt)."),
    max_index: int = typer.Option(3, help="Largest |h|,|k|,|l| of the computed surfaces."),
    calculator: list[str] | None = typer.Option(None, "--calculator", help="Calculators (default: emt lammps)."),
    workers: int = typer.Option(2, help="Processes for the compute stage."),
    fit_engine: str = typer.Option("operon", "--engine", help="Symbolic-regression engine for the surface model."),
    time_budget: float = typer.Option(60.0, help="Seconds for each fit, its nested-CV folds included."),
    seed: int = typer.Option(0),
    dataset: str | None = typer.Option("strength_covariance", help="Dataset to ingest ('' to skip)."),
    vacancy_clusters: bool = typer.Option(
        False, "--vacancy-clusters",
        help="Also compute relaxed di-/tri-vacancy clusters per calculator (per-configuration values) and fit "
             "the tri-vacancy binding energy from its distances (about a minute more on 2 cores)."),
) -> None:
    """Run the main job end to end and print a short report."""
    from matstore.pipeline import FCC_METALS, PipelineOptions, run_pipeline

    opts = PipelineOptions(
        elements=tuple(elements or FCC_METALS), max_index=max_index,
        calculators=tuple(calculator or ("emt", "lammps")), workers=workers, engine=fit_engine,
        time_budget=time_budget, seed=seed, dataset=dataset or None,
        vacancy_clusters=vacancy_clusters,
    )
    with cli_errors():
        eng = engine()
        with console.status("pipeline starting") as status:
            reports = run_pipeline(eng, opts, progress=lambda msg: status.update(msg))
        _print_report(eng, reports)
    if any(r.status == "failed" for r in reports):
        raise typer.Exit(1)


def _print_report(eng, reports) -> None:  # noqa: ANN001
    from matstore.admin import describe
    from matstore.config import get_settings
    from matstore.models.report import parts_lines

    table = Table("stage", "status", "seconds", "detail", title="matstore pipeline")
    colours = {"done": "green", "skipped": "yellow", "failed": "red"}
    for r in reports:
        table.add_row(r.name, f"[{colours[r.status]}]{r.status}[/]", f"{r.seconds:.1f}", r.detail)
    console.print(table)
    info = describe(eng, embedded=get_settings().embedded)
    console.print("store: " + ", ".join(f"{v:,} {k}" for k, v in info.counts.items()))
    for r in reports:
        if r.name.startswith("fit:") and r.status == "done":
            m = r.data.get("metrics", {})
            console.print(f"[bold]{r.data['model']}@production[/] (version {r.data['version']}): y = {r.data['equation']}")
            for line, _ in parts_lines(r.data.get("parts")):
                console.print(f"    {line}")
            shown = {k: m[k] for k in ("r2", "cv_r2", "cv_rmse", "cv_mae") if k in m}
            console.print("    " + ", ".join(f"{k} = {v:.3g}" for k, v in shown.items()))
    console.print("Open the dashboard: [bold]matstore dashboard[/] (then http://localhost:8501); "
                  "query with [bold]matstore sql \"SELECT * FROM surface_properties_wide LIMIT 5\"[/]")
