"""The studio behind `artconv serve`: its folder, uploads, one job queue, gallery and sweeps.

Everything the page makes is a batch `Job` (`artconv.batch.jobs.Job`) run by
`artconv.batch.render` on one `StudioRunner`, a `LocalRunner` that keeps its networks
loaded between jobs and builds engines with the studio's step callback (live previews and
Stop) instead of a progress display. One worker thread runs the queue: one job at a time
on the machine's one device. With `artconv serve --engine ray` the same queue goes to Ray
worker actors instead (`artconv.web.runner.StudioRayRunner`), `workers` threads feeding as
many actors, one job each at a time.

The folder holds `uploads/` (the browser's images, named by ids made here: a browser's
file name never chooses a path), `results/` (each result written by its engine's writer,
atomically with its recipe, and `ID.studio.json`, what the page asked for, so "run again"
and the gallery survive a restart) and `sweeps/` (contact sheets).
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import queue
import re
import secrets
import threading
import time
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from artconv import registry
from artconv.batch.jobs import Job
from artconv.errors import ArtconvError
from artconv.fast.options import PUBLISHED_MODELS
from artconv.io.files import atomic_write_bytes, url_cache_path, url_of
from artconv.options import CoreOptions, base_type, literal_choices
from artconv.presets import Preset, find_preset, is_preset_name, list_presets, options_for

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
PREVIEWS_PER_SECOND = 3.0
MAX_CURVE_POINTS = 400
FINISHED = ("done", "stopped", "failed", "cancelled")
SWEEP_VALUES = (3, 8)  # fewest and most values of a sweep

# The options shown first on the page; the rest of each record goes under "More options".
MAIN_FIELDS = {
    "style": ("size", "iterations", "style_weight", "content_weight", "blend", "style_scale",
              "preserve_colors", "pooling", "precision", "seed"),
    "dream": ("size", "layers", "octaves", "steps", "step_size", "preserve_colors",
              "pooling", "precision", "seed"),
    "features": ("size", "layers", "pooling", "precision", "seed"),
    "fast": ("model", "size", "preserve_colors", "tile", "precision"),
}
# What the sweep view offers first (any other field of the record may be swept too).
SWEEP_FIELDS = ("style_weight", "style_scale", "style_layers", "layers", "pooling",
                "content_weight", "octaves", "step_size")
# Values that name files or code on the server (weights files, backbones, masks, guides) or
# make outputs the studio does not show (zoom videos, arrays) never come from the browser;
# the operator may still set them as studio defaults.
BLOCKED = frozenset({"backbone", "masks", "style_masks", "masks_rest", "guide", "mask",
                     "objective", "frames", "gif", "zoom", "rotate", "similar_to",
                     "pca_shared", "memmap", "device"})
# Options that take a file path as one of their forms: only the named forms from a browser.
NAMED_ONLY = {"weights": ("imagenet", "caffe", "random"), "init": ("content", "noise"),
              "model": PUBLISHED_MODELS}
IMAGE_SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif",
                  "BMP": ".bmp", "GIF": ".gif"}
_ID = re.compile(r"[0-9a-f]{16}")
log = logging.getLogger("artconv.web")


def new_id() -> str:
    return secrets.token_hex(8)


def check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ArtconvError(f"{what} {value!r}: not an id of this studio")
    return value


# -- the option records, as form fields --------------------------------------------------------
def form_fields(engine: str, defaults: CoreOptions) -> list[dict[str, Any]]:
    """The fields of `engine`'s option record the page may set, with their help, range,
    choices and the studio's default: the page builds its form from these."""
    cls = registry.options_class(engine)
    hints = typing.get_type_hints(cls)
    values = defaults.to_dict()
    main = MAIN_FIELDS.get(engine, ())
    out = []
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli", True) or f.name in BLOCKED:
            continue
        tp, optional = base_type(hints[f.name])
        choices = literal_choices(tp)
        if f.name in NAMED_ONLY:
            choices = tuple(dict.fromkeys((*NAMED_ONLY[f.name], values[f.name])))
        if choices:
            kind = "choice"
        elif typing.get_origin(tp) is tuple:
            kind = "list"
        else:
            kind = {bool: "bool", int: "int", float: "float"}.get(tp, "text")
        out.append({"name": f.name, "label": f.name.replace("_", " "), "kind": kind,
                    "choices": [c for c in choices or () if c is not None],
                    "default": values[f.name], "help": f.metadata.get("help", ""),
                    "min": f.metadata.get("min"), "max": f.metadata.get("max"),
                    "optional": optional, "main": f.name in main})
    order = {name: i for i, name in enumerate(main)}
    return sorted(out, key=lambda d: (not d["main"], order.get(d["name"], 0)))


