"""The clip driver: frames in, an engine per frame kept steady by optical flow, frames out.

    st = StyleTransfer(StyleOptions(size=480))
    for out in temporal_frames(st, read_frames("clip.mp4"), styles=[starry]):  # (3, H, W)
        ...
    run_clip(st, "clip.mp4", "clip_starry.mp4", styles=[starry], inputs=[...])  # resumable

Style (Ruder, Dosovitskiy & Brox 2016): the first frame of a scene runs the engine's whole
coarse-to-fine ladder; every later frame runs one scale, the output size, for
`frame_iterations` steps (default half the last scale's), starting from the previous output
warped by the backward flow (disoccluded pixels from the content), with a temporal prior
pulling the pixels that stay visible toward the warped previous output(s)
(`temporal.TemporalPrior`; long-term with --temporal-frames 1,2,4). Dream: each frame is
dreamed from `frame_blend` x the previous dream warped (where visible) + the rest the new
frame, with the objective (its normalisation, ranked channels) prepared once per scene.

A frame where more than `scene_cut` of the pixels are not found in the previous frame starts
a new scene. The flow of frame t+1 is computed in a thread while frame t is optimised.

`run_clip` writes every finished frame atomically, as a PNG with its recipe, into a work
folder beside the output (OUT.frames/, or the output itself when it is a folder), and
encodes the clip from there at the end; running it again continues after the last frame
written. Ctrl-C (`artconv.engine.Interrupted`) keeps every finished frame; with
`partial=True` the frames so far are encoded first.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from artconv.engine import Callback, Step, keep_going
from artconv.errors import ArtconvError
from artconv.io.files import atomic_write_bytes
from artconv.io.images import fit_longest, load_image, read_recipe, resize_to
from artconv.io.writers import write_picture
from artconv.outputs import (
    CLIP_FOLDER_RECORD,
    CLIP_FRAME_NAME,
    WORK_FOLDER,
    check_write_paths,
    clip_work_folder,
    file_key,
    identity_difference,
    input_record,
    is_frames_output,
    options_by_content,
    sidecar,
)
from artconv.video import flow as flowlib
from artconv.video.feedforward import FeedForwardLoop, feeds_forward
from artconv.video.io import (
    AudioSource,
    ClipInfo,
    encode,
    frame_files,
    is_frames,
    probe,
    read_frames,
)
from artconv.video.options import VideoOptions
from artconv.video.temporal import TemporalPrior, pixel_weight
from artconv.video.times import FrameTimes

FrameLike = np.ndarray | torch.Tensor
# The work folder's layout is named in artconv.outputs, so the path checks and `artconv
# recipe OUT.mp4` know it.
FRAME_NAME = CLIP_FRAME_NAME
RECIPE_NAME = CLIP_FOLDER_RECORD


# -- per-frame engines -------------------------------------------------------------------------
class _Relay:
    """The engine's callback during a clip: the step with its frame number, to the caller's
    callback and display; remembers a request to stop."""

    def __init__(self, callback: Callback | None, display: Callable[[Step], Any] | None
                 ) -> None:
        self.callback, self.display, self.frame, self.stopped = callback, display, 0, False

    def __call__(self, step: Step) -> bool:
        step = dataclasses.replace(step, frame=self.frame)
        if self.display is not None:
            self.display(step)
        if not keep_going(self.callback, step):
            self.stopped = True
        return not self.stopped


class _StyleFrames:
    """The style engine per frame: the whole ladder on a scene's first frame, one scale with
    the temporal prior after."""

    def __init__(self, engine: Any, video: VideoOptions, styles: Sequence[torch.Tensor]
                 ) -> None:
        if not styles:
            raise ArtconvError("style clip: give at least one style image")
        opts = engine.options
        steps = video.frame_iterations or max(1, opts.iterations_at(len(opts.ladder()) - 1)
                                               // 2)
        self.first = engine
        self.later = type(engine)(opts.replace(scales=(), min_scale=None,
                                               size=opts.output_size, iterations=(steps,)),
                                  extractor=engine.fx,
                                  progress=getattr(engine, "progress", None))
        self.styles = list(styles)
        self.weight = pixel_weight(video.temporal_weight, self.later.weights.content,
                                   self.later.weights.kind)
        self.last_figures: dict[str, float] = {}

    def size(self, hw: tuple[int, int]) -> tuple[int, int]:
        return fit_longest(hw, self.first.options.output_size)

    def scene(self, content: torch.Tensor, relay: _Relay) -> torch.Tensor:
        out = self.first.run(content, self.styles, callback=relay)
        self.last_figures = dict(self.first.last_figures)
        return out

    def next(self, content: torch.Tensor, warped: list[tuple[torch.Tensor, torch.Tensor]],
             init: torch.Tensor, relay: _Relay) -> torch.Tensor:
        priors = [TemporalPrior(ref, c, self.weight) for ref, c in warped] if self.weight else []
        out = self.later.run(content, self.styles, callback=relay, init=init, priors=priors)
        self.last_figures = dict(self.later.last_figures)
        return out


class _DreamFrames:
    """The dream engine per frame: the previous dream, warped, blended into the new frame."""

    def __init__(self, engine: Any, video: VideoOptions) -> None:
        self.engine, self.blend = engine, video.frame_blend
        self.objective: Any = None
        self.last_figures: dict[str, float] = {}

    def size(self, hw: tuple[int, int]) -> tuple[int, int]:
        size = self.engine.options.size
        return fit_longest(hw, size) if size else hw

    def scene(self, content: torch.Tensor, relay: _Relay) -> torch.Tensor:
        # Normalisation and ranked channels come from the scene's first frame, so they do
        # not change (and flicker) from frame to frame.
        self.objective = self.engine.prepare(content)
        return self._dream(content, relay)

    def next(self, content: torch.Tensor, warped: list[tuple[torch.Tensor, torch.Tensor]],
             init: torch.Tensor, relay: _Relay) -> torch.Tensor:
        previous, c = warped[0]
        start = content + self.blend * c * (previous - content)
        return self._dream(start.clamp(0, 1), relay)

    def _dream(self, image: torch.Tensor, relay: _Relay) -> torch.Tensor:
        last: dict[str, float] = {}

        def keep(step: Step) -> bool:
            last.update(step.figures)
            return relay(step)

        out = self.engine.run(image, self.objective, frame=relay.frame, callback=keep)
        self.last_figures = last
        return out


def frames_engine(engine: Any, video: VideoOptions, styles: Sequence[torch.Tensor] = ()
                  ) -> Any:
    """The per-frame wrapper of a style or dream engine."""
    if engine.name == "style":
        return _StyleFrames(engine, video, styles)
    if engine.name == "dream":
        return _DreamFrames(engine, video)
    raise ArtconvError(f"{engine.name}: clips run with the style and dream engines")


# -- the loop ----------------------------------------------------------------------------------
@dataclass
class _Frame:
    index: int  # 1-based, over the selected frames
    pixels: np.ndarray  # (h, w, 3) uint8 at the working size, for the flow
    content: torch.Tensor  # (1, 3, h, w) float on the CPU
    flows: Future | None = None  # -> {j: (backward, c, consistent)}


class TemporalLoop:
    """Frames in, steady frames out (see the module docstring). `start_at` frames were done
    before (a resumed clip): they are read for the flow but not run; `previous` gives their
    last outputs {index: (1, 3, h, w)}."""

    def __init__(self, engine: Any, video: VideoOptions | None = None, *,
                 styles: Sequence[torch.Tensor] = (), callback: Callback | None = None,
                 display: Callable[[Step], Any] | None = None) -> None:
        self.video = video or VideoOptions()
        self.frames = frames_engine(engine, self.video, styles)
        self.flow = flowlib.FlowEstimator(self.video.flow, self.video.flow_preset,
                                          getattr(engine, "device", "cpu"))
        # j = 1 always: it finds scene cuts and the warped start; the prior uses
        # --temporal-frames (dream: the previous frame only).
        self.pulls = self.video.temporal_frames if engine.name == "style" else (1,)
        self.distances = tuple(sorted({1, *self.pulls}))
        self.lookback = max(self.distances)
        self.relay = _Relay(callback, display)
        self.times = FrameTimes()

    @property
    def stopped(self) -> bool:
        return self.relay.stopped

    def run(self, frames: Iterable[FrameLike], *, start_at: int = 0,
            previous: dict[int, torch.Tensor] | None = None
            ) -> Iterator[tuple[int, torch.Tensor]]:
        """(index, output (3, h, w)) per frame after `start_at`, in order."""
        outputs: dict[int, torch.Tensor] = dict(previous or {})
        window: deque[_Frame] = deque(maxlen=self.lookback + 1)
        scene_start = 1
        with ThreadPoolExecutor(1, thread_name_prefix="artconv-flow") as pool:
            pending: _Frame | None = None
            for index, raw in enumerate(frames, 1):
                frame = self._frame(index, raw, window[-1] if window else None)
                if index > start_at and index > 1:
                    earlier = {j: f for j in self.distances for f in window
                               if f.index == index - j}
                    frame.flows = pool.submit(self._flows, frame, earlier)
                window.append(frame)
                if pending is not None:  # frame t runs while t+1's flow is computed
                    out, scene_start = self._one(pending, outputs, scene_start)
                    if out is None:
                        return
                    yield pending.index, out
                pending = frame if index > start_at else None
            if pending is not None:
                out, scene_start = self._one(pending, outputs, scene_start)
                if out is not None:
                    yield pending.index, out

    def _frame(self, index: int, raw: FrameLike, last: _Frame | None) -> _Frame:
        if isinstance(raw, torch.Tensor):
            t = raw.detach().float().cpu()
            t = t[0] if t.dim() == 4 else t
            pixels = t.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
        else:
            pixels = np.array(raw, dtype=np.uint8)  # a copy: the caller's may be read-only
            if pixels.ndim != 3 or pixels.shape[2] != 3:
                raise ArtconvError(f"frame {index}: expected (H, W, 3) RGB, got shape "
                                   f"{pixels.shape}")
            t = torch.from_numpy(pixels).permute(2, 0, 1).float().div(255)
        hw = self.frames.size(tuple(t.shape[-2:]))
        if last is not None and tuple(last.content.shape[-2:]) != hw:
            raise ArtconvError(f"frame {index}: {t.shape[-1]}x{t.shape[-2]} px, not the size "
                               "of the frames before it")
        content = resize_to(t[None], hw).clamp(0, 1)
        if tuple(pixels.shape[:2]) != hw:
            pixels = content[0].mul(255).round().byte().permute(1, 2, 0).numpy()
        return _Frame(index, np.ascontiguousarray(pixels), content)

    def _flows(self, frame: _Frame, earlier: dict[int, _Frame]) -> dict[int, tuple]:
        started = time.perf_counter()
        found = {}
        for j, before in sorted(earlier.items()):
            pair = self.flow.pair(before.pixels, frame.pixels)
            consistent, edges = pair.masks()
            found[j] = (pair.backward, (consistent & ~edges).astype(np.float32), consistent)
        self.times.flow += time.perf_counter() - started
        return found

    def _one(self, frame: _Frame, outputs: dict[int, torch.Tensor], scene_start: int
             ) -> tuple[torch.Tensor | None, int]:
        """Run frame `frame`; (its output, or None when stopped; the scene's first index)."""
        self.relay.frame = frame.index
        waited = time.perf_counter()
        flows = frame.flows.result() if frame.flows is not None else {}
        self.times.flow_wait += time.perf_counter() - waited
        one = flows.get(1)
        cut = one is None or frame.index - 1 not in outputs or (
            1 - float(one[2].mean()) > self.video.scene_cut)
        started = time.perf_counter()
        if cut:
            scene_start = frame.index
            self.times.scenes += 1
            out = self.frames.scene(frame.content, self.relay)
        else:
            usable = [j for j in self.pulls if j in flows and frame.index - j >= scene_start
                      and frame.index - j in outputs]
            weights = flowlib.long_term_weights([flows[j][1] for j in usable])
            warped = []
            for j, c in zip(usable, weights, strict=True):
                ref = flowlib.warp(outputs[frame.index - j], flows[j][0]).clamp(0, 1)
                warped.append((ref, torch.from_numpy(c)[None, None]))
            visible = torch.from_numpy(one[2].astype(np.float32))[None, None]
            moved = flowlib.warp(outputs[frame.index - 1], one[0]).clamp(0, 1)
            init = moved * visible + frame.content * (1 - visible)
            out = self.frames.next(frame.content, warped, init, self.relay)
        self.times.engine += time.perf_counter() - started
        if self.relay.stopped:
            return None, scene_start
        out = out[None] if out.dim() == 3 else out
        out = out[:1].detach().float().cpu().clamp(0, 1)
        out = out.mul(255).round().div(255)  # what the PNG holds: a resumed run matches
        outputs[frame.index] = out
        for old in [k for k in outputs if k <= frame.index - self.lookback]:
            del outputs[old]
        self.times.frames += 1
        return out[0], scene_start


def temporal_frames(engine: Any, frames: Iterable[FrameLike], *,
                    styles: Sequence[torch.Tensor] = (), video: VideoOptions | None = None,
                    callback: Callback | None = None) -> Iterator[torch.Tensor]:
    """The engine (style or dream) on every frame of `frames` ((H, W, 3) uint8 arrays or
    (3, H, W) tensors in [0, 1]), kept steady by optical flow; yields (3, h, w) outputs."""
    loop = TemporalLoop(engine, video, styles=styles, callback=callback)
    for _, out in loop.run(frames):
        yield out


# -- the work folder and the clip --------------------------------------------------------------
work_folder = clip_work_folder


def frame_path(folder: Path, index: int) -> Path:
    return folder / FRAME_NAME.format(index)


def frames_done(folder: Path) -> int:
    """Finished frames: those written before the first missing one."""
    done = 0
    while frame_path(folder, done + 1).is_file():
        done += 1
    return done


@dataclass
class ClipResult:
    output: Path
    folder: Path
    frames: int  # frames in the work folder
    new: int  # frames made by this run
    encoded: bool
    seconds: float
    times: FrameTimes = field(default_factory=FrameTimes)
    stopped: bool = False


def check_clip_writes(output: str | Path, inputs: Sequence[str | Path]) -> None:
    """The output clip, its recipe and the work folder's first frame, before any work; and a
    work folder that would hold input frames (`dream frames/ -o frames/` would take its own
    outputs for frames on the next run) is refused."""
    output = Path(output)
    folder = work_folder(output)
    writes: list[tuple[str, Path | None]] = [(WORK_FOLDER, frame_path(folder, 1))]
    if not is_frames_output(output):
        writes += [("output", output), ("output recipe", sidecar(output))]
    paths = [Path(i) for i in inputs if isinstance(i, str | Path)]
    check_write_paths(writes, paths)
    own = file_key(folder)
    for source in paths:
        if not is_frames(source):
            continue
        for parent in {f.parent.resolve() for f in frame_files(source)}:
            if own in map(file_key, (parent, *parent.parents)):
                raise ArtconvError(f"output {output}: its work folder {folder} holds the "
                                   f"input frames of {source}; choose an output outside it")


def check_selection(info: ClipInfo, video: VideoOptions) -> int | None:
    """The frames `video` selects of the input (None: the clip does not say); none at all
    is refused before any work."""
    total = info.selected(video)
    if total == 0:
        span = f"--start {video.start:g} s" + (f" --duration {video.duration:g} s"
                                              if video.duration is not None else "")
        raise ArtconvError(f"{info.path}: {span} selects no frame of its {info.frames} "
                           f"frames ({info.frames / float(info.fps):g} s at "
                           f"{float(info.fps):g} fps)")
    return total


def _input(item: Any) -> dict[str, Any]:
    if isinstance(item, str | Path) and not Path(item).is_file() and is_frames(item):
        return input_record(item, frame_files(item))
    return input_record(str(item))


def clip_identity(engine: str, options: Any, video: VideoOptions, inputs: Sequence[Any]
                  ) -> dict[str, Any]:
    """What must match for frames of a work folder to be continued: the engine, its
    options, the clip options that shape the frames, and every input by its content."""
    record = video.to_dict()
    record.pop("crf")  # the encoding only
    record.pop("batch")  # frames per network pass: the same frames either way
    if not video.flow_blend:  # off, as in work folders made before it existed
        record.pop("flow_blend")
    if not video.segment_frames:
        record.pop("segment_overlap")
    return {"engine": engine, "options": options_by_content(options.to_dict()),
            "video": record, "inputs": [_input(i) for i in inputs]}


def check_work_folder(output: str | Path, identity: dict[str, Any]) -> None:
    """Refuse, before any work (the CLI: before the network loads), continuing a work
    folder another run made; writes nothing."""
    _check_folder(work_folder(output), identity, record=False)


def _check_folder(folder: Path, identity: dict[str, Any], *, record: bool = True) -> None:
    """Refuse a work folder whose frames (or segments) another run made; record this run's
    identity in a new one (unless `record` is False)."""
    path = folder / RECIPE_NAME
    if path.is_file():
        try:
            before = json.loads(path.read_text())
        except (OSError, ValueError):
            before = None
        why = identity_difference(before, identity) if isinstance(before, dict) \
            else f"its {RECIPE_NAME} cannot be read"
        if why is not None:
            raise ArtconvError(f"{folder}: holds frames made with other options or inputs "
                               f"({why}); remove it or choose another output")
    elif any(folder.glob("frame_*.png")) or any(folder.glob("segment_*")):
        raise ArtconvError(f"{folder}: holds frames but no {RECIPE_NAME}; remove it or "
                           "choose another output")
    elif record:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(identity, sort_keys=True, default=str).encode())


