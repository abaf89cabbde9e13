"""Who is being erased: the subject id, its stored hash, and the strings that identify them.

A record carries the subject as `subject_hash(id)`; free text (log prompts, ticket bodies,
knowledge-base passages, reports) may name them in clear. `Subject.matches` says whether a text
mentions any identifying string as whole words (case-insensitive: "Jane" is not in "Janet"),
`mentions` does the same on a file's decoded text. Binary files are never matched byte by byte:
a first name is a token in every model vocabulary, and erasure must not mistake a model for data.
"""

from __future__ import annotations

import codecs
import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
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


# A file whose first block holds a NUL byte is binary (weights, Parquet, pickles): not text.
_BINARY_SNIFF = 8192


@dataclass(frozen=True)
class Subject:
    """A data subject: the id the sources' `subject_field` holds and other identifying strings."""

    id: str
    terms: tuple[str, ...]
    fragments: tuple[str, ...] = ()
    _cache: dict[str, re.Pattern[str]] = field(default_factory=dict, init=False, compare=False,
                                               repr=False)

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

    def _pattern(self) -> re.Pattern[str]:
        """One regex for every term and fragment, each bounded by non-word characters."""
        pattern = self._cache.get("all")
        if pattern is None:
            needles = sorted({*self.terms, *self.fragments, _fold(self.id)}, key=len, reverse=True)
            pattern = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(n) for n in needles)
                                 + r")(?!\w)")
            self._cache["all"] = pattern
        return pattern

    def matches(self, *texts: Any) -> bool:
        """Whether any of the texts (or JSON-like values) names the subject, as whole words."""
        pattern = self._pattern()
        for text in texts:
            if text is None:
                continue
            if not isinstance(text, str):
                text = json.dumps(text, ensure_ascii=False)
            if pattern.search(_fold(text)):
                return True
        return False

    def in_record(self, record: dict[str, Any]) -> bool:
        """Whether a dataset record belongs to or mentions the subject."""
        return record.get("subject") == self.hash or self.matches(record)

    def mentions(self, path: Path, chunk: int = 1 << 20) -> bool:
        """Whether a text file names the subject (decoded as UTF-8, whole words, any case).

        A binary file (a NUL byte in its first 8 KiB) is never a match: model weights, GGUF files
        and tokenizers hold every common first name as a vocabulary token, not as personal data.
        """
        pattern = self._pattern()
        overlap = max(len(n) for n in (*self.terms, *self.fragments, self.id)) + 2
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        tail, start = "", 0
        with path.open("rb") as handle:
            first = True
            while block := handle.read(chunk):
                if first and b"\0" in block[:_BINARY_SNIFF]:
                    return False
                first = False
                window = tail + _fold(decoder.decode(block), keep_edges=True)
                # The tail's first character is context only (its word may have begun earlier);
                # a match touching the window's end may go on in the next block: look again then.
                if any(m.end() < len(window) for m in pattern.finditer(window, start)):
                    return True
                start = 1 if len(window) > overlap + 1 else start
                tail = window[-(overlap + 1):]
        window = tail + _fold(decoder.decode(b"", final=True), keep_edges=True)
        return pattern.search(window, start) is not None


def _fold(text: str, *, keep_edges: bool = False) -> str:
    """Lower-case NFC text with runs of white space as one space.

    `keep_edges` keeps one space for white space at either end, so pieces of a file folded one
    block at a time still join with a word break where the file had one.
    """
    folded = " ".join(unicodedata.normalize("NFC", text).lower().split())
    if keep_edges and text:
        folded = (" " if text[0].isspace() else "") + folded \
            + (" " if text[-1].isspace() and folded else "")
    return folded
