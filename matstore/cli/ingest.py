"""``matstore ingest``: structures, property tables and registered datasets.

The Typer group is the module-level :data:`ingest_app`, so other layers can add commands to
it (``@ingest_app.command("compute")``) before :func:`register` adds it to the main app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from matstore.cli.common import cli_errors, console, engine

ingest_app = typer.Typer(
    help="Ingest structure files, property tables and registered datasets.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    """Add the ``ingest`` group to the main app."""
    app.add_typer(ingest_app, name="ingest")


def _issues_table(title: str, issues: list[dict[str, Any]], limit: int = 30) -> Table:
    table = Table("row", "line", "column", "material", "reason", title=title, title_justify="left")
    for issue in issues[:limit]:
        table.add_row(str(issue["row"]), str(issue["line"]), issue["column"], issue["material"], issue["reason"])
    if len(issues) > limit:
        table.caption = f"{len(issues) - limit} more: all are in the job run's summary (matstore sql \"SELECT summary FROM job_run WHERE id = …\") or in --report FILE"
    return table


@ingest_app.command("structures")
def structures(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="Structure files (extxyz, CIF, POSCAR, vasprun.xml, any ASE format).")],
    method: str | None = typer.Option(None, "--method", help="Method that produced the labels, e.g. emt or DFT-PBE."),
    method_kind: str = typer.Option("other", "--method-kind", help="calculator | interatomic_potential | dft | experiment | model | other"),
    fmt: str | None = typer.Option(None, "--format", help="Reader: extxyz, cif, poscar, vasprun, or an ASE format (default: from the name)."),
) -> None:
    """Store configurations (positions, cell, energy, forces, virial), one source per file."""
    from matstore.ingest.structures import ingest_structure_file

    reports = []
    with cli_errors():
        eng = engine()
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=True, disable=len(files) < 2,
        ) as progress:
            task = progress.add_task("ingesting", total=len(files))
            for path in files:
                progress.update(task, description=path.name)
                reports.append(ingest_structure_file(path, engine=eng, method=method, method_kind=method_kind, format=fmt))
                progress.advance(task)
    table = Table("file", "status", "frames", "inserted", "dupl.", "job", title="ingest structures", title_justify="left")
    for r in reports:
        table.add_row(Path(r.path).name, r.status, str(r.frames), str(r.inserted), str(r.duplicates), str(r.job_run_id))
    console.print(table)
    for r in reports:
        for note in r.notes:
            console.print(f"note ({Path(r.path).name}): {note}", markup=False)


def _print_table_reports(reports: list[Any], title: str) -> None:
    # One column per file and one row per count, so the summary stays readable in 80 columns.
    summary = Table("", *(Path(r.path).name for r in reports), title=title, title_justify="left")
    lines = [
        ("status", lambda r: r.status),
        ("rows read", lambda r: r.rows),
        ("bulk rows inserted", lambda r: r.bulk_inserted),
        ("surface rows inserted", lambda r: r.surface_inserted),
        ("configuration rows inserted", lambda r: r.configuration_inserted),
        ("repeated (same value, stored once)", lambda r: r.repeated),
        ("flagged (stored with a flag)", lambda r: len(r.flagged)),
        ("skipped (not stored)", lambda r: len(r.skipped)),
        ("missing (blank cells)", lambda r: r.missing),
        ("duplicates (already stored)", lambda r: r.duplicates),
        ("materials", lambda r: r.materials),
        ("methods", lambda r: r.methods),
        ("configurations", lambda r: r.configurations),
        ("dropped rows (nothing stored)", lambda r: len(r.dropped_rows)),
        ("source / job run", lambda r: f"{r.source_id} / {r.job_run_id}"),
    ]
    for label, get in lines:
        summary.add_row(label, *(str(get(r)) for r in reports))
    console.print(summary)
    for r in reports:
        if r.flagged:
            console.print(_issues_table(f"flagged values of {Path(r.path).name} (stored with a flag)", r.flagged))
        if r.skipped:
            console.print(_issues_table(f"skipped values of {Path(r.path).name} (not stored)", r.skipped))
        if r.dropped_rows:
            console.print(_dropped_table(f"dropped rows of {Path(r.path).name} (no value stored)", r.dropped_rows))
        for note in r.notes:
            console.print(f"note ({Path(r.path).name}): {note}", markup=False)
        for old in r.superseded:
            console.print(f"superseded source {old['source_id']}: its {old['values_flagged']} values stay stored, flagged "
                          f"'superseded by source {r.source_id} (job run {r.job_run_id})'", markup=False)
        if r.report_file:
            console.print(f"complete report of {Path(r.path).name}: {r.report_file}")


def _dropped_table(title: str, rows: list[dict[str, Any]], limit: int = 30) -> Table:
    table = Table("row", "line", "material", "method", "reasons", title=title, title_justify="left")
    for row in rows[:limit]:
        table.add_row(str(row["row"]), str(row["line"]), row["material"], row["method"], "; ".join(row["reasons"])[:120])
    if len(rows) > limit:
        table.caption = f"{len(rows) - limit} more: all are in the job run's summary or in --report FILE"
    return table


@ingest_app.command("table")
def table(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Property table (CSV or whitespace text).")],
    mapping: Annotated[Path, typer.Option("--mapping", "-m", exists=True, dir_okay=False, help="Mapping YAML (columns → property definitions, units; see docs/ingest.md).")],
    report_file: Annotated[Path | None, typer.Option("--report", help="Also write the complete report (every flagged, skipped value and dropped row) as JSON here.")] = None,
    supersede: Annotated[list[int] | None, typer.Option("--supersede", metavar="SOURCE_ID", help="A stored source this table replaces (repeatable): its values stay stored, flagged as superseded, and fits use this table's.")] = None,
) -> None:
    """Store a property table mapped column by column to property definitions.

    Mapping format with worked examples (derived columns, per-configuration keys, spherical angles, repeated per-material columns): docs/ingest.md.

    Property names: `matstore vocab list`; new ones: `matstore vocab add`.

    The same file under another mapping, or a value that conflicts with one stored from another source for the same material, method and property, is refused; `--supersede SOURCE_ID` replaces that source (docs/ingest.md, "Re-ingesting and conflicts").
    """
    from matstore.ingest.table import ingest_table

    with cli_errors():
        report = ingest_table(file, mapping, engine=engine(), report_path=report_file, supersede=supersede or ())
    _print_table_reports([report], "ingest table")


@ingest_app.command("dataset")
def dataset(
    name: str = typer.Argument(..., help="Registered dataset, e.g. strength_covariance."),
    dataset_dir: Annotated[Path | None, typer.Option("--dataset-dir", help="Local mirror of the repository (default: MATSTORE_DATASET_DIR).")] = None,
    supersede: Annotated[list[int] | None, typer.Option(
        "--supersede", help="SOURCE_ID stored under an earlier shipped mapping that this ingest replaces (its values stay, flagged).")] = None,
) -> None:
    """Fetch a registered dataset (pinned commit, sha256-checked) and ingest it with its shipped mappings."""
    from matstore.ingest.registry import ingest_dataset

    with cli_errors():
        report = ingest_dataset(name, engine=engine(), dataset_dir=dataset_dir, supersede=tuple(supersede or ()))
    _print_table_reports(report.tables, f"ingest dataset {name} @ {report.commit[:12]}")
