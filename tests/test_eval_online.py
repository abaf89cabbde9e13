"""Online evaluation over the request log: latency, feedback rates, and judge-human agreement."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.test_flywheel_support import log_request, person, rate
from tuneloop import Project
from tuneloop.engines.base import Completion, Engine, GenerationParams, Message
from tuneloop.errors import ApprovalRequired, InvalidRequest
from tuneloop.evaluate.metrics.judge import LLMJudge
from tuneloop.evaluate.online import cohen_kappa, evaluate_online, parse_window
from tuneloop.governance.principals import actor_of, ensure_principal


class ScriptedJudge(Engine):
    """A stand-in judge engine whose grades the test picks from the answer text, so that the
    agreement arithmetic can be checked by hand (real engines are exercised elsewhere)."""

    kind = "scripted"

    def chat(self, messages: Sequence[Message], params: GenerationParams) -> Completion:
        text = messages[-1]["content"]
        grade = "Score: 5" if "GOOD" in text else "Score: 1" if "BAD" in text else "no idea"
        return Completion(grade, "stop", 10, 3, 0.01, 0.02)

    def stream(self, messages, params):
        raise NotImplementedError

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return 10


def add_log(project: Project, variant: str, *, output: str, total_ms: float, ttft_ms: float,
            minutes_ago: float = 5, status: int = 200, audience: str = "internal",
            rating: int | None = None, corrected: str | None = None) -> str:
    """Log a request through the server's redacting writer, and rate it as its caller would."""
    rid = log_request(project, f"question for {variant}", output, variant=variant,
                      principal="ines", audience=audience, status=status, total_ms=total_ms,
                      ttft_ms=ttft_ms, age=dt.timedelta(minutes=minutes_ago))
    if rating is not None or corrected is not None:
        rate(project, person(project, "ines", audience=audience), rid, rating, corrected)
    return rid


@pytest.fixture
def project(project_dir: Path):
    project = Project.open(project_dir)
    # variant a: 4 requests, 3 rated; the judge agrees with people on 2 of 3
    add_log(project, "a", output="GOOD answer", total_ms=100, ttft_ms=10, rating=1)
    add_log(project, "a", output="BAD answer", total_ms=200, ttft_ms=20, rating=-1)
    add_log(project, "a", output="GOOD answer", total_ms=300, ttft_ms=30, rating=-1,
            corrected="the right answer")
    add_log(project, "a", output="x", total_ms=400, ttft_ms=40)
    # variant b: one failed request, one outside the window
    add_log(project, "b", output="ok", total_ms=1000, ttft_ms=100, rating=1)
    add_log(project, "b", output="", total_ms=5, ttft_ms=5, status=502)
    add_log(project, "b", output="old", total_ms=9000, ttft_ms=900, minutes_ago=3000)
    yield project
    project.close()


def test_online_latency_and_feedback_rates_per_variant(project) -> None:
    report = evaluate_online(project, project.actor(), since="24h")
    a, b = report["variants"]["a"], report["variants"]["b"]
    assert a["requests"] == 4 and a["errors"] == 0
    assert a["latency"]["total_ms_p50"] == pytest.approx(250.0)
    assert a["latency"]["ttft_ms_p50"] == pytest.approx(25.0)
    assert a["feedback"]["rated"] == 3 and a["feedback"]["positive_rate"] == pytest.approx(1 / 3)
    assert a["feedback"]["corrections"] == 1
    assert b["requests"] == 2 and b["errors"] == 1  # b3 is older than the window
    assert b["latency"]["n"] == 1 and b["latency"]["total_ms_p99"] == pytest.approx(1000.0)
    assert "judge_agreement" not in a


def test_judge_agreement_with_human_ratings_is_reported(project) -> None:
    judge = LLMJudge(engine=ScriptedJudge())
    report = evaluate_online(project, project.actor(), since="24h", variant="a", judge=judge)
    agreement = report["variants"]["a"]["judge_agreement"]
    # a1: judge +, human + ; a2: judge -, human - ; a3: judge +, human -  -> 2 of 3
    assert agreement["n"] == 3 and agreement["agreement"] == pytest.approx(2 / 3)
    assert set(report["variants"]) == {"a"}


def test_judging_tier2_logs_needs_an_evaluate_approval(project) -> None:
    # a public caller's request is customer data: Tier 2
    add_log(project, "c", output="GOOD", total_ms=1, ttft_ms=1, audience="public", rating=1)
    with project.store.session() as session:
        dev = actor_of(ensure_principal(session, "dan", role="developer"))
    judge = LLMJudge(engine=ScriptedJudge())
    with pytest.raises(ApprovalRequired, match="logs"):
        evaluate_online(project, dev, since="1h", variant="c", judge=judge)
    # figures without reading the texts need no approval
    assert evaluate_online(project, dev, since="1h", variant="c")["variants"]["c"]["requests"] == 1


def test_window_parsing() -> None:
    end = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    assert parse_window("24h", end) == (dt.datetime(2026, 1, 1, tzinfo=dt.UTC), end)
    assert parse_window("30m", end)[0] == end - dt.timedelta(minutes=30)
    with pytest.raises(InvalidRequest, match="not a duration"):
        parse_window("yesterday", end)


def test_cohen_kappa_on_hand_checked_ratings() -> None:
    assert cohen_kappa([True, False, True, False], [True, False, True, False]) == 1.0
    # observed 0.5, both raters 50% positive -> expected 0.5 -> kappa 0
    assert cohen_kappa([True, True, False, False], [True, False, True, False]) == 0.0
    assert cohen_kappa([], []) is None


@pytest.mark.slow
def test_eval_online_command_prints_the_figures_per_variant(project) -> None:
    from tests.conftest import run_cli

    if project.store.dialect != "sqlite":
        pytest.skip("one backend is enough for the command; the figures are tested on both")
    shown = run_cli("eval", "online", "--since", "24h", cwd=project.root)
    assert shown.returncode == 0, shown.stderr
    lines = {line.split("│")[1].strip(): line for line in shown.stdout.splitlines()
             if line.count("│") > 5}
    assert set(lines) >= {"a", "b"}
    assert "0.33" in lines["a"]  # one of three ratings positive
