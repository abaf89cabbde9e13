"""Who is being erased: the subject id, its stored hash, and the strings that identify them.

A record carries the subject as `subject_hash(id)`; free text (log prompts, ticket bodies,
knowledge-base passages, reports) may name them in clear. `Subject.matches` says whether a text
mentions any identifying string (case-insensitive), `mentions` scans raw bytes of a file.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tuneloop.data.records import subject_hash
from tuneloop.errors import TuneloopError

MIN_TERM = 4
# A fragment of erased text distinctive enough to look for in derived files (reports, caches).
MIN_FRAGMENT_WORDS = 5
MIN_FRAGMENT_CHARS = 24
_PLACEHOLDER = re.compile(r"<[A-Z_]+_\d+>|<[A-Z_]+>")
_SENTENCE = re.compile(r"[.!?\n;:()\[\]\"]+")


@dataclass(frozen=True)
class Subject:
    """A data subject: the id the sources' `subject_field` holds and other identifying strings."""

    id: str
    terms: tuple[str, ...]
    fragments: tuple[str, ...] = ()

    @classmethod
    def of(cls, subject_id: str, also: list[str] | tuple[str, ...] = ()) -> Subject:
        """The subject `subject_id`, also known by the strings in `also` (name, ticket text)."""
        subject_id = subject_id.strip()
        if not subject_id:
            raise TuneloopError("erasure needs a subject id (what the source's subject_field "
                                "holds, e.g. the customer's e-mail)")
        terms = []
        for term in (subject_id, *also):
            folded = _fold(term)
            # A very short string would match everywhere and erase unrelated people's data.
            if len(folded) < MIN_TERM:
                raise TuneloopError(f"identifying string {term!r} is too short to match safely "
                                    f"(at least {MIN_TERM} characters)")
            terms.append(folded)
        return cls(subject_id, tuple(dict.fromkeys(terms)))

    def with_fragments(self, texts: Iterable[str]) -> Subject:
        """This subject, also recognised in files by sentences of their erased records.

        A ticket's text names nobody once redacted, yet a report quoting it is still theirs;
        the sentences of what was erased (placeholders cut out) find such copies.
        """
        found = dict.fromkeys(self.fragments)
        for text in texts:
            for piece in _SENTENCE.split(_PLACEHOLDER.sub("\n", text or "")):
                folded = _fold(piece)
                if len(folded) >= MIN_FRAGMENT_CHARS and len(folded.split()) >= MIN_FRAGMENT_WORDS:
                    found[folded] = None
        return replace(self, fragments=tuple(found))

    @property
    def hash(self) -> str:
        """The hash records store for this subject."""
        return subject_hash(self.id)

    def matches(self, *texts: Any) -> bool:
        """Whether any of the texts (or JSON-like values) mentions the subject."""
        for text in texts:
            if text is None:
                continue
            if not isinstance(text, str):
                text = json.dumps(text, ensure_ascii=False)
            folded = _fold(text)
            if any(term in folded for term in self.terms):
                return True
        return False

    def in_record(self, record: dict[str, Any]) -> bool:
        """Whether a dataset record belongs to or mentions the subject."""
        return record.get("subject") == self.hash or self.matches(record)

    def mentions(self, path: Path, chunk: int = 1 << 20) -> bool:
        """Whether a file's bytes contain an identifying string (UTF-8, as typed or lower-case)."""
        needles = {n for t in (*self.terms, *self.fragments)
                   for n in (t.encode(), t.upper().encode())}
        needles |= {self.id.encode()}
        overlap = max(len(n) for n in needles)
        tail = b""
        with path.open("rb") as handle:
            while block := handle.read(chunk):
                window = tail + block
                lowered = window.lower()
                if any(n in window or n in lowered for n in needles):
                    return True
                tail = window[-overlap:]
        return False


def _fold(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).lower().split())
