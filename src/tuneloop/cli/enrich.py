"""`tuneloop enrich`: a new dataset version from the request log and feedback."""

from __future__ import annotations

import datetime as dt

import typer
from rich.table import Table

from tuneloop.cli._common import console, state, tier_label
from tuneloop.errors import TuneloopError


def parse_when(text: str | None) -> dt.datetime | None:
    """'24h', '7d', '2w' ago, or an ISO date/time (UTC when no zone is given)."""
    if not text:
        return None
    from tuneloop.governance.approvals import parse_duration
    from tuneloop.store.models import utcnow

    if text[-1:] in "mhdw" and text[:-1].strip().isdigit():
        return utcnow() - parse_duration(text)
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise TuneloopError(f"cannot read time {text!r}; use 24h, 7d, 2w or an ISO date such as "
                            "2026-01-31") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def enrich(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Dataset name for the new version."),
    variant: str | None = typer.Option(None, help="Only requests this variant answered."),
    audience: str | None = typer.Option(None, help="Only requests from internal or public."),
    since: str | None = typer.Option(None, help="From this time (24h, 7d or an ISO date)."),
    until: str | None = typer.Option(None, help="Up to this time (same forms)."),
    min_rating: int | None = typer.Option(None, help="Keep uncorrected answers rated at least."),
    slice_: str | None = typer.Option(None, "--slice", help="Only prompts mentioning this."),
    include_unrated: bool = typer.Option(False, help="Also keep answers nobody rated."),
    against: list[str] | None = typer.Option(
        None, help="Datasets new examples must not nearly duplicate (default: all of them)."),
) -> None:
    """Build a dataset version from logged requests, ratings and corrections.

    A correction replaces the model's answer; a thumbs-down without one goes to
    `tuneloop review`; near duplicates of existing examples are dropped. Tier 2 logs need a
    `train` approval for `logs:VARIANT`.

    Example:  tuneloop enrich support-feedback --since 7d --audience internal
    """
    from tuneloop.flywheel.enrich import Filters
    from tuneloop.flywheel.enrich import enrich as run

    c = state(ctx)
    project = c.project()
    filters = Filters(variant=variant, audience=audience, since=parse_when(since),
                      until=parse_when(until), min_rating=min_rating, slice=slice_,
                      include_unrated=include_unrated)
    report = run(project, c.actor(project), name, filters=filters, against=against or None)
    table = Table(title=f"enrich {name}")
    table.add_column("outcome")
    table.add_column("requests", justify="right")
    for key, count in sorted(report.counts.items()):
        table.add_row(key.replace("_", " "), str(count))
    console.print(table)
    if report.version is None:
        console.print("[yellow]no request qualified: no version written[/]")
        return
    v = report.version
    console.print(f"wrote [bold]{v.ref}[/] (tier {tier_label(v.tier)}): "
                  + ", ".join(f"{s} {n}" for s, n in v.counts.items()))
    if report.queued:
        console.print(f"{len(report.queued)} request(s) queued for review: `tuneloop review list`")
    console.print(f"next: `tuneloop train {v.ref}` then `tuneloop eval`")
