"""Figures of logged traffic: the one aggregation `tuneloop monitor` and `tuneloop eval online`
share, so the two never disagree about the same log.

The rules, in one place:

- **What counts**: requests a variant served to a user. Shadow copies (`shadow_of` set) are
  counted apart (`shadow_figures`): users never waited for them; a shadow copy skipped because
  too many were pending (`finish_reason` "dropped") is counted as dropped, not as a request.
- **An error** is any status of 400 or more (a client that went away, 499, included: nobody got
  the answer).
- **Latency** percentiles are over the requests that succeeded. **Time to first token** is
  measured from the request's arrival (streamed or not) and its percentiles are over the
  successful requests that have one: a missing value is left out, never read as zero.
- **Ratings**: a request's newest rating counts; above 0 is up, below 0 is down, 0 is neutral
  (neither); a request is corrected when any of its feedback carried a corrected answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tuneloop.evaluate.latency import percentiles

DROPPED = "dropped"


def is_error(status: int) -> bool:
    """Whether a logged status is an error (see the module's rules)."""
    return status >= 400


@dataclass(frozen=True)
class Logged:
    """What the aggregation reads of one request-log row."""

    id: str
    status: int
    total_ms: float
    ttft_ms: float | None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class RequestFeedback:
    """A request's feedback, summed up: newest rating, correction, whether any was given."""

    rating: int | None = None
    corrected: bool = False
    given: bool = False


def summarize_feedback(items: Iterable[tuple[int | None, bool]]) -> RequestFeedback:
    """Fold one request's feedback, oldest first, given as (rating, has a correction) pairs."""
    rating, corrected, given = None, False, False
    for item_rating, item_corrected in items:
        given = True
        rating = item_rating if item_rating is not None else rating
        corrected = corrected or item_corrected
    return RequestFeedback(rating, corrected, given)


@dataclass
class Figures:
    """One group of requests (a variant's, a slice's, a time bucket's)."""

    requests: int = 0
    errors: int = 0
    total_ms: list[float] = field(default_factory=list)  # successful requests
    ttft_ms: list[float] = field(default_factory=list)  # successful requests that have one
    prompt_tokens: int = 0
    completion_tokens: int = 0
    rates: list[float] = field(default_factory=list)  # decode tokens/s per request
    rated: int = 0
    up: int = 0
    down: int = 0
    neutral: int = 0
    corrected: int = 0
    with_feedback: int = 0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def total_p(self, q: int) -> float | None:
        return _percentile(self.total_ms, q)

    def ttft_p(self, q: int) -> float | None:
        return _percentile(self.ttft_ms, q)

    def latency(self) -> dict[str, Any]:
        """The latency summary `eval online` reports (the offline summary's keys)."""
        ok = len(self.total_ms)
        return {
            "n": ok,
            **{f"ttft_ms_p{p}": v
               for p, v in percentiles([t / 1000 for t in self.ttft_ms]).items()},
            **{f"total_ms_p{p}": v
               for p, v in percentiles([t / 1000 for t in self.total_ms]).items()},
            "tokens_per_s": float(np.median(self.rates)) if self.rates else 0.0,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "mean_completion_tokens": self.completion_tokens / ok if ok else 0.0,
        }

    def feedback(self) -> dict[str, Any]:
        """The feedback summary `eval online` reports."""
        rated = self.rated
        return {"rated": rated, "positive": self.up, "negative": self.down,
                "neutral": self.neutral,
                "positive_rate": self.up / rated if rated else None,
                "negative_rate": self.down / rated if rated else None,
                "corrections": self.corrected,
                "feedback_rate": self.with_feedback / self.requests if self.requests else None}


def _percentile(values: Sequence[float], q: int) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else None


def figures(rows: Iterable[Logged], feedback: dict[str, RequestFeedback]) -> Figures:
    """The figures of served requests `rows`, with `feedback` per request id."""
    out = Figures()
    for row in rows:
        out.requests += 1
        if is_error(row.status):
            out.errors += 1
        else:
            out.total_ms.append(row.total_ms)
            out.prompt_tokens += row.prompt_tokens
            out.completion_tokens += row.completion_tokens
            if row.ttft_ms is not None:
                out.ttft_ms.append(row.ttft_ms)
                decode_s = (row.total_ms - row.ttft_ms) / 1000
                if decode_s > 0 and row.completion_tokens > 0:
                    out.rates.append(row.completion_tokens / decode_s)
        given = feedback.get(row.id)
        if given is None:
            continue
        out.with_feedback += given.given
        out.corrected += given.corrected
        if given.rating is not None:
            out.rated += 1
            out.up += given.rating > 0
            out.down += given.rating < 0
            out.neutral += given.rating == 0
    return out


def shadow_figures(rows: Iterable[tuple[Logged, str]]) -> dict[str, Any]:
    """Shadow copies of one variant, given as (row, finish_reason): what ran and what was
    dropped (no feedback: nobody saw them)."""
    ran, dropped = [], 0
    for row, finish in rows:
        if finish == DROPPED:
            dropped += 1
        else:
            ran.append(row)
    data = figures(ran, {})
    return {"requests": data.requests, "errors": data.errors, "dropped": dropped,
            "latency": data.latency()}
