"""`serve_in_background`: an app on a loopback port in a thread, started and stopped cleanly."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from tuneloop.errors import TuneloopError
from tuneloop.serve.background import serve_in_background


def hello_app() -> FastAPI:
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app


def test_app_answers_on_a_free_port_and_the_port_closes_afterwards() -> None:
    with serve_in_background(hello_app()) as url:
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(url + "/hello").json() == {"hello": "world"}
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/hello", timeout=2)


def test_a_taken_port_is_a_clear_error() -> None:
    with serve_in_background(hello_app()) as url:
        port = int(url.rsplit(":", 1)[1])
        with (pytest.raises(TuneloopError, match=f"cannot listen on 127.0.0.1:{port}"),
              serve_in_background(hello_app(), port=port)):
            pass


def test_an_app_that_fails_to_start_is_a_clear_error() -> None:
    @contextlib.asynccontextmanager
    async def broken(_: FastAPI) -> AsyncIterator[None]:
        raise RuntimeError("no database")
        yield

    with (pytest.raises(TuneloopError, match="stopped while starting"),
          serve_in_background(FastAPI(lifespan=broken), log_level="critical")):
        pass
