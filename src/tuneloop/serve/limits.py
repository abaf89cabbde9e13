"""What keeps the server up under any load: per-key rate limits, a per-address budget of failed
authentications (checked before authenticating), a bounded queue in front of the engine, and a cap
on request bodies. Memory is bounded because each of them is.

Rate limits are per process: with N replicas behind a load balancer a key gets up to N times its
limit. That is the documented trade-off for needing no shared counter.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio

from tuneloop.serve.errors import ApiError, error_body

MAX_BUCKETS = 10_000


class RateLimiter:
    """A token bucket per key: `per_minute` requests a minute, bursts up to the same number."""

    def __init__(self, per_minute: int, what: str = "this API key") -> None:
        self.capacity = float(per_minute)
        self.refill_per_s = per_minute / 60.0
        self.what = what
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> None:
        """Spend one token for `key`, or raise a 429 ApiError saying when to retry."""
        wait = self._spend(key, spend=True)
        if wait:
            raise ApiError(429, f"rate limit of {int(self.capacity)} requests per minute "
                                f"reached for {self.what}; retry in {wait} s",
                           code="rate_limit_exceeded", headers={"Retry-After": str(wait)})

    def check(self, key: str) -> None:
        """Raise the 429 that `take` would, without spending a token."""
        wait = self._spend(key, spend=False)
        if wait:
            raise ApiError(429, f"too many failed attempts from {self.what}; retry in {wait} s",
                           code="rate_limit_exceeded", headers={"Retry-After": str(wait)})

    def try_take(self, key: str) -> bool:
        """Spend one token for `key` if there is one; whether there was."""
        return not self._spend(key, spend=True)

    def _spend(self, key: str, *, spend: bool) -> int:
        """0 after (maybe) spending a token, else the seconds until one is there."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.refill_per_s)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return max(1, math.ceil((1.0 - tokens) / self.refill_per_s))
            self._buckets[key] = (tokens - 1.0 if spend else tokens, now)
            while len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)  # the least recently seen key starts afresh
            return 0


class Admission:
    """A bounded queue in front of the engine: at most `size` requests wait or run at once."""

    def __init__(self, size: int, retry_after_s: int = 1) -> None:
        self.size = size
        self.retry_after_s = retry_after_s
        self._lock = threading.Lock()
        self.in_flight = 0

    def acquire(self) -> Slot:
        """Take a place in the queue, or raise a 503 ApiError with Retry-After."""
        with self._lock:
            if self.in_flight >= self.size:
                raise ApiError(503, f"the server is busy ({self.size} requests queued); retry "
                                    "shortly", code="queue_full",
                               headers={"Retry-After": str(self.retry_after_s)})
            self.in_flight += 1
        return Slot(self)

    def _release(self) -> None:
        with self._lock:
            self.in_flight -= 1

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a place in the queue for the body of the block."""
        held = self.acquire()
        try:
            yield
        finally:
            held.release()


class Slot:
    """A place in the queue. Released once, explicitly or, as a safety net, when collected
    (a streamed response that never started still frees its place)."""

    def __init__(self, admission: Admission) -> None:
        self._admission: Admission | None = admission
        self._lock = threading.Lock()

    def release(self) -> None:
        """Give the place back; later calls do nothing."""
        with self._lock:
            admission, self._admission = self._admission, None
        if admission is not None:
            admission._release()

    def __del__(self) -> None:
        self.release()


Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]


class BodyLimit:
    """ASGI middleware: a body over `max_bytes` gets a 413 before the app reads any of it."""

    def __init__(self, app: ASGIApp, max_bytes: int,
                 on_reject: Callable[[dict[str, Any], int, str], None] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_reject = on_reject

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        too_big = False
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                too_big = False
        if too_big:
            await self._reject(scope, send)
            return
        # Read the body here (bounded) so a chunked upload cannot exceed the cap either.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._reject(scope, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        delivered = False

        async def replay() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: dict[str, Any], send: Send) -> None:
        message = f"request body larger than the server's limit of {self.max_bytes} bytes"
        if self.on_reject is not None:
            await anyio.to_thread.run_sync(self.on_reject, scope, 413, message)
        payload = json.dumps(error_body(413, message, code="request_too_large")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})
