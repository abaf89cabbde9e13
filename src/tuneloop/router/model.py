"""The query-type classifier: a sentence embedding of the user's message, then a linear model.

Training uses scikit-learn's multinomial logistic regression; what is stored is only its weights
(`weights.npz`: coefficients, intercepts, labels) beside `router.json`, never a pickle, and
prediction is one matrix product and a softmax in numpy, so a request pays for the embedding
and little else.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tuneloop.errors import DataError

WEIGHTS = "weights.npz"
META = "router.json"


@dataclass(frozen=True)
class Prediction:
    """The slice a message most likely belongs to, how sure the router is, and the runner-up."""

    slice: str
    confidence: float
    probabilities: dict[str, float]


def message_text(messages: Sequence[dict[str, Any]]) -> str:
    """What the router reads: the conversation's last user message."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return str(message.get("content") or "")
    return ""


class QueryRouter:
    """Predicts a slice from a message; `fit` on embeddings, `predict` on texts."""

    def __init__(self, labels: Sequence[str], coef: np.ndarray, intercept: np.ndarray,
                 embedding_model: str) -> None:
        self.labels = list(labels)
        self.coef = np.asarray(coef, dtype=np.float32)
        self.intercept = np.asarray(intercept, dtype=np.float32)
        self.embedding_model = embedding_model

    @classmethod
    def fit(cls, embeddings: np.ndarray, labels: Sequence[str], embedding_model: str, *,
            c: float = 16.0, seed: int = 0) -> QueryRouter:
        """Train a multinomial logistic regression on unit-length embeddings."""
        from sklearn.linear_model import LogisticRegression

        names = sorted(set(labels))
        if len(names) < 2:
            raise DataError(f"a router needs at least two slices to choose from, found {names}",
                            hint="check the dataset's slice_field values")
        model = LogisticRegression(C=c, max_iter=2000, random_state=seed)
        model.fit(embeddings, list(labels))
        coef, intercept = model.coef_, model.intercept_
        if len(model.classes_) == 2:  # scikit-learn keeps one row for two classes
            coef, intercept = np.vstack([-coef[0], coef[0]]) / 2, np.array([-1, 1]) * intercept / 2
        return cls([str(c) for c in model.classes_], coef, intercept, embedding_model)

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """One row of slice probabilities per embedding (columns follow `labels`)."""
        logits = np.asarray(embeddings, dtype=np.float32) @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict_embeddings(self, embeddings: np.ndarray) -> list[Prediction]:
        """Predictions for rows of embeddings."""
        out = []
        for row in self.probabilities(embeddings):
            best = int(row.argmax())
            out.append(Prediction(self.labels[best], float(row[best]),
                                  {label: float(p) for label, p in zip(self.labels, row,
                                                                       strict=True)}))
        return out

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Predictions for messages, embedded with the router's own embedding model."""
        from tuneloop.rag.embed import get_embedder

        embedder = get_embedder(self.embedding_model)
        if len(texts) == 1:  # a request: the embedder's query path (cached, thread-aware)
            return self.predict_embeddings(embedder.embed_query(texts[0])[None, :])
        return self.predict_embeddings(embedder.embed(list(texts)))

    def save(self, folder: Path, meta: dict[str, Any]) -> None:
        """Write the weights and a readable description into `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / WEIGHTS, coef=self.coef, intercept=self.intercept,
                 labels=np.array(self.labels))
        (folder / META).write_text(json.dumps(
            {**meta, "labels": self.labels, "embedding_model": self.embedding_model},
            indent=2, sort_keys=True), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> QueryRouter:
        """The router saved in `folder`."""
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        with np.load(folder / WEIGHTS, allow_pickle=False) as data:
            return cls([str(x) for x in data["labels"]], data["coef"], data["intercept"],
                       meta["embedding_model"])
