"""`tuneloop erase`: remove one data subject from logs, datasets and indexes."""

from __future__ import annotations

import typer
from rich.table import Table

from tuneloop.cli._common import console, err_console, state
from tuneloop.governance.tiers import Actor
from tuneloop.project import Project


def erase(
    ctx: typer.Context,
    subject: str = typer.Option(..., help="The subject id (what the sources' subject_field "
                                          "holds, or the API's `user`), e.g. an e-mail."),
    also: list[str] | None = typer.Option(
        None, "--also", help="Another identifying string to erase wherever it appears "
                             "(a name, a ticket number); repeat for more."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    dry_run: bool = typer.Option(False, help="Only show what would be removed and marked."),
) -> None:
    """Erase a data subject from logs, datasets and indexes; mark models to retrain.

    Removes request logs, feedback, review items, dataset records (new versions, old files
    purged), evaluation outputs and retrieval chunks, then purges the database files and checks
    that no file under .tuneloop/ still mentions the subject.
    Only the privacy team or an admin may run it; it is audited with the subject's hash.

    Example:  tuneloop erase --subject jane@example.com --also "Jane Roe" --yes
    """
    from tuneloop.flywheel.erasure import erase as run

    c = state(ctx)
    project = c.project()
    actor = c.actor(project)
    if dry_run:
        _preview(project, actor, subject, also or [])
        return
    if not yes:  # dry runs need no confirmation: they change nothing
        typer.confirm(f"Erase every record of {subject!r}? This cannot be undone", abort=True)
    report = run(project, actor, subject, also=also or [])
    table = Table(title=f"erasure #{report.id} (subject {report.subject_hash[:12]}...)")
    table.add_column("what")
    table.add_column("removed", justify="right")
    for key, count in report.counts.items():
        table.add_row(key.replace("_", " "), str(count))
    console.print(table)
    for d in report.datasets:
        console.print(f"dataset {d.old} replaced by {d.new} ({d.removed} records removed; "
                      "old files purged)")
    if report.models or report.variants:
        console.print("[bold yellow]needs retraining:[/] "
                      + ", ".join([f"model {m}" for m in report.models]
                                  + [f"variant {v}" for v in report.variants]))
    for path in report.files_removed:
        console.print(f"deleted derived file that mentioned the subject: {path}")
    for action in report.purge.actions:
        console.print(f"[dim]database:[/] {action}")
    for limit in report.purge.limits:
        err_console.print(f"[yellow]limit:[/] {limit}")
    for source in report.sources:
        err_console.print(f"[yellow]source still mentions the subject[/] (edit it, or a rebuild "
                          f"brings them back): {source}")
    if report.residue:
        for path in report.residue:
            err_console.print(f"[bold red]still mentions the subject:[/] {path}")
        raise typer.Exit(1)
    console.print("[green]verified: no file under .tuneloop/ mentions the subject[/]")


def _preview(project: Project, actor: Actor, subject: str, also: list[str]) -> None:
    from tuneloop.flywheel.erasure import preview

    plan = preview(project, actor, subject, also=also)
    table = Table(title=f"erasure preview (subject {plan.subject_hash[:12]}...): nothing changed")
    table.add_column("what")
    table.add_column("would be removed", justify="right")
    for key, count in plan.counts.items():
        table.add_row(key.replace("_", " "), str(count))
    for ref, count in plan.datasets.items():
        table.add_row(f"  from dataset {ref}", str(count))
    console.print(table)
    if plan.models or plan.variants:
        console.print("would need retraining: " + ", ".join(
            [f"model {m}" for m in plan.models] + [f"variant {v}" for v in plan.variants]))
    for source in plan.sources:
        console.print(f"source mentions the subject: {source}")
