"""`tuneloop data tier`: a privacy officer lowers a source's tier, with a reason, audited."""

from __future__ import annotations

import typer
from sqlalchemy import select

from tuneloop.cli._common import console, state
from tuneloop.errors import NotFound
from tuneloop.governance import tier_floor
from tuneloop.store import Source


def tier(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The source."),
    new_tier: int = typer.Argument(..., metavar="TIER", help="The lower tier (1)."),
    reason: str = typer.Option("", help="Why the data is not customer data: kept in the audit."),
) -> None:
    """Lower a source's tier (privacy role, with your own key). Tiers never go down otherwise.

    Example:  tuneloop --key $PRIVACY_KEY data tier tickets 1 --reason "synthetic data (PRV-7)"
    """
    from tuneloop.data.sources import content_hash

    c = state(ctx)
    project = c.project()
    actor = c.actor(project)
    # The store's row, not a sync with tuneloop.yaml: the file may already say the lower tier.
    with project.store.session(write=False) as session:
        row = session.execute(select(Source).where(Source.name == name)).scalar_one_or_none()
        stored = row.path if row is not None else None
    if stored is None:
        raise NotFound(f"no source named {name!r} in the store", hint="`tuneloop data sources`")
    path = project.path(stored).resolve()
    with project.store.session() as session:
        before = tier_floor.lower_source_tier(session, actor, name, new_tier, reason, path=path,
                                              digest=content_hash(path))
    console.print(f"[green]✓[/] source {name}: Tier {before} → Tier {new_tier} (audited); "
                  "set the same tier in tuneloop.yaml if it declares this source")
