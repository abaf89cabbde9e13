"""What the Request log and Review queue pages show, with Tier 2 content withheld server-side.

A list never carries Tier 2 text (it would take one gate decision per row); a request's own page
asks the gate once and fills in the text only when the answer is yes. PII was redacted before the
log was written, so what is shown is always the redacted text.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, exists, select

from tuneloop.errors import NotFound, TuneloopError
from tuneloop.governance.approvals import parse_duration
from tuneloop.governance.tiers import AUDIENCES, Actor, Resource
from tuneloop.store import Store, utcnow
from tuneloop.store.flywheel import ReviewItem
from tuneloop.store.rag import RagChunk
from tuneloop.store.serving import Feedback, RequestLog
from tuneloop.ui.visibility import log_resource, may_view

PAGE_SIZE = 100
EXCERPT = 120
#: the "low" rating filter: ratings at or below this (thumbs down is -1)
LOW_RATING = 0
RATING_WORDS = ("rated", "unrated", "low")


@dataclass
class LogFilter:
    """The Request log's filters, read from the query string."""

    variant: str = ""
    audience: str = ""
    since: str = ""  # a duration back from now: 30m, 24h, 7d
    rating: str = ""  # "", rated, unrated, low, or an exact rating -1..5
    status: str = ""  # "", ok, error, or an HTTP status

    @classmethod
    def parse(cls, params: dict[str, str]) -> LogFilter:
        """Filters from query parameters; `TuneloopError` naming the bad one."""
        f = cls(**{k: (params.get(k) or "").strip() for k in
                   ("variant", "audience", "since", "rating", "status")})
        if f.audience and f.audience not in AUDIENCES:
            raise TuneloopError(f"audience filter {f.audience!r}: use one of {AUDIENCES}")
        if f.since:
            parse_duration(f.since)
        if f.rating and f.rating not in RATING_WORDS + tuple(str(i) for i in range(-1, 6)):
            raise TuneloopError(f"rating filter {f.rating!r}: use rated, unrated, low or "
                                "a rating from -1 to 5")
        if f.status and f.status not in ("ok", "error") and not f.status.isdigit():
            raise TuneloopError(f"status filter {f.status!r}: use ok, error or an HTTP status")
        return f

    def apply(self, query: Select[Any]) -> Select[Any]:
        """The query narrowed by these filters."""
        if self.variant:
            query = query.where(RequestLog.variant == self.variant)
        if self.audience:
            query = query.where(RequestLog.audience == self.audience)
        if self.since:
            query = query.where(RequestLog.created_at >= utcnow() - parse_duration(self.since))
        if self.status == "ok":
            query = query.where(RequestLog.status < 400)
        elif self.status == "error":
            query = query.where(RequestLog.status >= 400)
        elif self.status:
            query = query.where(RequestLog.status == int(self.status))
        rated = exists().where(Feedback.request_id == RequestLog.id, Feedback.rating.is_not(None))
        if self.rating == "rated":
            query = query.where(rated)
        elif self.rating == "unrated":
            query = query.where(~rated)
        elif self.rating == "low":
            query = query.where(exists().where(Feedback.request_id == RequestLog.id,
                                               Feedback.rating <= LOW_RATING))
        elif self.rating:
            query = query.where(exists().where(Feedback.request_id == RequestLog.id,
                                               Feedback.rating == int(self.rating)))
        return query


@dataclass
class LogRow:
    """One line of the request log; `excerpt` is None for Tier 2 requests."""

    id: str
    created_at: dt.datetime
    principal: str | None
    audience: str | None
    variant: str | None
    status: int
    tier: int
    total_ms: float
    ratings: list[int]
    excerpt: str | None


def _scope(query: Select[Any], actor: Actor) -> Select[Any]:
    # Public principals are customers: they see their own requests and nobody else's.
    if actor.audience != "internal":
        query = query.where(RequestLog.principal == actor.name)
    return query


def _excerpt(row: RequestLog) -> str:
    users = [m.get("content", "") for m in row.prompt or [] if m.get("role") == "user"]
    text = str(users[-1] if users else "")
    return text if len(text) <= EXCERPT else text[: EXCERPT - 1] + "…"


