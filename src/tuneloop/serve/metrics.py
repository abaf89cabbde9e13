"""Prometheus metrics per variant: requests by status, latency histograms, tokens, errors.

Each app has its own registry so that several apps in one process (tests) do not collide; each
replica exposes its own figures and Prometheus sums them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    """The server's instruments, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("tuneloop_requests", "Chat completion requests",
                                ["variant", "status"], registry=self.registry)
        self.errors = Counter("tuneloop_errors", "Requests that ended in an error",
                              ["variant", "type"], registry=self.registry)
        self.latency = Histogram("tuneloop_request_seconds", "Total time of a request",
                                 ["variant"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.ttft = Histogram("tuneloop_time_to_first_token_seconds", "Time to first token",
                              ["variant"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.tokens = Counter("tuneloop_tokens", "Tokens processed", ["variant", "kind"],
                              registry=self.registry)
        self.unauthenticated = Counter("tuneloop_unauthenticated",
                                       "Requests rejected before authentication succeeded",
                                       ["reason"], registry=self.registry)
        self.shadow_dropped = Counter("tuneloop_shadow_dropped",
                                      "Shadow requests skipped because too many were pending",
                                      ["variant"], registry=self.registry)
        self.in_flight = Gauge("tuneloop_in_flight_requests", "Requests queued or running",
                               registry=self.registry)

    def observe(self, variant: str | None, status: int, total_s: float, ttft_s: float | None,
                prompt_tokens: int, completion_tokens: int, error_type: str | None) -> None:
        """Record one finished request."""
        name = variant or "-"
        self.requests.labels(name, str(status)).inc()
        if error_type:
            self.errors.labels(name, error_type).inc()
        if variant:
            self.latency.labels(name).observe(total_s)
            if ttft_s is not None:
                self.ttft.labels(name).observe(ttft_s)
            self.tokens.labels(name, "prompt").inc(prompt_tokens)
            self.tokens.labels(name, "completion").inc(completion_tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)
