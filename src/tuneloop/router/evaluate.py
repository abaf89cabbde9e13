"""Evaluate routing from outputs an evaluation run already stored: nothing is generated again.

For each test example of the run, the router predicts its slice from the user's message; the
routed combination answers with the output the mapped variant gave in that run (the fallback
below `min_confidence`), at that variant's latency plus the router's own measured time. It is
compared with every single variant by paired bootstrap (`evaluate.compare`) on the primary metric
and on p95 latency. The gate: the 95% interval of (routed - best single variant) on the primary
metric must lie above `-margin`, i.e. show the routed combination is not worse.

The result is stored as an evaluation run of the routed variant (`eval_runs`, with
`summary.json` and an HTML report), so rollout reads its gate like any variant's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuneloop.errors import DataError, NotFound
from tuneloop.evaluate.compare import RESAMPLES, compare_pair
from tuneloop.evaluate.summary import Output
from tuneloop.governance import require
from tuneloop.governance.tiers import Actor
from tuneloop.project import Project
from tuneloop.router.model import QueryRouter, message_text
from tuneloop.router.registry import get_router
from tuneloop.router.routed import DEFAULT_MIN_CONFIDENCE, RoutedVariant, define

DEFAULT_MARGIN = 0.02  # on the primary metric: "not worse" means the CI stays above -0.02
Progress = Callable[[str, int, int], Any]


@dataclass
class RoutedEvaluation:
    """What `evaluate_routed` found; `summary` is what summary.json and `eval_runs` hold."""

    run_id: int
    routed: RoutedVariant
    summary: dict[str, Any]
    report_paths: dict[str, Any]

    @property
    def passed(self) -> bool:
        return bool(self.summary["per_variant"][self.routed.name]["passed"])

    @property
    def gate(self) -> dict[str, Any]:
        return dict(self.summary["gate"])


def latest_completed_run(project: Project) -> int:
    """The newest completed evaluation run of single variants."""
    from sqlalchemy import select

    from tuneloop.store.evals import EvalRun

    with project.store.session(write=False) as session:
        for run in session.scalars(select(EvalRun).where(EvalRun.status == "completed")
                                   .order_by(EvalRun.id.desc()).limit(200)):
            if (run.summary or {}).get("kind") != "routed":
                return run.id
    raise NotFound("no completed evaluation run to route from",
                   hint="run `tuneloop eval` on the variants first")


def predict_timed(router: QueryRouter, texts: list[str],
                  progress: Progress | None = None) -> tuple[list[Any], list[float]]:
    """Predictions one message at a time, as a request would, with each one's time in ms."""
    predictions, times = [], []
    for i, text in enumerate(texts, start=1):
        started = time.perf_counter()
        predictions.extend(router.predict([text]))
        times.append((time.perf_counter() - started) * 1000)
        if progress is not None:
            progress("routing test messages", i, len(texts))
    return predictions, times


def train_overlap(project: Project, record: Any, ids: set[str]) -> int:
    """How many of these test examples the router saw in training (0 unless it was trained on
    another dataset version whose train split holds them: its accuracy would be optimistic)."""
    from tuneloop.data.versions import get_version

    seen = {str(r.get("id")) for r in get_version(project, record.dataset_version)
            .iter_split("train")}
    return len(ids & seen)


