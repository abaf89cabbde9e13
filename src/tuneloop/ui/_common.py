"""What every dashboard page shares: the `Dashboard` (project and renderer), and the helpers a
page handler answers with (flash a message, redirect to a named page, check the audience).

Its own module so that the app (ui/app.py) and the pages it mounts (ui/pages_*.py) both import
it, and not each other.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from tuneloop.errors import PermissionDenied
from tuneloop.governance.tiers import Actor
from tuneloop.project import Project
from tuneloop.ui import session as sess

NAV = (("overview", "Overview"), ("evaluations", "Evaluations"), ("requests", "Request log"),
       ("review", "Review queue"), ("approvals", "Approvals"), ("audit", "Audit"))


@dataclass
class Dashboard:
    """What every page handler shares: the project and the template renderer."""

    project: Project
    templates: Jinja2Templates

    async def actor(self, request: Request) -> Actor:
        """The signed-in principal (re-checked in the store), or `SignInRequired`."""
        return await anyio.to_thread.run_sync(sess.session_actor, request, self.project.store)

    def render(self, request: Request, template: str, actor: Actor | None, *,
               status_code: int = 200, **context: Any) -> HTMLResponse:
        """A page, with the nav, the flashed messages and the session's CSRF token."""
        flashes = request.session.pop("flash", [])
        page = {"request": request, "actor": actor, "nav": NAV, "flashes": flashes,
                "csrf_field": sess.CSRF_FIELD, "csrf": sess.csrf_token(request),
                "project_name": self.project.config.task.name, "url": _url_helper(request),
                **context}
        return self.templates.TemplateResponse(request, template, page, status_code=status_code)


def path_for(request: Request, name: str, **path_params: Any) -> str:
    """The path of a named dashboard route, wherever the dashboard is mounted."""
    # The dashboard's own router, not the request's (that is the outer app's when mounted).
    route = request.app.router.url_path_for(name, **path_params)
    return request.scope.get("root_path", "").rstrip("/") + str(route)


def _url_helper(request: Request) -> Any:
    def url(name: str, query: dict[str, Any] | None = None, **path_params: Any) -> str:
        path = path_for(request, name, **path_params)
        if query:
            clean = {k: v for k, v in query.items() if v not in (None, "")}
            if clean:
                path += "?" + urllib.parse.urlencode(clean)
        return path
    return url


def flash(request: Request, kind: str, message: str) -> None:
    """A message shown once on the next page (kind: ok | error)."""
    request.session.setdefault("flash", []).append([kind, message])


def redirect(request: Request, name: str, **path_params: Any) -> RedirectResponse:
    """303 See Other to a named page: the answer to every successful form."""
    return RedirectResponse(path_for(request, name, **path_params), status_code=303)


def dashboard(request: Request) -> Dashboard:
    """The `Dashboard` of the app serving this request."""
    return request.app.state.dashboard


def require_internal(actor: Actor) -> None:
    """Loop pages are for the team; public-audience principals see only their own requests."""
    if actor.audience != "internal":
        raise PermissionDenied(f"{actor.name} is a public-audience principal; this page is for "
                               "the internal team")
