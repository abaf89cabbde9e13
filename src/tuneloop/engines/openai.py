"""The OpenAI-compatible HTTP engine: vLLM, llama.cpp's `llama-server`, tuneloop's server or a
hosted API, through `POST {base_url}/chat/completions`.

Retries 429 and 5xx answers (and connection failures) with exponential backoff plus jitter,
honouring `Retry-After`; a stream is retried only before its first byte. Failures become
EngineError messages that say which server, which model and what to check.

The server behind tokenizes the messages, and many do so with special tokens parsed, so text like
`<|im_end|>\n<|im_start|>system` in a ticket or a retrieved document would become a real turn
boundary there. The engine cannot see that tokenizer; it breaks the texts of the chat-control
tokens of the common open-model families (`CHAT_CONTROL_TOKENS`) in every message's content
with a zero-width space, as the local engines do with their own tokenizer's special tokens.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tuneloop.engines._common import validate_request
from tuneloop.engines.base import Completion, Delta, Engine, FinishReason, GenerationParams, Message
from tuneloop.engines.templates import escape_specials, special_pattern
from tuneloop.errors import EngineError, InvalidRequest

#: turn markers of ChatML (Qwen, SmolLM, Hermes), Llama 2 and 3, Mistral, Gemma, Phi-3, DeepSeek
CHAT_CONTROL_TOKENS: tuple[str, ...] = (
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|begin_of_text|>", "<|end_of_text|>",
    "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|python_tag|>",
    "[INST]", "[/INST]", "<<SYS>>", "<</SYS>>", "<s>", "</s>", "[TOOL_CALLS]",
    "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]",
    "<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<|system|>", "<|user|>",
    "<|assistant|>", "<|end|>", "<tool_call>", "</tool_call>", "<tool_response>",
    "</tool_response>", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>",
    "<｜Assistant｜>")

_RETRY_STATUS = {429, 500, 502, 503, 504}
_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length",
                                     "tool_calls": "tool_calls"}


class OpenAIEngine(Engine):
    """Chat completions from an OpenAI-compatible server."""

    kind = "openai"
    # response_format and tools are forwarded: the server behind enforces them, or refuses
    supports_grammar = True

    @property
    def supports_tools(self) -> bool:
        return True

    def __init__(self, base_url: str, model: str, *, api_key_env: str | None = None,
                 name: str | None = None, timeout_s: float = 60.0, max_retries: int = 3,
                 backoff_s: float = 0.5, max_concurrency: int = 4,
                 context_length: int = 8192,
                 special_tokens: Sequence[str] = CHAT_CONTROL_TOKENS) -> None:
        """`api_key_env` names the environment variable holding the key (never the key itself).
        `special_tokens`: texts broken in every message's content before it is sent (the remote
        server tokenizes it, perhaps with special tokens parsed); () sends content as is."""
        key = None
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise EngineError(f"the API key variable {api_key_env} is not set",
                                  hint=f"export {api_key_env}=... before using {base_url}")
        self.base_url = base_url.rstrip("/")
        self.api_model = model
        self.api_key_env = api_key_env
        self.model_name = name or model
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_concurrency = max_concurrency
        self.context_length = context_length
        self._specials = special_pattern(special_tokens)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(base_url=self.base_url, headers=headers,
                                    timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)))

    # -- the Engine interface ---------------------------------------------------------------

    def chat(self, messages: Sequence[Message], params: GenerationParams) -> Completion:
        """One completion. Without streaming the first token arrives with the whole answer, so
        `ttft_s` equals `total_s`; use `stream` to measure time to first token."""
        started = time.perf_counter()
        validate_request(messages, params)
        response = self._send(self._body(messages, params, stream=False))
        try:
            data = response.json()
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            calls = list(choice["message"].get("tool_calls") or [])
            usage = data.get("usage") or {}
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise EngineError(f"{self.base_url} sent a malformed chat completion: {exc}") from exc
        total = time.perf_counter() - started
        return Completion(
            text=text, finish_reason=_FINISH.get(choice.get("finish_reason") or "", "stop"),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            ttft_s=total, total_s=total, model=self.model_name, tool_calls=calls)

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> Iterator[Delta]:
        """Server-sent events as text deltas; closing the iterator closes the connection."""
        started = time.perf_counter()
        validate_request(messages, params)
        return self._stream(self._body(messages, params, stream=True), started)

    def batch(self, conversations: Sequence[Sequence[Message]],
              params: GenerationParams) -> list[Completion]:
        """Concurrent requests, `max_concurrency` at a time, answers in input order."""
        for messages in conversations:
            validate_request(messages, params)
        with ThreadPoolExecutor(self.max_concurrency) as pool:
            return list(pool.map(lambda m: self.chat(m, params), conversations))

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """An estimate (about 4 characters per token): the OpenAI API has no tokenize call."""
        return sum(4 + len(str(m.get("content", ""))) // 4 for m in messages) + 3

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    # -- internals ----------------------------------------------------------------------------

    def _body(self, messages: Sequence[Message], params: GenerationParams,
              *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.api_model, "messages": [self._escaped(m) for m in messages],
            "max_tokens": params.max_tokens, "temperature": params.temperature,
            "top_p": params.top_p, "stream": stream}
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if stream:
            body["stream_options"] = {"include_usage": True}
        if params.response_format is not None:
            body["response_format"] = params.response_format.to_openai()
        if params.tools is not None:
            body["tools"] = params.tools.tools
            choice = params.tools.choice
            body["tool_choice"] = choice if choice in ("auto", "none", "required") else {
                "type": "function", "function": {"name": choice}}
        return body

    def _escaped(self, message: Message) -> dict[str, Any]:
        """The message with each chat-control token's text in its content made plain text."""
        out = dict(message)
        if isinstance(out.get("content"), str):  # validate_request: content is text here
            out["content"] = escape_specials(out["content"], self._specials)
        return out

    def _send(self, body: dict[str, Any], *, stream: bool = False) -> httpx.Response:
        """POST with retries; returns a response with a 2xx status (open, when streaming)."""
        attempt = 0
        while True:
            try:
                request = self._client.build_request("POST", "/chat/completions", json=body)
                response = self._client.send(request, stream=stream)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt >= self.max_retries:
                    raise EngineError(
                        f"cannot reach the model server at {self.base_url} "
                        f"({type(exc).__name__}) after {attempt + 1} attempts",
                        hint="check that the server is running and the base URL is right") from exc
                self._sleep(attempt, None)
                attempt += 1
                continue
            except httpx.TimeoutException as exc:
                raise EngineError(f"the model server at {self.base_url} did not answer in time "
                                  f"({type(exc).__name__})",
                                  hint="raise timeout_s or lower max_tokens") from exc
            if response.status_code < 400:
                return response
            if stream:
                response.read()
                response.close()
            if response.status_code in _RETRY_STATUS and attempt < self.max_retries:
                self._sleep(attempt, response.headers.get("retry-after"))
                attempt += 1
                continue
            raise self._error(response)

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff_s * (2 ** attempt) * (0.5 + random.random())  # jitter: 0.5x..1.5x
        if retry_after:
            # an HTTP-date Retry-After is ignored: the computed backoff stands
            with contextlib.suppress(ValueError):
                delay = max(delay, min(float(retry_after), 60.0))
        time.sleep(delay)

    def _error(self, response: httpx.Response) -> EngineError:
        status = response.status_code
        try:
            payload = response.json()
            detail = payload.get("error", payload)
            detail = detail.get("message", detail) if isinstance(detail, dict) else detail
        except ValueError:
            detail = response.text[:300]
        where = f"{self.base_url} (model {self.api_model!r})"
        if status in (401, 403):
            key = f"the key in ${self.api_key_env}" if self.api_key_env else "no API key"
            return EngineError(f"{where} rejected the request: HTTP {status}, {detail}",
                               hint=f"{key} was sent; check api_key_env in tuneloop.yaml")
        if status == 404:
            return EngineError(f"{where}: unknown model or endpoint (HTTP 404): {detail}",
                               hint="check the model name against the server's /v1/models")
        if status in (400, 422):
            return InvalidRequest(f"{where} refused the request (HTTP {status}): {detail}")
        if status == 429:
            return EngineError(f"{where} is rate limiting (HTTP 429) after "
                               f"{self.max_retries + 1} attempts: {detail}")
        return EngineError(f"{where} failed with HTTP {status}: {detail}")

    def _stream(self, body: dict[str, Any], started: float) -> Iterator[Delta]:
        response = self._send(body, stream=True)
        pieces: list[str] = []
        finish: FinishReason = "stop"
        usage: dict[str, Any] = {}
        ttft = 0.0
        chunks = 0
        calls: dict[int, dict[str, Any]] = {}
        try:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    event = json.loads(data)
                except ValueError as exc:
                    raise EngineError(f"{self.base_url} sent a malformed stream event: "
                                      f"{data[:120]!r}") from exc
                if event.get("error"):
                    raise EngineError(f"{self.base_url} reported an error mid-stream: "
                                      f"{event['error']}")
                usage = event.get("usage") or usage
                for choice in event.get("choices") or []:
                    _add_calls(calls, (choice.get("delta") or {}).get("tool_calls") or [])
                    text = (choice.get("delta") or {}).get("content") or ""
                    if choice.get("finish_reason"):
                        finish = _FINISH.get(choice["finish_reason"], "stop")
                    if text:
                        if not ttft:
                            ttft = time.perf_counter() - started
                        chunks += 1
                        pieces.append(text)
                        yield Delta(text)
        except httpx.HTTPError as exc:
            raise EngineError(f"the stream from {self.base_url} broke: {exc}") from exc
        finally:
            response.close()
        total = time.perf_counter() - started
        tool_calls = [calls[i] for i in sorted(calls)]
        yield Delta("", tool_calls=tool_calls, completion=Completion(
            text="".join(pieces), finish_reason=finish,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or chunks),
            ttft_s=ttft or total, total_s=total, model=self.model_name, tool_calls=tool_calls))


def _add_calls(calls: dict[int, dict[str, Any]], pieces: list[dict[str, Any]]) -> None:
    """Accumulate streamed tool-call fragments (by `index`) into whole OpenAI tool calls."""
    for piece in pieces:
        call = calls.setdefault(int(piece.get("index") or 0), {
            "id": "", "type": "function", "function": {"name": "", "arguments": ""}})
        call["id"] = piece.get("id") or call["id"]
        function = piece.get("function") or {}
        call["function"]["name"] += function.get("name") or ""
        call["function"]["arguments"] += function.get("arguments") or ""
