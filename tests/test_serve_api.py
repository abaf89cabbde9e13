"""The OpenAI-compatible API through the official `openai` SDK, against a server on loopback."""

from __future__ import annotations

import gc
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.test_serve_support import (
    CONFIG,
    LONG_ANSWER_TOKENS,
    FailingStream,
    chat_template_tokens,
    close_engines,
    direct_answer,
    live_server,
    llama_loader,
    make_keys,
    make_project,
    tokens_decoded,
)
from tuneloop.governance import principals
from tuneloop.serve import feedback, requestlog
from tuneloop.serve.app import create_app
from tuneloop.serve.errors import ApiError
from tuneloop.serve.limits import Admission

# Long answers (thousands of tokens) keep a request generating for seconds on the real engine,
# so a test can disconnect, or fill the queue, while it runs.
LONG_CONFIG = CONFIG.replace("max_output_tokens: 64", f"max_output_tokens: {LONG_ANSWER_TOKENS}")


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    project = make_project(tmp_path / "proj")
    keys = make_keys(project)
    loader = llama_loader(project)
    app = create_app(project, variant_loader=loader, auth_ttl_s=0.2)
    with live_server(app) as url:
        yield {"url": url, "project": project, "keys": keys, "loader": loader, "app": app}
    close_engines(loader)
    project.close()


@pytest.fixture
def long_served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A server that allows answers of thousands of tokens."""
    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    project = make_project(tmp_path / "proj", LONG_CONFIG)
    keys = make_keys(project)
    loader = llama_loader(project)
    with live_server(create_app(project, variant_loader=loader)) as url:
        yield {"url": url, "project": project, "keys": keys, "loader": loader}
    close_engines(loader)
    project.close()


def stored_output(served: dict[str, Any], messages: list[dict[str, str]], output: str) -> str:
    """`output` as the request log stores it: redacted together with the request's messages."""
    entities = served["project"].config.privacy.redact
    return requestlog.redact(entities, [m["content"] for m in messages] + [output])[0][-1]


def client(served: dict[str, Any], key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=served["url"] + "/v1", api_key=key, max_retries=0, timeout=30)


@pytest.mark.slow
def test_plain_completion_answers_and_logs_the_redacted_prompt(served: dict[str, Any]) -> None:
    api = client(served, served["keys"].internal)
    messages = [{"role": "user", "content": "mail me at ann@example.com"}]
    raw = api.chat.completions.with_raw_response.create(model="assistant", messages=messages)
    completion = raw.parse()
    # Nothing is rolled out, so the alias serves the base variant: its engine's own answer.
    expected = direct_answer(served["loader"], "base", messages)
    other = direct_answer(served["loader"], "candidate", messages)
    assert expected.text and other.text != expected.text
    assert completion.choices[0].message.content == expected.text
    assert completion.choices[0].finish_reason == expected.finish_reason
    assert completion.usage.completion_tokens == expected.completion_tokens
    # The prompt the model saw: the variant's system prompt, then the user's message.
    prompt = [{"role": "system", "content": "You answer briefly."}, *messages]
    assert completion.usage.prompt_tokens == chat_template_tokens(prompt)
    rid = raw.headers["x-request-id"]
    row = requestlog.get(served["project"].store, rid)
    assert row is not None and row.status == 200 and row.variant == "base"
    assert row.principal == "ivy" and row.audience == "internal" and row.tier == 1
    assert row.output == stored_output(served, messages, expected.text)
    assert row.completion_tokens == expected.completion_tokens
    stored = " ".join(m["content"] for m in row.prompt) + row.output
    assert "ann@example.com" not in stored and "<EMAIL_ADDRESS" in row.prompt[-1]["content"]
    assert row.redactions.get("EMAIL_ADDRESS", 0) == 1
    assert [m["role"] for m in row.prompt] == ["user"]


