"""The one place where errors become OpenAI-style bodies: `{"error": {message, type, param, code}}`.

tuneloop's own errors carry their HTTP status; the server adds a few of its own (authentication,
rate limits, a full queue, a body too large) as `ApiError`. FastAPI's validation errors (422)
become 400s, as OpenAI answers them.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tuneloop.errors import TuneloopError

log = logging.getLogger("tuneloop.serve")

TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
         404: "not_found_error", 405: "invalid_request_error", 409: "conflict_error",
         413: "request_too_large", 429: "rate_limit_error", 503: "overloaded_error"}


class ApiError(Exception):
    """An error the server answers with `status`; `headers` go on the response (Retry-After)."""

    def __init__(self, status: int, message: str, *, code: str | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}
        self.type = TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def error_body(status: int, message: str, *, type_: str | None = None, code: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    """The OpenAI error body."""
    return {"error": {"message": message, "type": type_ or TYPES.get(status, "server_error"),
                      "param": param, "code": code}}


def as_api_error(exc: BaseException) -> ApiError:
    """Any exception as the ApiError the caller sees (internal details stay in the server log)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, TuneloopError):
        error = ApiError(exc.http_status, str(exc), code=type(exc).__name__)
        error.type = exc.error_type
        return error
    log.exception("unexpected error while serving a request", exc_info=exc)
    return ApiError(500, "internal server error; the request id in x-request-id names it in the "
                         "server's log", code="internal_error")


def response_for(exc: BaseException, request_id: str | None = None) -> JSONResponse:
    """The JSON response for an error, with its headers and the request id."""
    error = as_api_error(exc)
    headers = dict(error.headers)
    if request_id:
        headers["x-request-id"] = request_id
    return JSONResponse(error_body(error.status, error.message, type_=error.type, code=error.code,
                                   param=error.param), status_code=error.status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request body", None
    first = errors[0]
    where = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(where) or None
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"{param or 'body'}: {first.get('msg', 'invalid')}{more}", param


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into an OpenAI error body."""

    def _rid(request: Request) -> str | None:
        return getattr(request.state, "request_id", None)

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return response_for(exc, _rid(request))

    @app.exception_handler(TuneloopError)
    async def _tuneloop(request: Request, exc: TuneloopError) -> JSONResponse:
        return response_for(exc, _rid(request))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return response_for(ApiError(400, message, code="invalid_request", param=param),
                            _rid(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
        return response_for(ApiError(exc.status_code, message, headers=dict(exc.headers or {})),
                            _rid(request))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return response_for(exc, _rid(request))
