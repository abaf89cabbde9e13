"""Request log and Review queue pages."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tuneloop.errors import TuneloopError
from tuneloop.ui import logs_data
from tuneloop.ui.app import dashboard, require_internal

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
async def review(request: Request) -> HTMLResponse:
    """Requests whose feedback asks for a reviewer: corrections and low ratings."""
    ui = dashboard(request)
    actor = await ui.actor(request)
    require_internal(actor)
    items = await anyio.to_thread.run_sync(logs_data.review_queue, ui.project.store, actor)
    return ui.render(request, "review.html.j2", actor, items=items)
