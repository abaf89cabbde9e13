"""The review queue: answers users marked as bad without saying what would have been right.

`tuneloop enrich` puts such a request here instead of into a dataset; a reviewer then accepts the
answer as it is, edits it into a good one, or rejects it. Accepted and edited items become
training data at the next `enrich`. Every decision is kept (`review_decisions`) and audited.
The same functions serve the CLI and, later, the web dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tuneloop.errors import NotFound, TuneloopError
from tuneloop.governance import audit, require
from tuneloop.governance.tiers import Actor, Resource
from tuneloop.store.flywheel import ReviewDecision, ReviewItem
from tuneloop.store.models import utcnow
from tuneloop.store.serving import Feedback, RequestLog

if TYPE_CHECKING:
    from tuneloop.project import Project

DECISIONS = {"accept": "accepted", "edit": "edited", "reject": "rejected"}


@dataclass(frozen=True)
class ReviewView:
    """A review item with what a reviewer needs to decide: the prompt, the answer, the feedback."""

    id: int
    request_id: str
    variant: str | None
    tier: int
    status: str
    reason: str
    prompt: list[dict[str, Any]]
    output: str
    answer: str | None
    comments: list[str]
    decisions: list[dict[str, Any]]


def logs_resource(variant: str | None, tier: int) -> Resource:
    """The request log of one variant as a governance resource (`logs:VARIANT`)."""
    return Resource("logs", variant or "unrouted", tier)


def enqueue(session: Session, log: RequestLog, feedback: Feedback | None, reason: str) -> bool:
    """Put a logged request in the queue (once); True when it was not there yet."""
    exists = session.execute(
        select(ReviewItem.id).where(ReviewItem.request_id == log.id)
    ).scalar_one_or_none()
    if exists is not None:
        return False
    session.add(ReviewItem(request_id=log.id, feedback_id=feedback.id if feedback else None,
                           variant=log.variant, tier=log.tier, reason=reason))
    return True


def list_items(project: Project, *, status: str | None = "open",
               variant: str | None = None, limit: int = 50) -> list[ReviewItem]:
    """Review items, oldest first (the queue's order); `status=None` lists every status."""
    query = select(ReviewItem).order_by(ReviewItem.id).limit(limit)
    if status:
        query = query.where(ReviewItem.status == status)
    if variant:
        query = query.where(ReviewItem.variant == variant)
    with project.store.session(write=False) as session:
        return list(session.execute(query).scalars())


def show(project: Project, actor: Actor, item_id: int) -> ReviewView:
    """One item with its request and feedback; reading a Tier 2 log is a `view` of it."""
    item = _item(project, item_id)
    require(project.store, actor, "view", [logs_resource(item.variant, item.tier)],
            purpose=f"review request {item.request_id}")
    with project.store.session(write=False) as session:
        log = session.get(RequestLog, item.request_id)
        comments = [f.comment for f in session.execute(
            select(Feedback).where(Feedback.request_id == item.request_id)
            .order_by(Feedback.id)).scalars() if f.comment]
        decisions = [{"actor": d.actor, "decision": d.decision, "note": d.note,
                      "at": d.created_at.isoformat(timespec="seconds")}
                     for d in session.execute(select(ReviewDecision).where(
                         ReviewDecision.item_id == item.id).order_by(ReviewDecision.id)).scalars()]
    if log is None:
        raise NotFound(f"review item #{item_id} refers to request {item.request_id}, which is no "
                       "longer in the log (erased or past retention)")
    return ReviewView(id=item.id, request_id=item.request_id, variant=item.variant,
                      tier=item.tier, status=item.status, reason=item.reason,
                      prompt=list(log.prompt), output=log.output, answer=item.answer,
                      comments=comments, decisions=decisions)


def decide(project: Project, actor: Actor, item_id: int, decision: str, *,
           answer: str | None = None, note: str = "") -> ReviewItem:
    """Accept, edit (with `answer`) or reject an item; recorded and audited.

    An edited answer is redacted by the project's policy before it is stored, like all feedback.
    A later decision replaces an earlier one; both stay in the history.
    """
    if decision not in DECISIONS:
        raise TuneloopError(f"unknown decision {decision!r}; use accept, edit or reject")
    if decision == "edit" and not (answer or "").strip():
        raise TuneloopError("an edit needs the corrected answer",
                            hint='tuneloop review edit ID --answer "the right answer"')
    if actor.audience != "internal":
        raise TuneloopError(f"{actor.name} is a public principal; reviewers are internal")
    item = _item(project, item_id)
    require(project.store, actor, "view", [logs_resource(item.variant, item.tier)],
            purpose=f"review request {item.request_id}")
    stored = _redact(project, answer) if decision == "edit" else None
    status = DECISIONS[decision]
    with project.store.session() as session:
        row = session.get(ReviewItem, item_id)
        assert row is not None  # checked above; items are only deleted with their request
        row.status, row.answer = status, stored
        row.decided_by, row.decided_at = actor.name, utcnow()
        session.add(ReviewDecision(item_id=row.id, actor=actor.name, decision=status, note=note))
        audit.record(session, actor=actor.name, action=f"review.{decision}",
                     target=f"request:{row.request_id}", tier=row.tier,
                     # The note stays in review_decisions (erasable), not in the immutable chain.
                     details={"item": row.id, "has_note": bool(note)})
        session.flush()
        return row


def _item(project: Project, item_id: int) -> ReviewItem:
    with project.store.session(write=False) as session:
        item = session.get(ReviewItem, item_id)
    if item is None:
        raise NotFound(f"no review item #{item_id}", hint="`tuneloop review list` shows the queue")
    return item


def _redact(project: Project, text: str | None) -> str:
    from tuneloop.governance.pii import Redactor

    return Redactor(list(project.config.privacy.redact)).redact(text or "").text
