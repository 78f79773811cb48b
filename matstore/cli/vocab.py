"""``matstore vocab``: list the property vocabulary and add user definitions."""

from __future__ import annotations

import typer
from rich.table import Table

from matstore.cli.common import cli_errors, console, engine

app = typer.Typer(help="The property vocabulary: names, canonical units, scopes.", no_args_is_help=True)


def register(main: typer.Typer) -> None:
    """Add the ``vocab`` group to the main app."""
    main.add_typer(app, name="vocab")


@app.command("list")
def list_command(
    scope: str | None = typer.Option(None, "--scope", help="Only this scope: bulk, surface, configuration, composition, defect, mechanical."),
) -> None:
    """List property definitions: name, unit, scope, symbol, built-in or user, description."""
    from matstore import crud
    from matstore.db import reader_engine, session_scope

    with cli_errors(), session_scope(reader_engine()) as session:
        rows = [(d.name, d.unit, d.scope, d.symbol or "", "built-in" if d.builtin else "user", d.description)
                for d in crud.list_definitions(session=session, scope=scope)]
    table = Table(title="property definitions", title_justify="left")
    for header in ("name", "unit", "scope", "symbol", "origin"):
        table.add_column(header, no_wrap=True)  # names and units stay whole (copyable, greppable)
    table.add_column("description")
    for row in rows:
        table.add_row(*row)
    console.print(table)


@app.command("add")
def add_command(
    name: str = typer.Argument(..., help="snake_case name, e.g. defect_formation_energy."),
    unit: str = typer.Option(..., "--unit", help="Canonical unit (pint syntax), e.g. eV, angstrom, J/m^2."),
    scope: str = typer.Option(..., "--scope", help="bulk (per material and method) | surface (per orientation) | configuration (per identified configuration) | defect | mechanical."),
    symbol: str | None = typer.Option(None, "--symbol", help="Symbol for plots and equations, e.g. E_f."),
    description: str | None = typer.Option(None, "--description", help="What the property is."),
) -> None:
    """Add a property definition (recorded with its job run; built-in names cannot be redefined)."""
    from matstore import crud
    from matstore.db import session_scope

    with cli_errors():
        eng = engine()
        with crud.job_run(engine=eng, kind="vocab_add", parameters={"name": name, "unit": unit, "scope": scope}) as run:
            with session_scope(eng) as session:
                definition_id, added = crud.add_definition(session=session, name=name, unit=unit, scope=scope,
                                                           job_run_id=run.id, symbol=symbol, description=description)
            run.summary = {"definition_id": definition_id, "added": added}
            if not added:
                run.status = "skipped"
    verb = "added" if added else "already defined (same unit and scope)"
    console.print(f"{name} ({unit}, {scope}): {verb}; definition {definition_id}, job run {run.id}")
