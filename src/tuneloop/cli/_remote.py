"""Team mode for the CLI: with `TUNELOOP_URL` set, governance commands go to the server's API with
the caller's key, and never open the database (people hold keys, not database passwords)."""

from __future__ import annotations

import os
from typing import Any

import httpx

from tuneloop.errors import NotFound, PermissionDenied, TuneloopError

URL_ENV = "TUNELOOP_URL"


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
