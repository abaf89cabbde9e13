"""Governance: tiers, principals and keys, approvals, the audit chain, and the one gate.

Every use of data goes through `require(store, actor, use, resources)`.
"""

from tuneloop.governance import approvals, audit, principals
from tuneloop.governance.gate import require
from tuneloop.governance.tiers import (
    AUDIENCES,
    ROLES,
    USES,
    Actor,
    Grant,
    Resource,
    audience_may_receive,
    covering_grant,
    covers,
    derived_roots,
    derived_tier,
    needs_approval,
)

__all__ = [
    "AUDIENCES",
    "ROLES",
    "USES",
    "Actor",
    "Grant",
    "Resource",
    "approvals",
    "audience_may_receive",
    "audit",
    "covering_grant",
    "covers",
    "derived_roots",
    "derived_tier",
    "needs_approval",
    "principals",
    "require",
]
