"""The studio's web application: the page, a JSON API and server-sent events.

Safe by default (README, "Studio"): with a token every request, the page included, must
carry it (an `X-Artconv-Token` or `Authorization: Bearer` header, or `?token=` once, which
sets a same-site cookie); requests naming a host other than the one served are refused
(DNS rebinding) and so are cross-site writes (their Origin); uploads are capped and decoded
with the CLI's limits; only files inside the studio folder are ever served.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles

from artconv import __version__, registry
from artconv.errors import ArtconvError
from artconv.web.live import MODEL_UPLOAD_PATH, live_routes  # live mode (issue 23)
from artconv.web.studio import (
    FINISHED,
    SERVER_FIELDS,
    SWEEP_FIELDS,
    SWEEP_VALUES,
    Studio,
    form_fields,
    preset_list,
)

COOKIE = "artconv_token"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
MAX_REQUEST_BYTES = 1024 * 1024  # any request but an upload: a form is a few KB
STATIC = Path(str(resources.files("artconv.web") / "static"))


class RequestTooLarge(Exception):
    """A body over MAX_REQUEST_BYTES, found while reading it."""


def create_app(studio: Studio, *, token: str | None = None,
               hosts: Sequence[str] | None = None) -> FastAPI:
    """The application on `studio`. `token`: required on every request when given. `hosts`:
    the host names requests may name (default: the loopback names); "*" allows any."""
    allowed = {h.lower() for h in (hosts or LOOPBACK_NAMES)}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        studio.start()
        try:
            yield
        finally:
            await asyncio.to_thread(studio.close)

    app = FastAPI(title="artconv studio", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.studio = studio

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        host = _host_name(request.headers.get("host", ""))
        if "*" not in allowed and host not in allowed:
            return PlainTextResponse(f"host {host!r} not served here", status_code=403)
        if token is not None:
            given = (request.headers.get("x-artconv-token")
                     or _bearer(request.headers.get("authorization", ""))
                     or request.query_params.get("token") or request.cookies.get(COOKIE))
            if not given or not hmac.compare_digest(given.encode(), token.encode()):
                return PlainTextResponse("401: this studio needs its token (open the address "
                                         "`artconv serve` printed)", status_code=401)
        declared = request.headers.get("content-length", "")
        # uploads and live model uploads (issue 23) cap their own bodies
        if request.url.path not in ("/api/uploads", MODEL_UPLOAD_PATH) and \
                declared.isdigit() and \
                int(declared) > MAX_REQUEST_BYTES:
            return PlainTextResponse("request too large", status_code=413)
        if request.method not in ("GET", "HEAD") and not _same_origin(request):
            return PlainTextResponse("cross-site request refused", status_code=403)
        response = await call_next(request)
        if token is not None and request.query_params.get("token"):
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.exception_handler(ArtconvError)
    async def _artconv_error(_request: Request, exc: ArtconvError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(RequestTooLarge)
    async def _too_large(_request: Request, _exc: RequestTooLarge) -> PlainTextResponse:
        return PlainTextResponse("request too large", status_code=413)

    @app.exception_handler(FileNotFoundError)
    async def _missing(_request: Request, _exc: FileNotFoundError) -> JSONResponse:
        return JSONResponse({"error": "not found"}, status_code=404)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(live_routes(studio))  # live mode (issue 23): artconv/web/live.py

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"),
                            headers={"Cache-Control": "no-store"})

    @app.get("/api/info")
    async def info() -> dict[str, Any]:
        engines = {}
        for name, spec in registry.ENGINES.items():
            engines[name] = {"summary": spec.summary, "takes_styles": spec.takes_styles,
                             "fields": form_fields(name, studio.defaults[name])}
        return {"version": __version__, "engines": engines, "presets": preset_list(),
                "sweep": {"fields": list(SWEEP_FIELDS), "min": SWEEP_VALUES[0],
                          "max": SWEEP_VALUES[1]},
                "max_upload": studio.max_upload, "folder": str(studio.folder),
                "network": {name: {**{f: getattr(opts, f) for f in SERVER_FIELDS},
                                   "backbone": opts.backbone and Path(
                                       opts.backbone.split(":")[0]).name}
                            for name, opts in studio.defaults.items()}}

    @app.post("/api/uploads")
    async def upload(request: Request) -> dict[str, Any]:
        # The body is the image itself: no file name reaches the server at all.
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > studio.max_upload:
            return _too_big(studio.max_upload)
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > studio.max_upload:
                return _too_big(studio.max_upload)
        return await asyncio.to_thread(studio.add_upload, bytes(data))

    @app.post("/api/jobs")
    async def start(request: Request) -> dict[str, Any]:
        job = studio.submit(await _json(request))
        return studio.state(job.id)

    @app.get("/api/jobs")
    async def jobs() -> list[dict[str, Any]]:
        return [studio.state(j) for j in list(studio.jobs)]

    @app.get("/api/jobs/{jid}")
    async def job(jid: str) -> dict[str, Any]:
        return studio.state(jid)

    @app.post("/api/jobs/{jid}/stop")
    async def stop(jid: str) -> dict[str, Any]:
        studio.stop(jid)
        return studio.state(jid)

    @app.get("/api/jobs/{jid}/preview")
    async def preview(jid: str) -> Response:
        picture = studio.job(jid).preview
        if picture is None:
            raise FileNotFoundError(jid)
        return Response(picture, media_type="image/jpeg",
                        headers={"Cache-Control": "no-store"})

    @app.get("/api/jobs/{jid}/events")
    async def events(jid: str, request: Request) -> StreamingResponse:
        studio.job(jid)  # an unknown job is a 400 now, not an empty stream

        async def stream() -> AsyncIterator[str]:
            last = None
            while True:
                state = studio.state(jid)
                text = json.dumps(state)
                if text != last:
                    yield f"data: {text}\n\n"
                    last = text
                if state["status"] in FINISHED:
                    yield "event: end\ndata: {}\n\n"
                    return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(studio.preview_interval)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})

    @app.get("/api/gallery")
    async def gallery() -> list[dict[str, Any]]:
        return await asyncio.to_thread(studio.gallery)

    @app.get("/api/results/{jid}/recipe")
    async def recipe(jid: str) -> dict[str, Any]:
        return await asyncio.to_thread(studio.recipe, jid)

    @app.post("/api/sweeps")
    async def sweep(request: Request) -> dict[str, Any]:
        body = await _json(request)
        values = body.get("values")
        if not isinstance(values, list):
            raise ArtconvError("sweep: 'values' must be a list")
        made = studio.sweep(body.get("form") or {}, str(body.get("option", "")), values)
        return studio.sweep_state(made.id)

    @app.get("/api/sweeps/{sid}")
    async def sweep_state(sid: str) -> dict[str, Any]:
        return studio.sweep_state(sid)

    @app.get("/api/presets/{name}/thumb")
    async def preset_thumb(name: str) -> Response:
        picture = await asyncio.to_thread(studio.preset_thumb, name)
        return Response(picture, media_type="image/jpeg")

    @app.get("/files/{relative:path}")
    async def files(relative: str, download: bool = False) -> FileResponse:
        path = studio.served_file(relative)
        return FileResponse(path, filename=path.name if download else None,
                            content_disposition_type="attachment" if download else "inline",
                            headers={"Cache-Control": "no-store"})

    return app


def _host_name(netloc: str) -> str:
    """The host of a Host header or an Origin's netloc, without the port."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[:netloc.find("]") + 1]
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


def _same_origin(request: Request) -> bool:
    """Whether a write comes from the studio's own page (or from no page at all: a script).
    The origin is scheme, host and port: another port of this machine is another site,
    whose page must not write here (the token cookie is sent to every port)."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    given = urlsplit(origin)
    try:
        theirs = (given.hostname, given.port or _PORTS.get(given.scheme))
        ours = urlsplit(f"{request.url.scheme}://{request.headers.get('host', '')}")
        return theirs == (ours.hostname, ours.port or _PORTS.get(request.url.scheme)) and \
            given.scheme == request.url.scheme and theirs[0] is not None
    except ValueError:  # a port that is no number
        return False


_PORTS = {"http": 80, "https": 443}


def _bearer(value: str) -> str | None:
    kind, _, given = value.partition(" ")
    return given.strip() if kind.lower() == "bearer" and given.strip() else None


def _too_big(limit: int) -> JSONResponse:
    return JSONResponse({"error": f"upload: more than the {limit} bytes allowed"},
                        status_code=413)


async def _json(request: Request) -> dict[str, Any]:
    data = bytearray()
    async for chunk in request.stream():  # capped as read: a chunked body declares no size
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
