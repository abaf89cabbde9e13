"""Monitoring from the request log: per variant and per time bucket, latency percentiles, error
rate and feedback rates, compared with the project's latency SLO (`latency` in `tuneloop.yaml`).

Requests a routed variant sent are also grouped by the slice its router predicted (`slices`),
so a kind of question that degrades is visible even when its variant looks fine overall.

A variant breaches the SLO when, over the whole window, its p95 total latency is above
`latency.p95_ms` or its p95 time to first token above `latency.ttft_ms`, or its error rate is
above the allowed rate. Requests are counted by `evaluate.traffic`'s rules, the ones `eval
online` uses: shadow copies are left out (users never waited for them).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import select

from tuneloop.evaluate import traffic
from tuneloop.store.models import utcnow
from tuneloop.store.serving import Feedback, RequestLog

if TYPE_CHECKING:
    from tuneloop.project import Project

DEFAULT_MAX_ERROR_RATE = 0.05


@dataclass
class Stats:
    """Figures for one variant over one stretch of time."""

    requests: int = 0
    errors: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    ttft_p50_ms: float | None = None
    ttft_p95_ms: float | None = None
    rated: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0
    corrected: int = 0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def up_rate(self) -> float | None:
        """Share of rated requests rated up (None when nothing was rated)."""
        return self.thumbs_up / self.rated if self.rated else None


@dataclass
class VariantHealth:
    """One variant: its figures over the window, per bucket, and what breaches the SLO."""

    variant: str
    total: Stats
    buckets: list[tuple[dt.datetime, Stats]] = field(default_factory=list)
    breaches: list[str] = field(default_factory=list)


@dataclass
class MonitorReport:
    """Every variant seen in the window, and the SLO they were held to."""

    since: dt.datetime
    until: dt.datetime
    bucket: dt.timedelta
    slo: dict[str, float]
    variants: list[VariantHealth]
    slices: list[VariantHealth] = field(default_factory=list)  # by predicted slice

    @property
    def breached(self) -> bool:
        return any(v.breaches for v in (*self.variants, *self.slices))


def monitor(project: Project, *, since: dt.datetime | None = None,
            until: dt.datetime | None = None, bucket: dt.timedelta = dt.timedelta(hours=1),
            variant: str | None = None, max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
            min_requests: int = 1) -> MonitorReport:
    """Figures per variant (and per `bucket`) for requests in [since, until); default: 24 h.

    A variant with fewer than `min_requests` requests in the window is shown but never breaches:
    a handful of requests says little about a percentile.
    """
    until = until or utcnow()
    since = since or until - dt.timedelta(hours=24)
    latency = project.config.latency
    slo = {"p95_ms": latency.p95_ms, "ttft_ms": latency.ttft_ms, "error_rate": max_error_rate}
    query = select(RequestLog.id, RequestLog.variant, RequestLog.created_at, RequestLog.status,
                   RequestLog.total_ms, RequestLog.ttft_ms, RequestLog.predicted_slice,
                   RequestLog.prompt_tokens, RequestLog.completion_tokens).where(
        RequestLog.created_at >= since, RequestLog.created_at < until,
        RequestLog.shadow_of.is_(None), RequestLog.variant.is_not(None))
    if variant:
        query = query.where(RequestLog.variant == variant)
    with project.store.session(write=False) as session:
        rows = session.execute(query).all()
        ratings = _ratings(session, since, until)
    by_variant: dict[str, list[tuple]] = {}
    by_slice: dict[str, list[tuple]] = {}
    for row in rows:
        by_variant.setdefault(row.variant, []).append(tuple(row))
        if row.predicted_slice is not None:
            by_slice.setdefault(row.predicted_slice, []).append(tuple(row))
    report = MonitorReport(since, until, bucket, slo, [])
    report.variants = [_health(name, items, ratings, since, bucket, slo, min_requests)
                       for name, items in sorted(by_variant.items())]
    report.slices = [_health(name, items, ratings, since, bucket, slo, min_requests)
                     for name, items in sorted(by_slice.items())]
    return report


def _health(name: str, items: list[tuple], ratings: dict[str, traffic.RequestFeedback],
            since: dt.datetime, bucket: dt.timedelta, slo: dict[str, float],
            min_requests: int) -> VariantHealth:
    """One group's figures (a variant's, or a predicted slice's) over the window and buckets."""
    health = VariantHealth(name, _stats(items, ratings))
    starts: dict[dt.datetime, list[tuple]] = {}
    for item in items:
        starts.setdefault(_floor(item[2], since, bucket), []).append(item)
    health.buckets = [(start, _stats(starts[start], ratings)) for start in sorted(starts)]
    if health.total.requests >= min_requests:
        health.breaches = _breaches(health.total, slo)
    return health


