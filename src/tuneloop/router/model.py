"""The query-type classifier: features of the user's message (`features`), then a linear model.

Training uses scikit-learn's multinomial logistic regression; what is stored is only its weights
(`weights.npz`: coefficients, intercepts, labels) and what the featurisers learnt beside
`router.json`, never a pickle, and prediction is one matrix product and a softmax in numpy, so a
request pays for its features (the embedding, when the router uses one) and little else.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tuneloop.errors import DataError
from tuneloop.router.features import Features, load_features

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
    """Predicts a slice from a message; `fit` on feature rows, `predict` on texts."""

    def __init__(self, labels: Sequence[str], coef: np.ndarray, intercept: np.ndarray,
                 features: Features) -> None:
        self.labels = list(labels)
        self.coef = np.asarray(coef, dtype=np.float32)
        self.intercept = np.asarray(intercept, dtype=np.float32)
        self.features = features

    @property
    def embedding_model(self) -> str | None:
        """The embedding model the router runs on each message (None for TF-IDF alone)."""
        return self.features.embedding_model

    @classmethod
    def fit(cls, rows: Any, labels: Sequence[str], features: Features, *,
            c: float = 16.0, seed: int = 0) -> QueryRouter:
        """Train a multinomial logistic regression on feature rows (dense or sparse) that
        `features` made."""
        from sklearn.linear_model import LogisticRegression

        names = sorted(set(labels))
        if len(names) < 2:
            raise DataError(f"a router needs at least two slices to choose from, found {names}",
                            hint="check the dataset's slice_field values")
        model = LogisticRegression(C=c, max_iter=2000, random_state=seed)
        model.fit(rows, list(labels))
        coef, intercept = model.coef_, model.intercept_
        if len(model.classes_) == 2:  # scikit-learn keeps one row for two classes
            coef, intercept = np.vstack([-coef[0], coef[0]]) / 2, np.array([-1, 1]) * intercept / 2
        return cls([str(c) for c in model.classes_], coef, intercept, features)

    def probabilities(self, rows: Any) -> np.ndarray:
        """One row of slice probabilities per feature row (columns follow `labels`)."""
        logits = np.asarray(rows @ self.coef.T, dtype=np.float32) + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict_rows(self, rows: Any) -> list[Prediction]:
        """Predictions for feature rows (what `features.transform` gives)."""
        out = []
        for row in self.probabilities(rows):
            best = int(row.argmax())
            out.append(Prediction(self.labels[best], float(row[best]),
                                  {label: float(p) for label, p in zip(self.labels, row,
                                                                       strict=True)}))
        return out

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Predictions for messages (one message: the embedder's query path, one thread)."""
        return self.predict_rows(self.features.transform(list(texts)))

    def save(self, folder: Path, meta: dict[str, Any]) -> None:
        """Write the weights and a readable description into `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / WEIGHTS, coef=self.coef, intercept=self.intercept,
                 labels=np.array(self.labels))
        self.features.save(folder)
        (folder / META).write_text(json.dumps(
            {**meta, "labels": self.labels, "embedding_model": self.embedding_model,
             "features": self.features.name, **self.features.settings},
            indent=2, sort_keys=True), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> QueryRouter:
        """The router saved in `folder`."""
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        # Routers saved before featurisers could be chosen ran the fp32 embedding.
        features = load_features(folder, str(meta.get("features") or "embedding"),
                                 meta.get("embedding_model"), meta.get("int8_max_tokens"))
        with np.load(folder / WEIGHTS, allow_pickle=False) as data:
            return cls([str(x) for x in data["labels"]], data["coef"], data["intercept"],
                       features)
