"""Rollout: which variant serves which audience of an application alias, and how it advances.

A domain package used alike by the server (routing a request), the dashboard, the CLI and the
demo. `state` reads an alias's rollout, `set_stage` / `promote` / `rollback` / `withdraw` change
it through the gates in `gates`, `history` lists the changes; `routed` holds routed variants
(a query-type router choosing a variant per request).
"""

from __future__ import annotations

from tuneloop.rollout.changes import (
    DEFAULT_PUBLIC_PERCENT,
    promote,
    rollback,
    set_stage,
    withdraw,
    withdraw_from_public,
)
from tuneloop.rollout.gates import (
    PUBLIC_STAGES,
    GateStatus,
    latest_gate_status,
    public_approval_live,
)
from tuneloop.rollout.state import AliasState, Entry, aliases, history, state, sticky_bucket

__all__ = [
    "DEFAULT_PUBLIC_PERCENT", "PUBLIC_STAGES", "AliasState", "Entry", "GateStatus", "aliases",
    "history", "latest_gate_status", "promote", "public_approval_live", "rollback", "set_stage",
    "state", "sticky_bucket", "withdraw", "withdraw_from_public",
]
