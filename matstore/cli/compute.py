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
    task: str = typer.Option("surfaces", "--task", help="surfaces (bulk + surfaces) or vacancy-clusters (di-/tri-vacancy "
                             "formation energies per configuration; --calculator may be given as lammps,emt)."),
) -> None:
    """Compute bulk properties and every symmetry-distinct surface up to MAX_INDEX, and store them.

    With ``--task vacancy-clusters``: relaxed di- and tri-vacancy clusters of each element
    (formation and binding energies, vacancy–vacancy distances), stored per configuration.
    """
    if task == "vacancy-clusters":
        _vacancy_clusters(elements, calculator.split(","), workers)
        return
    if task != "surfaces":
        raise typer.BadParameter(f"unknown task {task!r}; known: surfaces, vacancy-clusters", param_hint="--task")
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


def _vacancy_clusters(elements: list[str], calculators: list[str], workers: int) -> None:
    """``--task vacancy-clusters``: compute and store, then one summary line."""
    import time

    from matstore.ingest.compute.store_clusters import compute_and_store_clusters

    with cli_errors(), console.status(f"vacancy clusters: {', '.join(calculators)} × {len(elements)} elements"):
        t0 = time.perf_counter()
        table, stored, failures = compute_and_store_clusters(engine(), elements=list(elements),
                                                             calculators=calculators, workers=workers)
    console.print(f"vacancy clusters: {len(table)} configurations, {stored} values stored "
                  f"in {time.perf_counter() - t0:.0f} s")
    for failure in failures:
        console.print(f"[red]failed[/] {failure}")
    if failures:
        raise typer.Exit(1)
