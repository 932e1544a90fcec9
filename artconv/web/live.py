"""The studio's live mode: a trained style network (the fast engine) run in-process, on a
photo or on the browser's camera frames, answered directly (no queue: it takes a fraction
of a second).

* `GET /api/live/models`: the models to pick from: the studio folder's `models/` (what
  `artconv train` wrote, pytorch/examples .pth files, uploads) and the published models
  whose download is already on this machine (nothing is fetched here);
* `POST /api/live/models?name=N`: the body is a model file, capped, kept in `models/` only
  once `open_model` loads it (anything else is one line naming the upload);
* `POST /api/live/stylize`: {model, upload, size} -> the styled photo (PNG; the page blends);
* `POST /api/live/frame?model=&size=&client=`: the body is one camera frame (JPEG, PNG or
  WebP, capped in bytes and pixels) -> the styled frame (JPEG), or 204 when a newer frame of
  the same client arrived meanwhile: frames are dropped, never queued - each client has one
  frame being styled and at most the latest one waiting (its older ones leave at once).

Loaded networks stay cached per (file sha256, device). The studio's guard in `create_app`
(host, token, same-origin writes) covers these routes like every other: they are plain
HTTP requests, so there is no second check here.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image

from artconv.errors import ArtconvError
from artconv.outputs import file_sha256
from artconv.web.previews import jpeg
from artconv.web.security import MODEL_UPLOAD_PATH, read_json
from artconv.web.studio import Studio
from artconv.web.training import MODELS  # the studio folder's models (training writes there)

if TYPE_CHECKING:
    from artconv.fast.pretrained import Model

# torch loads with the first live request, not with the server (as the studio's queue
# does): the modules that bring it are imported where they are first used.

MODEL_SUFFIXES = (".safetensors", ".pth", ".pt")  # what open_model reads
MAX_MODEL_BYTES = 64 * 1024 * 1024  # a published (width 32) model is 6.7 MB
MAX_FRAME_BYTES = 512 * 1024  # a 640x480 JPEG is ~50 KB
MAX_FRAME_PIXELS = 1920 * 1080
FRAME_FORMATS = ("JPEG", "PNG", "WEBP")
MAX_SIZE = 1024  # longest side of a live result: beyond it, run a job
PHOTO_SIZE = 512
FRAME_SIZE = 256
CACHED_MODELS = 4
PUBLISHED_PREFIX = "published:"
_CLIENT = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


class Live:
    """The models of `studio` and the one device they run on, one forward pass at a time."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.folder = studio.folder / MODELS
        try:
            self.folder.mkdir(exist_ok=True)
        except OSError as exc:
            raise ArtconvError(f"studio folder {self.folder}: cannot be made "
                               f"({exc.strerror})") from None
        self._digests: dict[tuple[str, int, int], str] = {}
        self._models: OrderedDict[tuple[str, str], Model] = OrderedDict()
        self._cache_lock = threading.Lock()
        # One pass at a time (the machine's one device). `_latest[client]` is the newest
        # frame number a client sent; a waiting frame that is no longer its client's newest
        # leaves (dropped) instead of waiting for the device.
        self._turn = threading.Condition()
        self._busy = False
        self._latest: OrderedDict[str, int] = OrderedDict()
        self._tickets = 0

    # -- models ---------------------------------------------------------------------------
    def models(self) -> list[dict[str, Any]]:
        """What the page lists: id (what requests name), label (with the network's shape
        where the header tells it: width 16 is the light model), kind and file size."""
        from artconv.fast.model import read_header
        from artconv.fast.pretrained import published_on_disk

        found = []
        for path in sorted(self.folder.iterdir()):
            if path.name.startswith(".") or path.suffix.lower() not in MODEL_SUFFIXES or \
                    not path.is_file():
                continue
            label = path.stem
            if path.suffix.lower() == ".safetensors":
                try:
                    shape = read_header(path)
                    blocks = shape["blocks"]
                    label += f" (width {shape['width']}, {blocks} block{'s' * (blocks != 1)})"
                except ArtconvError:
                    label += " (not a model)"
            found.append({"id": path.name, "label": label, "bytes": path.stat().st_size,
                          "kind": "artconv" if path.suffix.lower() == ".safetensors"
                          else "pytorch/examples"})
        found += [{"id": PUBLISHED_PREFIX + name, "label": f"{name} (published)",
                   "bytes": None, "kind": "pytorch/examples"} for name in published_on_disk()]
        return found

    def model_path(self, ref: str) -> Path:
        """The file a model id names: one of `models/` or a published one on disk."""
        from artconv.fast.pretrained import PUBLISHED, published_file, published_on_disk

        if ref.startswith(PUBLISHED_PREFIX):
            name = ref.removeprefix(PUBLISHED_PREFIX)
            if name in PUBLISHED and name in published_on_disk():
                return published_file(name)
        elif ref and ref == Path(ref).name and not ref.startswith(".") and \
                Path(ref).suffix.lower() in MODEL_SUFFIXES and (self.folder / ref).is_file():
            return self.folder / ref
        raise ArtconvError(f"model {ref!r}: not one of this studio's models (its {MODELS}/ "
                           "folder, or a published one already downloaded)")

    def open(self, ref: str) -> tuple[Path, Model]:
        """The model `ref` names, loaded once per (sha256, device)."""
        from artconv.device import resolve_device
        from artconv.fast.pretrained import open_model

        path = self.model_path(ref)
        device = resolve_device(self.studio.defaults["fast"].device)
        stat = path.stat()
        with self._cache_lock:
            key = (str(path), stat.st_mtime_ns, stat.st_size)
            if key not in self._digests:
                self._digests[key] = file_sha256(path)
            cached = (self._digests[key], str(device))
            if cached not in self._models:
                self._models[cached] = open_model(path, device)
                while len(self._models) > CACHED_MODELS:
                    self._models.popitem(last=False)
            self._models.move_to_end(cached)
            return path, self._models[cached]

    def _options(self, path: Path, size: int | None) -> Any:
        return self.studio.defaults["fast"].replace(model=str(path), size=size)

    def add_model(self, data: bytes, name: str) -> dict[str, Any]:
        """Keep an uploaded model file as `models/NAME` once it loads (a name taken by
        another file gets the file's digest added); returns its entry."""
        from artconv.fast.pretrained import open_model

        given = Path(name.replace("\\", "/")).name
        suffix = Path(given).suffix.lower()
        if suffix not in MODEL_SUFFIXES:
            raise ArtconvError(f"model upload {given or '(no name)'!r}: a .safetensors file "
                               "(artconv train) or a pytorch/examples .pth expected")
        if len(data) > MAX_MODEL_BYTES:
            raise ArtconvError(f"model upload {given}: more than the {MAX_MODEL_BYTES} "
                               "bytes allowed")
        stem = _NAME.sub("_", Path(given).stem).strip("._")[:80] or "model"
        # hidden (never listed or served) and with the suffix open_model reads the kind by
        try:
            fd, name = tempfile.mkstemp(dir=self.folder, prefix=".upload-", suffix=suffix)
        except OSError as exc:
            raise ArtconvError(f"model upload {given}: cannot be kept ({exc.strerror})"
                               ) from None
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            try:
                model = open_model(tmp)
            except ArtconvError as exc:  # the message names the upload, not a server path
                raise ArtconvError(f"model upload {given}: "
                                   f"{str(exc).removeprefix(str(tmp)).removeprefix(': ')}"
                                   ) from None
            path = self.folder / f"{stem}{suffix}"
            if path.exists() and file_sha256(path) != model.sha256:
                path = self.folder / f"{stem}-{model.sha256[:8]}{suffix}"
            os.replace(tmp, path)
        except OSError as exc:
            raise ArtconvError(f"model upload {given}: cannot be kept ({exc.strerror})"
                               ) from None
        finally:
            tmp.unlink(missing_ok=True)
        return next(m for m in self.models() if m["id"] == path.name)

    # -- running ----------------------------------------------------------------------------
    def stylize(self, ref: str, upload: str, size: int) -> bytes:
        """The studio upload `upload` styled by model `ref` at `size` px (never enlarged),
        as PNG: lossless, so the page's blend shows what the model made."""
        from artconv.io.images import image_hw, load_image, to_pil

        path = self.studio.files.upload_path(upload)
        # read at the size it runs at: a 100 MP upload is never decoded in full
        size = min(_size(size, "size"), max(image_hw(path)))
        photo = load_image(path, size)
        with self._device(None, 0):
            out = self._run(ref, photo, size)
        buffer = io.BytesIO()
        to_pil(out).save(buffer, format="PNG")
        return buffer.getvalue()

    def frame(self, ref: str, data: bytes, size: int, client: str) -> tuple[bytes, float] | None:
        """One camera frame styled by `ref` at `size` px, as JPEG, and the seconds it took
        (decode, model, encode); None when a newer frame of `client` came meanwhile."""
        if not _CLIENT.fullmatch(client):
            raise ArtconvError("frame: 'client' must be 1-64 letters, digits, _ or -")
        size = _size(size, "size")
        start = time.perf_counter()
        ticket = self._ticket(client)
        image = decode_frame(data, size)
        with self._device(client, ticket) as mine:
            if not mine:
                return None
            out = self._run(ref, image, size)
            return jpeg(out), time.perf_counter() - start

    def _run(self, ref: str, image: Any, size: int) -> Any:
        from artconv.fast.engine import FastStyle

        path, model = self.open(ref)
        return FastStyle(self._options(path, size), model=model).run(image)[0]

    def _ticket(self, client: str) -> int:
        with self._turn:
            self._tickets += 1
            self._latest[client] = self._tickets
            self._latest.move_to_end(client)
            while len(self._latest) > 256:  # forget long-gone clients
                self._latest.popitem(last=False)
            self._turn.notify_all()  # its older frame, if waiting, leaves now
            return self._tickets

    def _device(self, client: str | None, ticket: int) -> _Turn:
        return _Turn(self, client, ticket)


