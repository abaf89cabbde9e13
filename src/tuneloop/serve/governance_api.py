"""Team mode: the governance API, so that people hold keys, not database passwords.

    POST /v1/governance/approvals                     request an approval (as the key's principal)
    POST /v1/governance/approvals/{id}/{decision}     grant | deny | revoke, with a reason
    GET  /v1/governance/approvals?status=...          list
    GET  /v1/governance/whoami                        the key's principal
    GET  /v1/governance/audit/verify                  check the audit chain (privacy, admin)

Every route authenticates the caller's key and calls the same governance functions the CLI calls
on a local store; the server holds the database credentials and the audit key. The CLI uses these
routes when `TUNELOOP_URL` is set (see `cli/_remote.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from tuneloop.errors import PermissionDenied, TuneloopError
from tuneloop.governance import approvals, audit
from tuneloop.serve.errors import ApiError

if TYPE_CHECKING:
    from tuneloop.serve.app import Server

T = TypeVar("T")
DECISIONS = {"grant": approvals.grant, "deny": approvals.deny, "revoke": approvals.revoke}


class ApprovalRequestBody(BaseModel):
    scope: list[str]
    uses: list[str]
    purpose: str
    expires: str = "90d"
    for_audience: str | None = None


class DecisionBody(BaseModel):
    reason: str = Field(default="", max_length=2000)


def _domain(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a governance function; its refusals keep their status, its other errors are 400s."""
    try:
        return fn(*args, **kwargs)
    except TuneloopError as exc:
        if exc.http_status >= 500:
            raise ApiError(400, str(exc), code=type(exc).__name__) from None
        raise


def governance_router(server: Server) -> APIRouter:
    """The governance routes of one server."""
    router = APIRouter(prefix="/v1/governance", tags=["governance"])

    async def caller(request: Request) -> Any:
        actor = await anyio.to_thread.run_sync(server.authenticate, request)
        server.limiter.take(server.keys.bucket(request.headers.get("authorization")))
        return actor

    @router.post("/approvals")
    async def request_approval(request: Request, body: ApprovalRequestBody) -> dict[str, Any]:
        """Ask the privacy team for the use of Tier 2 data."""
        actor = await caller(request)
        approval_id = await anyio.to_thread.run_sync(lambda: _domain(
            approvals.request, server.store, actor, scope=body.scope, uses=body.uses,
            purpose=body.purpose, expires_in=approvals.parse_duration(body.expires),
            for_audience=body.for_audience))
        return {"id": approval_id}

    @router.post("/approvals/{approval_id}/{decision}")
    async def decide(request: Request, approval_id: int, decision: str,
                     body: DecisionBody) -> dict[str, Any]:
        """Grant, deny or revoke (privacy role; never your own request)."""
        actor = await caller(request)
        if decision not in DECISIONS:
            raise ApiError(404, f"unknown decision {decision!r}; use grant, deny or revoke")
        row = await anyio.to_thread.run_sync(lambda: _domain(
            DECISIONS[decision], server.store, actor, approval_id, body.reason))
        return {"id": row.id, "status": row.status}

    @router.get("/approvals")
    async def list_approvals(request: Request, status: str | None = None) -> list[dict[str, Any]]:
        """Approvals, newest first."""
        await caller(request)
        rows = await anyio.to_thread.run_sync(
            lambda: approvals.list_approvals(server.store, status=status))
        return [{"id": r.id, "status": r.status, "requester": who, "decided_by": decider,
                 "beneficiary": r.beneficiary, "scope": r.scope, "uses": r.uses,
                 "purpose": r.purpose, "expires_at": r.expires_at.isoformat()}
                for r, who, decider in rows]

    @router.get("/whoami")
    async def whoami(request: Request) -> dict[str, Any]:
        """The principal the key belongs to."""
        actor = await caller(request)
        return {"name": actor.name, "role": actor.role, "audience": actor.audience}

    @router.get("/audit/verify")
    async def verify(request: Request) -> dict[str, Any]:
        """Check the audit chain (privacy team and admins)."""
        actor = await caller(request)
        if actor.role not in ("privacy", "admin"):
            raise PermissionDenied(f"the audit log is for the privacy team and admins; "
                                   f"{actor.name} has role {actor.role!r}")
        result = await anyio.to_thread.run_sync(audit.verify, server.store)
        return {"ok": result.ok, "count": result.count, "message": str(result)}

    return router
