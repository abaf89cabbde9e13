"""The search structures of one index generation: read from `.tuneloop/index/` or rebuilt from
the store, and kept in memory per process.

The store is the truth; the files are a cache any replica can rebuild. Each search reads the
store's generation (one small query) and reloads only when it changed, so a replica sees a
re-index made by another process without a restart.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
from sqlalchemy import select

from tuneloop.rag.hybrid import HybridIndex
from tuneloop.store import Store
from tuneloop.store.rag import RagChunk, RagIndexState

INDEX_DIR = "index"

_cache: dict[str, tuple[str, HybridIndex | None]] = {}
_lock = threading.Lock()


def fingerprint(store: Store) -> str:
    """A name for the store's current index generation ("empty" before the first index)."""
    with store.session(write=False) as session:
        state = session.get(RagIndexState, 1)
        if state is None:
            return "empty"
        return f"g{state.generation}-{int(state.updated_at.timestamp() * 1e6)}"


def current(store: Store, state_dir: Path) -> HybridIndex | None:
    """The index of the store's current generation (None when nothing is indexed)."""
    key = f"{state_dir.resolve()}|{store.safe_url}"
    stamp = fingerprint(store)
    cached = _cache.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    with _lock:
        cached = _cache.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        index = None if stamp == "empty" else _load_or_build(store, state_dir, stamp)
        _cache[key] = (stamp, index)
        return index


def build_files(store: Store, state_dir: Path) -> HybridIndex | None:
    """Build (or reuse) the files of the current generation and drop older generations; the
    same as `current`, named for callers that want the files ready before the first search."""
    return current(store, state_dir)


def _load_or_build(store: Store, state_dir: Path, stamp: str) -> HybridIndex | None:
    root = state_dir / INDEX_DIR
    folder = root / f"rag-{stamp}"
    if (folder / "complete").exists():
        return HybridIndex.load(folder)
    index = build_from_store(store)
    if index is None:
        return None
    root.mkdir(parents=True, exist_ok=True)
    # Written into a temporary folder and renamed: a reader never sees half an index.
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    try:
        index.save(tmp)
        (tmp / "complete").write_text(stamp, encoding="utf-8")
        try:
            tmp.rename(folder)
        except OSError:  # another process finished the same generation first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in root.glob("rag-*"):
        if old != folder:
            shutil.rmtree(old, ignore_errors=True)
    return index


def build_from_store(store: Store, batch: int = 5000) -> HybridIndex | None:
    """Read every chunk (text, source, tier, embedding) from the store and build the index."""
    pks: list[int] = []
    sources: list[str] = []
    tiers: list[int] = []
    texts: list[str] = []
    vectors: list[np.ndarray] = []
    last = 0
    with store.session(write=False) as session:
        while True:
            rows = session.execute(
                select(RagChunk.id, RagChunk.source, RagChunk.tier, RagChunk.text,
                       RagChunk.embedding)
                .where(RagChunk.id > last).order_by(RagChunk.id).limit(batch)
            ).all()
            if not rows:
                break
            for pk, source, tier, text, embedding in rows:
                pks.append(pk)
                sources.append(source)
                tiers.append(tier)
                texts.append(text)
                vectors.append(np.frombuffer(embedding, dtype=np.float32))
            last = rows[-1][0]
    if not pks:
        return None
    return HybridIndex.build(pks, sources, tiers, texts, np.vstack(vectors))


def forget(state_dir: Path | None = None) -> None:
    """Drop the in-memory indexes (all, or those of one project)."""
    with _lock:
        if state_dir is None:
            _cache.clear()
            return
        prefix = f"{state_dir.resolve()}|"
        for key in [k for k in _cache if k.startswith(prefix)]:
            del _cache[key]
