"""Key facts of a passage, and whether an answer is supported by it.

A *key fact* is a short literal span that a correct answer must repeat: a number with its unit
("30 minutes", "5 GB"), a version ("4.5.3"), a menu path ("Settings > Sync > Choose folders"), an
error code ("QS-1042"), a URL or host name, a class, function or qualified name of an API
("TypeError", "json.dumps", "isoformat()"), a setting written in bold, code or quotes. Candidates
are found in the passage; an answer's key facts are the candidates it states, matched the way the
`key_facts` metric matches them (normalised text, or every word of the fact present), so a
synthetic record's facts are exactly what that metric will look for.

An answer is *supported* when it states at least one key fact of its passage and most of its
content words occur in the passage: a small model that invents an unrelated answer fails both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tuneloop.text import STOPWORDS, normalize

MAX_FACT_WORDS = 8
# Markup that names a thing: **bold**, `code`, "quoted" (Markdown keeps it in the passage).
_MARKED = re.compile(r"\*\*([^*\n]{2,80})\*\*|`([^`\n]{2,80})`|\"([^\"\n]{2,60})\"|"
                     r"“([^”\n]{2,60})”")
_PATTERNS = (
    re.compile(r"https?://[^\s)\]>,;\"'`*]+[^\s)\]>,;.\"'`*]"),  # URLs
    re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),  # e-mail addresses
    re.compile(r"(?<![\w/])\*?\.?[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|org|net|io|dev|app|ai|co|"
               r"eu|de|uk|us|cloud)\b"),  # host names
    re.compile(r"\b[\w.-]+=[\w.:/-]+"),  # key=value settings
    re.compile(r"\b\d{4}-\d{2}-\d{2}\b"),  # dates
    re.compile(r"\b[A-Z][A-Z0-9]{0,6}-\d{2,}[A-Z0-9]*\b"),  # codes: QS-1042, CVE-2024-1
    re.compile(r"\b(?:HTTP|TCP|UDP|port) \d{2,5}\b"),  # protocols and ports
    re.compile(r"\bv?\d+\.\d+(?:\.\d+)+\b|\b(?<![\d.])\d+\.\d+(?![\d.])"),  # versions
    # menu paths: "Admin console > Devices > Sync defaults"
    re.compile(r"[A-Z][\w&'-]*(?: [\w&'-]+){0,3}(?: ?[>›→] ?[A-Z][\w&'-]*(?: [\w&'-]+){0,3})+"),
    re.compile(r"\b[a-z]+(?:_[a-z0-9]+)+\b|\b[a-z]+(?:[A-Z][a-z0-9]+)+\b"),  # identifiers
    # class and exception names: "TypeError", "OrderedDict", "JSONDecodeError"
    re.compile(r"\b(?:[A-Z][a-z0-9]+){2,}\b|\b[A-Z]{2,}(?:[A-Z][a-z]{2,})+\b"),
    # qualified names and calls: "json.dumps", "os.path.join", "isoformat()"
    re.compile(r"\b[A-Za-z_][A-Za-z0-9_]+(?:\.[A-Za-z_][A-Za-z0-9_]+)+(?:\(\))?|"
               r"\b[A-Za-z_][A-Za-z0-9_]*\(\)"),
)
# A number with what it counts: "30 minutes", "$18", "95%", "500,000 files", "5 to 10 days".
_QUANTITY = re.compile(r"(?<![\w.-])[$€£]?\d[\d,]*(?:\.\d+)?(?: to \d[\d,]*(?:\.\d+)?)?"
                       r"(?:%|(?: ?[A-Za-z][\w-]{0,14}){0,3})")
_UNITS = {"days", "day", "hours", "hour", "minutes", "minute", "seconds", "second", "weeks",
          "week", "months", "month", "years", "year", "gb", "mb", "tb", "kb", "characters",
          "files", "devices", "requests", "members", "users", "seats", "folders", "versions",
          "times", "attempts", "percent", "ms", "business", "per", "links", "tokens"}
_QUESTION_WORDS = frozenset(["how", "many", "much", "long", "where", "which", "why", "who",
                            "what", "when", "please", "need", "want", "get", "find", "tell"])
# "Go to Settings > Security": the instruction is not part of the menu path.
_LEAD = re.compile(r"^(?:(?:go|navigate|click|tap|open|select|choose|then)(?: to| on)?\s+)+",
                   re.IGNORECASE)


@dataclass(frozen=True)
class Support:
    """How well an answer is grounded in a passage."""

    facts: list[str]  # key facts of the passage that the answer states
    coverage: float  # share of the answer's content words found in the passage


def candidate_facts(passage: str) -> list[str]:
    """Short literal spans of `passage` that an answer could be checked on, longest first."""
    found: list[str] = []
    for match in _MARKED.finditer(passage):
        span = next(g for g in match.groups() if g)
        found.append(span)
    plain = re.sub(r"[*`]", "", passage)
    for pattern in _PATTERNS:
        found.extend(m.group(0) for m in pattern.finditer(plain))
    for match in _QUANTITY.finditer(plain):
        found.append(_quantity(match.group(0)))
    out: list[str] = []
    seen: set[str] = set()
    for fact in sorted({_tidy(f) for f in found}, key=lambda f: (-len(f), f)):
        key = normalize(fact)
        if not key or key in seen or len(key.split()) > MAX_FACT_WORDS or _trivial(key):
            continue
        seen.add(key)
        out.append(fact)
    return out


def stated(fact: str, text: str) -> bool:
    """Whether `text` states `fact` as the `key_facts` metric decides it (normalised match)."""
    fact_norm, text_norm = normalize(fact), normalize(text)
    if not fact_norm:
        return False
    return f" {fact_norm} " in f" {text_norm} " or set(fact_norm.split()) <= set(text_norm.split())


def support(answer: str, passage: str, candidates: list[str] | None = None) -> Support:
    """The passage's key facts that `answer` states, and how much of it the passage covers."""
    facts: list[str] = []
    for fact in candidates if candidates is not None else candidate_facts(passage):
        if not stated(fact, answer):
            continue
        # A fact inside a longer one already kept ("4.2" in "client 4.2") adds nothing.
        if any(stated(fact, kept) for kept in facts):
            continue
        facts.append(fact)
    words = [_stem(w) for w in normalize(answer).split() if w not in STOPWORDS]
    source = {_stem(w) for w in normalize(passage).split()}
    coverage = sum(1 for w in words if w in source) / len(words) if words else 0.0
    return Support(facts=facts, coverage=coverage)


