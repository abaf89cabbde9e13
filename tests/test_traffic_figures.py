"""`tuneloop monitor` and `tuneloop eval online` count the same log the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_flywheel_support import log_request, person, rate
from tuneloop import Project
from tuneloop.evaluate.online import evaluate_online
from tuneloop.flywheel.monitor import monitor
from tuneloop.serve import requestlog


@pytest.fixture
def project(project_dir: Path):
    project = Project.open(project_dir)
    ines = person(project, "ines")

    def served(total_ms: float, ttft_ms: float | None, status: int = 200,
               rating: int | None = None) -> str:
        rid = log_request(project, "q", "a", variant="a", principal="ines", status=status,
                          total_ms=total_ms, ttft_ms=ttft_ms)
        if rating is not None:
            rate(project, ines, rid, rating)
        return rid

    first = served(100, 10, rating=1)
    served(200, None, rating=0)        # no token ever came (an empty answer): no TTFT
    served(300, 30, rating=-1)
    served(400, 40, status=499)        # the client went away: an error
    for n, finish in enumerate(["stop", "stop", "dropped"]):  # shadow copies of `first`
        requestlog.write(project.store, [], requestlog.Entry(
            id=f"shadow-{n}", model="assistant", principal="ines", audience="internal",
            variant="a", shadow_of=first, status=503 if finish == "dropped" else 200,
            finish_reason=finish, total_ms=5000, ttft_ms=4000))
    yield project
    project.close()


def test_monitor_and_online_evaluation_agree_on_the_same_log(project: Project) -> None:
    online = evaluate_online(project, project.actor(), since="24h")["variants"]["a"]
    [health] = monitor(project).variants
    total = health.total
    # Shadow copies are not user traffic in either: 4 requests, one error (the 499).
    assert online["requests"] == total.requests == 4
    assert online["errors"] == total.errors == 1
    # Latency over the 3 that succeeded; TTFT over the 2 that have one (never a 0 for None).
    assert online["latency"]["n"] == 3
    assert online["latency"]["total_ms_p50"] == total.p50_ms == 200.0
    assert online["latency"]["ttft_ms_p50"] == total.ttft_p50_ms == 20.0
    assert online["latency"]["ttft_ms_p95"] == pytest.approx(total.ttft_p95_ms)
    # A neutral rating is rated but neither up nor down.
    feedback = online["feedback"]
    assert feedback["rated"] == total.rated == 3
    assert feedback["positive"] == total.thumbs_up == 1
    assert feedback["negative"] == total.thumbs_down == 1 and feedback["neutral"] == 1
    # eval online shows the shadow copies apart, the dropped one counted as dropped.
    assert online["shadow"]["requests"] == 2 and online["shadow"]["dropped"] == 1
    assert online["shadow"]["latency"]["total_ms_p50"] == 5000.0
