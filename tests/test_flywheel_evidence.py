"""Promotion from evidence: a variant leaves the internal stage only with enough rated requests
and a satisfaction not significantly worse than the variant it replaces."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_flywheel_support import CONFIG, log_request, open_project, person, rate, sqlite_only
from tests.test_serve_rollout import record_eval
from tuneloop import Project, rollout
from tuneloop.errors import GateFailed
from tuneloop.flywheel.evidence import evaluate_promotion
from tuneloop.governance import audit


@pytest.fixture
def project(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[Project]:
    config = CONFIG + "rollout: {min_rated_requests: 10}\n"
    p = open_project(tmp_path / "proj", database_url, monkeypatch, config)
    yield p
    p.close()


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


def test_rollout_promote_uses_the_online_evidence(project: Project) -> None:
    me = project.actor()
    record_eval(project, "base", passed=True)
    record_eval(project, "candidate", passed=True)
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
