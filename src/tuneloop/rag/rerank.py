"""Re-ranking: an optional step that reorders the fused candidates before the cut to top-k.

A re-ranker is anything with `rerank(query, hits) -> hits`; register one under a name with
`register_reranker` and select it with a variant's `retrieval.reranker`. The built-in `mmr`
(maximal marginal relevance) trades a little relevance for variety, so that near-duplicate
chunks (overlapping passages, copies of one page) do not fill every slot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from tuneloop.errors import ConfigError

if TYPE_CHECKING:
    from tuneloop.rag.hits import Hit


class Reranker(Protocol):
    """Reorders retrieved hits for a query; may drop some, never adds any."""

    def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]: ...


_registry: dict[str, Callable[[], Reranker]] = {}


def register_reranker(name: str, factory: Callable[[], Reranker]) -> None:
    """Make a re-ranker available under `name` (the factory is called once, on first use)."""
    _registry[name] = factory


_instances: dict[str, Reranker] = {}


def get_reranker(name: str) -> Reranker:
    """The re-ranker registered under `name`."""
    if name not in _registry:
        raise ConfigError(f"unknown re-ranker {name!r}; registered: {', '.join(sorted(_registry))}",
                          hint="set retrieval.reranker to a registered name, or leave it empty")
    if name not in _instances:
        _instances[name] = _registry[name]()
    return _instances[name]


class MMR:
    """Maximal marginal relevance over the hits' own embeddings (`lam` weighs relevance)."""

    def __init__(self, lam: float = 0.5) -> None:
        self.lam = lam

    def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
        """Greedily pick the hit most relevant to the query and least like those already picked."""
        if len(hits) < 3:
            return list(hits)
        from tuneloop.rag.embed import get_embedder

        embedder = get_embedder()
        vectors = embedder.embed([h.text for h in hits])
        relevance = vectors @ embedder.embed_query(query)
        chosen: list[int] = []
        left = list(range(len(hits)))
        while left:
            if chosen:
                redundancy = (vectors[left] @ vectors[chosen].T).max(axis=1)
            else:
                redundancy = np.zeros(len(left))
            value = self.lam * relevance[left] - (1 - self.lam) * redundancy
            pick = left[int(np.argmax(value))]
            chosen.append(pick)
            left.remove(pick)
        return [hits[i] for i in chosen]


register_reranker("mmr", MMR)
