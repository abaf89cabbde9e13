"""Which variant answers a request: the `model` field names an application alias or a variant.

Aliases follow their rollout (read from the store and cached for a couple of seconds, so every
replica sees a change within that time). A rollout entry may be a routed variant: its router
reads the user's message and the request goes to the variant mapped to the predicted slice (the
fallback when unsure); the route says which slice, how sure, and which routed variant chose.
Internal callers may also name any configured variant (or routed variant) directly, to try it;
public callers only ever reach a variant through an alias's rollout, and an unknown or forbidden
name gets the same 404, so public callers learn no variant names.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuneloop import rollout
from tuneloop.config import NAME_PATTERN
from tuneloop.governance.tiers import Actor
from tuneloop.project import Project
from tuneloop.serve.errors import ApiError

if TYPE_CHECKING:
    from tuneloop.router import QueryRouter, RoutedVariant

STATE_TTL_S = 2.0
_NAME = re.compile(NAME_PATTERN)


@dataclass(frozen=True)
class Route:
    """Where one request goes: the variant that answers and those that shadow it."""

    variant: str
    alias: str | None
    shadows: tuple[str, ...] = ()
    routed_by: str | None = None  # the routed variant that chose `variant`
    slice: str | None = None  # the slice its router predicted for the message
    confidence: float | None = None

    @property
    def entry(self) -> str:
        """The name the alias's rollout lists: the routed variant, or the variant itself."""
        return self.routed_by or self.variant


def not_found(model: str) -> ApiError:
    """The one 404 for a model the caller may not see, whether or not it exists."""
    shown = model if _NAME.match(model) else "(invalid name)"
    return ApiError(404, f"the model {shown!r} does not exist or you do not have access to it; "
                         "GET /v1/models lists the models you may use",
                    code="model_not_found", param="model")


class Router:
    """Resolves model names for callers, with a short cache of each alias's rollout."""

    def __init__(self, project: Project, ttl_s: float = STATE_TTL_S) -> None:
        self.project = project
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._states: dict[str, tuple[float, rollout.AliasState]] = {}
        self._aliases: tuple[float, list[str]] = (0.0, [])
        self._routed: dict[str, tuple[float, RoutedVariant | None, QueryRouter | None]] = {}

    def _state(self, alias: str) -> rollout.AliasState:
        now = time.monotonic()
        with self._lock:
            hit = self._states.get(alias)
        if hit is not None and hit[0] > now:
            return hit[1]
        state = rollout.state(self.project, alias)
        with self._lock:
            self._states[alias] = (now + self.ttl_s, state)
        return state

    def aliases(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            expires, names = self._aliases
        if expires > now:
            return names
        names = rollout.aliases(self.project)
        with self._lock:
            self._aliases = (now + self.ttl_s, names)
        return names

    def variant_names(self) -> list[str]:
        return [v.name for v in self.project.config.variants]

    def routed(self, name: str) -> tuple[RoutedVariant | None, QueryRouter | None]:
        """The routed variant `name` and its loaded router (None, None for a plain variant)."""
        now = time.monotonic()
        with self._lock:
            hit = self._routed.get(name)
        if hit is not None and hit[0] > now:
            return hit[1], hit[2]
        from tuneloop.router import find_routed

        found = find_routed(self.project, name)
        router = found.router_record(self.project).load() if found is not None else None
        with self._lock:
            self._routed[name] = (now + self.ttl_s, found, router)
        return found, router

    def choose(self, name: str, alias: str | None, messages: Sequence[dict[str, Any]],
               shadows: tuple[str, ...] = ()) -> Route:
        """The route to entry `name`: itself, or the variant its router picks for the message."""
        found, router = (None, None) if name in self.variant_names() else self.routed(name)
        if found is None or router is None:
            return Route(name, alias, shadows)
        from tuneloop.router import message_text

        choice = found.choose(router.predict([message_text(messages)])[0])
        return Route(choice.variant, alias, shadows, found.name, choice.slice, choice.confidence)

    def resolve(self, actor: Actor, model: str,
                messages: Sequence[dict[str, Any]] = ()) -> Route:
        """The route for `actor` asking for `model` with `messages`, or a 404 ApiError."""
        # Only plain names are ever looked up: a model field can never name a path or URL.
        if not _NAME.match(model):
            raise not_found(model)
        if model in self.aliases():
            state = self._state(model)
            variant = state.route(actor.name, actor.audience)
            if variant is None and not state.entries and actor.audience == "internal":
                # A fresh project: its first variant answers internal callers until a rollout.
                variant = next(iter(self.variant_names()), None)
            if variant is None:
                raise not_found(model)
            shadows = tuple(self.choose(s, model, messages).variant
                            for s in state.shadows(actor.audience))
            return self.choose(variant, model, messages, shadows)
        if actor.audience == "internal" and model in self.variant_names():
            return Route(model, None)
        if actor.audience == "internal" and self.routed(model)[0] is not None:
            return self.choose(model, None, messages)  # internal callers may try one directly
        raise not_found(model)

    def models_for(self, actor: Actor) -> list[str]:
        """The model names this caller may use."""
        names = []
        for alias in self.aliases():
            state = self._state(alias)
            if state.route(actor.name, actor.audience) is not None or (
                    actor.audience == "internal" and not state.entries and self.variant_names()):
                names.append(alias)
        if actor.audience == "internal":
            names.extend(n for n in self.variant_names() if n not in names)
        return names
