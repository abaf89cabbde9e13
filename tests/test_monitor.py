"""`monitor`: per-variant latency percentiles, errors and feedback from the log, against the SLO
(p95 1000 ms, time to first token 300 ms in the test config)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.test_flywheel_support import log_request, open_project, person, rate, sqlite_only
from tuneloop import Project
from tuneloop.flywheel.monitor import monitor, plot

FAST = [80.0, 100.0, 120.0, 140.0, 900.0]
SLOW = [400.0, 800.0, 1200.0, 1600.0, 2000.0]


def seed(project: Project) -> None:
    ivy = person(project, "ivy")
    for i, total in enumerate(FAST):
        rid = log_request(project, f"fast q{i}", "a", variant="base", total_ms=total,
                          ttft_ms=total / 4, age=dt.timedelta(hours=2) if i < 2 else None)
        rate(project, ivy, rid, rating=1 if i != 4 else -1)
    for i, total in enumerate(SLOW):
        log_request(project, f"slow q{i}", "a", variant="candidate", total_ms=total,
                    ttft_ms=100.0)
    log_request(project, "broken", "", variant="candidate", status=500, total_ms=5.0,
                ttft_ms=None)


def test_variant_over_the_slo_breaches_and_the_other_does_not(project: Project) -> None:
    seed(project)
    report = monitor(project, bucket=dt.timedelta(hours=1))
    health = {h.variant: h for h in report.variants}
    assert set(health) == {"base", "candidate"}
    base, cand = health["base"].total, health["candidate"].total
    assert base.requests == 5 and base.p50_ms == pytest.approx(np.percentile(FAST, 50))
    assert base.p95_ms == pytest.approx(np.percentile(FAST, 95))
    assert base.ttft_p95_ms == pytest.approx(np.percentile(FAST, 95) / 4)
    assert base.rated == 5 and base.thumbs_up == 4 and base.up_rate == pytest.approx(0.8)
    assert health["base"].breaches == []
    # The failed request counts as an error and stays out of the latency percentiles.
    assert cand.requests == 6 and cand.errors == 1
    assert cand.p95_ms == pytest.approx(np.percentile(SLOW, 95))
    assert any("p95 latency" in b for b in health["candidate"].breaches)
    assert any("error rate" in b for b in health["candidate"].breaches)
    assert report.breached
    # Two hourly buckets for base: the two older requests and the three recent ones.
    assert [s.requests for _, s in health["base"].buckets] == [2, 3]


@sqlite_only
def test_too_few_requests_never_breach_and_window_excludes_older_ones(project: Project) -> None:
    seed(project)
    quiet = monitor(project, min_requests=50)
    assert not quiet.breached
    recent = monitor(project, since=quiet.until - dt.timedelta(minutes=30), variant="base")
    assert [h.total.requests for h in recent.variants] == [3]


@sqlite_only
def test_plot_writes_a_png(project: Project, tmp_path: Path) -> None:
    seed(project)
    path = plot(monitor(project), tmp_path / "reports")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_monitor_command_exits_non_zero_on_a_breach(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    project = open_project(tmp_path / "cli", "sqlite", monkeypatch)
    seed(project)
    breach = run_cli("monitor", "--min-requests", "1", cwd=project.root)
    assert breach.returncode == 1 and "SLO breach" in breach.stderr
    assert "candidate" in breach.stdout and "base" in breach.stdout
    healthy = run_cli("monitor", "--variant", "base", "--min-requests", "1", cwd=project.root)
    assert healthy.returncode == 0, healthy.stderr
    assert "within the SLO" in healthy.stdout
    project.close()
