"""Reading runs back: the list, one run with its metric curves."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from sqlalchemy import select

from tuneloop.errors import NotFound
from tuneloop.store.runs import Run, RunMetric

if TYPE_CHECKING:
    from tuneloop.project import Project


def list_runs(project: Project, *, kind: str | None = None, limit: int = 50) -> list[Run]:
    """The newest runs first (training runs, sweeps and trials; or one `kind`)."""
    with project.store.session(write=False) as session:
        query = select(Run).order_by(Run.id.desc()).limit(limit)
        if kind:
            query = query.where(Run.kind == kind)
        return list(session.execute(query).scalars())


def get_run(project: Project, run_id: int) -> Run:
    """One run, or `NotFound`."""
    with project.store.session(write=False) as session:
        run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"no run {run_id}", hint="`tuneloop runs list` shows the runs")
    return run


def run_metrics(project: Project, run_id: int) -> dict[str, list[tuple[int, float]]]:
    """Every metric of a run as (step, value) pairs in step order, by name."""
    with project.store.session(write=False) as session:
        rows = session.execute(select(RunMetric).where(RunMetric.run_id == run_id)
                               .order_by(RunMetric.step)).scalars()
        curves: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for row in rows:
            curves[row.name].append((row.step, row.value))
    return dict(curves)
