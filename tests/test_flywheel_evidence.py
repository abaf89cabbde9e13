"""Promotion from evidence: a variant leaves the internal stage only with enough rated requests
and a satisfaction not significantly worse than the variant it replaces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_flywheel_support import CONFIG, log_request, person, rate, sqlite_only
from tuneloop import Project, rollout
from tuneloop.errors import GateFailed
from tuneloop.flywheel.evidence import evaluate_promotion
from tuneloop.governance import audit

EVALUATION = """\
base_model: {{name: tiny, path: {model}}}
sources:
  - {{name: qa, path: qa.jsonl, kind: records, tier: 1}}
datasets:
  - name: qa
    sources: [qa]
    split: {{train: 0.5, validation: 0.0, test: 0.5}}
    redact: false
    min_output_tokens: 0
metrics:
  - {{name: rouge_l, threshold: 0.0, primary: true}}
rollout: {{min_rated_requests: 10}}
"""


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random llama in GGUF, served by llama.cpp in milliseconds."""
    from tuneloop.engines.testing import tiny_gguf

    return tiny_gguf(tmp_path_factory.mktemp("models"))


@pytest.fixture
def project_config(tiny_model: Path) -> str:
    """The conftest `project` on the tiny model, with a dataset to evaluate on and gates any
    answer passes (rouge_l >= 0, a latency SLO no machine misses), promoted only after 10
    rated requests."""
    config = CONFIG.replace("latency: {p95_ms: 1000, ttft_ms: 300}",
                            "latency: {p95_ms: 600000, ttft_ms: 600000}")
    return config + EVALUATION.format(model=tiny_model)


def evaluated(project: Project, variants: list[str]) -> None:
    """`variants` evaluated by `evaluate()` on the tiny model, their gates passed: the summary
    the rollout gate reads is the one the evaluation stage wrote."""
    from tuneloop.data.build import build_dataset
    from tuneloop.evaluate.run import evaluate

    with (project.root / "qa.jsonl").open("w", encoding="utf-8") as handle:
        for i in range(8):
            handle.write(json.dumps({"messages": [
                {"role": "user", "content": f"How long does step {i} take?"},
                {"role": "assistant", "content": f"Step {i} takes {i} days."}]}) + "\n")
    version = build_dataset(project, project.actor(), "qa")
    result = evaluate(project, project.actor(), variants, f"qa@{version.id}", limit=2,
                      report=False)
    assert [result.per_variant[v]["passed"] for v in variants] == [True] * len(variants)


def ratings(project: Project, variant: str, up: int, down: int,
            audience: str = "internal") -> None:
    ivy = person(project, "ivy")
    for i in range(up + down):
        rid = log_request(project, f"{variant} question {i}", "answer", variant=variant,
                          audience=audience, principal="ivy" if audience == "internal" else "cus")
        rate(project, ivy, rid, rating=1 if i < up else -1)


@sqlite_only
def test_too_few_rated_requests_keep_the_candidate_internal(project: Project) -> None:
    ratings(project, "candidate", up=6, down=0)
    ratings(project, "candidate", up=9, down=0, audience="public")  # not internal evidence
    evidence = evaluate_promotion(project, "candidate", "base")
    assert not evidence.passed and evidence.candidate.rated == 6
    assert "at least 10" in evidence.detail


@sqlite_only
def test_significantly_worse_satisfaction_is_refused(project: Project) -> None:
    ratings(project, "candidate", up=3, down=9)
    ratings(project, "base", up=19, down=1, audience="public")
    evidence = evaluate_promotion(project, "candidate", "base")
    assert not evidence.passed and evidence.p_value is not None and evidence.p_value < 0.05
    assert evidence.incumbent is not None and evidence.incumbent.rated == 20


@sqlite_only
def test_slightly_lower_but_not_significantly_worse_passes(project: Project) -> None:
    ratings(project, "candidate", up=10, down=2)
    ratings(project, "base", up=18, down=2, audience="public")
    evidence = evaluate_promotion(project, "candidate", "base")
    assert evidence.passed and evidence.p_value is not None and evidence.p_value >= 0.05


@pytest.mark.slow
def test_rollout_promote_uses_the_online_evidence(project: Project) -> None:
    me = project.actor()
    evaluated(project, ["base", "candidate"])
    rollout.set_stage(project, me, "assistant", "base", "all")
    rollout.set_stage(project, me, "assistant", "candidate", "internal")
    ratings(project, "candidate", up=2, down=2)
    with pytest.raises(GateFailed, match="only 4 rated internal requests"):
        rollout.promote(project, me, "assistant", "candidate", percent=10)
    refused = next(e for e in audit.list_events(project.store, limit=10)
                   if e.action == "rollout.refused")
    assert refused.details_dict["why"] == "online evidence"
    ratings(project, "candidate", up=8, down=0)
    state = rollout.promote(project, me, "assistant", "candidate", percent=10)
    assert [(e.variant, e.stage) for e in state.at("public")] == [("candidate", "public")]
    assert any(e.action == "rollout.evidence" for e in audit.list_events(project.store, limit=10))
