"""The hybrid index: BM25 and vector search over the same chunks, fused by reciprocal rank.

Rows are ordered by source so that each source's vectors are one contiguous partition. A search
receives the set of sources the principal may see (decided by `governance.visibility`) and applies
it inside both retrievers: vector search only visits the visible partitions, BM25 masks scores
before ranking. Reciprocal rank fusion (Cormack et al., 2009) needs no score calibration between
the two retrievers, which is why it is the default.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tuneloop.rag.bm25 import BM25
from tuneloop.rag.bm25 import top_k as best
from tuneloop.rag.vectors import DEFAULT_NPROBE, EXACT_MAX, VectorIndex

RRF_K = 60


@dataclass
class Candidate:
    """One fused result: its row, fused score, each retriever's score and rank (None if absent)."""

    row: int
    chunk_pk: int
    source: str
    score: float
    scores: dict[str, float | None] = field(default_factory=dict)
    ranks: dict[str, int | None] = field(default_factory=dict)


class HybridIndex:
    """BM25 + partitioned vectors over chunks, searchable for a set of visible sources."""

    def __init__(self, pks: np.ndarray, source_of: np.ndarray, source_names: list[str],
                 tiers: np.ndarray, bm25: BM25, vectors: VectorIndex) -> None:
        self.pks = pks  # store primary keys, one per row
        self.source_of = source_of  # index into source_names, one per row
        self.source_names = source_names
        self.tiers = tiers
        self.bm25 = bm25
        self.vectors = vectors
        self._masks: dict[frozenset[str], np.ndarray] = {}
        self._source_tiers: dict[str, int] | None = None

    @classmethod
    def build(cls, pks: Sequence[int], sources: Sequence[str], tiers: Sequence[int],
              texts: Sequence[str], embeddings: np.ndarray, *, exact_max: int = EXACT_MAX,
              nprobe: int = DEFAULT_NPROBE) -> HybridIndex:
        """Build from parallel sequences (one entry per chunk) and the embedding matrix."""
        order = sorted(range(len(pks)), key=lambda i: (sources[i], pks[i]))
        names = sorted(set(sources))
        position = {name: i for i, name in enumerate(names)}
        ordered_sources = [sources[i] for i in order]
        return cls(
            pks=np.asarray([pks[i] for i in order], dtype=np.int64),
            source_of=np.asarray([position[s] for s in ordered_sources], dtype=np.int32),
            source_names=names,
            tiers=np.asarray([tiers[i] for i in order], dtype=np.int8),
            bm25=BM25.build(texts[i] for i in order),
            vectors=VectorIndex.build(np.ascontiguousarray(embeddings[order], dtype=np.float32),
                                      ordered_sources, exact_max=exact_max, nprobe=nprobe),
        )

    @property
    def size(self) -> int:
        return len(self.pks)

    def source_tiers(self) -> dict[str, int]:
        """Each source's tier, as recorded on its chunks (the highest if they disagree)."""
        if self._source_tiers is None:
            highest = np.zeros(len(self.source_names), dtype=np.int8)
            np.maximum.at(highest, self.source_of, self.tiers)
            self._source_tiers = {name: max(1, int(highest[i]))
                                  for i, name in enumerate(self.source_names)}
        return dict(self._source_tiers)

    def mask(self, visible: frozenset[str]) -> np.ndarray:
        """True for rows whose source is visible (cached: principals share a few distinct sets)."""
        found = self._masks.get(visible)
        if found is None:
            ids = [i for i, name in enumerate(self.source_names) if name in visible]
            found = np.isin(self.source_of, np.asarray(ids, dtype=np.int32))
            if len(self._masks) > 256:
                self._masks.clear()
            self._masks[visible] = found
        return found

    def search(self, query: str, query_vector: np.ndarray, visible: Iterable[str], top_k: int,
               *, candidates: int | None = None) -> list[Candidate]:
        """The `top_k` best chunks among visible sources, fused from both retrievers."""
        visible = frozenset(visible)
        n = candidates or max(50, 4 * top_k)
        bm25_scores = self.bm25.scores(query)
        mask = self.mask(visible)
        masked = np.where(mask, bm25_scores, 0.0)
        hits = np.flatnonzero(masked > 0)
        kw_rows, _ = best(hits, masked[hits], n)
        vec_rows, vec_sims = self.vectors.search(query_vector, n, visible)
        fused: dict[int, float] = {}
        ranks: dict[int, dict[str, int | None]] = {}
        for name, rows in (("bm25", kw_rows), ("vector", vec_rows)):
            for rank, row in enumerate(rows.tolist(), start=1):
                fused[row] = fused.get(row, 0.0) + 1.0 / (RRF_K + rank)
                ranks.setdefault(row, {"bm25": None, "vector": None})[name] = rank
        cosine = dict(zip(vec_rows.tolist(), vec_sims.tolist(), strict=True))
        ordered = sorted(fused, key=lambda r: (-fused[r], r))[:top_k]
        out = []
        for row in ordered:
            if not mask[row]:  # cannot happen: both retrievers saw only visible rows
                raise AssertionError("a chunk outside the visible sources reached the fusion")
            sim = cosine.get(row)
            if sim is None:
                sim = float(self.vectors.vectors[row] @ query_vector)
            out.append(Candidate(
                row=row, chunk_pk=int(self.pks[row]),
                source=self.source_names[int(self.source_of[row])], score=fused[row],
                scores={"bm25": float(bm25_scores[row]), "vector": float(sim), "rrf": fused[row]},
                ranks=ranks[row]))
        return out

    def save(self, folder: Path) -> None:
        """Write everything into `folder`."""
        np.save(folder / "pks.npy", self.pks)
        np.save(folder / "source_of.npy", self.source_of)
        np.save(folder / "tiers.npy", self.tiers)
        (folder / "sources.json").write_text(json.dumps(self.source_names), encoding="utf-8")
        self.bm25.save(folder)
        self.vectors.save(folder)

    @classmethod
    def load(cls, folder: Path, nprobe: int = DEFAULT_NPROBE) -> HybridIndex:
        """Read an index written by `save`."""
        return cls(
            pks=np.load(folder / "pks.npy"),
            source_of=np.load(folder / "source_of.npy"),
            source_names=json.loads((folder / "sources.json").read_text(encoding="utf-8")),
            tiers=np.load(folder / "tiers.npy"),
            bm25=BM25.load(folder),
            vectors=VectorIndex.load(folder, nprobe=nprobe),
        )
