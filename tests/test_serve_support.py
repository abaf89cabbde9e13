"""Helpers for the serving tests: a project with variants, keys, and a live server on loopback.

No tests here. `EchoEngine` answers instantly and deterministically; it is a stand-in used only
where the point is the server's own machinery under load (routing, logging, limits, crashes), not
what a model says, and it goes through the same `Engine` interface as the real engines.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from tuneloop import Project
from tuneloop.engines.base import Completion, Delta, Engine, GenerationParams, Message
from tuneloop.errors import EngineError
from tuneloop.governance import principals

CONFIG = """\
version: 1
task:
  name: serve-test
  system_prompt: You answer briefly.
variants:
  - name: base
    generation: {max_tokens: 16, temperature: 0}
  - name: candidate
    prompt: You answer very briefly.
    generation: {max_tokens: 16, temperature: 0}
  - name: shadowy
    generation: {max_tokens: 16, temperature: 0}
server:
  app_alias: assistant
  max_output_tokens: 64
  max_input_tokens: 200
  max_body_bytes: 20000
  rate_limit_per_minute: 1000
  queue_size: 64
"""


class EchoEngine(Engine):
    """Test stand-in: answers `echo(<variant>): <last user message>` word by word, instantly.

    Used where what matters is the server (routing, limits, logging under concurrency, crashes),
    not what a model says; `delay_s` lets a test hold requests in flight, and a message
    starting with FAIL makes a stream fail after two words, as an engine error would.
    """

    kind = "echo"

    def __init__(self, label: str, delay_s: float = 0.0) -> None:
        self.label = label
        self.model_name = label
        self.delay_s = delay_s
        self.closed_streams = 0

    def _answer(self, messages: Sequence[Message], params: GenerationParams) -> list[str]:
        last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        words = f"echo({self.label}): {last}".split()
        return [w + " " for w in words][: params.max_tokens]

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return sum(len(str(m.get("content", "")).split()) + 3 for m in messages)

    def chat(self, messages: Sequence[Message], params: GenerationParams) -> Completion:
        start = time.perf_counter()
        words = self._answer(messages, params)
        time.sleep(self.delay_s * len(words))
        total = time.perf_counter() - start
        return Completion("".join(words).strip(), "stop", self.count_tokens(messages), len(words),
                          total / 2, total, self.label)

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> Iterator[Delta]:
        start = time.perf_counter()
        words = self._answer(messages, params)
        sent = 0
        try:
            for word in words:
                if sent == 2 and "FAIL" in words[1]:
                    raise EngineError(f"engine {self.label} failed mid-stream (test trigger)")
                time.sleep(self.delay_s)
                sent += 1
                yield Delta(word)
            total = time.perf_counter() - start
            yield Delta("", Completion("".join(words).strip(), "stop",
                                       self.count_tokens(messages), sent, total / 2, total,
                                       self.label))
        finally:
            if sent < len(words):
                self.closed_streams += 1


def echo_loader(project: Project, delay_s: float = 0.0) -> Any:
    """A variant loader whose variants run on `EchoEngine` (prompt building stays real)."""
    from tuneloop.variants import get_variant

    engines: dict[str, EchoEngine] = {}

    def load(name: str) -> Any:
        variant = get_variant(project, name)
        variant._engine = engines.setdefault(name, EchoEngine(name, delay_s))
        return variant

    load.engines = engines  # type: ignore[attr-defined]
    return load


def make_project(root: Path, config: str = CONFIG) -> Project:
    """A project with three variants, its creator as admin."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "tuneloop.yaml").write_text(config, encoding="utf-8")
    Project.init(root).close()
    return Project.open(root)


@dataclass
class Keys:
    internal: str
    internal2: str
    public: str
    public2: str


def make_keys(project: Project) -> Keys:
    """API keys for two internal developers and two public users."""
    admin = project.actor()

    def key(name: str, audience: str) -> str:
        return principals.create_key(project.store, admin, name, audience=audience).secret

    return Keys(key("ivy", "internal"), key("ike", "internal"), key("pam", "public"),
                key("pete", "public"))


@contextmanager
def live_server(app: Any) -> Iterator[str]:
    """Run `app` under uvicorn on a free loopback port in a thread; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 180  # the PII recognisers load at startup
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
