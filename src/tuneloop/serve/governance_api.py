"""Team mode: the governance API, so that people hold keys, not database passwords.

    POST /v1/governance/approvals                     request an approval (as the key's principal)
    POST /v1/governance/approvals/{id}/{decision}     grant | deny | revoke, with a reason
    GET  /v1/governance/approvals?status=...          list (a public-audience key: its own)
    GET  /v1/governance/whoami                        the key's principal
    POST /v1/governance/keys                          create a key (admins)
    GET  /v1/governance/keys                          list keys (admins, privacy: all; others:
                                                      their own)
    POST /v1/governance/keys/{prefix}/revoke          revoke (admins: any; others: their own)
    POST /v1/governance/principals/{name}/disable     disable a principal (admins)
    GET  /v1/governance/audit?limit=&action=&actor=   list events (privacy, admin)
    GET  /v1/governance/audit/verify?seq=&hash=       check the chain, optionally that it still
                                                      holds an exported head (privacy, admin)
    GET  /v1/governance/audit/head                    the chain's head, after verifying it
    POST /v1/governance/rollout/{alias}/{action}      set | promote | rollback
    GET  /v1/governance/rollout?alias=                each alias's rollout and latest changes

Every route authenticates the caller's key and calls the same governance functions the CLI calls
on a local store; the server holds the database credentials and the audit key. The CLI uses these
routes when `TUNELOOP_URL` is set (see `cli/_remote.py`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from tuneloop import rollout
from tuneloop.errors import PermissionDenied, TuneloopError
from tuneloop.governance import approvals, audit, principals
from tuneloop.governance.tiers import Actor
from tuneloop.serve.errors import ApiError

if TYPE_CHECKING:
    from tuneloop.serve.server import Server

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


class KeyBody(BaseModel):
    name: str
    role: str = "developer"
    audience: str = "internal"
    label: str = ""
    service: bool = False


class RolloutBody(BaseModel):
    variant: str = ""
    stage: str = ""
    percent: float | None = None
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

    async def caller(request: Request) -> Actor:
        actor = await anyio.to_thread.run_sync(server.authenticate, request)
        server.limiter.take(server.keys.bucket(request.headers.get("authorization")))
        return actor

    _approval_routes(router, server, caller)
    _key_routes(router, server, caller)
    _audit_routes(router, server, caller)
    _rollout_routes(router, server, caller)
    return router


Caller = Callable[[Request], Awaitable[Actor]]


def _approval_routes(router: APIRouter, server: Server, caller: Caller) -> None:
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
        """Approvals, newest first; a public-audience key sees only its own requests."""
        actor = await caller(request)
        mine = actor.name if actor.audience == "public" else None
        rows = await anyio.to_thread.run_sync(
            lambda: approvals.list_approvals(server.store, status=status, requester=mine))
        return [{"id": r.id, "status": r.status, "requester": who, "decided_by": decider,
                 "beneficiary": r.beneficiary, "scope": r.scope, "uses": r.uses,
                 "purpose": r.purpose, "expires_at": r.expires_at.isoformat()}
                for r, who, decider in rows]

    @router.get("/whoami")
    async def whoami(request: Request) -> dict[str, Any]:
        """The principal the key belongs to."""
        actor = await caller(request)
        return {"name": actor.name, "role": actor.role, "audience": actor.audience}


def _key_routes(router: APIRouter, server: Server, caller: Caller) -> None:
    @router.post("/keys")
    async def create_key(request: Request, body: KeyBody) -> dict[str, Any]:
        """Create a key (admins only); its secret is in this answer and nowhere else."""
        actor = await caller(request)
        new = await anyio.to_thread.run_sync(lambda: _domain(
            principals.create_key, server.store, actor, body.name, role=body.role,
            audience=body.audience, label=body.label,
            kind="service" if body.service else "person"))
        return {"secret": new.secret, "prefix": new.prefix, "name": new.principal.name,
                "role": new.principal.role, "audience": new.principal.audience}

    @router.get("/keys")
    async def list_keys(request: Request) -> list[dict[str, Any]]:
        """Keys (prefixes only): every key for admins and the privacy team, else your own."""
        actor = await caller(request)
        rows = await anyio.to_thread.run_sync(principals.list_keys, server.store)
        everyone = actor.role in ("admin", "privacy")
        return [{"prefix": k.prefix, "principal": p.name, "role": p.role,
                 "audience": p.audience, "label": k.label, "created_at": _iso(k.created_at),
                 "revoked_at": _iso(k.revoked_at)}
                for k, p in rows if everyone or p.name == actor.name]

    @router.post("/keys/{prefix}/revoke")
    async def revoke_key(request: Request, prefix: str) -> dict[str, Any]:
        """Revoke a key (admins: any key; others: their own)."""
        actor = await caller(request)
        await anyio.to_thread.run_sync(lambda: _domain(
            principals.revoke_key, server.store, actor, prefix))
        return {"prefix": prefix, "revoked": True}

    @router.post("/principals/{name}/disable")
    async def disable(request: Request, name: str, body: DecisionBody) -> dict[str, Any]:
        """Disable a principal: none of its keys work any more (admins only)."""
        actor = await caller(request)
        await anyio.to_thread.run_sync(lambda: _domain(
            principals.disable_principal, server.store, actor, name, body.reason))
        return {"name": name, "disabled": True}


def _audit_routes(router: APIRouter, server: Server, caller: Caller) -> None:
    async def auditor(request: Request) -> Actor:
        actor = await caller(request)
        if actor.role not in ("privacy", "admin"):
            raise PermissionDenied(f"the audit log is for the privacy team and admins; "
                                   f"{actor.name} has role {actor.role!r}")
        return actor

    @router.get("/audit")
    async def list_events(request: Request, limit: int = 50, action: str | None = None,
                          actor: str | None = None) -> list[dict[str, Any]]:
        """Audit events, newest first (privacy team and admins)."""
        await auditor(request)
        events = await anyio.to_thread.run_sync(lambda: audit.list_events(
            server.store, limit=max(1, min(limit, 1000)), action=action, actor=actor))
        return [{"seq": e.seq, "ts": _iso(e.ts), "actor": e.actor, "action": e.action,
                 "target": e.target, "tier": e.tier} for e in events]

    @router.get("/audit/verify")
    async def verify(request: Request, seq: int | None = None,
                     hash: str | None = None) -> dict[str, Any]:
        """Check the audit chain, and that it still holds an exported head when one is given
        (privacy team and admins)."""
        await auditor(request)
        anchor = audit.Head(seq, hash) if seq is not None and hash else None
        result = await anyio.to_thread.run_sync(lambda: audit.verify(server.store,
                                                                     anchor=anchor))
        return {"ok": result.ok, "count": result.count, "message": str(result)}

    @router.get("/audit/head")
    async def head(request: Request) -> dict[str, Any]:
        """The chain's head, to keep elsewhere; refused while the chain does not verify."""
        await auditor(request)
        result = await anyio.to_thread.run_sync(audit.verify, server.store)
        if not result.ok:
            raise ApiError(409, f"{result}; not exporting a head of a broken chain")
        exported = await anyio.to_thread.run_sync(audit.export_head, server.store)
        return json.loads(exported.to_json())


