"""Near-duplicate detection with MinHash signatures (datasketch) and LSH banding.

Records are added one at a time while the build streams through its inputs; only a compact
signature is kept per record (band keys plus a 16-bit sketch, about 300 bytes), never the text.
`resolve()` then finds, band by band with numpy sorts, the records that share a bucket:

- a record whose estimated Jaccard similarity with an earlier one reaches the threshold is a near
  duplicate of it and is dropped;
- records that merely share a bucket (similar, below the threshold) join one *group*, and a group
  goes to one split as a whole, so that no near duplicate can cross from train into test.

datasketch's own `MinHashLSH` keeps Python sets per bucket (kilobytes per record), too much for a
million records on one machine; its `MinHash` does the hashing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

NUM_PERM = 96
MAX_BANDS = 24
BLOCK = 65536
_WORDS = re.compile(r"\w+")
# Odd 64-bit multipliers that fold a band's values into one key (a universal hash over vectors).
_FOLD = np.random.RandomState(20240601).randint(1, 2**62, size=64, dtype=np.int64).astype(
    np.uint64) * np.uint64(2) + np.uint64(1)


def shingles(text: str, size: int = 3) -> list[bytes]:
    """Word n-grams of the lower-cased text (the words themselves for very short texts)."""
    words = _WORDS.findall(text.lower())
    if len(words) < size:
        return [w.encode() for w in words] or [b""]
    return [" ".join(words[i:i + size]).encode() for i in range(len(words) - size + 1)]


def banding(threshold: float, num_perm: int = NUM_PERM) -> tuple[int, int]:
    """(bands, rows) whose S-curve rises a little below `threshold`.

    Candidates are verified on their estimated similarity afterwards, so the banding errs towards
    finding too many: a pair at the threshold is found with probability above 0.95.
    """
    target = max(0.05, threshold - 0.15)
    best = (MAX_BANDS, 1)
    best_gap = 1.0
    for rows in range(1, num_perm + 1):
        bands = min(num_perm // rows, MAX_BANDS)
        if bands < 1:
            break
        gap = abs((1 / bands) ** (1 / rows) - target)
        if gap < best_gap:
            best, best_gap = (bands, rows), gap
    return best


@dataclass
class Resolution:
    """For each added record: the earlier record it duplicates (or -1) and its group's first."""

    duplicate_of: np.ndarray
    group: np.ndarray
    similarity: np.ndarray


class NearDuplicates:
    """Collects MinHash signatures of records as they stream past; `resolve()` clusters them."""

    def __init__(self, threshold: float, *, num_perm: int = NUM_PERM, seed: int = 1,
                 shingle_size: int = 3) -> None:
        """`shingle_size`: words per shingle; short texts (questions) compare better with 2."""
        from datasketch import MinHash

        self.threshold = threshold
        self.shingle_size = shingle_size
        self.num_perm = num_perm
        self.bands, self.rows = banding(threshold, num_perm)
        import xxhash

        # xxHash instead of datasketch's default SHA-1: the same quality for this, five times
        # faster, and stable across processes and machines.
        self._hash = xxhash.xxh32_intdigest
        template = MinHash(num_perm=num_perm, seed=seed, hashfunc=self._hash)
        self._perms, self._scheme = template.permutations, template.scheme
        self._minhash = MinHash
        self._keys: list[np.ndarray] = []
        self._sketch: list[np.ndarray] = []
        self.count = 0

    def add(self, text: str) -> int:
        """Add one record's text; returns its index."""
        m = self._minhash(num_perm=self.num_perm, permutations=self._perms, scheme=self._scheme,
                          hashfunc=self._hash)
        m.update_batch(shingles(text, self.shingle_size))
        values = m.hashvalues.astype(np.uint64)
        slot = self.count % BLOCK
        if slot == 0:
            self._keys.append(np.zeros((BLOCK, self.bands), dtype=np.uint64))
            self._sketch.append(np.zeros((BLOCK, self.num_perm), dtype=np.uint16))
        used = values[: self.bands * self.rows].reshape(self.bands, self.rows)
        self._keys[-1][slot] = (used * _FOLD[: self.rows]).sum(axis=1, dtype=np.uint64)
        self._sketch[-1][slot] = values.astype(np.uint16)
        self.count += 1
        return self.count - 1

    def resolve(self) -> Resolution:
        """Decide duplicates and groups for everything added so far."""
        n = self.count
        keys = np.concatenate(self._keys)[:n] if n else np.zeros((0, self.bands), np.uint64)
        sketch = np.concatenate(self._sketch)[:n] if n else np.zeros((0, self.num_perm), np.uint16)
        self._keys, self._sketch = [keys], [sketch]
        dup_parent = np.arange(n, dtype=np.int64)
        group_parent = np.arange(n, dtype=np.int64)
        best_sim = np.zeros(n, dtype=np.float32)
        for band in range(self.bands):
            column = keys[:, band]
            order = np.argsort(column, kind="stable")
            ordered = column[order]
            starts = np.flatnonzero(np.diff(ordered)) + 1
            bounds = np.concatenate(([0], starts, [n]))
            sizes = np.diff(bounds)
            for i in np.flatnonzero(sizes > 1):
                members = np.sort(order[bounds[i]:bounds[i + 1]])
                first = members[0]
                others = members[1:]
                sims = (sketch[others] == sketch[first]).mean(axis=1)
                for other, sim in zip(others.tolist(), sims.tolist(), strict=True):
                    _union(group_parent, first, other)
                    if sim >= self.threshold:
                        _union(dup_parent, first, other)
                        best_sim[other] = max(best_sim[other], sim)
        duplicate_of = np.array([_find(dup_parent, i) for i in range(n)], dtype=np.int64)
        duplicate_of[duplicate_of == np.arange(n)] = -1
        group = np.array([_find(group_parent, i) for i in range(n)], dtype=np.int64)
        return Resolution(duplicate_of=duplicate_of, group=group, similarity=best_sim)


def _find(parent: np.ndarray, i: int) -> int:
    root = i
    while parent[root] != root:
        root = int(parent[root])
    while parent[i] != root:
        parent[i], i = root, int(parent[i])
    return root


def _union(parent: np.ndarray, a: int, b: int) -> None:
    # The earlier record stays the root, so the first occurrence is the one that is kept.
    ra, rb = _find(parent, int(a)), _find(parent, int(b))
    if ra != rb:
        parent[max(ra, rb)] = min(ra, rb)
