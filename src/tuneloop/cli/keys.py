"""`tuneloop keys`: API keys for people and services. With `TUNELOOP_URL` set (team mode) every
command goes to the server's governance API with the caller's key (`cli/_remote.py`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import typer
from rich.table import Table

from tuneloop.cli import _remote
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
    secret = _remote.team_or_local(
        c,
        remote=lambda api: api.post("/v1/governance/keys", name=name, role=role,
                                    audience=audience, label=label, service=service)["secret"],
        local=lambda project: principals.create_key(
            project.store, c.actor(project), name, role=role, audience=audience, label=label,
            kind="service" if service else "person").secret,
    )
    console.print(
        f"[green]✓[/] key for {name} ({role}, {audience}); copy it now, it is not shown again:"
    )
    console.print(secret, soft_wrap=True, highlight=False)


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """List keys (prefixes only) with their principal, role, audience and state.

    In team mode, admins and the privacy team see every key, others their own.

    Example:  tuneloop keys list
    """
    rows: list[tuple[Any, ...]] = _remote.team_or_local(
        state(ctx),
        remote=lambda api: [(r["prefix"], r["principal"], r["role"], r["audience"], r["label"],
                             _time(r["created_at"]), _time(r["revoked_at"]))
                            for r in api.get("/v1/governance/keys")],
        local=lambda project: [(k.prefix, p.name, p.role, p.audience, k.label, k.created_at,
                                k.revoked_at) for k, p in principals.list_keys(project.store)],
    )
    table = Table(title="API keys")
    for col in ("prefix", "principal", "role", "audience", "label", "created", "state"):
        table.add_column(col)
    for prefix, name, role, audience, label, created, revoked in rows:
        status = f"[red]revoked {when(revoked)}[/]" if revoked else "[green]active[/]"
        table.add_row(prefix, name, role, audience, label, when(created), status)
    console.print(table)


def _time(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


@app.command()
def revoke(ctx: typer.Context, prefix: str = typer.Argument(..., help="The key's prefix.")) -> None:
    """Revoke a key at once (admins: any key; others: their own).

    Example:  tuneloop keys revoke tl_3f9a1c2e
    """
    c = state(ctx)
    _remote.team_or_local(
        c,
        remote=lambda api: api.post(f"/v1/governance/keys/{prefix}/revoke"),
        local=lambda project: principals.revoke_key(project.store, c.actor(project), prefix),
    )
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
    _remote.team_or_local(
        c,
        remote=lambda api: api.post(f"/v1/governance/principals/{name}/disable", reason=reason),
        local=lambda project: principals.disable_principal(project.store, c.actor(project), name,
                                                           reason),
    )
    console.print(f"[green]✓[/] disabled {name}; its keys no longer work")
