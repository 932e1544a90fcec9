"""The studio's runners: the batch's `LocalRunner` (networks kept loaded between jobs, the
registry's engines and writers) with two changes for a page, and the same on a Ray cluster.

`StudioRunner` uses the local runner's public seams only: `build_engine` (engines report to
the studio's step callback, for previews and Stop, instead of a progress display) and
`run_job` (a features job makes a PCA picture, something to look at, instead of an array
file).

`StudioRayRunner` (`artconv serve --engine ray`) sends the studio's queue to Ray worker
actors (`workers` of them, one job at a time each: one per device) that hold a
`StudioRunner` for the server's lifetime, so their network stays loaded on their device
between jobs. Each actor is threaded: while a job renders, the driver polls it a few times
a second for the steps since the last poll and the latest preview (a JPEG made on the
worker, at most a few a second), and hands them to the studio's callback as if the engine
ran here: the page shows the same live previews, loss curve, ETA and Stop. Stop is a flag
on the actor that the job's own callback reads, so the job ends at its next step with its
image so far written, as locally. As in `artconv batch --engine ray`, inputs and the studio
folder must be at the same path on the workers (this machine, or shared storage), and a
worker that dies is restarted by Ray and its job retried up to `max_retries` times.
"""

from __future__ import annotations

import functools
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from artconv import registry
from artconv.batch.jobs import Job, JobResult
from artconv.batch.local import LocalRunner
from artconv.batch.runner import recorder
from artconv.engine import Callback, Step
from artconv.errors import ArtconvError
from artconv.options import CoreOptions
from artconv.progress import Progress
from artconv.web.previews import PREVIEWS_PER_SECOND, Previews, from_jpeg

POLL_SECONDS = 1 / 3  # how often the driver asks a Ray worker for steps and a preview
POLL_TIMEOUT = 10.0  # a poll unanswered this long (a worker restarting) is skipped


class StudioRunner(LocalRunner):
    """Engines report to the studio's callback (previews, Stop) instead of a progress
    display, and a features job makes a PCA picture instead of an array file."""

    def __init__(self, callback: Callback) -> None:
        super().__init__()
        self.callback = callback

    def build_engine(self, spec: registry.EngineSpec, opts: CoreOptions, extractor: Any) -> Any:
        return spec.engine(opts, extractor=extractor, callback=self.callback)

    def run_job(self, spec: registry.EngineSpec, job: Job, opts: CoreOptions) -> None:
        from artconv.features.files import FeatureWriter
        from artconv.features.planner import FeatureFiles, check_files

        files = FeatureFiles(Path(job.input), pca=Path(job.output))
        check_files(files, opts)
        FeatureWriter(self.engine(spec, opts)).run(files)


