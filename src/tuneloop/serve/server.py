"""The `Server`: what the routes of the serving app share (the project, the key cache, limits,
metrics, the variants in use, the shadow pool), and how a request is authenticated, gated,
checked for public use and logged.

Its own module, below the app and its routers: serve/app.py builds one per app, and the routers
(chat, embeddings, governance) take it, without importing the app.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
from fastapi import Request

from tuneloop import rollout
from tuneloop.engines.base import GenerationParams
from tuneloop.governance.tiers import Actor
from tuneloop.project import Project
from tuneloop.serve import requestlog
from tuneloop.serve.auth import DEFAULT_TTL_S, KeyCache
from tuneloop.serve.errors import TYPES, ApiError
from tuneloop.serve.limits import Admission, RateLimiter
from tuneloop.serve.metrics import Metrics
from tuneloop.serve.routing import Route, Router

VariantLoader = Callable[[str], Any]
MAX_PENDING_SHADOWS = 8
PUBLIC_CHECK_TTL_S = 2.0
FAILED_AUTH_PER_MINUTE = 10  # per client address: bounds key guessing and what it costs us
UNAUTHENTICATED_LOG_ROWS_PER_MINUTE = 10  # for the whole process; the rest are only counted


class Server:
    """What the routes share: the project, caches, limits, metrics and the variants in use."""

    def __init__(self, project: Project, *, variant_loader: VariantLoader | None = None,
                 auth_ttl_s: float = DEFAULT_TTL_S) -> None:
        self.project = project
        self.store = project.store
        self.config = project.config.server
        self.entities = list(project.config.privacy.redact)
        self.keys = KeyCache(self.store, auth_ttl_s)
        self.limiter = RateLimiter(self.config.rate_limit_per_minute)
        self.failures = RateLimiter(FAILED_AUTH_PER_MINUTE, what="this address")
        self._unauthenticated_rows = RateLimiter(UNAUTHENTICATED_LOG_ROWS_PER_MINUTE)
        self.admission = Admission(self.config.queue_size)
        self.metrics = Metrics()
        self.metrics.in_flight.set_function(lambda: self.admission.in_flight)
        self.router = Router(project)
        self._loader = variant_loader or self._load_variant
        self._variants: dict[str, Any] = {}
        self._gates: weakref.WeakKeyDictionary[Any, anyio.Semaphore] = (
            weakref.WeakKeyDictionary())
        self._lock = threading.Lock()
        self._shadows = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tuneloop-shadow")
        self._shadow_pending = 0
        self._public_ok: dict[tuple[str, str], tuple[float, bool]] = {}

    def authenticate(self, request: Request) -> Actor:
        """The caller, or a 401; an address with too many failed attempts gets a 429 before its
        key is even looked up. Every rejection is counted in the metrics."""
        known = self.keys.cached(request.headers.get("authorization"))
        if known is not None:  # a key that just worked passes even from a blocked address
            return known
        address = request.client.host if request.client else "-"
        try:
            self.failures.check(address)
        except ApiError:
            self.metrics.unauthenticated.labels("address_limited").inc()
            raise
        try:
            return self.keys.actor(request.headers.get("authorization"))
        except ApiError as exc:
            self.failures.try_take(address)
            self.metrics.unauthenticated.labels(exc.code or "invalid_api_key").inc()
            raise

    def _load_variant(self, name: str) -> Any:
        from tuneloop.variants import get_variant

        return get_variant(self.project, name)

    def variant(self, name: str) -> Any:
        """The variant of this name, built once (its engine is shared by every request)."""
        with self._lock:
            found = self._variants.get(name)
        if found is None:
            found = self._loader(name)
            with self._lock:
                found = self._variants.setdefault(name, found)
        return found

    def gate(self, variant: Any) -> anyio.Semaphore | None:
        """The engine's turnstile: at most as many requests inside it as it runs at once.

        Requests wait for the engine here, in the event loop, never in a worker thread: a
        llama.cpp context (or the transformers lock) is held across a stream's tokens, and a
        stream needs a worker thread for each next token; if every worker thread sat blocked
        waiting for the context, the stream holding it could never finish (a deadlock under
        load). None for engines that take any number of requests (HTTP endpoints).
        """
        engine = variant.engine
        parallel = getattr(engine, "parallel", None)
        if not isinstance(parallel, int):
            if getattr(engine, "kind", "") == "openai":
                return None
            parallel = 1
        with self._lock:
            gate = self._gates.get(engine)
            if gate is None:
                gate = self._gates[engine] = anyio.Semaphore(max(1, parallel))
        return gate

    def prepare(self, variant: Any, messages: Sequence[dict[str, Any]],
                actor: Actor) -> tuple[Any, int]:
        """The prompt the variant will send (retrieval included) and its length in tokens."""
        prepared = variant.prepare(messages, actor)
        return prepared, variant.engine.count_tokens(prepared.messages)

    def check_public(self, route: Route, variant: Any) -> None:
        """Refuse (503) a Tier 2 variant to the public once its deploy-public approval is gone.

        Checked again every few seconds (cached), so a revocation stops public traffic quickly.
        """
        key = (route.alias or "", route.entry)
        now = time.monotonic()
        with self._lock:
            hit = self._public_ok.get(key)
        if hit is None or hit[0] <= now:
            allowed = route.alias is not None and rollout.public_approval_live(
                self.project, route.alias, route.entry, variant.resource)
            hit = (now + PUBLIC_CHECK_TTL_S, allowed)
            with self._lock:
                self._public_ok[key] = hit
        if not hit[1]:
            raise ApiError(503, f"the model {route.alias!r} is unavailable right now; retry later",
                           code="model_unavailable", headers={"Retry-After": "60"})

    def log(self, entry: requestlog.Entry) -> None:
        """Commit the request's log row, then count it in the metrics.

        Rows of requests that never authenticated are bounded (a flood of them is counted in the
        metrics, not written one row each).
        """
        if entry.principal is not None or self._unauthenticated_rows.try_take("-"):
            requestlog.write(self.store, self.entities, entry)
        error_type = TYPES.get(entry.status, "server_error") if entry.status >= 400 else None
        if entry.shadow_of is None:
            self.metrics.observe(entry.variant, entry.status, entry.total_ms / 1000,
                                 None if entry.ttft_ms is None else entry.ttft_ms / 1000,
                                 entry.prompt_tokens, entry.completion_tokens, error_type)

    def shadow(self, route: Route, messages: list[dict[str, Any]], actor: Actor,
               params: GenerationParams, request_id: str, subject: str | None = None) -> None:
        """Send a copy of the request to each shadow variant; answers are logged, never returned.

        Shadows run one at a time in the background, and are skipped when too many wait, so they
        never slow down or crowd out the requests users are waiting for.
        """
        for name in route.shadows:
            if name == route.variant:
                continue
            with self._lock:
                full = self._shadow_pending >= MAX_PENDING_SHADOWS
                if not full:
                    self._shadow_pending += 1
            if full:
                self._drop_shadow(name, actor, request_id, route.alias or "", subject)
                continue
            self._shadows.submit(self._run_shadow, name, messages, actor, params, request_id,
                                 route.alias or "", subject)

    def _drop_shadow(self, name: str, actor: Actor, request_id: str, alias: str,
                     subject: str | None) -> None:
        """Count a shadow request skipped because too many wait: in /metrics, and as a log row
        (status 503, finish_reason "dropped", no prompt) so evaluations know what is missing."""
        self.metrics.shadow_dropped.labels(name).inc()
        self.log(requestlog.Entry(
            id=requestlog.new_request_id(), model=alias, principal=actor.name,
            audience=actor.audience, variant=name, shadow_of=request_id, subject=subject,
            status=503, finish_reason="dropped",
            error=f"shadow dropped: {MAX_PENDING_SHADOWS} shadow requests were already pending"))

    def _run_shadow(self, name: str, messages: list[dict[str, Any]], actor: Actor,
                    params: GenerationParams, request_id: str, alias: str,
                    subject: str | None) -> None:
        entry = requestlog.Entry(id=requestlog.new_request_id(), model=alias, principal=actor.name,
                                 audience=actor.audience, variant=name, shadow_of=request_id,
                                 subject=subject, messages=messages)
        started = time.perf_counter()
        try:
            variant = self.variant(name)
            entry.tier = variant.tier
            result = variant.run(messages, actor, params)
            entry.chunk_ids = [str(getattr(h, "chunk_id", h)) for h in result.hits]
            entry.tier = requestlog.tier_of(entry.tier, result.hits)
            requestlog.record(entry, result.completion, started)
        except Exception as exc:
            entry.status, entry.error = 500, f"shadow failed: {exc}"
            entry.total_ms = (time.perf_counter() - started) * 1000
        finally:
            with self._lock:
                self._shadow_pending -= 1
        self.log(entry)

    def close(self) -> None:
        self._shadows.shutdown(wait=True, cancel_futures=True)
