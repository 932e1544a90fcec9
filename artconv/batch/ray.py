"""Distributed batch rendering on a Ray cluster: `artconv batch ... --engine ray`.

`RayRunner` implements the batch `Runner` protocol, so `artconv.batch.render` keeps its
semantics (existing outputs skipped before anything is sent, the same report and summary).
Each group of `batch_size` jobs (same engine, styles and overrides) is one call on a Ray
actor; every actor holds a `LocalRunner` for its lifetime, so a worker loads each network
and computes each style's targets once, and keeps them on its own GPU.

Why actors and not tasks with a per-process cached runner: Ray never reuses a task's worker
process after a GPU task (`max_calls=1` is its default when `num_gpus > 0`), so a cached
model would be reloaded for every task; forcing reuse (`max_calls=0`) risks a process whose
CUDA context was made for one GPU being handed another. An actor owns its GPU and process
for the whole batch. On CPU both designs measure the same (benchmarks/bench_ray.py).

Only plain records cross the wire: `Job.to_dict()` and each engine's `options.to_dict()` go
out, `JobResult` dicts come back. Inputs, styles, backbone files and the output folder must
be at the same path on every node (shared storage); relative job paths are made absolute
against the driver's working directory before they are sent.

Worker death: an actor whose process dies (killed, OOM, node lost) is restarted by Ray and
its in-flight call retried there, up to `max_retries` times per call; after that its jobs
fail with the reason and the batch goes on. Outputs are written atomically, so a killed
attempt leaves no partial output, but it can leave a hidden `.NAME.*.tmp` beside it; when
every call has finished the driver removes such temp files of this batch's outputs (no
attempt can be writing them any more).
"""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from artconv import registry
from artconv.batch.jobs import Job, JobResult
from artconv.batch.options import RayOptions
from artconv.batch.runner import reason, recorder
from artconv.errors import ArtconvError
from artconv.io.files import url_of
from artconv.options import CoreOptions
from artconv.outputs import sweep_temporaries
from artconv.presets import is_preset_name
from artconv.progress import Progress

if TYPE_CHECKING:
    from artconv.batch.local import LocalRunner

INSTALL_HINT = "--engine ray: Ray is not installed; pip install 'artconv[ray]'"


def import_ray() -> Any:
    """The `ray` module, or an ArtconvError with the install hint."""
    try:
        import ray
    except ImportError:
        raise ArtconvError(INSTALL_HINT) from None
    return ray


