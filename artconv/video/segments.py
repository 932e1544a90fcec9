"""Long clips in overlapping segments (`--segment-frames N --segment-overlap M`), so a Ray
cluster stylises one film: each segment is a task of its own, and the segments are joined
with a linear cross-fade over the frames they share.

    spans(10, 4, 2) == [(1, 4), (3, 6), (5, 8), (7, None)]  # None: to the end of the clip

Each segment runs the clip driver (`run_clip(..., span=...)`) over its frames into its own
folder inside the clip's work folder (OUT.mp4.frames/segment_000003-000006/), resumable like
a whole clip, and marks it finished (`finished.json`, the frames it holds). `assemble` then
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

import json
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from artconv.engine import Callback, Step
from artconv.errors import ArtconvError
from artconv.io.files import atomic_write_bytes
from artconv.io.images import load_image, read_recipe, save_image
from artconv.outputs import identity_difference
from artconv.video.clip import (
    RECIPE_NAME,
    ClipResult,
    FrameTimes,
    check_clip_writes,
    frame_path,
    frames_done,
    run_clip,
    work_folder,
)
from artconv.video.io import AudioSource, encode, is_frames_output, probe
from artconv.video.options import VideoOptions

Span = tuple[int, int | None]
FINISHED = "finished.json"


def spans(total: int | None, size: int, overlap: int) -> list[Span]:
    """1-based frame ranges of segments of `size` frames, each starting `overlap` frames
    before the previous one ends; the last runs to the end of the clip (None), as `total`
    (the frames the clip's header promises) may be a little off."""
    if overlap < 1 or 2 * overlap > size:
        raise ArtconvError(f"--segment-overlap {overlap}: must be 1 to half of "
                           f"--segment-frames {size}")
    if total is None:
        raise ArtconvError("--segment-frames: the clip does not say how many frames it "
                           "holds, so it cannot be split; convert it or leave the option out")
    found: list[Span] = []
    first = 1
    while first + size - 1 < total:
        found.append((first, first + size - 1))
        first += size - overlap
    found.append((first, None))
    return found


def segment_folder(output: str | Path, span: Span) -> Path:
    last = f"{span[1]:06d}" if span[1] is not None else "end"
    return work_folder(output) / f"segment_{span[0]:06d}-{last}"


def mark_finished(folder: Path, frames: int) -> None:
    """A segment that ran to its end: how many frames it holds (the last one may hold fewer
    than asked, or more, when the clip's header was off)."""
    atomic_write_bytes(folder / FINISHED, json.dumps({"frames": frames}).encode())


def finished(folder: Path) -> int | None:
    """The frames of a finished segment; None while it is not."""
    try:
        return int(json.loads((folder / FINISHED).read_text())["frames"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def segment_spans(source: str | Path, video: VideoOptions) -> list[Span]:
    if not video.segment_frames:
        raise ArtconvError("--segment-frames: not set")
    return spans(probe(source, video).selected(video), video.segment_frames,
                 video.segment_overlap)


def run_segmented(engine: Any, source: str | Path, output: str | Path, *,
                  video: VideoOptions, styles: Sequence[torch.Tensor] = (),
                  inputs: Sequence[str | Path] = (), callback: Callback | None = None,
                  display: Callable[[Step], Any] | None = None,
                  on_frame: Callable[[int, int | None], Any] | None = None,
                  partial: bool = False) -> ClipResult:
    """Every segment of the clip in turn (those finished before are skipped), then
    `assemble`: what a Ray batch does with one task a segment, in this process."""
    started = time.perf_counter()
    output = Path(output)
    times = FrameTimes()
    new = 0
    for span in segment_spans(source, video):
        if finished(segment_folder(output, span)) is not None:
            continue
        result = run_clip(engine, source, output, video=video, styles=styles, inputs=inputs,
                          callback=callback, display=display, on_frame=on_frame, span=span)
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


def _check_pieces(folder: Path, pieces: Sequence[tuple[int, int, Path]]) -> None:
    """Every segment was made by the run the clip's work folder records (`run_clip` checks
    each before it runs; this holds for segments made elsewhere, such as Ray workers)."""
    try:
        whole = json.loads((folder / RECIPE_NAME).read_text())
    except (OSError, ValueError):
        raise ArtconvError(f"{folder}: holds segments but no readable {RECIPE_NAME}; remove "
                           "it and run again") from None
    for _, _, piece in pieces:
        try:
            identity = json.loads((piece / RECIPE_NAME).read_text())
            identity.pop("segment", None)
        except (OSError, ValueError, AttributeError):
            identity = None
        why = identity_difference(whole, identity) if isinstance(identity, dict) \
            else f"no readable {RECIPE_NAME}"
        if why is not None:
            raise ArtconvError(f"{piece}: a segment of another run ({why}); remove it and "
                               "run again")


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
    _check_pieces(folder, pieces)
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
    info = probe(source, video)
    fps = info.fps / video.every
    recipe = {k: v for k, v in base.items() if k not in ("frame", "crossfade")}
    recipe.update(frames=count, fps=str(fps), partial=False, work_folder=str(folder),
                  losses={k: v / count for k, v in losses.items()},
                  segments=[[first, first + n - 1] for first, n, _ in pieces])
    audio = None if info.is_folder else AudioSource(info.path, video.start,
                                                    float(count / fps))

    def arrays() -> Iterator[np.ndarray]:
        for k in range(1, count + 1):
            yield load_image(frame_path(folder, k)).mul(255).round().byte() \
                .permute(1, 2, 0).numpy()

    encode(arrays(), output, fps, crf=video.crf, rotation=info.rotation, audio=audio,
           recipe=recipe)
    return count


__all__ = ["assemble", "blended", "finished", "mark_finished", "run_segmented",
           "segment_folder", "segment_spans", "spans"]