class _Turn:
    """`with live._device(client, ticket) as mine`: waits for the device; `mine` is False
    (and nothing waits) once a newer frame of the client has arrived."""

    def __init__(self, live: Live, client: str | None, ticket: int) -> None:
        self.live, self.client, self.ticket, self.held = live, client, ticket, False

    def _stale(self) -> bool:
        return self.client is not None and self.live._latest.get(self.client) != self.ticket

    def __enter__(self) -> bool:
        live = self.live
        with live._turn:
            while live._busy and not self._stale():
                live._turn.wait()
            if self._stale():
                return False
            live._busy = self.held = True
        return True

    def __exit__(self, *_exc: object) -> None:
        if self.held:
            with self.live._turn:
                self.live._busy = False
                self.live._turn.notify_all()


def decode_frame(data: bytes, size: int) -> Any:
    """A camera frame's bytes as a (3, H, W) tensor with its longest side at most `size`;
    not an image, another format or over MAX_FRAME_PIXELS is one line."""
    from artconv.io.images import load_image

    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in FRAME_FORMATS:
                raise ArtconvError(f"frame: a {img.format} image; JPEG, PNG or WebP expected")
            width, height = img.size
            if width * height > MAX_FRAME_PIXELS:
                raise ArtconvError(f"frame: {width}x{height} pixels, more than the "
                                   f"{MAX_FRAME_PIXELS} allowed (send smaller frames)")
            return load_image(img, min(size, max(width, height)),
                              max_pixels=MAX_FRAME_PIXELS)
    except (Image.UnidentifiedImageError, Image.DecompressionBombError):
        raise ArtconvError("frame: not an image (JPEG, PNG or WebP expected)") from None
    except ArtconvError as exc:
        if str(exc).startswith("frame: "):
            raise
        raise ArtconvError(f"frame: not a readable image ({str(exc).split(': ', 1)[-1]})"
                           ) from None
    except OSError as exc:
        raise ArtconvError(f"frame: truncated or corrupt image ({exc})") from None


