"""From stored outputs to the figures a team decides on: per-variant quality and latency, gates,
pairwise comparisons with confidence intervals, and the same per slice.

Everything here is computed from `Output` rows alone, so a stored run can be re-analysed (and two
runs compared) without running any model again.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tuneloop.config import LatencyConfig, MetricConfig
from tuneloop.evaluate import gates as gates_mod
from tuneloop.evaluate import latency as latency_mod
from tuneloop.evaluate.compare import RESAMPLES, compare_pair


def _rate(row: Output) -> float:
    decode = row.total_s - row.ttft_s
    return row.completion_tokens / decode if decode > 0 and row.completion_tokens else float("nan")


# Speed compared example by example: the p95 of what users waited, and the median decode rate.
# (name, value of one output, statistic, higher is better)
LATENCY_METRICS = (
    ("ttft_ms_p95", lambda r: r.ttft_s * 1000, "p95", False),
    ("total_ms_p95", lambda r: r.total_s * 1000, "p95", False),
    ("tokens_per_s", _rate, "p50", True),
)


@dataclass
class Output:
    """One variant's answer to one example, with timings, tokens and scores."""

    variant: str
    record_id: str
    output: str
    reference: str
    prompt: list[dict[str, Any]] = field(default_factory=list)
    slice: str | None = None
    ttft_s: float = 0.0
    total_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = ""
    error: str = ""
    scores: dict[str, float | None] = field(default_factory=dict)
    citations: list[Any] = field(default_factory=list)
    chunk_ids: list[Any] = field(default_factory=list)

    @property
    def question(self) -> str:
        """The last user message of the example."""
        for message in reversed(self.prompt):
            if message.get("role") == "user":
                return str(message.get("content") or "")
        return ""


def _mean(values: Sequence[float | None]) -> float | None:
    clean = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(clean)) if clean else None


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def grounding_of(rows: Sequence[Output]) -> dict[str, Any] | None:
    """Where a RAG variant's answers are lost: the share of key facts its sources held
    (`context_holds_key`), the share its answers stated (`answer_states_key`), their ratio, and
    how often an answer stated a fact when its sources held it (`answer_states_key_in_context`).
    None for a variant without retrieval or examples without key facts."""
    pairs = [(c, a) for c, a in ((r.scores.get("context_key_facts"), r.scores.get("key_facts"))
                                 for r in rows) if c is not None and a is not None]
    if not pairs:
        return None
    context = float(np.mean([c for c, _ in pairs]))
    answer = float(np.mean([a for _, a in pairs]))
    held = [a for c, a in pairs if c >= 1.0]
    return {"examples": len(pairs), "context_holds_key": context, "answer_states_key": answer,
            "answer_over_context": answer / context if context else None,
            "answer_states_key_in_context": float(np.mean(held)) if held else None}


