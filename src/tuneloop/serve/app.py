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
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import text

from tuneloop import rollout
from tuneloop.engines.base import GenerationParams
from tuneloop.governance.tiers import Actor
from tuneloop.project import Project
from tuneloop.serve import chat, feedback, requestlog
from tuneloop.serve.auth import DEFAULT_TTL_S, KeyCache
from tuneloop.serve.errors import TYPES, ApiError, install
from tuneloop.serve.limits import Admission, BodyLimit, RateLimiter
from tuneloop.serve.metrics import CONTENT_TYPE_LATEST, Metrics
from tuneloop.serve.routing import Route, Router
from tuneloop.serve.schemas import (
    ChatCompletionRequest,
    ErrorBody,
    FeedbackRequest,
    FeedbackResponse,
    ModelCard,
    ModelList,
)

VariantLoader = Callable[[str], Any]
MAX_PENDING_SHADOWS = 8
PUBLIC_CHECK_TTL_S = 2.0
FAILED_AUTH_PER_MINUTE = 10  # per client address: bounds key guessing and what it costs us
UNAUTHENTICATED_LOG_ROWS_PER_MINUTE = 10  # for the whole process; the rest are only counted
PUBLIC_METRICS_ENV = "TUNELOOP_PUBLIC_METRICS"


