"""The studio behind `artconv serve`: one job queue on its folder, what the page watches.

Everything the page makes is a batch `Job` (`artconv.batch.jobs.Job`) run by
`artconv.batch.render` on one `StudioRunner`, a `LocalRunner` that keeps its networks
loaded between jobs and builds engines with the studio's step callback (live previews and
Stop) instead of a progress display. One worker thread runs the queue: one job at a time
on the machine's one device. With `artconv serve --engine ray` the same queue goes to Ray
worker actors instead (`artconv.web.runner.StudioRayRunner`), `workers` threads feeding as
many actors, one job each at a time.

The seams: `folder` (uploads, served files, results and the gallery, the queue file),
`forms` (what a page may send), `jobs` (a job and a sweep as the page sees them),
`previews` (JPEG pictures of a running job), `sweeps` (contact sheets) and `events` (the
one stream of changes to the page). The queue is kept on disk as it changes, so a killed
server's jobs run again when the next one starts on the folder.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from artconv import registry
from artconv.batch.runner import reason, render
from artconv.errors import ArtconvError
from artconv.presets import options_for
from artconv.web.events import Changes
from artconv.web.folder import StudioFolder
from artconv.web.forms import SERVER_FIELDS, TRAIN, check_id, options_class, page_preset
from artconv.web.jobs import FINISHED, KEPT, Sweep, WebJob
from artconv.web.planning import Planner
from artconv.web.previews import PREVIEWS_PER_SECOND, Previews, jpeg
from artconv.web.sweeps import draw_sheet
from artconv.web.training import run_training, training_files

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
log = logging.getLogger("artconv.web")


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
        defaults = defaults or {}
        kinds = [*registry.ENGINES, TRAIN]
        bad = sorted(set(defaults) - set(kinds))
        if bad:
            raise ArtconvError(f"studio defaults: unknown engine {bad[0]!r}")
        if TRAIN not in defaults:  # training's loss network is the server's, as the style's
            style = defaults.get("style", {})
            defaults = {**defaults, TRAIN: {k: style[k] for k in SERVER_FIELDS if k in style}}
        self.defaults = {name: options_for(options_class(name),
                                           overrides=dict(defaults.get(name, {})))
                         for name in kinds}
        self.files = StudioFolder(folder)
        self.folder = self.files.root
        self.planner = Planner(self.files, self.defaults)
        self.max_upload = max_upload
        self.previews_per_second = previews_per_second
        self.preview_interval = 1.0 / previews_per_second
        self.jobs: dict[str, WebJob] = {}
        self.sweeps: dict[str, Sweep] = {}
        self.changes = Changes()
        self.lock = threading.Lock()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._running: dict[int, WebJob] = {}  # by worker thread: whose steps on_step gets
        self._threads: list[threading.Thread] = []
        self._draw_lock = threading.Lock()  # one sweep sheet drawn at a time
        self._save_lock = threading.Lock()  # one writer of the queue file at a time
        self._closing = False
        self._thumbs: dict[str, bytes] = {}
        # The queue's runner: a StudioRunner made with the first job (torch loads then, not
        # with the server), unless one was given before start (`artconv serve --engine ray`
        # gives a StudioRayRunner on `on_step`). Anything with `render`'s Runner interface.
        self.runner: Any = None
        self.resumed = self._resume()  # jobs queued again from the file a last server left

    # -- lifetime ---------------------------------------------------------------------------
    def start(self) -> None:
        if not self._threads:
            self._threads = [threading.Thread(target=self._work, name=f"artconv-studio-{i}",
                                              daemon=True) for i in range(self.workers)]
            for thread in self._threads:
                thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the running jobs (their images so far are kept) and end; the queued ones
        stay in the queue file for the next server on this folder."""
        with self.lock:
            self._closing = True
            for job in self._running.values():
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

    # -- inputs -------------------------------------------------------------------------------
    def add_upload(self, data: bytes) -> dict[str, Any]:
        if len(data) > self.max_upload:
            raise ArtconvError(f"upload: {len(data)} bytes, more than the "
                               f"{self.max_upload} allowed")
        return self.files.add_upload(data)

    def preset_thumb(self, name: str) -> bytes:
        """A small JPEG of a style preset's first image, when it is on this machine."""
        from artconv.io.images import load_image  # torch: with the first picture

        if name not in self._thumbs:
            preset = page_preset(name, "style", style=True)
            self._thumbs[name] = jpeg(load_image(preset.image_paths()[0], 160))
        return self._thumbs[name]

    # -- jobs -----------------------------------------------------------------------------
    def submit(self, form: Mapping[str, Any]) -> WebJob:
        return self._enqueue([self.planner.job(form)])[0]

    def sweep(self, form: Mapping[str, Any], option: str, values: Sequence[Any]) -> Sweep:
        """One job per value of `option` (3 to 8 values), the rest as in `form`; a contact
        sheet gathers the results as they come in."""
        sweep, jobs = self.planner.sweep(form, option, values)
        with self.lock:
            self.sweeps[sweep.id] = sweep
        self._enqueue(jobs)
        return sweep

    def _enqueue(self, jobs: list[WebJob]) -> list[WebJob]:
        with self.lock:
            for job in jobs:  # two runs on one checkpoint would undo each other's steps
                if job.job.engine == TRAIN and any(
                        j.output == job.output and j.status not in FINISHED
                        for j in self.jobs.values()):
                    raise ArtconvError(f"train: {job.output.name} is already being trained "
                                       "(stop that job first)")
            for job in jobs:
                self.jobs[job.id] = job
                self._touch(job)
        self._save_queue()  # on disk before the request that made them is answered
        for job in jobs:
            self._queue.put(job.id)
        return jobs

    def stop(self, jid: str) -> WebJob:
        """Stop a job: a queued one never runs, a running one ends with its image so far."""
        job = self.job(jid)
        with self.lock:
            job.stop.set()
            cancelled = job.status == "queued"
            if cancelled:
                job.status, job.finished = "cancelled", time.time()
                self._touch(job, status=True)
        if cancelled:
            self._save_queue()
        return job

    def job(self, jid: str) -> WebJob:
        check_id(jid, "job")
        try:
            return self.jobs[jid]
        except KeyError:
            raise ArtconvError(f"job {jid}: no such job") from None

    # -- what the page sees -------------------------------------------------------------------
    def state(self, jid: str) -> dict[str, Any]:
        job = self.job(jid)
        with self.lock:
            return self._with_position(self._state(job), self._positions())

    def _state(self, job: WebJob) -> dict[str, Any]:
        """A job as the page sees it; a training job with its preview sheet and curve."""
        out = job.state()
        if job.job.engine == TRAIN:
            out["train"] = training_files(self.files, job)
        return out

    def sweep_state(self, sid: str, *, brief: bool = False) -> dict[str, Any]:
        """A sweep: its jobs (their states, or with `brief` their queue lines), whether its
        sheet shows them all, and the sheet's address (versioned: it is redrawn)."""
        check_id(sid, "sweep")
        sweep = self.sweeps.get(sid)
        if sweep is None:
            raise ArtconvError(f"sweep {sid}: no such sweep")
        with self.lock:
            return self._sweep_state(sweep, brief)

    def _sweep_state(self, sweep: Sweep, brief: bool) -> dict[str, Any]:
        jobs = [self.jobs[j].summary() if brief else self._state(self.jobs[j])
                for j in sweep.jobs]
        sheet = self.files.sheet_path(sweep.id)
        return {"id": sweep.id, "option": sweep.option, "values": sweep.values, "jobs": jobs,
                "finished": sweep.finished,
                "sheet": f"{self.files.url_of(sheet)}?v={sweep.drawn}" if sheet.is_file()
                else None}

    def updates(self, seen: int) -> tuple[dict[str, Any], int]:
        """What changed since version `seen` (-1: all that is not over), for the event
        stream: the queue's lines, the states of the jobs and sweeps that changed; and the
        version it shows."""
        with self.lock:
            version = self.changes.version
            positions = self._positions()
            jobs = [self._with_position(self._state(j), positions) for j in self.jobs.values()
                    if j.version > seen and (seen >= 0 or j.status not in FINISHED)]
            sweeps = [self._sweep_state(s, True) for s in self.sweeps.values()
                      if s.version > seen and (seen >= 0 or not s.finished)]
            lines = [self._with_position(j.summary(), positions) for j in self.jobs.values()
                     if j.status not in FINISHED]
        return {"queue": lines, "jobs": jobs, "sweeps": sweeps}, version

    def _positions(self) -> dict[str, int]:
        waiting = [j.id for j in self.jobs.values() if j.status == "queued"]
        return {jid: i + 1 for i, jid in enumerate(waiting)}

    @staticmethod
    def _with_position(out: dict[str, Any], positions: Mapping[str, int]) -> dict[str, Any]:
        if out["id"] in positions:
            out["position"] = positions[out["id"]]
        return out

    def _touch(self, job: WebJob, *, status: bool = False) -> None:
        """Mark `job` changed (and its sweep, when its status changed): the event streams
        send it. Call with the lock held, after the change."""
        job.version = self.changes.bump()
        sweep = self.sweeps.get(job.sweep or "")
        if status and sweep is not None:
            sweep.version = job.version

    # -- running ----------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            jid = self._queue.get()
            if jid is None or self._closing:  # the rest stay queued on disk
                return
            job = self.jobs[jid]
            with self.lock:
                if self._closing:
                    return
                if self.runner is None:  # torch loads with the first job, not the server
                    from artconv.web.runner import StudioRunner

                    self.runner = StudioRunner(self.on_step)
                runner = self.runner
                skip = job.status != "queued"
                if not skip:
                    job.status, job.started = "running", time.time()
                    job.previews = Previews(self.previews_per_second)
                    self._running[threading.get_ident()] = job
                    self._touch(job, status=True)
            if skip:  # stopped while it waited
                self._draw(job)
                continue
            status, error = self._run(job, runner)
            self._finish(job, status, error)

    def _run(self, job: WebJob, runner: Any) -> tuple[str, str]:
        """Render (or train) `job`: its final status and why it failed."""
        if job.job.engine == TRAIN:
            try:
                run_training(job, self.on_step)
            except Exception as exc:  # noqa: BLE001 - a job's failure must not end the queue
                return "failed", reason(exc)
            return ("stopped" if job.stop.is_set() else "done"), ""
        try:
            result = render([job.job], {job.job.engine: job.base}, runner=runner).results[0]
        except Exception as exc:  # noqa: BLE001 - a job's failure must not end the queue
            return "failed", reason(exc)
        # skipped: a killed server finished it, but not its queue entry
        if result.status in ("done", "skipped"):
            return ("stopped" if job.stop.is_set() else "done"), ""
        return "failed", result.reason or result.status

    def _finish(self, job: WebJob, status: str, error: str) -> None:
        """A job's end: its gallery entry first, so a page told of the end finds it there,
        then its status, its sweep's sheet and the queue file. A failure to write (a full
        disk) is logged and the queue goes on."""
        job.finished = time.time()
        if status in KEPT and job.job.engine != TRAIN:  # a model is no gallery picture
            try:
                self.files.keep_record(job.output, job.record(status))
            except Exception:  # noqa: BLE001 - the worker must outlive one job's files
                log.exception("studio: cannot keep the gallery entry of job %s", job.id)
        with self.lock:
            self._running.pop(threading.get_ident(), None)
            job.status, job.error = status, error
            self._touch(job, status=True)
        self._draw(job)

    def _draw(self, job: WebJob) -> None:
        """The sheet of `job`'s sweep, with its end; then the queue file."""
        sweep = self.sweeps.get(job.sweep or "")
        if sweep is not None:
            with self.lock:
                results = [self.jobs[j].output if self.jobs[j].status in KEPT else None
                           for j in sweep.jobs]
            try:
                with self._draw_lock:
                    draw_sheet(self.files.sheet_path(sweep.id), sweep.content, sweep.option,
                               sweep.values, results)
            except Exception:  # noqa: BLE001
                log.exception("studio: cannot draw the contact sheet of sweep %s", sweep.id)
            with self.lock:
                sweep.drawn += 1
                sweep.version = self.changes.bump()
        self._save_queue()

    def on_step(self, step: Any) -> bool:
        """The engines' callback: progress, the loss curve, a preview at most a few times a
        second (the picture is made only then), and Stop."""
        with self.lock:
            job = self._running.get(threading.get_ident())
            if job is None and len(self._running) == 1:  # an engine calling from a thread
                (job,) = self._running.values()            # of its own
            if job is None:
                return True
            job.take_step(step)
            self._touch(job)
        picture = job.previews.picture(step)
        if picture is not None:
            with self.lock:
                job.preview = picture
                job.preview_version += 1
                self._touch(job)
        return not job.stop.is_set()

    # -- the queue on disk ------------------------------------------------------------------
    def _save_queue(self) -> None:
        """Keep the jobs not yet finished, and every job of a sweep whose sheet is not yet
        complete, in queue order."""
        with self._save_lock:
            with self.lock:
                open_sweeps = [s for s in self.sweeps.values() if not s.finished]
                jobs = [j.queue_record() for j in self.jobs.values()
                        if j.status not in FINISHED or j.sweep in {s.id for s in open_sweeps}]
                sweeps = [s.queue_record() for s in open_sweeps]
            self.files.save_queue(jobs, sweeps)

    def _resume(self) -> int:
        """Queue again, under their ids and in order, the unfinished jobs a killed (or
        stopped) server left in this folder; the number queued."""
        jobs, sweeps = self.planner.restore(*self.files.load_queue())
        self.jobs.update((job.id, job) for job in jobs)
        self.sweeps.update((sweep.id, sweep) for sweep in sweeps)
        todo = [job.id for job in jobs if job.status not in FINISHED]
        for jid in todo:
            self._queue.put(jid)
        return len(todo)
