"""Helpers for the serving tests: a project with variants, keys, real tiny models, and a live
server on loopback.

No tests here. The variants run on the real llama.cpp engine (`LlamaCppEngine`) over tiny random
llamas with the real SmolLM2 tokenizer, exported to GGUF by tuneloop's own exporter: each loads
in a fraction of a second and answers in milliseconds. Each variant has its own model (its own
seed), so two variants answer the same prompt differently and a test can tell which one answered
by comparing with what that variant's engine answers directly at temperature 0.
"""

from __future__ import annotations

import atexit
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloop import Project
from tuneloop.engines.base import Completion, Delta, Engine, GenerationParams, Message
from tuneloop.engines.llama_cpp import LlamaCppEngine
from tuneloop.errors import EngineError
from tuneloop.governance import principals
from tuneloop.governance.tiers import Actor
from tuneloop.serve.background import serve_in_background

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

# One model per variant name; a name not listed here gets the base model's seed.
VARIANT_SEEDS = {"base": 11, "candidate": 12, "shadowy": 13, "rag2": 14, "tuned": 15}
# A 4096-token context lets a test ask for thousands of tokens: the real way to keep a request
# generating (seconds) while a test disconnects, fills the queue or kills the server.
TINY_OPTIONS: dict[str, int] = {"max_position_embeddings": 4096}
LONG_ANSWER_TOKENS = 4000


class TinyModels:
    """Tiny GGUF models built on first use, once per test session, in one temporary folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()

    def path(self, variant: str) -> Path:
        """The GGUF file serving `variant` (built now if this session has not built it yet)."""
        from tuneloop.engines.testing import tiny_gguf

        with self._lock:
            return tiny_gguf(self.folder, seed=VARIANT_SEEDS.get(variant, VARIANT_SEEDS["base"]),
                             **TINY_OPTIONS)

    def paths(self, variants: Sequence[str]) -> dict[str, str]:
        """`{variant: gguf path}`, e.g. to hand to a server running in another process."""
        return {name: str(self.path(name)) for name in variants}


_models: TinyModels | None = None


def tiny_models() -> TinyModels:
    """The session's tiny models (the folder is removed when the test process exits)."""
    global _models
    if _models is None:
        folder = Path(tempfile.mkdtemp(prefix="tuneloop-serve-models-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _models = TinyModels(folder)
    return _models


def llama_loader(project: Project, paths: dict[str, str] | None = None,
                 wrap: dict[str, Any] | None = None) -> Any:
    """A variant loader whose variants run on the real `LlamaCppEngine` over tiny models.

    Prompt building, retrieval and generation are the real code; only the model files are
    tiny. `paths` maps variant names to GGUF files (default: the session's tiny models);
    `wrap[name](engine)` may wrap one variant's engine (see `FailingStream`). `load.engines`
    holds each variant's real engine, so a test can ask it directly for the expected answer.
    """
    from tuneloop.variants import get_variant

    engines: dict[str, LlamaCppEngine] = {}
    lock = threading.Lock()

    def load(name: str) -> Any:
        variant = get_variant(project, name)
        with lock:
            if name not in engines:
                path = paths[name] if paths is not None else tiny_models().path(name)
                # One thread: a tiny model gains nothing from more, and the test machine's
                # cores are shared (llama.cpp's worker threads spin while they wait).
                engines[name] = LlamaCppEngine(path, name=name, n_threads=1)
            engine: Engine = engines[name]
        if wrap and name in wrap:
            engine = wrap[name](engine)
        variant._engine = engine
        return variant

    load.engines = engines  # type: ignore[attr-defined]
    return load


def close_engines(loader: Any) -> None:
    """Free the models a `llama_loader` loaded."""
    for engine in loader.engines.values():
        engine.close()
    loader.engines.clear()


def direct_answer(loader: Any, variant: str, messages: list[Message],
                  actor: Actor | None = None, **overrides: Any) -> Completion:
    """What `variant` answers when asked directly, without the server: same prompt building
    (the variant's system prompt, retrieval under `actor`), same engine, the variant's
    generation settings with `overrides` (e.g. max_tokens)."""
    runnable = loader(variant)
    who = actor or runnable.project.actor()
    prepared = runnable.prepare(messages, who)
    return runnable.engine.chat(prepared.messages, runnable.params(**overrides))


def tokens_decoded(engine: LlamaCppEngine) -> int:
    """How many tokens llama.cpp has decoded on this engine's contexts so far (its own
    performance counters): proof of how much generation really ran."""
    import llama_cpp

    return sum(llama_cpp.llama_perf_context(llm._ctx.ctx).n_eval
               for llm in engine._contexts)


def chat_template_tokens(messages: list[Message]) -> int:
    """Prompt tokens of `messages` by the SmolLM2 tokenizer itself (transformers), as a check
    on the token counts the server reports."""
    from transformers import AutoTokenizer

    from tuneloop.engines.testing import smollm2_tokenizer_dir

    tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir())
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                        return_dict=True)["input_ids"]
    return len(ids)


class FailingStream(Engine):
    """The real engine, except that its stream raises EngineError after `after` text pieces.

    A fault injector, not a stand-in: the text before the failure is the real model's. It exists
    because llama.cpp cannot be made to fail in the middle of a generation on demand (a real
    failure there is a crashed or out-of-memory process), and the server's handling of exactly
    that case (an error event, not a silently truncated 200) must be tested.
    """

    kind = "llama.cpp"

    def __init__(self, engine: Engine, after: int = 2) -> None:
        self.engine = engine
        self.after = after
        self.model_name = engine.model_name
        self.context_length = engine.context_length

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return self.engine.count_tokens(messages)

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> Iterator[Delta]:
        inner = self.engine.stream(messages, params)

        def failing() -> Iterator[Delta]:
            sent = 0
            try:
                for delta in inner:
                    if sent == self.after:
                        raise EngineError(f"engine {self.model_name} failed mid-stream "
                                          "(injected fault)")
                    sent += bool(delta.text)
                    yield delta
            finally:
                inner.close()  # type: ignore[attr-defined]

        return failing()


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
    """API keys for two internal developers and two public users, made by the project's admin
    (a key on PostgreSQL, see `tests.conftest.project_admin`)."""
    from tests.conftest import project_admin

    admin = project_admin(project)

    def key(name: str, audience: str) -> str:
        return principals.create_key(project.store, admin, name, audience=audience).secret

    return Keys(key("ivy", "internal"), key("ike", "internal"), key("pam", "public"),
                key("pete", "public"))


def live_server(app: Any) -> AbstractContextManager[str]:
    """Run `app` under uvicorn on a free loopback port in a thread; yields the base URL."""
    return serve_in_background(app)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
