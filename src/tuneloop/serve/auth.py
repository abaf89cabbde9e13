"""Bearer API keys: who is calling. Lookups are cached for a few seconds because every request
needs one; a revoked key therefore stops working within `ttl_s` seconds, on every replica."""

from __future__ import annotations

import hashlib
import threading
import time

from tuneloop.errors import PermissionDenied
from tuneloop.governance.principals import authenticate
from tuneloop.governance.tiers import Actor
from tuneloop.serve.errors import ApiError
from tuneloop.store import Store

DEFAULT_TTL_S = 2.0
MAX_ENTRIES = 10_000


def bearer_key(authorization: str | None) -> str | None:
    """The key of an `Authorization: Bearer KEY` header (any case, any spacing), or None."""
    scheme, _, key = (authorization or "").strip().partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None


class KeyCache:
    """Bearer key → Actor, remembered for `ttl_s`; unknown keys are never cached."""

    def __init__(self, store: Store, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Actor]] = {}

    @staticmethod
    def bucket(authorization: str | None) -> str:
        """The rate-limit bucket of a request: the hash of the key it carries, parsed the way
        authentication parses it (so another case or spacing of the header is the same bucket)."""
        key = bearer_key(authorization) or ""
        return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()

    def cached(self, authorization: str | None) -> Actor | None:
        """The caller if its key was authenticated moments ago (no store lookup), else None."""
        key = bearer_key(authorization)
        if not key:
            return None
        digest = hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()
        with self._lock:
            hit = self._entries.get(digest)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def actor(self, authorization: str | None) -> Actor:
        """The caller behind an `Authorization: Bearer ...` header, or a 401 ApiError."""
        if not authorization:
            raise ApiError(401, "missing API key: send it as 'Authorization: Bearer tl_...'",
                           code="missing_api_key")
        key = bearer_key(authorization)
        if not key:
            raise ApiError(401, "the Authorization header must be 'Bearer <API key>'",
                           code="invalid_api_key")
        digest = hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            actor = authenticate(self.store, key)
        except PermissionDenied as exc:
            raise ApiError(401, exc.message, code="invalid_api_key") from None
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()  # bounded memory; the next lookups refill it
            self._entries[digest] = (now + self.ttl_s, actor)
        return actor