def about(question: str, passage: str) -> float:
    """Share of the question's content words (question words aside) that occur in the passage:
    a question about something the passage never mentions is not answered by it."""
    words = [_stem(w) for w in normalize(question).split()
             if w not in STOPWORDS and w not in _QUESTION_WORDS]
    source = {_stem(w) for w in normalize(passage).split()}
    return sum(1 for w in words if w in source) / len(words) if words else 0.0


def copies(question: str, answer: str) -> bool:
    """Whether the question gives its answer away: it holds the whole answer, or the answer adds
    no word of substance to it. (Facts the question already states are no key facts either.)"""
    q, a = normalize(question), normalize(answer)
    if not a or f" {a} " in f" {q} ":
        return True
    q_words = {_stem(w) for w in q.split()}
    return not [w for w in a.split() if w not in STOPWORDS and _stem(w) not in q_words]


def _quantity(text: str) -> str:
    words = text.split()
    # Keep what is counted only when it is a unit ("30 minutes", "600 requests per minute"),
    # not the next word whatever it is ("30 and").
    keep = [words[0]]
    for word in words[1:]:
        previous = keep[-1].lower()
        if word.lower() in _UNITS or previous in ("to", "per") or word == "to" or \
                re.fullmatch(r"\d[\d,.]*", word):
            keep.append(word)
        else:
            break
    if keep[-1].lower() in ("to", "per"):
        keep.pop()
    return " ".join(keep)


def _tidy(fact: str) -> str:
    fact = _LEAD.sub("", fact.strip(" .,:;()"))
    if ">" in fact:
        # "Settings > Security > Password and choose Reset": the path ends at the prose.
        *path, last = fact.split(">")
        kept = []
        for word in last.split():
            if word.lower() in STOPWORDS:
                break
            kept.append(word)
        fact = ">".join([*path, " " + " ".join(kept)]) if kept else ">".join(path)
    words = fact.split()
    while len(words) > 1 and words[-1].lower() in STOPWORDS:
        words.pop()
    return " ".join(words).strip(" .,:;()")


def _trivial(key: str) -> bool:
    # Single small numbers ("1", "2") and plain words carry no checkable fact.
    words = key.split()
    if len(words) == 1 and words[0].isdigit() and len(words[0]) < 2:
        return True
    return all(w in STOPWORDS for w in words)


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word
