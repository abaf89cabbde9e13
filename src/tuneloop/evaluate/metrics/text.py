"""Text metrics: exact match, token F1, ROUGE-L, regex and key-fact match.

Normalisation follows the SQuAD evaluation (lower case, no punctuation, no articles, single
spaces), so "The answer." and "answer" match; each metric's docstring says what counts.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cached_property
from typing import Any

from tuneloop.evaluate.metrics import Metric, MetricContext, record_field, register
from tuneloop.text import normalize, tokens


@register
class ExactMatch(Metric):
    """1 when the answer equals the reference after normalisation, else 0."""

    name = "exact_match"
    description = "answer equals the reference (normalised)"

    def __init__(self, *, normalize: bool = True) -> None:
        self.normalize = normalize

    def score(self, prediction: str, reference: str, record: dict[str, Any],
              context: MetricContext) -> float | None:
        """1.0 on a match, 0.0 otherwise."""
        if self.normalize:
            return float(normalize(prediction) == normalize(reference))
        return float(prediction.strip() == reference.strip())


@register
class TokenF1(Metric):
    """Harmonic mean of word precision and recall against the reference (SQuAD's F1)."""

    name = "token_f1"
    description = "word overlap F1 with the reference"

    def score(self, prediction: str, reference: str, record: dict[str, Any],
              context: MetricContext) -> float | None:
        """F1 of the bags of normalised words; two empty texts score 1."""
        pred, ref = tokens(prediction), tokens(reference)
        if not pred or not ref:
            return float(pred == ref)
        common = sum((Counter(pred) & Counter(ref)).values())
        if common == 0:
            return 0.0
        precision, recall = common / len(pred), common / len(ref)
        return 2 * precision * recall / (precision + recall)


@register
class RougeL(Metric):
    """ROUGE-L F-measure (longest common subsequence), computed by Google's `rouge-score`."""

    name = "rouge_l"
    description = "longest-common-subsequence F-measure with the reference"

    def __init__(self, *, stemmer: bool = True) -> None:
        self.stemmer = stemmer

    @cached_property
    def _scorer(self) -> Any:
        from rouge_score import rouge_scorer

        return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=self.stemmer)

    def score(self, prediction: str, reference: str, record: dict[str, Any],
              context: MetricContext) -> float | None:
        """The ROUGE-L F-measure in [0, 1]."""
        if not prediction.strip() and not reference.strip():
            return 1.0
        return float(self._scorer.score(reference, prediction)["rougeL"].fmeasure)


@register
class Regex(Metric):
    """1 when the answer matches a pattern (from params, else the reference itself as a pattern)."""

    name = "regex"
    description = "answer matches a regular expression"

    def __init__(self, *, pattern: str | None = None, ignore_case: bool = True,
                 full_match: bool = False) -> None:
        flags = re.IGNORECASE if ignore_case else 0
        try:
            self.pattern = re.compile(pattern, flags) if pattern is not None else None
        except re.error as exc:
            raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {exc}"
                             ) from None
        self.flags = flags
        self.full_match = full_match

    def score(self, prediction: str, reference: str, record: dict[str, Any],
              context: MetricContext) -> float | None:
        """1.0 when the pattern matches (searches anywhere unless `full_match`)."""
        pattern = self.pattern
        if pattern is None:
            source = record_field(record, "regex") or reference
            try:
                pattern = re.compile(source, self.flags)
            except re.error:
                pattern = re.compile(re.escape(source), self.flags)
        text = prediction.strip()
        found = pattern.fullmatch(text) if self.full_match else pattern.search(text)
        return float(found is not None)


@register
class KeyFacts(Metric):
    """Share of the example's key facts (`metadata.key_facts`) that the answer states.

    A fact counts as stated when its normalised text appears in the normalised answer, or when
    every one of its words does (so "Settings > Security" matches "open Security in Settings").
    Examples without key facts are skipped (None).
    """

    name = "key_facts"
    description = "share of the key facts the answer states"

    def __init__(self, *, field: str = "key_facts") -> None:
        self.field = field

    def score(self, prediction: str, reference: str, record: dict[str, Any],
              context: MetricContext) -> float | None:
        """Fraction of key facts found in the answer; None when the record lists none."""
        facts = [f for f in record_field(record, self.field) or [] if str(f).strip()]
        if not facts:
            return None
        return sum(states_fact(prediction, str(f)) for f in facts) / len(facts)


def states_fact(text: str, fact: str) -> bool:
    """True when `text` states `fact`: its normalised text appears in the normalised text, or
    every one of its words does (so "Settings > Security" matches "open Security in Settings")."""
    fact_norm = normalize(fact)
    if not fact_norm:
        return False
    answer = normalize(text)
    return f" {fact_norm} " in f" {answer} " or set(fact_norm.split()) <= set(answer.split())
