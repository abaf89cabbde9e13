"""Overview and Evaluations pages: the loop's state, runs, comparisons, slices, examples."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from tuneloop.errors import NotFound, TuneloopError
from tuneloop.ui import loop_data
from tuneloop.ui._common import dashboard, require_internal

router = APIRouter()


@router.get("/overview", name="overview")
async def overview(request: Request) -> HTMLResponse:
    """Datasets, models with lineage, variants with rollout stages and their last evaluation."""
    ui = dashboard(request)
    actor = await ui.actor(request)
    require_internal(actor)
    project = ui.project

    def gather() -> dict[str, Any]:
        from tuneloop import rollout
        from tuneloop.flywheel.monitor import monitor

        return {"datasets": loop_data.datasets(project), "models": loop_data.models(project),
                "variants": loop_data.variants(project),
                "rollouts": [rollout.state(project, a) for a in rollout.aliases(project)],
                "slices": monitor(project).slices}

    return ui.render(request, "overview.html.j2", actor, **await anyio.to_thread.run_sync(gather))


@router.get("/evaluations", name="evaluations")
async def evaluations(request: Request) -> HTMLResponse:
    """Every evaluation run, newest first."""
    ui = dashboard(request)
    actor = await ui.actor(request)
    require_internal(actor)
    runs = await anyio.to_thread.run_sync(loop_data.eval_runs, ui.project)
    return ui.render(request, "evaluations.html.j2", actor, runs=runs)


@router.get("/compare", name="compare")
async def compare(request: Request, a: int, b: int) -> HTMLResponse:
    """Two runs side by side, paired on their shared examples (before and after a change)."""
    ui = dashboard(request)
    actor = await ui.actor(request)
    require_internal(actor)
    try:
        summary, charts = await anyio.to_thread.run_sync(loop_data.compare, ui.project, a, b)
    except NotFound:
        raise
    except TuneloopError as exc:
        raise HTTPException(400, exc.message) from None
    return ui.render(request, "compare.html.j2", actor, a=a, b=b, summary=summary, charts=charts)


@router.get("/evaluations/{run_id}", name="evaluation")
async def evaluation(request: Request, run_id: int, variant: str = "",
                     slice: str = "") -> HTMLResponse:
    """One run: per-variant figures and gates, comparisons, charts, slices, examples."""
    ui = dashboard(request)
    actor = await ui.actor(request)
    require_internal(actor)
    project = ui.project

    def gather() -> dict[str, Any]:
        run = loop_data.eval_run(project, run_id)
        withheld = loop_data.example_access(project, actor, run)
        outputs = [] if withheld else loop_data.run_outputs(project, run_id, variant=variant,
                                                            slice_name=slice)
        return {"run": run, "summary": run.summary or {}, "charts": loop_data.charts(project, run),
                "outputs": outputs, "withheld": withheld, "variant": variant, "slice": slice}

    return ui.render(request, "evaluation.html.j2", actor, **await anyio.to_thread.run_sync(gather))


@router.get("/evaluations/{run_id}/examples/{record_id}", name="eval_example")
async def eval_example(request: Request, run_id: int, record_id: str) -> HTMLResponse:
    """One example of a run: the prompt, the reference and every variant's answer and scores."""
    ui = dashboard(request)
    actor = await ui.actor(request)
    require_internal(actor)
    project = ui.project

    def gather() -> dict[str, Any]:
        run = loop_data.eval_run(project, run_id)
        withheld = loop_data.example_access(project, actor, run)
        outputs = [] if withheld else [o for o in loop_data.run_outputs(project, run_id)
                                       if o.record_id == record_id]
        if not withheld and not outputs:
            raise NotFound(f"no example {record_id!r} in evaluation run {run_id}")
        return {"run": run, "record_id": record_id, "outputs": outputs, "withheld": withheld}

    return ui.render(request, "eval_example.html.j2", actor,
                     **await anyio.to_thread.run_sync(gather))
