"""The dashboard app: server-rendered pages at `/ui`, mounted into the serving app.

    app.mount("/ui", create_ui_app(project))     # what serve.app.create_app does

Pages: sign-in, Overview, Evaluations, Request log, Review queue, Approvals, Audit. Everything a
page shows is decided on the server (role, audience, the governance gate for Tier 2); there is no
JavaScript, so a Content-Security-Policy forbids scripts altogether.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import anyio
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from tuneloop.errors import NotFound, PermissionDenied, TuneloopError
from tuneloop.governance.tiers import Actor
from tuneloop.numbers import fmt
from tuneloop.project import Project
from tuneloop.ui import session as sess
from tuneloop.ui._common import Dashboard, dashboard, flash, path_for, redirect

MOUNT_PATH = "/ui"
SECURITY_HEADERS = {
    # No scripts at all; matplotlib's SVG charts carry inline styles.
    "content-security-policy": "default-src 'self'; script-src 'none'; style-src 'self' "
    "'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    # Pages may hold Tier 2 text: never keep them in a shared or browser cache.
    "cache-control": "no-store",
}


def _login_router() -> APIRouter:
    router = APIRouter()

    @router.get("/login", name="login")
    async def login_page(request: Request, next: str = "") -> HTMLResponse:
        """The sign-in form."""
        return dashboard(request).render(request, "login.html.j2", None, next=_safe_next(next))

    @router.post("/login", name="login_post")
    async def login(request: Request) -> Response:
        """Check the API key and start a session."""
        form = await sess.check_csrf(request)
        ui = dashboard(request)
        target = _safe_next(form.get("next", ""))
        try:
            actor = await anyio.to_thread.run_sync(sess.sign_in, request, ui.project.store,
                                                   form.get("api_key", ""))
        except PermissionDenied:
            return ui.render(request, "login.html.j2", None, status_code=401, next=target,
                             error="That API key is not valid (unknown or revoked).")
        flash(request, "ok", f"Signed in as {actor.name} ({actor.role}, {actor.audience}).")
        return RedirectResponse(target or path_for(request, "overview"), status_code=303)

    @router.post("/logout", name="logout")
    async def logout(request: Request) -> Response:
        """End the session."""
        await sess.check_csrf(request)
        sess.sign_out(request)
        return redirect(request, "login")

    @router.get("/", name="home")
    async def home(request: Request) -> Response:
        """The dashboard's front page is the Overview."""
        return redirect(request, "overview")

    return router


def _safe_next(target: str) -> str:
    # Only a path on this site: an absolute or protocol-relative URL would be an open redirect.
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return ""
    return target


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(sess.SignInRequired)
    async def _sign_in(request: Request, exc: sess.SignInRequired) -> Response:
        if exc.reason:
            flash(request, "error", exc.reason)
        target = request.url.path if request.method == "GET" else ""
        if request.url.query:
            target += "?" + request.url.query
        query = "?" + urllib.parse.urlencode({"next": target}) if target else ""
        return RedirectResponse(path_for(request, "login") + query, status_code=303)

    @app.exception_handler(sess.CsrfError)
    async def _csrf(request: Request, exc: sess.CsrfError) -> Response:
        return await _error_page(request, 403, "Form refused",
                           f"{exc}: nothing was changed. Reload the page and try again.")

    @app.exception_handler(TuneloopError)
    async def _tuneloop(request: Request, exc: TuneloopError) -> Response:
        status = 404 if isinstance(exc, NotFound) else exc.http_status
        title = "Not found" if status == 404 else "Not allowed" if status == 403 else "Error"
        return await _error_page(request, status, title, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return await _error_page(request, exc.status_code, "Error", str(exc.detail))


async def _error_page(request: Request, status: int, title: str, message: str) -> Response:
    ui = dashboard(request)
    try:
        actor: Actor | None = await ui.actor(request)
    except sess.SignInRequired:
        actor = None
    return ui.render(request, "error.html.j2", actor, status_code=status, title=title,
                     message=message)


def create_ui_app(project: Project, *, mount_path: str = MOUNT_PATH) -> FastAPI:
    """The dashboard for `project`, to be mounted at `mount_path` (its cookie's path)."""
    from tuneloop.ui import pages_governance, pages_logs, pages_loop

    env = Environment(loader=PackageLoader("tuneloop.ui", "templates"),
                      autoescape=select_autoescape(["html", "j2"]), trim_blocks=True,
                      lstrip_blocks=True)
    env.filters["dt"] = lambda v: v.strftime("%Y-%m-%d %H:%M:%S") if v else ""
    env.filters["num"] = fmt
    app = FastAPI(title="tuneloop dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.dashboard = Dashboard(project, Jinja2Templates(env=env))
    for module in (_login_router(), pages_loop.router, pages_logs.router,
                   pages_governance.router):
        app.include_router(module)
    app.mount("/static", StaticFiles(packages=[("tuneloop.ui", "static")]), name="static")
    _install_errors(app)

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    # Added last so it runs first: every handler (and error handler) has a session.
    app.add_middleware(sess.SessionCookies, secret=sess.load_secret(project.state_dir),
                       path=mount_path or "/")
    return app


def mount(app: FastAPI, project: Project, path: str = MOUNT_PATH) -> None:
    """Serve the dashboard of `project` under `path` of an existing app."""
    app.mount(path, create_ui_app(project, mount_path=path), name="ui")


