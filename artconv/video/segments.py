"""Long clips in overlapping segments (`--segment-frames N --segment-overlap M`), so a Ray
cluster stylises one film: each segment is a task of its own, and the segments are joined
with a linear cross-fade over the frames they share.

    spans(10, 4, 2) == [(1, 4), (3, 6), (5, 8), (7, None)]  # None: to the end of the clip

Each segment runs the temporal loop (`artconv.video.loop.run_frames(..., span=...)`) over
its frames into its own folder inside the clip's work folder
(OUT.mp4.frames/segment_000003-000006/, see `artconv.video.work`), resumable like a whole
clip, and marks it finished (`finished.json`, the frames it holds). `assemble` then
writes every frame of the clip exactly once into the work folder and encodes it: a frame
in one segment is that segment's; in an overlap of M frames, the i-th (1-based) is
(1 - w) x the earlier segment's + w x the later one's, w = i / (M + 1).

Why a cross-fade, not each segment started from the previous segment's last output: that
reference exists only once the previous segment has finished, so the segments would run
one after the other and a cluster would stylise the film no faster than one machine.
Independent segments run all at once; the price is at the seams: a segment's first frame
runs the whole coarse-to-fine ladder from the content (a new "scene"), so two neighbouring
segments paint the overlap differently, and the cross-fade turns that jump into M frames of
blending (a brief ghosting of both textures) rather than a pop. A longer overlap hides the
seam better at the cost of M frames stylised twice per seam.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from artconv.engine import Callback, Step
from artconv.errors import ArtconvError
from artconv.io.images import load_image, read_recipe, save_image
from artconv.outputs import is_frames_output
from artconv.video.io import probe
from artconv.video.loop import ClipResult, FrameTimes, run_frames
from artconv.video.options import VideoOptions
from artconv.video.work import (
    FINISHED,
    check_clip_writes,
    check_segments,
    encode_folder,
    finished,
    frame_path,
    frames_done,
    mark_finished,
    open_work_folder,
    segment_folder,
    segment_spans,
    spans,
    work_folder,
)


def run_segmented(engine: Any, source: str | Path, output: str | Path, *,
                  video: VideoOptions, styles: Sequence[torch.Tensor] = (),
                  inputs: Sequence[str | Path] = (), callback: Callback | None = None,
                  display: Callable[[Step], Any] | None = None,
                  on_frame: Callable[[int, int | None], Any] | None = None,
                  partial: bool = False) -> ClipResult:
    """Every segment of the clip in turn (those finished before are skipped), then
    `assemble`: what a Ray batch does with one task a segment, in this process."""
    if partial:
        raise ArtconvError("--partial: not with --segment-frames (the segments are joined "
                           "once all are finished; run again to finish them)")
    started = time.perf_counter()
    output = Path(output)
    inputs = list(inputs) or [source]
    # The clip's work folder first: a run that differs is refused before any segment runs.
    open_work_folder(engine.name, engine.options, source, output, video, inputs)
    times = FrameTimes()
    new = 0
    for span in segment_spans(source, video):
        if finished(segment_folder(output, span)) is not None:
            continue
        result = run_frames(engine, source, output, video=video, styles=styles,
                            inputs=inputs, callback=callback, display=display,
                            on_frame=on_frame, span=span)
        new += result.new
        for name in ("engine", "flow_wait", "flow", "frames", "scenes"):
            setattr(times, name, getattr(times, name) + getattr(result.times, name))
        if result.stopped:
            return ClipResult(output, work_folder(output), 0, new, False,
                              time.perf_counter() - started, times, stopped=True)
    count = assemble(source, output, video, inputs)
    return ClipResult(output, work_folder(output), count, new, not is_frames_output(output),
                      time.perf_counter() - started, times)


def _pieces(output: Path, video: VideoOptions, source: str | Path
            ) -> list[tuple[int, int, Path]]:
    """(first frame, frames, folder) of every segment, each finished."""
    pieces = []
    for span in segment_spans(source, video):
        folder = segment_folder(output, span)
        count = finished(folder)
        if count is None:
            raise ArtconvError(f"{folder}: segment not finished ({frames_done(folder)} frames "
                               "so far); run it again to finish it")
        pieces.append((span[0], count, folder))
    return pieces


def blended(pieces: Sequence[tuple[int, int, Path]]
            ) -> Iterator[tuple[int, list[tuple[float, Path]]]]:
    """(frame, [(weight, segment frame file)]) for every frame of the clip, once, in order:
    one file where one segment holds the frame, two cross-faded in an overlap."""
    total = max((first + count - 1 for first, count, _ in pieces), default=0)
    for g in range(1, total + 1):
        holders = [(first, count, folder) for first, count, folder in pieces
                   if first <= g < first + count]
        if len(holders) == 1:
            first, _, folder = holders[0]
            yield g, [(1.0, frame_path(folder, g - first + 1))]
        elif len(holders) == 2:
            (a_first, a_count, a), (b_first, _, b) = holders
            shared = a_first + a_count - b_first  # frames the two segments hold both
            w = (g - b_first + 1) / (shared + 1)
            yield g, [(1 - w, frame_path(a, g - a_first + 1)),
                      (w, frame_path(b, g - b_first + 1))]
        else:  # a segment ended early (a short clip): nothing holds this frame
            raise ArtconvError(f"frame {g}: held by {len(holders)} segments; remove the "
                               "work folder's segment_* folders and run again")


def assemble(source: str | Path, output: str | Path, video: VideoOptions,
             inputs: Sequence[Any] = ()) -> int:
    """Join the finished segments into the clip's work folder (each frame once, overlaps
    cross-faded) and encode the output (unless it is a folder of frames); the frames
    written. Needs no engine: the recipes come from the segments' frames."""
    output = Path(output)
    inputs = list(inputs) or [source]
    check_clip_writes(output, [i for i in inputs if isinstance(i, str | Path)])
    folder = work_folder(output)
    pieces = _pieces(output, video, source)
    check_segments(folder, pieces)
    count = 0
    losses: dict[str, float] = {}
    base: dict[str, Any] = {}
    for g, parts in blended(pieces):
        image = sum(w * load_image(p) for w, p in parts)
        recipe = dict(read_recipe(parts[-1][1]))
        base = base or recipe
        for k, v in (recipe.get("losses") or {}).items():
            losses[k] = losses.get(k, 0.0) + float(v)
        recipe.update(frame=g, crossfade=[round(w, 6) for w, _ in parts])
        save_image(image.clamp(0, 1), frame_path(folder, g), recipe=recipe,
                   depth=int((recipe.get("options") or {}).get("bit_depth", 8)))
        count = g
    if is_frames_output(output) or not count:
        return count
    recipe = {k: v for k, v in base.items() if k not in ("frame", "crossfade")}

    def clip_recipe(fps: Any) -> dict[str, Any]:
        return {**recipe, "frames": count, "fps": str(fps), "partial": False,
                "work_folder": str(folder), "losses": {k: v / count for k, v in losses.items()},
                "segments": [[first, first + n - 1] for first, n, _ in pieces]}

    encode_folder(probe(source, video), folder, count, output, video, clip_recipe)
    return count


# The work folder's names for segments live in artconv.video.work; these were always
# imported from here too.
__all__ = ["FINISHED", "assemble", "blended", "finished", "mark_finished", "run_segmented",
           "segment_folder", "segment_spans", "spans"]
