"""``matstore export``: training sets out of the store (extended XYZ for MACE, ACE, GAP, NequIP)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from matstore.cli.common import cli_errors, console, engine

export_app = typer.Typer(help="Write stored data out as files (training sets).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ``export`` group to the main app."""
    app.add_typer(export_app, name="export")


@export_app.command("structures")
def structures(
    out: Annotated[Path, typer.Argument(dir_okay=False, help="Extended XYZ file to write, e.g. train.extxyz.")],
    method: str | None = typer.Option(None, "--method", help="Only configurations labelled by this method, e.g. emt or DFT-PBE."),
    source: str | None = typer.Option(None, "--source", help="Only configurations of this source file (its sha256, or ≥ 8 leading hex digits)."),
    material: str | None = typer.Option(None, "--material", help="Only configurations whose composition reduces to this formula, e.g. Cu or NiAl."),
    config_type: str | None = typer.Option(None, "--config-type", help="Only frames whose file gave this config_type, e.g. rattled_bulk."),
    prefix: str = typer.Option("REF_", "--prefix", help="Label key prefix: REF_ gives REF_energy/REF_forces/REF_virial/REF_stress (MACE); '' gives energy/forces/virial/stress."),
    name: str | None = typer.Option(None, "--name", help="Record the set under this name, or write the set recorded under it again."),
) -> None:
    """Write configurations with energy (eV), forces (eV/Å), virial (eV) and stress (eV/Å³) for MLIP training.

    Every frame states units and signs: virial W = −V·σ, stress σ positive in tension (ASE).
    """
    from matstore.export import Selection, export_structures

    with cli_errors():
        report = export_structures(
            out, engine=engine(), selection=Selection(method=method, source=source, material=material, config_type=config_type), name=name, prefix=prefix,
        )
    table = Table("method", "frames with virial", "frames without virial", title=f"exported {report.frames} frames → {out}", title_justify="left")
    for method_name in sorted(set(report.with_virial) | set(report.without_virial)):
        table.add_row(method_name, str(report.with_virial.get(method_name, 0)), str(report.without_virial.get(method_name, 0)))
    console.print(table)
    state = "recorded as" if report.recorded else "written again from"
    named = f"; {state} training set {report.name!r}" if report.name else ""
    keys = ", ".join(report.prefix + key for key in ("energy", "forces", "virial", "stress"))
    console.print(f"content sha256 {report.content_sha256}{named}; keys {keys} (eV, eV/Å, eV, eV/Å³)")
