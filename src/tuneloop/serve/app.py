"""The FastAPI app: an OpenAI-compatible API in front of the project's variants.

    app = create_app(Project.open("."))      # then: uvicorn.run(app)

Routes: `POST /v1/chat/completions`, `POST /v1/embeddings`, `GET /v1/models`,
`POST /v1/feedback`, `GET /health`, `GET /metrics`, `GET /openapi.json`, `GET /docs`.
Everything but `/health` (which says ok or not, nothing more) takes an API key;
`TUNELOOP_PUBLIC_METRICS=1` (or `public_metrics=True`) opens `/metrics` to a scraper without
one. The app keeps no state that matters between requests (everything is in the store), so
several replicas can share one PostgreSQL database.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import text

from tuneloop.project import Project
from tuneloop.serve import chat, feedback, requestlog
from tuneloop.serve.auth import DEFAULT_TTL_S
from tuneloop.serve.errors import install
from tuneloop.serve.limits import BodyLimit
from tuneloop.serve.metrics import CONTENT_TYPE_LATEST
from tuneloop.serve.schemas import (
    ChatCompletionRequest,
    ErrorBody,
    FeedbackRequest,
    FeedbackResponse,
    ModelCard,
    ModelList,
)
from tuneloop.serve.server import MAX_PENDING_SHADOWS as MAX_PENDING_SHADOWS  # importable here too
from tuneloop.serve.server import Server, VariantLoader

PUBLIC_METRICS_ENV = "TUNELOOP_PUBLIC_METRICS"


def _reject_logger(server: Server) -> Callable[[dict[str, Any], int, str], None]:
    def on_reject(scope: dict[str, Any], status: int, message: str) -> None:
        if scope.get("path") == "/v1/chat/completions":
            server.log(requestlog.Entry(id=requestlog.new_request_id(), status=status,
                                        error=message))
    return on_reject


def _keyed_api_docs(app: FastAPI, server: Server) -> None:
    """`/openapi.json` and `/docs`, for callers with a key only: the API's shape is no secret,
    but nothing about a deployment is shown to someone who may not use it."""

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document(request: Request) -> JSONResponse:
        await anyio.to_thread.run_sync(server.authenticate, request)
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        await anyio.to_thread.run_sync(server.authenticate, request)
        return get_swagger_ui_html(openapi_url="/openapi.json", title="tuneloop API")


def create_app(project: Project, *, variant_loader: VariantLoader | None = None,
               auth_ttl_s: float = DEFAULT_TTL_S, retention: bool = True,
               public_metrics: bool = False) -> FastAPI:
    """The serving app for `project`. `variant_loader(name)` overrides how variants are built.

    With `retention` expired request logs are purged periodically in the background (harmless
    when several replicas do it). The dashboard is not part of it: `tuneloop.webapp` mounts both.
    """
    server = Server(project, variant_loader=variant_loader, auth_ttl_s=auth_ttl_s)
    errors = {code: {"model": ErrorBody} for code in (400, 401, 403, 404, 413, 429, 503)}
    app = FastAPI(title="tuneloop", version="1", responses=errors,  # type: ignore[arg-type]
                  lifespan=_lifespan(project, server, retention),
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = server
    install(app)
    chat_defs = _openai_routes(app, server)
    _operations_routes(app, server,
                       public_metrics or os.environ.get(PUBLIC_METRICS_ENV) == "1")
    _keyed_api_docs(app, server)
    from tuneloop.serve.embeddings import embeddings_router
    from tuneloop.serve.governance_api import governance_router  # team mode

    app.include_router(governance_router(server))
    app.include_router(embeddings_router(server))

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = FastAPI.openapi(app)
            document.setdefault("components", {}).setdefault("schemas", {}).update(chat_defs)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(BodyLimit, max_bytes=project.config.server.max_body_bytes,
                       on_reject=_reject_logger(server))
    return app


def _lifespan(project: Project, server: Server, retention: bool
              ) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """Start-up (PII recognisers loaded, the retention purge started) and shut-down."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Load the PII recognisers before the first request rather than during it.
        await anyio.to_thread.run_sync(requestlog.redact, server.entities, ["warm-up"])
        scheduler = None
        if retention:
            from tuneloop.flywheel.retention import Scheduler

            scheduler = Scheduler(project).start()  # purges expired logs now, then every hour
        yield
        if scheduler is not None:
            scheduler.stop()
        server.close()

    return lifespan


def _openai_routes(app: FastAPI, server: Server) -> dict[str, Any]:
    """Chat completions, models and feedback; returns the chat request's schema definitions,
    which the OpenAPI document needs (the body is parsed by hand, so that even invalid requests
    are logged, and declared here)."""
    chat_schema = ChatCompletionRequest.model_json_schema(
        ref_template="#/components/schemas/{model}")
    chat_defs: dict[str, Any] = chat_schema.pop("$defs", {})

    @app.post("/v1/chat/completions", openapi_extra={"requestBody": {
        "required": True, "content": {"application/json": {"schema": chat_schema}}}})
    async def chat_completions(request: Request) -> Response:
        """An OpenAI chat completion, streamed as server-sent events when `stream` is true."""
        return await chat.handle(server, request)

    @app.get("/v1/models", response_model=ModelList)
    async def models(request: Request) -> ModelList:
        """The models the caller may use: aliases and (internal callers) variants for chat,
        then the embedding models `/v1/embeddings` takes."""
        actor = await anyio.to_thread.run_sync(server.authenticate, request)
        names = await anyio.to_thread.run_sync(server.router.models_for, actor)
        from tuneloop.serve.embeddings import catalogue

        embedders = await anyio.to_thread.run_sync(catalogue, server)
        names += [n for n in embedders if n not in names]
        return ModelList(data=[ModelCard(id=n) for n in names])

    @app.post("/v1/feedback", response_model=FeedbackResponse)
    async def post_feedback(request: Request, body: FeedbackRequest) -> FeedbackResponse:
        """Attach a rating, comment or corrected answer to a request the caller made."""
        actor = await anyio.to_thread.run_sync(server.authenticate, request)
        server.limiter.take(server.keys.bucket(request.headers.get("authorization")))
        feedback_id = await anyio.to_thread.run_sync(feedback.add, server.store, server.entities,
                                                     actor, body)
        return FeedbackResponse(id=feedback_id, request_id=body.request_id)

    return chat_defs


def _operations_routes(app: FastAPI, server: Server, open_metrics: bool) -> None:
    """/health for load balancers, /metrics for Prometheus (keyed unless opened)."""

    @app.get("/health")
    async def health() -> JSONResponse:
        """Whether this replica can serve: ok, or 503 when its database does not answer."""
        def ping() -> None:
            with server.store.session(write=False) as session:
                session.execute(text("SELECT 1"))
        try:
            await anyio.to_thread.run_sync(ping)
        except Exception:
            return JSONResponse({"status": "unavailable"}, 503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        """Prometheus metrics (with a key, unless opened to scrapers): requests, latency,
        tokens and errors per variant, queue depth, rejected unauthenticated requests."""
        if not open_metrics:
            await anyio.to_thread.run_sync(server.authenticate, request)
        return Response(server.metrics.render(), media_type=CONTENT_TYPE_LATEST)
