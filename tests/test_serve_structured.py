"""Structured output and tool calls through the `openai` SDK against a server on loopback.

The models are tiny random llamas on the real llama.cpp engine: their words are noise, so what
these tests show is what the server guarantees whatever the model wants to say (JSON that
parses and validates, a call to a given function with valid arguments), and that a variant whose
model cannot do it refuses with a clean 400 instead of ignoring the field.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest

from tests.test_serve_support import (
    CONFIG,
    close_engines,
    live_server,
    llama_loader,
    make_keys,
    make_project,
    tiny_models,
)
from tuneloop.serve import requestlog
from tuneloop.serve.app import create_app

# A Hermes-style template (the convention of Qwen2.5, Hermes and SmolLM3): tools in the system
# turn, calls as <tool_call>{json}</tool_call>, tool results back in a user turn.
TOOL_TEMPLATE = """\
{%- if tools %}<|im_start|>system
{{ messages[0].content if messages[0].role == 'system' else 'You are helpful.' }}

<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>
Call a function as <tool_call>{"name": ..., "arguments": ...}</tool_call><|im_end|>
{% elif messages[0].role == 'system' %}<|im_start|>system
{{ messages[0].content }}<|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'system' %}
{%- elif message.role == 'assistant' and message.tool_calls is defined and message.tool_calls %}
<|im_start|>assistant
{% for call in message.tool_calls %}<tool_call>
{{ {'name': call.function.name, 'arguments': call.function.arguments} | tojson }}
</tool_call>{% endfor %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

TOOLY_VARIANT = """\
  - name: tooly
    generation: {max_tokens: 48, temperature: 0}
"""

LABEL_SCHEMA = {
    "type": "object",
    "properties": {"label": {"enum": ["spam", "ham"]}, "score": {"type": "integer"}},
    "required": ["label", "score"],
    "additionalProperties": False,
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object",
                       "properties": {"city": {"enum": ["Paris", "Oslo"]}},
                       "required": ["city"], "additionalProperties": False},
    },
}


def tool_gguf(folder: Path) -> Path:
    """A tiny llama like the others, exported with a chat template that supports tools."""
    from tuneloop.engines.export import export_gguf
    from tuneloop.engines.testing import tiny_llama

    target = folder / "tooly.gguf"
    if not target.is_file():
        source = tiny_llama(folder / "src", seed=16, max_position_embeddings=4096)
        model = folder / "tooly-hf"
        shutil.copytree(source, model, dirs_exist_ok=True)
        (model / "chat_template.jinja").write_text(TOOL_TEMPLATE, encoding="utf-8")
        export_gguf(model, target, "f16")
    return target


@pytest.fixture(scope="module")
def tool_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tool_gguf(tmp_path_factory.mktemp("tooly"))


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
           tool_model: Path) -> Iterator[dict[str, Any]]:
    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    config = CONFIG.replace("server:\n", TOOLY_VARIANT + "server:\n")
    project = make_project(tmp_path / "proj", config)
    keys = make_keys(project)
    paths = {**tiny_models().paths(["base"]), "tooly": str(tool_model)}
    loader = llama_loader(project, paths)
    with live_server(create_app(project, variant_loader=loader)) as url:
        api = openai.OpenAI(base_url=url + "/v1", api_key=keys.internal, max_retries=0,
                            timeout=60)
        yield {"api": api, "project": project, "loader": loader}
    close_engines(loader)
    project.close()


def streamed(api: openai.OpenAI, **kwargs: Any) -> tuple[str, list[Any], str | None]:
    """A streamed answer: its text, its accumulated tool calls and its finish reason."""
    text, calls, finish = "", {}, None
    for chunk in api.chat.completions.create(stream=True, **kwargs):
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for call in choice.delta.tool_calls or []:
                calls.setdefault(call.index, call)
            finish = choice.finish_reason or finish
    return text, [calls[i] for i in sorted(calls)], finish


def test_json_schema_answers_parse_and_validate_streamed_and_not(served: dict[str, Any]) -> None:
    api = served["api"]
    fmt = {"type": "json_schema", "json_schema": {"name": "label", "schema": LABEL_SCHEMA}}
    for question in ("Is this spam? 'WIN A PRIZE'", "hello there", "classify: meeting at 3"):
        messages = [{"role": "user", "content": question}]
        plain = api.chat.completions.create(model="base", messages=messages, response_format=fmt,
                                            max_tokens=48)
        answer = json.loads(plain.choices[0].message.content)
        jsonschema.validate(answer, LABEL_SCHEMA)
        assert plain.choices[0].finish_reason == "stop"
        text, _, finish = streamed(api, model="base", messages=messages, response_format=fmt,
                                   max_tokens=48)
        assert json.loads(text) == answer and finish == "stop"