# -- on a Ray cluster ----------------------------------------------------------------------
class StudioWorker:
    """A Ray actor (run with max_concurrency=2): `render` runs a job on its `StudioRunner`
    while `poll` hands over the steps so far and asks the job to stop."""

    def __init__(self, previews_per_second: float) -> None:
        self.per_second = previews_per_second
        self.previews = Previews(previews_per_second)
        self.lock = threading.Lock()
        self.steps: list[dict[str, Any]] = []
        self.preview: bytes | None = None
        self.current = ""
        self.stopped: set[str] = set()  # by job id: a stop may arrive before its render
        self.runner = StudioRunner(self.on_step)

    def render(self, jid: str, job_records: Sequence[Mapping[str, Any]],
               option_records: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        from artconv.batch.ray import render_records

        with self.lock:
            self.current, self.steps, self.preview = jid, [], None
            self.previews = Previews(self.per_second)
        return render_records(self.runner, job_records, option_records, 1)

    def on_step(self, step: Step) -> bool:
        record = step.to_dict()
        picture = self.previews.picture(step)
        with self.lock:
            self.steps.append(record)
            if picture is not None:
                self.preview = picture
            return self.current not in self.stopped

    def poll(self, jid: str, stop: bool) -> dict[str, Any]:
        with self.lock:
            if stop:
                self.stopped.add(jid)
            if self.current != jid:
                return {"steps": [], "preview": None}
            out = {"steps": self.steps, "preview": self.preview}
            self.steps, self.preview = [], None
            return out


class StudioRayRunner:
    """The studio's queue on a Ray cluster (`artconv serve --engine ray`): a `Runner` for
    `artconv.batch.render` whose jobs run on one kept worker actor; see the module doc.

    `callback` is the studio's step callback; `address`, `gpus_per_job`, `cpus_per_job` and
    `max_retries` are those of `artconv.batch.ray.RayRunner`, which joins the cluster;
    `workers` actors run a job each at once (give the studio as many worker threads)."""

    def __init__(self, callback: Callback, *, address: str = "auto",
                 gpus_per_job: float = 0.0, cpus_per_job: float = 1.0,
                 max_retries: int = 2, previews_per_second: float = PREVIEWS_PER_SECOND,
                 workers: int = 1) -> None:
        from artconv.batch.ray import RayRunner, WorkerPool, import_ray

        if workers < 1:
            raise ArtconvError(f"--workers {workers}: must be at least 1")
        self.workers = workers

        self.cluster = RayRunner(address, gpus_per_job=gpus_per_job,
                                 cpus_per_job=cpus_per_job, max_retries=max_retries)
        self._ray = import_ray()
        # one job at a time each, and a second thread for `poll` while it renders
        self.pool = WorkerPool(self.cluster, StudioWorker, previews_per_second, size=workers,
                               max_concurrency=2)
        self.callback = callback
        self.stats: dict[str, int] = defaultdict(int)
        self.running: list[Job] = []
        self._lock = threading.Lock()

    def connect(self) -> None:
        """Join the cluster and check it holds `workers` workers (an error naming the flag
        when it cannot); each worker starts with the first job it is needed for."""
        self.pool.connect()
        slots = self.cluster.slots()
        if slots < self.workers:
            raise ArtconvError(f"--workers {self.workers}: the Ray cluster holds {slots} at "
                               f"--cpus-per-job {self.cluster.cpus_per_job:g} "
                               f"--gpus-per-job {self.cluster.gpus_per_job:g}")

    def close(self) -> None:
        """End the workers (and Ray, when this process started it)."""
        self.pool.close()

    def run(self, jobs: Sequence[Job], options: Mapping[str, CoreOptions], *,
            batch_size: int = 1, progress: Progress,
            on_result: Callable[[JobResult], Any] = lambda r: None) -> list[JobResult]:
        results: list[JobResult] = []
        record = recorder(results, on_result, progress)
        records = {e: options[e].to_dict() for e in sorted({j.engine for j in jobs})}
        actor = self.pool.acquire()
        try:
            for job in jobs:
                self._run_one(actor, job, records, record)
        finally:
            self.pool.release(actor)
        return results

    def _run_one(self, actor: Any, job: Job, records: Mapping[str, Any],
                 record: Callable[[JobResult], None]) -> None:
        """`job` on `actor`, relaying its steps until it ends."""
        ray = self._ray
        with self._lock:
            self.running.append(job)
        try:
            jid = job.id or str(id(job))
            ref = actor.render.remote(jid, [job.to_dict()], records)
            stop = False
            while True:
                ready, _ = ray.wait([ref], timeout=POLL_SECONDS)
                stop = self._relay(actor, jid, stop)
                if ready:
                    break
            try:
                payload = ray.get(ref)
            except ray.exceptions.RayError as exc:
                result = JobResult(job, "failed", self.cluster.failure_reason(exc))
            else:
                got = payload["results"]
                result = (JobResult(job, got[0]["status"], got[0]["reason"],
                                    float(got[0]["seconds"])) if got
                          else JobResult(job, "failed", "Ray worker returned no result"))
                with self._lock:
                    for key, value in payload["stats"].items():
                        self.stats[key] += value
        finally:
            with self._lock:
                self.stats["ray_tasks"] += 1
                self.running = [j for j in self.running if j is not job]
        record(result)

    def _relay(self, actor: Any, jid: str, stop: bool) -> bool:
        """The worker's steps since the last poll, to the studio's callback (the latest
        preview with the last of them); True once the callback asked to stop."""
        ray = self._ray
        try:
            got = ray.get(actor.poll.remote(jid, stop), timeout=POLL_TIMEOUT)
        except (ray.exceptions.RayError, TimeoutError):
            return stop  # a worker restarting: its job's own result tells what happened
        steps, preview = got["steps"], got["preview"]
        for i, fields in enumerate(steps):
            last = preview is not None and i == len(steps) - 1
            image = functools.partial(from_jpeg, preview) if last else None  # decoded if asked
            if self.callback(Step.from_dict(fields, image)) is False:
                stop = True
        return stop

