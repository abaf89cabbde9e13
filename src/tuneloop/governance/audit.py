"""The audit log: append-only and hash-chained, so that any edit, deletion, insertion or
reordering of past events is detected by `verify`.

Each event's hash is SHA-256 over the previous event's hash and the event's canonical JSON.
Appends are serialised by locking the single `audit_head` row (SELECT ... FOR UPDATE on
PostgreSQL; the write lock that every writing SQLite session takes at BEGIN).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tuneloop.store import AuditEvent, AuditHead, Store, utcnow

GENESIS = "0" * 64


def _canonical(
    seq: int, ts: dt.datetime, actor: str, action: str, target: str, tier: int | None, details: str
) -> str:
    body = {
        "seq": seq,
        "ts": ts.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "target": target,
        "tier": tier,
        "details": details,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _link(prev_hash: str, canonical: str) -> str:
    return hashlib.sha256((prev_hash + canonical).encode("utf-8")).hexdigest()


def _event_hash(event: AuditEvent, prev_hash: str) -> str:
    return _link(
        prev_hash,
        _canonical(
            event.seq, event.ts, event.actor, event.action, event.target, event.tier, event.details
        ),
    )


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str = "",
    tier: int | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event inside the caller's transaction (it commits or rolls back with it)."""
    head = session.execute(
        select(AuditHead).where(AuditHead.id == 1).with_for_update()
    ).scalar_one()
    seq = head.seq + 1
    # Microsecond precision is what every backend stores; hash exactly what will be read back.
    ts = utcnow()
    details_text = json.dumps(
        details or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    event = AuditEvent(
        seq=seq,
        ts=ts,
        actor=actor,
        action=action,
        target=target,
        tier=tier,
        details=details_text,
        prev_hash=head.hash,
        hash="",
    )
    event.hash = _event_hash(event, head.hash)
    session.add(event)
    head.seq, head.hash = seq, event.hash
    session.flush()
    return event


def record_now(store: Store, **kwargs: Any) -> None:
    """Append one event in its own transaction (for refusals, which must outlive a rollback)."""
    with store.session() as session:
        record(session, **kwargs)


@dataclass(frozen=True)
class Verification:
    """The result of checking the chain: ok, how many events, and the first bad one if any."""

    ok: bool
    count: int
    first_bad_seq: int | None = None
    problem: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"audit chain verified: {self.count} events, no tampering found"
        return f"audit chain BROKEN at event #{self.first_bad_seq}: {self.problem}"


def verify(store: Store, batch: int = 5000) -> Verification:
    """Walk the chain from the start and name the first event that does not fit."""
    prev = GENESIS
    expected = 1
    count = 0
    with store.session(write=False) as session:
        head = session.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one()
        last = 0
        while True:
            rows = (
                session.execute(
                    select(AuditEvent)
                    .where(AuditEvent.seq > last)
                    .order_by(AuditEvent.seq)
                    .limit(batch)
                )
                .scalars()
                .all()
            )
            if not rows:
                break
            for event in rows:
                if event.seq != expected:
                    return Verification(
                        False,
                        count,
                        expected,
                        f"event #{expected} is missing (next present is #{event.seq}): deleted?",
                    )
                if event.prev_hash != prev:
                    return Verification(
                        False,
                        count,
                        event.seq,
                        f"{_describe(event)} does not follow event #{expected - 1} "
                        "(inserted, reordered or re-linked?)",
                    )
                if _event_hash(event, prev) != event.hash:
                    return Verification(
                        False,
                        count,
                        event.seq,
                        f"{_describe(event)}: its content no longer matches its hash (edited?)",
                    )
                prev = event.hash
                expected += 1
                count += 1
                last = event.seq
        if head.seq != count or head.hash != prev:
            return Verification(
                False,
                count,
                count + 1 if head.seq > count else head.seq,
                f"the chain ends at event #{count} but {head.seq} were appended "
                "(events at the end deleted?)",
            )
    return Verification(True, count)


def _describe(event: AuditEvent) -> str:
    return f"event #{event.seq} ({event.action} by {event.actor} at {event.ts:%Y-%m-%d %H:%M:%S})"


def list_events(
    store: Store, *, limit: int = 50, action: str | None = None, actor: str | None = None
) -> list[AuditEvent]:
    """The newest events first, optionally filtered."""
    with store.session(write=False) as session:
        query = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(limit)
        if action:
            query = query.where(AuditEvent.action.like(f"{action}%"))
        if actor:
            query = query.where(AuditEvent.actor == actor)
        return list(session.execute(query).scalars().all())
