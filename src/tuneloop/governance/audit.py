"""The audit log: append-only and hash-chained, so that any edit, deletion, insertion or
reordering of past events is detected by `verify`.

Each event's hash is an HMAC-SHA-256, keyed with a secret kept outside the database (see
`governance.secrets`), over the previous event's hash and the event's canonical JSON: write access
to the database is not enough to recompute the chain. Truncating the end of the chain is caught by
comparing with a head exported earlier (`export_head`, `verify(head=...)`) and kept elsewhere.
Appends are serialised by locking the single `audit_head` row (SELECT ... FOR UPDATE on
PostgreSQL; the write lock that every writing SQLite session takes at BEGIN).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tuneloop.governance.secrets import AuditKey, audit_key
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


def _link(prev_hash: str, canonical: str, key: AuditKey, seq: int) -> str:
    message = (prev_hash + canonical).encode("utf-8")
    if seq <= key.plain_until:  # written before the chain had a key
        return hashlib.sha256(message).hexdigest()
    return hmac.new(key.key, message, hashlib.sha256).hexdigest()


def _event_hash(event: AuditEvent, prev_hash: str, key: AuditKey) -> str:
    return _link(
        prev_hash,
        _canonical(
            event.seq, event.ts, event.actor, event.action, event.target, event.tier, event.details
        ),
        key,
        event.seq,
    )


def chain_key(store: Store) -> AuditKey:
    """The key of the store's chain (created for a SQLite store that has none yet)."""
    with store.session(write=False) as session:
        seq = session.execute(select(AuditHead.seq).where(AuditHead.id == 1)).scalar_one()
    return audit_key(store.url, seq if store.dialect == "sqlite" else None)


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
    key = audit_key(str(session.get_bind().engine.url), head.seq)
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
    event.hash = _event_hash(event, head.hash, key)
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


@dataclass(frozen=True)
class Head:
    """The chain's last event, to keep somewhere the database's users cannot write (a ticket,
    another system, a signed e-mail); `verify(store, anchor=head)` then proves nothing up to it
    was removed or rewritten, which the key alone cannot (truncation needs no key)."""

    seq: int
    hash: str
    exported_at: str = ""

    def to_json(self) -> str:
        return json.dumps({"seq": self.seq, "hash": self.hash, "exported_at": self.exported_at})

    @classmethod
    def from_json(cls, text: str) -> Head:
        data = json.loads(text)
        return cls(int(data["seq"]), str(data["hash"]), str(data.get("exported_at", "")))


def export_head(store: Store) -> Head:
    """The chain's head now, after checking the chain leading to it."""
    with _snapshot(store) as session:
        head = session.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one()
        return Head(head.seq, head.hash, utcnow().isoformat(timespec="seconds"))


@contextlib.contextmanager
def _snapshot(store: Store) -> Iterator[Session]:
    """A read session that sees one snapshot of the database (REPEATABLE READ on PostgreSQL)."""
    with store.session(write=False) as session:
        if store.dialect == "postgresql":
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        yield session


def verify(store: Store, batch: int = 5000, *, anchor: Head | None = None) -> Verification:
    """Walk the chain from the start and name the first event that does not fit.

    Reads one snapshot and stops at the head it read, so events appended meanwhile are neither
    missed nor mistaken for a break. With `anchor` (an exported head), also checks that the chain
    still holds that event, unchanged.
    """
    key = chain_key(store)
    with _snapshot(store) as session:
        head = session.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one()
        walked = _walk(session, key, head.seq, batch, anchor)
        if isinstance(walked, Verification):
            return walked
        count, prev, anchored = walked
        if head.seq != count or head.hash != prev:
            return Verification(
                False,
                count,
                count + 1 if head.seq > count else head.seq,
                f"the chain ends at event #{count} but {head.seq} were appended "
                "(events at the end deleted?)",
            )
    if anchor is not None and anchored != anchor.hash:
        problem = (f"the chain has {count} events but the exported head is event #{anchor.seq} "
                   "(events at the end deleted and the head re-linked?)" if anchored is None else
                   f"event #{anchor.seq} is not the one exported (hash {anchor.hash[:12]}...): "
                   "the chain was rewritten")
        return Verification(False, count, anchor.seq, problem)
    return Verification(True, count)


def _walk(session: Session, key: AuditKey, until: int, batch: int,
          anchor: Head | None) -> Verification | tuple[int, str, str | None]:
    """Check events 1..`until` in order; a failed Verification, or (count, last hash, the hash
    at the anchor's seq)."""
    prev, expected, anchored = GENESIS, 1, None
    while expected <= until:
        rows = session.execute(
            select(AuditEvent).where(AuditEvent.seq >= expected, AuditEvent.seq <= until)
            .order_by(AuditEvent.seq).limit(batch)
        ).scalars().all()
        if not rows:
            break
        for event in rows:
            problem = _misfit(event, expected, prev, key)
            if problem:
                return Verification(False, expected - 1, problem[0], problem[1])
            if anchor is not None and event.seq == anchor.seq:
                anchored = event.hash
            prev, expected = event.hash, expected + 1
    return expected - 1, prev, anchored


def _misfit(event: AuditEvent, expected: int, prev: str, key: AuditKey) -> tuple[int, str] | None:
    """(seq, problem) when `event` is not the expected next link of the chain."""
    if event.seq != expected:
        return expected, f"event #{expected} is missing (next present is #{event.seq}): deleted?"
    if event.prev_hash != prev:
        return event.seq, (f"{_describe(event)} does not follow event #{expected - 1} "
                           "(inserted, reordered or re-linked?)")
    if _event_hash(event, prev, key) != event.hash:
        return event.seq, f"{_describe(event)}: its content no longer matches its hash (edited?)"
    return None


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
