"""The tier rules of DESIGN.md as pure functions: no database, no I/O, easy to test exhaustively.

Tier 1 is internal data, usable by developers with every use audited. Tier 2 is customer data: no
use without a live approval from the privacy team whose scope and uses cover it. Taint propagates:
whatever is derived from Tier 2 data is Tier 2.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

ROLES = ("developer", "privacy", "admin")
AUDIENCES = ("internal", "public")
USES = ("train", "evaluate", "rag", "view", "export", "deploy-public")
TIERS = (1, 2)


@dataclass(frozen=True)
class Actor:
    """Who is acting: a person or a service, with a role and an audience."""

    id: int
    name: str
    role: str
    audience: str
    # True when acting without a key, as the operating-system account (see `principals`).
    local: bool = False

    @property
    def ref(self) -> str:
        return f"principal:{self.name}"


@dataclass(frozen=True)
class Resource:
    """Something data-bearing that can be used: a source, dataset, model, index, variant, log.

    `roots` are the refs of the Tier 2 sources it was derived from; an approval that covers all of
    them covers the resource too, so a dataset built from an approved source needs no new request.
    """

    kind: str
    name: str
    tier: int
    roots: frozenset[str] = field(default_factory=frozenset)

    @property
    def ref(self) -> str:
        return f"{self.kind}:{self.name}"

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r} (tier {self.tier})"


@dataclass(frozen=True)
class Grant:
    """The facts of an approval that the rules need."""

    id: int
    status: str  # pending | granted | denied | revoked
    scope: frozenset[str]
    uses: frozenset[str]
    expires_at: dt.datetime
    beneficiary: str  # "principal:NAME" or "audience:internal" / "audience:public"
    decided_by: int | None = None  # the principal id of the privacy officer who decided it

    def is_live(self, now: dt.datetime) -> bool:
        return self.status == "granted" and now < self.expires_at


def derived_tier(*tiers: int | Iterable[int]) -> int:
    """The tier of something made from inputs of these tiers: the highest (1 when there is none)."""
    flat: list[int] = []
    for t in tiers:
        flat.extend([t] if isinstance(t, int) else list(t))
    for t in flat:
        if t not in TIERS:
            raise ValueError(f"unknown tier {t!r}; tiers are 1 (internal) and 2 (customer)")
    return max(flat, default=1)


def derived_roots(*resources: Resource) -> frozenset[str]:
    """The Tier 2 roots of something derived from these resources."""
    roots: set[str] = set()
    for r in resources:
        if r.tier == 2:
            roots |= r.roots or {r.ref}
    return frozenset(roots)


def benefits(grant: Grant, actor: Actor) -> bool:
    """Whether the approval was given to this actor (by name, or to the actor's audience).

    Never to the privacy officer who decided it: nobody approves a request that benefits them,
    and an approval for their whole audience would otherwise cover them too.
    """
    if grant.decided_by is not None and grant.decided_by == actor.id:
        return False
    return grant.beneficiary in (actor.ref, f"audience:{actor.audience}")


def covers(grant: Grant, resource: Resource, use: str) -> bool:
    """Whether an approval's scope and allowed uses cover one use of one resource."""
    if use not in grant.uses:
        return False
    if resource.ref in grant.scope:
        return True
    return bool(resource.roots) and resource.roots <= grant.scope


def needs_approval(actor: Actor, resource: Resource, use: str) -> bool:
    """Tier 2 needs an approval for every use, except that the privacy team may view it."""
    if resource.tier < 2:
        return False
    return not (use == "view" and actor.role == "privacy")


def covering_grant(
    actor: Actor, resource: Resource, use: str, grants: Iterable[Grant], now: dt.datetime
) -> Grant | None:
    """The live approval that allows `actor` this use of `resource`, if any."""
    for grant in grants:
        if grant.is_live(now) and benefits(grant, actor) and covers(grant, resource, use):
            return grant
    return None


def may_decide(decider: Actor, requester_id: int, beneficiary: str = "") -> str | None:
    """Why `decider` may not grant or deny a request, or None when they may.

    Deciding takes the privacy role proven by the decider's own key; nobody decides on a request
    they made or one that names them as its beneficiary.
    """
    if decider.local:
        return ("approval decisions take the privacy officer's own API key (--key or "
                "TUNELOOP_API_KEY); the operating-system account never holds the privacy role")
    if decider.role != "privacy":
        return (
            f"only the privacy team decides on approvals; {decider.name} has role {decider.role!r}"
        )
    if decider.id == requester_id:
        return "nobody approves their own request"
    if beneficiary == decider.ref:
        return "nobody approves a request that benefits them"
    return None


def audience_may_receive(audience: str, tier: int, deploy_public_approved: bool = False) -> bool:
    """Whether a variant or chunk of this tier may be served to this audience."""
    if audience == "internal":
        return True
    return tier < 2 or deploy_public_approved
