"""The request and response bodies of the OpenAI-compatible API, as pydantic models.

Only what tuneloop honours is declared; unknown fields an OpenAI client may send (`user`,
`logprobs`, `n`=1, ...) are accepted and ignored, as other compatible servers do.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ChatMessage(BaseModel):
    """One message of the conversation; content may be a string or OpenAI text parts.

    An assistant message may carry the `tool_calls` the model made, and a `tool` message answers
    one of them (`tool_call_id`); variants whose model cannot take tools refuse both with a 400.
    """

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = Field(default=None, max_length=64)
    tool_call_id: str | None = Field(default=None, max_length=128)
    name: str | None = Field(default=None, max_length=128)

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")


class StreamOptions(BaseModel):
    include_usage: bool = False


class JsonSchemaFormat(BaseModel):
    """`response_format.json_schema`: a named JSON Schema the answer must follow."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = Field(default="response", max_length=64)
    json_schema: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    """`response_format`: free text, any JSON object, or JSON valid for a schema."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    def as_openai(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class ChatCompletionRequest(BaseModel):
    """`POST /v1/chat/completions`."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=128)
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = Field(default=None, ge=1, le=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=128)
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    def stops(self) -> list[str] | None:
        if self.stop is None:
            return None
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def wanted_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class Citation(BaseModel):
    """A retrieved passage the answer may rely on (the `citations` extension field)."""

    model_config = ConfigDict(extra="allow")


class FeedbackRequest(BaseModel):
    """`POST /v1/feedback`: a rating, comment and/or corrected answer for a logged request."""

    request_id: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")
    rating: int | None = Field(default=None, ge=-1, le=5)
    comment: str = Field(default="", max_length=10_000)
    corrected_answer: str | None = Field(default=None, max_length=100_000)


class FeedbackResponse(BaseModel):
    id: int
    request_id: str
    object: Literal["feedback"] = "feedback"


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "tuneloop"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """The OpenAI error body every failure uses."""

    error: ErrorDetail