def test_streaming_sends_the_same_answer_and_usage_last(served: dict[str, Any]) -> None:
    api = client(served, served["keys"].internal)
    messages = [{"role": "user", "content": "one two three"}]
    stream = api.chat.completions.create(model="candidate", messages=messages, stream=True,
                                         stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    expected = direct_answer(served["loader"], "candidate", messages)
    assert text == expected.text != direct_answer(served["loader"], "base", messages).text
    plain = api.chat.completions.create(model="candidate", messages=messages)
    assert plain.choices[0].message.content == text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length" \
        == expected.finish_reason
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == expected.completion_tokens == 16
    assert chunks[-1].usage.prompt_tokens == plain.usage.prompt_tokens == chat_template_tokens(
        [{"role": "system", "content": "You answer very briefly."}, *messages])
    rows = requestlog.recent(served["project"].store, variant="candidate")
    assert [(r.stream, r.status) for r in rows] == [(False, 200), (True, 200)]
    assert rows[0].output == rows[1].output == stored_output(served, messages, text)


def test_same_prompt_answers_the_same_whatever_ran_before(served: dict[str, Any]) -> None:
    api = client(served, served["keys"].internal)
    question = [{"role": "user", "content": "How do I reset my password?"}]
    first = api.chat.completions.create(model="base", messages=question)
    # A conversation sharing the question's prefix, a streamed one, and an unrelated one.
    api.chat.completions.create(model="base", max_tokens=40, messages=[
        *question, {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "Say it again, longer."}])
    list(api.chat.completions.create(model="base", stream=True, messages=[
        {"role": "user", "content": "Write a poem about the sea."}]))
    again = api.chat.completions.create(model="base", messages=question)
    assert again.choices[0].message.content == first.choices[0].message.content \
        == direct_answer(served["loader"], "base", question).text
    assert again.usage == first.usage


def test_a_failing_stream_ends_with_an_error_event_not_a_silent_200(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    project = make_project(tmp_path / "proj")
    keys = make_keys(project)
    # The base variant's real engine, with a fault injected after its second piece of text.
    loader = llama_loader(project, wrap={"base": lambda engine: FailingStream(engine, after=2)})
    messages = [{"role": "user", "content": "tell me a story"}]
    with live_server(create_app(project, variant_loader=loader)) as url:
        api = openai.OpenAI(base_url=url + "/v1", api_key=keys.internal, max_retries=0)
        stream = api.chat.completions.create(model="base", stream=True, messages=messages)
        received = []
        with pytest.raises(openai.APIError, match="failed mid-stream"):
            for chunk in stream:
                received.append(chunk.choices[0].delta.content or "")
    variant = loader("base")
    prepared = variant.prepare(messages, project.actor())
    pieces = [d.text for d in loader.engines["base"].stream(prepared.messages, variant.params())
              if d.text]
    assert len(pieces) > 2 and "".join(received) == "".join(pieces[:2])
    row = requestlog.recent(project.store)[0]
    assert row.status == 502 and row.finish_reason == "error" and "mid-stream" in row.error
    assert row.output == requestlog.redact(project.config.privacy.redact,
                                           [messages[0]["content"], "".join(pieces[:2])])[0][-1]
    close_engines(loader)
    project.close()


def test_sdk_errors_are_openai_shaped_with_the_right_status(served: dict[str, Any]) -> None:
    keys = served["keys"]
    with pytest.raises(openai.AuthenticationError) as bad_key:
        client(served, "tl_nope_123").chat.completions.create(
            model="assistant", messages=[{"role": "user", "content": "hi"}])
    assert bad_key.value.status_code == 401 and "invalid API key" in bad_key.value.message
    with pytest.raises(openai.NotFoundError) as unknown:
        client(served, keys.internal).chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert unknown.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as too_long:
        client(served, keys.internal).chat.completions.create(
            model="assistant", messages=[{"role": "user", "content": "hi"}], max_tokens=5000)
    assert too_long.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError) as prompt_too_long:
        client(served, keys.internal).chat.completions.create(
            model="assistant", messages=[{"role": "user", "content": "word " * 300}])
    assert prompt_too_long.value.body["code"] == "context_length_exceeded"
    # Nothing is rolled out to the public yet, and variant names are not theirs to use.
    for model in ("assistant", "base"):
        with pytest.raises(openai.NotFoundError):
            client(served, keys.public).chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}])
    rows = requestlog.recent(served["project"].store)
    assert sorted(r.status for r in rows) == [400, 400, 401, 404, 404, 404]
    assert all(r.error for r in rows)


def test_a_request_the_engine_refuses_is_a_400_plain_or_streamed(
        served: dict[str, Any]) -> None:
    api = client(served, served["keys"].internal)
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as refused:
            api.chat.completions.create(model="base", stream=stream, stop=[""],
                                        messages=[{"role": "user", "content": "hi"}])
        assert "stop must be" in refused.value.message
    rows = requestlog.recent(served["project"].store)
    assert [(r.status, r.stream) for r in rows] == [(400, True), (400, False)]


