"""Retention: request logs (with their feedback and review items) are kept for their tier's period.

The periods come from `privacy.retention_days` in `tuneloop.yaml` (default: Tier 1 365 days,
Tier 2 30 days). `apply` deletes, per tier, every log older than its period, in one transaction,
audits the counts, and returns them. The server runs it periodically (`Scheduler`), so several
replicas may run it at once: deleting what is already gone is harmless.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, delete, func, select
from sqlalchemy.orm import Session

from tuneloop.governance import audit
from tuneloop.store.flywheel import ReviewDecision, ReviewItem
from tuneloop.store.models import utcnow
from tuneloop.store.serving import Feedback, RequestLog

if TYPE_CHECKING:
    from tuneloop.project import Project

log = logging.getLogger(__name__)
DEFAULT_INTERVAL_S = 3600.0
BATCH = 500


@dataclass
class RetentionReport:
    """Rows removed per tier, and the cut-off each tier was given."""

    cutoffs: dict[int, dt.datetime] = field(default_factory=dict)
    logs: dict[int, int] = field(default_factory=dict)
    feedback: int = 0
    review_items: int = 0

    @property
    def total(self) -> int:
        return sum(self.logs.values())


def cutoffs(project: Project, now: dt.datetime | None = None) -> dict[int, dt.datetime]:
    """For each tier, the creation time before which its logs have expired."""
    now = now or utcnow()
    days = {1: 365, 2: 30, **project.config.privacy.retention_days}
    return {tier: now - dt.timedelta(days=d) for tier, d in sorted(days.items())}


def expired_count(project: Project, now: dt.datetime | None = None) -> dict[int, int]:
    """How many logs each tier would lose now (a dry run)."""
    out = {}
    with project.store.session(write=False) as session:
        for tier, cutoff in cutoffs(project, now).items():
            out[tier] = session.scalar(select(func.count()).select_from(RequestLog).where(
                RequestLog.tier == tier, RequestLog.created_at < cutoff)) or 0
    return out


def apply(project: Project, *, actor: str = "retention", now: dt.datetime | None = None
          ) -> RetentionReport:
    """Delete every log past its tier's retention period, with its feedback and review items."""
    report = RetentionReport(cutoffs=cutoffs(project, now))
    with project.store.session() as session:
        for tier, cutoff in report.cutoffs.items():
            ids = list(session.execute(select(RequestLog.id).where(
                RequestLog.tier == tier, RequestLog.created_at < cutoff)).scalars())
            for start in range(0, len(ids), BATCH):
                counts = delete_logs(session, ids[start:start + BATCH])
                report.feedback += counts["feedback"]
                report.review_items += counts["review_items"]
            report.logs[tier] = len(ids)
        if report.total:
            audit.record(session, actor=actor, action="retention.apply", target="logs",
                         details={"logs": report.logs, "feedback": report.feedback,
                                  "review_items": report.review_items,
                                  "cutoffs": {t: c.isoformat() for t, c in
                                              report.cutoffs.items()}})
    return report


def delete_logs(session: Session, ids: list[str]) -> dict[str, int]:
    """Delete these request logs and everything attached to them, inside `session`."""
    if not ids:
        return {"feedback": 0, "review_items": 0, "logs": 0}
    items = list(session.execute(select(ReviewItem.id).where(ReviewItem.request_id.in_(ids)))
                 .scalars())
    if items:
        session.execute(delete(ReviewDecision).where(ReviewDecision.item_id.in_(items)))
        session.execute(delete(ReviewItem).where(ReviewItem.id.in_(items)))
    fb = deleted(session, delete(Feedback).where(Feedback.request_id.in_(ids)))
    logs = deleted(session, delete(RequestLog).where(RequestLog.id.in_(ids)))
    return {"feedback": fb, "review_items": len(items), "logs": logs}


def deleted(session: Session, statement: Any) -> int:
    """Run a DELETE and return how many rows it removed."""
    result = cast("CursorResult[Any]", session.execute(statement))
    return result.rowcount or 0


class Scheduler:
    """Runs `apply` every `interval_s` seconds in a daemon thread until `stop()`."""

    def __init__(self, project: Project, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.project = project
        self.interval_s = interval_s
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tuneloop-retention",
                                        daemon=True)

    def start(self) -> Scheduler:
        """Start the thread; the first purge runs at once."""
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                report = apply(self.project)
                if report.total:
                    log.info("retention removed %d expired request logs", report.total)
            except Exception:  # a failed purge must never take the server down; retry later
                log.exception("retention failed; retrying in %.0f s", self.interval_s)
            self.runs += 1
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        """Ask the thread to stop and wait for it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
