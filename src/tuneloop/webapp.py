"""The whole web application: the OpenAI-compatible API with the dashboard mounted at `/ui`.

    app = create_app(Project.open("."))      # what `tuneloop serve` runs

It lives above `serve` and `ui` so that neither imports the other: `serve` owns the HTTP API
only, `ui` the pages only.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from tuneloop.project import Project


def create_app(project: Project, *, dashboard: bool = True, **serve_options: Any) -> FastAPI:
    """The serving app of `project` (`serve.app.create_app` options), with the dashboard."""
    from tuneloop.serve.app import create_app as create_api_app

    app = create_api_app(project, **serve_options)
    if dashboard:
        from tuneloop.ui import mount

        mount(app, project)
    return app
