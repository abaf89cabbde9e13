"""A retrieved chunk (`Hit`): what retrieval returns and re-rankers, prompts and metrics read.

Its own module so that `retrieve` and `rerank` both use it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk: ids for citation, its text, and the scores that ranked it."""

    chunk_id: str
    doc_id: str
    source: str
    tier: int
    text: str
    score: float
    scores: dict[str, float | None] = field(default_factory=dict)
    ranks: dict[str, int | None] = field(default_factory=dict)
    heading: str = ""
    title: str = ""
