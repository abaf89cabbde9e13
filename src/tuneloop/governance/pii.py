"""PII redaction: find personal data in text and replace it with typed placeholders.

    redactor = Redactor(["EMAIL_ADDRESS", "PERSON"])
    redactor.redact("Mail anna@example.com, Anna Berg").text
    # 'Mail <EMAIL_ADDRESS_1>, <PERSON_1>'

Structured identifiers come from Presidio's own pattern recognizers (e-mail, phone through the
`phonenumbers` library, Luhn-checked credit cards, checksum-checked IBANs, IP addresses, US social
security numbers), called directly so that no NLP model is needed: Presidio's default analyzer
wants a spaCy model that cannot be downloaded here, and is slower. Two recognizers are our own:
`SECRET` (key=value credentials and well-known token formats) and `PERSON` (a first-name lexicon
from the `gender-guesser` package plus context cues such as greetings and sign-offs).

Placeholders are numbered per record: the same value gets the same placeholder everywhere in one
`redact_many` call, and a first name alone reuses the number of the full name it belongs to.
Only counts leave this module; the clear values are never stored.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tuneloop.governance.pii_recognizers import recognizers

DEFAULT_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS",
                    "US_SSN", "SECRET", "PERSON")
MIN_SCORE = 0.4
# Presidio's own context factor: a context word near a weak match raises its score by this much.
CONTEXT_BOOST = 0.35
CONTEXT_WINDOW = 40
# When two findings overlap, the more specific kind wins (a card number is not a phone number).
PRIORITY = {"SECRET": 7, "EMAIL_ADDRESS": 6, "CREDIT_CARD": 5, "IBAN_CODE": 5, "US_SSN": 4,
            "IP_ADDRESS": 3, "PHONE_NUMBER": 2, "PERSON": 1}


@dataclass(frozen=True)
class Finding:
    """Where one piece of PII is: its type, span and confidence (never its value)."""

    entity: str
    start: int
    end: int
    score: float


@dataclass
class Redaction:
    """Redacted text and how many values of each type were replaced."""

    text: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class Redactor:
    """Finds and replaces PII; build one and reuse it (recognizers load once)."""

    def __init__(self, entities: Iterable[str] = DEFAULT_ENTITIES, *,
                 min_score: float = MIN_SCORE) -> None:
        self.entities = tuple(entities)
        self.min_score = min_score
        self._recognizers = recognizers(self.entities)

    def find(self, text: str) -> list[Finding]:
        """Every piece of PII in `text`, without overlaps, in text order."""
        found: list[Finding] = []
        lowered: str | None = None
        for recognizer, check in self._recognizers:
            if not check(text):
                continue
            for r in recognizer.analyze(text, recognizer.supported_entities, None):
                if r.entity_type not in self.entities:
                    continue
                score = r.score
                if score < self.min_score and recognizer.context:
                    lowered = lowered if lowered is not None else text.lower()
                    window = lowered[max(0, r.start - CONTEXT_WINDOW):r.start]
                    if any(word in window for word in recognizer.context):
                        score += CONTEXT_BOOST
                if score >= self.min_score:
                    found.append(Finding(r.entity_type, r.start, r.end, score))
        return _without_overlaps(found)

    def redact(self, text: str) -> Redaction:
        """One text with its PII replaced by `<TYPE_N>` placeholders."""
        return self.redact_many([text])[0]

    def redact_many(self, texts: Sequence[str]) -> list[Redaction]:
        """Several texts of one record, sharing placeholder numbers (`<PERSON_1>` stays Anna)."""
        numbers: dict[str, dict[str, int]] = {}
        out = []
        for text in texts:
            findings = self.find(text) if text else []
            parts: list[str] = []
            counts: Counter[str] = Counter()
            cursor = 0
            for f in findings:
                value = text[f.start:f.end]
                parts.append(text[cursor:f.start])
                parts.append(f"<{f.entity}_{_number(numbers.setdefault(f.entity, {}), f, value)}>")
                counts[f.entity] += 1
                cursor = f.end
            parts.append(text[cursor:])
            out.append(Redaction("".join(parts), dict(counts)))
        return out


def _number(seen: dict[str, int], finding: Finding, value: str) -> int:
    key = " ".join(value.lower().split())
    if key not in seen and finding.entity == "PERSON":
        # "Anna" after "Anna Berg" (or "Berg" after it) is the same person.
        for known, number in seen.items():
            parts = known.split()
            if len(parts) > 1 and (key in parts or known in key.split()):
                seen[key] = number
                break
    if key not in seen:
        seen[key] = len(set(seen.values())) + 1
    return seen[key]


def _without_overlaps(found: list[Finding]) -> list[Finding]:
    ranked = sorted(found, key=lambda f: (-PRIORITY.get(f.entity, 0), -f.score,
                                          -(f.end - f.start), f.start))
    kept: list[Finding] = []
    for f in ranked:
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)