def run_clip(engine: Any, source: str | Path, output: str | Path, *,
             video: VideoOptions | None = None, styles: Sequence[torch.Tensor] = (),
             inputs: Sequence[str | Path] = (), callback: Callback | None = None,
             display: Callable[[Step], Any] | None = None,
             on_frame: Callable[[int, int | None], Any] | None = None,
             partial: bool = False, span: tuple[int, int | None] | None = None
             ) -> ClipResult:
    """Run `engine` over the clip (or frames folder/glob) `source` into `output` (a clip
    file, or a folder of PNG frames), resuming from its work folder; see the module
    docstring. `on_frame(done, total)` is told after every frame written.

    With `video.segment_frames` the clip runs as overlapping segments, cross-faded
    (`artconv.video.segments`); `span` = (first, last or None = to the end), 1-based over
    the selected frames, runs that one segment into its own folder and encodes nothing."""
    video = video or VideoOptions()
    output = Path(output)
    inputs = list(inputs) or [source]
    if partial and span is None and video.segment_frames:
        raise ArtconvError("--partial: not with --segment-frames (the segments are joined "
                           "once all are finished; run again to finish them)")
    # One identity for the clip's work folder, whole or in segments: a re-run with other
    # inputs, options or segments is refused before any frame is written.
    identity = clip_identity(engine.name, engine.options, video, inputs)
    check_clip_writes(output, inputs)
    info = probe(source, video)
    total = check_selection(info, video)
    _check_folder(work_folder(output), identity)
    if span is None and video.segment_frames:
        from artconv.video.segments import run_segmented

        return run_segmented(engine, source, output, video=video, styles=styles,
                             inputs=inputs, callback=callback, display=display,
                             on_frame=on_frame, partial=partial)
    started = time.perf_counter()
    folder = work_folder(output)
    first = 1
    if span is not None:
        from artconv.video.segments import segment_folder

        folder, first = segment_folder(output, span), span[0]
        _check_folder(folder, {**identity, "segment": list(span)})
    done = frames_done(folder)
    # A trained network (one pass a frame) has a loop of its own (artconv.video.feedforward).
    loop = (FeedForwardLoop if feeds_forward(engine) else TemporalLoop)(
        engine, video, styles=styles, callback=callback, display=display)
    previous = {k: load_image(frame_path(folder, k))[None]
                for k in range(max(1, done - loop.lookback + 1), done + 1)}
    # Decoded at the size the engine works at, so a huge frame never exists at full size.
    frames: Iterable[FrameLike] = read_frames(
        source, video, size=max(loop.frames.size((info.height, info.width))))
    if span is not None:
        frames = itertools.islice(frames, span[0] - 1, span[1])
        total = None if total is None else max(0, min(total, span[1] or total) - span[0] + 1)
    new = 0
    result = ClipResult(output, folder, done, 0, False, 0.0, loop.times)
    try:
        for index, out in loop.run(frames, start_at=done, previous=previous):
            write_picture(engine, out, frame_path(folder, index), inputs,
                          frame=first - 1 + index, video=video.to_dict(),
                          losses=loop.frames.last_figures)
            new += 1
            result.frames, result.new = index, new
            if on_frame is not None:
                on_frame(index, total)
    except KeyboardInterrupt:
        if partial and span is None and frames_done(folder):
            _encode(engine, info, folder, output, video, inputs, partial=True)
        raise
    result.stopped = loop.stopped
    if span is not None:
        if not loop.stopped:
            from artconv.video.segments import mark_finished

            mark_finished(folder, frames_done(folder))
        result.seconds = time.perf_counter() - started
        return result
    if not is_frames_output(output) and (partial or not loop.stopped) and frames_done(folder):
        _encode(engine, info, folder, output, video, inputs, partial=loop.stopped)
        result.encoded = True
    result.seconds = time.perf_counter() - started
    return result


