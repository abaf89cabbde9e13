"""RAG metrics: retrieval recall@k against gold sources, and groundedness of the answer."""

from __future__ import annotations

import re
from typing import Any

from tuneloop.evaluate.metrics import Metric, MetricContext, record_field, register
from tuneloop.evaluate.metrics.text import states_fact, tokens
from tuneloop.rag.metrics import ref_keys
from tuneloop.text import STOPWORDS

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


@register
class RetrievalRecall(Metric):
    """Recall@k: share of the example's gold sources (`metadata.kb_refs`) in the top k retrieved.

    A gold source matches a retrieved chunk by document id, source or file name (with or
    without extension). Not applicable (None) to variants without retrieval or examples
    without gold sources.
    """

    name = "retrieval_recall"
    description = "share of gold sources among the top-k retrieved chunks"

    def __init__(self, *, k: int | None = None, field: str = "kb_refs") -> None:
        if k is not None and k < 1:
            raise ValueError(f"k must be at least 1, found {k}")
        self.k = k
        self.field = field

    def score(self, prediction: str, reference: str, record: dict[str, Any],
              context: MetricContext) -> float | None:
        """Fraction of gold sources found among the retrieved chunks."""
        gold = [g for g in record_field(record, self.field) or [] if str(g).strip()]
        if not context.retrieval_enabled or not gold:
            return None
        top = context.retrieved[: self.k] if self.k else context.retrieved
        found: set[str] = set()
        for hit in top:
            for key in ("doc_id", "source", "path", "title"):
                if hit.get(key):
                    found |= ref_keys(str(hit[key]))
        hits = sum(1 for g in gold if ref_keys(str(g)) & found)
        return hits / len(gold)


@register
class Groundedness(Metric):
    """Share of the answer's sentences supported by the retrieved text.

    A sentence is supported when at least `min_overlap` of its content words (stop words
    removed) occur in the retrieved chunks. Not applicable (None) to variants without
    retrieval; an answer with retrieval but nothing retrieved scores 0.
    """

    name = "groundedness"
    description = "share of answer sentences supported by the retrieved text"

    def __init__(self, *, min_overlap: float = 0.5) -> None:
        if not 0 < min_overlap <= 1:
            raise ValueError(f"min_overlap must be in (0, 1], found {min_overlap}")
        self.min_overlap = min_overlap

    def score(self, prediction: str, reference: str, record: dict[str, Any],
              context: MetricContext) -> float | None:
        """Fraction of answer sentences whose content words the retrieved text covers."""
        if not context.retrieval_enabled:
            return None
        sentences = [_content(s) for s in _SENTENCE.split(prediction)]
        sentences = [s for s in sentences if s]
        if not sentences:
            return None
        source_words = set()
        for hit in context.retrieved:
            source_words |= {_stem(w) for w in tokens(str(hit.get("text") or ""))}
        supported = 0
        for words in sentences:
            covered = sum(1 for w in words if w in source_words)
            if covered / len(words) >= self.min_overlap:
                supported += 1
        return supported / len(sentences)


def _stem(word: str) -> str:
    # Light plural folding so "files" in the answer matches "file" in the document.
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _content(sentence: str) -> list[str]:
    return [_stem(w) for w in tokens(sentence) if w not in STOPWORDS]


@register
class ContextKeyFacts(Metric):
    """Share of the example's key facts (`metadata.key_facts`) that the sources placed in the
    prompt contain: "context holds the key fact", the diagnostic beside `key_facts` ("answer
    states the key fact") that tells whether retrieval or generation loses an answer.

    Only the text the model was given counts (sources cut by the token budget or the score
    cut-off, and sentences left out of a chunk, do not). Not applicable (None) to variants
    without retrieval or examples without key facts.
    """

    name = "context_key_facts"
    description = "share of the key facts present in the sources given to the model"

    def __init__(self, *, field: str = "key_facts") -> None:
        self.field = field

    def score(self, prediction: str, reference: str, record: dict[str, Any],
              context: MetricContext) -> float | None:
        """Fraction of key facts found in the prompt's sources."""
        facts = [f for f in record_field(record, self.field) or [] if str(f).strip()]
        if not context.retrieval_enabled or not facts:
            return None
        shown = [h for h in context.retrieved if h.get("in_prompt")]
        text = "\n".join(str(h.get("shown") or h.get("text") or "") for h in shown)
        return sum(states_fact(text, str(f)) for f in facts) / len(facts)
