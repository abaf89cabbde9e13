"""Helpers for the flywheel tests: logged requests written through the serving stage's own
functions, and feedback given through them. No tests here. (The project on the parametrised
store is the `project` fixture of conftest.py; `open_project` and `CONFIG` are re-exported.)"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import update

from tests.conftest import PROJECT_CONFIG, open_project
from tuneloop import Project
from tuneloop.governance import principals
from tuneloop.governance.tiers import Actor
from tuneloop.serve import feedback, requestlog
from tuneloop.serve.schemas import FeedbackRequest
from tuneloop.store.models import utcnow
from tuneloop.store.serving import RequestLog

CONFIG = PROJECT_CONFIG  # the flywheel tests' two variants, base and candidate

__all__ = ["CONFIG", "log_request", "open_project", "person", "rate", "records", "sqlite_only"]

_counter = {"n": 0}


def person(project: Project, name: str, role: str = "developer",
           audience: str = "internal") -> Actor:
    """A principal as an Actor."""
    with project.store.session() as session:
        return principals.actor_of(principals.ensure_principal(session, name, role=role,
                                                               audience=audience))


def log_request(project: Project, question: str, answer: str, *, variant: str = "base",
                principal: str = "ivy", audience: str = "internal", subject: str | None = None,
                status: int = 200, total_ms: float = 100.0, ttft_ms: float | None = 50.0,
                age: dt.timedelta | None = None) -> str:
    """Log one answered request the way the server does (redacted); returns its id."""
    from tuneloop.data.records import subject_hash

    _counter["n"] += 1
    rid = f"req-{_counter['n']:05d}-{variant}"
    entry = requestlog.Entry(id=rid, model="assistant", principal=principal, audience=audience,
                             variant=variant, status=status, total_ms=total_ms, ttft_ms=ttft_ms,
                             subject=subject_hash(subject) if subject else None,
                             messages=[{"role": "user", "content": question}], output=answer)
    requestlog.write(project.store, project.config.privacy.redact, entry)
    if age is not None:
        with project.store.session() as session:
            session.execute(update(RequestLog).where(RequestLog.id == rid)
                            .values(created_at=utcnow() - age))
    return rid


def rate(project: Project, actor: Actor, request_id: str, rating: int | None = None,
         corrected: str | None = None, comment: str = "") -> int:
    """Give feedback through the serving stage's function; returns the feedback id."""
    body = FeedbackRequest(request_id=request_id, rating=rating, corrected_answer=corrected,
                           comment=comment)
    return feedback.add(project.store, project.config.privacy.redact, actor, body)


def records(version: Any) -> list[dict[str, Any]]:
    """Every record of a dataset version, all splits."""
    return [r for split in ("train", "validation", "test") for r in version.iter_split(split)]


# Logic that does not depend on the database runs on SQLite only, to keep the suite short; the
# tests whose queries or purges differ per backend run on both.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
