"""`index_knowledge_base`: bring the index in the store in line with the knowledge-base sources.

Only documents whose content changed are chunked and embedded again; documents that disappeared
leave the index; a source whose tier changed has its chunks re-tagged at once (no re-embedding).
Nothing is written until every document has been read and embedded, and then everything is
written in one transaction: a bad document stops the run with its file named and loses nothing.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import delete, select, update

from tuneloop.data.chunking import ChunkText, chunk_blocks
from tuneloop.data.readers import Document, iter_documents
from tuneloop.data.sources import SourceInfo, get_source
from tuneloop.data.structure import blocks_of
from tuneloop.errors import ConfigError
from tuneloop.governance import audit, require
from tuneloop.governance.tiers import Actor
from tuneloop.project import Project
from tuneloop.rag import snapshot
from tuneloop.rag.embed import Embedder, get_embedder
from tuneloop.store import utcnow
from tuneloop.store.rag import RagChunk, RagDocument, RagIndexState

#: progress(stage, done, total): "reading", "embedding", "writing"
Progress = Callable[[str, int, int], None]


@dataclass
class IndexReport:
    """What one indexing run changed."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    retagged: list[str] = field(default_factory=list)
    unchanged: int = 0
    chunks_embedded: int = 0
    chunks_total: int = 0
    sources: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed or self.retagged)

    def __str__(self) -> str:
        return (f"indexed {', '.join(self.sources)}: {len(self.added)} added, "
                f"{len(self.updated)} updated, {len(self.removed)} removed, "
                f"{len(self.retagged)} re-tagged, {self.unchanged} unchanged; "
                f"{self.chunks_embedded} chunks embedded, {self.chunks_total} in the index "
                f"({self.seconds:.1f} s)")


@dataclass
class _Pending:
    doc_id: str
    source: SourceInfo
    document: Document
    content_hash: str
    chunks: list[ChunkText]


def index_knowledge_base(project: Project, actor: Actor, progress: Progress | None = None, *,
                         sources: list[str] | None = None) -> IndexReport:
    """Index the knowledge-base sources (all of `knowledge_base.sources`, or the ones named).

    Indexing reads the documents, so it is a use of them (`rag`) and passes the gate: a Tier 2
    source needs a live approval. Returns what changed.
    """
    started = time.perf_counter()
    kb = project.config.knowledge_base
    infos = _gated_sources(project, actor, list(sources) if sources else list(kb.sources))
    report = IndexReport(sources=[i.name for i in infos])
    note = progress or (lambda stage, done, total: None)
    stored = _stored(project)
    stale_model = stored.state is not None and stored.state.embedding_model not in (
        "", kb.embedding_model)
    embedder = get_embedder(kb.embedding_model)
    reading = _read_documents(project, infos, stored.known, stale_model, embedder.count_tokens,
                              report, note)
    report.removed.extend(_removed(stored.known, reading.seen, set(report.sources),
                                   whole_kb=not sources, kb_sources=kb.sources))
    report.retagged = sorted(reading.retag)
    vectors = _embed(embedder, reading.pending, note)
    report.chunks_embedded = sum(len(p.chunks) for p in reading.pending)
    if report.changed or stored.state is None or stale_model:
        _write(project, actor, report, reading.pending, reading.retag, vectors, embedder.name,
               embedder.dim)
    note("writing", 1, 1)
    index = snapshot.current(project.store, project.state_dir)
    report.chunks_total = index.size if index is not None else 0
    report.seconds = time.perf_counter() - started
    return report


def _gated_sources(project: Project, actor: Actor, names: list[str]) -> list[SourceInfo]:
    """The named document sources, once the gate allows `rag` on all of them."""
    if not names:
        raise ConfigError(f"{project.config_path}: knowledge_base.sources is empty",
                          hint="list the `documents` sources to index under knowledge_base.sources")
    infos = [get_source(project, name) for name in names]
    for info in infos:
        if info.kind != "documents":
            raise ConfigError(f"source {info.name!r} holds {info.kind}, not documents; only "
                              "document sources can be indexed for retrieval")
    require(project.store, actor, "rag", [info.resource for info in infos],
            purpose="index the knowledge base")
    return infos


@dataclass
class _Stored:
    """What the store already holds: the index state and each document's hash, tier, source."""

    state: RagIndexState | None
    known: dict[str, tuple[str, int, str]]


def _stored(project: Project) -> _Stored:
    with project.store.session(write=False) as session:
        state = session.get(RagIndexState, 1)
        known = {d.doc_id: (d.content_hash, d.tier, d.source) for d in
                 session.execute(select(RagDocument)).scalars()}
    return _Stored(state, known)


@dataclass
class _Reading:
    """The documents read: those to (re)chunk, every id seen, and tier changes to apply."""

    pending: list[_Pending] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    retag: dict[str, int] = field(default_factory=dict)


