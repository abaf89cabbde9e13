"""Approvals: a developer requests the use of Tier 2 data; the privacy team grants or denies it.

request -> pending -> granted | denied;  granted -> revoked;  a granted approval stops working
when it expires. Nobody decides on their own request, and only the `privacy` role decides.
"""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select

from tuneloop.errors import InvalidInput, NotFound, PermissionDenied
from tuneloop.governance import audit
from tuneloop.governance.tiers import AUDIENCES, USES, Actor, Grant, may_decide
from tuneloop.store import Approval, Principal, Store, utcnow

REF_PATTERN = re.compile(r"^(source|dataset|model|variant|index|logs):[A-Za-z0-9_.@*-]+$")


def parse_duration(text: str) -> dt.timedelta:
    """'90d', '12h', '30m' or '2w' as a timedelta."""
    match = re.fullmatch(r"\s*(\d+)\s*([mhdw])\s*", text)
    if not match:
        raise InvalidInput(f"cannot read duration {text!r}; use forms like 30d, 12h, 2w")
    value, unit = int(match.group(1)), match.group(2)
    return {
        "m": dt.timedelta(minutes=value),
        "h": dt.timedelta(hours=value),
        "d": dt.timedelta(days=value),
        "w": dt.timedelta(weeks=value),
    }[unit]


def grant_of(row: Approval) -> Grant:
    return Grant(
        id=row.id,
        status=row.status,
        scope=frozenset(row.scope),
        uses=frozenset(row.uses),
        expires_at=row.expires_at,
        beneficiary=row.beneficiary,
        decided_by=row.decided_by_id,
    )


def request(
    store: Store,
    by: Actor,
    *,
    scope: list[str],
    uses: list[str],
    purpose: str,
    expires_in: dt.timedelta = dt.timedelta(days=90),
    for_audience: str | None = None,
) -> int:
    """File a request; returns its id. `for_audience` asks for every principal of an audience."""
    if not scope:
        raise InvalidInput("an approval request needs a scope, e.g. --scope source:tickets")
    for ref in scope:
        if not REF_PATTERN.match(ref):
            raise InvalidInput(
                f"cannot read scope {ref!r}; use KIND:NAME with KIND one of source, dataset, "
                "model, variant, index, logs (e.g. source:tickets)"
            )
    bad = [u for u in uses if u not in USES]
    if bad or not uses:
        raise InvalidInput(f"unknown use {bad or uses!r}; allowed uses: {', '.join(USES)}")
    if not purpose.strip():
        raise InvalidInput("an approval request needs a purpose the privacy team can judge")
    if expires_in <= dt.timedelta(0):
        raise InvalidInput("an approval must expire in the future")
    if for_audience is not None and for_audience not in AUDIENCES:
        raise InvalidInput(f"unknown audience {for_audience!r}; allowed: {', '.join(AUDIENCES)}")
    beneficiary = f"audience:{for_audience}" if for_audience else by.ref
    with store.session() as session:
        row = Approval(
            requester_id=by.id,
            purpose=purpose.strip(),
            scope=sorted(set(scope)),
            uses=sorted(set(uses)),
            expires_at=utcnow() + expires_in,
            beneficiary=beneficiary,
        )
        session.add(row)
        session.flush()
        audit.record(
            session,
            actor=by.name,
            action="approval.request",
            target=f"approval:{row.id}",
            tier=2,
            details={
                "scope": row.scope,
                "uses": row.uses,
                "purpose": row.purpose,
                "beneficiary": beneficiary,
                "expires_at": row.expires_at.isoformat(),
            },
        )
        return row.id


def _decide(store: Store, by: Actor, approval_id: int, new_status: str, reason: str) -> Approval:
    # Refusals are audited in a transaction of their own, before the decision's own transaction.
    with store.session(write=False) as session:
        row = session.get(Approval, approval_id)
        if row is None:
            raise NotFound(f"no approval #{approval_id}", hint="`tuneloop approvals list`")
        requester_id, beneficiary = row.requester_id, row.beneficiary
        decider = session.get(Principal, by.id)
        disabled = decider is None or decider.disabled_at is not None
    if disabled:
        why_not: str | None = f"{by.name} is disabled"
    elif new_status == "revoked":
        why_not = _why_not_revoke(by)
    else:
        why_not = may_decide(by, requester_id, beneficiary)
    if why_not:
        audit.record_now(
            store,
            actor=by.name,
            action="approval.refused",
            target=f"approval:{approval_id}",
            tier=2,
            details={"attempted": _verb(new_status), "why": why_not},
        )
        raise PermissionDenied(f"cannot {_verb(new_status)} approval #{approval_id}: {why_not}")
    with store.session() as session:
        row = session.get(Approval, approval_id)
        assert row is not None
        expected = "granted" if new_status == "revoked" else "pending"
        if row.status != expected:
            raise InvalidInput(
                f"approval #{approval_id} is {row.status}; only a {expected} "
                f"approval can be {new_status}"
            )
        row.status = new_status
        row.decided_by_id = by.id
        row.decided_at = utcnow()
        row.reason = reason
        audit.record(
            session,
            actor=by.name,
            action=f"approval.{_verb(new_status)}",
            target=f"approval:{approval_id}",
            tier=2,
            details={"reason": reason, "scope": row.scope, "uses": row.uses},
        )
        session.flush()
        return row


def _why_not_revoke(by: Actor) -> str | None:
    """Why `by` may not revoke an approval (revoking takes a privacy officer's key)."""
    if by.local:
        return "revoking takes the privacy officer's own API key (--key or TUNELOOP_API_KEY)"
    if by.role != "privacy":
        return f"only the privacy team revokes approvals; {by.name} has role {by.role!r}"
    return None


def _verb(status: str) -> str:
    return {"granted": "grant", "denied": "deny", "revoked": "revoke"}[status]


def grant(store: Store, by: Actor, approval_id: int, reason: str = "") -> Approval:
    """Grant a pending request (privacy role, not the requester)."""
    return _decide(store, by, approval_id, "granted", reason)


def deny(store: Store, by: Actor, approval_id: int, reason: str = "") -> Approval:
    """Deny a pending request (privacy role, not the requester)."""
    return _decide(store, by, approval_id, "denied", reason)


def revoke(store: Store, by: Actor, approval_id: int, reason: str = "") -> Approval:
    """Withdraw a granted approval; it stops working at once (privacy role)."""
    return _decide(store, by, approval_id, "revoked", reason)


def list_approvals(
    store: Store, *, status: str | None = None, requester: str | None = None
) -> list[tuple[Approval, str, str | None]]:
    """Approvals newest first, with requester and decider names."""
    with store.session(write=False) as session:
        query = select(Approval).order_by(Approval.id.desc())
        if status:
            query = query.where(Approval.status == status)
        rows = session.execute(query).scalars().all()
        names = dict(session.execute(select(Principal.id, Principal.name)).tuples().all())
        out = []
        for row in rows:
            who = names.get(row.requester_id, "?")
            if requester and who != requester:
                continue
            out.append((row, who, names.get(row.decided_by_id) if row.decided_by_id else None))
        return out


def grants_for(store: Store, actor: Actor) -> list[Grant]:
    """Every approval that names this actor or its audience (live or not: the gate decides)."""
    with store.session(write=False) as session:
        rows = (
            session.execute(
                select(Approval)
                .where(Approval.beneficiary.in_([actor.ref, f"audience:{actor.audience}"]))
                .order_by(Approval.id.desc())
            )
            .scalars()
            .all()
        )
        return [grant_of(r) for r in rows]
