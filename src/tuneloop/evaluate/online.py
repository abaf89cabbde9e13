"""Online evaluation: the offline latency figures, feedback rates per variant, and how well the
LLM judge agrees with the people who rated requests, over the request log of a time window.

A rating above 0 counts as positive (thumbs up is +1, thumbs down -1; the review queue counts
ratings at or below 0 as low). Judge agreement compares the judge's verdict (grade >= 0.5 is
positive) with each rated request's rating, so nobody trusts a judge that disagrees with humans.
Reading logged texts for the judge is a use of the log: Tier 2 logs need an `evaluate` approval
covering `logs:VARIANT`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from typing import Any

from sqlalchemy import select

from tuneloop.errors import InvalidRequest
from tuneloop.evaluate import traffic
from tuneloop.governance import require
from tuneloop.governance.tiers import Actor, Resource
from tuneloop.store import utcnow
from tuneloop.store.serving import Feedback, RequestLog

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_window(since: str | dt.timedelta | dt.datetime, until: dt.datetime | None = None
                 ) -> tuple[dt.datetime, dt.datetime]:
    """The window [start, end): `since` is a duration such as "24h" / "7d" or a start time."""
    end = until or utcnow()
    if isinstance(since, dt.datetime):
        start = since if since.tzinfo else since.replace(tzinfo=dt.UTC)
    elif isinstance(since, dt.timedelta):
        start = end - since
    else:
        match = _DURATION.match(since)
        if not match:
            raise InvalidRequest(f"--since {since!r} is not a duration",
                                 hint="use a number and a unit: 30m, 24h, 7d, 2w")
        start = end - dt.timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    return start, end


def cohen_kappa(a: list[bool], b: list[bool]) -> float | None:
    """Agreement beyond chance between two binary raters (None when chance explains it all)."""
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    pa, pb = sum(a) / n, sum(b) / n
    expected = pa * pb + (1 - pa) * (1 - pb)
    return None if expected >= 1 else (observed - expected) / (1 - expected)


def evaluate_online(project: Any, actor: Actor, *, since: str | dt.timedelta | dt.datetime = "24h",
                    until: dt.datetime | None = None, variant: str | None = None,
                    judge_model: str | None = None, judge: Any = None,
                    judge_limit: int = 200) -> dict[str, Any]:
    """Per-variant latency, error and feedback figures over the window; judge agreement if asked.

    `judge_model` names a model for `LLMJudge`; Python callers may pass a metric as `judge`.
    Requests are counted by `evaluate.traffic`'s rules, as `tuneloop monitor` counts them;
    shadow copies are reported apart, under `shadow` (users never saw them: no feedback).
    """
    start, end = parse_window(since, until)
    with project.store.session(write=False) as session:
        query = select(RequestLog).where(RequestLog.created_at >= start,
                                         RequestLog.created_at < end,
                                         RequestLog.variant.is_not(None))
        if variant:
            query = query.where(RequestLog.variant == variant)
        logs = list(session.scalars(query.order_by(RequestLog.created_at)))
        ids = [log.id for log in logs]
        feedback: dict[str, list[Feedback]] = defaultdict(list)
        for start_i in range(0, len(ids), 500):
            chunk = ids[start_i:start_i + 500]
            for fb in session.scalars(select(Feedback).where(Feedback.request_id.in_(chunk))
                                      .order_by(Feedback.id)):
                feedback[fb.request_id].append(fb)
    summed = {rid: traffic.summarize_feedback((fb.rating, bool(fb.corrected)) for fb in items)
              for rid, items in feedback.items()}
    by_variant: dict[str, list[RequestLog]] = defaultdict(list)
    shadows: dict[str, list[RequestLog]] = defaultdict(list)
    for log in logs:
        (shadows if log.shadow_of else by_variant)[str(log.variant)].append(log)
    result: dict[str, Any] = {"window": {"start": start.isoformat(timespec="seconds"),
                                         "end": end.isoformat(timespec="seconds")},
                              "variants": {}}
    if judge is None and judge_model:
        from tuneloop.evaluate.metrics.judge import LLMJudge

        judge = LLMJudge(model=judge_model, use_reference=False)
    for name in sorted(set(by_variant) | set(shadows)):
        rows = by_variant.get(name, [])
        data = _figures(rows, summed)
        if name in shadows:
            data["shadow"] = traffic.shadow_figures(
                (_logged(r), r.finish_reason or "") for r in shadows[name])
        rated = [(r, rating) for r, rating in ((r, _last_rating(feedback[r.id])) for r in rows)
                 if rating is not None]
        if judge is not None and rated:
            data["judge_agreement"] = _agreement(project, actor, judge, name,
                                                 rated[:judge_limit])
        result["variants"][name] = data
    # Routed requests by the slice their router predicted: a degrading kind of question shows.
    by_slice: dict[str, list[RequestLog]] = defaultdict(list)
    for log in logs:
        if log.predicted_slice is not None and log.shadow_of is None:
            by_slice[log.predicted_slice].append(log)
    result["slices"] = {name: _figures(rows, summed) for name, rows in sorted(by_slice.items())}
    return result


def _logged(log: RequestLog) -> traffic.Logged:
    return traffic.Logged(log.id, log.status, log.total_ms, log.ttft_ms, log.prompt_tokens,
                          log.completion_tokens)


def _figures(rows: list[RequestLog],
             feedback: dict[str, traffic.RequestFeedback]) -> dict[str, Any]:
    """Requests, errors, latency and feedback of one group of served requests."""
    data = traffic.figures((_logged(r) for r in rows), feedback)
    return {"requests": data.requests, "errors": data.errors, "latency": data.latency(),
            "feedback": data.feedback()}


def _last_rating(items: list[Feedback]) -> int | None:
    # A person may change their mind: the newest rating is the one that counts.
    ratings = [fb.rating for fb in items if fb.rating is not None]
    return ratings[-1] if ratings else None


def _agreement(project: Any, actor: Actor, judge: Any, variant: str,
               rated: list[tuple[RequestLog, int]]) -> dict[str, Any]:
    from tuneloop.evaluate.metrics.judge import judge_messages

    tier = max(r.tier for r, _ in rated)
    require(project.store, actor, "evaluate", [Resource("logs", variant, tier)],
            purpose=f"judge agreement with human ratings for {variant}")
    chats = []
    for log, _ in rated:
        question = next((str(m.get("content") or "") for m in reversed(log.prompt or [])
                         if isinstance(m, dict) and m.get("role") == "user"), "")
        chats.append(judge_messages(question, log.output, None, judge.rubric, judge.scale))
    grades = judge.grade(chats, project)
    human, machine = [], []
    for (_, rating), grade in zip(rated, grades, strict=True):
        if grade is None:
            continue
        human.append(rating > 0)
        machine.append(grade >= 0.5)
    n = len(human)
    agree = sum(h == m for h, m in zip(human, machine, strict=True))
    return {"n": n, "unparsed": len(rated) - n,
            "agreement": agree / n if n else None,
            "kappa": cohen_kappa(human, machine),
            "judge_positive_rate": sum(machine) / n if n else None,
            "human_positive_rate": sum(human) / n if n else None}
