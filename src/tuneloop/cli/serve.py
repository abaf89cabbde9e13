"""`tuneloop serve`: the OpenAI-compatible server (FastAPI + uvicorn)."""

from __future__ import annotations

import typer

from tuneloop.cli._common import console, state


def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(None, help="Address to listen on (default: server.host)."),
    port: int | None = typer.Option(None, help="Port to listen on (default: server.port)."),
    preload: bool = typer.Option(True, help="Load the application alias's variants at start."),
    log_level: str = typer.Option("warning", help="uvicorn's log level."),
) -> None:
    """Serve the project's variants with an OpenAI-compatible API.

    Any OpenAI client works unchanged: point its base URL at http://HOST:PORT/v1 and use an API
    key from `tuneloop keys create`. Several processes may share one PostgreSQL database
    (TUNELOOP_DATABASE_URL) behind a load balancer.

    Example:  tuneloop serve --port 8765
    """
    import uvicorn

    from tuneloop.webapp import create_app

    project = state(ctx).project()
    config = project.config.server
    app = create_app(project)
    if preload:
        from tuneloop import rollout
        from tuneloop.rollout.members import variants_of

        server = app.state.server
        entries = [e.variant for e in rollout.state(project, config.app_alias).entries]
        serving = list(dict.fromkeys(v for e in entries for v in variants_of(project, e)))
        for name in serving or server.router.variant_names()[:1]:
            with console.status(f"loading variant {name}..."):
                server.variant(name).engine  # noqa: B018  (loads and caches the engine)
        for name in entries:  # a routed variant's router and embedding model, warmed up
            if name not in serving:
                server.router.choose(name, None, [{"role": "user", "content": "warm-up"}])
    bind_host, bind_port = host or config.host, port or config.port
    console.print(f"[green]✓[/] serving {project.config.task.name} on "
                  f"http://{bind_host}:{bind_port}/v1  (model: {config.app_alias})")
    console.print(f"  dashboard: http://{bind_host}:{bind_port}/ui/  (sign in with an API key); "
                  f"metrics: http://{bind_host}:{bind_port}/metrics")
    # Connections beyond the queue plus headroom are refused by uvicorn itself (503), so memory
    # stays bounded however many clients connect.
    uvicorn.run(app, host=bind_host, port=bind_port, log_level=log_level,
                limit_concurrency=config.queue_size * 2 + 16, timeout_graceful_shutdown=10)
