"""`tuneloop keys`: API keys for people and services."""

from __future__ import annotations

import typer
from rich.table import Table

from tuneloop.cli._common import console, state, when
from tuneloop.governance import principals

app = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)


@app.command()
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Principal the key is for (created if new)."),
    role: str = typer.Option("developer", help="developer | privacy | admin"),
    audience: str = typer.Option("internal", help="internal | public"),
    service: bool = typer.Option(False, help="The principal is a service, not a person."),
    label: str = typer.Option("", help="A note to recognise the key by."),
) -> None:
    """Create an API key (admins only). The key is printed once and never stored.

    Example:  tuneloop keys create carol --role privacy
    """
    c = state(ctx)
    project = c.project()
    new = principals.create_key(
        project.store,
        c.actor(project),
        name,
        role=role,
        audience=audience,
        label=label,
        kind="service" if service else "person",
    )
    console.print(
        f"[green]✓[/] key for {name} ({role}, {audience}); copy it now, it is not shown again:"
    )
    console.print(new.secret, soft_wrap=True, highlight=False)


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """List keys (prefixes only) with their principal, role, audience and state.

    Example:  tuneloop keys list
    """
    project = state(ctx).project()
    table = Table(title="API keys")
    for col in ("prefix", "principal", "role", "audience", "label", "created", "state"):
        table.add_column(col)
    for key, principal in principals.list_keys(project.store):
        status = f"[red]revoked {when(key.revoked_at)}[/]" if key.revoked_at else "[green]active[/]"
        table.add_row(
            key.prefix,
            principal.name,
            principal.role,
            principal.audience,
            key.label,
            when(key.created_at),
            status,
        )
    console.print(table)


@app.command()
def revoke(ctx: typer.Context, prefix: str = typer.Argument(..., help="The key's prefix.")) -> None:
    """Revoke a key at once (admins: any key; others: their own).

    Example:  tuneloop keys revoke tl_3f9a1c2e
    """
    c = state(ctx)
    project = c.project()
    principals.revoke_key(project.store, c.actor(project), prefix)
    console.print(f"[green]✓[/] revoked {prefix}")


@app.command()
def disable(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The principal to disable."),
    reason: str = typer.Option("", help="Recorded in the audit log."),
) -> None:
    """Disable a principal at once: none of its keys work any more (admins only).

    Example:  tuneloop keys disable mallory --reason "left the company"
    """
    c = state(ctx)
    project = c.project()
    principals.disable_principal(project.store, c.actor(project), name, reason)
    console.print(f"[green]✓[/] disabled {name}; its keys no longer work")
