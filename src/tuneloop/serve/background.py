"""Run an ASGI app under uvicorn in a background thread on loopback (demo traffic, tests).

    with serve_in_background(create_app(project)) as base_url:
        httpx.get(base_url + "/health")

The socket is bound here before uvicorn starts, so port 0 picks a free ephemeral port without the
race of "find a free port, then hope nobody takes it"; the block starts only once the app's
startup (lifespan) has finished, and leaving it stops the server and waits for its thread.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from tuneloop.errors import TuneloopError

LOOPBACK = "127.0.0.1"


@contextmanager
def serve_in_background(
    app: Any,
    *,
    port: int = 0,
    lifespan: Literal["on", "off", "auto"] = "on",
    ready_timeout_s: float = 180.0,
    shutdown_timeout_s: float = 15.0,
    log_level: str = "warning",
) -> Iterator[str]:
    """Serve `app` on 127.0.0.1:`port` (0: a free port) in a thread; yields the base URL.

    Waits until uvicorn reports it has started (lifespan startup included: the serving app loads
    its PII recognisers then, hence the generous `ready_timeout_s`) and raises TuneloopError if
    it does not. On exit the server stops accepting, open connections get `shutdown_timeout_s`
    to finish, and the thread is joined.
    """
    import uvicorn

    # IPPROTO_TCP spelled out: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
    # sockets whose protocol says TCP, and with it on every small response waits ~40 ms for the
    # client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((LOOPBACK, port))
    except OSError as exc:
        sock.close()
        raise TuneloopError(f"cannot listen on {LOOPBACK}:{port}: {exc.strerror}",
                            hint="choose another port, or 0 for any free one") from exc
    bound = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level=log_level, lifespan=lifespan,
                            timeout_graceful_shutdown=int(max(1, shutdown_timeout_s)))
    server = uvicorn.Server(config)

    def run() -> None:
        # uvicorn leaves with SystemExit when the app's startup fails; that is reported below,
        # in the caller's thread, as a TuneloopError.
        with contextlib.suppress(SystemExit):
            server.run(sockets=[sock])

    thread = threading.Thread(target=run, name=f"uvicorn-{bound}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + ready_timeout_s
        while not server.started:
            if not thread.is_alive():
                raise TuneloopError(f"the server on {LOOPBACK}:{bound} stopped while starting",
                                    hint="its startup error is in the log above")
            if time.monotonic() > deadline:
                raise TuneloopError(f"the server on {LOOPBACK}:{bound} did not start within "
                                    f"{ready_timeout_s:.0f} s")
            time.sleep(0.02)
        yield f"http://{LOOPBACK}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=shutdown_timeout_s + 5)
        if thread.is_alive():  # a handler that ignores cancellation: stop waiting for it
            server.force_exit = True
            thread.join(timeout=5)
        sock.close()