def _rollout_routes(router: APIRouter, server: Server, caller: Caller) -> None:
    @router.post("/rollout/{alias}/{action}")
    async def change(request: Request, alias: str, action: str,
                     body: RolloutBody) -> dict[str, Any]:
        """Set a variant's stage, promote it one stage, or roll the alias back."""
        actor = await caller(request)
        project = server.project
        steps: dict[str, Callable[[], rollout.AliasState]] = {
            "set": lambda: rollout.set_stage(project, actor, alias, body.variant, body.stage,
                                             percent=body.percent, reason=body.reason),
            "promote": lambda: rollout.promote(project, actor, alias, body.variant,
                                               percent=body.percent, reason=body.reason),
            "rollback": lambda: rollout.rollback(project, actor, alias, reason=body.reason)}
        if action not in steps:
            raise ApiError(404, f"unknown rollout action {action!r}; use set, promote or "
                           "rollback")
        done = await anyio.to_thread.run_sync(lambda: _domain(steps[action]))
        return _rollout_dict(done)

    @router.get("/rollout")
    async def status(request: Request, alias: str | None = None) -> list[dict[str, Any]]:
        """Each alias's rollout (or one alias's) with its latest changes."""
        await caller(request)

        def read() -> list[dict[str, Any]]:
            names = [alias] if alias else rollout.aliases(server.project)
            return [{**_rollout_dict(rollout.state(server.project, name)), "changes": [
                {"id": ch.id, "created_at": _iso(ch.created_at), "actor": ch.actor,
                 "action": ch.action, "variant": ch.variant, "reason": ch.reason,
                 "rolled_back": ch.rolled_back}
                for ch in rollout.history(server.project, name, limit=10)]} for name in names]

        return await anyio.to_thread.run_sync(read)


def _rollout_dict(state: rollout.AliasState) -> dict[str, Any]:
    return {"alias": state.alias, "entries": [e.as_dict() for e in state.entries]}


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
