"""Clips through a trained style network (`artconv style clip.mp4 --model M`): one forward
pass per frame, `--batch` frames a pass, optionally steadied by the optical flow.

    loop = FeedForwardLoop(FastStyle(FastOptions(model="starry.safetensors")),
                           VideoOptions(flow_blend=0.5))
    for index, out in loop.run(read_frames("clip.mp4")):  # (3, h, w) in [0, 1]
        ...

`run_clip` takes this loop instead of the temporal loop for such an engine (its registry
entry's `clip_loop`), so the clip keeps everything the driver gives (PyAV in and out, audio,
rotation, the resumable work folder, the identity check, segments, Ray).

No optical flow is computed by default: a network trained with `artconv train
--temporal-weight` is steady by itself. `--flow-blend W` mixes the previous output, warped
by the backward flow of the input frames (DIS, computed in a thread while the network runs),
into the new one: out_t = y_t + W c (warp(out_{t-1}) - y_t), with c Ruder's weight from the
forward-backward check (`flow.FlowPair.weights`: 0 on disoccluded pixels, motion boundaries
and pixels whose flow leaves the frame), so new areas are the network's alone. It is a
recursive filter: a pixel keeps W^k of what it showed k frames ago, so the brush pattern
changes slowly where the scene is still visible. A frame where more than --scene-cut of the
pixels are not found in the previous one starts afresh.

The blend is done on the outputs as the PNGs hold them (rounded to the output's bit depth),
so a resumed clip, which reads its last frame back from the work folder, continues exactly
as an uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from artconv.engine import Callback, Relay, Step
from artconv.errors import ArtconvError
from artconv.io.images import resize_to
from artconv.video import flow as flowlib
from artconv.video.options import VideoOptions
from artconv.video.times import FrameTimes

FrameLike = np.ndarray | torch.Tensor


@dataclass
class _Frame:
    index: int  # 1-based, over the selected frames
    content: torch.Tensor  # (1, 3, H, W) float in [0, 1], as read
    pixels: np.ndarray | None = None  # (h, w, 3) uint8 at the output size, for the flow


class FeedForwardLoop:
    """Frames in, one network pass per frame (`video.batch` at a time), outputs out (see the
    module docstring). The interface of `clip.TemporalLoop`: `run(frames, start_at=,
    previous=)`, `lookback`, `stopped`, `times`, and `frames` with `size(hw)` and
    `last_figures`."""

    lookback = 1  # the blend looks at the previous output only
    shows_steps = False  # a pass reports through the loop's callback and display

    def __init__(self, engine: Any, video: VideoOptions | None = None, *,
                 styles: Any = (), callback: Callback | None = None,
                 display: Callable[[Step], Any] | None = None) -> None:
        if styles:
            raise ArtconvError(f"{engine.name}: a trained network is its own style; give "
                               "no style images")
        self.engine = engine
        self.video = video or VideoOptions()
        self.blend = float(self.video.flow_blend)
        self.flow = flowlib.FlowEstimator(self.video.flow, self.video.flow_preset,
                                          getattr(engine, "device", "cpu")) \
            if self.blend else None
        self.relay = Relay(callback, display)
        self.times = FrameTimes()
        self.frames = self  # what run_clip asks a loop's frame engine: size, last_figures
        self.last_figures: dict[str, float] = {}  # a frame's losses: a network has none
        # The blend reads the previous output as its PNG holds it (see the docstring).
        self.levels = 2 ** int(getattr(engine.options, "bit_depth", 8)) - 1
        self._started = 0.0
        self._hw: tuple[int, ...] | None = None

    @property
    def stopped(self) -> bool:
        return self.relay.stopped

    def size(self, hw: tuple[int, int]) -> tuple[int, int]:
        """The output size of a frame of size `hw`."""
        return self.engine.output_hw(hw)

    def run(self, frames: Iterable[FrameLike], *, start_at: int = 0,
            previous: dict[int, torch.Tensor] | None = None
            ) -> Iterator[tuple[int, torch.Tensor]]:
        """(index, output (3, h, w)) per frame after `start_at`, in order; `previous`
        {start_at: (1, 3, h, w)} is the output of the frame before (a resumed clip)."""
        self._started = time.perf_counter()
        last_out = (previous or {}).get(start_at)
        last_pixels: np.ndarray | None = None
        chunk: list[_Frame] = []
        with ThreadPoolExecutor(1, thread_name_prefix="artconv-flow") as pool:
            for index, raw in enumerate(frames, 1):
                if index < start_at or (index == start_at and not self.blend):
                    continue  # done before; only the last one's pixels matter (the flow)
                frame = self._frame(index, raw)
                if index == start_at:
                    last_pixels = frame.pixels
                    continue
                chunk.append(frame)
                if len(chunk) == self.video.batch:
                    last_out, last_pixels = yield from self._chunk(
                        chunk, last_out, last_pixels, pool)
                    chunk = []
                    if self.stopped:
                        return
            if chunk:
                yield from self._chunk(chunk, last_out, last_pixels, pool)

    def _frame(self, index: int, raw: FrameLike) -> _Frame:
        if isinstance(raw, torch.Tensor):
            t = raw.detach().float().cpu()
            t = (t if t.dim() == 4 else t[None]).clamp(0, 1)
        else:
            a = np.asarray(raw)
            if a.ndim != 3 or a.shape[2] != 3:
                raise ArtconvError(f"frame {index}: expected (H, W, 3) RGB, got shape "
                                   f"{a.shape}")
            t = torch.from_numpy(np.array(a, dtype=np.uint8)).permute(2, 0, 1)[None].float() \
                .div(255)
        hw = tuple(t.shape[-2:])
        self._hw = self._hw or hw
        if hw != self._hw:  # one clip, one size (the encoder and the blend need it)
            raise ArtconvError(f"frame {index}: {hw[1]}x{hw[0]} px, not the size of the "
                               "frames before it")
        frame = _Frame(index, t)
        if self.blend:
            hw = self.size(tuple(t.shape[-2:]))
            small = t if tuple(t.shape[-2:]) == hw else resize_to(t, hw).clamp(0, 1)
            frame.pixels = np.ascontiguousarray(
                small[0].mul(255).round().byte().permute(1, 2, 0).numpy())
        return frame

    def _flows(self, chunk: list[_Frame], before: np.ndarray | None
               ) -> dict[int, tuple[np.ndarray, np.ndarray, float]]:
        """{index: (backward flow, c, share of pixels not found)} of every frame of the
        chunk that has a frame before it."""
        started = time.perf_counter()
        assert self.flow is not None
        found = {}
        for frame in chunk:
            assert frame.pixels is not None
            if before is not None:
                pair = self.flow.pair(before, frame.pixels)
                consistent, edges = pair.masks()
                found[frame.index] = (pair.backward, (consistent & ~edges).astype(np.float32),
                                      1 - float(consistent.mean()))
            before = frame.pixels
        self.times.flow += time.perf_counter() - started
        return found

    def _chunk(self, chunk: list[_Frame], last_out: torch.Tensor | None,
               last_pixels: np.ndarray | None, pool: ThreadPoolExecutor
               ) -> Iterator[tuple[int, torch.Tensor]]:
        """Run one pass over `chunk` and yield its outputs; returns (the last output, the
        last frame's pixels) for the next chunk."""
        flows: Future | None = pool.submit(self._flows, chunk, last_pixels) \
            if self.blend else None
        self.relay.frame = chunk[0].index
        contents = torch.cat([f.content for f in chunk])
        started = time.perf_counter()
        outs = self.engine.run(contents, callback=lambda step: self._step(step, len(chunk)))
        self.times.engine += time.perf_counter() - started
        if self.stopped:  # the pass that was asked to stop is not kept (as TemporalLoop)
            if flows is not None:
                flows.cancel()
            return last_out, last_pixels
        waited = time.perf_counter()
        found = flows.result() if flows is not None else {}
        self.times.flow_wait += time.perf_counter() - waited
        for frame, y in zip(chunk, outs.detach().float().cpu().clamp(0, 1), strict=True):
            y = y[None]
            moved = found.get(frame.index)
            if moved is not None and last_out is not None \
                    and moved[2] <= self.video.scene_cut:
                warped = flowlib.warp(last_out, moved[0]).clamp(0, 1)
                c = torch.from_numpy(moved[1])[None, None]
                y = torch.lerp(y, warped, self.blend * c)
            elif self.blend:  # the first frame, or a cut: nothing to carry over
                self.times.scenes += 1
            y = y.mul(self.levels).round().div(self.levels)
            last_out = y
            self.times.frames += 1
            yield frame.index, y[0]
        return last_out, chunk[-1].pixels

    def _step(self, step: Step, frames: int) -> bool:
        """The engine's step, shown with the clip's frames per second so far."""
        seconds = max(time.perf_counter() - self._started, 1e-9)
        done = self.times.frames + frames * step.done / max(step.total, 1)
        return self.relay(dataclasses.replace(
            step, figures={**step.figures, "frames/s": done / seconds}))


def feedforward_frames(engine: Any, frames: Iterable[FrameLike], *,
                       video: VideoOptions | None = None, callback: Callback | None = None
                       ) -> Iterator[torch.Tensor]:
    """A trained network on every frame of `frames` ((H, W, 3) uint8 arrays or (3, H, W)
    tensors in [0, 1]), with the flow blend `video` asks for; yields (3, h, w) outputs."""
    loop = FeedForwardLoop(engine, video, callback=callback)
    for _, out in loop.run(frames):
        yield out


__all__ = ["FeedForwardLoop", "feedforward_frames"]
