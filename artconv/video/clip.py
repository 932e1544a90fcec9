"""The clip driver: `run_clip` runs an engine over a clip, kept steady by optical flow
(`artconv.video.loop`), resumable from its work folder (`artconv.video.work`), whole or in
segments (`artconv.video.segments`): the one place that decides which.

    run_clip(st, "clip.mp4", "clip_starry.mp4", styles=[starry], inputs=[...])  # resumable

The names clips were always imported by (`TemporalLoop`, `temporal_frames`, `work_folder`,
`frames_done`, ...) are here too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from artconv.engine import Callback, Step
from artconv.errors import ArtconvError
from artconv.video.io import probe
from artconv.video.loop import (
    ClipResult,
    FrameTimes,
    TemporalLoop,
    encode_frames,
    run_frames,
    temporal_frames,
)
from artconv.video.options import VideoOptions
from artconv.video.segments import run_segmented
from artconv.video.work import (
    Span,
    check_clip_writes,
    check_selection,
    check_work_folder,
    clip_identity,
    frame_path,
    frames_done,
    work_folder,
)


def run_clip(engine: Any, source: str | Path, output: str | Path, *,
             video: VideoOptions | None = None, styles: Sequence[torch.Tensor] = (),
             inputs: Sequence[str | Path] = (), callback: Callback | None = None,
             display: Callable[[Step], Any] | None = None,
             on_frame: Callable[[int, int | None], Any] | None = None,
             partial: bool = False, span: Span | None = None) -> ClipResult:
    """Run `engine` over the clip (or frames folder/glob) `source` into `output` (a clip
    file, or a folder of PNG frames), resuming from its work folder (see
    `artconv.video.loop`). `on_frame(done, total)` is told after every frame written.

    With `video.segment_frames` the clip runs as overlapping segments, cross-faded
    (`artconv.video.segments`); `span` = (first, last or None = to the end), 1-based over
    the selected frames, runs that one segment into its own folder and encodes nothing (a
    Ray task's share)."""
    video = video or VideoOptions()
    if span is None and video.segment_frames:
        return run_segmented(engine, source, output, video=video, styles=styles,
                             inputs=inputs, callback=callback, display=display,
                             on_frame=on_frame, partial=partial)
    return run_frames(engine, source, output, video=video, styles=styles, inputs=inputs,
                      callback=callback, display=display, on_frame=on_frame,
                      partial=partial, span=span)


def encode_partial(engine: Any, source: str | Path, output: str | Path,
                   video: VideoOptions | None = None, inputs: Sequence[Any] = ()) -> int:
    """Encode the frames a work folder holds so far into `output` (marked partial)."""
    video = video or VideoOptions()
    folder = work_folder(output)
    if not frames_done(folder):
        raise ArtconvError(f"{folder}: holds no finished frames to encode")
    return encode_frames(engine, probe(source, video), folder, Path(output), video,
                         list(inputs) or [source], partial=True)


__all__ = ["ClipResult", "FrameTimes", "TemporalLoop", "check_clip_writes", "check_selection",
           "check_work_folder", "clip_identity", "encode_partial", "frame_path",
           "frames_done", "run_clip", "temporal_frames", "work_folder"]
