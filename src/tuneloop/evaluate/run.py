"""`evaluate(...)`: run variants over a dataset version's test split, score, compare, gate, report.

    result = evaluate(project, actor, variants=["base", "base-rag"], dataset="support")
    result.summary["per_variant"]["base"]["quality"]["rouge_l"]
    result.report_paths["html"]

Every output is stored (`eval_outputs`) with its timings as soon as its variant finishes, and the
run row (`eval_runs`) records status, summary and where the report is, so `tuneloop eval show`
and `tuneloop eval compare` work from the store alone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from tuneloop.config import MetricConfig
from tuneloop.errors import ConfigError, NotFound
from tuneloop.evaluate.runner import Example, examples_from_records, run_variant
from tuneloop.evaluate.scoring import score_outputs
from tuneloop.evaluate.summary import Output, summarize
from tuneloop.governance import require
from tuneloop.governance.tiers import Actor, Resource, derived_tier
from tuneloop.store import utcnow
from tuneloop.store.evals import EvalOutput, EvalRun
from tuneloop.variant_protocol import RunnableVariant

if TYPE_CHECKING:
    from tuneloop.project import Project

Progress = Callable[[str, int, int], None]


@dataclass
class EvalResult:
    """What an evaluation produced: the stored run, its figures, outputs and report files."""

    run_id: int
    dataset: str
    variants: list[str]
    summary: dict[str, Any]
    outputs: list[Output] = field(default_factory=list)
    report_paths: dict[str, Path] = field(default_factory=dict)
    status: str = "completed"
    created_at: dt.datetime | None = None

    @property
    def per_variant(self) -> dict[str, Any]:
        return self.summary.get("per_variant", {})

    @property
    def comparisons(self) -> list[dict[str, Any]]:
        return self.summary.get("comparisons", [])

    def failed_gates(self, variants: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Required gates that failed, for the given variants (all when None)."""
        names = self.variants if variants is None else list(variants)
        return [g for v in names for g in self.per_variant.get(v, {}).get("gates", [])
                if g["required"] and g["status"] == "fail"]


def evaluate(project: Project, actor: Actor, variants: Sequence[str] | None = None,
             dataset: str | None = None, *, split: str = "test", limit: int | None = None,
             concurrency: int | None = None, report: bool = True,
             progress: Progress | None = None) -> EvalResult:
    """Evaluate variants (names from `tuneloop.yaml`; all when None) on a dataset version.

    `dataset` is "name" or "name@id" (default: the first dataset of the config). Using a Tier 2
    dataset or variant needs a live `evaluate` approval (checked through the governance gate).
    """
    from tuneloop.data.versions import get_version
    from tuneloop.variants import get_variant

    config = project.config
    if dataset is None:
        if not config.datasets:
            raise ConfigError("tuneloop.yaml: datasets: no dataset to evaluate on",
                              hint="declare one under `datasets:` or pass --dataset NAME@VERSION")
        dataset = config.datasets[0].name
    version = get_version(project, dataset)
    names = list(variants) if variants else [v.name for v in config.variants]
    if not names:
        raise ConfigError("tuneloop.yaml: variants: no variant to evaluate",
                          hint="declare variants under `variants:`")
    runnable = [get_variant(project, n) for n in names]
    ds_config = config.dataset(version.name)
    slice_field = ds_config.slice_field if ds_config and ds_config.slice_field else None
    records = list(version.iter_split(split))
    if slice_field is None and any("category" in (r.get("metadata") or {}) for r in records):
        slice_field = "category"  # the bundled example's and most datasets' natural slice
    if limit:
        records = records[:limit]
    examples = examples_from_records(records, path=version.split_path(split),
                                     slice_field=slice_field)
    return evaluate_examples(project, actor, runnable, examples,
                             dataset_ref=f"{version.name}@{version.id}",
                             resources=[version.resource], split=split,
                             concurrency=concurrency, slice_field=slice_field, report=report,
                             progress=progress)


