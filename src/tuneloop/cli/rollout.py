"""`tuneloop rollout`: which variant serves which audience, and moving it forward or back."""

from __future__ import annotations

import typer
from rich.table import Table

from tuneloop import rollout
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
    project = c.project()
    _show(rollout.set_stage(project, c.actor(project), alias, variant, stage, percent=percent,
                            reason=reason))


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
    project = c.project()
    _show(rollout.promote(project, c.actor(project), alias, variant, percent=percent,
                          reason=reason))


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
    project = c.project()
    _show(rollout.rollback(project, c.actor(project), alias, reason=reason))


@app.command()
def status(
    ctx: typer.Context,
    alias: str | None = typer.Argument(None, help="Application alias (default: every alias)."),
) -> None:
    """Show each alias's rollout and its latest changes.

    Example:  tuneloop rollout status assistant
    """
    project = state(ctx).project()
    for name in [alias] if alias else rollout.aliases(project):
        _show(rollout.state(project, name))
        changes = rollout.history(project, name, limit=10)
        if changes:
            table = Table(title=f"latest changes to {name}")
            for col in ("#", "when", "who", "action", "variant", "reason", "undone"):
                table.add_column(col)
            for ch in changes:
                table.add_row(str(ch.id), when(ch.created_at), ch.actor, ch.action, ch.variant,
                              ch.reason, "yes" if ch.rolled_back else "")
            console.print(table)
