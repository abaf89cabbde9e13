"""Whether a principal may see Tier 2 content on a dashboard page: the one gate decides.

The privacy role may view Tier 2 data; anyone else needs a live `view` approval covering it.
The decision is made here, on the server, before any Tier 2 text goes into a page; the template
never receives what it must not show. Every decision is audited by the gate itself.
"""

from __future__ import annotations

from tuneloop.errors import ApprovalRequired
from tuneloop.governance import require
from tuneloop.governance.tiers import Actor, Resource
from tuneloop.store import Store


def may_view(store: Store, actor: Actor, resource: Resource, *, purpose: str) -> str | None:
    """None when `actor` may view `resource`, else the gate's refusal message."""
    try:
        require(store, actor, "view", [resource], purpose=purpose)
    except ApprovalRequired as refused:
        return refused.message
    return None


def log_resource(variant: str | None, tier: int) -> Resource:
    """A logged request as a governed resource (`logs:VARIANT`), as the flywheel names it."""
    from tuneloop.flywheel.review import logs_resource

    return logs_resource(variant, tier)
