"""The temporal loop: frames in, an engine per frame kept steady by optical flow, frames
out; and one run of it into a clip's work folder (`run_frames`: the whole clip, or one
segment of it).

    st = StyleTransfer(StyleOptions(size=480))
    for out in temporal_frames(st, read_frames("clip.mp4"), styles=[starry]):  # (3, H, W)
        ...

Style (Ruder, Dosovitskiy & Brox 2016): the first frame of a scene runs the engine's whole
coarse-to-fine ladder; every later frame runs one scale, the output size, for
`frame_iterations` steps (default half the last scale's), starting from the previous output
warped by the backward flow (disoccluded pixels from the content), with a temporal prior
pulling the pixels that stay visible toward the warped previous output(s)
(`temporal.TemporalPrior`; long-term with --temporal-frames 1,2,4). Dream: each frame is
dreamed from `frame_blend` x the previous dream warped (where visible) + the rest the new
frame, with the objective (its normalisation, ranked channels) prepared once per scene.
Which wrapper an engine gets is its registry entry's `clip_frames`.

A frame where more than `scene_cut` of the pixels are not found in the previous frame starts
a new scene. The flow of frame t+1 is computed in a thread while frame t is optimised.

`run_frames` writes every finished frame atomically, as a PNG with its recipe, into the
work folder (`artconv.video.work`), and encodes the clip from there at the end; running it
again continues after the last frame written. Ctrl-C (`artconv.engine.Interrupted`) keeps
every finished frame; with `partial=True` the frames so far are encoded first.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from artconv import registry
from artconv.engine import Callback, Step, keep_going
from artconv.errors import ArtconvError
from artconv.io.images import fit_longest, load_image, read_recipe, resize_to
from artconv.io.writers import write_picture
from artconv.outputs import is_frames_output
from artconv.video import flow as flowlib
from artconv.video.io import ClipInfo, read_frames
from artconv.video.options import VideoOptions
from artconv.video.temporal import TemporalPrior, pixel_weight
from artconv.video.times import FrameTimes
from artconv.video.work import (
    Span,
    encode_folder,
    frame_path,
    frames_done,
    mark_finished,
    open_work_folder,
    span_frames,
)

FrameLike = np.ndarray | torch.Tensor


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


class StyleFrames:
    """The style engine per frame: the whole ladder on a scene's first frame, one scale with
    the temporal prior after."""

    long_term = True  # the prior pulls toward the outputs --temporal-frames back
    shows_steps = True  # the engine shows its steps on its display, callback or not

    def __init__(self, engine: Any, video: VideoOptions, styles: Sequence[torch.Tensor] = ()
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


class DreamFrames:
    """The dream engine per frame: the previous dream, warped, blended into the new frame."""

    long_term = False  # the previous frame only
    shows_steps = False  # a call's callback replaces the engine's display

    def __init__(self, engine: Any, video: VideoOptions, styles: Sequence[torch.Tensor] = ()
                 ) -> None:
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
    """The per-frame wrapper of an engine that takes clips (its registry `clip_frames`)."""
    spec = registry.get(engine.name)
    if spec.clip_frames is None:
        raise ArtconvError(f"{engine.name}: clips run with the "
                           f"{registry.clip_engines_text()} engines")
    return spec.clip_frames(engine, video, styles)


def clip_loop(engine: Any) -> type:
    """The loop that runs `engine` over a clip: the temporal loop below, or the engine's own
    (its registry `clip_loop`: a trained network's one pass a frame)."""
    return registry.get(engine.name).clip_loop or TemporalLoop


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
        self.pulls = self.video.temporal_frames if self.frames.long_term else (1,)
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
    loop = clip_loop(engine)(engine, video, styles=styles, callback=callback)
    for _, out in loop.run(frames):
        yield out


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


def run_frames(engine: Any, source: str | Path, output: str | Path, *,
               video: VideoOptions | None = None, styles: Sequence[torch.Tensor] = (),
               inputs: Sequence[str | Path] = (), callback: Callback | None = None,
               display: Callable[[Step], Any] | None = None,
               on_frame: Callable[[int, int | None], Any] | None = None,
               partial: bool = False, span: Span | None = None) -> ClipResult:
    """Run `engine` over the clip (or frames folder/glob) `source` into `output`'s work
    folder, resuming after its finished frames, and encode the clip (a clip output; with
    `partial`, also when stopped). With `span` (first, last or None = to the end, 1-based
    over the selected frames) only that segment runs, into its own folder, which is marked
    finished when it ran to its end; nothing is encoded. `on_frame(done, total)` is told
    after every frame written."""
    started = time.perf_counter()
    video = video or VideoOptions()
    output = Path(output)
    inputs = list(inputs) or [source]
    info, total, folder = open_work_folder(engine.name, engine.options, source, output, video,
                                           inputs, span=span)
    first = 1 if span is None else span[0]
    done = frames_done(folder)
    loop = clip_loop(engine)(engine, video, styles=styles, callback=callback, display=display)
    previous = {k: load_image(frame_path(folder, k))[None]
                for k in range(max(1, done - loop.lookback + 1), done + 1)}
    # Decoded at the size the engine works at, so a huge frame never exists at full size.
    frames, total = span_frames(
        read_frames(source, video, size=max(loop.frames.size((info.height, info.width)))),
        total, span)
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
            encode_frames(engine, info, folder, output, video, inputs, partial=True)
        raise
    result.stopped = loop.stopped
    if span is not None:
        if not loop.stopped:
            mark_finished(folder, frames_done(folder))
    elif not is_frames_output(output) and (partial or not loop.stopped) and \
            frames_done(folder):
        encode_frames(engine, info, folder, output, video, inputs, partial=loop.stopped)
        result.encoded = True
    result.seconds = time.perf_counter() - started
    return result


def encode_frames(engine: Any, info: ClipInfo, folder: Path, output: Path,
                  video: VideoOptions, inputs: Sequence[Any], *, partial: bool) -> int:
    """The clip from the work folder's finished frames, with the engine's recipe (and the
    frames' losses, averaged)."""
    count = frames_done(folder)
    losses = _mean_losses([frame_path(folder, k) for k in range(1, count + 1)])

    def recipe(fps: Fraction) -> dict[str, Any]:
        return engine.recipe(inputs, video=video.to_dict(), frames=count, fps=str(fps),
                             partial=partial, work_folder=str(folder), losses=losses)

    return encode_folder(info, folder, count, output, video, recipe)


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


__all__ = ["ClipResult", "DreamFrames", "FrameTimes", "StyleFrames", "TemporalLoop",
           "encode_frames", "frames_engine", "run_frames", "temporal_frames"]
