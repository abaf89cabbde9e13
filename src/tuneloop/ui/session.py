"""Dashboard sessions: sign-in with an API key, a signed cookie, CSRF tokens, expiry.

The cookie is Starlette's signed session cookie (itsdangerous): HttpOnly, SameSite=Strict, and
Secure whenever the request came over https. It holds only the principal's id, the prefix of the
key used to sign in, when that happened, and the session's CSRF token; never the key itself.
Every request re-checks that the key is still valid, so revoking a key ends its sessions at once.

CSRF: a synchronizer token. Each session (an anonymous one too, so the sign-in form is covered)
gets a random token; every form carries it in a hidden field and every POST must send it back.
"""

from __future__ import annotations

import datetime as dt
import hmac
import os
import secrets
from pathlib import Path
from typing import Any

from sqlalchemy import select
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from tuneloop.governance.principals import actor_of, authenticate
from tuneloop.governance.tiers import Actor
from tuneloop.store import ApiKey, Principal, Store, utcnow

SECRET_ENV = "TUNELOOP_UI_SECRET"
SECRET_FILE = "ui-secret"
COOKIE = "tuneloop_ui"
CSRF_FIELD = "csrf_token"
#: idle timeout: the cookie's signature is refreshed on every response and expires after this
IDLE_S = 2 * 60 * 60
#: absolute lifetime of a sign-in, however active the session
MAX_SESSION = dt.timedelta(hours=12)


class SignInRequired(Exception):
    """The request needs a signed-in principal and has none (or its session ended)."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class CsrfError(Exception):
    """A POST came without the session's CSRF token."""


def load_secret(state_dir: Path) -> str:
    """The signing secret: $TUNELOOP_UI_SECRET, else one kept in `.tuneloop/ui-secret`.

    Replicas that share a database behind a load balancer must share the secret: set the
    environment variable on each of them.
    """
    from_env = os.environ.get(SECRET_ENV)
    if from_env:
        return from_env
    path = state_dir / SECRET_FILE
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(secrets.token_urlsafe(48))
    try:
        # link, not rename: when two processes race, the first secret wins and both read it.
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text(encoding="utf-8").strip()


class SessionCookies:
    """Starlette's session middleware, with the Secure flag set exactly for https requests."""

    def __init__(self, app: ASGIApp, *, secret: str, path: str = "/") -> None:
        common: dict[str, Any] = {"secret_key": secret, "session_cookie": COOKIE,
                                  "max_age": IDLE_S, "path": path, "same_site": "strict"}
        self.plain = SessionMiddleware(app, https_only=False, **common)
        self.secure = SessionMiddleware(app, https_only=True, **common)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        middleware = self.secure if scope.get("scheme") in ("https", "wss") else self.plain
        await middleware(scope, receive, send)


def csrf_token(request: Request) -> str:
    """The session's CSRF token, created on first use."""
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def check_csrf(request: Request) -> dict[str, str]:
    """The POSTed form, after checking its CSRF token against the session's; `CsrfError` if not."""
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    expected = request.session.get("csrf")
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent, expected):
        raise CsrfError("the form's security token is missing or stale")
    return {k: v for k, v in form.items() if isinstance(v, str)}


def sign_in(request: Request, store: Store, key: str) -> Actor:
    """Check an API key and start a session for its principal; `PermissionDenied` if invalid."""
    actor = authenticate(store, key.strip())
    prefix = "_".join(key.strip().split("_", 2)[:2])  # "tl_<8 hex>", as stored
    request.session.clear()
    # A fresh CSRF token at sign-in: a token seen before authentication is never reused after.
    request.session.update({"pid": actor.id, "prefix": prefix,
                            "since": utcnow().isoformat(), "csrf": secrets.token_urlsafe(32)})
    return actor


def sign_out(request: Request) -> None:
    """End the session (a new anonymous one starts with the next page)."""
    request.session.clear()


def session_actor(request: Request, store: Store) -> Actor:
    """The signed-in principal, re-checked against the store; `SignInRequired` otherwise."""
    pid, prefix, since = (request.session.get(k) for k in ("pid", "prefix", "since"))
    if pid is None or not prefix or not since:
        raise SignInRequired()
    try:
        started = dt.datetime.fromisoformat(since)
    except (TypeError, ValueError):
        request.session.clear()
        raise SignInRequired() from None
    if utcnow() - started > MAX_SESSION:
        request.session.clear()
        raise SignInRequired("your session expired; sign in again")
    with store.session(write=False) as session:
        row = session.execute(
            select(ApiKey, Principal)
            .join(Principal, Principal.id == ApiKey.principal_id)
            .where(ApiKey.prefix == prefix, Principal.id == pid)
        ).first()
        if row is None or row[0].revoked_at is not None or row[1].disabled_at is not None:
            request.session.clear()
            raise SignInRequired("the API key of this session was revoked; sign in again")
        return actor_of(row[1])


__all__ = [
    "COOKIE",
    "CSRF_FIELD",
    "CsrfError",
    "SessionCookies",
    "SignInRequired",
    "check_csrf",
    "csrf_token",
    "load_secret",
    "session_actor",
    "sign_in",
    "sign_out",
]
