"""Semantic similarity: cosine similarity of sentence embeddings from the bundled MiniLM model.

The embedder is the retrieval stage's shared instance (`rag.embed.get_embedder`), so evaluating
next to a RAG variant loads the model once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tuneloop.evaluate.metrics import Metric, MetricContext, Sample, register

BUNDLED = "bundled:all-minilm-l6-v2"


@register
class SemanticSimilarity(Metric):
    """Cosine similarity of the answer's and the reference's embeddings, clipped to [0, 1].

    Paraphrases score high where word-overlap metrics do not. `model` is the bundled
    all-MiniLM-L6-v2 by default, or a path to a sentence-embedding model folder.
    """

    name = "semantic_similarity"
    description = "embedding cosine similarity with the reference"

    def __init__(self, *, model: str = BUNDLED, batch_size: int = 32) -> None:
        self.model = model
        self.batch_size = batch_size

    def score(self, prediction: str, reference: str, record: dict[str, Any],
              context: MetricContext) -> float | None:
        """Similarity of one pair."""
        return self.score_batch([Sample(prediction, reference, record, context)])[0]

    def score_batch(self, samples: Sequence[Sample]) -> list[float | None]:
        """Similarities of many pairs, embedded in batches."""
        if not samples:
            return []
        from tuneloop.rag.embed import get_embedder

        embedder = get_embedder(self.model)
        texts = [s.prediction for s in samples] + [s.reference for s in samples]
        vectors = np.asarray(embedder.embed(texts, batch_size=self.batch_size), dtype=float)
        n = len(samples)
        cosine = (vectors[:n] * vectors[n:]).sum(axis=1)
        out: list[float | None] = []
        for sample, value in zip(samples, cosine, strict=True):
            if not sample.prediction.strip() or not sample.reference.strip():
                # An empty text has no meaning to compare; equal only when both are empty.
                out.append(float(sample.prediction.strip() == sample.reference.strip()))
            else:
                out.append(float(min(1.0, max(0.0, value))))
        return out