def confusion(true: list[str], predicted: list[str], labels: list[str]) -> dict[str, Any]:
    """Accuracy, the confusion matrix (rows: true slice) and each slice's recall."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for t, p in zip(true, predicted, strict=True):
        matrix[index[t], index[p]] += 1
    recall = {label: (float(matrix[i, i] / matrix[i].sum()) if matrix[i].sum() else None)
              for label, i in index.items()}
    accuracy = float(np.trace(matrix) / max(1, matrix.sum()))
    return {"labels": labels, "matrix": matrix.tolist(), "accuracy": accuracy,
            "recall": recall, "n": int(matrix.sum())}


def _examples(outputs: list[Output], variants: list[str]) -> dict[str, dict[str, Output]]:
    """record id -> variant -> output, for the examples every variant answered."""
    by_id: dict[str, dict[str, Output]] = {}
    for out in outputs:
        by_id.setdefault(out.record_id, {})[out.variant] = out
    return {rid: rows for rid, rows in sorted(by_id.items())
            if all(v in rows for v in variants) and any(r.slice for r in rows.values())}


def _score(out: Output, metric: str) -> float:
    value = out.scores.get(metric)
    return float("nan") if value is None else float(value)


def _latency(out: Output, extra_ms: float = 0.0) -> float:
    return float("nan") if out.error else out.total_s * 1000 + extra_ms


def routed_rows(examples: dict[str, dict[str, Output]], routed: RoutedVariant,
                predictions: list[Any], router_ms: list[float]) -> list[dict[str, Any]]:
    """One row per example: its true and predicted slice, the variant chosen and its output."""
    rows = []
    for (rid, outs), prediction, ms in zip(examples.items(), predictions, router_ms,
                                           strict=True):
        choice = routed.choose(prediction)
        answer = outs[choice.variant]
        true = next(o.slice for o in outs.values() if o.slice)
        rows.append({"record_id": rid, "slice": true, "predicted": prediction.slice,
                     "confidence": prediction.confidence, "variant": choice.variant,
                     "fallback": choice.fallback, "router_ms": ms, "output": answer})
    return rows


def compare_with_singles(examples: dict[str, dict[str, Output]], rows: list[dict[str, Any]],
                         variants: list[str], metric: str, higher_is_better: bool,
                         name: str, resamples: int) -> list[dict[str, Any]]:
    """Routed (B) against each single variant (A): primary metric (mean) and p95 latency."""
    routed_q = [_score(r["output"], metric) for r in rows]
    routed_ms = [_latency(r["output"], r["router_ms"]) for r in rows]
    out = []
    for variant in variants:
        single = [examples[r["record_id"]][variant] for r in rows]
        out.append(compare_pair(metric, variant, name, [_score(o, metric) for o in single],
                                routed_q, higher_is_better=higher_is_better,
                                resamples=resamples).to_dict())
        out.append(compare_pair("total_ms_p95", variant, name, [_latency(o) for o in single],
                                routed_ms, higher_is_better=False, stat="p95",
                                resamples=resamples).to_dict())
    return out


def non_inferiority(comparison: dict[str, Any], margin: float) -> dict[str, Any]:
    """The routing gate: the interval of routed - best shows it is not worse by `margin`."""
    if comparison["higher_is_better"]:
        ok = bool(np.isfinite(comparison["low"]) and comparison["low"] > -margin)
        rule = f"lower bound of the 95% CI > -{margin:g}"
    else:
        ok = bool(np.isfinite(comparison["high"]) and comparison["high"] < margin)
        rule = f"upper bound of the 95% CI < {margin:g}"
    return {"gate": f"not worse than {comparison['a']}", "metric": comparison["metric"],
            "required": True, "status": "pass" if ok else "fail", "rule": rule,
            "diff": comparison["diff"], "low": comparison["low"], "high": comparison["high"],
            "best_single": comparison["a"], "margin": margin}


def best_single(examples: dict[str, dict[str, Output]], variants: list[str], metric: str,
                higher_is_better: bool) -> str:
    """The single variant with the best primary metric on these examples."""
    means = {v: float(np.nanmean([_score(rows[v], metric) for rows in examples.values()]
                                 or [np.nan])) for v in variants}
    scored = {v: m for v, m in means.items() if np.isfinite(m)}
    if not scored:
        raise DataError(f"no variant of the run has scores for {metric!r}")
    pick = max if higher_is_better else min
    return pick(scored, key=lambda v: scored[v])


def evaluate_routed(project: Project, actor: Actor, *, router: str, run_id: int | None = None,
                    name: str | None = None, mapping: dict[str, str] | None = None,
                    fallback: str | None = None,
                    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                    margin: float = DEFAULT_MARGIN, resamples: int = RESAMPLES,
                    report: bool = True, progress: Progress | None = None) -> RoutedEvaluation:
    """Define a routed variant from an evaluation run and evaluate it on the run's outputs.

    `mapping` defaults to the run's `best_per_slice`, `fallback` to its best single variant.
    Reading the run's examples and using the router are uses of their data (`evaluate`).
    """
    from tuneloop.data.versions import get_version
    from tuneloop.evaluate.run import load_run

    run_id = run_id or latest_completed_run(project)
    run = load_run(project, run_id)
    record = get_router(project, router)
    version = get_version(project, run.dataset)
    approvals = require(project.store, actor, "evaluate", [version.resource, record.resource],
                        purpose=f"evaluate routing by {record.ref} on eval run #{run_id}")
    variants = list(run.variants)
    metric = run.summary.get("primary_metric")
    if not metric:
        raise DataError(f"eval run #{run_id} has no primary metric to compare on")
    higher = next((m.get("higher_is_better", True) for m in run.summary.get("metrics", [])
                   if m.get("name") == metric), True)
    examples = _examples(run.outputs, variants)
    if len(examples) < 2:
        raise DataError(f"eval run #{run_id} has {len(examples)} examples answered by every "
                        "variant with a slice; routing needs a sliced test split",
                        hint="evaluate on a dataset with a slice_field")
    best = best_single(examples, variants, metric, higher)
    chosen_map = dict(mapping if mapping is not None else {
        s: v for s, v in (run.summary.get("best_per_slice") or {}).items()
        if s in record.labels and v in variants})
    routed = define(project, actor, name or f"{record.name.removesuffix('-router')}-routed",
                    router=record.ref, mapping=chosen_map, fallback=fallback or best,
                    min_confidence=min_confidence,
                    source=f"eval run #{run_id}" if mapping is None else "by hand")
    overlap = train_overlap(project, record, set(examples))
    texts = [message_text(rows[variants[0]].prompt) for rows in examples.values()]
    predictions, router_ms = predict_timed(record.load(), texts, progress)
    rows = routed_rows(examples, routed, predictions, router_ms)
    comparisons = compare_with_singles(examples, rows, variants, metric, higher, routed.name,
                                       resamples)
    gate = non_inferiority(next(c for c in comparisons
                                if c["a"] == best and c["metric"] == metric), margin)
    summary = _summary(project, run, record, routed, examples, rows, comparisons, gate, best,
                       metric)
    summary["tier"] = max(version.tier, record.tier)
    summary["router"]["train_overlap"] = overlap  # test examples the router was trained on
    new_id = _store(project, actor, run.dataset, routed.name, summary, approvals)
    summary["run_id"] = new_id
    paths: dict[str, Any] = {}
    if report:
        from tuneloop.router.report import write_routed_report

        paths = write_routed_report(summary, project.artifacts_dir / "evals" / f"run-{new_id}")
    _finish(project, new_id, summary, paths)
    return RoutedEvaluation(new_id, routed, summary, paths)


def _routed_variant_summary(project: Project, name: str, rows: list[dict[str, Any]],
                            metric_names: list[str], gate: dict[str, Any],
                            concurrency: int) -> dict[str, Any]:
    """The routed variant's entry in `per_variant`: quality, latency and every gate."""
    from tuneloop.evaluate import gates as gates_mod
    from tuneloop.evaluate import latency as latency_mod

    outs = [r["output"] for r in rows]
    ok = [r for r in rows if not r["output"].error]
    quality = {}
    for m in metric_names:
        values = [o.scores.get(m) for o in outs if o.scores.get(m) is not None]
        quality[m] = float(np.mean(values)) if values else None
    latency = latency_mod.summarize(
        [r["output"].ttft_s + r["router_ms"] / 1000 for r in ok],
        [r["output"].total_s + r["router_ms"] / 1000 for r in ok],
        [r["output"].prompt_tokens for r in ok], [r["output"].completion_tokens for r in ok],
        concurrency=concurrency)
    results = [g.to_dict() for g in gates_mod.check_gates(
        name, quality, latency, project.config.metrics, project.config.latency)]
    results.append(gate)
    passed = not any(g.get("required") and g.get("status") == "fail" for g in results)
    return {"n": len(rows), "errors": len(rows) - len(ok), "quality": quality,
            "scored": {m: sum(1 for o in outs if o.scores.get(m) is not None)
                       for m in metric_names},
            "latency": latency, "gates": results, "passed": passed}


