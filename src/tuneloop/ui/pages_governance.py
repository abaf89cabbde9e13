"""Approvals and Audit pages. Decisions call the same functions as the CLI
(`governance.approvals.grant/deny/revoke`), so role rules and self-approval are enforced there."""

from __future__ import annotations

import re
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from tuneloop.errors import PermissionDenied, TuneloopError
from tuneloop.governance import approvals, audit
from tuneloop.governance.tiers import USES
from tuneloop.ui import session as sess
from tuneloop.ui._common import dashboard, flash, redirect

router = APIRouter()
DECISIONS = {"grant": approvals.grant, "deny": approvals.deny, "revoke": approvals.revoke}
AUDIT_PAGE = 200


@router.get("/approvals", name="approvals")
async def approvals_page(request: Request) -> HTMLResponse:
    """The privacy team sees every request (pending first); everyone else sees their own."""
    ui = dashboard(request)
    actor = await ui.actor(request)
    rows = await anyio.to_thread.run_sync(approvals.list_approvals, ui.project.store)
    if actor.role != "privacy":
        rows = [r for r in rows if r[1] == actor.name]
    pending = [r for r in rows if r[0].status == "pending"]
    others = [r for r in rows if r[0].status != "pending"]
    return ui.render(request, "approvals.html.j2", actor, pending=pending, others=others,
                     uses=USES, prefill_scope=request.query_params.get("scope", ""),
                     prefill_use=request.query_params.get("use", ""))


@router.post("/approvals", name="approval_request")
async def approval_request(request: Request) -> Response:
    """File a request for an approval (anyone may ask)."""
    form = await sess.check_csrf(request)
    ui = dashboard(request)
    actor = await ui.actor(request)
    raw_form = await request.form()
    uses = [u for u in raw_form.getlist("uses") if isinstance(u, str)]
    scope = [s for s in re.split(r"[\s,]+", form.get("scope", "")) if s]
    try:
        duration = approvals.parse_duration(form.get("expires_in", "") or "30d")
        new_id = await anyio.to_thread.run_sync(
            lambda: approvals.request(ui.project.store, actor, scope=scope, uses=uses,
                                      purpose=form.get("purpose", ""), expires_in=duration))
    except TuneloopError as exc:
        flash(request, "error", f"Request not filed: {exc.message}")
    else:
        flash(request, "ok", f"Approval #{new_id} requested; the privacy team will decide.")
    return redirect(request, "approvals")


@router.post("/approvals/{approval_id}/{decision}", name="approval_decide")
async def approval_decide(request: Request, approval_id: int, decision: str) -> Response:
    """Grant, deny or revoke with a reason (privacy role; never one's own request)."""
    form = await sess.check_csrf(request)
    ui = dashboard(request)
    actor = await ui.actor(request)
    decide = DECISIONS.get(decision)
    if decide is None:
        flash(request, "error", f"unknown decision {decision!r}; use grant, deny or revoke")
        return redirect(request, "approvals")
    reason = form.get("reason", "").strip()
    if not reason:
        flash(request, "error", f"Approval #{approval_id}: give a reason for the decision.")
        return redirect(request, "approvals")
    try:
        await anyio.to_thread.run_sync(decide, ui.project.store, actor, approval_id, reason)
    except TuneloopError as exc:
        flash(request, "error", exc.message)
    else:
        done = {"grant": "granted", "deny": "denied", "revoke": "revoked"}[decision]
        flash(request, "ok", f"Approval #{approval_id} {done}.")
    return redirect(request, "approvals")


@router.get("/audit", name="audit")
async def audit_page(request: Request, action: str = "", who: str = "") -> HTMLResponse:
    """The audit log, newest first, with the result of verifying the whole chain."""
    ui = dashboard(request)
    actor = await ui.actor(request)
    if actor.role not in ("privacy", "admin"):
        raise PermissionDenied(f"the audit log is for the privacy team and admins; {actor.name} "
                               f"has role {actor.role!r}")
    store = ui.project.store

    def gather() -> dict[str, Any]:
        return {"verification": audit.verify(store),
                "events": audit.list_events(store, limit=AUDIT_PAGE, action=action or None,
                                            actor=who or None)}

    data = await anyio.to_thread.run_sync(gather)
    return ui.render(request, "audit.html.j2", actor, action=action, who=who, **data)
