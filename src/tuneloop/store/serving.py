"""Serving tables: rollouts (and their history), the request log, and feedback on requests.

A rollout row says at which stage a variant serves an application alias; every change to an alias
is kept in `rollout_history` with the alias's state before and after, so a rollback restores a
previous state exactly. The request log holds every served request, after redaction.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tuneloop.store.models import Base, utcnow

STAGES = ("shadow", "internal", "public", "all")


class Rollout(Base):
    """At which stage one variant serves one alias; `percent` is the public traffic share."""

    __tablename__ = "rollouts"
    __table_args__ = (UniqueConstraint("alias", "variant", name="uq_rollouts_alias_variant"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alias: Mapped[str] = mapped_column(String(64), index=True)
    variant: Mapped[str] = mapped_column(String(64))
    stage: Mapped[str] = mapped_column(String(16))  # shadow | internal | public | all
    percent: Mapped[float] = mapped_column(Float, default=0.0)
    updated_by: Mapped[str] = mapped_column(String(128), default="")
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class RolloutChange(Base):
    """One change to an alias's rollout, with the whole state before and after it."""

    __tablename__ = "rollout_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alias: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(16))  # set | promote | rollback
    variant: Mapped[str] = mapped_column(String(64), default="")
    before: Mapped[list[Any]] = mapped_column(JSON)
    after: Mapped[list[Any]] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text, default="")
    rolled_back: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class RequestLog(Base):
    """One served request (or refused one): who, what variant, redacted text, timings, status."""

    __tablename__ = "request_logs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # the x-request-id
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    principal: Mapped[str | None] = mapped_column(String(128), default=None, index=True)
    # hash of the data subject (the OpenAI `user` field), for erasure; added by migration 0008
    subject: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    audience: Mapped[str | None] = mapped_column(String(16), default=None)
    model: Mapped[str] = mapped_column(String(128), default="")  # as the caller named it
    variant: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    shadow_of: Mapped[str | None] = mapped_column(String(40), default=None, index=True)
    tier: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[int] = mapped_column(Integer)
    error: Mapped[str] = mapped_column(Text, default="")
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    prompt: Mapped[list[Any]] = mapped_column(JSON, default=list)  # redacted messages
    output: Mapped[str] = mapped_column(Text, default="")  # redacted
    redactions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # entity -> count
    chunk_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    finish_reason: Mapped[str] = mapped_column(String(16), default="")
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    ttft_ms: Mapped[float | None] = mapped_column(Float, default=None)
    total_ms: Mapped[float] = mapped_column(Float, default=0.0)
    replica: Mapped[str] = mapped_column(String(128), default="")
    # query-type routing (migration 0010): the routed variant that chose `variant`, the slice
    # its router predicted for the message, and the router's confidence in it
    routed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    predicted_slice: Mapped[str | None] = mapped_column(String(128), default=None, index=True)
    slice_confidence: Mapped[float | None] = mapped_column(Float, default=None)


class Feedback(Base):
    """A rating, comment or corrected answer attached to a logged request (all redacted)."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("request_logs.id"), index=True)
    principal: Mapped[str] = mapped_column(String(128))
    rating: Mapped[int | None] = mapped_column(Integer, default=None)
    comment: Mapped[str] = mapped_column(Text, default="")
    corrected: Mapped[str | None] = mapped_column(Text, default=None)
    redactions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