def test_json_object_mode_answers_a_json_object(served: dict[str, Any]) -> None:
    api = served["api"]
    # A random model rarely closes a string it opened, so the prompt is one where it writes
    # a short object; a longer answer would end at max_tokens, cut, as OpenAI's would.
    messages = [{"role": "user", "content": "hello"}]
    free = api.chat.completions.create(model="base", messages=messages)
    with pytest.raises(ValueError):
        json.loads(free.choices[0].message.content)  # without the mode: noise
    plain = api.chat.completions.create(model="base", messages=messages,
                                        response_format={"type": "json_object"})
    assert plain.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(plain.choices[0].message.content), dict)
    text, _, _ = streamed(api, model="base", messages=messages,
                          response_format={"type": "json_object"})
    assert text == plain.choices[0].message.content


def test_an_invalid_schema_is_a_clean_400(served: dict[str, Any]) -> None:
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 12}}}
    with pytest.raises(openai.BadRequestError) as caught:
        served["api"].chat.completions.create(
            model="base", messages=[{"role": "user", "content": "hi"}], response_format=bad)
    assert caught.value.body["code"] == "invalid_response_format"
    assert "not a valid JSON Schema" in caught.value.body["message"]


def test_a_schema_the_grammar_cannot_enforce_is_a_400_that_says_so(
        served: dict[str, Any]) -> None:
    schema = {"type": "object", "required": ["n"],
              "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}}}
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as caught:
            served["api"].chat.completions.create(
                model="base", messages=[{"role": "user", "content": "hi"}], stream=stream,
                response_format={"type": "json_schema",
                                 "json_schema": {"name": "n", "schema": schema}})
        message = caught.value.body["message"]
        assert "schema.properties.n.maximum" in message and "cannot enforce" in message


def test_a_forced_tool_call_round_trip(served: dict[str, Any]) -> None:
    api = served["api"]
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Oslo?"}]
    choice = {"type": "function", "function": {"name": "get_weather"}}
    first = api.chat.completions.create(model="tooly", messages=messages, tools=[WEATHER_TOOL],
                                        tool_choice=choice)
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls" and message.content is None
    [call] = message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["city"] in ("Paris", "Oslo")
    assert call.id.startswith("call_")
    # The same call, streamed as tool_call deltas.
    _, calls, finish = streamed(api, model="tooly", messages=messages, tools=[WEATHER_TOOL],
                                tool_choice=choice)
    assert finish == "tool_calls"
    assert [(c.function.name, c.function.arguments) for c in calls] == [
        (call.function.name, call.function.arguments)]
    # The tool's answer goes back; the model answers from it.
    messages += [message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "18 degrees, sunny"}]
    raw = api.chat.completions.with_raw_response.create(
        model="tooly", messages=messages, tools=[WEATHER_TOOL])
    second = raw.parse()
    assert second.choices[0].finish_reason in ("stop", "length", "tool_calls")
    row = requestlog.get(served["project"].store, raw.headers["x-request-id"])
    assert row is not None and row.status == 200
    assert [m["role"] for m in row.prompt] == ["user", "assistant", "tool"]
    assert row.prompt[-1]["content"] == "18 degrees, sunny"


def test_tools_on_a_template_without_tool_support_are_a_400_naming_the_variant(
        served: dict[str, Any]) -> None:
    api = served["api"]
    with pytest.raises(openai.BadRequestError) as caught:
        api.chat.completions.create(model="base", tools=[WEATHER_TOOL],
                                    messages=[{"role": "user", "content": "Weather?"}])
    body = caught.value.body
    assert body["code"] == "tools_unsupported" and "'base'" in body["message"]
    assert "chat template" in body["message"]
    with pytest.raises(openai.BadRequestError):
        api.chat.completions.create(model="base", messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}])