def evaluate_examples(project: Project, actor: Actor, variants: Sequence[RunnableVariant],
                      examples: Sequence[Example], *, dataset_ref: str,
                      resources: Sequence[Resource], split: str = "test",
                      concurrency: int | None = None, slice_field: str | None = None,
                      report: bool = True, progress: Progress | None = None) -> EvalResult:
    """Evaluate runnable variants on prepared examples (the part of `evaluate` after loading).

    `resources` are the governed things the examples come from; they and every variant's
    resource go through `require(..., "evaluate", ...)` before anything runs.
    """
    if not examples:
        raise NotFound(f"dataset {dataset_ref} has no examples in its {split!r} split",
                       hint="rebuild the dataset with a non-zero test share")
    concurrency = concurrency or project.config.latency.concurrency
    governed = [*resources, *(v.resource for v in variants if hasattr(v, "resource"))]
    approvals = require(project.store, actor, "evaluate", governed,
                        purpose=f"evaluate {', '.join(v.name for v in variants)} on {dataset_ref}")
    tier = derived_tier([r.tier for r in governed])
    names = [v.name for v in variants]
    with project.store.session() as session:
        row = EvalRun(actor=actor.name, dataset_version=dataset_ref, split=split, variants=names,
                      concurrency=concurrency, tier=tier, approvals=approvals)
        session.add(row)
        session.flush()
        run_id = row.id
    try:
        outputs, retrieved, wall = _answer(project, actor, run_id, variants, examples,
                                           concurrency, progress)
        summary, notes = _score(project, run_id, variants, examples, outputs, retrieved, wall,
                                concurrency=concurrency, slice_field=slice_field,
                                progress=progress)
        summary.update({"run_id": run_id, "dataset": dataset_ref, "split": split, "tier": tier,
                        "notes": notes})
        result = EvalResult(run_id, dataset_ref, names, summary, outputs, created_at=utcnow())
        if report:
            from tuneloop.evaluate.report import write_report

            result.report_paths = write_report(result, project.artifacts_dir / "evals"
                                                / f"run-{run_id}")
    except BaseException as exc:
        _finish_run(project, run_id, error=f"{type(exc).__name__}: {exc}")
        raise
    _finish_run(project, run_id, result=result)
    return result


def _answer(project: Project, actor: Actor, run_id: int, variants: Sequence[RunnableVariant],
            examples: Sequence[Example], concurrency: int, progress: Progress | None,
            ) -> tuple[list[Output], dict[tuple[str, str], list[dict[str, Any]]],
                       dict[str, float]]:
    """Every variant answers every example (one variant after another); the answers are
    stored as each variant finishes. Returns the outputs, the chunks each answer was given by
    (variant, example id), and each variant's wall time."""
    outputs: list[Output] = []
    retrieved: dict[tuple[str, str], list[dict[str, Any]]] = {}
    wall: dict[str, float] = {}
    for variant in variants:
        outs, hits, wall[variant.name] = run_variant(variant, examples, actor,
                                                     concurrency=concurrency,
                                                     progress=progress)
        retrieved.update({(variant.name, rid): h for rid, h in hits.items()})
        _store_outputs(project, run_id, outs)
        outputs.extend(outs)
    return outputs, retrieved, wall


def _score(project: Project, run_id: int, variants: Sequence[RunnableVariant],
           examples: Sequence[Example], outputs: list[Output],
           retrieved: dict[tuple[str, str], list[dict[str, Any]]], wall: dict[str, float], *,
           concurrency: int, slice_field: str | None,
           progress: Progress | None) -> tuple[dict[str, Any], list[str]]:
    """Score the outputs with the project's metrics (and the grounding diagnostics), store the
    scores, and summarise them per variant, with comparisons and gates; returns the summary
    and the scoring notes."""
    config = project.config
    if progress:
        progress("scoring", 0, len(config.metrics))
    metrics = with_diagnostics(config.metrics, examples, variants)
    notes = score_outputs(outputs, {e.id: e for e in examples}, metrics, task=config.task,
                          project=project, retrieved=retrieved,
                          retrieval_enabled={v.name: bool(v.uses_retrieval) for v in variants})
    _store_scores(project, run_id, outputs)
    summary = summarize(outputs, [v.name for v in variants], metrics, config.latency,
                        concurrency=concurrency, wall_s=wall, slice_field=slice_field)
    return summary, notes


def _finish_run(project: Project, run_id: int, *, result: EvalResult | None = None,
                error: str = "") -> None:
    """Mark the stored run completed with its summary and report folder, or failed."""
    with project.store.session() as session:
        row = session.get(EvalRun, run_id)
        if row is None:
            return
        if result is None:
            row.status = "failed"
            row.error = error
        else:
            row.status = "completed"
            row.summary = _json_safe(result.summary)
            row.report_dir = (str(result.report_paths["html"].parent) if result.report_paths
                              else "")
        row.finished_at = utcnow()


