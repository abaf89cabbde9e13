"""Tool calls: the OpenAI `tools` / `tool_choice` fields for models whose template renders tools.

A chat template supports tools when it reads the `tools` variable and writes calls in the
Hermes convention (Qwen2.5, Hermes, SmolLM3 and others): `<tool_call>{"name": ..., "arguments":
{...}}</tool_call>` in the assistant's turn. tuneloop renders the tools with the template, then
turns the calls the model writes back into OpenAI `tool_calls`. When the caller forces a call
(`tool_choice` "required" or a named function) on an engine that constrains decoding, the
assistant's turn is opened with `<tool_call>` and a grammar admits only a call to one of the
given functions with arguments valid for its parameter schema.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

from tuneloop.engines.base import Completion, Delta
from tuneloop.engines.tool_request import ToolRequest
from tuneloop.errors import InvalidRequest

CALL_OPEN = "<tool_call>\n"
_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*(?:</tool_call>|$)", re.DOTALL)


def from_openai(tools: list[dict[str, Any]] | None, choice: Any) -> ToolRequest | None:
    """The `tools` and `tool_choice` fields of a request, checked; None without tools."""
    if not tools:
        if choice not in (None, "none", "auto"):
            raise InvalidRequest("tool_choice needs tools")
        return None
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if tool.get("type") != "function" or not isinstance(function, dict) \
                or not isinstance(function.get("name"), str) or not function["name"]:
            raise InvalidRequest(f"tools[{i}] must be {{\"type\": \"function\", \"function\": "
                                 "{\"name\": ..., \"parameters\": {...}}}")
    request = ToolRequest(json.dumps(tools, sort_keys=True), _choice(choice))
    if request.forced and request.choice != "required" and request.choice not in request.names:
        raise InvalidRequest(f"tool_choice names {request.choice!r}, which is not in tools")
    return request


def _choice(choice: Any) -> str:
    if choice is None:
        return "auto"
    if choice in ("auto", "none", "required"):
        return str(choice)
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return str(choice["function"].get("name") or "")
    raise InvalidRequest("tool_choice must be auto, none, required or "
                         "{\"type\": \"function\", \"function\": {\"name\": ...}}")


def template_supports_tools(source: str) -> bool:
    """Whether a chat template renders `tools` and writes Hermes-style `<tool_call>` turns."""
    import jinja2
    from jinja2 import meta

    try:
        names = meta.find_undeclared_variables(jinja2.Environment().parse(source))
    except jinja2.TemplateSyntaxError:
        return False
    return "tools" in names and "<tool_call>" in source


def call_schema(request: ToolRequest) -> dict[str, Any]:
    """The JSON Schema of one call to an allowed function, with that function's arguments."""
    options = []
    for tool in request.tools:
        function = tool["function"]
        if request.choice != "required" and function["name"] != request.choice:
            continue
        parameters = function.get("parameters") or {"type": "object"}
        options.append({"type": "object", "additionalProperties": False,
                        "required": ["name", "arguments"],
                        "properties": {"name": {"const": function["name"]},
                                       "arguments": parameters}})
    return options[0] if len(options) == 1 else {"anyOf": options}


def new_call(name: str, arguments: Any) -> dict[str, Any]:
    """An OpenAI-shaped tool call (arguments as a JSON string, as OpenAI sends them)."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
            "function": {"name": name, "arguments": text}}


def parse(text: str, request: ToolRequest, *, opened: bool) -> tuple[str, list[dict[str, Any]]]:
    """Split a model's answer into its text and the calls it made to the request's tools.

    `opened` means the turn was opened with `CALL_OPEN`, so `text` continues a call.
    """
    if opened:
        text = "<tool_call>" + text
    calls, kept, last = [], [], 0
    for match in _CALL.finditer(text):
        try:
            data = json.loads(match.group(1))
        except ValueError:
            continue
        if not isinstance(data, dict) or data.get("name") not in request.names:
            continue
        calls.append(new_call(data["name"], data.get("arguments") or {}))
        kept.append(text[last:match.start()])
        last = match.end()
    kept.append(text[last:])
    return ("".join(kept).strip() if calls else text), calls


def collect(deltas: Iterator[Delta], request: ToolRequest, *, opened: bool) -> Iterator[Delta]:
    """An engine's stream, held back until the end and then split into text and tool calls.

    The text cannot go out as it is decoded: until the turn ends it may turn out to be a call.
    """
    pieces: list[str] = []
    completion: Completion | None = None
    try:
        for delta in deltas:
            pieces.append(delta.text)
            completion = delta.completion or completion
    finally:
        close = getattr(deltas, "close", None)
        if close is not None:
            close()
    if completion is None:
        return
    text, calls = parse("".join(pieces), request, opened=opened)
    if calls:
        completion.tool_calls = calls
        completion.finish_reason = "tool_calls"
        text = "" if opened else text
    completion.text = text
    if text:
        yield Delta(text)
    yield Delta("", completion=completion, tool_calls=calls)


def template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as chat templates expect them: a call's arguments as an object, not JSON text
    (the Hugging Face convention), and no None content."""
    out = []
    for message in messages:
        message = dict(message)
        if message.get("content") is None:
            message["content"] = ""
        calls = message.get("tool_calls")
        if calls:
            message["tool_calls"] = [_template_call(c) for c in calls]
        out.append(message)
    return out


def _template_call(call: dict[str, Any]) -> dict[str, Any]:
    function = dict(call.get("function") or {})
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            function["arguments"] = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            raise InvalidRequest("a tool call's arguments are not valid JSON") from None
    return {**call, "function": function}
