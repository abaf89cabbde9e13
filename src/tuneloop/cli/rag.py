"""`tuneloop rag`: index the knowledge base, and query it as a given principal."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.table import Table

from tuneloop.cli._common import console, stage_progress, state, tier_label
from tuneloop.errors import PermissionDenied

if TYPE_CHECKING:
    from tuneloop.governance.tiers import Actor
    from tuneloop.project import Project
    from tuneloop.rag.retrieve import Hit

app = typer.Typer(help="Retrieval: index the knowledge base and query it.", no_args_is_help=True)


@app.command()
def index(
    ctx: typer.Context,
    kb: list[str] = typer.Argument(None, metavar="[KB]...",
                                   help="Sources to index (default: knowledge_base.sources)."),
) -> None:
    """Chunk, embed and store the knowledge-base documents; only changed documents are redone.

    Example:  tuneloop rag index          (or: tuneloop rag index handbook)
    """

    from tuneloop.rag.index import index_knowledge_base

    c = state(ctx)
    project = c.project()
    actor = c.actor(project)
    with stage_progress() as progress:
        report = index_knowledge_base(project, actor, progress, sources=kb or None)
    console.print(f"[green]✓[/] {report}", highlight=False)


@app.command()
def query(
    ctx: typer.Context,
    text: str = typer.Argument(..., help="The question."),
    as_: str | None = typer.Option(None, "--as", help="Search as this principal (admins only; "
                                   "default: yourself)."),
    top_k: int = typer.Option(4, "--top-k", "-k", min=1, max=100, help="How many hits."),
    reranker: str | None = typer.Option(None, help="A registered re-ranker, e.g. mmr."),
    full: bool = typer.Option(False, help="Show each hit's whole text."),
) -> None:
    """Show the hits a principal would get, with the score from each retriever.

    Example:  tuneloop rag query "how do I reset my password?" --as pub
    """
    from tuneloop.governance.principals import get_actor
    from tuneloop.rag.retrieve import search

    c = state(ctx)
    project = c.project()
    me = c.actor(project)
    actor = me
    if as_ and as_ != me.name:
        if me.role != "admin":
            raise PermissionDenied(f"only an admin searches as another principal; {me.name} has "
                                   f"role {me.role!r}")
        actor = get_actor(project.store, as_)
    hits = search(project, actor, text, top_k=top_k, reranker=reranker)
    hidden = _not_mine(project, me, hits) if actor != me else set()
    if not hits:
        console.print(f"no hits for {actor.name} (audience {actor.audience}); is the knowledge "
                      "base indexed? `tuneloop rag index`")
        return
    table = Table(title=f"{len(hits)} hits for {actor.name} (audience {actor.audience})")
    for column in ("#", "chunk", "tier", "fused", "bm25 (rank)", "vector (rank)"):
        table.add_column(column, no_wrap=True)
    table.add_column("text", overflow="fold", ratio=1)
    for n, hit in enumerate(hits, start=1):
        body = hit.text if full else hit.text.replace("\n", " ")[:160]
        if hit.source in hidden:
            body = (f"[Tier 2 text hidden: {actor.name} would get it; showing it to you needs "
                    f"your own approval for source:{hit.source}]")
        table.add_row(str(n), hit.chunk_id, tier_label(hit.tier), f"{hit.score:.4f}",
                      _score(hit.scores.get("bm25"), hit.ranks.get("bm25"), ".2f"),
                      _score(hit.scores.get("vector"), hit.ranks.get("vector"), ".3f"), body)
    console.print(table)


def _not_mine(project: Project, me: Actor, hits: list[Hit]) -> set[str]:
    """The Tier 2 sources among `hits` whose text the caller may not see with their own rights
    (searching as someone else never borrows that person's approvals)."""
    from tuneloop.governance import approvals
    from tuneloop.governance.visibility import visible_sources
    from tuneloop.store import utcnow

    tiers = {h.source: h.tier for h in hits if h.tier >= 2}
    if not tiers:
        return set()
    mine = visible_sources(me, tiers, approvals.grants_for(project.store, me), utcnow())
    return set(tiers) - mine


@app.command()
def status(ctx: typer.Context) -> None:
    """Show what the index holds: documents and chunks per source, with their tier.

    Example:  tuneloop rag status
    """
    from tuneloop.rag.index import index_status

    project = state(ctx).project()
    generation, model, sources = index_status(project)
    if not sources:
        console.print("the index is empty; build it with `tuneloop rag index`")
        return
    table = Table(title=f"RAG index, generation {generation} ({model})")
    for column in ("source", "tier", "documents", "chunks"):
        table.add_column(column)
    for row in sources:
        table.add_row(row.source, tier_label(row.tier), str(row.documents), str(row.chunks))
    console.print(table)


def _score(value: float | None, rank: int | None, fmt: str) -> str:
    shown = "-" if value is None else format(value, fmt)
    return f"{shown} ({rank})" if rank else f"{shown} (-)"