def _ratings(session, since: dt.datetime,
             until: dt.datetime) -> dict[str, traffic.RequestFeedback]:
    """Each request's feedback in the window, summed up by the shared rules."""
    items: dict[str, list[tuple[int | None, bool]]] = {}
    query = select(Feedback.request_id, Feedback.rating, Feedback.corrected).join(
        RequestLog, RequestLog.id == Feedback.request_id).where(
        RequestLog.created_at >= since, RequestLog.created_at < until).order_by(Feedback.id)
    for request_id, rating, corrected in session.execute(query):
        items.setdefault(request_id, []).append((rating, bool(corrected)))
    return {rid: traffic.summarize_feedback(given) for rid, given in items.items()}


def _stats(items: list[tuple], ratings: dict[str, traffic.RequestFeedback]) -> Stats:
    data = traffic.figures((traffic.Logged(i[0], i[3], i[4], i[5], i[7], i[8]) for i in items),
                           ratings)
    return Stats(requests=data.requests, errors=data.errors, p50_ms=data.total_p(50),
                 p95_ms=data.total_p(95), ttft_p50_ms=data.ttft_p(50),
                 ttft_p95_ms=data.ttft_p(95), rated=data.rated, thumbs_up=data.up,
                 thumbs_down=data.down, corrected=data.corrected)


def _breaches(stats: Stats, slo: dict[str, float]) -> list[str]:
    out = []
    if stats.p95_ms is not None and stats.p95_ms > slo["p95_ms"]:
        out.append(f"p95 latency {stats.p95_ms:.0f} ms > {slo['p95_ms']:.0f} ms")
    if stats.ttft_p95_ms is not None and stats.ttft_p95_ms > slo["ttft_ms"]:
        out.append(f"p95 time to first token {stats.ttft_p95_ms:.0f} ms > {slo['ttft_ms']:.0f} ms")
    if stats.error_rate > slo["error_rate"]:
        out.append(f"error rate {stats.error_rate:.1%} > {slo['error_rate']:.1%}")
    return out


def _floor(when: dt.datetime, origin: dt.datetime, bucket: dt.timedelta) -> dt.datetime:
    return origin + bucket * int((when - origin) / bucket)


def plot(report: MonitorReport, out_dir: Path) -> Path:
    """A PNG of p95 latency and thumbs-up rate per bucket for each variant; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    fig, (lat, up) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    for health in report.variants:
        times = [start for start, _ in health.buckets]
        lat.plot(times, [s.p95_ms if s.p95_ms is not None else np.nan
                         for _, s in health.buckets], marker="o", label=health.variant)
        up.plot(times, [s.up_rate if s.up_rate is not None else np.nan
                        for _, s in health.buckets], marker="o", label=health.variant)
    lat.axhline(report.slo["p95_ms"], color="red", linestyle="--", linewidth=1, label="SLO p95")
    lat.set_ylabel("p95 latency (ms)")
    up.set_ylabel("thumbs-up rate")
    up.set_ylim(0, 1)
    lat.legend(loc="upper left", fontsize="small")
    fig.autofmt_xdate()
    fig.tight_layout()
    path = out_dir / f"monitor-{report.until:%Y%m%dT%H%M%S}.png"
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path