def _read_documents(project: Project, infos: list[SourceInfo],
                    known: dict[str, tuple[str, int, str]], stale_model: bool,
                    count_tokens: Callable[[str], int], report: IndexReport,
                    note: Progress) -> _Reading:
    """Read every document, chunk the new and changed ones, and count the unchanged."""
    kb = project.config.knowledge_base
    reading = _Reading()
    documents = [(info, doc) for info in infos for doc in iter_documents(info.path)]
    for n, (info, doc) in enumerate(documents, start=1):
        doc_id = f"{info.name}:{doc.relpath}"
        reading.seen.add(doc_id)
        # The chunking settings are part of what the chunks were made from: change them and
        # every document is chunked again.
        recipe = f"{kb.chunk_tokens}/{kb.overlap_tokens}\n{doc.text}"
        digest = hashlib.sha256(recipe.encode("utf-8")).hexdigest()
        old = known.get(doc_id)
        if old is not None and old[0] == digest and not stale_model:
            report.unchanged += 1
            if old[1] != info.tier:
                reading.retag[doc_id] = info.tier
        else:
            blocks = blocks_of(doc.text, doc.format, doc.path)
            chunks = chunk_blocks(blocks, count_tokens, chunk_tokens=kb.chunk_tokens,
                                  overlap_tokens=kb.overlap_tokens, title=doc.title)
            reading.pending.append(_Pending(doc_id, info, doc, digest, chunks))
            (report.updated if old is not None else report.added).append(doc_id)
        note("reading", n, len(documents))
    return reading


def _removed(known: dict[str, tuple[str, int, str]], seen: set[str], indexed: set[str], *,
             whole_kb: bool, kb_sources: list[str]) -> list[str]:
    """Documents gone from an indexed source leave; so do sources no longer in the knowledge
    base (only when the whole knowledge base is indexed, not a chosen part of it)."""
    return [doc_id for doc_id, (_, _, source) in known.items()
            if doc_id not in seen
            and (source in indexed or (whole_kb and source not in kb_sources))]


def _embed(embedder: Embedder, pending: list[_Pending], note: Progress) -> np.ndarray:
    """The vectors of every new chunk, one row each, in order."""
    texts = [c.text for p in pending for c in p.chunks]
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        note("embedding", done, len(texts))

    if not texts:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    return embedder.embed(texts, progress=advance)


def _write(project: Project, actor: Actor, report: IndexReport, pending: list[_Pending],
           retag: dict[str, int], vectors: np.ndarray, model: str, dim: int) -> None:
    row = 0
    with project.store.session() as session:
        gone = report.removed + [p.doc_id for p in pending]
        if gone:
            ids = select(RagDocument.id).where(RagDocument.doc_id.in_(gone))
            session.execute(delete(RagChunk).where(RagChunk.document_id.in_(ids)))
        if report.removed:
            session.execute(delete(RagDocument).where(RagDocument.doc_id.in_(report.removed)))
        for doc_id, tier in retag.items():
            session.execute(update(RagDocument).where(RagDocument.doc_id == doc_id)
                            .values(tier=tier))
            ids = select(RagDocument.id).where(RagDocument.doc_id == doc_id)
            session.execute(update(RagChunk).where(RagChunk.document_id.in_(ids))
                            .values(tier=tier))
        existing = {d.doc_id: d for d in session.execute(
            select(RagDocument).where(RagDocument.doc_id.in_([p.doc_id for p in pending]))
        ).scalars()}
        now = utcnow()
        for item in pending:
            doc = existing.get(item.doc_id)
            if doc is None:
                doc = RagDocument(doc_id=item.doc_id)
                session.add(doc)
            doc.source, doc.tier = item.source.name, item.source.tier
            doc.path, doc.title = str(item.document.path), item.document.title
            doc.content_hash, doc.n_chunks = item.content_hash, len(item.chunks)
            doc.indexed_at = now
            session.flush()
            for ordinal, chunk in enumerate(item.chunks):
                session.add(RagChunk(
                    document_id=doc.id, chunk_id=f"{item.doc_id}#{ordinal}", ordinal=ordinal,
                    source=item.source.name, tier=item.source.tier, heading=chunk.heading,
                    text=chunk.text, n_tokens=chunk.n_tokens,
                    content_hash=hashlib.sha256(chunk.text.encode("utf-8")).hexdigest(),
                    embedding=vectors[row].tobytes()))
                row += 1
        state = session.get(RagIndexState, 1)
        if state is None:
            state = RagIndexState(id=1, generation=0)
            session.add(state)
        state.generation += 1
        state.embedding_model, state.dim, state.updated_at = model, dim, now
        audit.record(session, actor=actor.name, action="rag.index",
                     target=", ".join(f"source:{s}" for s in report.sources),
                     tier=max((p.source.tier for p in pending), default=1),
                     details={"added": len(report.added), "updated": len(report.updated),
                              "removed": len(report.removed), "retagged": len(report.retagged),
                              "chunks": report.chunks_embedded})


@dataclass(frozen=True)
class SourceStatus:
    """What the index holds for one source."""

    source: str
    tier: int
    documents: int
    chunks: int


def index_status(project: Project) -> tuple[int, str, list[SourceStatus]]:
    """The index's generation, its embedding model, and documents and chunks per source."""
    from sqlalchemy import func

    with project.store.session(write=False) as session:
        state = session.get(RagIndexState, 1)
        rows = session.execute(
            select(RagDocument.source, func.max(RagDocument.tier), func.count(RagDocument.id),
                   func.sum(RagDocument.n_chunks))
            .group_by(RagDocument.source).order_by(RagDocument.source)
        ).all()
    sources = [SourceStatus(s, int(t), int(d), int(c or 0)) for s, t, d, c in rows]
    return (state.generation if state else 0, state.embedding_model if state else "", sources)
