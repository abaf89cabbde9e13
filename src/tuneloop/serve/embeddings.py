"""`POST /v1/embeddings`: the project's embedding models behind the OpenAI embeddings API.

The models are the ones retrieval indexes with (`knowledge_base.embedding_model`, the bundled
all-MiniLM-L6-v2 by default) and registered routers route with (`catalogue`), so a client can
embed with exactly the vectors the knowledge base holds; `GET /v1/models` lists them to every
caller, after the chat models. Like chat: an API key, the caller's rate limit, a place in the
bounded queue, and a log row (inputs redacted, `finish_reason` "embedding", no variant) committed
before the answer.
Inputs longer than the model's window are refused (400), never silently cut.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tuneloop.errors import TuneloopError
from tuneloop.serve import requestlog
from tuneloop.serve.errors import ApiError, as_api_error, error_body

if TYPE_CHECKING:
    from tuneloop.rag.embed import Embedder
    from tuneloop.serve.server import Server

MAX_INPUTS = 2048  # OpenAI's limit per request
SHORT_NAME = "all-minilm-l6-v2"


class EmbeddingRequest(BaseModel):
    """`POST /v1/embeddings` (token-array inputs are refused: send text)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    def texts(self) -> list[str]:
        items = [self.input] if isinstance(self.input, str) else list(self.input)
        if not items:
            raise ApiError(400, "input must not be empty", code="invalid_request", param="input")
        if len(items) > MAX_INPUTS:
            raise ApiError(400, f"at most {MAX_INPUTS} inputs per request, got {len(items)}",
                           code="invalid_request", param="input")
        if not all(isinstance(i, str) for i in items):
            raise ApiError(400, "input must be a string or a list of strings: this server "
                                "does not take token arrays", code="invalid_request",
                           param="input")
        if any(not i for i in items):
            raise ApiError(400, "input must not contain empty strings", code="invalid_request",
                           param="input")
        return [str(i) for i in items]


def catalogue(server: Server) -> dict[str, str]:
    """The embedding models this server embeds with, each by the id `/v1/models` lists it under.

    The knowledge base's model (`knowledge_base.embedding_model`), the bundled all-MiniLM-L6-v2
    (always available) and the model of every registered router version: what the project
    indexes and routes with. The bundled model is listed as `all-minilm-l6-v2`, a model folder
    by its folder name; the values are what `get_embedder` loads.
    """
    from tuneloop.rag.embed import BUNDLED
    from tuneloop.router.registry import list_routers

    specs = [server.project.config.knowledge_base.embedding_model, BUNDLED]
    specs += [str(r.lineage["embedding_model"]) for r in list_routers(server.project)
              if r.lineage.get("embedding_model")]
    listed: dict[str, str] = {}
    for spec in specs:
        name = SHORT_NAME if spec == BUNDLED else (Path(spec).name or spec)
        if spec not in listed.values():
            listed.setdefault(name, spec)
    return listed


def model_names(server: Server) -> dict[str, str]:
    """Every name a client may ask for (lower-cased) mapped to the model it means: the listed
    ids, and each model's own spec (`bundled:all-minilm-l6-v2` or the folder's path)."""
    listed = catalogue(server)
    names = {spec: spec for spec in listed.values()} | listed
    return {k.lower(): v for k, v in names.items()}


def _resolve(server: Server, asked: str) -> str:
    """The embedding model a request names, or a 404 listing the ids this server embeds with."""
    model = model_names(server).get(asked.lower())
    if model is None:
        raise ApiError(404, f"no embedding model named {asked!r}; this server embeds with "
                            f"{', '.join(sorted(catalogue(server)))} (see GET /v1/models)",
                       code="model_not_found", param="model")
    return model


def _parse(raw: bytes) -> EmbeddingRequest:
    try:
        return EmbeddingRequest.model_validate_json(raw or b"null")
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first.get("loc", ())) or None
        raise ApiError(400, f"{param or 'body'}: {first.get('msg', 'invalid')}",
                       code="invalid_request", param=param) from None


def _embed(embedder: Embedder, texts: list[str]) -> tuple[np.ndarray, int]:
    """The vectors, and the tokens they took; a text over the model's window is a 400."""
    from tuneloop.rag.embed import MAX_TOKENS

    counts = embedder.count_tokens_many(texts)
    for i, count in enumerate(counts):
        if count + 2 > MAX_TOKENS:  # [CLS] and [SEP] take two places
            raise ApiError(400, f"input[{i}] is {count} tokens, over the embedding model's "
                                f"window of {MAX_TOKENS - 2}", code="context_length_exceeded",
                           param="input")
    return embedder.embed(texts), sum(counts) + 2 * len(texts)


def _encode(vector: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":  # little-endian float32, as OpenAI sends it
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


def _body(name: str, vectors: np.ndarray, tokens: int, encoding: str) -> dict[str, Any]:
    return {"object": "list", "model": name,
            "data": [{"object": "embedding", "index": i, "embedding": _encode(v, encoding)}
                     for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


async def handle(server: Server, request: Request) -> Response:
    """Answer one embeddings request, logging it whatever happens."""
    from tuneloop.rag.embed import get_embedder
    entry = requestlog.Entry(id=requestlog.new_request_id(), finish_reason="embedding")
    started = time.perf_counter()
    slot = None
    try:
        actor = await anyio.to_thread.run_sync(server.authenticate, request)
        entry.principal, entry.audience = actor.name, actor.audience
        server.limiter.take(server.keys.bucket(request.headers.get("authorization")))
        body = _parse(await request.body())
        entry.model = body.model
        texts = body.texts()
        entry.messages = [{"role": "input", "content": t} for t in texts]
        model = await anyio.to_thread.run_sync(_resolve, server, body.model)
        slot = server.admission.acquire()
        embedder = await anyio.to_thread.run_sync(get_embedder, model)
        if body.dimensions is not None and body.dimensions != embedder.dim:
            raise ApiError(400, f"{body.model} gives {embedder.dim} dimensions; it cannot be "
                                f"shortened to {body.dimensions}", code="invalid_request",
                           param="dimensions")
        vectors, tokens = await anyio.to_thread.run_sync(_embed, embedder, texts)
        entry.prompt_tokens = tokens
        entry.total_ms = (time.perf_counter() - started) * 1000
        await anyio.to_thread.run_sync(server.log, entry)
        return JSONResponse(_body(body.model, vectors, tokens, body.encoding_format),
                            headers={"x-request-id": entry.id})
    except Exception as exc:
        error = as_api_error(exc)
        entry.status, entry.error = error.status, error.message
        entry.total_ms = (time.perf_counter() - started) * 1000
        await anyio.to_thread.run_sync(server.log, entry)
        if isinstance(exc, TuneloopError | ApiError):
            return JSONResponse(error_body(error.status, error.message, type_=error.type,
                                           code=error.code, param=error.param),
                                status_code=error.status,
                                headers={**error.headers, "x-request-id": entry.id})
        raise
    finally:
        if slot is not None:
            slot.release()


def embeddings_router(server: Server) -> APIRouter:
    """The `/v1/embeddings` route, for `create_app` to include."""
    router = APIRouter()
    schema = EmbeddingRequest.model_json_schema()

    @router.post("/v1/embeddings", openapi_extra={"requestBody": {
        "required": True, "content": {"application/json": {"schema": schema}}}})
    async def embeddings(request: Request) -> Response:
        """OpenAI embeddings of one text or a list of texts (float or base64)."""
        return await handle(server, request)

    return router
