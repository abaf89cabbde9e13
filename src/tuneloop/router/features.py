"""What a router reads from a message: its featurisers, chosen by name and joined with `+`.

    embedding       the bundled all-MiniLM-L6-v2 sentence embedding (fp32, torch), the one
                    retrieval uses, so a RAG variant's query reuses it from the embedder's cache
    embedding-int8  the same model with its linear layers dynamically quantised to int8
                    (torch's `quantize_dynamic`), reading the message's first 48 word pieces
                    (with tfidf, the routing step's CPU p95 was 0.39x the fp32 router's on
                    support messages of up to ~100 pieces)
    tfidf           scikit-learn TF-IDF of word 1-2-grams and character 2-5-grams (per word)

`embedding-int8+tfidf` (the default) concatenates both: the TF-IDF block reads the whole message
cheaply (about 2 ms), the int8 embedding its opening. What is stored is plain data
beside the classifier's weights (the TF-IDF vocabularies as JSON, their idf as npz), never a
pickle; `load_features` rebuilds the same featuriser from it.
"""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tuneloop.errors import ConfigError

KINDS = ("embedding", "embedding-int8", "tfidf")
INT8_MAX_TOKENS = 48  # word pieces the int8 embedding reads, special tokens included
DEFAULT = "embedding-int8+tfidf"
TFIDF_FILE = "tfidf.npz"
TFIDF_VOCAB = "tfidf-vocabulary.json"
Progress = Callable[[int], Any]


class Featuriser(Protocol):
    """Turns messages into rows of features; `fit` once on training texts, then `transform`."""

    name: str

    def fit(self, texts: Sequence[str]) -> None: ...

    def transform(self, texts: Sequence[str], progress: Progress | None = None) -> Any: ...

    def save(self, folder: Path) -> None: ...


def parse(spec: str) -> list[str]:
    """The featuriser names in `spec` (`embedding-int8+tfidf`), checked."""
    names = [part.strip() for part in spec.split("+") if part.strip()]
    unknown = [n for n in names if n not in KINDS]
    if not names or unknown or len(set(names)) != len(names):
        raise ConfigError(f"router features {spec!r}: expected one or more of {', '.join(KINDS)} "
                          "joined by '+', each once",
                          hint=f"e.g. --features {DEFAULT} or --features embedding")
    return names


