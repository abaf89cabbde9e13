"""`tuneloop audit`: the hash-chained log of privileged actions and Tier 2 uses."""

from __future__ import annotations

import typer
from rich.table import Table

from tuneloop.cli._common import console, state, tier_label, when
from tuneloop.errors import PermissionDenied
from tuneloop.governance import audit

app = typer.Typer(help="The audit log: list events, verify the chain.", no_args_is_help=True)


@app.command("list")
def list_(
    ctx: typer.Context,
    limit: int = typer.Option(50, help="How many of the newest events."),
    action: str | None = typer.Option(None, help="Only actions starting with this, e.g. approval."),
    actor: str | None = typer.Option(None, help="Only this principal's events."),
) -> None:
    """List audit events, newest first.

    Example:  tuneloop audit list --action approval --limit 20
    """
    c = state(ctx)
    project = c.project()
    me = c.actor(project)
    if me.role not in ("privacy", "admin"):
        raise PermissionDenied(
            f"the audit log is for the privacy team and admins; {me.name} has role {me.role!r}"
        )
    table = Table(title="Audit events")
    for col in ("#", "time", "actor", "action", "target", "tier"):
        table.add_column(col, overflow="fold")
    for e in audit.list_events(project.store, limit=limit, action=action, actor=actor):
        table.add_row(str(e.seq), when(e.ts), e.actor, e.action, e.target, tier_label(e.tier))
    console.print(table)


@app.command()
def verify(ctx: typer.Context) -> None:
    """Check the whole chain; exit 1 and name the first bad event if anything was tampered with.

    Example:  tuneloop audit verify
    """
    project = state(ctx).project()
    result = audit.verify(project.store)
    if result.ok:
        console.print(f"[green]✓[/] {result}")
    else:
        console.print(f"[bold red]✗[/] {result}")
        raise typer.Exit(1)