def _ratings(store: Store, ids: list[str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    if not ids:
        return out
    with store.session(write=False) as session:
        for rid, rating in session.execute(select(Feedback.request_id, Feedback.rating)
                                           .where(Feedback.request_id.in_(ids))):
            if rating is not None:
                out[rid].append(rating)
    return out


def list_requests(store: Store, actor: Actor, filters: LogFilter,
                  limit: int = PAGE_SIZE) -> list[LogRow]:
    """The newest matching requests first; Tier 2 rows carry no text."""
    with store.session(write=False) as session:
        query = _scope(filters.apply(select(RequestLog)), actor)
        rows = list(session.scalars(query.order_by(RequestLog.created_at.desc()).limit(limit)))
    ratings = _ratings(store, [r.id for r in rows])
    return [LogRow(r.id, r.created_at, r.principal, r.audience, r.variant, r.status, r.tier,
                   r.total_ms, ratings.get(r.id, []), _excerpt(r) if r.tier < 2 else None)
            for r in rows]


def variant_names(store: Store) -> list[str]:
    """Every variant that appears in the log, for the filter's choices."""
    with store.session(write=False) as session:
        return sorted(v for v in session.scalars(select(RequestLog.variant).distinct()) if v)


@dataclass
class Chunk:
    """A retrieved knowledge-base chunk; `text` is None when `withheld` says why."""

    chunk_id: str
    source: str = ""
    tier: int | None = None
    heading: str = ""
    text: str | None = None
    withheld: str | None = None


@dataclass
class RequestRecord:
    """A request's full record; the text fields are empty when `withheld` says why."""

    row: RequestLog
    feedback: list[Feedback] = field(default_factory=list)
    withheld: str | None = None
    chunks: list[Chunk] = field(default_factory=list)


def _chunks(store: Store, actor: Actor, ids: list[str], request_id: str) -> list[Chunk]:
    """The retrieved chunks; a Tier 2 source's text only under the gate's `view`."""
    with store.session(write=False) as session:
        rows = {c.chunk_id: c for c in session.scalars(
            select(RagChunk).where(RagChunk.chunk_id.in_(ids)))} if ids else {}
    refusals: dict[str, str | None] = {}
    out = []
    for cid in ids:
        row = rows.get(cid)
        if row is None:
            out.append(Chunk(cid, withheld="no longer in the index"))
            continue
        reason = None
        if row.tier >= 2:
            if row.source not in refusals:
                refusals[row.source] = may_view(
                    store, actor, Resource("source", row.source, row.tier),
                    purpose=f"dashboard: chunks retrieved for request {request_id}")
            reason = refusals[row.source]
        out.append(Chunk(cid, row.source, row.tier, row.heading,
                         None if reason else row.text, reason))
    return out


def get_request(store: Store, actor: Actor, request_id: str) -> RequestRecord:
    """One request with its feedback; Tier 2 text only when the gate allows `view`."""
    with store.session(write=False) as session:
        row = session.get(RequestLog, request_id)
        if row is None or (actor.audience != "internal" and row.principal != actor.name):
            raise NotFound(f"no request {request_id!r} in the log")
        feedback = list(session.scalars(select(Feedback).where(Feedback.request_id == row.id)
                                        .order_by(Feedback.id)))
        session.expunge_all()
    withheld = None
    if row.tier >= 2:
        withheld = may_view(store, actor, log_resource(row.variant, row.tier),
                            purpose=f"dashboard: request {row.id}")
    if withheld is not None:
        # Blank the text on detached copies before anything reaches a template.
        row.prompt = []
        row.output = ""
        row.error = ""
        for fb in feedback:
            fb.comment = ""
            fb.corrected = None
    chunks = _chunks(store, actor, [str(c) for c in row.chunk_ids or []], row.id)
    return RequestRecord(row, feedback, withheld, chunks)


def review_item(store: Store, item_id: int) -> ReviewItem | None:
    """A review item's own row (variant, tier, status): no request text, so no gate needed."""
    with store.session(write=False) as session:
        return session.get(ReviewItem, item_id)
