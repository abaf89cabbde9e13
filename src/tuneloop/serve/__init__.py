"""Serving: an OpenAI-compatible API with auth, rollout routing, limits, request log, metrics.

`create_app` is imported lazily so that `tuneloop rollout` and `tuneloop --help` do not load
FastAPI.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from tuneloop.serve.app import create_app

        return create_app
    raise AttributeError(name)
