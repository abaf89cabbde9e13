"""`tuneloop db`: the store's schema."""

from __future__ import annotations

import typer

from tuneloop.cli._common import console, state
from tuneloop.store import migrate

app = typer.Typer(help="The store's schema (Alembic migrations).", no_args_is_help=True)


@app.command()
def upgrade(ctx: typer.Context) -> None:
    """Apply every pending migration (opening the project does it too).

    Example:  TUNELOOP_DATABASE_URL=postgresql://tuneloop@db/tuneloop tuneloop db upgrade
    """
    project = state(ctx).project()
    project.store.upgrade()
    console.print(
        f"[green]✓[/] {project.store.safe_url} is at revision {project.store.current_revision()}"
    )


@app.command()
def current(ctx: typer.Context) -> None:
    """Show the schema revision of the store and the newest one this tuneloop ships.

    Example:  tuneloop db current
    """
    project = state(ctx).project()
    console.print(f"store:  {project.store.safe_url}")
    console.print(f"schema: {project.store.current_revision()} (newest: {migrate.head()})")