class RayRunner:
    """Runs batch jobs on a Ray cluster, one actor per `cpus_per_job`/`gpus_per_job` slot.

    `address`: "auto" (a running cluster, else a new local one) or HOST:PORT; ignored when
    this process already called `ray.init`. `worker_runner` builds the runner each worker
    uses (default `LocalRunner`); it must be picklable (an extension point for tests).
    """

    def __init__(self, address: str = "auto", *, gpus_per_job: float = 0.0,
                 cpus_per_job: float = 1.0, max_retries: int = 2,
                 worker_runner: Callable[[], LocalRunner] | None = None,
                 max_workers: int | None = None) -> None:
        self._ray = import_ray()
        # the limits of the flags themselves (RayOptions), for API callers too
        RayOptions(address, float(gpus_per_job), float(cpus_per_job), max_retries).validated()
        self.address = address
        self.gpus_per_job = float(gpus_per_job)
        self.cpus_per_job = float(cpus_per_job)
        self.max_retries = int(max_retries)
        self.worker_runner = worker_runner
        self.max_workers = max_workers
        self.stats: dict[str, int] = defaultdict(int)
        self.running: list[Job] = []  # jobs of the calls in flight (for a Ctrl-C report)

    # -- Runner protocol -----------------------------------------------------------------
    def run(self, jobs: Sequence[Job], options: Mapping[str, CoreOptions], *,
            batch_size: int, progress: Progress,
            on_result: Callable[[JobResult], Any] = lambda r: None) -> list[JobResult]:
        if not jobs:
            return []
        records = {e: _option_record(e, options[e]) for e in sorted({j.engine for j in jobs})}
        results: list[JobResult] = []
        # a clip with --segment-frames: one task a segment, joined as its last one ends
        jobs, record, owners = _split_segments(jobs, recorder(results, on_result, progress))
        chunks = deque(_chunks(jobs, batch_size))

        ray = self._ray
        pool = WorkerPool(self, _Worker, self.worker_runner, scheduling_strategy="SPREAD")
        pool.connect()
        try:
            pool.size = max(1, min(len(chunks), self.slots(), self.max_workers or len(chunks)))
            progress.log(f"ray: {pool.size} workers, {len(chunks)} tasks")
            busy: dict[Any, tuple[Any, list[Job]]] = {}
            pids: set[int] = set()
            while chunks or busy:
                while chunks and (actor := pool.acquire(wait=False)) is not None:
                    chunk = chunks.popleft()
                    ref = actor.render.remote([_shipped(j).to_dict() for j in chunk], records,
                                              batch_size)
                    busy[ref] = (actor, chunk)
                self.running = list({id(o): o for o in (owners.get(id(j), j) for _, chunk
                                                        in busy.values() for j in chunk)
                                     }.values())
                ready, _ = ray.wait(list(busy), num_returns=1)
                for ref in ready:
                    actor, chunk = busy.pop(ref)
                    pool.release(actor)
                    self.stats["ray_tasks"] += 1
                    try:
                        payload = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        reason = self.failure_reason(exc)
                        for job in chunk:
                            record(JobResult(job, "failed", reason))
                        continue
                    pids.add(payload["pid"])
                    for key, value in payload["stats"].items():
                        self.stats[key] += value
                    for result in _results(chunk, payload["results"]):
                        record(result)
            self.stats["ray_workers"] = len(pids)
        finally:
            pool.kill()  # in-flight work (Ctrl-C) stops before temp files are swept
            swept = sweep_temporaries(j.output for j in jobs)
            if swept:
                self.stats["temp_files_swept"] += len(swept)
            pool.close()
        return results

    # -- cluster -------------------------------------------------------------------------
    def connect(self) -> bool:
        """Join the cluster; True when this call started Ray (and so must shut it down).
        Public for drivers that keep workers across runs (the studio's queue)."""
        ray = self._ray
        if ray.is_initialized():
            return False
        quiet = {"logging_level": "WARNING", "configure_logging": True}
        try:
            if self.address == "auto":
                try:
                    ray.init(address="auto", **quiet)
                except ConnectionError:
                    ray.init(**quiet)
            else:
                ray.init(address=self.address, **quiet)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise ArtconvError(f"--address {self.address}: cannot join a Ray cluster "
                               f"({str(exc).splitlines()[0]})") from None
        return True

    def slots(self) -> int:
        """How many workers the cluster holds at --cpus-per-job/--gpus-per-job (an error
        naming the flag when not even one fits)."""
        total = self._ray.cluster_resources()
        slots = []
        for name, per_job, flag in (("CPU", self.cpus_per_job, "--cpus-per-job"),
                                    ("GPU", self.gpus_per_job, "--gpus-per-job")):
            if per_job > 0:
                have = float(total.get(name, 0.0))
                if have < per_job:
                    raise ArtconvError(f"{flag} {per_job:g}: the Ray cluster has "
                                       f"{have:g} {name}s")
                slots.append(int(have // per_job))
        return min(slots) if slots else max(1, int(total.get("CPU", 1)))

    def failure_reason(self, exc: BaseException) -> str:
        """A failed Ray call's reason, worded as a failed job's."""
        ray = self._ray
        cause = getattr(exc, "cause", None)
        if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(cause, BaseException):
            return reason(cause)
        if isinstance(exc, ray.exceptions.RayActorError):
            return (f"Ray worker died on all {self.max_retries + 1} attempt(s) "
                    f"(max_retries {self.max_retries}): {_first_line(exc)}")
        return f"{type(exc).__name__}: {_first_line(exc)}"


class WorkerPool:
    """The one pool of Ray worker actors, for a batch (`RayRunner.run`) and for the studio's
    queue (`artconv.web.runner`): each actor reserves `cluster`'s --cpus-per-job and
    --gpus-per-job, is restarted by Ray when its process dies and its calls retried
    --max-retries times. Up to `size` actors of `actor_class(*args)` start as they are first
    needed; `acquire` hands out an idle one and `release` takes it back (thread-safe: the
    studio's worker threads share the pool). `options` are further Ray actor options."""

    def __init__(self, cluster: RayRunner, actor_class: type, *args: Any, size: int = 1,
                 **options: Any) -> None:
        self.cluster = cluster
        self.size = size
        self._ray = import_ray()
        self._new = lambda: self._ray.remote(actor_class).options(
            num_cpus=cluster.cpus_per_job, num_gpus=cluster.gpus_per_job, max_restarts=-1,
            max_task_retries=cluster.max_retries, **options).remote(*args)
        self._actors: list[Any] = []
        self._idle: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()
        self._started = False  # this pool started Ray, so ends it

    def connect(self) -> None:
        """Join the cluster (`RayRunner.connect`) unless this process already has."""
        if not self._ray.is_initialized():
            self._started = self.cluster.connect()

    def acquire(self, wait: bool = True) -> Any:
        """An idle actor, a new one while fewer than `size` run, else the next released
        (None at once when not `wait`)."""
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if len(self._actors) < self.size:
                self.connect()
                self._actors.append(self._new())
                return self._actors[-1]
        return self._idle.get() if wait else None

    def __len__(self) -> int:
        """How many actors run now."""
        return len(self._actors)

    def release(self, actor: Any) -> None:
        self._idle.put(actor)

    def kill(self) -> None:
        """End every actor (their in-flight calls too); the pool may start new ones."""
        with self._lock:
            actors, self._actors, self._idle = self._actors, [], queue.Queue()
        for actor in actors:
            self._ray.kill(actor)

    def close(self) -> None:
        """End the actors, and Ray when this pool started it."""
        self.kill()
        if self._started:
            self._ray.shutdown()
            self._started = False


# -- worker side -------------------------------------------------------------------------
class _Worker:
    """A Ray actor: one runner (networks, engines, style targets cached) for its lifetime."""

    def __init__(self, factory: Callable[[], LocalRunner] | None = None) -> None:
        from artconv.batch.local import LocalRunner

        self.runner = factory() if factory is not None else LocalRunner()

    def render(self, job_records: list[dict[str, Any]], option_records: dict[str, dict],
               batch_size: int) -> dict[str, Any]:
        return render_records(self.runner, job_records, option_records, batch_size)


def render_records(runner: LocalRunner, job_records: Sequence[Mapping[str, Any]],
                   option_records: Mapping[str, Mapping[str, Any]], batch_size: int,
                   ) -> dict[str, Any]:
    """Rebuild jobs and options from plain records, run them on `runner` and return plain
    results: {"results": [JobResult dict + "index"], "stats": counters added, "pid"}."""
    jobs = [Job(r["engine"], r["input"], r["output"], tuple(r["styles"]),
                dict(r["options"]), r["id"], video=dict(r.get("video") or {}),
                segment=tuple(r["segment"]) if r.get("segment") else None)
            for r in job_records]
    options = {e: registry.options_class(e).from_dict(dict(d), source=f"{e} options")
               for e, d in option_records.items()}
    before = dict(runner.stats)
    done = runner.run(jobs, options, batch_size=batch_size, progress=Progress(quiet=True))
    index = {id(j): i for i, j in enumerate(jobs)}
    return {"results": [{**r.to_dict(), "index": index[id(r.job)]} for r in done],
            "stats": {k: v - before.get(k, 0) for k, v in runner.stats.items()
                      if v != before.get(k, 0)},
            "pid": os.getpid()}


# -- helpers -----------------------------------------------------------------------------
def _split_segments(jobs: Sequence[Job], record: Callable[[JobResult], None]
                    ) -> tuple[list[Job], Callable[[JobResult], None], dict[int, Job]]:
    """Clip jobs with `segment_frames` become one job a segment (artconv.video.segments);
    (the jobs to run, the recorder to use, {id(segment job): its clip job}). When every
    segment of a clip has reported, its segments are joined here on the driver (no engine
    needed) and the clip job gets one result; a failed segment fails it."""
    owners: dict[int, Job] = {}
    spans: dict[int, int] = {}
    gathered: dict[int, list[JobResult]] = defaultdict(list)
    out: list[Job] = []
    for job in jobs:
        if not (job.is_clip and job.segment is None and job.video.get("segment_frames")):
            out.append(job)
            continue
        from artconv.video.options import VideoOptions
        from artconv.video.work import segment_spans

        try:
            parts = segment_spans(job.input, VideoOptions.from_dict(
                dict(job.video), source=job.where or job.input))
        except ArtconvError as exc:
            record(JobResult(job, "failed", str(exc)))
            continue
        spans[id(job)] = len(parts)
        for span in parts:
            part = dataclasses.replace(job, segment=span)
            owners[id(part)] = job
            out.append(part)

    def gather(result: JobResult) -> None:
        owner = owners.get(id(result.job))
        if owner is None:
            record(result)
            return
        got = gathered[id(owner)]
        got.append(result)
        if len(got) < spans[id(owner)]:
            return
        seconds = sum(r.seconds for r in got)
        bad = next((r for r in got if r.status != "done"), None)
        if bad is not None:
            record(JobResult(owner, bad.status, bad.reason, seconds))
            return
        from artconv.batch.local import guarded
        from artconv.video.options import VideoOptions
        from artconv.video.segments import assemble

        record(guarded(owner, lambda: assemble(
            owner.input, owner.output, VideoOptions.from_dict(dict(owner.video)),
            [owner.input]), seconds))

    return out, gather, owners


def _chunks(jobs: Sequence[Job], batch_size: int) -> list[list[Job]]:
    """Groups of up to `batch_size` jobs that a worker can optimise together (same engine,
    styles and overrides), in first-seen order."""
    groups: dict[tuple, list[Job]] = defaultdict(list)
    for job in jobs:
        if job.is_clip:  # a clip is a task of its own (its frames resume on a retry)
            groups[("clip", id(job))].append(job)
            continue
        key = (job.engine, job.styles, repr(sorted(job.options.items())))
        groups[key].append(job)
    return [members[i:i + batch_size] for members in groups.values()
            for i in range(0, len(members), batch_size)]


def _shipped(job: Job) -> Job:
    """The job with absolute paths (a worker's working directory is not the driver's);
    presets and URLs stay as they are."""

    def shipped(src: str) -> str:
        return src if is_preset_name(src) or url_of(src) else os.path.abspath(src)

    return dataclasses.replace(job, input=shipped(job.input),
                               output=os.path.abspath(job.output),
                               styles=tuple(shipped(s) for s in job.styles))


def _option_record(engine: str, options: CoreOptions) -> dict[str, Any]:
    defaults = type(options)()
    for f in dataclasses.fields(options):
        if not f.metadata.get("cli", True) and getattr(options, f.name) != getattr(defaults,
                                                                                  f.name):
            raise ArtconvError(f"--engine ray: {engine} option {f.name!r} holds a Python "
                               "object that is not sent to workers; use the local engine")
    return options.to_dict()


def _results(chunk: Sequence[Job], records: Sequence[Mapping[str, Any]]) -> list[JobResult]:
    out = {int(r["index"]): JobResult(chunk[int(r["index"])], r["status"], r["reason"],
                                      float(r["seconds"])) for r in records}
    return [out.get(i, JobResult(job, "failed", "Ray worker returned no result"))
            for i, job in enumerate(chunk)]


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[:limit - 3] + "..."
