"""Gates: the thresholds and latency SLO of `tuneloop.yaml` decide pass or fail per variant.

A quality gate compares a metric's mean with its threshold (>= when higher is better, <=
otherwise). The latency gates compare p95 total time and p95 time to first token with the SLO.
A gate whose metric applies to none of the variant's examples (recall@k of a variant without
retrieval) is skipped, not failed. A variant passes when every *required* gate passes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tuneloop.config import LatencyConfig, MetricConfig


@dataclass(frozen=True)
class GateResult:
    """One gate of one variant."""

    variant: str
    gate: str  # the metric name, or "latency.p95_ms" / "latency.ttft_ms"
    kind: str  # quality | latency
    value: float | None
    threshold: float
    op: str  # ">=" or "<="
    required: bool
    status: str  # pass | fail | skipped

    @property
    def failed_required(self) -> bool:
        return self.required and self.status == "fail"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _check(value: float | None, threshold: float, higher_is_better: bool) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "skipped"
    ok = value >= threshold if higher_is_better else value <= threshold
    return "pass" if ok else "fail"


def check_gates(variant: str, quality: dict[str, float | None], latency: dict[str, Any],
                metrics: Sequence[MetricConfig], slo: LatencyConfig) -> list[GateResult]:
    """Every gate of one variant, from its metric means and latency summary."""
    results = []
    for metric in metrics:
        if metric.threshold is None:
            continue
        value = quality.get(metric.name)
        op = ">=" if metric.higher_is_better else "<="
        results.append(GateResult(variant, metric.name, "quality", value, metric.threshold, op,
                                  metric.required, _check(value, metric.threshold,
                                                          metric.higher_is_better)))
    for gate, key, threshold in (("latency.p95_ms", "total_ms_p95", slo.p95_ms),
                                 ("latency.ttft_ms", "ttft_ms_p95", slo.ttft_ms)):
        value = latency.get(key)
        results.append(GateResult(variant, gate, "latency", value, threshold, "<=", True,
                                  _check(value, threshold, False)))
    return results


def passed(results: Sequence[GateResult]) -> bool:
    """True when no required gate failed."""
    return not any(r.failed_required for r in results)
