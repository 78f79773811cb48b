"""``matstore ingest compute``: compute bulk and surface properties with an ASE calculator."""

from __future__ import annotations

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from matstore.cli.common import cli_errors, console, engine
from matstore.cli.ingest import ingest_app


@ingest_app.command("compute")
def compute(
    elements: list[str] = typer.Option(["Ag", "Al", "Au", "Cu", "Ni", "Pd", "Pt"], "--elements", help="FCC elements."),
    calculator: str = typer.Option("emt", "--calculator", help="emt, lammps (FBD-1986 u3 EAM), asap3, or an entry point."),
    max_index: int = typer.Option(3, "--max-index", help="Largest |h|,|k|,|l| of the surfaces."),
    workers: int = typer.Option(2, "--workers", help="Worker processes."),
) -> None:
    """Compute bulk properties and every symmetry-distinct surface up to MAX_INDEX, and store them."""
    from matstore.ingest.compute.store import compute_and_store
    from matstore.orientation import distinct_miller_indices

    total = len(elements) * (1 + len(distinct_miller_indices(max_index)))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with cli_errors(), Progress(*columns, console=console) as bar:
        task = bar.add_task(f"{calculator}: computing", total=total)

        def progress(label: str, done: int, skipped: int) -> None:
            bar.update(task, completed=done + skipped, description=f"{calculator}: {label}")

        summary = compute_and_store(engine(), elements=elements, calculator=calculator, max_index=max_index,
                                    workers=workers, progress=progress)
        bar.update(task, completed=total)
    console.print(f"{calculator}: {summary.describe()}")
    if summary.failures:
        for failure in summary.failures:
            console.print(f"[red]failed[/] {failure['element']}: {failure['message']}")
        raise typer.Exit(1)
