"""What the Overview and Evaluations pages show, read from the other stages' tables.

Each stage's tables land on their own schedule; a part whose module is not there yet shows an
empty state instead of failing the page.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from tuneloop.engines.registry import list_models
from tuneloop.errors import NotFound, TuneloopError
from tuneloop.governance.tiers import Actor, Resource
from tuneloop.project import Project
from tuneloop.store.datasets import DatasetVersionRow
from tuneloop.store.evals import EvalOutput, EvalRun
from tuneloop.ui.visibility import may_view

#: how many evaluation runs to scan for each variant's latest result
EVAL_SCAN = 200
CHART_CACHE_SIZE = 16
#: bootstrap resamples when comparing two runs on a page (the CLI uses more)
COMPARE_RESAMPLES = 2000
_CHART_CACHE: OrderedDict[tuple[Any, ...], dict[str, str]] = OrderedDict()
_CHART_LOCK = threading.Lock()


@dataclass
class VariantState:
    """One variant of `tuneloop.yaml` with its tier, rollout stages and latest evaluation."""

    name: str
    model: str
    retrieval: bool
    tier: int | None
    stages: list[tuple[str, str, float]] = field(default_factory=list)  # alias, stage, percent
    last_eval: int | None = None
    passed: bool | None = None
    failed_gates: list[str] = field(default_factory=list)
    retraining: str = ""  # why it is kept from the public (derived from erased data), if so


def datasets(project: Project) -> list[DatasetVersionRow]:
    """Every dataset version, newest first."""
    with project.store.session(write=False) as session:
        return list(session.scalars(select(DatasetVersionRow)
                                    .order_by(DatasetVersionRow.created_at.desc())))


def models(project: Project) -> list[dict[str, Any]]:
    """Registered models with their lineage (the datasets and the run that made them)."""
    out = []
    for m in list_models(project):
        lineage = m.lineage or {}
        out.append({"name": m.name, "kind": m.kind, "tier": m.tier, "base": m.base_model or "",
                    "datasets": lineage.get("dataset_versions") or lineage.get("datasets") or [],
                    "run": lineage.get("run_id") or lineage.get("run"),
                    "created_at": m.created_at})
    return out


def _variant_tier(project: Project, name: str) -> int | None:
    from tuneloop.variants import get_variant

    try:
        return get_variant(project, name).tier
    except TuneloopError:
        return None  # its model is not registered (yet): the page says "unknown"


def variants(project: Project) -> list[VariantState]:
    """The config's variants with rollout stages and the gate status of their last evaluation."""
    from tuneloop import rollout

    states = {v.name: VariantState(v.name, v.model, v.retrieval.enabled,
                                   _variant_tier(project, v.name))
              for v in project.config.variants}
    for alias in rollout.aliases(project):
        for entry in rollout.state(project, alias).entries:
            state = states.setdefault(entry.variant,
                                      VariantState(entry.variant, "?", False, None))
            state.stages.append((alias, entry.stage, entry.percent))
    from tuneloop.flywheel.marks import variant_mark

    for state in states.values():
        mark = variant_mark(project, state.name)
        if mark is not None:
            state.retraining = (f"internal only: {mark.kind} {mark.name} derives from data "
                                f"erased by erasure #{mark.erasure_id}; retrain it")
    with project.store.session(write=False) as session:
        runs = session.scalars(select(EvalRun).where(EvalRun.status == "completed")
                               .order_by(EvalRun.id.desc()).limit(EVAL_SCAN))
        for run in runs:
            for name, data in (run.summary or {}).get("per_variant", {}).items():
                found = states.get(name)
                if found is None or found.last_eval is not None:
                    continue
                state = found
                state.last_eval = run.id
                state.passed = bool(data.get("passed"))
                state.failed_gates = [g["gate"] for g in data.get("gates", [])
                                      if g.get("required") and g.get("status") == "fail"]
    return list(states.values())


def eval_runs(project: Project, limit: int = 100) -> list[EvalRun]:
    """The newest evaluation runs first."""
    with project.store.session(write=False) as session:
        return list(session.scalars(select(EvalRun).order_by(EvalRun.id.desc()).limit(limit)))


