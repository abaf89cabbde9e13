"""Simulated internal traffic for the demo: real HTTP requests to a real `tuneloop serve`, rated.

The questions are held-out tickets (never trained on); a simulated support agent rates each
answer against the reply a human wrote: thumbs up when it is close, otherwise thumbs down, and
for some of those the agent types the corrected answer. That is the only simulated part.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from tuneloop.project import Project


@dataclass
class TrafficReport:
    requests: int = 0
    ok: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0
    corrections: int = 0
    request_ids: list[str] = field(default_factory=list)


@contextmanager
def running_server(project: Project, port: int = 0) -> Iterator[str]:
    """`tuneloop serve` on loopback in a background thread; yields its base URL."""
    from tuneloop.serve.app import create_app
    from tuneloop.serve.background import serve_in_background

    with serve_in_background(create_app(project), port=port, ready_timeout_s=120,
                             shutdown_timeout_s=25) as base:
        yield base


def similarity(answer: str, reference: str) -> float:
    """ROUGE-L F1 between an answer and the human reply: what the simulated agent judges by."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return float(scorer.score(reference, answer)["rougeL"].fmeasure)


def send_traffic(base_url: str, users: list[tuple[str, str]], records: list[dict[str, Any]],
                 *, model: str, good_enough: float = 0.45, correct_every: int = 2,
                 progress: Any = None) -> TrafficReport:
    """Ask each held-out ticket as one of the internal users and leave their feedback."""
    report = TrafficReport(request_ids=[])
    with httpx.Client(base_url=base_url, timeout=300) as client:
        for i, record in enumerate(records):
            name, key = users[i % len(users)]
            messages = [m for m in record["messages"] if m["role"] != "assistant"]
            reference = next(m["content"] for m in reversed(record["messages"])
                             if m["role"] == "assistant")
            response = client.post("/v1/chat/completions",
                                   headers={"Authorization": f"Bearer {key}"},
                                   json={"model": model, "messages": messages,
                                         "user": name})
            report.requests += 1
            if progress is not None:
                progress()
            if response.status_code != 200:
                continue
            report.ok += 1
            request_id = response.headers.get("x-request-id") or response.json().get("id")
            report.request_ids.append(request_id)
            answer = response.json()["choices"][0]["message"]["content"]
            feedback: dict[str, Any] = {"request_id": request_id}
            if similarity(answer, reference) >= good_enough:
                feedback["rating"] = 1
                report.thumbs_up += 1
            else:
                feedback["rating"] = -1
                report.thumbs_down += 1
                if report.thumbs_down % correct_every == 1:
                    feedback["corrected_answer"] = reference
                    feedback["comment"] = "corrected by the support agent"
                    report.corrections += 1
            client.post("/v1/feedback", headers={"Authorization": f"Bearer {key}"},
                        json=feedback).raise_for_status()
    return report
