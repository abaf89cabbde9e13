"""`search`: hybrid retrieval for one principal, filtered by what that principal may see.

Which sources a principal may see is decided in one place, `governance.visibility`, from the live
approvals; the decision is applied inside both retrievers (see `rag.hybrid`). Tier 2 chunks that
are returned pass the gate once more (`require(..., "rag", ...)`), which audits their use.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from tuneloop.governance import approvals, require
from tuneloop.governance.tiers import Actor
from tuneloop.governance.visibility import source_resource, visible_sources
from tuneloop.project import Project
from tuneloop.rag import snapshot
from tuneloop.rag.embed import get_embedder
from tuneloop.rag.hits import Hit
from tuneloop.rag.rerank import get_reranker
from tuneloop.store import utcnow
from tuneloop.store.rag import RagChunk, RagDocument


def search(project: Project, actor: Actor, query: str, top_k: int = 4, *,
           reranker: str | None = None, candidates: int | None = None,
           sources: Iterable[str] | None = None) -> list[Hit]:
    """The `top_k` chunks best matching `query` that `actor` may see, best first.

    An empty index gives no hits. `reranker` names a registered re-ranker (`rag.rerank`) that
    reorders a larger candidate set before the cut to `top_k`. `sources` restricts the search to
    those sources (a variant's declared knowledge base): whatever else was indexed is never
    returned, whoever asks.
    """
    if top_k < 1:
        raise ValueError("top_k must be at least 1")
    index = snapshot.current(project.store, project.state_dir)
    if index is None or not query.strip():
        return []
    tiers = index.source_tiers()
    if sources is not None:
        declared = set(sources)
        tiers = {name: tier for name, tier in tiers.items() if name in declared}
        if not tiers:
            return []
    grants = approvals.grants_for(project.store, actor) if max(tiers.values()) >= 2 else []
    visible = visible_sources(actor, tiers, grants, utcnow())
    embedder = get_embedder(project.config.knowledge_base.embedding_model)
    pool = top_k * 4 if reranker else top_k
    found = index.search(query, embedder.embed_query(query), visible, pool, candidates=candidates)
    hits = _hydrate(project, found)
    if reranker:
        hits = get_reranker(reranker).rerank(query, hits)
    hits = hits[:top_k]
    tier2 = sorted({h.source for h in hits if h.tier >= 2})
    if tier2:
        # Re-checks the approvals (defence in depth) and audits this use of Tier 2 chunks.
        require(project.store, actor, "rag", [source_resource(s, 2) for s in tier2],
                purpose="retrieval")
    return hits


def _hydrate(project: Project, found: list) -> list[Hit]:
    if not found:
        return []
    pks = [c.chunk_pk for c in found]
    with project.store.session(write=False) as session:
        rows = {r.RagChunk.id: r for r in session.execute(
            select(RagChunk, RagDocument.doc_id, RagDocument.title)
            .join(RagDocument, RagDocument.id == RagChunk.document_id)
            .where(RagChunk.id.in_(pks))
        )}
    hits = []
    for cand in found:
        row = rows.get(cand.chunk_pk)
        if row is None:  # removed by a re-index since this snapshot was built
            continue
        chunk = row.RagChunk
        hits.append(Hit(chunk_id=chunk.chunk_id, doc_id=row.doc_id, source=chunk.source,
                        tier=chunk.tier, text=chunk.text, score=cand.score, scores=cand.scores,
                        ranks=cand.ranks, heading=chunk.heading, title=row.title))
    return hits
