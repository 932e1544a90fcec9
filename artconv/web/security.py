"""The studio's guard on every request (README, "Studio: safe by default").

* The token, when the server has one: an `X-Artconv-Token` or `Authorization: Bearer`
  header, `?token=` once (which sets a same-site cookie) or that cookie.
* Writes only from the studio's own page: a browser's `Origin` must be the studio's scheme,
  host and port (another port of this machine is another site, and the cookie reaches every
  port), and its `Sec-Fetch-Site` must say same-origin.
* Bodies capped: a declared size over the limit is refused before reading, and JSON bodies
  are capped as they are read (a chunked body declares none). Uploads have their own cap.

The Host allow-list (DNS rebinding) is Starlette's `TrustedHostMiddleware`, in `app`.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import PlainTextResponse, Response

from artconv.errors import ArtconvError

COOKIE = "artconv_token"
MAX_REQUEST_BYTES = 1024 * 1024  # any request but an upload: a form is a few KB
UPLOADS = "/api/uploads"
MODEL_UPLOAD_PATH = "/api/live/models"  # a live model upload (web/live.py)
_PORTS = {"http": 80, "https": 443}

Middleware = Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]


class RequestTooLarge(Exception):
    """A body over MAX_REQUEST_BYTES, found while reading it."""


def guard(token: str | None) -> Middleware:
    """The middleware checking the token, the size and the origin of every request."""

    async def check(request: Request, call_next: Callable[[Request], Awaitable[Response]],
                    ) -> Response:
        if token is not None and not _has_token(request, token):
            return PlainTextResponse("401: this studio needs its token (open the address "
                                     "`artconv serve` printed)", status_code=401)
        declared = request.headers.get("content-length", "")
        # uploads and live model uploads cap their own bodies as they read them
        if request.url.path not in (UPLOADS, MODEL_UPLOAD_PATH) and declared.isdigit() and \
                int(declared) > MAX_REQUEST_BYTES:
            return PlainTextResponse("request too large", status_code=413)
        if request.method not in ("GET", "HEAD") and not same_origin(request):
            return PlainTextResponse("cross-site request refused", status_code=403)
        response = await call_next(request)
        if token is not None and request.query_params.get("token"):
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    return check


def _has_token(request: Request, token: str) -> bool:
    given = (request.headers.get("x-artconv-token")
             or _bearer(request.headers.get("authorization", ""))
             or request.query_params.get("token") or request.cookies.get(COOKIE))
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def _bearer(value: str) -> str | None:
    kind, _, given = value.partition(" ")
    return given.strip() if kind.lower() == "bearer" and given.strip() else None


def same_origin(request: Request) -> bool:
    """Whether a write comes from the studio's own page (or from no page at all: a script
    sends no Origin)."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    given = urlsplit(origin)
    ours = urlsplit(f"{request.url.scheme}://{request.headers.get('host', '')}")
    try:
        theirs = (given.scheme, given.hostname, given.port or _PORTS.get(given.scheme))
        return given.hostname is not None and theirs == (
            request.url.scheme, ours.hostname, ours.port or _PORTS.get(request.url.scheme))
    except ValueError:  # a port that is no number
        return False


async def read_json(request: Request) -> dict[str, Any]:
    """The request's JSON object, read up to MAX_REQUEST_BYTES."""
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_REQUEST_BYTES:
            raise RequestTooLarge
    try:
        body = json.loads(data)
    except ValueError:
        raise ArtconvError("request: expected a JSON object") from None
    if not isinstance(body, dict):
        raise ArtconvError("request: expected a JSON object")
    return body
