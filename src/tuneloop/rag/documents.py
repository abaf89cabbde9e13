"""Chunks of named documents, read from the index's store (no search involved).

Retrieval-aware training uses it to put a question's gold passage into its prompt when the
retriever missed it. The caller has already passed the governance gate for the sources it
names; only chunks of those sources are returned.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from sqlalchemy import select

from tuneloop.project import Project
from tuneloop.rag.metrics import ref_keys
from tuneloop.rag.retrieve import Hit
from tuneloop.store.rag import RagChunk, RagDocument


def document_chunks(project: Project, refs: Iterable[str], sources: Collection[str]
                    ) -> list[Hit]:
    """Every chunk, in document order, of the documents named by `refs` (a doc id, a file
    name or a file stem, as `metadata.kb_refs` give them) among the given `sources`."""
    wanted = set().union(*(ref_keys(r) for r in refs)) if refs else set()
    if not wanted or not sources:
        return []
    with project.store.session(write=False) as session:
        docs = [d for d in session.scalars(select(RagDocument)
                                           .where(RagDocument.source.in_(list(sources))))
                if ref_keys(d.doc_id) & wanted]
        if not docs:
            return []
        titles = {d.id: (d.doc_id, d.title) for d in docs}
        rows = session.scalars(select(RagChunk).where(RagChunk.document_id.in_(list(titles)))
                               .order_by(RagChunk.document_id, RagChunk.ordinal))
        return [Hit(chunk_id=c.chunk_id, doc_id=titles[c.document_id][0], source=c.source,
                    tier=c.tier, text=c.text, score=0.0, heading=c.heading,
                    title=titles[c.document_id][1]) for c in rows]
