"""RAG metrics: retrieval recall@k against gold sources, and groundedness of the answer."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from tuneloop.evaluate.metrics import Metric, MetricContext, record_field, register
from tuneloop.evaluate.metrics.text import tokens

# Function words carry no claim: an answer is not "grounded" because it says "the" and "is".
_STOPWORD_TEXT = """
a an and are as at be been but by can could do does for from has have how i if in into is it its
may me might my no not of on or our should so than that the their them then there these they this
to was we were what when where which who will with would you your yes also just more most only
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def _ref_keys(value: str) -> set[str]:
    """Ways a source may be named: as given, its file name and its stem, lower case.

    Document ids look like `SOURCE:relative/path.md`; gold refs usually name the file or stem.
    """
    value = str(value).strip().lower()
    if not value:
        return set()
    path = value.split("#", 1)[0].rsplit(":", 1)[-1]
    name = PurePosixPath(path).name
    return {value, path, name, PurePosixPath(name).stem}


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
                    found |= _ref_keys(str(hit[key]))
        hits = sum(1 for g in gold if _ref_keys(str(g)) & found)
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
