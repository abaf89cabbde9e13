"""Gates decide pass or fail per variant from the thresholds and the latency SLO."""

from __future__ import annotations

import pytest

from tuneloop.config import LatencyConfig, MetricConfig
from tuneloop.evaluate.gates import check_gates, passed
from tuneloop.evaluate.summary import Output, summarize

METRICS = [MetricConfig(name="rouge_l", threshold=0.3, primary=True),
           MetricConfig(name="token_f1", threshold=0.5, required=False),
           MetricConfig(name="hallucination", threshold=0.1, higher_is_better=False),
           MetricConfig(name="retrieval_recall", threshold=0.8)]
SLO = LatencyConfig(p95_ms=1000, ttft_ms=200)
FAST = {"total_ms_p95": 800.0, "ttft_ms_p95": 150.0}


def by_gate(results):
    return {r.gate: r.status for r in results}


def test_a_variant_above_every_threshold_and_within_the_slo_passes() -> None:
    quality = {"rouge_l": 0.4, "token_f1": 0.6, "hallucination": 0.05, "retrieval_recall": 0.9}
    results = check_gates("v", quality, FAST, METRICS, SLO)
    assert set(by_gate(results).values()) == {"pass"}
    assert passed(results)


def test_a_required_quality_gate_below_threshold_fails_the_variant() -> None:
    quality = {"rouge_l": 0.29, "token_f1": 0.6, "hallucination": 0.05, "retrieval_recall": 0.9}
    results = check_gates("v", quality, FAST, METRICS, SLO)
    assert by_gate(results)["rouge_l"] == "fail"
    assert not passed(results)


def test_an_optional_gate_failing_does_not_fail_the_variant() -> None:
    quality = {"rouge_l": 0.4, "token_f1": 0.1, "hallucination": 0.05, "retrieval_recall": 0.9}
    results = check_gates("v", quality, FAST, METRICS, SLO)
    assert by_gate(results)["token_f1"] == "fail"
    assert passed(results)


def test_lower_is_better_metric_fails_above_its_threshold() -> None:
    quality = {"rouge_l": 0.4, "hallucination": 0.2, "retrieval_recall": 0.9}
    assert by_gate(check_gates("v", quality, FAST, METRICS, SLO))["hallucination"] == "fail"


def test_p95_latency_over_the_slo_fails_even_with_perfect_quality() -> None:
    quality = {"rouge_l": 1.0, "token_f1": 1.0, "hallucination": 0.0, "retrieval_recall": 1.0}
    slow = {"total_ms_p95": 1200.0, "ttft_ms_p95": 150.0}
    results = check_gates("v", quality, slow, METRICS, SLO)
    assert by_gate(results)["latency.p95_ms"] == "fail"
    assert by_gate(results)["latency.ttft_ms"] == "pass"
    assert not passed(results)


def test_a_metric_that_applies_to_no_example_is_skipped_not_failed() -> None:
    quality = {"rouge_l": 0.4, "token_f1": 0.6, "hallucination": 0.0, "retrieval_recall": None}
    results = check_gates("no-rag", quality, FAST, METRICS, SLO)
    assert by_gate(results)["retrieval_recall"] == "skipped"
    assert passed(results)


def test_summary_gates_each_variant_on_its_own_outputs() -> None:
    outputs = []
    for i in range(20):
        for variant, score, total in (("good", 0.6, 0.5), ("bad", 0.1, 0.5), ("slow", 0.6, 3.0)):
            outputs.append(Output(variant=variant, record_id=str(i), output="x", reference="y",
                                  ttft_s=0.1, total_s=total, completion_tokens=10,
                                  scores={"rouge_l": score}))
    metrics = [MetricConfig(name="rouge_l", threshold=0.3)]
    summary = summarize(outputs, ["good", "bad", "slow"], metrics, SLO, resamples=500)
    verdicts = {v: summary["per_variant"][v]["passed"] for v in ("good", "bad", "slow")}
    assert verdicts == {"good": True, "bad": False, "slow": False}
    comp = next(c for c in summary["comparisons"]
                if c["a"] == "good" and c["b"] == "bad" and c["metric"] == "rouge_l")
    assert comp["verdict"] == "worse"
    assert comp["diff"] == pytest.approx(-0.5)
