"""`tuneloop retention`: purge request logs past their tier's retention period."""

from __future__ import annotations

import typer
from rich.table import Table

from tuneloop.cli._common import console, state, when

app = typer.Typer(help="Retention of request logs per tier.", no_args_is_help=True)


@app.command()
def apply(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, help="Only count what would be purged."),
) -> None:
    """Delete logs (with feedback and review items) older than their tier's period.

    The periods are `privacy.retention_days` in tuneloop.yaml; `tuneloop serve` also runs this
    every hour.

    Example:  tuneloop retention apply --dry-run
    """
    from tuneloop.flywheel import retention

    c = state(ctx)
    project = c.project()
    cutoffs = retention.cutoffs(project)
    if dry_run:
        counts = retention.expired_count(project)
        feedback = review_items = None
    else:
        report = retention.apply(project, actor=c.actor(project).name)
        counts, feedback, review_items = report.logs, report.feedback, report.review_items
    days: dict[int, int] = {int(t): d for t, d in project.config.privacy.retention_days.items()}
    table = Table(title="retention" + (" (dry run)" if dry_run else ""))
    for col in ("tier", "kept for", "older than", "logs " + ("to purge" if dry_run else "purged")):
        table.add_column(col)
    for tier, cutoff in cutoffs.items():
        table.add_row(str(tier), f"{days.get(tier, '-')} days", when(cutoff),
                      str(counts.get(tier, 0)))
    console.print(table)
    if feedback is not None:
        console.print(f"also removed: {feedback} feedback, {review_items} review items")
