"""The dashboard app: server-rendered pages at `/ui`, mounted into the serving app.

    app.mount("/ui", create_ui_app(project))     # what serve.app.create_app does

Pages: sign-in, Overview, Evaluations, Request log, Review queue, Approvals, Audit. Everything a
page shows is decided on the server (role, audience, the governance gate for Tier 2); there is no
JavaScript, so a Content-Security-Policy forbids scripts altogether.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
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


