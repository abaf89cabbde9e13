"""Feedback on served requests: a rating, a comment, a corrected answer, stored redacted.

A caller may comment on its own requests; internal callers (reviewers) on any request. A public
caller asking about someone else's request gets the same 404 as for an unknown id.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from tuneloop.errors import InvalidRequest, NotFound
from tuneloop.governance.tiers import Actor
from tuneloop.serve.requestlog import redact
from tuneloop.serve.schemas import FeedbackRequest
from tuneloop.store import Store
from tuneloop.store.serving import Feedback, RequestLog


def add(store: Store, entities: Sequence[str], actor: Actor, body: FeedbackRequest) -> int:
    """Store feedback for `body.request_id`; returns the feedback's id."""
    if body.rating is None and not body.comment.strip() and body.corrected_answer is None:
        raise InvalidRequest("feedback needs a rating, a comment or a corrected answer")
    texts = [body.comment, body.corrected_answer or ""]
    (comment, corrected), counts = redact(entities, texts)
    with store.session() as session:
        log = session.get(RequestLog, body.request_id)
        if log is None or (actor.audience != "internal" and log.principal != actor.name):
            raise NotFound(f"no request {body.request_id!r} that you made",
                           hint="use the x-request-id header of the response")
        row = Feedback(request_id=log.id, principal=actor.name, rating=body.rating,
                       comment=comment, corrected=corrected if body.corrected_answer else None,
                       redactions=counts)
        session.add(row)
        session.flush()
        return row.id


def for_request(store: Store, request_id: str) -> list[Feedback]:
    """Every feedback given on one request, oldest first."""
    with store.session(write=False) as session:
        return list(session.execute(select(Feedback).where(Feedback.request_id == request_id)
                                    .order_by(Feedback.id)).scalars())
