"""`tuneloop erase`: remove one data subject from logs, datasets and indexes; `erase status`
lists the models and variants marked for retraining, `erase clear` clears one by hand."""

from __future__ import annotations

import typer
from rich.table import Table

from tuneloop.cli._common import console, err_console, state, when
from tuneloop.governance.tiers import Actor
from tuneloop.project import Project

app = typer.Typer(help="Erase a data subject; list and clear the retraining marks it leaves.",
                  invoke_without_command=True)


@app.callback()
def erase(
    ctx: typer.Context,
    subject: str | None = typer.Option(None, help="The subject id (what the sources' "
                                       "subject_field holds, or the API's `user`), e.g. an "
                                       "e-mail."),
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

    Model weights, adapters and tokenizers are never deleted: the models and variants trained
    on the subject's data are marked for retraining and withdrawn from the public
    (`tuneloop erase status` lists the marks).

    Example:  tuneloop erase --subject jane@example.com --also "Jane Roe" --yes
    """
    if ctx.invoked_subcommand is not None:
        return
    if not subject:
        raise typer.BadParameter("name the subject to erase (--subject ID), or run "
                                 "`tuneloop erase status`", param_hint="--subject")
    _run(ctx, subject, also or [], yes, dry_run)


def _run(ctx: typer.Context, subject: str, also: list[str], yes: bool, dry_run: bool) -> None:
    from tuneloop import rollout
    from tuneloop.flywheel.erasure import erase as run

    c = state(ctx)
    project = c.project()
    actor = c.actor(project)
    if dry_run:
        _preview(project, actor, subject, also or [])
        return
    if not yes:  # dry runs need no confirmation: they change nothing
        typer.confirm(f"Erase every record of {subject!r}? This cannot be undone", abort=True)
    report = run(project, actor, subject, also=also or [], withdraw=rollout.withdraw_from_public)
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
    for moved in report.withdrawn:
        console.print(f"[bold yellow]withdrawn from the public:[/] {moved}")
    for path in report.artefacts:
        console.print(f"model artefact names the subject (kept, model marked): {path}")
    for export in report.exports:
        err_console.print(f"[yellow]export that left the project[/] (recall or erase it "
                          f"there): {export}")
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
    for export in plan.exports:
        console.print(f"export that left the project (erasure cannot reach it): {export}")


@app.command()
def status(ctx: typer.Context) -> None:
    """List the open retraining marks: models and variants derived from erased data.

    A marked variant serves internal callers only. A mark clears itself when the model is
    retrained on dataset versions made after the erasure without the subject.

    Example:  tuneloop erase status
    """
    from tuneloop.flywheel.marks import refresh

    c = state(ctx)
    marks = refresh(c.project())
    if not marks:
        console.print("no open retraining marks")
        return
    table = Table(title="open retraining marks")
    for col in ("#", "kind", "name", "erasure", "since", "reason"):
        table.add_column(col)
    for m in marks:
        table.add_row(str(m.id), m.kind, m.name, f"#{m.erasure_id}", when(m.created_at), m.reason)
    console.print(table)


@app.command()
def clear(
    ctx: typer.Context,
    mark: int = typer.Argument(..., help="The mark's number (from `tuneloop erase status`)."),
    reason: str = typer.Option(..., help="Why it may serve the public again (audited)."),
) -> None:
    """Clear one retraining mark by hand (a privacy-role key only; audited).

    Example:  tuneloop erase clear 3 --reason "model retired; variant now serves the base model"
    """
    from tuneloop.flywheel.marks import clear as run

    c = state(ctx)
    project = c.project()
    run(project, c.actor(project), mark, reason)
    console.print(f"mark #{mark} cleared")
