"""`tuneloop rollout`: which variant serves which audience, and moving it forward or back.
With `TUNELOOP_URL` set (team mode) the commands go to the server with the caller's key."""

from __future__ import annotations

import datetime as dt
from typing import Any

import typer
from rich.table import Table

from tuneloop import rollout
from tuneloop.cli import _remote
from tuneloop.cli._common import console, state, when

app = typer.Typer(help="Rollouts: set, promote, rollback, status.", no_args_is_help=True)


def _show(current: rollout.AliasState) -> None:
    table = Table(title=f"rollout of {current.alias}")
    for col in ("variant", "stage", "public share", "serves"):
        table.add_column(col)
    for entry in current.entries:
        serves = {"shadow": "copy of internal traffic (never returned)",
                  "internal": "internal users", "public": "internal users + public share",
                  "all": "everyone else"}[entry.stage]
        share = f"{entry.percent:g}%" if entry.stage in ("public", "all") else "-"
        table.add_row(entry.variant, entry.stage, share, serves)
    if not current.entries:
        table.add_row("-", "-", "-", "nothing rolled out")
    console.print(table)


def _change(api: _remote.Api, alias: str, action: str, **body: Any) -> rollout.AliasState:
    """One rollout change through the server's governance API (team mode)."""
    return _state_of(api.post(f"/v1/governance/rollout/{alias}/{action}", **body))


def _state_of(data: dict[str, Any]) -> rollout.AliasState:
    return rollout.AliasState(data["alias"], tuple(rollout.Entry(e["variant"], e["stage"],
                                                                 e["percent"])
                                                   for e in data["entries"]))


@app.command("set")
def set_(
    ctx: typer.Context,
    alias: str = typer.Argument(..., help="Application alias (the `model` clients ask for)."),
    variant: str = typer.Argument(..., help="Variant name from tuneloop.yaml."),
    stage: str = typer.Option(..., help="shadow | internal | public | all | off"),
    percent: float | None = typer.Option(None, help="Public traffic share (stage public)."),
    reason: str = typer.Option("", help="Why, for the audit log."),
) -> None:
    """Put a variant at a stage of an alias's rollout (public needs passed gates).

    Example:  tuneloop rollout set assistant tuned-v2 --stage shadow
    """
    c = state(ctx)
    _show(_remote.team_or_local(
        c,
        remote=lambda api: _change(api, alias, "set", variant=variant, stage=stage,
                                   percent=percent, reason=reason),
        local=lambda project: rollout.set_stage(project, c.actor(project), alias, variant, stage,
                                                percent=percent, reason=reason),
    ))


@app.command()
def promote(
    ctx: typer.Context,
    alias: str = typer.Argument(..., help="Application alias."),
    variant: str = typer.Argument(..., help="Variant to move one stage on."),
    percent: float | None = typer.Option(None, help="Public traffic share; 100 means all."),
    reason: str = typer.Option("", help="Why, for the audit log."),
) -> None:
    """Move a variant one stage on: shadow, internal, public (percent), all.

    Example:  tuneloop rollout promote assistant tuned-v2 --percent 25
    """
    c = state(ctx)
    _show(_remote.team_or_local(
        c,
        remote=lambda api: _change(api, alias, "promote", variant=variant, percent=percent,
                                   reason=reason),
        local=lambda project: rollout.promote(project, c.actor(project), alias, variant,
                                              percent=percent, reason=reason),
    ))


@app.command()
def rollback(
    ctx: typer.Context,
    alias: str = typer.Argument(..., help="Application alias."),
    reason: str = typer.Option("", help="Why, for the audit log."),
) -> None:
    """Undo the latest change to an alias's rollout, restoring the state before it.

    Example:  tuneloop rollout rollback assistant --reason "complaints about tone"
    """
    c = state(ctx)
    _show(_remote.team_or_local(
        c,
        remote=lambda api: _change(api, alias, "rollback", reason=reason),
        local=lambda project: rollout.rollback(project, c.actor(project), alias, reason=reason),
    ))


@app.command()
def status(
    ctx: typer.Context,
    alias: str | None = typer.Argument(None, help="Application alias (default: every alias)."),
) -> None:
    """Show each alias's rollout and its latest changes.

    Example:  tuneloop rollout status assistant
    """
    shown = _remote.team_or_local(
        state(ctx),
        remote=lambda api: [
            (_state_of(a), [(ch["id"], dt.datetime.fromisoformat(ch["created_at"]), ch["actor"],
                             ch["action"], ch["variant"], ch["reason"], ch["rolled_back"])
                            for ch in a["changes"]])
            for a in api.get("/v1/governance/rollout", alias=alias)],
        local=lambda project: [
            (rollout.state(project, name),
             [(ch.id, ch.created_at, ch.actor, ch.action, ch.variant, ch.reason, ch.rolled_back)
              for ch in rollout.history(project, name, limit=10)])
            for name in ([alias] if alias else rollout.aliases(project))],
    )
    for current, changes in shown:
        _show(current)
        if changes:
            table = Table(title=f"latest changes to {current.alias}")
            for col in ("#", "when", "who", "action", "variant", "reason", "undone"):
                table.add_column(col)
            for num, at, who, action, variant, reason, undone in changes:
                table.add_row(str(num), when(at), who, action, variant, reason,
                              "yes" if undone else "")
            console.print(table)
