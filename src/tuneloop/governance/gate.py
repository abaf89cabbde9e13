"""`require`: the one gate every use of data passes through. Grep for it to see every use."""

from __future__ import annotations

from collections.abc import Sequence

from tuneloop.errors import ApprovalRequired
from tuneloop.governance import audit
from tuneloop.governance.approvals import grants_for
from tuneloop.governance.tiers import Actor, Grant, Resource, covering_grant, needs_approval
from tuneloop.store import Store, utcnow


def require(
    store: Store, actor: Actor, use: str, resources: Sequence[Resource], *, purpose: str = ""
) -> list[int]:
    """Allow `actor` to use `resources` for `use`, or raise `ApprovalRequired`.

    Every allowed use is audited; every refusal is audited and names the approval to request.
    Returns the ids of the approvals relied on, for lineage. Call it outside any open write
    transaction: it commits its audit events in transactions of its own, so that a refusal is
    recorded even when the caller's work is rolled back.
    """
    grants = grants_for(store, actor) if any(r.tier >= 2 for r in resources) else []
    now = utcnow()
    used: dict[int, Grant] = {}
    missing: list[Resource] = []
    for resource in resources:
        if not needs_approval(actor, resource, use):
            continue
        grant = covering_grant(actor, resource, use, grants, now)
        if grant is None:
            missing.append(resource)
        else:
            used[grant.id] = grant
    if missing:
        message = _refusal(actor, use, missing, grants, now)
        audit.record_now(
            store,
            actor=actor.name,
            action="access.refused",
            target=", ".join(r.ref for r in missing),
            tier=2,
            details={"use": use, "purpose": purpose, "resources": [r.ref for r in missing]},
        )
        scope = " ".join(f"--scope {ref}" for ref in sorted({_scope_ref(r) for r in missing}))
        raise ApprovalRequired(
            message,
            use=use,
            resources=[r.ref for r in missing],
            hint=(
                f"request one with `tuneloop approvals request {scope} --use {use} --purpose "
                '"..."`; a member of the privacy team then runs `tuneloop approvals grant ID`'
            ),
        )
    tier = max((r.tier for r in resources), default=1)
    if resources:
        audit.record_now(
            store,
            actor=actor.name,
            action=f"use.{use}",
            target=", ".join(r.ref for r in resources),
            tier=tier,
            details={"purpose": purpose, "approvals": sorted(used)},
        )
    return sorted(used)


def _scope_ref(resource: Resource) -> str:
    # A derived resource is covered by approving its roots; ask for those when there are any.
    return sorted(resource.roots)[0] if len(resource.roots) == 1 else resource.ref


def _refusal(actor: Actor, use: str, missing: list[Resource], grants: list[Grant], now) -> str:
    what = ", ".join(str(r) for r in missing)
    lines = [
        f"{actor.name} may not use {what} for {use!r}: Tier 2 (customer) data needs a live "
        "approval from the privacy team that covers it"
    ]
    for grant in grants:
        relevant = any(
            r.ref in grant.scope or (r.roots and r.roots <= grant.scope) for r in missing
        )
        if not relevant:
            continue
        if grant.status == "granted" and grant.expires_at <= now:
            lines.append(f"approval #{grant.id} expired on {grant.expires_at:%Y-%m-%d %H:%M} UTC")
        elif grant.status in ("pending", "denied", "revoked"):
            lines.append(f"approval #{grant.id} is {grant.status}")
        elif use not in grant.uses:
            lines.append(
                f"approval #{grant.id} allows {', '.join(sorted(grant.uses))}, not {use!r}"
            )
    return "; ".join(lines)
