"""Training as a studio job: `artconv train` planned from a page and run on the studio's queue.

A training job is a `WebJob` of kind `forms.TRAIN` in the same queue, queue file and event
stream as the pictures: its steps reach the page through the studio's callback (progress,
loss curve, a preview of the held-out crops, Stop), and its work folder's preview sheet and
loss curve are served like the studio's other files. The model is written to the studio's
`models/` folder, where live mode lists it. Stop is Ctrl-C: the checkpoint and the model so
far are kept, and the same form queued again (same model name, same options) continues from
the checkpoint, because that is how `artconv.fast.train.train` resumes.

What a page may name: style images are uploads or style presets (as for pictures); photos
are uploads, or a folder under the studio's `photos/` (put there by the operator), never
another path on the server. The network being trained is capped (`PAGE_LIMITS`) so one
page cannot take the machine's memory.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from artconv.batch.jobs import Job
from artconv.errors import ArtconvError
from artconv.fast.train_options import TrainOptions
from artconv.options import CoreOptions
from artconv.presets import options_for
from artconv.web.folder import StudioFolder
from artconv.web.forms import TRAIN, browser_options, is_id, new_id, page_preset
from artconv.web.jobs import WebJob

PHOTOS = "photos"  # the studio folder's photo folders for training (the operator's)
MODELS = "models"  # where trained models go: live mode lists this folder (web/live.py)
MAX_PHOTO_UPLOADS = 500
# The most a page may ask of the machine; the operator's defaults may go beyond.
PAGE_LIMITS = {"crop": 1024, "batch_size": 64, "width": 128, "blocks": 16,
               "steps": 200_000}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,59}")


def plan_training(files: StudioFolder, base: CoreOptions, form: Mapping[str, Any], *,
                  jid: str | None = None, label: str = "") -> WebJob:
    """A checked training job from what a page sent: `name` (the model's file name, without
    .safetensors), `styles` (upload ids or style preset names), `photos` (a list of upload
    ids, or the name of a folder under the studio's photos/, "" for photos/ itself) and
    `options` (TrainOptions fields). Everything is checked now, not when it runs."""
    name = str(form.get("name") or "")
    if not _NAME.fullmatch(name):
        raise ArtconvError(f"train: model name {name!r}: 1-60 letters, digits, - or _, "
                           "starting with a letter or digit")
    styles: list[str] = []
    for item in form.get("styles") or ():
        item = str(item)
        if is_id(item):
            styles.append(str(files.upload_path(item)))
        else:
            styles += [str(p) for p in page_preset(item, "style", style=True).image_paths()]
    if not styles:
        raise ArtconvError("train: pick at least one style image or style preset")
    photos, photos_form = _photos(files, form.get("photos"))
    overrides = browser_options(TRAIN, form.get("options"))
    merged = options_for(TrainOptions, overrides=overrides, base=base)
    for key, most in PAGE_LIMITS.items():
        value = getattr(merged, key)
        if key in overrides and value is not None and value > most:
            raise ArtconvError(f"option {key!r} {value}: at most {most} from the page")
    jid = jid or new_id()
    output = files.root / MODELS / f"{name}.safetensors"
    job = Job(TRAIN, photos_form if isinstance(photos_form, str) else f"{len(photos)} photos",
              str(output), tuple(styles), overrides, id=jid)
    clean = {"engine": TRAIN, "name": name, "photos": photos_form,
             "styles": [str(s) for s in form.get("styles") or ()],
             "options": overrides}
    web = WebJob(jid, job, base, clean, label or f"train {name}")
    web.photos = tuple(photos)
    return web


def _photos(files: StudioFolder, given: Any) -> tuple[list[str], Any]:
    """The photo paths a page named, and how the form keeps them."""
    if isinstance(given, list):
        if not 1 <= len(given) <= MAX_PHOTO_UPLOADS:
            raise ArtconvError(f"train: photos: 1 to {MAX_PHOTO_UPLOADS} uploads")
        return [str(files.upload_path(str(u))) for u in given], [str(u) for u in given]
    text = "" if given is None else str(given)
    top = (files.root / PHOTOS).resolve()
    folder = (top / text).resolve()
    if not folder.is_relative_to(top) or any(p.startswith(".") for p in Path(text).parts):
        raise ArtconvError(f"train: photos {text!r}: not a folder under the studio's "
                           f"{PHOTOS}/")
    if not folder.is_dir():
        raise ArtconvError(f"train: photos {text!r}: no such folder under the studio's "
                           f"{PHOTOS}/ ({top})")
    from artconv.fast.data import list_photos  # torch: with the first job, not the server

    return list_photos(str(folder)), text


def photo_folders(files: StudioFolder) -> list[str]:
    """The folders a page may train on: the studio's photos/ ("") and those in it."""
    top = files.root / PHOTOS
    if not top.is_dir():
        return []
    return ["", *sorted(p.name for p in top.iterdir()
                        if p.is_dir() and not p.name.startswith("."))]


def run_training(job: WebJob, callback: Any) -> None:
    """Train `job` (Stop and the end alike keep the checkpoint and write the model)."""
    from artconv.fast.train import train  # torch: with the first job, not the server

    options = options_for(TrainOptions, overrides=dict(job.job.options), base=job.base)
    Path(job.job.output).parent.mkdir(parents=True, exist_ok=True)
    train(options, list(job.job.styles), list(job.photos), job.job.output, callback=callback)


def training_files(files: StudioFolder, job: WebJob) -> dict[str, str | None]:
    """The addresses of a training job's preview sheet and loss curve (versioned by the step
    reached: they are redrawn), None before they are written."""
    from artconv.fast.checkpoint import work_folder  # torch: loaded once a job has run

    folder = work_folder(job.job.output)
    version = job.step.get("done", 0)
    out: dict[str, str | None] = {}
    for key, name in (("sheet", "preview.png"), ("curve", "losses.png")):
        path = folder / name
        out[key] = f"{files.url_of(path)}?v={version}" if path.is_file() else None
    out["model"] = Path(job.job.output).name
    return out
