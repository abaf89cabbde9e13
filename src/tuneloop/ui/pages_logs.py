"""Request log and Review queue pages."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from tuneloop.errors import ApprovalRequired, TuneloopError
from tuneloop.store.flywheel import REVIEW_STATUSES
from tuneloop.ui import logs_data
from tuneloop.ui import session as sess
from tuneloop.ui._common import dashboard, flash, redirect, require_internal
from tuneloop.ui.logs_data import PAGE_SIZE

router = APIRouter()


@router.get("/requests", name="requests")
async def requests_page(request: Request) -> HTMLResponse:
    """The request log with filters (variant, audience, time, rating, status)."""
    ui = dashboard(request)
    actor = await ui.actor(request)
    store = ui.project.store
    params = dict(request.query_params)
    try:
        filters = logs_data.LogFilter.parse(params)
        error = None
    except TuneloopError as exc:
        filters, error = logs_data.LogFilter(), exc.message

    def gather() -> dict[str, object]:
        return {"rows": logs_data.list_requests(store, actor, filters),
                "variants": logs_data.variant_names(store)}

    data = await anyio.to_thread.run_sync(gather)
    return ui.render(request, "requests.html.j2", actor, filters=filters, error=error,
                     status_code=400 if error else 200, **data)


@router.get("/requests/{request_id}", name="request_detail")
async def request_detail(request: Request, request_id: str) -> HTMLResponse:
    """A request's full record: prompt, output, retrieved chunks, timings, feedback.

    Tier 2 text is filled in only when the gate allows this principal to `view` it.
    """
    ui = dashboard(request)
    actor = await ui.actor(request)
    record = await anyio.to_thread.run_sync(logs_data.get_request, ui.project.store, actor,
                                            request_id)
    return ui.render(request, "request.html.j2", actor, record=record, r=record.row)


@router.get("/review", name="review")
async def review(request: Request, status: str = "open") -> HTMLResponse:
    """The flywheel's review queue: answers rated down without a correction."""
    from tuneloop.flywheel import review as queue

    ui = dashboard(request)
    actor = await ui.actor(request)
    require_internal(actor)
    wanted = None if status == "all" else status
    if wanted is not None and wanted not in REVIEW_STATUSES:
        raise HTTPException(400, f"unknown review status {status!r}; use all or one of "
                                 f"{', '.join(REVIEW_STATUSES)}")
    items = await anyio.to_thread.run_sync(
        lambda: queue.list_items(ui.project, status=wanted, limit=PAGE_SIZE))
    return ui.render(request, "review.html.j2", actor, items=items, status=status,
                     statuses=("all", *REVIEW_STATUSES))


@router.get("/review/{item_id}", name="review_item")
async def review_item(request: Request, item_id: int) -> HTMLResponse:
    """One review item: the conversation, the feedback, the history, and the decision form.

    Reading it is a `view` of the request log (the flywheel's `show` asks the gate); without
    approval the page says so and shows no text.
    """
    from tuneloop.flywheel import review as queue

    ui = dashboard(request)
    actor = await ui.actor(request)
    require_internal(actor)
    try:
        view = await anyio.to_thread.run_sync(queue.show, ui.project, actor, item_id)
        withheld = None
    except ApprovalRequired as refused:
        view, withheld = None, refused.message
    item = None if view else await anyio.to_thread.run_sync(logs_data.review_item,
                                                             ui.project.store, item_id)
    return ui.render(request, "review_item.html.j2", actor, view=view, withheld=withheld,
                     item=item, item_id=item_id)


@router.post("/review/{item_id}/{decision}", name="review_decide")
async def review_decide(request: Request, item_id: int, decision: str) -> Response:
    """Accept, edit (with the corrected answer) or reject a review item."""
    from tuneloop.flywheel import review as queue

    form = await sess.check_csrf(request)
    ui = dashboard(request)
    actor = await ui.actor(request)
    try:
        await anyio.to_thread.run_sync(lambda: queue.decide(
            ui.project, actor, item_id, decision, answer=form.get("answer") or None,
            note=form.get("note", "")))
    except TuneloopError as exc:
        flash(request, "error", f"Review item #{item_id}: {exc.message}")
    else:
        flash(request, "ok", f"Review item #{item_id}: {queue.DECISIONS[decision]}.")
    return redirect(request, "review_item", item_id=item_id)
