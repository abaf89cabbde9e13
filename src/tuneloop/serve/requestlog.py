"""The request log: every request, answered or refused, stored after redaction.

A row is committed before the response's last byte leaves (the caller of `write` sends the final
body or `[DONE]` only after it returns), so no answered request is ever missing from the log.
Prompts and outputs pass through `redact` first; only the redacted text and the counts of what
was redacted are stored.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from tuneloop.engines.base import Completion
from tuneloop.governance.pii import Redactor
from tuneloop.store import Store
from tuneloop.store.serving import RequestLog

REPLICA = f"{socket.gethostname()}:{os.getpid()}"


@functools.lru_cache(maxsize=4)
def _redactor(entities: tuple[str, ...]) -> Redactor:
    return Redactor(entities)


def redact(entities: Sequence[str], texts: Sequence[str]) -> tuple[list[str], dict[str, int]]:
    """Redact `texts` as one record (consistent placeholders); returns texts and counts."""
    counts: Counter[str] = Counter()
    results = _redactor(tuple(entities)).redact_many(list(texts))
    for r in results:
        counts.update(r.counts)
    return [r.text for r in results], dict(counts)


def tier_of(variant_tier: int, hits: Iterable[Any]) -> int:
    """A request log's tier: the highest of its variant's and of the chunks it actually used."""
    return max([variant_tier, *(int(getattr(h, "tier", 1) or 1) for h in hits)])


def new_request_id() -> str:
    """A fresh id for a request and its log row."""
    return uuid.uuid4().hex


@dataclass
class Entry:
    """What one request did, filled in as it runs and written once at its end."""

    id: str
    model: str = ""
    principal: str | None = None
    subject: str | None = None  # hash of the caller-given subject id (`user`)
    audience: str | None = None
    variant: str | None = None
    shadow_of: str | None = None
    tier: int = 1
    status: int = 200
    error: str = ""
    stream: bool = False
    messages: list[dict[str, Any]] = field(default_factory=list)  # clear text: never stored
    output: str = ""  # clear text: never stored
    chunk_ids: list[str] = field(default_factory=list)
    finish_reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_ms: float | None = None
    total_ms: float = 0.0
    routed_by: str | None = None  # the routed variant that chose `variant`
    predicted_slice: str | None = None  # its router's prediction for the message
    slice_confidence: float | None = None

    def row(self, entities: Sequence[str]) -> RequestLog:
        """The redacted row for this entry."""
        texts = [str(m.get("content") or "") for m in self.messages] + [self.output]
        redacted, counts = redact(entities, texts)
        prompt = [{"role": m.get("role", ""), "content": t}
                  for m, t in zip(self.messages, redacted[:-1], strict=True)]
        # Logs from public callers are customer data: Tier 2 whatever the variant touched.
        tier = max(self.tier, 2 if self.audience == "public" else 1)
        return RequestLog(id=self.id, principal=self.principal, subject=self.subject,
                          audience=self.audience,
                          model=self.model[:128], variant=self.variant, shadow_of=self.shadow_of,
                          tier=tier, status=self.status, error=self.error[:2000],
                          stream=self.stream, prompt=prompt, output=redacted[-1],
                          redactions=counts, chunk_ids=list(self.chunk_ids),
                          finish_reason=self.finish_reason, prompt_tokens=self.prompt_tokens,
                          completion_tokens=self.completion_tokens, ttft_ms=self.ttft_ms,
                          total_ms=self.total_ms, replica=REPLICA, routed_by=self.routed_by,
                          predicted_slice=self.predicted_slice,
                          slice_confidence=self.slice_confidence)


def record(entry: Entry, completion: Completion, started: float) -> None:
    """Note an answer on its entry: its text (and tool calls), finish, tokens and timings
    (`started` is the request's `time.perf_counter()` at arrival)."""
    entry.output = logged_output(completion)
    entry.finish_reason = completion.finish_reason
    entry.prompt_tokens = completion.prompt_tokens or entry.prompt_tokens
    entry.completion_tokens = completion.completion_tokens
    entry.ttft_ms = completion.ttft_s * 1000
    entry.total_ms = (time.perf_counter() - started) * 1000


def logged_output(completion: Completion) -> str:
    """What the log keeps of an answer: its text, then any tool calls as JSON."""
    if not completion.tool_calls:
        return completion.text
    calls = json.dumps([c["function"] for c in completion.tool_calls])
    return f"{completion.text}\n{calls}" if completion.text else calls


def write(store: Store, entities: Sequence[str], entry: Entry) -> None:
    """Redact and commit one entry (blocking: call it from a worker thread in async code)."""
    row = entry.row(entities)
    with store.session() as session:
        session.add(row)


def get(store: Store, request_id: str) -> RequestLog | None:
    """One logged request by its id."""
    with store.session(write=False) as session:
        return session.get(RequestLog, request_id)


def recent(store: Store, limit: int = 50, *, variant: str | None = None) -> list[RequestLog]:
    """The newest logged requests first."""
    with store.session(write=False) as session:
        query = select(RequestLog).order_by(RequestLog.created_at.desc()).limit(limit)
        if variant:
            query = query.where(RequestLog.variant == variant)
        return list(session.execute(query).scalars())
