"""Retention: per-tier periods from tuneloop.yaml; exactly the expired logs (and what hangs on
them) are purged, by the command and by the server's periodic job."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import run_cli
from tests.test_flywheel_support import CONFIG, log_request, open_project, person, rate, sqlite_only
from tuneloop import Project
from tuneloop.flywheel import retention, review
from tuneloop.flywheel.enrich import Filters, enrich
from tuneloop.governance import audit
from tuneloop.store.serving import Feedback, RequestLog

DAY = dt.timedelta(days=1)


def seed(project: Project) -> dict[str, str]:
    """Logs of both tiers on both sides of their periods (365 days, 30 days)."""
    ivy = person(project, "ivy")
    ids = {
        "t1_recent": log_request(project, "q1", "a1", age=10 * DAY),
        "t1_expired": log_request(project, "q2", "a2", age=400 * DAY),
        "t1_edge_kept": log_request(project, "q3", "a3", age=364 * DAY),
        "t2_recent": log_request(project, "q4", "a4", audience="public", principal="cus",
                                 age=29 * DAY),
        "t2_expired": log_request(project, "q5", "a5", audience="public", principal="cus",
                                  age=31 * DAY),
    }
    rate(project, ivy, ids["t1_expired"], rating=-1)
    rate(project, ivy, ids["t1_recent"], rating=1)
    rate(project, ivy, ids["t2_expired"], rating=1, corrected="better a5")
    return ids


def remaining(project: Project) -> set[str]:
    with project.store.session(write=False) as session:
        return set(session.execute(select(RequestLog.id)).scalars())


def test_retention_removes_exactly_the_expired_rows(project: Project) -> None:
    ids = seed(project)
    # The rated-down Tier 1 request goes to the review queue.
    enrich(project, person(project, "ivy"), "logs", filters=Filters(audience="internal"))
    assert [i.request_id for i in review.list_items(project)] == [ids["t1_expired"]]
    assert retention.expired_count(project) == {1: 1, 2: 1}

    report = retention.apply(project)

    assert remaining(project) == {ids["t1_recent"], ids["t1_edge_kept"], ids["t2_recent"]}
    assert report.logs == {1: 1, 2: 1} and report.feedback == 2 and report.review_items == 1
    with project.store.session(write=False) as session:
        assert set(session.execute(select(Feedback.request_id)).scalars()) == {ids["t1_recent"]}
    assert review.list_items(project, status=None) == []
    event = next(e for e in audit.list_events(project.store, limit=20)
                 if e.action == "retention.apply")
    assert event.details_dict["logs"] == {"1": 1, "2": 1}
    assert retention.apply(project).total == 0
    assert audit.verify(project.store).ok


def test_shorter_configured_period_purges_more(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    project = open_project(tmp_path / "short", "sqlite", monkeypatch,
                           CONFIG.replace("{1: 365, 2: 30}", "{1: 5, 2: 1}"))
    ids = seed(project)
    retention.apply(project)
    assert remaining(project) == set()
    kept = log_request(project, "fresh", "answer")
    assert retention.apply(project).total == 0 and remaining(project) == {kept}
    assert len(ids) == 5
    project.close()


@sqlite_only
def test_server_purges_expired_logs_when_it_starts(project: Project) -> None:
    from fastapi.testclient import TestClient

    from tests.test_serve_support import llama_loader
    from tuneloop.serve.app import create_app

    ids = seed(project)
    with TestClient(create_app(project, variant_loader=llama_loader(project))) as client:
        deadline = time.monotonic() + 60
        while ids["t2_expired"] in remaining(project) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/health").status_code == 200
    assert ids["t1_expired"] not in remaining(project)
    assert ids["t2_expired"] not in remaining(project) and ids["t2_recent"] in remaining(project)


@pytest.mark.slow
def test_retention_command_reports_counts_and_dry_run_keeps_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = open_project(tmp_path / "cli", "sqlite", monkeypatch)
    ids = seed(project)
    dry = run_cli("retention", "apply", "--dry-run", cwd=project.root)
    assert dry.returncode == 0, dry.stderr
    assert "to purge" in dry.stdout and len(remaining(project)) == len(ids)
    done = run_cli("retention", "apply", cwd=project.root)
    assert done.returncode == 0, done.stderr
    assert "2 feedback" in done.stdout and len(remaining(project)) == 3
    project.close()
