"""Zoom videos: dream an image, zoom into the result (and rotate it), dream again, ...

A driver above the dream engine: it writes the frames into a folder (frame_000001.png, ...,
named as a clip's frames are: `artconv.outputs.FRAME_NAME`),
each with the engine's recipe and its frame number, and optionally a looping GIF beside the
folder. Frames already in the folder are kept and the run continues after the last one; each
frame is rounded to 8 bits before it is continued, so a resumed run matches an unbroken one.

    dreamer = Dreamer(DreamOptions(frames=30, zoom=1.05), callback=show)
    paths = write_frames(dreamer, image, "zoom_frames", inputs=["cat.jpg"])
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from artconv.deepdream.engine import Dreamer
from artconv.deepdream.options import DreamOptions
from artconv.deepdream.transforms import affine_warp
from artconv.engine import Relay
from artconv.errors import ArtconvError
from artconv.io.images import ImageSource, atomic_path, load_image
from artconv.io.writers import write_picture
from artconv.nets.extractor import FeatureExtractor
from artconv.outputs import frame_path, frames_done


def frame_paths(folder: str | Path, frames: int) -> list[Path]:
    """Where a zoom video's frames go: FOLDER/frame_000001.png, ..."""
    return [frame_path(folder, k) for k in range(1, frames + 1)]


def gif_path(folder: str | Path) -> Path:
    """Where `--gif` writes a zoom video's frames as one GIF: beside the folder."""
    return Path(folder).with_suffix(".gif")


def write_gif(frames: Sequence[Path], path: Path, duration_ms: int = 80) -> Path:
    """An endlessly looping GIF of the frame files, written atomically."""
    images = [Image.open(p).convert("RGB") for p in frames]
    with atomic_path(path, suffix_hint=".gif") as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=duration_ms, loop=0)
    return path


def write_frames(dreamer: Dreamer, image: ImageSource, folder: str | Path, *,
                 inputs: Sequence[str | Path] = ()) -> list[Path]:
    """Write the `frames` frames of `dreamer.options` into `folder`: frame 1 is the dreamed
    input, each next one the previous frame zoomed (and rotated) and dreamed again. Returns
    the frame paths; when the callback stops the run, only the frames written (the stopped
    frame is not saved, so running again redoes it). Ctrl-C raises DreamInterrupted; the
    frames written so far stay and a second run continues after them."""
    o = dreamer.options
    if o.frames < 1:
        raise ArtconvError("--frames: give the number of frames to write (>= 1)")
    folder = Path(folder)
    paths = frame_paths(folder, o.frames)
    done = frames_done(folder, o.frames)
    if done < len(paths):
        written = _continue(dreamer, dreamer.to_batch(image), paths, done, inputs)
        if written < len(paths):
            return paths[:written]
    if o.gif:
        write_gif(paths, gif_path(folder))
    return paths


def _continue(dreamer: Dreamer, original: torch.Tensor, paths: list[Path], done: int,
              inputs: Sequence[str | Path]) -> int:
    """Write frames done+1 ... len(paths); the number of frames there when it stops."""
    o = dreamer.options
    # Scales and ranked channels come from the input itself, not from the frame a resumed
    # run starts at, so they are the same for every frame.
    objective = dreamer.prepare(original)
    current = original if not done else _resume_from(dreamer, paths[done - 1], original)
    per_frame = len(dreamer.octave_sizes(*original.shape[-2:])) * o.steps
    relay = Relay(dreamer.notify, total=(len(paths) - done) * per_frame)
    for k in range(done + 1, len(paths) + 1):
        src = current if k == 1 else affine_warp(current, o.zoom, o.rotate, "bicubic")
        out = dreamer.run(src.clamp(0, 1)[0], objective, frame=k, callback=relay)
        if relay.stopped:
            return k - 1
        out = out.mul(255).round().div(255)  # what the PNG holds
        write_picture(dreamer, out, paths[k - 1], inputs, frame=k)
        current = dreamer.to_batch(out)
        relay.offset += per_frame
    return len(paths)


def _resume_from(dreamer: Dreamer, last: Path, original: torch.Tensor) -> torch.Tensor:
    current = dreamer.to_batch(load_image(last))
    if current.shape != original.shape:
        raise ArtconvError(f"{last}: frame is {current.shape[-1]}x{current.shape[-2]} px but "
                           f"the input is {original.shape[-1]}x{original.shape[-2]}; use "
                           "another folder or the same --size")
    return current


def dream_frames(image: ImageSource, folder: str | Path, options: DreamOptions | None = None,
                 *, extractor: FeatureExtractor | None = None, progress: Any = None,
                 **overrides: Any) -> list[Path]:
    """Write a zoom video's frames (see write_frames); resumes an interrupted run. Options
    are DreamOptions fields (`frames`, `zoom`, `rotate`, `gif`, ...)."""
    dreamer = Dreamer(options, extractor=extractor, progress=progress, **overrides)
    inputs = [image] if isinstance(image, (str, Path)) else []
    with progress if progress is not None else contextlib.nullcontext():
        return write_frames(dreamer, load_image(image, dreamer.options.size), folder,
                            inputs=inputs)


__all__ = ["dream_frames", "frame_paths", "frames_done", "gif_path", "write_frames",
           "write_gif"]
