"""`tuneloop review`: the queue of rated-down answers waiting for a reviewer."""

from __future__ import annotations

import typer
from rich.panel import Panel
from rich.table import Table

from tuneloop.cli._common import console, state, tier_label, when
from tuneloop.flywheel import review

app = typer.Typer(help="Review queue: list, show, accept, edit, reject.", no_args_is_help=True)


@app.command("list")
def list_(
    ctx: typer.Context,
    status: str = typer.Option("open", help="open | accepted | edited | rejected | all"),
    variant: str | None = typer.Option(None, help="Only items of this variant."),
    limit: int = typer.Option(50, help="At most this many."),
) -> None:
    """List review items, oldest first.

    Example:  tuneloop review list --status open
    """
    project = state(ctx).project()
    items = review.list_items(project, status=None if status == "all" else status,
                              variant=variant, limit=limit)
    table = Table(title=f"review queue ({status})")
    for col in ("id", "request", "variant", "tier", "status", "reason", "since"):
        table.add_column(col)
    for item in items:
        table.add_row(str(item.id), item.request_id, item.variant or "-", tier_label(item.tier),
                      item.status, item.reason, when(item.created_at))
    console.print(table if items else "[green]nothing to review[/]")


@app.command()
def show(ctx: typer.Context, item: int = typer.Argument(..., help="Review item id.")) -> None:
    """Show one item: the prompt, the answer, comments and past decisions.

    Example:  tuneloop review show 3
    """
    c = state(ctx)
    project = c.project()
    view = review.show(project, c.actor(project), item)
    prompt = "\n".join(f"[bold]{m.get('role')}[/]: {m.get('content')}" for m in view.prompt)
    console.print(Panel(prompt, title=f"#{view.id} request {view.request_id} "
                                      f"({view.variant}, tier {view.tier}, {view.status})"))
    console.print(Panel(view.output, title="answer"))
    if view.answer:
        console.print(Panel(view.answer, title="reviewer's answer"))
    for comment in view.comments:
        console.print(f"[dim]comment:[/] {comment}")
    for d in view.decisions:
        console.print(f"[dim]{d['at']} {d['actor']}: {d['decision']}[/] {d['note']}")


def _decide(ctx: typer.Context, item: int, decision: str, answer: str | None, note: str) -> None:
    c = state(ctx)
    project = c.project()
    row = review.decide(project, c.actor(project), item, decision, answer=answer, note=note)
    console.print(f"review item #{row.id}: {row.status}")


@app.command()
def accept(ctx: typer.Context, item: int = typer.Argument(..., help="Review item id."),
           note: str = typer.Option("", help="Why, for the record.")) -> None:
    """Accept the answer as good training data after all.

    Example:  tuneloop review accept 3 --note "answer was right"
    """
    _decide(ctx, item, "accept", None, note)


@app.command()
def edit(ctx: typer.Context, item: int = typer.Argument(..., help="Review item id."),
         answer: str = typer.Option(..., help="The corrected answer."),
         note: str = typer.Option("", help="Why, for the record.")) -> None:
    """Replace the answer with a corrected one (redacted before it is stored).

    Example:  tuneloop review edit 3 --answer "Open Settings > Sync and press Resume."
    """
    _decide(ctx, item, "edit", answer, note)


@app.command()
def reject(ctx: typer.Context, item: int = typer.Argument(..., help="Review item id."),
           note: str = typer.Option("", help="Why, for the record.")) -> None:
    """Keep this request out of training data.

    Example:  tuneloop review reject 3 --note "off-topic"
    """
    _decide(ctx, item, "reject", None, note)