def test_a_json_task_answers_its_schema_without_being_asked(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    schema = json.dumps(LABEL_SCHEMA)
    config = CONFIG.replace("  system_prompt: You answer briefly.\n",
                            "  system_prompt: You answer briefly.\n  format: json\n"
                            f"  json_schema: {schema}\n")
    project = make_project(tmp_path / "proj", config)
    keys = make_keys(project)
    loader = llama_loader(project)
    try:
        with live_server(create_app(project, variant_loader=loader)) as url:
            api = openai.OpenAI(base_url=url + "/v1", api_key=keys.internal, max_retries=0)
            answer = api.chat.completions.create(
                model="base", messages=[{"role": "user", "content": "hello there"}],
                max_tokens=48)
            jsonschema.validate(json.loads(answer.choices[0].message.content), LABEL_SCHEMA)
        # Evaluation runs the variant with the same default.
        variant = loader("base")
        result = variant.run([{"role": "user", "content": "meeting at 3"}], project.actor(),
                             variant.params(max_tokens=48))
        jsonschema.validate(json.loads(result.completion.text), LABEL_SCHEMA)
    finally:
        close_engines(loader)
        project.close()


def test_an_openai_compatible_engine_forwards_response_format_and_tools(
        served: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A variant on the OpenAI-compatible engine, in front of the server above: the schema and
    the forced call are enforced by the server behind, and come back OpenAI-shaped."""
    from tuneloop.engines.openai import OpenAIEngine

    upstream = served["api"]
    monkeypatch.setenv("UPSTREAM_KEY", upstream.api_key)
    project = make_project(tmp_path / "front", CONFIG)
    keys = make_keys(project)
    engines: list[OpenAIEngine] = []

    def load(name: str) -> Any:
        from tuneloop.variants import get_variant

        variant = get_variant(project, name)
        engine = OpenAIEngine(str(upstream.base_url).rstrip("/"), "tooly" if name == "candidate"
                              else "base", api_key_env="UPSTREAM_KEY", max_retries=0)
        engines.append(engine)
        variant._engine = engine
        return variant

    fmt = {"type": "json_schema", "json_schema": {"name": "label", "schema": LABEL_SCHEMA}}
    try:
        with live_server(create_app(project, variant_loader=load)) as url:
            api = openai.OpenAI(base_url=url + "/v1", api_key=keys.internal, max_retries=0)
            messages = [{"role": "user", "content": "hello there"}]
            answer = api.chat.completions.create(model="base", messages=messages,
                                                 response_format=fmt, max_tokens=48)
            jsonschema.validate(json.loads(answer.choices[0].message.content), LABEL_SCHEMA)
            text, _, _ = streamed(api, model="base", messages=messages, response_format=fmt,
                                  max_tokens=48)
            assert json.loads(text) == json.loads(answer.choices[0].message.content)
            choice = {"type": "function", "function": {"name": "get_weather"}}
            called = api.chat.completions.create(model="candidate", messages=messages,
                                                 tools=[WEATHER_TOOL], tool_choice=choice,
                                                 max_tokens=48)
            [call] = called.choices[0].message.tool_calls
            assert call.function.name == "get_weather"
            _, calls, finish = streamed(api, model="candidate", messages=messages,
                                        tools=[WEATHER_TOOL], tool_choice=choice, max_tokens=48)
            assert finish == "tool_calls"
            assert [c.function.arguments for c in calls] == [call.function.arguments]
    finally:
        for engine in engines:
            engine.close()
        project.close()


@pytest.mark.slow
def test_the_transformers_engine_refuses_what_it_cannot_enforce(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneloop.engines.testing import tiny_llama
    from tuneloop.engines.transformers import TransformersEngine

    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    project = make_project(tmp_path / "proj", CONFIG)
    keys = make_keys(project)
    engine = TransformersEngine(tiny_llama(tmp_path / "hf", seed=11), name="base")

    def load(name: str) -> Any:
        from tuneloop.variants import get_variant

        variant = get_variant(project, name)
        variant._engine = engine
        return variant

    try:
        with live_server(create_app(project, variant_loader=load)) as url:
            api = openai.OpenAI(base_url=url + "/v1", api_key=keys.internal, max_retries=0)
            messages = [{"role": "user", "content": "hello"}]
            for stream in (False, True):
                with pytest.raises(openai.BadRequestError) as caught:
                    api.chat.completions.create(model="base", messages=messages, stream=stream,
                                                response_format={"type": "json_object"})
                body = caught.value.body
                assert body["code"] == "response_format_unsupported"
                assert "variant 'base' (engine transformers) cannot enforce" in body["message"]
            with pytest.raises(openai.BadRequestError) as caught:
                api.chat.completions.create(model="base", messages=messages,
                                            tools=[WEATHER_TOOL])
            assert caught.value.body["code"] == "tools_unsupported"
            # Without those fields it answers as before.
            assert api.chat.completions.create(model="base", messages=messages,
                                               max_tokens=4).choices[0].message.content
    finally:
        engine.close()
        project.close()
