"""Team mode for the CLI: with `TUNELOOP_URL` set, governance commands go to the server's API with
the caller's key, and never open the database (people hold keys, not database passwords).

A command says what it does in each mode and `team_or_local` picks one:

    secret = team_or_local(c, remote=lambda api: api.post("/v1/governance/keys", name=name),
                           local=lambda project: create_key(project.store, ...))
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from tuneloop.errors import NotFound, PermissionDenied, TuneloopError

if TYPE_CHECKING:
    from tuneloop.cli._common import Context
    from tuneloop.project import Project

URL_ENV = "TUNELOOP_URL"
T = TypeVar("T")


@dataclass(frozen=True)
class Api:
    """The server's governance API, called as the holder of `key`."""

    key: str | None

    def get(self, path: str, **params: Any) -> Any:
        """GET `path`; parameters that are None or empty are left out of the query."""
        return call("GET", path, self.key,
                    params={k: v for k, v in params.items() if v is not None and v != ""})

    def post(self, path: str, **body: Any) -> Any:
        """POST `path` with `body` as JSON (no body when none is given)."""
        return call("POST", path, self.key, json=body or None)


def team_or_local(c: Context, *, remote: Callable[[Api], T], local: Callable[[Project], T]) -> T:
    """`remote(api)` in team mode, else `local(project)` on the project opened here.

    In team mode the project is never opened: the database is the server's.
    """
    if team_url():
        return remote(Api(c.key))
    return local(c.project())


def team_url() -> str | None:
    """The server's base URL in team mode, else None."""
    url = os.environ.get(URL_ENV, "").strip()
    return url.rstrip("/") or None


def call(method: str, path: str, key: str | None, **kwargs: Any) -> Any:
    """One governance API call as the key's principal; errors become the CLI's own."""
    url = team_url()
    assert url is not None
    if not key:
        raise PermissionDenied(f"team mode ({URL_ENV}={url}) acts only with your API key",
                               hint="pass --key or set TUNELOOP_API_KEY")
    try:
        response = httpx.request(method, url + path, headers={"Authorization": f"Bearer {key}"},
                                 timeout=60, **kwargs)
    except httpx.HTTPError as exc:
        raise TuneloopError(f"cannot reach the tuneloop server at {url}: {exc}",
                            hint=f"check {URL_ENV} and that `tuneloop serve` runs there") from None
    if response.status_code < 400:
        return response.json()
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:300]
    kind = {401: PermissionDenied, 403: PermissionDenied, 404: NotFound}.get(
        response.status_code, TuneloopError)
    raise kind(f"{message} (server: HTTP {response.status_code})")
