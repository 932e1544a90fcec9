"""The studio's web application: the page, a JSON API and one stream of server-sent events.

Safe by default (README, "Studio"): requests naming a host other than the one served are
refused (DNS rebinding: Starlette's `TrustedHostMiddleware`); the token, the origin of
writes and the size of bodies are checked by `artconv.web.security`; uploads are capped and
decoded with the CLI's limits; only files inside the studio folder are ever served.

Updates reach the page by one stream, `/api/events`: the queue's lines and the states of
the jobs and sweeps that changed, sent when the studio changes (`artconv.web.events`).
`/api/jobs/ID/events` streams one job until it ends, for scripts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

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
from starlette.middleware.trustedhost import TrustedHostMiddleware

from artconv import registry
from artconv._version import __version__
from artconv.errors import ArtconvError
from artconv.web import events
from artconv.web.forms import (
    SERVER_FIELDS,
    SWEEP_FIELDS,
    SWEEP_VALUES,
    TRAIN,
    form_fields,
    preset_list,
)
from artconv.web.jobs import FINISHED
from artconv.web.live import live_routes  # live mode (issue 23)
from artconv.web.security import RequestTooLarge, guard, read_json
from artconv.web.studio import Studio
from artconv.web.training import photo_folders

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
STATIC = Path(str(resources.files("artconv.web") / "static"))
STREAM_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def create_app(studio: Studio, *, token: str | None = None,
               hosts: Sequence[str] | None = None) -> FastAPI:
    """The application on `studio`. `token`: required on every request when given. `hosts`:
    the host names requests may name (default: the loopback names); "*" allows any."""

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
    app.middleware("http")(guard(token))
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(hosts or LOOPBACK_NAMES),
                       www_redirect=False)  # added last: runs first

    @app.exception_handler(ArtconvError)
    async def _artconv_error(_request: Request, exc: ArtconvError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(FileNotFoundError)
    async def _missing(_request: Request, _exc: FileNotFoundError) -> JSONResponse:
        return JSONResponse({"error": "not found"}, status_code=404)

    @app.exception_handler(RequestTooLarge)
    async def _too_large(_request: Request, _exc: RequestTooLarge) -> PlainTextResponse:
        return PlainTextResponse("request too large", status_code=413)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(live_routes(studio))  # live mode: artconv/web/live.py
    _page_routes(app, studio)
    _job_routes(app, studio)
    _event_routes(app, studio)
    return app


def _page_routes(app: FastAPI, studio: Studio) -> None:
    """The page, what its form is built from, uploads, the gallery and files."""

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
                "train": {"fields": form_fields(TRAIN, studio.defaults[TRAIN]),
                          "photo_folders": photo_folders(studio.files)},
                "max_upload": studio.max_upload, "folder": str(studio.folder),
                "network": {name: _network(opts) for name, opts in studio.defaults.items()}}

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

    @app.get("/api/gallery")
    async def gallery() -> list[dict[str, Any]]:
        return await asyncio.to_thread(studio.files.gallery)

    @app.get("/api/results/{jid}/recipe")
    async def recipe(jid: str) -> dict[str, Any]:
        return await asyncio.to_thread(studio.files.recipe, jid)

    @app.get("/api/presets/{name}/thumb")
    async def preset_thumb(name: str) -> Response:
        picture = await asyncio.to_thread(studio.preset_thumb, name)
        return Response(picture, media_type="image/jpeg")

    @app.get("/files/{relative:path}")
    async def files(relative: str, download: bool = False) -> FileResponse:
        path = studio.files.served_file(relative)
        return FileResponse(path, filename=path.name if download else None,
                            content_disposition_type="attachment" if download else "inline",
                            headers={"Cache-Control": "no-store"})


def _job_routes(app: FastAPI, studio: Studio) -> None:
    """Jobs and sweeps: start, list, look at, stop."""

    @app.post("/api/jobs")
    async def start(request: Request) -> dict[str, Any]:
        job = studio.submit(await read_json(request))
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

    @app.post("/api/sweeps")
    async def sweep(request: Request) -> dict[str, Any]:
        body = await read_json(request)
        values = body.get("values")
        if not isinstance(values, list):
            raise ArtconvError("sweep: 'values' must be a list")
        made = studio.sweep(body.get("form") or {}, str(body.get("option", "")), values)
        return studio.sweep_state(made.id)

    @app.get("/api/sweeps/{sid}")
    async def sweep_state(sid: str) -> dict[str, Any]:
        return studio.sweep_state(sid)


def _event_routes(app: FastAPI, studio: Studio) -> None:
    """The page's one stream of changes, and one job's stream for scripts."""

    @app.get("/api/events")
    async def changes() -> StreamingResponse:
        seen = -1

        def look() -> tuple[list[str], bool]:
            nonlocal seen
            update, version = studio.updates(seen)
            first, seen = seen < 0, version
            changed = first or update["jobs"] or update["sweeps"]
            return ([events.message(update)] if changed else []), False

        return StreamingResponse(events.stream(studio.changes, look,
                                               interval=studio.preview_interval),
                                 media_type="text/event-stream", headers=STREAM_HEADERS)

    @app.get("/api/jobs/{jid}/events")
    async def job_events(jid: str) -> StreamingResponse:
        studio.job(jid)  # an unknown job is a 400 now, not an empty stream
        last = None

        def look() -> tuple[list[str], bool]:
            nonlocal last
            state = studio.state(jid)
            out = [] if state == last else [events.message(state)]
            last = state
            if state["status"] in FINISHED:
                return [*out, events.message({}, "end")], True
            return out, False

        return StreamingResponse(events.stream(studio.changes, look,
                                               interval=studio.preview_interval),
                                 media_type="text/event-stream", headers=STREAM_HEADERS)


def _network(options: Any) -> dict[str, Any]:
    """The server's network, as the page shows it."""
    backbone = options.backbone and Path(options.backbone.split(":")[0]).name
    return {**{name: getattr(options, name) for name in SERVER_FIELDS}, "backbone": backbone}


def _too_big(limit: int) -> JSONResponse:
    return JSONResponse({"error": f"upload: more than the {limit} bytes allowed"},
                        status_code=413)