def _size(value: Any, what: str) -> int:
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise ArtconvError(f"{what} {value!r}: a whole number of pixels") from None
    if not 16 <= size <= MAX_SIZE:
        raise ArtconvError(f"{what} {size}: between 16 and {MAX_SIZE} px (larger: run a job)")
    return size


def live_routes(studio: Studio) -> APIRouter:
    """The live mode's routes on `studio` (`app.include_router` in `create_app`)."""
    live = Live(studio)
    router = APIRouter()

    @router.get("/api/live/models")
    async def models() -> list[dict[str, Any]]:
        return await asyncio.to_thread(live.models)

    @router.post(MODEL_UPLOAD_PATH)
    async def add_model(request: Request, name: str = "") -> Any:
        data = await _body(request, MAX_MODEL_BYTES, f"model upload {name}")
        if isinstance(data, Response):
            return data
        return await asyncio.to_thread(live.add_model, data, name)

    @router.post("/api/live/stylize")
    async def stylize(request: Request) -> Response:
        body = await read_json(request)
        picture = await asyncio.to_thread(live.stylize, str(body.get("model", "")),
                                          str(body.get("upload", "")),
                                          body.get("size", PHOTO_SIZE))
        return Response(picture, media_type="image/png", headers={"Cache-Control": "no-store"})

    @router.post("/api/live/frame")
    async def frame(request: Request, model: str = "", size: str = str(FRAME_SIZE),
                    client: str = "page") -> Response:
        data = await _body(request, MAX_FRAME_BYTES, "frame")
        if isinstance(data, Response):
            return data
        made = await asyncio.to_thread(live.frame, model, data, size, client)
        if made is None:
            return Response(status_code=204, headers={"X-Live-Dropped": "1"})
        picture, seconds = made
        return Response(picture, media_type="image/jpeg",
                        headers={"Cache-Control": "no-store",
                                 "X-Live-Ms": f"{seconds * 1000:.1f}"})

    return router


async def _body(request: Request, limit: int, what: str) -> bytes | Response:
    """The body, read no further than `limit` bytes (a chunked body declares no size)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return _too_big(what, limit)
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            return _too_big(what, limit)
    return bytes(data)


def _too_big(what: str, limit: int) -> JSONResponse:
    return JSONResponse({"error": f"{what}: more than the {limit} bytes allowed"},
                        status_code=413)