def test_malformed_and_oversized_bodies_get_openai_error_bodies(served: dict[str, Any]) -> None:
    headers = {"authorization": f"Bearer {served['keys'].internal}",
               "content-type": "application/json"}
    url = served["url"] + "/v1/chat/completions"
    broken = httpx.post(url, content=b"{not json", headers=headers)
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_json"
    wrong = httpx.post(url, json={"model": "assistant", "messages": []}, headers=headers)
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "messages"
    huge = httpx.post(url, json={"model": "assistant",
                                 "messages": [{"role": "user", "content": "x" * 30_000}]},
                      headers=headers)
    assert huge.status_code == 413
    assert set(huge.json()["error"]) == {"message", "type", "param", "code"}
    statuses = sorted(r.status for r in requestlog.recent(served["project"].store))
    assert statuses == [400, 400, 413]


def test_models_lists_only_what_the_caller_may_use(served: dict[str, Any]) -> None:
    internal = [m.id for m in client(served, served["keys"].internal).models.list()]
    assert internal == ["assistant", "base", "candidate", "shadowy", "all-minilm-l6-v2"]
    public = [m.id for m in client(served, served["keys"].public).models.list()]
    assert public == ["all-minilm-l6-v2"]  # embeddings only: no chat model yet


def test_feedback_attaches_to_own_request_only(served: dict[str, Any]) -> None:
    api = client(served, served["keys"].internal)
    raw = api.chat.completions.with_raw_response.create(
        model="assistant", messages=[{"role": "user", "content": "hello"}])
    rid = raw.headers["x-request-id"]
    body = {"request_id": rid, "rating": 1, "comment": "call 555-123-4567",
            "corrected_answer": "Hello there."}
    ok = httpx.post(served["url"] + "/v1/feedback", json=body,
                    headers={"authorization": f"Bearer {served['keys'].internal}"})
    assert ok.status_code == 200 and ok.json()["request_id"] == rid
    stranger = httpx.post(served["url"] + "/v1/feedback", json=body,
                          headers={"authorization": f"Bearer {served['keys'].public}"})
    assert stranger.status_code == 404 and stranger.json()["error"]["type"] == "not_found_error"
    stored = feedback.for_request(served["project"].store, rid)
    assert len(stored) == 1 and stored[0].corrected == "Hello there." and stored[0].rating == 1
    assert "555-123-4567" not in stored[0].comment


def test_revoked_key_stops_working_within_seconds(served: dict[str, Any]) -> None:
    project, keys = served["project"], served["keys"]
    api = client(served, keys.internal2)
    api.models.list()
    prefix = "_".join(keys.internal2.split("_")[:2])
    principals.revoke_key(project.store, project.actor(), prefix)
    deadline = time.monotonic() + 10
    while True:
        try:
            api.models.list()
        except openai.AuthenticationError as exc:
            assert "revoked" in exc.message
            break
        assert time.monotonic() < deadline, "a revoked key kept working"
        time.sleep(0.1)


def test_metrics_count_requests_per_variant(served: dict[str, Any]) -> None:
    api = client(served, served["keys"].internal)
    for _ in range(2):
        api.chat.completions.create(model="base", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.NotFoundError):
        api.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    text = httpx.get(served["url"] + "/metrics",
                     headers={"Authorization": f"Bearer {served['keys'].internal}"}).text
    assert 'tuneloop_requests_total{status="200",variant="base"} 2.0' in text
    assert 'tuneloop_errors_total{type="not_found_error",variant="-"} 1.0' in text
    assert 'tuneloop_request_seconds_count{variant="base"} 2.0' in text
    assert httpx.get(served["url"] + "/health").json()["status"] == "ok"


def in_flight(url: str, key: str) -> float:
    """The server's queue depth, from its metrics."""
    text = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {key}"}).text
    match = re.search(r"^tuneloop_in_flight_requests (\S+)$", text, re.MULTILINE)
    assert match, text
    return float(match.group(1))


def wait_for_log(project: Any, what: str) -> Any:
    deadline = time.monotonic() + 30
    while not requestlog.recent(project.store):
        assert time.monotonic() < deadline, f"the {what} request was never logged"
        time.sleep(0.05)
    return requestlog.recent(project.store)[0]


