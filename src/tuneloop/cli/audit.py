"""`tuneloop audit`: the hash-chained log of privileged actions and Tier 2 uses. With
`TUNELOOP_URL` set (team mode) the commands ask the server with the caller's key."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from tuneloop.cli import _remote
from tuneloop.cli._common import console, state, tier_label, when
from tuneloop.errors import PermissionDenied
from tuneloop.governance import audit
from tuneloop.project import Project

app = typer.Typer(help="The audit log: list events, verify the chain, export its head.",
                  no_args_is_help=True)


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

    def local(project: Project) -> list[tuple[Any, ...]]:
        me = c.actor(project)
        if me.role not in ("privacy", "admin"):
            raise PermissionDenied(
                f"the audit log is for the privacy team and admins; {me.name} has role "
                f"{me.role!r}")
        return [(e.seq, e.ts, e.actor, e.action, e.target, e.tier)
                for e in audit.list_events(project.store, limit=limit, action=action,
                                           actor=actor)]

    rows = _remote.team_or_local(
        c,
        remote=lambda api: [(e["seq"], dt.datetime.fromisoformat(e["ts"]), e["actor"],
                             e["action"], e["target"], e["tier"])
                            for e in api.get("/v1/governance/audit", limit=limit, action=action,
                                             actor=actor)],
        local=local,
    )
    table = Table(title="Audit events")
    for col in ("#", "time", "actor", "action", "target", "tier"):
        table.add_column(col, overflow="fold")
    for seq, ts, who, what, target, tier in rows:
        table.add_row(str(seq), when(ts), who, what, target, tier_label(tier))
    console.print(table)


@app.command()
def verify(
    ctx: typer.Context,
    head: Path | None = typer.Option(None, "--head", help="A head written by `audit "
                                     "export-head`: also prove the chain still holds it."),
) -> None:
    """Check the whole chain; exit 1 and name the first bad event if anything was tampered with.

    Example:  tuneloop audit verify --head /secure/anchors/audit-head.json
    """
    anchor = audit.Head.from_json(head.read_text(encoding="utf-8")) if head else None

    def remote(api: _remote.Api) -> tuple[bool, str]:
        params = {"seq": anchor.seq, "hash": anchor.hash} if anchor else {}
        answer = api.get("/v1/governance/audit/verify", **params)
        return bool(answer["ok"]), str(answer["message"])

    def local(project: Project) -> tuple[bool, str]:
        result = audit.verify(project.store, anchor=anchor)
        return result.ok, str(result)

    ok, message = _remote.team_or_local(state(ctx), remote=remote, local=local)
    if ok:
        suffix = f", and it still holds the exported head #{anchor.seq}" if anchor else ""
        console.print(f"[green]✓[/] {message}{suffix}")
    else:
        console.print(f"[bold red]✗[/] {message}")
        raise typer.Exit(1)


@app.command("export-head")
def export_head(
    ctx: typer.Context,
    out: Path | None = typer.Option(None, "--out", "-o", help="Write it here (default: print)."),
) -> None:
    """Print (or write) the chain's head, after verifying the chain, to keep it elsewhere.

    Kept where the database's users cannot write, it proves later (`audit verify --head`) that
    no event up to it was removed or rewritten.

    Example:  tuneloop audit export-head --out /secure/anchors/audit-head.json
    """
    def local(project: Project) -> audit.Head:
        result = audit.verify(project.store)
        if not result.ok:
            console.print(f"[bold red]✗[/] {result}; not exporting a head of a broken chain")
            raise typer.Exit(1)
        return audit.export_head(project.store)

    head = _remote.team_or_local(
        state(ctx),
        remote=lambda api: audit.Head.from_json(json.dumps(api.get("/v1/governance/audit/head"))),
        local=local,
    )
    if out is None:
        console.print(head.to_json(), highlight=False, soft_wrap=True)
        return
    out.write_text(head.to_json() + "\n", encoding="utf-8")
    console.print(f"[green]✓[/] head #{head.seq} written to {out}")
