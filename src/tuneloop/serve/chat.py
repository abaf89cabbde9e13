"""`POST /v1/chat/completions`: one request from admission to its logged answer.

Order matters: authenticate, rate-limit, validate, route, take a place in the bounded queue,
build the prompt (retrieval under the caller's rights), generate, then commit the log row and only
then send the last bytes. Engines are blocking, so they run in worker threads; a stream pulls one
delta at a time, and a client that goes away closes the engine's iterator, which stops generation.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import anyio
from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from tuneloop.engines.base import Completion, Delta
from tuneloop.errors import EngineError, TuneloopError
from tuneloop.serve import capabilities, requestlog
from tuneloop.serve.errors import ApiError, as_api_error, error_body
from tuneloop.serve.limits import Slot
from tuneloop.serve.requestlog import new_request_id  # importable from here too
from tuneloop.serve.schemas import ChatCompletionRequest

if TYPE_CHECKING:
    from tuneloop.serve.server import Server

_DONE = object()
CLIENT_GONE = 499  # the status logged for requests whose client went away (nginx's convention)


def _parse(raw: bytes) -> ChatCompletionRequest:
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_request")
    try:
        return ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first.get("loc", ())) or None
        raise ApiError(400, f"{param or 'body'}: {first.get('msg', 'invalid')}",
                       code="invalid_request", param=param) from None


def _messages(body: ChatCompletionRequest) -> list[dict[str, Any]]:
    out = []
    for m in body.messages:
        role = "system" if m.role == "developer" else m.role
        out.append({"role": role, "content": m.text(), **capabilities.message_fields(m)})
    return out


def _chunk(rid: str, model: str, created: int, delta: dict[str, Any],
           finish: str | None = None, **extra: Any) -> bytes:
    payload = {"id": f"chatcmpl-{rid}", "object": "chat.completion.chunk", "created": created,
               "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
               **extra}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _finish(reason: str) -> str:
    return reason if reason in ("stop", "length", "tool_calls") else "stop"


def _call_deltas(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """A stream delta carrying whole tool calls (the SDK accumulates them by `index`)."""
    return {"tool_calls": [{"index": i, **call} for i, call in enumerate(calls)]}


def _next(iterator: Iterator[Delta]) -> Any:
    return next(iterator, _DONE)


async def handle(server: Server, request: Request) -> Response:
    """Answer one chat completion request, logging it whatever happens."""
    rid = new_request_id()
    request.state.request_id = rid
    entry = requestlog.Entry(id=rid)
    started = time.perf_counter()
    slot: Slot | None = None
    try:
        actor, body, route = await _admit(server, request, entry)
        slot = server.admission.acquire()
        variant, params, prepared = await _prepare(server, actor, body, route, entry)
        await anyio.to_thread.run_sync(server.shadow, route, entry.messages, actor, params, rid,
                                       entry.subject)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            # Started here so that a request the engine refuses gets a plain error response.
            iterator = await anyio.to_thread.run_sync(variant.stream, prepared, params)
            stream_slot, slot = slot, None  # the stream releases it when it ends
            return StreamingResponse(
                _stream(server, iterator, prepared, entry, started, body.model, include_usage,
                        stream_slot, server.gate(variant)),
                media_type="text/event-stream", headers={"x-request-id": rid,
                                                         "cache-control": "no-cache"})
        async with _entered(server.gate(variant)):
            completion, first_at = await _complete(variant, prepared, params, request)
        requestlog.record(entry, completion, started)
        if first_at is not None:  # time to first token counts from the request's arrival
            entry.ttft_ms = (first_at - started) * 1000
        await anyio.to_thread.run_sync(server.log, entry)
        return JSONResponse(_body(rid, body.model, completion, prepared.citations),
                            headers={"x-request-id": rid})
    except Exception as exc:
        error = as_api_error(exc)
        entry.status, entry.error = error.status, error.message
        if error.status == CLIENT_GONE:
            entry.finish_reason = "cancelled"
        entry.total_ms = (time.perf_counter() - started) * 1000
        await anyio.to_thread.run_sync(server.log, entry)
        if isinstance(exc, TuneloopError | ApiError):
            return _error_response(error, rid)
        raise
    finally:
        if slot is not None:
            slot.release()


async def _admit(server: Server, request: Request, entry: requestlog.Entry
                 ) -> tuple[Any, ChatCompletionRequest, Any]:
    """Who asks (by key), within their rate, for what (the parsed body), served by which
    variant (the rollout's routing): each noted on the log entry as it is known."""
    actor = await anyio.to_thread.run_sync(server.authenticate, request)
    entry.principal, entry.audience = actor.name, actor.audience
    server.limiter.take(server.keys.bucket(request.headers.get("authorization")))
    body = _parse(await request.body())
    entry.model, entry.stream = body.model, body.stream
    if body.user:  # the data subject the caller acts for: stored only as a hash
        from tuneloop.data.records import subject_hash

        entry.subject = subject_hash(body.user)
    entry.messages = _messages(body)
    route = await anyio.to_thread.run_sync(server.router.resolve, actor, body.model,
                                           entry.messages)
    entry.variant, entry.routed_by = route.variant, route.routed_by
    entry.predicted_slice, entry.slice_confidence = route.slice, route.confidence
    wanted = body.wanted_tokens()
    if wanted is not None and wanted > server.config.max_output_tokens:
        raise ApiError(400, f"max_tokens {wanted} is over this server's limit of "
                            f"{server.config.max_output_tokens}", code="max_tokens_exceeded",
                       param="max_tokens")
    return actor, body, route


async def _prepare(server: Server, actor: Any, body: ChatCompletionRequest, route: Any,
                   entry: requestlog.Entry) -> tuple[Any, Any, Any]:
    """The variant (the public only where its gates allow), the generation parameters and the
    prompt it will answer (retrieval included), within the server's input limit."""
    variant = await anyio.to_thread.run_sync(server.variant, route.variant)
    entry.tier = variant.tier
    if actor.audience == "public" and entry.tier >= 2:
        await anyio.to_thread.run_sync(server.check_public, route, variant)
    # In a worker thread: checking what the engine can do may load it (seconds).
    params = await anyio.to_thread.run_sync(_params, body, variant, body.wanted_tokens())
    prepared, prompt_tokens = await anyio.to_thread.run_sync(
        server.prepare, variant, entry.messages, actor)
    entry.chunk_ids = [str(getattr(h, "chunk_id", h)) for h in prepared.hits]
    entry.tier = requestlog.tier_of(entry.tier, prepared.hits)
    entry.prompt_tokens = prompt_tokens
    if prompt_tokens > server.config.max_input_tokens:
        raise ApiError(400, f"the prompt is {prompt_tokens} tokens, over this server's limit "
                            f"of {server.config.max_input_tokens}",
                       code="context_length_exceeded", param="messages")
    return variant, params, prepared


def _params(body: ChatCompletionRequest, variant: Any, wanted: int | None) -> Any:
    """The generation parameters of this request for this variant (a 400 for what its engine
    cannot honour)."""
    return variant.params(max_tokens=wanted, temperature=body.temperature, top_p=body.top_p,
                          stop=body.stops(), seed=body.seed,
                          response_format=capabilities.response_format(body, variant),
                          tools=capabilities.tool_request(body, variant))


@contextlib.asynccontextmanager
async def _entered(gate: anyio.Semaphore | None) -> AsyncIterator[None]:
    """Hold the engine's gate (see `Server.gate`) for the block, if it has one."""
    if gate is None:
        yield
        return
    async with gate:
        yield


async def _complete(variant: Any, prepared: Any, params: Any,
                    request: Request) -> tuple[Completion, float | None]:
    """The whole answer, like `engine.chat`, except that a client that goes away stops it;
    with the moment (`time.perf_counter()`) its first token arrived, None for an empty answer.

    The answer is generated as a stream in a worker thread that checks, between tokens, a flag
    set as soon as the server sees the client disconnect; closing the engine's iterator then
    stops generation, so an abandoned request does not hold the engine.
    """
    gone = threading.Event()
    # Started here, outside the task group, so that a request the engine refuses raises its own
    # error (a 400), not an exception group.
    iterator = await anyio.to_thread.run_sync(variant.stream, prepared, params)
    failure: list[Exception] = []
    first: list[float] = []

    def generate() -> Completion | None:
        pieces: list[str] = []
        completion: Completion | None = None
        try:
            for delta in iterator:
                if gone.is_set():
                    return None
                if not first and (delta.text or delta.tool_calls):
                    first.append(time.perf_counter())
                pieces.append(delta.text)
                if delta.completion is not None:
                    completion = delta.completion
        except Exception as exc:  # re-raised below, where the server maps it to its status
            failure.append(exc)
            return None
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
        if completion is None:
            failure.append(EngineError("the engine's stream ended without its final completion"))
            return None
        completion.text = completion.text or "".join(pieces)
        return completion

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        gone.set()

    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        result = await anyio.to_thread.run_sync(generate)
        group.cancel_scope.cancel()
    if failure:
        raise failure[0]
    if result is None:
        raise ApiError(CLIENT_GONE, "client disconnected before the answer was complete",
                       code="client_disconnected")
    return result, (first[0] if first else None)


def _error_response(error: ApiError, rid: str) -> JSONResponse:
    return JSONResponse(error_body(error.status, error.message, type_=error.type,
                                   code=error.code, param=error.param),
                        status_code=error.status, headers={**error.headers, "x-request-id": rid})


def _usage(completion: Completion) -> dict[str, int]:
    return {"prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens}


def _body(rid: str, model: str, completion: Completion,
          citations: list[dict[str, Any]]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": completion.text}
    if completion.tool_calls:
        message["content"] = completion.text or None
        message["tool_calls"] = completion.tool_calls
    body: dict[str, Any] = {
        "id": f"chatcmpl-{rid}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message,
                     "finish_reason": _finish(completion.finish_reason), "logprobs": None}],
        "usage": _usage(completion),
    }
    if citations:
        body["citations"] = citations
    return body


async def _stream(server: Server, iterator: Iterator[Delta], prepared: Any,
                  entry: requestlog.Entry, started: float, model: str,
                  include_usage: bool, slot: Slot,
                  gate: anyio.Semaphore | None) -> AsyncIterator[bytes]:
    rid, created = entry.id, int(time.time())
    pieces: list[str] = []
    completion: Completion | None = None
    logged = False
    inside = False
    try:
        extra = {"citations": prepared.citations} if prepared.citations else {}
        yield _chunk(rid, model, created, {"role": "assistant", "content": ""}, **extra)
        if gate is not None:
            await gate.acquire()  # held until the iterator is closed, below
            inside = True
        while True:
            delta = await anyio.to_thread.run_sync(_next, iterator)
            if delta is _DONE:
                break
            if (delta.text or delta.tool_calls) and entry.ttft_ms is None:
                entry.ttft_ms = (time.perf_counter() - started) * 1000
            if delta.text:
                pieces.append(delta.text)
                yield _chunk(rid, model, created, {"content": delta.text})
            if delta.tool_calls:
                yield _chunk(rid, model, created, _call_deltas(delta.tool_calls))
            if delta.completion is not None:
                completion = delta.completion
        _streamed(entry, pieces, completion, started)
        # The log row is committed before the last bytes (finish, usage, [DONE]) go out.
        await anyio.to_thread.run_sync(server.log, entry)
        logged = True
        for event in _last_events(entry, completion, model, created, include_usage):
            yield event
    except Exception as exc:
        # A failed stream ends with an error event, never a silently truncated 200.
        error = as_api_error(exc)
        _ended(entry, pieces, started, error.status, error.message, "error")
        if not logged:
            await anyio.to_thread.run_sync(server.log, entry)
            logged = True
        yield b"data: " + json.dumps(error_body(error.status, error.message, type_=error.type,
                                                code=error.code)).encode() + b"\n\n"
    finally:
        with anyio.CancelScope(shield=True):
            close = getattr(iterator, "close", None)
            if close is not None:
                await anyio.to_thread.run_sync(close)
            if inside and gate is not None:
                gate.release()
            if not logged:
                # The client went away mid-stream: generation stopped; log what was sent.
                _ended(entry, pieces, started, CLIENT_GONE,
                       "client disconnected before the end of the stream", "cancelled")
                await anyio.to_thread.run_sync(server.log, entry)
            slot.release()


def _streamed(entry: requestlog.Entry, pieces: list[str], completion: Completion | None,
              started: float) -> None:
    """Note a finished stream on its log entry: what was sent, and the engine's figures."""
    entry.output = "".join(pieces)
    if completion is not None:
        ttft = entry.ttft_ms
        requestlog.record(entry, completion, started)
        if not completion.tool_calls:
            entry.output = "".join(pieces) or completion.text
        entry.ttft_ms = ttft if ttft is not None else entry.ttft_ms
    entry.total_ms = (time.perf_counter() - started) * 1000


def _ended(entry: requestlog.Entry, pieces: list[str], started: float, status: int,
           error: str, finish_reason: str) -> None:
    """Note a stream that ended early (an error, or a client gone) on its log entry."""
    entry.status, entry.error, entry.finish_reason = status, error, finish_reason
    entry.output = "".join(pieces)
    entry.total_ms = (time.perf_counter() - started) * 1000


def _last_events(entry: requestlog.Entry, completion: Completion | None, model: str,
                 created: int, include_usage: bool) -> list[bytes]:
    """The stream's closing events: the finish reason, the usage when asked for, [DONE]."""
    events = [_chunk(entry.id, model, created, {}, _finish(entry.finish_reason or "stop"))]
    if include_usage and completion is not None:
        usage = {"id": f"chatcmpl-{entry.id}", "object": "chat.completion.chunk",
                 "created": created, "model": model, "choices": [],
                 "usage": _usage(completion)}
        events.append(b"data: " + json.dumps(usage).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events
