"""What a chat request asks of the model beyond text, checked against what its variant can do.

`response_format` (JSON, a JSON Schema) and `tools` are honoured or refused with a 400 that
names the variant and why; they are never silently ignored. Whether an engine can do them is
the engine's own declaration (`Engine.supports_grammar`, `Engine.supports_tools`).
"""

from __future__ import annotations

from typing import Any

from tuneloop.engines import structured, tools
from tuneloop.engines.structured import ResponseFormat
from tuneloop.engines.tools import ToolRequest
from tuneloop.errors import InvalidRequest
from tuneloop.serve.errors import ApiError
from tuneloop.serve.schemas import ChatCompletionRequest


def _engine_label(variant: Any) -> str:
    engine = variant.engine
    return f"variant {variant.name!r} (engine {getattr(engine, 'kind', '?') or '?'})"


def response_format(body: ChatCompletionRequest, variant: Any) -> ResponseFormat | None:
    """The request's `response_format`, or a 400 when the variant's engine cannot enforce it."""
    try:
        fmt = structured.from_openai(
            body.response_format.as_openai() if body.response_format else None)
    except InvalidRequest as exc:
        raise ApiError(400, exc.message, code="invalid_response_format",
                       param="response_format") from None
    if fmt is not None and not getattr(variant.engine, "supports_grammar", False):
        raise ApiError(400, f"{_engine_label(variant)} cannot enforce response_format "
                            f"{fmt.kind}: its engine has no constrained decoding",
                       code="response_format_unsupported", param="response_format")
    return fmt


def tool_request(body: ChatCompletionRequest, variant: Any) -> ToolRequest | None:
    """The request's tools, or a 400 when the variant's model cannot take tool calls."""
    try:
        request = tools.from_openai(body.tools, body.tool_choice)
    except InvalidRequest as exc:
        raise ApiError(400, exc.message, code="invalid_tools", param="tools") from None
    uses_tools = (request is not None and request.active) or any(
        m.role == "tool" or m.tool_calls for m in body.messages)
    if uses_tools and not getattr(variant.engine, "supports_tools", False):
        raise ApiError(400, f"{_engine_label(variant)} does not support tool calls: its "
                            "model's chat template does not render tools",
                       code="tools_unsupported", param="tools")
    if request is not None and request.forced and not getattr(
            variant.engine, "supports_grammar", False):
        raise ApiError(400, f"{_engine_label(variant)} cannot force a tool call "
                            f"(tool_choice {request.choice!r}): its engine has no constrained "
                            "decoding", code="tools_unsupported", param="tool_choice")
    return request


def message_fields(message: Any) -> dict[str, Any]:
    """The tool fields of one request message, as engines take them."""
    out: dict[str, Any] = {}
    if message.tool_calls:
        out["tool_calls"] = message.tool_calls
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    if message.name and message.role == "tool":
        out["name"] = message.name
    return out
