"""Which variant answers a request: the `model` field names an application alias or a variant.

Aliases follow their rollout (read from the store and cached for a couple of seconds, so every
replica sees a change within that time). Internal callers may also name any configured variant
directly, to try it; public callers only ever reach a variant through an alias's rollout, and an
unknown or forbidden name gets the same 404, so public callers learn no variant names.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

from tuneloop import rollout
from tuneloop.config import NAME_PATTERN
from tuneloop.governance.tiers import Actor
from tuneloop.project import Project
from tuneloop.serve.errors import ApiError

STATE_TTL_S = 2.0
_NAME = re.compile(NAME_PATTERN)


@dataclass(frozen=True)
class Route:
    """Where one request goes: the variant that answers and those that shadow it."""

    variant: str
    alias: str | None
    shadows: tuple[str, ...] = ()


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

    def resolve(self, actor: Actor, model: str) -> Route:
        """The route for `actor` asking for `model`, or a 404 ApiError."""
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
            return Route(variant, model, tuple(state.shadows(actor.audience)))
        if actor.audience == "internal" and model in self.variant_names():
            return Route(model, None)
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