def grounding_rows(summary: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(variant, slice or "all", grounding figures) for every RAG variant of a summary, for
    the terminal table and the report."""
    rows = []
    for variant in summary.get("variants", []):
        data = summary.get("per_variant", {}).get(variant, {})
        if data.get("grounding"):
            rows.append((variant, "all", data["grounding"]))
            rows.extend((variant, name, g)
                        for name, g in (data.get("grounding_by_slice") or {}).items())
    return rows


def summarize(outputs: Sequence[Output], variants: Sequence[str], metrics: Sequence[MetricConfig],
              slo: LatencyConfig, *, concurrency: int = 1,
              wall_s: dict[str, float] | None = None, slice_field: str | None = None,
              resamples: int = RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """The JSON-ready summary of a run (see the report and `tuneloop eval show`)."""
    by_variant: dict[str, dict[str, Output]] = {v: {} for v in variants}
    for out in outputs:
        by_variant.setdefault(out.variant, {})[out.record_id] = out
    names = [m.name for m in metrics]
    per_variant: dict[str, Any] = {}
    for variant in variants:
        rows = list(by_variant[variant].values())
        ok = [r for r in rows if not r.error]
        quality = {n: _mean([r.scores.get(n) for r in rows]) for n in names}
        counts = {n: sum(1 for r in rows if r.scores.get(n) is not None) for n in names}
        lat = latency_mod.summarize([r.ttft_s for r in ok], [r.total_s for r in ok],
                                    [r.prompt_tokens for r in ok],
                                    [r.completion_tokens for r in ok], concurrency=concurrency,
                                    wall_s=(wall_s or {}).get(variant))
        results = gates_mod.check_gates(variant, quality, lat, metrics, slo)
        per_variant[variant] = {
            "n": len(rows), "errors": len(rows) - len(ok), "quality": quality,
            "scored": counts, "latency": lat, "gates": [g.to_dict() for g in results],
            "passed": gates_mod.passed(results),
        }
        grounding = grounding_of(rows)
        if grounding:
            per_variant[variant]["grounding"] = grounding
            per_variant[variant]["grounding_by_slice"] = {
                name: g for name in sorted({r.slice for r in rows if r.slice is not None})
                if (g := grounding_of([r for r in rows if r.slice == name]))}
    comparisons = _compare_all(by_variant, variants, metrics, None, resamples, seed)
    slices = _slices(by_variant, variants, metrics, resamples, seed)
    primary = next((m for m in metrics if m.primary), metrics[0] if metrics else None)
    return {
        "variants": list(variants),
        "concurrency": concurrency,
        "slo": slo.model_dump(),
        "metrics": [m.model_dump() for m in metrics],
        "primary_metric": primary.name if primary else None,
        "slice_field": slice_field,
        "per_variant": per_variant,
        "comparisons": [c.to_dict() for c in comparisons],
        "slices": slices,
        "best_per_slice": _best_per_slice(slices, primary),
        "resamples": resamples,
    }


def _compare_all(by_variant: dict[str, dict[str, Output]], variants: Sequence[str],
                 metrics: Sequence[MetricConfig], only: set[str] | None, resamples: int,
                 seed: int, slice_name: str | None = None,
                 with_latency: bool = True) -> list[Any]:
    out = []
    for a, b in itertools.combinations(variants, 2):
        ids = [i for i in by_variant[a] if i in by_variant[b] and (only is None or i in only)]
        ids.sort()
        if not ids:
            continue
        ra = [by_variant[a][i] for i in ids]
        rb = [by_variant[b][i] for i in ids]
        for metric in metrics:
            xa = [_nan(r.scores.get(metric.name)) for r in ra]
            xb = [_nan(r.scores.get(metric.name)) for r in rb]
            out.append(compare_pair(metric.name, a, b, xa, xb,
                                    higher_is_better=metric.higher_is_better,
                                    slice=slice_name, resamples=resamples, seed=seed))
        if not with_latency:
            continue
        for name, value, stat, higher in LATENCY_METRICS:
            # Failed requests have no meaningful latency: drop them from the pairs.
            xa = [float("nan") if r.error else value(r) for r in ra]
            xb = [float("nan") if r.error else value(r) for r in rb]
            out.append(compare_pair(name, a, b, xa, xb, higher_is_better=higher, stat=stat,
                                    slice=slice_name, resamples=resamples, seed=seed))
    return out


def _slices(by_variant: dict[str, dict[str, Output]], variants: Sequence[str],
            metrics: Sequence[MetricConfig], resamples: int, seed: int) -> dict[str, Any]:
    members: dict[str, set[str]] = defaultdict(set)
    for rows in by_variant.values():
        for rid, row in rows.items():
            if row.slice is not None:
                members[row.slice].add(rid)
    result: dict[str, Any] = {}
    for name in sorted(members):
        ids = members[name]
        means = {}
        for variant in variants:
            members_rows = [r for rid, r in by_variant[variant].items() if rid in ids]
            means[variant] = {m.name: _mean([r.scores.get(m.name) for r in members_rows])
                              for m in metrics}
            means[variant]["n"] = len(members_rows)
        comps = _compare_all(by_variant, variants, metrics, ids, resamples, seed, name,
                             with_latency=False)
        result[name] = {"n": len(ids), "means": means,
                        "comparisons": [c.to_dict() for c in comps]}
    return result


def _best_per_slice(slices: dict[str, Any], primary: MetricConfig | None) -> dict[str, str]:
    if primary is None:
        return {}
    best = {}
    for name, data in slices.items():
        scored = [(v, m.get(primary.name)) for v, m in data["means"].items()
                  if m.get(primary.name) is not None]
        if scored:
            pick = max if primary.higher_is_better else min
            best[name] = pick(scored, key=lambda item: item[1])[0]
    return best
