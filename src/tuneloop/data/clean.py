"""Turning one raw row into a clean record: validate, normalise, hash the subject, redact PII.

`Cleaner.clean(row)` returns the record or raises `RecordInvalid`; it holds no state between rows
except the redactor, so the build can stream any number of rows through it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tuneloop.data.readers import Row
from tuneloop.data.records import (
    RecordInvalid,
    drop_path,
    lookup,
    metadata_of,
    normalise_text,
    record_id,
    subject_hash,
    to_messages,
)
from tuneloop.governance.pii import Redactor


class Cleaner:
    """Validates, normalises and redacts rows of one source."""

    def __init__(self, source: str, *, subject_field: str | None, redactor: Redactor | None,
                 pii_counts: Counter[str]) -> None:
        self.source = source
        self.subject_field = subject_field
        self.redactor = redactor
        self.pii_counts = pii_counts

    def clean(self, row: Row) -> dict[str, Any]:
        """The record `{"id", "messages", "metadata", "subject"}` of a readable row."""
        data = row.data
        assert data is not None
        messages = to_messages(data)
        metadata = metadata_of(data)
        if "id" in data and data["id"] is not None:
            metadata["source_id"] = data["id"]
        subject = None
        if self.subject_field:
            value = lookup(data, self.subject_field)
            if value not in (None, ""):
                subject = subject_hash(value)
            # Only the hash of the subject's id is kept; the id itself is personal data.
            drop_path(metadata, self.subject_field)
        for message in messages:
            message["content"] = normalise_text(message["content"])
        if not any(m["content"] for m in messages if m["role"] == "user"):
            raise RecordInvalid("the user message is empty")
        if self.redactor is not None:
            metadata = self._redact(messages, metadata)
        metadata["source"] = self.source
        metadata["line"] = row.line
        return {"id": record_id(messages), "messages": messages, "metadata": metadata,
                "subject": subject}

    def _redact(self, messages: list[dict[str, str]], metadata: dict[str, Any]) -> dict[str, Any]:
        assert self.redactor is not None
        # Messages and metadata share one numbering, so <PERSON_1> is the same person in both.
        leaves: list[tuple[list[Any], Any]] = []
        _collect(metadata, leaves)
        texts = [m["content"] for m in messages] + [container[key] for container, key in leaves]
        results = self.redactor.redact_many(texts)
        for message, result in zip(messages, results, strict=False):
            message["content"] = result.text
        for (container, key), result in zip(leaves, results[len(messages):], strict=True):
            container[key] = result.text
        for result in results:
            self.pii_counts.update(result.counts)
        return metadata


def _collect(value: Any, out: list[tuple[Any, Any]]) -> None:
    """Every string leaf of a JSON-like value, as (container, key) so it can be replaced."""
    items = value.items() if isinstance(value, dict) else enumerate(value) \
        if isinstance(value, list) else ()
    for key, item in items:
        if isinstance(item, str):
            out.append((value, key))
        elif isinstance(item, dict | list):
            _collect(item, out)
