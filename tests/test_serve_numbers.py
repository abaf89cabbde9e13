"""One set of numbers: shadow drops counted, create_app's options honoured, TTFT from arrival."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import openai
import pytest

from tests.test_serve_support import (
    close_engines,
    live_server,
    llama_loader,
    make_keys,
    make_project,
)
from tuneloop import rollout
from tuneloop.engines.base import Delta, Engine, GenerationParams, Message
from tuneloop.serve import requestlog
from tuneloop.serve.app import MAX_PENDING_SHADOWS, create_app


class Held(Engine):
    """The real engine, except that each answer waits until the test lets it go: the only way to
    keep shadow requests pending on demand (a fault injector, like FailingStream)."""

    kind = "llama.cpp"

    def __init__(self, engine: Engine, release: threading.Event) -> None:
        self.engine, self.release = engine, release
        self.model_name, self.context_length = engine.model_name, engine.context_length

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return self.engine.count_tokens(messages)

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> Iterator[Delta]:
        self.release.wait(60)
        return self.engine.stream(messages, params)


def retention_threads() -> int:
    return sum(t.name == "tuneloop-retention" and t.is_alive() for t in threading.enumerate())


def test_shadow_requests_dropped_under_load_are_counted_in_metrics_and_the_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    project = make_project(tmp_path / "proj")
    keys = make_keys(project)
    rollout.set_stage(project, project.actor(), "assistant", "base", "internal")
    rollout.set_stage(project, project.actor(), "assistant", "shadowy", "shadow")
    release = threading.Event()
    loader = llama_loader(project, wrap={"shadowy": lambda engine: Held(engine, release)})
    sent = MAX_PENDING_SHADOWS + 4
    try:
        with live_server(create_app(project, variant_loader=loader, retention=False)) as url:
            api = openai.OpenAI(base_url=url + "/v1", api_key=keys.internal, max_retries=0)
            ids = [api.chat.completions.with_raw_response.create(
                model="assistant", messages=[{"role": "user", "content": f"hi {i}"}],
                max_tokens=2).headers["x-request-id"] for i in range(sent)]
            metrics = httpx.get(url + "/metrics", timeout=30,
                                headers={"authorization": f"Bearer {keys.internal}"}).text
            assert 'tuneloop_shadow_dropped_total{variant="shadowy"} 4.0' in metrics
            release.set()
            deadline = time.monotonic() + 60
            while len([r for r in requestlog.recent(project.store, 100) if r.shadow_of]) < sent:
                assert time.monotonic() < deadline, "the shadows were never all logged"
                time.sleep(0.1)
        shadows = [r for r in requestlog.recent(project.store, 100) if r.shadow_of]
        dropped = [r for r in shadows if r.finish_reason == "dropped"]
        assert len(dropped) == 4 and {r.status for r in dropped} == {503}
        assert {r.shadow_of for r in dropped} == set(ids[MAX_PENDING_SHADOWS:])
        assert all(r.variant == "shadowy" and "already pending" in r.error for r in dropped)
        assert sorted(r.status for r in shadows if r not in dropped) == [200] * 8
    finally:
        release.set()
        close_engines(loader)
        project.close()


def test_create_app_runs_retention_only_when_asked(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    project = make_project(tmp_path / "proj")
    try:
        before = retention_threads()
        with live_server(create_app(project, retention=False)):
            assert retention_threads() == before
        with live_server(create_app(project)):
            assert retention_threads() == before + 1
    finally:
        project.close()


def test_time_to_first_token_is_logged_from_arrival_streamed_or_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-streamed answer's TTFT now counts from the request's arrival, like a stream's: it
    includes the prompt building and the wait for the engine, so it is at least the engine's
    own figure for the same call."""
    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    project = make_project(tmp_path / "proj")
    keys = make_keys(project)
    loader = llama_loader(project)
    try:
        with live_server(create_app(project, variant_loader=loader, retention=False)) as url:
            api = openai.OpenAI(base_url=url + "/v1", api_key=keys.internal, max_retries=0)
            messages = [{"role": "user", "content": "one two three"}]
            plain = api.chat.completions.with_raw_response.create(model="base",
                                                                  messages=messages)
            with api.chat.completions.with_streaming_response.create(
                    model="base", messages=messages, stream=True) as streamed:
                streamed.read()
        for raw in (plain, streamed):
            row = requestlog.get(project.store, raw.headers["x-request-id"])
            assert row is not None and row.ttft_ms is not None
            assert 0 < row.ttft_ms <= row.total_ms
    finally:
        close_engines(loader)
        project.close()
