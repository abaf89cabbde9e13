"""`tuneloop serve` on a real model: the bundled SmolLM2 on llama.cpp, called with the `openai` SDK.

The server is the real command in a subprocess; the answers come from the real engine, so these
tests check what the fast tests cannot: that a plain and a streamed answer to the same prompt at
temperature 0 are the same text, and that usage counts are the engine's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.test_serve_support import free_port, make_project
from tuneloop.governance import principals
from tuneloop.serve import requestlog

pytestmark = pytest.mark.slow

CONFIG = """\
version: 1
task:
  name: serve-real
  system_prompt: You are a helpful assistant. Answer in one short sentence.
variants:
  - name: base
    generation: {max_tokens: 12, temperature: 0}
server:
  app_alias: assistant
"""


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if k != "TUNELOOP_DATABASE_URL"}
    saved = os.environ.pop("TUNELOOP_DATABASE_URL", None)
    project = make_project(Path(tmp_path_factory.mktemp("real")) / "proj", CONFIG)
    key = principals.create_key(project.store, project.actor(), "sam").secret
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tuneloop", "-C", str(project.root), "serve",
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "tuneloop serve did not start"
            time.sleep(0.3)
        yield {"url": url, "key": key, "project": project}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        project.close()
        if saved is not None:
            os.environ["TUNELOOP_DATABASE_URL"] = saved


def test_real_model_plain_and_streamed_answers_are_the_same(real_server: dict[str, Any]) -> None:
    api = openai.OpenAI(base_url=real_server["url"] + "/v1", api_key=real_server["key"],
                        max_retries=0, timeout=120)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    plain = api.chat.completions.create(model="assistant", messages=messages)
    text = plain.choices[0].message.content
    assert text and plain.usage.completion_tokens <= 12 and plain.usage.prompt_tokens > 5
    chunks = list(api.chat.completions.create(model="assistant", messages=messages, stream=True,
                                              stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    rows = requestlog.recent(real_server["project"].store)
    assert [r.status for r in rows] == [200, 200]
    assert rows[0].output == rows[1].output and rows[0].stream != rows[1].stream
    assert rows[0].completion_tokens == rows[1].completion_tokens == plain.usage.completion_tokens


def test_real_server_lists_models_and_refuses_unknown_ones(real_server: dict[str, Any]) -> None:
    api = openai.OpenAI(base_url=real_server["url"] + "/v1", api_key=real_server["key"],
                        max_retries=0)
    assert [m.id for m in api.models.list()] == ["assistant", "base", "all-minilm-l6-v2"]
    with pytest.raises(openai.NotFoundError):
        api.chat.completions.create(model="../../tuneloop.yaml",
                                    messages=[{"role": "user", "content": "hi"}])