def _encode(engine: Any, info: Any, folder: Path, output: Path, video: VideoOptions,
            inputs: Sequence[Any], *, partial: bool) -> int:
    """The clip from the work folder's frames, with the input's audio for their span."""
    count = frames_done(folder)
    paths = [frame_path(folder, k) for k in range(1, count + 1)]
    fps = info.fps / video.every
    losses = _mean_losses(paths)
    recipe = engine.recipe(inputs, video=video.to_dict(), frames=count, fps=str(fps),
                           partial=partial, work_folder=str(folder), losses=losses)
    audio = None if info.is_folder else AudioSource(info.path, video.start,
                                                    float(count / fps))

    def arrays() -> Iterator[np.ndarray]:
        for p in paths:
            yield load_image(p).mul(255).round().byte().permute(1, 2, 0).numpy()

    return encode(arrays(), output, fps, crf=video.crf, rotation=info.rotation, audio=audio,
                  recipe=recipe)


def _mean_losses(paths: Sequence[Path]) -> dict[str, float]:
    """The frames' losses (from their recipes), averaged."""
    sums: dict[str, float] = {}
    count = 0
    for p in paths:
        try:
            losses = read_recipe(p).get("losses") or {}
        except ArtconvError:
            continue
        count += 1
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v)
    return {k: v / count for k, v in sums.items()} if count else {}


def encode_partial(engine: Any, source: str | Path, output: str | Path,
                   video: VideoOptions | None = None, inputs: Sequence[Any] = ()) -> int:
    """Encode the frames a work folder holds so far into `output` (marked partial)."""
    video = video or VideoOptions()
    folder = work_folder(output)
    if not frames_done(folder):
        raise ArtconvError(f"{folder}: holds no finished frames to encode")
    return _encode(engine, probe(source, video), folder, Path(output), video,
                   list(inputs) or [source], partial=True)


__all__ = ["ClipResult", "FrameTimes", "TemporalLoop", "check_clip_writes", "check_selection",
           "check_work_folder", "clip_identity", "encode_partial",
           "frame_path", "frames_done", "run_clip", "temporal_frames", "work_folder"]
