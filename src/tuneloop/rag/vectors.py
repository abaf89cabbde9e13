"""Vector search split into permission partitions, each exact or approximate by its size.

Visibility is decided per source, so the index keeps one partition per source. A query searches
only the partitions the principal may see and merges their results: the permission filter is part
of the query itself, results are never starved by chunks filtered out after the top-k, and
nothing the principal may not see is even scored. A partition below `EXACT_MAX` vectors is
searched exactly (FAISS's brute-force k-NN, no index to build); a larger one uses a FAISS
inverted-file index (IVF-Flat), whose `nprobe` trades speed for recall.

A query is searched on one thread. For one query vector FAISS's single-threaded scan took 0.8 ms of
CPU over 14,000 rows on the shared 2-core machine, a NumPy matrix product 2.4 ms on one BLAS thread
and 7.9 ms on two (whose threads also spin and wait for a core another process holds); serving
answers requests side by side instead. FAISS's OpenMP thread count is per calling thread, so
limiting it for a query limits nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tuneloop.rag.bm25 import top_k

EXACT_MAX = 20_000
DEFAULT_NPROBE = 48


@dataclass
class Partition:
    """A contiguous range of rows (`start` to `stop`) and the structure that searches them."""

    key: str
    start: int
    stop: int
    ivf: Any = None  # a faiss index when the partition is large (faiss has no usable types)

    @property
    def rows(self) -> np.ndarray:
        return np.arange(self.start, self.stop, dtype=np.int64)

    def exact(self, vectors: np.ndarray, query: np.ndarray,
              k: int) -> tuple[np.ndarray, np.ndarray]:
        """Brute force over this partition's rows: the best `k` (rows, cosines), best first."""
        import faiss

        if self.stop <= self.start or k <= 0:
            return top_k(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32), k)
        # A slice of contiguous rows is a contiguous view: no copy of the vectors per query.
        block = np.ascontiguousarray(vectors[self.start:self.stop], dtype=np.float32)
        with one_thread():
            sims, local = faiss.knn(_row(query), block, min(k, self.stop - self.start),
                                    metric=faiss.METRIC_INNER_PRODUCT)
        return _ranked(local[0], sims[0], self.start, k)

    def search(self, vectors: np.ndarray, query: np.ndarray, k: int,
               nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        """The best `k` rows of this partition, exactly or through its IVF index."""
        if self.ivf is None:
            return self.exact(vectors, query, k)
        self.ivf.nprobe = nprobe  # type: ignore[attr-defined]
        with one_thread():
            sims, local = self.ivf.search(_row(query), k)  # type: ignore[attr-defined]
        return _ranked(local[0], sims[0], self.start, k)


class VectorIndex:
    """Embeddings (unit rows, so inner product is cosine) grouped into permission partitions."""

    def __init__(self, vectors: np.ndarray, partitions: Mapping[str, Partition],
                 nprobe: int = DEFAULT_NPROBE) -> None:
        self.vectors = vectors
        self.partitions = dict(partitions)
        self.nprobe = nprobe

    @classmethod
    def build(cls, vectors: np.ndarray, keys: Iterable[str], *, exact_max: int = EXACT_MAX,
              nprobe: int = DEFAULT_NPROBE, seed: int = 0) -> VectorIndex:
        """Partition `vectors` by `keys`, one per row; rows of one key must be contiguous."""
        keys = list(keys)
        if len(keys) != len(vectors):
            raise ValueError(f"{len(keys)} partition keys for {len(vectors)} vectors")
        partitions: dict[str, Partition] = {}
        start = 0
        for i in range(1, len(keys) + 1):
            if i < len(keys) and keys[i] == keys[start]:
                continue
            key = keys[start]
            if key in partitions:
                raise ValueError(f"rows of partition {key!r} are not contiguous; sort them by key")
            ivf = _build_ivf(vectors[start:i], seed) if i - start > exact_max else None
            partitions[key] = Partition(key, start, i, ivf)
            start = i
        return cls(vectors, partitions, nprobe)

    def search(self, query: np.ndarray, k: int,
               visible: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """The best `k` rows among the partitions named in `visible`, best first, with cosines."""
        rows: list[np.ndarray] = []
        sims: list[np.ndarray] = []
        for key in visible:
            part = self.partitions.get(key)
            if part is None:
                continue
            r, s = part.search(self.vectors, query, k, self.nprobe)
            rows.append(r)
            sims.append(s)
        if not rows:
            return top_k(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32), k)
        return top_k(np.concatenate(rows), np.concatenate(sims), k)

    def exact_search(self, query: np.ndarray, k: int,
                     visible: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """Brute force over the same partitions: the truth that recall is measured against."""
        rows: list[np.ndarray] = []
        sims: list[np.ndarray] = []
        for key in visible:
            if key in self.partitions:
                r, s = self.partitions[key].exact(self.vectors, query, k)
                rows.append(r)
                sims.append(s)
        if not rows:
            return top_k(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32), k)
        return top_k(np.concatenate(rows), np.concatenate(sims), k)

    def save(self, folder: Path) -> None:
        """Write vectors and partitions into `folder`."""
        import faiss

        np.save(folder / "vectors.npy", self.vectors)
        for i, (key, part) in enumerate(sorted(self.partitions.items())):
            (folder / f"part{i}.key").write_text(f"{part.start} {part.stop} {key}",
                                                 encoding="utf-8")
            if part.ivf is not None:
                faiss.write_index(part.ivf, str(folder / f"part{i}.faiss"))

    @classmethod
    def load(cls, folder: Path, nprobe: int = DEFAULT_NPROBE) -> VectorIndex:
        """Read an index written by `save`."""
        import faiss

        vectors = np.load(folder / "vectors.npy")
        partitions = {}
        for key_file in sorted(folder.glob("part*.key")):
            stem = key_file.name[: -len(".key")]
            start, stop, key = key_file.read_text(encoding="utf-8").split(" ", 2)
            ivf_path = folder / f"{stem}.faiss"
            ivf = faiss.read_index(str(ivf_path)) if ivf_path.exists() else None
            partitions[key] = Partition(key, int(start), int(stop), ivf)
        return cls(vectors, partitions, nprobe)


@contextmanager
def one_thread() -> Iterator[None]:
    """FAISS's OpenMP at one thread in the calling thread for the block (per thread: see above)."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _row(query: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)


def _ranked(local: np.ndarray, sims: np.ndarray, start: int,
            k: int) -> tuple[np.ndarray, np.ndarray]:
    """FAISS's answer (local rows, -1 for none) as global rows, ties broken by row like `top_k`."""
    keep = local >= 0
    return top_k(local[keep].astype(np.int64) + start, sims[keep].astype(np.float32), k)


def _build_ivf(vectors: np.ndarray, seed: int) -> object:
    import faiss

    n, dim = vectors.shape
    # About 2·√n lists, but never so many that k-means has under ~39 points per centroid: fewer,
    # larger lists keep recall high at a small scanned fraction, and train fast.
    nlist = max(1, min(int(2 * math.sqrt(n)), n // 39))
    quantizer = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    # k-means on a sample (32 points per list, 10 rounds) is nearly as good and much faster.
    rng = np.random.default_rng(seed)
    sample = vectors[rng.choice(n, size=min(n, nlist * 32), replace=False)]
    ivf.cp.niter = 10
    ivf.cp.seed = seed
    ivf.cp.min_points_per_centroid = 16
    # OpenMP threads cost more than they save on small partitions (and on a busy machine).
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads if n >= 50_000 else 1)
    try:
        ivf.train(np.ascontiguousarray(sample, dtype=np.float32))
        ivf.add(np.ascontiguousarray(vectors, dtype=np.float32))
    finally:
        faiss.omp_set_num_threads(threads)
    return ivf