def browser_options(engine: str, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The option overrides a page sent, checked: known fields only, none that names a
    file or code on this machine; empty values mean "not given"."""
    cls = registry.options_class(engine)
    known = {f.name for f in dataclasses.fields(cls) if f.metadata.get("cli", True)}
    out = {}
    for key, value in (given or {}).items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise ArtconvError(f"option {key!r}: not an option of {engine}")
        if name in BLOCKED:
            raise ArtconvError(f"option {name!r}: cannot be set from the page (it names "
                               "files on the server or makes outputs the studio does not "
                               "show)")
        if value is None or value == "" or value == []:
            continue
        if name in NAMED_ONLY and value not in NAMED_ONLY[name]:
            raise ArtconvError(f"option {name!r} {value!r}: from the page choose one of "
                               f"{', '.join(NAMED_ONLY[name])}")
        out[name] = value
    return out


# -- presets -----------------------------------------------------------------------------------
def preset_images_ready(preset: Preset) -> bool:
    """Whether every image of a preset is on this machine (a local file, or a URL already in
    the download cache): the studio never downloads while a page waits."""
    for ref in preset.images:
        if url_of(ref) == ref:
            if not url_cache_path(ref).is_file():
                return False
        elif not (preset.path.parent / Path(ref).expanduser()).is_file():
            return False
    return True


def preset_list() -> list[dict[str, Any]]:
    out = []
    for p in list_presets():
        out.append({"name": p.name, "engine": p.engine, "description": p.description,
                    "licence": p.licence, "source": p.source, "style": bool(p.images),
                    "available": bool(p.images) and preset_images_ready(p)})
    return out


# -- jobs ----------------------------------------------------------------------------------------
@dataclass
class WebJob:
    """A batch job and what the page watches of it."""

    id: str
    job: Job
    base: CoreOptions  # studio defaults under the page's preset; job.options go on top
    form: dict[str, Any]  # what the page sent: "run again" sends it back
    label: str
    sweep: str | None = None
    status: str = "queued"
    error: str = ""
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    step: dict[str, Any] = field(default_factory=dict)
    curve: list[tuple[int, float]] = field(default_factory=list)
    curve_name: str = ""
    preview: bytes | None = None
    preview_version: int = 0
    last_preview: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def output(self) -> Path:
        return Path(self.job.output)

    def state(self) -> dict[str, Any]:
        """What the page shows: status, step, ETA, loss curve, preview version."""
        eta = None
        done, total = self.step.get("done", 0), self.step.get("total", 0)
        if self.status == "running" and self.started and done:
            eta = (time.time() - self.started) / done * max(total - done, 0)
        return {"id": self.id, "engine": self.job.engine, "label": self.label,
                "status": self.status, "error": self.error, "sweep": self.sweep,
                "step": dict(self.step), "eta": None if eta is None else round(eta, 1),
                "curve": {"name": self.curve_name, "points": list(self.curve)},
                "preview": self.preview_version, "form": self.form,
                "result": self.output.name if self.status in ("done", "stopped") else None}

    def record(self) -> dict[str, Any]:
        """The gallery entry kept beside the result."""
        return {"id": self.id, "engine": self.job.engine, "label": self.label,
                "status": self.status, "form": self.form, "sweep": self.sweep,
                "output": self.output.name, "created": self.created,
                "finished": self.finished,
                "seconds": round((self.finished or 0) - (self.started or 0), 2)}


@dataclass
class Sweep:
    id: str
    option: str
    values: list[Any]
    jobs: list[str]
    content: Path
    drawn: int = 0  # jobs whose end the sheet shows (its version, for the page)


class Studio:
    """The studio folder and its one queue. `defaults` maps an engine to option values put
    under everything a page asks for (the operator's choice: e.g. a weights file, or random
    weights in tests)."""

    def __init__(self, folder: str | Path, *, defaults: Mapping[str, Mapping[str, Any]]
                 | None = None, max_upload: int = MAX_UPLOAD_BYTES,
                 previews_per_second: float = PREVIEWS_PER_SECOND, workers: int = 1) -> None:
        if workers < 1:
            raise ArtconvError(f"--workers {workers}: must be at least 1")
        self.workers = workers  # jobs run at once: one per device (several only on Ray)
        self.folder = Path(folder).expanduser().resolve()
        for sub in ("uploads", "results", "sweeps"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        defaults = defaults or {}
        bad = sorted(set(defaults) - set(registry.ENGINES))
        if bad:
            raise ArtconvError(f"studio defaults: unknown engine {bad[0]!r}")
        self.defaults = {name: options_for(name, overrides=dict(defaults.get(name, {})))
                         for name in registry.ENGINES}
        self.max_upload = max_upload
        self.preview_interval = 1.0 / previews_per_second
        self.jobs: dict[str, WebJob] = {}
        self.sweeps: dict[str, Sweep] = {}
        self.lock = threading.Lock()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._running: dict[int, WebJob] = {}  # by worker thread: whose steps on_step gets
        self._threads: list[threading.Thread] = []
        self._draw_lock = threading.Lock()  # one sweep sheet drawn at a time
        self._thumbs: dict[str, bytes] = {}
        # The queue's runner: a StudioRunner made with the first job (torch loads then, not
        # with the server), unless one was given before start (`artconv serve --engine ray`
        # gives a StudioRayRunner on `on_step`). Anything with `render`'s Runner interface.
        self.runner: Any = None

    # -- lifetime ---------------------------------------------------------------------------
    def start(self) -> None:
        if not self._threads:
            self._threads = [threading.Thread(target=self._work, name=f"artconv-studio-{i}",
                                              daemon=True) for i in range(self.workers)]
            for thread in self._threads:
                thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the running job (its image so far is kept), drop the queued ones, end."""
        with self.lock:
            for job in self.jobs.values():
                if job.status == "queued":
                    job.status = "cancelled"
                job.stop.set()
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []
        close = getattr(self.runner, "close", None)
        if close is not None:  # a Ray runner ends its worker (and Ray, if it started it)
            close()

    # -- uploads ------------------------------------------------------------------------------
    def add_upload(self, data: bytes) -> dict[str, Any]:
        """Keep an uploaded image under an id made here, once it decodes within the limits
        every command uses (`load_image`: the pixel limit, ARTCONV_MAX_PIXELS)."""
        from PIL import Image

        from artconv.io.images import image_hw, load_image

        if len(data) > self.max_upload:
            raise ArtconvError(f"upload: {len(data)} bytes, more than the "
                               f"{self.max_upload} allowed")
        uid = new_id()
        tmp = self.folder / "uploads" / f".{uid}.part"
        tmp.write_bytes(data)
        try:
            try:
                with Image.open(tmp) as img:
                    kind = img.format
            except (OSError, ValueError):
                raise ArtconvError("upload: not an image this studio reads") from None
            suffix = IMAGE_SUFFIXES.get(kind or "")
            if suffix is None:
                raise ArtconvError(f"upload: {kind} images are not taken (PNG, JPEG, WebP, "
                                   "TIFF, BMP, GIF)")
            height, width = image_hw(tmp)  # refuses more pixels than the limit
            load_image(tmp, min(256, height, width))  # decodes it all (a truncated file fails)
            path = tmp.with_name(uid + suffix)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return {"id": uid, "url": self.url_of(path), "width": width, "height": height}

    def upload_path(self, uid: str) -> Path:
        check_id(uid, "upload")
        found = [p for p in (self.folder / "uploads").glob(f"{uid}.*")
                 if p.suffix in IMAGE_SUFFIXES.values()]
        if not found:
            raise ArtconvError(f"upload {uid}: no such image (upload it again)")
        return found[0]

    def _upload_url(self, uid: Any) -> str | None:
        try:
            return self.url_of(self.upload_path(str(uid)))
        except ArtconvError:
            return None

    def url_of(self, path: Path) -> str:
        return "/files/" + path.relative_to(self.folder).as_posix()

    def served_file(self, relative: str) -> Path:
        """A file of the studio folder named by the page; nothing outside it, no hidden
        (temporary) files, no links leading out."""
        path = (self.folder / relative).resolve()
        if not path.is_relative_to(self.folder) or path == self.folder:
            raise FileNotFoundError(relative)
        if any(part.startswith(".") for part in path.relative_to(self.folder).parts):
            raise FileNotFoundError(relative)
        if not path.is_file():
            raise FileNotFoundError(relative)
        return path

    # -- jobs -----------------------------------------------------------------------------
    def plan(self, form: Mapping[str, Any], *, sweep: str | None = None,
             label: str = "") -> WebJob:
        """A checked job from what a page sent: engine, content (an upload id), styles
        (upload ids or style preset names), preset (options) and option overrides."""
        engine = registry.get(str(form.get("engine", "style"))).name
        spec = registry.get(engine)
        content = self.upload_path(str(form.get("content", "")))
        styles: list[str] = []
        named: list[str] = []
        for item in form.get("styles") or ():
            item = str(item)
            if _ID.fullmatch(item):
                styles.append(str(self.upload_path(item)))
                continue
            preset = self._preset(item, engine, style=True)
            styles.append(preset.name)
            named.append(preset.name)
        if spec.takes_styles and not styles:
            raise ArtconvError(f"{engine}: pick at least one style image or style preset")
        if not spec.takes_styles and styles:
            raise ArtconvError(f"{engine}: takes no style images")
        preset = form.get("preset") or None
        base = self.defaults[engine]
        if preset is not None:
            base = options_for(engine, self._preset(str(preset), engine), base=base)
        overrides = browser_options(engine, form.get("options"))
        options_for(engine, overrides=overrides, named=named, base=base)  # fail now, not later
        jid = new_id()
        output = self.folder / "results" / f"{jid}.png"
        job = Job(engine, str(content), str(output), tuple(styles), overrides, id=jid)
        clean = {"engine": engine, "content": content.stem, "preset": preset,
                 "styles": [Path(s).stem if not is_preset_name(s) else s for s in styles],
                 "options": overrides}
        return WebJob(jid, job, base, clean, label or self._label(engine, named, overrides),
                      sweep=sweep)

    def submit(self, form: Mapping[str, Any]) -> WebJob:
        return self._enqueue([self.plan(form)])[0]

    def sweep(self, form: Mapping[str, Any], option: str, values: Sequence[Any]) -> Sweep:
        """One job per value of `option` (3 to 8 values), the rest as in `form`; a contact
        sheet gathers the results as they come in."""
        values = [v for v in values if v not in (None, "")]
        lo, hi = SWEEP_VALUES
        if not lo <= len(values) <= hi:
            raise ArtconvError(f"sweep: give {lo} to {hi} values of {option} "
                               f"(got {len(values)})")
        sid = new_id()
        jobs = []
        for value in values:
            options = {**dict(form.get("options") or {}), option: value}
            jobs.append(self.plan({**form, "options": options}, sweep=sid,
                                  label=f"{option} = {value}"))
        sweep = Sweep(sid, option, list(values), [j.id for j in jobs],
                      Path(jobs[0].job.input))
        with self.lock:
            self.sweeps[sid] = sweep
        self._enqueue(jobs)
        return sweep

    def _enqueue(self, jobs: list[WebJob]) -> list[WebJob]:
        with self.lock:
            for job in jobs:
                self.jobs[job.id] = job
        for job in jobs:
            self._queue.put(job.id)
        return jobs

    def stop(self, jid: str) -> WebJob:
        """Stop a job: a queued one never runs, a running one ends with its image so far."""
        job = self.job(jid)
        with self.lock:
            job.stop.set()
            if job.status == "queued":
                job.status, job.finished = "cancelled", time.time()
        return job

    def job(self, jid: str) -> WebJob:
        check_id(jid, "job")
        try:
            return self.jobs[jid]
        except KeyError:
            raise ArtconvError(f"job {jid}: no such job") from None

    def state(self, jid: str) -> dict[str, Any]:
        job = self.job(jid)
        with self.lock:
            out = job.state()
            if job.status == "queued":
                waiting = [j for j in self.jobs.values() if j.status == "queued"]
                out["position"] = waiting.index(job) + 1
            return out

    def sweep_state(self, sid: str) -> dict[str, Any]:
        check_id(sid, "sweep")
        sweep = self.sweeps.get(sid)
        if sweep is None:
            raise ArtconvError(f"sweep {sid}: no such sweep")
        with self.lock:
            jobs = [self.jobs[j].state() for j in sweep.jobs]
        sheet = self.folder / "sweeps" / f"{sid}.png"
        return {"id": sid, "option": sweep.option, "values": sweep.values, "jobs": jobs,
                # finished once the sheet shows every job, not only when the jobs ended
                "finished": sweep.drawn == len(jobs),
                "sheet": f"{self.url_of(sheet)}?v={sweep.drawn}" if sheet.is_file()
                else None}

    # -- gallery ------------------------------------------------------------------------------
    def gallery(self) -> list[dict[str, Any]]:
        """Finished results, newest first, from the folder (they outlive the server)."""
        out = []
        for meta in (self.folder / "results").glob("*.studio.json"):
            try:
                record = json.loads(meta.read_text(encoding="utf-8"))
                image = self.served_file(f"results/{record['output']}")
            except (OSError, ValueError, KeyError):
                continue  # a half-written or foreign file is not an entry
            form = record.get("form") or {}
            out.append({**record, "url": self.url_of(image),
                        "download": self.url_of(image) + "?download=1",
                        "inputs": {"content": self._upload_url(form.get("content")),
                                   "styles": [self._upload_url(s)
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

    def preset_thumb(self, name: str) -> bytes:
        """A small JPEG of a style preset's first image, when it is on this machine."""
        from artconv.io.images import load_image

        if name not in self._thumbs:
            preset = self._preset(name, "style", style=True)
            self._thumbs[name] = jpeg(load_image(preset.image_paths()[0], 160))
        return self._thumbs[name]

    # -- running ----------------------------------------------------------------------------
    def _work(self) -> None:
        from artconv.batch.runner import render

        while True:
            jid = self._queue.get()
            if jid is None:
                return
            with self.lock:
                if self.runner is None:  # torch loads with the first job, not the server
                    from artconv.web.runner import StudioRunner

                    self.runner = StudioRunner(self.on_step)
                runner = self.runner
            job = self.jobs[jid]
            with self.lock:
                skip = job.status != "queued"
                if not skip:
                    job.status, job.started = "running", time.time()
                    self._running[threading.get_ident()] = job
            if skip:  # stopped while it waited
                self._after(job)
                continue
            status, error = "failed", ""
            try:
                report = render([job.job], {job.job.engine: job.base}, runner=runner)
                result = report.results[0]
                if result.status == "done":
                    status = "stopped" if job.stop.is_set() else "done"
                else:
                    error = result.reason or result.status
            except Exception as exc:  # noqa: BLE001 - a job's failure must not end the queue
                from artconv.batch.runner import reason

                error = reason(exc)
            finally:
                with self.lock:
                    self._running.pop(threading.get_ident(), None)
                    job.status, job.error, job.finished = status, error, time.time()
            self._after(job)

    def _after(self, job: WebJob) -> None:
        """A job's gallery entry and its sweep's sheet; a failure here (a full disk) is
        logged and the queue goes on."""
        try:
            if job.status in ("done", "stopped"):
                atomic_write_bytes(job.output.with_suffix(".studio.json"),
                                   json.dumps(job.record(), indent=1).encode())
        except Exception:  # noqa: BLE001 - the worker must outlive one job's files
            log.exception("studio: cannot keep the gallery entry of job %s", job.id)
        if job.sweep:
            sweep = self.sweeps[job.sweep]
            try:
                with self._draw_lock:
                    self._draw_sweep(sweep)
            except Exception:  # noqa: BLE001
                log.exception("studio: cannot draw the contact sheet of sweep %s", sweep.id)
            with self.lock:
                sweep.drawn += 1

    def on_step(self, step: Any) -> bool:
        """The engines' callback: progress, the loss curve, a preview at most a few times a
        second (the picture is made only then), and Stop."""
        with self.lock:
            job = self._running.get(threading.get_ident())
            if job is None and len(self._running) == 1:  # an engine calling from a thread
                (job,) = self._running.values()            # of its own
        if job is None:
            return True
        now = time.monotonic()
        name = next((k for k in ("loss", "objective") if k in step.figures), "")
        with self.lock:
            job.step = {"stage": step.stage, "stages": step.stages, "step": step.step,
                        "steps": step.steps, "done": step.done, "total": step.total,
                        "label": step.label}
            if name:
                job.curve_name = name
                job.curve.append((step.done, float(step.figures[name])))
                if len(job.curve) > MAX_CURVE_POINTS:
                    job.curve = job.curve[::2]
        last = step.done >= step.total
        if now - job.last_preview >= self.preview_interval or last:
            image = step.image
            if image is not None:
                picture = jpeg(image[0])
                with self.lock:
                    job.preview, job.last_preview = picture, now
                    job.preview_version += 1
        return not job.stop.is_set()

    def _draw_sweep(self, sweep: Sweep) -> None:
        """The sweep's contact sheet so far: the content, then one column per value."""
        from PIL import Image, ImageDraw

        from artconv.io.images import save_image
        from artconv.io.sheet import contact_sheet

        jobs = [self.jobs[j] for j in sweep.jobs]
        cells = {(0, i): str(j.output) if j.status in ("done", "stopped") else None
                 for i, j in enumerate(jobs)}
        path = self.folder / "sweeps" / f"{sweep.id}.png"
        scratch = path.with_name(f".{path.name}")  # hidden: never served half-made
        thumb, gap, band = 160, 6, 22
        contact_sheet([str(sweep.content)], [None] * len(jobs), cells, scratch, thumb=thumb,
                      gap=gap)
        with Image.open(scratch) as drawn:
            sheet = drawn.convert("RGB")
        scratch.unlink()
        # contact_sheet's first row holds style images; a sweep has none: values go there.
        labelled = Image.new("RGB", (sheet.width, sheet.height - thumb + band), (24, 24, 24))
        labelled.paste(sheet.crop((0, thumb + gap, sheet.width, sheet.height)), (0, band))
        draw = ImageDraw.Draw(labelled)
        draw.text((gap, 5), sweep.option, fill=(200, 200, 200))
        for i, value in enumerate(sweep.values):
            x = gap + (i + 1) * (thumb + gap)
            draw.text((x, 5), str(value)[:24], fill=(230, 230, 230))
        save_image(labelled, path, inputs=[sweep.content])

    # -- helpers ----------------------------------------------------------------------------
    def _preset(self, name: str, engine: str, *, style: bool = False) -> Preset:
        if not is_preset_name(name) or name not in {p.name for p in list_presets()}:
            raise ArtconvError(f"preset {name!r}: no such preset (see `artconv presets`)")
        preset = find_preset(name)
        if preset.engine != engine:
            raise ArtconvError(f"preset {name!r}: is for {preset.engine}, not {engine}")
        if style and not preset.images:
            raise ArtconvError(f"preset {name!r}: has no style images (choose it as the "
                               "preset instead)")
        if style and not preset_images_ready(preset):
            raise ArtconvError(f"preset {name!r}: its images are not on this machine (run "
                               "`artconv presets --fetch` once while online)")
        return preset

    @staticmethod
    def _label(engine: str, named: Sequence[str], overrides: Mapping[str, Any]) -> str:
        parts = [engine, *named]
        parts += [f"{k}={v}" for k, v in list(overrides.items())[:3]]
        return " ".join(parts)


def jpeg(image: Any, quality: int = 85) -> bytes:
    """A (3, H, W) tensor in [0, 1] as JPEG bytes (previews, thumbnails)."""
    from artconv.io.images import to_pil

    buffer = io.BytesIO()
    to_pil(image).convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