class Server:
    """What the routes share: the project, caches, limits, metrics and the variants in use."""

    def __init__(self, project: Project, *, variant_loader: VariantLoader | None = None,
                 auth_ttl_s: float = DEFAULT_TTL_S) -> None:
        self.project = project
        self.store = project.store
        self.config = project.config.server
        self.entities = list(project.config.privacy.redact)
        self.keys = KeyCache(self.store, auth_ttl_s)
        self.limiter = RateLimiter(self.config.rate_limit_per_minute)
        self.failures = RateLimiter(FAILED_AUTH_PER_MINUTE, what="this address")
        self._unauthenticated_rows = RateLimiter(UNAUTHENTICATED_LOG_ROWS_PER_MINUTE)
        self.admission = Admission(self.config.queue_size)
        self.metrics = Metrics()
        self.metrics.in_flight.set_function(lambda: self.admission.in_flight)
        self.router = Router(project)
        self._loader = variant_loader or self._load_variant
        self._variants: dict[str, Any] = {}
        self._gates: weakref.WeakKeyDictionary[Any, anyio.Semaphore] = (
            weakref.WeakKeyDictionary())
        self._lock = threading.Lock()
        self._shadows = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tuneloop-shadow")
        self._shadow_pending = 0
        self._public_ok: dict[tuple[str, str], tuple[float, bool]] = {}

    def authenticate(self, request: Request) -> Actor:
        """The caller, or a 401; an address with too many failed attempts gets a 429 before its
        key is even looked up. Every rejection is counted in the metrics."""
        known = self.keys.cached(request.headers.get("authorization"))
        if known is not None:  # a key that just worked passes even from a blocked address
            return known
        address = request.client.host if request.client else "-"
        try:
            self.failures.check(address)
        except ApiError:
            self.metrics.unauthenticated.labels("address_limited").inc()
            raise
        try:
            return self.keys.actor(request.headers.get("authorization"))
        except ApiError as exc:
            self.failures.try_take(address)
            self.metrics.unauthenticated.labels(exc.code or "invalid_api_key").inc()
            raise

    def _load_variant(self, name: str) -> Any:
        from tuneloop.variants import get_variant

        return get_variant(self.project, name)

    def variant(self, name: str) -> Any:
        """The variant of this name, built once (its engine is shared by every request)."""
        with self._lock:
            found = self._variants.get(name)
        if found is None:
            found = self._loader(name)
            with self._lock:
                found = self._variants.setdefault(name, found)
        return found

    def gate(self, variant: Any) -> anyio.Semaphore | None:
        """The engine's turnstile: at most as many requests inside it as it runs at once.

        Requests wait for the engine here, in the event loop, never in a worker thread: a
        llama.cpp context (or the transformers lock) is held across a stream's tokens, and a
        stream needs a worker thread for each next token; if every worker thread sat blocked
        waiting for the context, the stream holding it could never finish (a deadlock under
        load). None for engines that take any number of requests (HTTP endpoints).
        """
        engine = variant.engine
        parallel = getattr(engine, "parallel", None)
        if not isinstance(parallel, int):
            if getattr(engine, "kind", "") == "openai":
                return None
            parallel = 1
        with self._lock:
            gate = self._gates.get(engine)
            if gate is None:
                gate = self._gates[engine] = anyio.Semaphore(max(1, parallel))
        return gate

    def prepare(self, variant: Any, messages: Sequence[dict[str, Any]],
                actor: Actor) -> tuple[Any, int]:
        """The prompt the variant will send (retrieval included) and its length in tokens."""
        prepared = variant.prepare(messages, actor)
        return prepared, variant.engine.count_tokens(prepared.messages)

    def check_public(self, route: Route, variant: Any) -> None:
        """Refuse (503) a Tier 2 variant to the public once its deploy-public approval is gone.

        Checked again every few seconds (cached), so a revocation stops public traffic quickly.
        """
        key = (route.alias or "", route.entry)
        now = time.monotonic()
        with self._lock:
            hit = self._public_ok.get(key)
        if hit is None or hit[0] <= now:
            allowed = route.alias is not None and rollout.public_approval_live(
                self.project, route.alias, route.entry, variant.resource)
            hit = (now + PUBLIC_CHECK_TTL_S, allowed)
            with self._lock:
                self._public_ok[key] = hit
        if not hit[1]:
            raise ApiError(503, f"the model {route.alias!r} is unavailable right now; retry later",
                           code="model_unavailable", headers={"Retry-After": "60"})

    def log(self, entry: requestlog.Entry) -> None:
        """Commit the request's log row, then count it in the metrics.

        Rows of requests that never authenticated are bounded (a flood of them is counted in the
        metrics, not written one row each).
        """
        if entry.principal is not None or self._unauthenticated_rows.try_take("-"):
            requestlog.write(self.store, self.entities, entry)
        error_type = TYPES.get(entry.status, "server_error") if entry.status >= 400 else None
        if entry.shadow_of is None:
            self.metrics.observe(entry.variant, entry.status, entry.total_ms / 1000,
                                 None if entry.ttft_ms is None else entry.ttft_ms / 1000,
                                 entry.prompt_tokens, entry.completion_tokens, error_type)

    def shadow(self, route: Route, messages: list[dict[str, Any]], actor: Actor,
               params: GenerationParams, request_id: str, subject: str | None = None) -> None:
        """Send a copy of the request to each shadow variant; answers are logged, never returned.

        Shadows run one at a time in the background, and are skipped when too many wait, so they
        never slow down or crowd out the requests users are waiting for.
        """
        for name in route.shadows:
            if name == route.variant:
                continue
            with self._lock:
                full = self._shadow_pending >= MAX_PENDING_SHADOWS
                if not full:
                    self._shadow_pending += 1
            if full:
                self._drop_shadow(name, actor, request_id, route.alias or "", subject)
                continue
            self._shadows.submit(self._run_shadow, name, messages, actor, params, request_id,
                                 route.alias or "", subject)

    def _drop_shadow(self, name: str, actor: Actor, request_id: str, alias: str,
                     subject: str | None) -> None:
        """Count a shadow request skipped because too many wait: in /metrics, and as a log row
        (status 503, finish_reason "dropped", no prompt) so evaluations know what is missing."""
        self.metrics.shadow_dropped.labels(name).inc()
        self.log(requestlog.Entry(
            id=chat.new_request_id(), model=alias, principal=actor.name, audience=actor.audience,
            variant=name, shadow_of=request_id, subject=subject, status=503,
            finish_reason="dropped",
            error=f"shadow dropped: {MAX_PENDING_SHADOWS} shadow requests were already pending"))

    def _run_shadow(self, name: str, messages: list[dict[str, Any]], actor: Actor,
                    params: GenerationParams, request_id: str, alias: str,
                    subject: str | None) -> None:
        entry = requestlog.Entry(id=chat.new_request_id(), model=alias, principal=actor.name,
                                 audience=actor.audience, variant=name, shadow_of=request_id,
                                 subject=subject, messages=messages)
        started = time.perf_counter()
        try:
            variant = self.variant(name)
            entry.tier = variant.tier
            result = variant.run(messages, actor, params)
            entry.chunk_ids = [str(getattr(h, "chunk_id", h)) for h in result.hits]
            entry.tier = requestlog.tier_of(entry.tier, result.hits)
            requestlog.record(entry, result.completion, started)
        except Exception as exc:
            entry.status, entry.error = 500, f"shadow failed: {exc}"
            entry.total_ms = (time.perf_counter() - started) * 1000
        finally:
            with self._lock:
                self._shadow_pending -= 1
        self.log(entry)

    def close(self) -> None:
        self._shadows.shutdown(wait=True, cancel_futures=True)


def _reject_logger(server: Server) -> Callable[[dict[str, Any], int, str], None]:
    def on_reject(scope: dict[str, Any], status: int, message: str) -> None:
        if scope.get("path") == "/v1/chat/completions":
            server.log(requestlog.Entry(id=chat.new_request_id(), status=status, error=message))
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
