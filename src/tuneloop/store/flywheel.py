"""Flywheel tables: the review queue and its decisions, erasures, and retraining marks.

A review item is a logged request that needs a person before it can become training data (a
thumbs-down without a correction). Every decision on it is kept in `review_decisions`. An erasure
row is the receipt of one `tuneloop erase` (the subject only as its hash); a retraining mark says
a model or variant was derived from data that has since been erased.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tuneloop.store.models import Base, utcnow

REVIEW_STATUSES = ("open", "accepted", "edited", "rejected")


class ReviewItem(Base):
    """A logged request waiting for (or given) a reviewer's decision."""

    __tablename__ = "review_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # No foreign key: erasure and retention delete logs and their review items in one transaction.
    request_id: Mapped[str] = mapped_column(String(40), unique=True)
    feedback_id: Mapped[int | None] = mapped_column(Integer, default=None)
    variant: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    tier: Mapped[int] = mapped_column(Integer, default=1)
    reason: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    answer: Mapped[str | None] = mapped_column(Text, default=None)  # a reviewer's edit, redacted
    decided_by: Mapped[str | None] = mapped_column(String(128), default=None)
    decided_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ReviewDecision(Base):
    """One decision on a review item: who, what, when (the history, never edited)."""

    __tablename__ = "review_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("review_items.id"), index=True)
    actor: Mapped[str] = mapped_column(String(128))
    decision: Mapped[str] = mapped_column(String(16))  # accepted | edited | rejected
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Erasure(Base):
    """The receipt of one erasure: the subject's hash, who ran it, and what it removed."""

    __tablename__ = "erasures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(128))
    counts: Mapped[dict[str, Any]] = mapped_column(JSON)
    datasets: Mapped[list[str]] = mapped_column(JSON)  # "old@id -> new@id"
    models: Mapped[list[str]] = mapped_column(JSON)
    variants: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class RetrainingMark(Base):
    """A model or variant derived from erased data: it needs retraining (or retiring)."""

    __tablename__ = "retraining_marks"
    __table_args__ = (UniqueConstraint("kind", "name", "erasure_id", name="uq_retraining_marks"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # model | variant
    name: Mapped[str] = mapped_column(String(128), index=True)
    erasure_id: Mapped[int] = mapped_column(ForeignKey("erasures.id"))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    cleared_at: Mapped[dt.datetime | None] = mapped_column(default=None)