def _per_slice(rows: list[dict[str, Any]], examples: dict[str, dict[str, Output]],
               best: str, metric: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in sorted({r["slice"] for r in rows}):
        mine = [r for r in rows if r["slice"] == name]
        used: dict[str, int] = {}
        for r in mine:
            used[r["variant"]] = used.get(r["variant"], 0) + 1
        out[name] = {
            "n": len(mine),
            "routed": float(np.nanmean([_score(r["output"], metric) for r in mine])),
            "best_single": float(np.nanmean([_score(examples[r["record_id"]][best], metric)
                                             for r in mine])),
            "router_recall": float(np.mean([r["predicted"] == name for r in mine])),
            "variants_used": used}
    return out


def _summary(project: Project, run: Any, record: Any, routed: RoutedVariant,
             examples: dict[str, dict[str, Output]], rows: list[dict[str, Any]],
             comparisons: list[dict[str, Any]], gate: dict[str, Any], best: str,
             metric: str) -> dict[str, Any]:
    true = [r["slice"] for r in rows]
    labels = sorted(set(record.labels) | set(true))
    metric_names = [m["name"] for m in run.summary.get("metrics", [])]
    concurrency = int(run.summary.get("concurrency") or 1)
    per_variant = {routed.name: _routed_variant_summary(project, routed.name, rows,
                                                        metric_names, gate, concurrency)}
    ms = [r["router_ms"] for r in rows]
    return {
        "kind": "routed", "source_run": run.run_id, "dataset": run.dataset, "split": "test",
        "variants": [routed.name], "singles": list(run.variants),
        "metrics": run.summary.get("metrics", []), "primary_metric": metric,
        "slo": run.summary.get("slo", {}), "concurrency": concurrency,
        "slice_field": record.slice_field or run.summary.get("slice_field"),
        "routed": {"name": routed.name, "router": record.ref, "mapping": routed.mapping,
                   "fallback": routed.fallback, "min_confidence": routed.min_confidence},
        "router": {**confusion(true, [r["predicted"] for r in rows], labels),
                   "ms_p50": float(np.percentile(ms, 50)), "ms_p95": float(np.percentile(ms, 95)),
                   "fallbacks": sum(1 for r in rows if r["fallback"])},
        "per_variant": per_variant, "best_single": best, "gate": gate,
        "comparisons": comparisons, "per_slice": _per_slice(rows, examples, best, metric),
        "caveat": "the slice map comes from best_per_slice of the same test examples, so the "
                  "routed figure is optimistic by the selection; confirm online (internal first)",
        "examples": [{k: v for k, v in r.items() if k != "output"} for r in rows],
    }


def _store(project: Project, actor: Actor, dataset: str, name: str, summary: dict[str, Any],
           approvals: list[int]) -> int:
    from tuneloop.store.evals import EvalRun

    with project.store.session() as session:
        row = EvalRun(actor=actor.name, dataset_version=dataset, split="test", variants=[name],
                      concurrency=summary["concurrency"], tier=summary["tier"],
                      approvals=approvals, status="running")
        session.add(row)
        session.flush()
        return int(row.id)


def _finish(project: Project, run_id: int, summary: dict[str, Any],
            paths: dict[str, Any]) -> None:
    from tuneloop.evaluate.report import json_safe
    from tuneloop.store.evals import EvalRun
    from tuneloop.store.models import utcnow

    with project.store.session() as session:
        row = session.get(EvalRun, run_id)
        assert row is not None
        row.summary = json_safe(summary)
        row.status = "completed"
        row.report_dir = str(paths["html"].parent) if paths else ""
        row.finished_at = utcnow()
