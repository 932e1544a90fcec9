"""The studio folder (`artconv serve --out-dir`): everything the studio keeps on disk.

* `uploads/`: the browser's images, named by ids made here (a browser's file name never
  chooses a path), kept only once they decode within the limits every command uses.
* `results/`: each result written by its engine's writer, atomically with its recipe, and
  `ID.studio.json`, what the page asked for, so "run again" and the gallery outlive the
  server.
* `sweeps/`: contact sheets.
* `queue.json`: the jobs not yet finished, written atomically as the queue changes, so a
  killed server's queue runs again on the next start.

Only files inside the folder are ever served, and none hidden (temporaries) or linked out.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

from PIL import Image

from artconv.errors import ArtconvError
from artconv.io.files import atomic_write_bytes
from artconv.outputs import check_folder
from artconv.web.forms import check_id, new_id

IMAGE_SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif",
                  "BMP": ".bmp", "GIF": ".gif"}
QUEUE_FILE = "queue.json"
GALLERY_SUFFIX = ".studio.json"
log = logging.getLogger("artconv.web")


class StudioFolder:
    """The folder at `root`, checked (a folder, or one that can be made, writable) and
    made with its sub-folders."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        check_folder(self.root, "studio folder")
        for sub in ("uploads", "results", "sweeps"):
            try:
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ArtconvError(f"studio folder {self.root / sub}: cannot be made "
                                   f"({exc.strerror})") from None

    # -- uploads ------------------------------------------------------------------------------
    def add_upload(self, data: bytes) -> dict[str, Any]:
        """Keep an uploaded image under an id made here, once it decodes within the limits
        every command uses (`load_image`: the pixel limit, ARTCONV_MAX_PIXELS)."""
        from artconv.io.images import image_hw, load_image  # torch: with the first upload

        uid = new_id()
        tmp = self.root / "uploads" / f".{uid}.part"
        try:
            tmp.write_bytes(data)
            try:
                height, width = image_hw(tmp)  # the header alone
                # Refuses more pixels than the limit every command uses (ARTCONV_MAX_PIXELS)
                # before decoding, then decodes it all (a truncated file fails).
                load_image(tmp, min(256, height, width))
            except ArtconvError as exc:  # the message names the upload, not a server path
                message = str(exc).removeprefix(str(tmp)).removeprefix(": ")
                if "not an image file" in message:
                    message = "not an image this studio reads"
                raise ArtconvError(f"upload: {message}") from None
            with warnings.catch_warnings():  # within our limit, above PIL's own warning one
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(tmp) as img:
                    kind = img.format
            suffix = IMAGE_SUFFIXES.get(kind or "")
            if suffix is None:
                raise ArtconvError(f"upload: {kind} images are not taken (PNG, JPEG, WebP, "
                                   "TIFF, BMP, GIF)")
            path = tmp.with_name(uid + suffix)
            os.replace(tmp, path)
        except (OSError, Image.DecompressionBombError) as exc:
            raise ArtconvError(f"upload: cannot be kept ({exc})") from None
        finally:
            tmp.unlink(missing_ok=True)
        return {"id": uid, "url": self.url_of(path), "width": width, "height": height}

    def upload_path(self, uid: str) -> Path:
        check_id(uid, "upload")
        found = [p for p in (self.root / "uploads").glob(f"{uid}.*")
                 if p.suffix in IMAGE_SUFFIXES.values()]
        if not found:
            raise ArtconvError(f"upload {uid}: no such image (upload it again)")
        return found[0]

    def upload_url(self, uid: Any) -> str | None:
        try:
            return self.url_of(self.upload_path(str(uid)))
        except ArtconvError:
            return None

    # -- serving ------------------------------------------------------------------------------
    def url_of(self, path: Path) -> str:
        return "/files/" + path.relative_to(self.root).as_posix()

    def served_file(self, relative: str) -> Path:
        """A file of the studio folder named by the page; nothing outside it, no hidden
        (temporary) files, no links leading out."""
        try:  # a NUL byte, a name too long: no file of this studio either
            path = (self.root / relative).resolve()
            if not path.is_relative_to(self.root) or path == self.root:
                raise FileNotFoundError(relative)
            if any(part.startswith(".") for part in path.relative_to(self.root).parts):
                raise FileNotFoundError(relative)
            if not path.is_file():
                raise FileNotFoundError(relative)
        except (OSError, ValueError):
            raise FileNotFoundError(relative) from None
        return path

    # -- results --------------------------------------------------------------------------------
    def result_path(self, jid: str) -> Path:
        return self.root / "results" / f"{jid}.png"

    def sheet_path(self, sid: str) -> Path:
        return self.root / "sweeps" / f"{sid}.png"

    def keep_record(self, output: Path, record: dict[str, Any]) -> None:
        """A result's gallery entry, beside it."""
        atomic_write_bytes(output.with_suffix(GALLERY_SUFFIX),
                           json.dumps(record, indent=1).encode())

    def gallery(self) -> list[dict[str, Any]]:
        """Finished results, newest first, from the folder (they outlive the server)."""
        out = []
        for meta in (self.root / "results").glob(f"*{GALLERY_SUFFIX}"):
            try:
                record = json.loads(meta.read_text(encoding="utf-8"))
                image = self.served_file(f"results/{record['output']}")
            except (OSError, ValueError, KeyError):
                continue  # a half-written or foreign file is not an entry
            form = record.get("form") or {}
            out.append({**record, "url": self.url_of(image),
                        "download": self.url_of(image) + "?download=1",
                        "inputs": {"content": self.upload_url(form.get("content")),
                                   "styles": [self.upload_url(s)
                                              for s in form.get("styles") or ()]}})
        return sorted(out, key=lambda r: r.get("finished") or 0, reverse=True)

    def recipe(self, jid: str) -> dict[str, Any]:
        from artconv.io.recipe import read_any_recipe

        check_id(jid, "result")
        try:
            path = self.served_file(f"results/{jid}.png")
        except FileNotFoundError:
            raise ArtconvError(f"result {jid}: no such result") from None
        return read_any_recipe(path)

    # -- the queue ------------------------------------------------------------------------------
    def save_queue(self, jobs: list[dict[str, Any]], sweeps: list[dict[str, Any]]) -> None:
        """The queue's records, atomically (a kill leaves the old file or the new); a
        failure (a full disk) is logged and the queue runs on."""
        try:
            atomic_write_bytes(self.root / QUEUE_FILE, json.dumps(
                {"version": 1, "jobs": jobs, "sweeps": sweeps}, indent=1).encode())
        except OSError:
            log.exception("studio: cannot keep the queue in %s", self.root)

    def load_queue(self) -> tuple[list[Any], list[Any]]:
        """The job and sweep records a last server left (none: empty lists); a file that is
        no queue is refused, naming it, and kept."""
        path = self.root / QUEUE_FILE
        try:
            saved = json.loads(path.read_bytes())
            return list(saved["jobs"]), list(saved["sweeps"])
        except FileNotFoundError:
            return [], []
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ArtconvError(f"{path}: not a studio queue ({exc}); move it away to start "
                               "with an empty queue") from None

