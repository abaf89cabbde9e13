"""Property-based fuzzing of the API from its own OpenAPI schema (schemathesis + hypothesis).

Whatever the input: no 5xx, every error is an OpenAI error body, and no request can make the
server open anything but a configured variant (the `model` field is the classic path-traversal
hole of model servers that accept file paths).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.test_serve_support import (
    close_engines,
    live_server,
    llama_loader,
    make_keys,
    make_project,
)
from tuneloop.serve import requestlog
from tuneloop.serve.app import create_app

VARIANTS = {"base", "candidate", "shadowy"}
TRAVERSALS = ["../../../../etc/passwd", "/etc/passwd", "..", "./base", "base/../../x",
              "file:///etc/passwd", "bundled:smollm2-135m", "%2e%2e%2fetc%2fpasswd",
              "base\x00.gguf", "C:\\Windows\\win.ini", "~/.ssh/id_rsa", "http://127.0.0.1:1/v1"]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    mp = pytest.MonkeyPatch()
    mp.delenv("TUNELOOP_DATABASE_URL", raising=False)
    project = make_project(Path(tmp_path_factory.mktemp("fuzz")) / "proj")
    keys = make_keys(project)
    loader = llama_loader(project)
    asked: list[str] = []

    def recording_loader(name: str) -> Any:
        asked.append(name)
        return loader(name)

    app = create_app(project, variant_loader=recording_loader)
    with live_server(app) as url:
        yield {"url": url, "keys": keys, "asked": asked, "project": project}
    close_engines(loader)
    project.close()
    mp.undo()


def assert_openai_error(response: Any) -> None:
    if response.status_code < 400 or "json" not in response.headers.get("content-type", ""):
        return
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"message", "type", "param", "code"} <= set(body["error"]), body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


@pytest.mark.slow
def test_api_never_5xx_and_errors_are_openai_shaped(fuzz_server: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {fuzz_server['keys'].internal}"}
    api = schemathesis.openapi.from_url(fuzz_server["url"] + "/openapi.json", headers=headers)
    # Every endpoint is fuzzed; valid chat requests get a share of their own, so the fuzz still
    # reaches generation now that the schema also lists the governance API.
    chat = api["/v1/chat/completions"]["POST"].as_strategy(GenerationMode.POSITIVE)
    # The schema holds some forty operations: chat and feedback (the two asserted on below)
    # get a third of the cases each, so their coverage does not depend on the run's luck.
    feedback = api["/v1/feedback"]["POST"].as_strategy(GenerationMode.POSITIVE)
    cases = st.one_of(chat, feedback, st.one_of(api.as_strategy(GenerationMode.POSITIVE),
                                                 api.as_strategy(GenerationMode.NEGATIVE)))
    seen: set[str] = set()

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck),
              database=None)
    @given(case=cases, reachable=st.booleans())
    def check(case: Any, reachable: bool) -> None:
        seen.add(f"{case.method} {case.path}")
        if reachable and isinstance(case.body, dict) and "model" in case.body:
            # Half the bodies name a real alias and end with a question, so the fuzz reaches
            # routing, prompt building, generation (with the fuzzed parameters: stops, seeds,
            # temperatures, streaming) and logging rather than stopping at the 404 or at an
            # empty conversation.
            case.body["model"] = "assistant"
            # The alias's model has no tool support: tools make a (tested) 400, not an answer;
            # a fuzzed JSON Schema is rarely one, so only text and JSON mode stay.
            for field in ("tools", "tool_choice"):
                case.body.pop(field, None)
            # Within this server's limits (64 tokens, 4 stops: over them is a tested 400), so
            # that a reachable body is a valid one more often than the fuzz's luck allows.
            for field in ("max_tokens", "max_completion_tokens"):
                if isinstance(case.body.get(field), int) and case.body[field] > 64:
                    case.body[field] = 64
            if isinstance(case.body.get("stop"), list):
                case.body["stop"] = case.body["stop"][:4]
            fmt = case.body.get("response_format")
            if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
                case.body.pop("response_format")
            if isinstance(case.body.get("messages"), list):
                case.body["messages"] = [m for m in case.body["messages"] if not isinstance(m, dict)
                                         or (m.get("role") != "tool" and not m.get("tool_calls"))]
                case.body["messages"].append({"role": "user", "content": "What is new?"})
        response = case.call(base_url=fuzz_server["url"], headers=headers, timeout=30)
        assert response.status_code < 500, (case.as_curl_command(), response.text[:300])
        assert_openai_error(response)
        assert set(fuzz_server["asked"]) <= VARIANTS

    check()
    assert "POST /v1/chat/completions" in seen and "POST /v1/feedback" in seen
    # A streamed request's row is written when its stream closes, which can be just after the
    # client read the last event: wait for it rather than race it.
    deadline = time.monotonic() + 30
    while True:
        statuses = {r.status for r in requestlog.recent(fuzz_server["project"].store,
                                                         limit=1000)}
        if 200 in statuses or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert 200 in statuses, f"the fuzz never produced a valid request: {sorted(statuses)}"


@pytest.mark.slow
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=st.sampled_from(TRAVERSALS) | st.text(min_size=1, max_size=80),
       public=st.booleans())
def test_no_model_name_reaches_anything_but_a_configured_variant(
        fuzz_server: dict[str, Any], model: str, public: bool) -> None:
    key = fuzz_server["keys"].public if public else fuzz_server["keys"].internal
    response = httpx.post(fuzz_server["url"] + "/v1/chat/completions",
                          headers={"authorization": f"Bearer {key}"},
                          json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code < 500
    if model not in VARIANTS | {"assistant"} or public:
        assert response.status_code in (400, 404), response.text
        assert_openai_error(response)
        assert "root:x:0:0" not in response.text  # no file content ever comes back
    assert set(fuzz_server["asked"]) <= VARIANTS