def with_diagnostics(metrics: Sequence[MetricConfig], examples: Sequence[Example],
                     variants: Sequence[RunnableVariant]) -> list[MetricConfig]:
    """The project's metrics plus, when a RAG variant answers examples that list key facts,
    `key_facts` and `context_key_facts` as ungated diagnostics (if not configured already):
    side by side they say whether retrieval or generation loses an answer."""
    out = list(metrics)
    has_facts = any((e.record.get("metadata") or {}).get("key_facts") for e in examples)
    if not has_facts or not any(v.uses_retrieval for v in variants):
        return out
    names = {m.name for m in out}
    for name in ("key_facts", "context_key_facts"):
        if name not in names:
            out.append(MetricConfig(name=name, required=False))
    return out


def _store_outputs(project: Project, run_id: int, outputs: Sequence[Output]) -> None:
    with project.store.session() as session:
        for out in outputs:
            session.add(EvalOutput(
                run_id=run_id, variant=out.variant, record_id=out.record_id, slice=out.slice,
                prompt=out.prompt, reference=out.reference, output=out.output,
                finish_reason=out.finish_reason, error=out.error, ttft_s=out.ttft_s,
                total_s=out.total_s, prompt_tokens=out.prompt_tokens,
                completion_tokens=out.completion_tokens, scores={}, citations=out.citations,
                chunk_ids=out.chunk_ids))


def _store_scores(project: Project, run_id: int, outputs: Sequence[Output]) -> None:
    by_key = {(o.variant, o.record_id): o for o in outputs}
    with project.store.session() as session:
        for row in session.scalars(select(EvalOutput).where(EvalOutput.run_id == run_id)):
            out = by_key.get((row.variant, row.record_id))
            if out is not None:
                row.scores = dict(out.scores)


def _json_safe(value: Any) -> Any:
    """NaN and infinities become None: JSON columns (PostgreSQL's especially) reject them."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def load_run(project: Project, run_id: int, *, with_outputs: bool = True) -> EvalResult:
    """A stored run with its summary and (optionally) every output."""
    with project.store.session(write=False) as session:
        row = session.get(EvalRun, run_id)
        if row is None:
            raise NotFound(f"no evaluation run {run_id}",
                           hint="`tuneloop eval list` shows the stored runs")
        outputs = []
        if with_outputs:
            for o in session.scalars(select(EvalOutput).where(EvalOutput.run_id == run_id)
                                     .order_by(EvalOutput.id)):
                outputs.append(Output(
                    variant=o.variant, record_id=o.record_id, output=o.output,
                    reference=o.reference, prompt=list(o.prompt or []), slice=o.slice,
                    ttft_s=o.ttft_s, total_s=o.total_s, prompt_tokens=o.prompt_tokens,
                    completion_tokens=o.completion_tokens, finish_reason=o.finish_reason,
                    error=o.error, scores=dict(o.scores or {}), citations=list(o.citations or []),
                    chunk_ids=list(o.chunk_ids or [])))
        paths = {}
        if row.report_dir:
            base = Path(row.report_dir)
            paths = {"html": base / "report.html", "markdown": base / "summary.md",
                     "json": base / "summary.json"}
        return EvalResult(row.id, row.dataset_version, list(row.variants), dict(row.summary or {}),
                          outputs, paths, row.status, row.created_at)


def list_runs(project: Project, limit: int = 20) -> list[EvalRun]:
    """The most recent evaluation runs, newest first."""
    with project.store.session(write=False) as session:
        return list(session.scalars(select(EvalRun).order_by(EvalRun.id.desc()).limit(limit)))


def compare_runs(project: Project, first: int, second: int, *, resamples: int = 10_000
                 ) -> dict[str, Any]:
    """Compare the variants of two stored runs example by example (paired on record ids).

    Variants are named `NAME@RUN` so the same variant measured twice (before and after a change)
    is compared with itself.
    """
    runs = [load_run(project, first), load_run(project, second)]
    outputs: list[Output] = []
    names: list[str] = []
    for run in runs:
        for variant in run.variants:
            names.append(f"{variant}@{run.run_id}")
        for out in run.outputs:
            renamed = Output(**{**out.__dict__, "variant": f"{out.variant}@{run.run_id}"})
            outputs.append(renamed)
    config = project.config
    return summarize(outputs, names, config.metrics, config.latency,
                     concurrency=runs[0].summary.get("concurrency", 1), resamples=resamples)