def assert_generation_stopped(loader: Any, decoded_before: int) -> None:
    """The engine decoded far fewer tokens than the request asked for: generation stopped."""
    # A direct request waits for the engine's only context, i.e. until the abandoned one ended.
    after = direct_answer(loader, "base", [{"role": "user", "content": "hi"}])
    decoded = tokens_decoded(loader.engines["base"]) - decoded_before - after.completion_tokens
    assert decoded < LONG_ANSWER_TOKENS // 2, f"{decoded} tokens decoded after the client left"


def test_client_disconnect_stops_generation_and_is_logged(long_served: dict[str, Any]) -> None:
    project, loader = long_served["project"], long_served["loader"]
    loader("base")
    before = tokens_decoded(loader.engines["base"])
    api = openai.OpenAI(base_url=long_served["url"] + "/v1", api_key=long_served["keys"].internal,
                        max_retries=0)
    stream = api.chat.completions.create(
        model="base", stream=True, max_tokens=LONG_ANSWER_TOKENS,
        messages=[{"role": "user", "content": "Count to ten thousand."}])
    received = []
    for i, chunk in enumerate(stream):
        received.append(chunk.choices[0].delta.content or "")
        if i == 2:
            break
    stream.close()
    row = wait_for_log(project, "cancelled")
    assert row.status == 499 and row.finish_reason == "cancelled" and "".join(received)
    assert_generation_stopped(loader, before)


def test_client_gone_before_a_plain_answer_stops_generation(long_served: dict[str, Any]) -> None:
    project, loader = long_served["project"], long_served["loader"]
    loader("base")
    before = tokens_decoded(loader.engines["base"])
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(long_served["url"] + "/v1/chat/completions", timeout=0.5,
                   headers={"authorization": f"Bearer {long_served['keys'].internal}"},
                   json={"model": "base", "max_tokens": LONG_ANSWER_TOKENS,
                         "messages": [{"role": "user", "content": "Count to ten thousand."}]})
    row = wait_for_log(project, "abandoned")
    assert row.status == 499 and row.finish_reason == "cancelled"
    assert_generation_stopped(loader, before)


def test_a_queue_place_is_freed_even_if_its_stream_never_starts() -> None:
    queue = Admission(1)

    async def never_started(slot: Any) -> AsyncIterator[bytes]:
        try:
            yield b""
        finally:
            slot.release()

    stream = never_started(queue.acquire())
    with pytest.raises(ApiError) as full:
        queue.acquire()
    assert full.value.status == 503 and full.value.headers["Retry-After"]
    del stream
    gc.collect()
    queue.acquire().release()
    assert queue.in_flight == 0


def test_full_queue_answers_503_and_rate_limit_429(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    project = make_project(tmp_path / "proj", LONG_CONFIG)
    keys = make_keys(project)
    project.config.server.queue_size = 1
    project.config.server.rate_limit_per_minute = 3
    loader = llama_loader(project)
    with live_server(create_app(project, variant_loader=loader)) as url:
        api = openai.OpenAI(base_url=url + "/v1", api_key=keys.internal, max_retries=0)
        holder = api.chat.completions.create(
            model="base", stream=True, max_tokens=LONG_ANSWER_TOKENS,
            messages=[{"role": "user", "content": "a b c d e f"}])
        next(iter(holder))  # the only queue place is now taken, for thousands of tokens
        with pytest.raises(openai.InternalServerError) as busy:
            openai.OpenAI(base_url=url + "/v1", api_key=keys.internal2, max_retries=0) \
                .chat.completions.create(model="base", messages=[{"role": "user", "content": "x"}])
        assert busy.value.status_code == 503 and busy.value.response.headers["retry-after"]
        holder.close()  # the caller gives up: its place is freed once generation stops
        deadline = time.monotonic() + 30
        while in_flight(url, keys.internal):
            assert time.monotonic() < deadline, "the abandoned stream kept its queue place"
            time.sleep(0.05)
        api.chat.completions.create(model="base", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.RateLimitError) as limited:
            for _ in range(3):
                api.chat.completions.create(model="base",
                                            messages=[{"role": "user", "content": "x"}])
        assert int(limited.value.response.headers["retry-after"]) >= 1
    statuses = sorted(r.status for r in requestlog.recent(project.store))
    assert statuses == [200, 200, 429, 499, 503]
    close_engines(loader)
    project.close()
