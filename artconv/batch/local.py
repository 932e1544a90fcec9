"""The local runner: a batch's jobs in this process, whatever their engine.

Jobs are grouped by (engine, options, styles). Each group's engine is built once from the
registry (`spec.engine(options, extractor=..., progress=...)`) on a network shared by every
group that names the same one; `batch_size` inputs of one size run as one `(K, 3, H, W)`
call, and each result is saved by the engine's writer with the engine's recipe. Engines
that stream a job to disk themselves (features: memory-mapped arrays) run job by job
through their registry `job_runner`. The runner is the engines' display (`progress=`,
forwarding each step to the current run's `Progress.on_step`), not their callback, so a
display never makes an engine read its figures from the device every step.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from artconv import registry
from artconv.batch.jobs import Job, JobResult, option_error, reason, recorder
from artconv.engine import Callback, Interrupted, Step
from artconv.errors import ArtconvError
from artconv.io.images import fit_longest, image_hw, load_image
from artconv.networks import ExtractorCache
from artconv.options import CoreOptions
from artconv.presets import is_preset_name, options_for, resolve_sources
from artconv.progress import Progress

Record = Callable[[JobResult], Any]
Member = tuple[Job, CoreOptions]
# A job Ctrl-C stopped: its result so far written (recipe marked "interrupted"), or nothing.
SAVED = "interrupted while running; saved the result so far"
NOTHING_SAVED = "interrupted before a usable result; nothing written"


class LocalRunner:
    """Runs jobs in this process: one network per distinct network options, one engine per
    distinct options, `batch_size` same-sized inputs of a group run together.

    A single CLI command is one job through this runner (`run_one`): `callback` goes to the
    engines it builds (--save-every, --resume scale files) and `inputs` to every engine call
    besides the styles (--resume's start image)."""

    def __init__(self, callback: Callback | None = None,
                 inputs: Mapping[str, Any] | None = None) -> None:
        self.callback = callback
        self.inputs = dict(inputs or {})
        self.networks = ExtractorCache()
        self._engines: dict[tuple[str, str], Any] = {}
        self._counted: dict[int, int] = {}
        self.stats: dict[str, int] = defaultdict(int)
        self.running: list[Job] = []
        self._progress: Progress | None = None

    def run(self, jobs: Sequence[Job], options: Mapping[str, CoreOptions], *, batch_size: int,
            progress: Progress, on_result: Record = lambda r: None) -> list[JobResult]:
        results: list[JobResult] = []
        report = recorder(results, on_result, progress)

        def record(result: JobResult) -> None:
            self.running = [j for j in self.running if j is not result.job]
            report(result)

        self.running, self._progress = [], progress
        try:
            for (name, _, _), members in self._groups(jobs, options, record).items():
                spec = registry.get(name)
                clips = [m for m in members if m[0].is_clip]
                members = [m for m in members if not m[0].is_clip]
                for job, opts in clips:  # a clip is one job, resumable on its own
                    self.running = [job]
                    record(self._run_clip(spec, job, opts))
                if not members:
                    continue
                if spec.job_runner_path:
                    self._run_each(spec, members, record)
                else:
                    self._run_batched(spec, members, batch_size, record)
        finally:
            self._progress = None
        return results

    def _groups(self, jobs: Sequence[Job], options: Mapping[str, CoreOptions],
                record: Record) -> dict[tuple, list[Member]]:
        """Jobs by (engine, options, styles), each with its options: the batch's, under the
        options of presets named as styles, under the job's own."""
        groups: dict[tuple, list[Member]] = defaultdict(list)
        for job in jobs:
            try:
                named = [s for s in job.styles if is_preset_name(s)]
                opts = options_for(job.engine, overrides=job.options, named=named,
                                   base=options[job.engine])
            except ArtconvError as exc:
                record(JobResult(job, "failed", str(option_error(job.where, exc)
                                                     if job.where else exc)))
                continue
            groups[(job.engine, options_key(opts), job.styles)].append((job, opts))
        return groups

    # -- engines and networks ----------------------------------------------------------------
    def network(self, opts: CoreOptions) -> Any:
        """The extractor for `opts`, loaded once per distinct network."""
        before = self.networks.loaded
        extractor = self.networks.get(opts)
        self.stats["networks_loaded"] += self.networks.loaded - before
        return extractor

    def engine(self, spec: registry.EngineSpec, opts: CoreOptions) -> Any:
        """The engine of `spec` for `opts`, built once; it reports to this runner's display."""
        key = (spec.name, options_key(opts))
        if key not in self._engines:
            self._engines[key] = self.build_engine(
                spec, opts, self.network(opts) if spec.network else None)
        return self._engines[key]

    def build_engine(self, spec: registry.EngineSpec, opts: CoreOptions, extractor: Any) -> Any:
        """A new engine of `spec` for `opts` on `extractor`, made once per distinct options
        (`engine()` keeps it). A seam for runners that report otherwise (the studio builds
        engines with its step callback instead of this runner as their display)."""
        return spec.engine(opts, extractor=extractor, progress=self, callback=self.callback)

    def on_step(self, step: Step) -> None:
        """The engines' display (they are built once and outlive one `run`): the current
        run's progress bars. A display, not a callback, so no engine syncs for it."""
        if self._progress is not None:
            self._progress.on_step(step)

    def _count(self, spec: registry.EngineSpec, engine: Any) -> None:
        """Add the work an engine reports having done (style targets computed) to stats."""
        done = getattr(engine, "target_computations", 0)
        new = done - self._counted.get(id(engine), 0)
        if new:
            self.stats[f"{spec.name}_targets_computed"] += new
            self._counted[id(engine)] = done

    # -- running -----------------------------------------------------------------------------
    def _run_batched(self, spec: registry.EngineSpec, members: list[Member], batch_size: int,
                     record: Record) -> None:
        job0, opts = members[0]
        try:
            engine = self.engine(spec, opts)
            sources, inputs = style_inputs(spec, job0, opts)
        except Exception as exc:  # noqa: BLE001 - a bad style fails its jobs, not the batch
            for job, _ in members:
                record(JobResult(job, "failed", reason(exc), error=exc))
            return
        for jobs in same_sized(spec, members, opts, batch_size, record):
            self.running = list(jobs)
            chunk = loaded(spec, jobs, opts, record)
            if chunk:
                self._run_chunk(spec, engine, chunk, inputs, sources, record)

    def _run_chunk(self, spec: registry.EngineSpec, engine: Any,
                   chunk: list[tuple[Job, torch.Tensor]], inputs: Mapping[str, Any],
                   sources: Sequence[str], record: Record) -> None:
        """One engine call on the chunk's inputs stacked, then each result written."""
        start = time.perf_counter()
        images = [image for _, image in chunk]
        # one image (every single job, every print): a view, not a stacked copy of the photo
        batch = images[0][None] if len(images) == 1 else torch.stack(images)
        del images
        try:
            result = engine.run(batch, **inputs, **self.inputs)
        except Interrupted as stopped:  # Ctrl-C: save what each job has, then stop
            save_interrupted(spec, engine, stopped.image, [job for job, _ in chunk], sources,
                             record)
            raise
        except Exception as exc:  # noqa: BLE001 - one bad chunk must not stop the batch
            for job, _ in chunk:
                record(JobResult(job, "failed", reason(exc), time.perf_counter() - start,
                                 error=exc))
            return
        finally:
            self._count(spec, engine)
        seconds = (time.perf_counter() - start) / len(chunk)
        for (job, _), out in zip(chunk, result, strict=True):
            record(guarded(job, lambda j=job, o=out: spec.writer(
                engine, o, j.output, inputs=[j.input, *sources]), seconds))

    def _run_clip(self, spec: registry.EngineSpec, job: Job, opts: CoreOptions) -> JobResult:
        """A clip job: the video driver over the engine, frames kept in the work folder
        beside the output, so a re-run (or a Ray retry) continues after the last one."""
        from artconv.video.clip import run_clip
        from artconv.video.options import VideoOptions

        def work() -> None:
            if not spec.takes_clips:
                raise ArtconvError(f"{job.input}: clips run with the "
                                   f"{registry.clip_engines_text()} engines, not "
                                   f"{spec.name}")
            engine = self.engine(spec, opts)
            sources, inputs = style_inputs(spec, job, opts)
            try:
                run_clip(engine, job.input, job.output,
                         video=VideoOptions.from_dict(dict(job.video), source=job.where
                                                      or job.input),
                         styles=inputs.get("styles", ()), inputs=[job.input, *sources],
                         # an engine that shows its steps itself (style) needs no
                         # display; a dream call's callback replaces its display
                         display=None if (spec.clip_frames or spec.clip_loop).shows_steps
                         else self.on_step,
                         span=job.segment)
            finally:
                self._count(spec, engine)

        return guarded(job, work)

    def _run_each(self, spec: registry.EngineSpec, members: list[Member],
                  record: Record) -> None:
        """Engines that write a job's result themselves, one job at a time."""
        for job, opts in members:
            self.running = [job]
            record(guarded(job, lambda j=job, o=opts: self.run_job(spec, j, o)))

    def run_job(self, spec: registry.EngineSpec, job: Job, opts: CoreOptions) -> None:
        """One job of an engine that writes its result itself (its registry `job_runner`);
        failures are the caller's to record. A seam for runners that want another result
        from such an engine (the studio makes a PCA picture of the features)."""
        spec.job_runner(job.input, job.output, opts, extractor=self.network(opts),
                        progress=self)


def guarded(job: Job, work: Callable[[], Any], seconds: float = 0.0) -> JobResult:
    """`work()` for `job`: done, or failed with the reason (one bad input must not stop the
    batch); `seconds` already spent on it are added to its time."""
    start = time.perf_counter()
    try:
        work()
    except Exception as exc:  # noqa: BLE001 - one bad input must not stop the batch
        return JobResult(job, "failed", reason(exc), seconds + time.perf_counter() - start,
                         error=exc)
    return JobResult(job, "done", seconds=seconds + time.perf_counter() - start)


def run_one(runner: LocalRunner, job: Job, opts: CoreOptions, progress: Progress
            ) -> JobResult:
    """One job (a single CLI command) through `runner`, as a batch runs it: its result,
    "interrupted" (SAVED or NOTHING_SAVED) when Ctrl-C stopped it."""
    got: list[JobResult] = []
    try:
        runner.run([job], {job.engine: opts}, batch_size=1, progress=progress,
                   on_result=got.append)
    except KeyboardInterrupt:
        return got[0] if got else JobResult(job, "interrupted", NOTHING_SAVED)
    return got[0]


def save_interrupted(spec: registry.EngineSpec, engine: Any, image: Any, jobs: Sequence[Job],
                     sources: Sequence[str], record: Record) -> None:
    """After Ctrl-C: each job's result so far (`Interrupted.image`), written with a recipe
    marked "interrupted" (a re-run does the job again); nothing for a job with no usable
    (finite) image yet."""
    images = [None] * len(jobs) if image is None else \
        list(image) if image.dim() == 4 else [image]
    for job, out in zip(jobs, images, strict=True):
        if out is None or not bool(out.isfinite().all()):
            record(JobResult(job, "interrupted", NOTHING_SAVED))
            continue
        spec.writer(engine, out, job.output, inputs=[job.input, *sources],
                    interrupted=True)
        record(JobResult(job, "interrupted", SAVED))


def style_inputs(spec: registry.EngineSpec, job: Job, opts: CoreOptions
                 ) -> tuple[list[str], dict[str, Any]]:
    """The files behind a job's styles (for its recipe) and the engine's style inputs, read
    at the size `opts` uses them at; none for an engine that takes no styles."""
    if not spec.takes_styles:
        return [], {}
    images = resolve_sources(job.styles, spec.name).images
    size = getattr(opts, "style_size", None)
    return [str(p) for p in images], {"styles": [load_image(p, size) for p in images]}


def same_sized(spec: registry.EngineSpec, members: Sequence[Member], opts: CoreOptions,
               batch_size: int, record: Record) -> Iterator[list[Job]]:
    """Up to `batch_size` jobs whose inputs load at one size, from their headers: a batch of
    thousands of photos is never decoded all at once. An unreadable input fails alone."""
    size = spec.load_size(opts)
    by_size: dict[tuple[int, int], list[Job]] = defaultdict(list)
    for job, _ in members:
        try:
            hw = load_hw(job.input, size)
        except ArtconvError as exc:
            record(JobResult(job, "failed", str(exc), error=exc))
            continue
        by_size[hw].append(job)
    for same in by_size.values():
        for i in range(0, len(same), batch_size):
            yield same[i:i + batch_size]


def loaded(spec: registry.EngineSpec, jobs: Sequence[Job], opts: CoreOptions,
           record: Record) -> list[tuple[Job, torch.Tensor]]:
    """The jobs' inputs, loaded as the engine takes them; one that fails fails its job."""
    chunk = []
    for job in jobs:
        try:
            chunk.append((job, load_image(job.input, spec.load_size(opts))))
        except ArtconvError as exc:
            record(JobResult(job, "failed", str(exc), error=exc))
    return chunk


def load_hw(path: str | Path, size: int | None) -> tuple[int, int]:
    """`(H, W)` of the image at `path` loaded at longest side `size` (None: as stored), from
    its header: what `load_image(path, size)` will give, without decoding it."""
    hw = image_hw(path)
    return fit_longest(hw, size) if size else hw


def options_key(opts: CoreOptions) -> str:
    """Options as text: jobs whose options are equal share an engine."""
    return json.dumps(opts.to_dict(), sort_keys=True, default=str)