def eval_run(project: Project, run_id: int) -> EvalRun:
    """One evaluation run; `NotFound` if there is none."""
    with project.store.session(write=False) as session:
        row = session.get(EvalRun, run_id)
        if row is None:
            raise NotFound(f"no evaluation run {run_id}")
        return row


def run_resource(project: Project, run: EvalRun) -> Resource:
    """The dataset version an evaluation's examples came from, as a governed resource."""
    name, _, version_id = run.dataset_version.partition("@")
    roots: frozenset[str] = frozenset()
    with project.store.session(write=False) as session:
        row = session.scalars(select(DatasetVersionRow).where(
            DatasetVersionRow.name == name, DatasetVersionRow.version_id == version_id)).first()
        if row is not None:
            roots = frozenset(row.roots or ())
    # Named as `data.versions` names it, so an approval for `dataset:NAME` covers its runs.
    return Resource("dataset", name or f"eval-run-{run.id}", run.tier, roots)


def run_outputs(project: Project, run_id: int, *, variant: str | None = None,
                slice_name: str | None = None) -> list[EvalOutput]:
    """The stored outputs of a run, optionally of one variant or one slice."""
    with project.store.session(write=False) as session:
        query = select(EvalOutput).where(EvalOutput.run_id == run_id)
        if variant:
            query = query.where(EvalOutput.variant == variant)
        if slice_name:
            query = query.where(EvalOutput.slice == slice_name)
        return list(session.scalars(query.order_by(EvalOutput.record_id, EvalOutput.variant)))


def charts(project: Project, run: EvalRun) -> dict[str, str]:
    """The evaluation report's charts for this run, as inline SVG (matplotlib, server-side).

    A finished run never changes, and drawing takes seconds, so its charts are drawn once.
    """
    key = (str(project.root), project.store.safe_url, run.id, run.created_at, run.finished_at)
    if run.status == "running":
        return _draw(project, run)
    with _CHART_LOCK:
        if key in _CHART_CACHE:
            _CHART_CACHE.move_to_end(key)
            return _CHART_CACHE[key]
    drawn = _draw(project, run)
    with _CHART_LOCK:
        _CHART_CACHE[key] = drawn
        while len(_CHART_CACHE) > CHART_CACHE_SIZE:
            _CHART_CACHE.popitem(last=False)
    return drawn


def _draw(project: Project, run: EvalRun) -> dict[str, str]:
    from tuneloop.evaluate import charts as charts_mod
    from tuneloop.evaluate.run import load_run

    summary = run.summary or {}
    if not summary.get("per_variant"):
        return {}
    if summary.get("kind") == "routed":  # a routed evaluation: no outputs of its own
        from tuneloop.router.report import confusion_svg

        return {"Router confusion matrix": confusion_svg(summary["router"],
                                                         summary.get("slice_field") or "slice"),
                "Routed against each variant": charts_mod.forest(
                    summary.get("comparisons", []), "Routed − single variant", "comparisons")}
    result = load_run(project, run.id)
    return {
        "Quality vs latency": charts_mod.quality_vs_latency(summary),
        "Latency": charts_mod.latency_distributions(summary, result.outputs),
        "Per slice": charts_mod.slice_bars(summary),
        "Comparisons": charts_mod.forest(summary.get("comparisons", []),
                                         "Pairwise differences", "comparisons"),
    }


def example_access(project: Project, actor: Actor, run: EvalRun) -> str | None:
    """None when `actor` may read this run's examples, else why not (Tier 2 without approval)."""
    if run.tier < 2:
        return None
    return may_view(project.store, actor, run_resource(project, run),
                    purpose=f"dashboard: examples of evaluation run {run.id}")


def compare(project: Project, first: int, second: int) -> tuple[dict[str, Any], dict[str, str]]:
    """Two stored runs compared example by example, with the report's charts of the result."""
    from tuneloop.evaluate import charts as charts_mod
    from tuneloop.evaluate.run import compare_runs

    if first == second:
        raise TuneloopError(f"run {first} compared with itself shows nothing; pick two runs")
    summary = compare_runs(project, first, second, resamples=COMPARE_RESAMPLES)
    drawn = {"Quality vs latency": charts_mod.quality_vs_latency(summary),
             "Per slice": charts_mod.slice_bars(summary),
             "Comparisons": charts_mod.forest(summary.get("comparisons", []),
                                              f"Run {second} against run {first}", "comparisons")}
    return summary, drawn
