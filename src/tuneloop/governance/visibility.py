"""What a principal may receive from retrieval: the one decision every search applies as a filter.

A pure function, like the rules in `tiers`: Tier 1 sources are visible to everyone; a Tier 2
source only to a principal whose live approvals allow `rag` on it, and never to the `public`
audience unless an approval also allows `deploy-public` on it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from tuneloop.governance.tiers import (
    Actor,
    Grant,
    Resource,
    audience_may_receive,
    covering_grant,
)


def source_resource(name: str, tier: int) -> Resource:
    """A knowledge-base source as a governance resource (a Tier 2 source is its own root)."""
    roots = frozenset({f"source:{name}"}) if tier >= 2 else frozenset()
    return Resource("source", name, tier, roots)


def visible_sources(actor: Actor, source_tiers: Mapping[str, int], grants: Iterable[Grant],
                    now: dt.datetime) -> frozenset[str]:
    """The sources (of `source_tiers`: name -> tier) whose chunks `actor` may be given."""
    grants = list(grants)
    visible = set()
    for name, tier in source_tiers.items():
        if tier < 2:
            visible.add(name)
            continue
        resource = source_resource(name, tier)
        if covering_grant(actor, resource, "rag", grants, now) is None:
            continue
        public_ok = covering_grant(actor, resource, "deploy-public", grants, now) is not None
        if audience_may_receive(actor.audience, tier, public_ok):
            visible.add(name)
    return frozenset(visible)