class EmbeddingFeatures:
    """Unit-length sentence embeddings of the message (fp32, or int8-quantised for the router)."""

    def __init__(self, model: str, quantized: bool = False,
                 max_tokens: int = INT8_MAX_TOKENS) -> None:
        self.model = model
        self.quantized = quantized
        self.max_tokens = max_tokens  # read by the int8 embedding only
        self.name = "embedding-int8" if quantized else "embedding"

    def _embedder(self) -> Any:
        from tuneloop.rag.embed import get_embedder

        return _int8_embedder(self.model) if self.quantized else get_embedder(self.model)

    def fit(self, texts: Sequence[str]) -> None:
        """Nothing to learn: the embedding model is fixed."""

    def transform(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """One row per text; a single text takes the embedder's query path (one thread)."""
        embedder = self._embedder()
        if self.quantized:
            texts = [_opening(embedder.tokenizer, t, self.max_tokens - 2) for t in texts]
        if len(texts) == 1:
            return np.asarray(embedder.embed_query(texts[0]))[None, :]
        return np.asarray(embedder.embed(list(texts), progress=progress))

    def save(self, folder: Path) -> None:
        """Nothing to store beyond the model's name (in router.json)."""


def _opening(tokenizer: Any, text: str, pieces: int) -> str:
    """The start of `text` that holds its first `pieces` word pieces (all of it if shorter)."""
    enc = tokenizer(text, add_special_tokens=False, truncation=True, max_length=pieces,
                    return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    return text[:offsets[-1][1]] if len(offsets) == pieces else text


_int8: dict[str, Any] = {}
_int8_lock = threading.Lock()


def _int8_embedder(model: str) -> Any:
    """A process-wide embedder of `model` whose linear layers run in int8 (kept apart from the
    fp32 one retrieval uses: its vectors differ slightly)."""
    with _int8_lock:
        if model not in _int8:
            import torch

            from tuneloop.rag.embed import Embedder

            embedder = Embedder(model)
            with warnings.catch_warnings():
                # torch announces that its quantized tensor API will move (to torchao); it works
                # in the pinned torch, and the notice would land in every command's output
                warnings.filterwarnings("ignore", message=".*quantize_per_tensor",
                                        category=UserWarning)
                embedder.model = torch.ao.quantization.quantize_dynamic(
                    embedder.model, {torch.nn.Linear}, dtype=torch.qint8)
            _int8[model] = embedder
        return _int8[model]


def _vectorizers() -> list[Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return [TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True,
                            dtype=np.float32)]


class TfidfFeatures:
    """Word and character n-gram TF-IDF (scikit-learn), each block L2-normalised, scaled by
    `weight` so that the two blocks together weigh about as much as one embedding."""

    name = "tfidf"

    def __init__(self, vectorizers: list[Any] | None = None, weight: float = 0.5) -> None:
        self.vectorizers = vectorizers or _vectorizers()
        self.weight = weight

    def fit(self, texts: Sequence[str]) -> None:
        """Learn the vocabularies and idf weights from the training texts."""
        for vectorizer in self.vectorizers:
            vectorizer.fit(list(texts))

    def transform(self, texts: Sequence[str], progress: Progress | None = None) -> Any:
        """A sparse (CSR) row per text."""
        import scipy.sparse as sp

        blocks = [v.transform(list(texts)) for v in self.vectorizers]
        if progress is not None:
            progress(len(texts))
        return sp.hstack(blocks, format="csr", dtype=np.float32) * np.float32(self.weight)

    def save(self, folder: Path) -> None:
        """The vocabularies as JSON and the idf weights as npz (no pickle)."""
        vocab = [{term: int(i) for term, i in v.vocabulary_.items()} for v in self.vectorizers]
        (folder / TFIDF_VOCAB).write_text(json.dumps({"weight": self.weight,
                                                      "vocabularies": vocab}), encoding="utf-8")
        np.savez(folder / TFIDF_FILE, **{f"idf{i}": v.idf_ for i, v in
                                         enumerate(self.vectorizers)})

    @classmethod
    def load(cls, folder: Path) -> TfidfFeatures:
        """The TF-IDF featuriser saved in `folder`."""
        stored = json.loads((folder / TFIDF_VOCAB).read_text(encoding="utf-8"))
        vectorizers = _vectorizers()
        with np.load(folder / TFIDF_FILE, allow_pickle=False) as data:
            for i, (vectorizer, vocab) in enumerate(zip(vectorizers, stored["vocabularies"],
                                                        strict=True)):
                vectorizer.vocabulary_ = vocab
                vectorizer.idf_ = data[f"idf{i}"]
        return cls(vectorizers, float(stored["weight"]))


class Features:
    """Several featurisers side by side: their rows concatenated (sparse if any block is)."""

    def __init__(self, parts: list[Featuriser]) -> None:
        self.parts = parts
        self.name = "+".join(p.name for p in parts)

    @property
    def settings(self) -> dict[str, Any]:
        """What router.json records beside the spec so the artefact predicts the same later."""
        return {"int8_max_tokens": next((p.max_tokens for p in self.parts
                                         if isinstance(p, EmbeddingFeatures) and p.quantized),
                                        None)}

    @property
    def embedding_model(self) -> str | None:
        """The embedding model the router runs, if any."""
        models = [p.model for p in self.parts if isinstance(p, EmbeddingFeatures)]
        return models[0] if models else None

    def fit(self, texts: Sequence[str]) -> None:
        """Fit every part on the training texts."""
        for part in self.parts:
            part.fit(texts)

    def transform(self, texts: Sequence[str], progress: Progress | None = None) -> Any:
        """The concatenated rows: a numpy array, or a CSR matrix when a part is sparse."""
        import scipy.sparse as sp

        blocks = [part.transform(texts, progress) for part in self.parts]
        if len(blocks) == 1:
            return blocks[0]
        if any(sp.issparse(b) for b in blocks):
            return sp.hstack([sp.csr_matrix(b) for b in blocks], format="csr")
        return np.hstack(blocks)

    def save(self, folder: Path) -> None:
        """Whatever each part learnt, into `folder`."""
        for part in self.parts:
            part.save(folder)


def build_features(spec: str, embedding_model: str) -> Features:
    """Untrained featurisers for `spec` (e.g. `embedding-int8+tfidf`)."""
    parts: list[Featuriser] = []
    for name in parse(spec):
        if name == "tfidf":
            parts.append(TfidfFeatures())
        else:
            parts.append(EmbeddingFeatures(embedding_model, quantized=name == "embedding-int8"))
    return Features(parts)


def load_features(folder: Path, spec: str, embedding_model: str | None,
                  int8_max_tokens: int | None = None) -> Features:
    """The trained featurisers a router saved in `folder`."""
    parts: list[Featuriser] = []
    for name in parse(spec):
        if name == "tfidf":
            parts.append(TfidfFeatures.load(folder))
        else:
            if not embedding_model:
                raise ConfigError(f"{folder}: router features {spec!r} name no embedding model",
                                  hint="train the router again")
            parts.append(EmbeddingFeatures(embedding_model, quantized=name == "embedding-int8",
                                           max_tokens=int8_max_tokens or INT8_MAX_TOKENS))
    return Features(parts)


def forget_queries(model: str) -> None:
    """Empty the query caches of `model`'s fp32 and int8 embedders (benchmarks time the
    uncached path)."""
    from tuneloop.rag.embed import get_embedder

    get_embedder(model).forget_queries()
    with _int8_lock:
        quantized = _int8.get(model)
    if quantized is not None:
        quantized.forget_queries()
