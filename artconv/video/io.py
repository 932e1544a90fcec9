"""Clips in and out with PyAV: frames decoded upright as 8-bit RGB arrays, a frames folder or
glob read the same way, and frames encoded to H.264 (yuv420p) with the input's rate, its
stored orientation (display rotation) and its audio stream copied packet for packet.

Frames are (H, W, 3) uint8 arrays, upright (the display rotation applied), so the engines
see what a player shows; the writer turns them back and sets the same rotation, so the
output is stored like the input.
"""

from __future__ import annotations

import glob
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from artconv.errors import ArtconvError
from artconv.io.files import IMAGE_EXTENSIONS, atomic_output, list_images, url_of
from artconv.io.recipe import read_any_recipe
from artconv.outputs import is_frames_output  # noqa: F401 - its old home
from artconv.video.options import VideoOptions

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg",
                              ".mpeg", ".ts"})
# Output container per suffix: H.264 and AAC/any copied audio live in all three.
OUTPUT_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
DEFAULT_FPS = Fraction(25)
# In a clip whose container does not count its frames (MPEG-TS), more missing frames in a
# row than this is damage, not a clip to continue silently. A counted clip is judged by its
# count instead, so a variable frame rate clip may hold a frame as long as it likes.
MAX_GAP = 4
# Frames a counted clip may decode fewer than it lists (an edit list trimming its start).
COUNT_SLACK = 1


def is_clip(text: str | os.PathLike[str]) -> bool:
    """A video file, by its extension."""
    return Path(text).suffix.lower() in VIDEO_EXTENSIONS


def is_frames(text: str | os.PathLike[str]) -> bool:
    """A glob of frame images (`frames/*.png`) or a folder of them."""
    text = os.fspath(text)
    if url_of(text) is not None:  # '?' and '[' in a URL are its query, not a glob
        return False
    if any(c in text for c in "*?["):
        return Path(text).suffix.lower() in IMAGE_EXTENSIONS
    return Path(text).is_dir()


def is_video_input(text: str | os.PathLike[str]) -> bool:
    return is_clip(text) or is_frames(text)


@dataclass(frozen=True)
class ClipInfo:
    """What the driver needs to know about an input before decoding it."""

    path: Path
    fps: Fraction  # of the input; the output's is fps / every
    width: int  # upright (as displayed)
    height: int
    rotation: int = 0  # display rotation, counter-clockwise degrees (0, 90, 180, -90)
    frames: int | None = None  # an estimate for a clip (its header's count or duration)
    audio: bool = False
    is_folder: bool = False

    def selected(self, options: VideoOptions) -> int | None:
        """About how many frames `options` (start, duration, every) select."""
        if self.frames is None:
            return None
        first = round(options.start * self.fps)
        last = self.frames if options.duration is None else min(
            self.frames, round((options.start + options.duration) * self.fps))
        return max(0, -(-(last - first) // options.every))


def _open(path: Path) -> Any:
    import av

    if not path.is_file():
        raise ArtconvError(f"{path}: no such file")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise ArtconvError(f"{path}: not a readable video ({_why(exc)})") from None
    if not container.streams.video:
        container.close()
        raise ArtconvError(f"{path}: holds no video stream")
    return container


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def probe(source: str | os.PathLike[str], options: VideoOptions | None = None) -> ClipInfo:
    """Rate, upright size, rotation, frame count and audio of a clip, or of a frames folder or
    glob (whose rate is `options.fps`, default 25)."""
    options = options or VideoOptions()
    if is_frames(source):
        paths = frame_files(source)
        h, w = _check_frame_files(paths)
        fps = Fraction(options.fps).limit_denominator(1001) if options.fps else DEFAULT_FPS
        return ClipInfo(Path(source), fps, w, h, 0, len(paths), False, True)
    path = Path(source)
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = Fraction(rate) if rate else DEFAULT_FPS
        count = stream.frames or None
        if count is None and stream.duration and stream.time_base:
            count = round(float(stream.duration * stream.time_base * fps))
        elif count is None and container.duration:
            count = round(container.duration / 1e6 * float(fps))
        rotation = _rotation(container)
        if stream.frames:
            _check_listed_frames(path, container, stream, options)
        w, h = stream.codec_context.width, stream.codec_context.height
        if rotation % 180:
            w, h = h, w
        return ClipInfo(path, fps, w, h, rotation, count, bool(container.streams.audio))


def _check_listed_frames(path: Path, container: Any, stream: Any, options: VideoOptions
                         ) -> None:
    """Refuse, before any work, a clip holding fewer frames than its index lists (cut off,
    or written by a recorder that stopped) when the frames asked for run past those there:
    reading the packets costs no decoding."""
    present, last = 0, 0.0
    try:
        for packet in container.demux(stream):
            if packet.size:
                present += 1
                if packet.pts is not None and packet.time_base:
                    last = max(last, float((packet.pts + (packet.duration or 0))
                                           * packet.time_base))
    except Exception:  # noqa: BLE001 - PyAV's error types; the count so far is the answer
        pass
    container.seek(0)
    wanted_end = math.inf if options.duration is None else options.start + options.duration
    if present + COUNT_SLACK < stream.frames and wanted_end > last:
        raise ArtconvError(f"{path}: holds {present} of the {stream.frames} frames it lists "
                           f"(frames {present + 1}-{stream.frames}, from {last:.3g} s, are cut "
                           "off or damaged); give --duration to take frames before them")


def _rotation(container: Any) -> int:
    """The display rotation of the first frame (PyAV reads it from the display matrix)."""
    try:
        for frame in container.decode(video=0):
            rotation = int(round(getattr(frame, "rotation", 0) or 0))
            break
        else:
            rotation = 0
    except Exception:  # noqa: BLE001 - a bad first frame fails in read_frames, naming it
        rotation = 0
    container.seek(0)
    return rotation


def frame_files(pattern: str | os.PathLike[str]) -> list[Path]:
    """The frames of a folder or glob, in name order."""
    text = os.fspath(pattern)
    if Path(text).is_dir() or not any(c in text for c in "*?["):
        return list_images(text)
    found = sorted(Path(p) for p in glob.glob(text, recursive=True)
                   if Path(p).suffix.lower() in IMAGE_EXTENSIONS and Path(p).is_file())
    if not found:
        raise ArtconvError(f"{text}: pattern matches no image files")
    return found


def _check_frame_files(paths: list[Path]) -> tuple[int, int]:
    """Every frame's header, before any work: within the pixel limit and of one size.
    -> the upright (H, W) they share."""
    from artconv.io.images import image_hw  # torch loads only when frames are read

    first = None
    for p in paths:
        hw = image_hw(p, limit=True)
        if first is not None and hw != first:
            raise ArtconvError(f"{p}: frame is {hw[1]}x{hw[0]}, the first was "
                               f"{first[1]}x{first[0]}; frames of a clip share one size")
        first = hw
    assert first is not None  # frame_files never returns an empty list
    return first


def read_frames(source: str | os.PathLike[str], options: VideoOptions | None = None, *,
                size: int | None = None) -> Iterator[np.ndarray | Any]:
    """The frames `options` select (start, duration, every), upright: a clip's as (H, W, 3)
    uint8 arrays, a frames folder's as float32 (3, H, W) tensors in [0, 1] read by
    `load_image` (16-bit frames keep their precision, alpha is composited over white).
    With `size`, frames are decoded with their longest side `size` (as
    `fit_longest`), so a huge frame never exists at full size.

    A clip that cannot be decoded fails with one line naming the file and the frame."""
    options = options or VideoOptions()
    if is_frames(source):
        yield from _read_folder(source, options, size)
        return
    info = probe(source, options)
    path = Path(source)
    end = None if options.duration is None else options.start + options.duration
    shrink = _decode_size(info, size)
    kept = 0
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if options.start > 0 and stream.time_base:
            container.seek(int(options.start / stream.time_base), stream=stream)
        counted = stream.frames or 0  # what the container's index lists (0: no index)
        index = -1
        number = round(options.start * float(info.fps))  # the clip's frames before this one
        frames = container.decode(stream)
        t, ended = 0.0, False
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                ended = True
                break
            except Exception as exc:  # noqa: BLE001 - PyAV raises its own error types
                raise ArtconvError(f"{path}: cannot decode frame {number + 1} "
                                   f"({_why(exc)})") from None
            index += 1
            t = frame.time if frame.time is not None else index / float(info.fps)
            now = round(t * float(info.fps)) + 1
            if index and not counted and now - number > MAX_GAP:  # skipped what it could not read
                raise ArtconvError(f"{path}: cannot decode frames {number + 1}-{now - 1} "
                                   "(the clip is damaged there)")
            number = now
            if t < options.start - 0.5 / float(info.fps):
                continue
            if end is not None and t >= end - 0.5 / float(info.fps):
                break
            if kept % options.every == 0:
                if shrink is not None:  # scaled as decoded: never an RGB copy at full size
                    frame = frame.reformat(width=shrink[1], height=shrink[0],
                                           format="rgb24", interpolation="AREA")
                yield _upright(frame.to_ndarray(format="rgb24"), info.rotation)
            kept += 1
    if kept == 0:
        raise ArtconvError(f"{path}: no frame decoded"
                           + (f" from --start {options.start:g} s" if options.start else ""))
    if (ended and not options.start and options.duration is None
            and index + 1 + COUNT_SLACK < counted):
        # The packets were there (probe counted them) but fewer frames decode from them.
        raise ArtconvError(f"{path}: only {index + 1} of the {counted} frames it lists "
                           f"decode (frames {index + 2}-{counted} are damaged or cut off); "
                           f"--duration {t + 1 / float(info.fps):.3g} takes the ones "
                           "before")


def _read_folder(source: str | os.PathLike[str], options: VideoOptions, size: int | None
                 ) -> Iterator[Any]:
    from artconv.io.images import load_image  # the one reader of stills and frames

    paths = frame_files(source)
    fps = float(options.fps or DEFAULT_FPS)
    first = round(options.start * fps)
    last = len(paths) if options.duration is None else round((options.start
                                                              + options.duration) * fps)
    shape = None
    for p in paths[first:last:options.every]:
        frame = load_image(p, size)
        if shape is not None and frame.shape != shape:
            raise ArtconvError(f"{p}: frame is {frame.shape[2]}x{frame.shape[1]}, the first "
                               f"was {shape[2]}x{shape[1]}; frames of a clip share one size")
        shape = frame.shape
        yield frame


def _decode_size(info: ClipInfo, size: int | None) -> tuple[int, int] | None:
    """The stored (H, W) to scale a clip's frames to as they are decoded: its upright size
    fitted to `size` (as `fit_longest`), or None when that is no smaller."""
    from artconv.io.images import fit_longest  # the one size rule; torch is loaded by now

    if size is None or size >= max(info.width, info.height):
        return None
    h, w = fit_longest((info.height, info.width), size)
    return (w, h) if info.rotation % 180 else (h, w)


def _upright(arr: np.ndarray, rotation: int) -> np.ndarray:
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(arr, k)) if k else arr


def read_clip_recipe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The recipe of a clip or frames folder artconv wrote (`read_any_recipe`, the one
    reader); {} when there is none."""
    try:
        return read_any_recipe(path)
    except ArtconvError:
        return {}


@dataclass(frozen=True)
class AudioSource:
    """The audio to copy into an output: stream 0 of `path` from `start` for `duration`
    seconds (None: to the end)."""

    path: Path
    start: float = 0.0
    duration: float | None = None


def encode(frames: Iterable[np.ndarray], output: str | os.PathLike[str], fps: Fraction, *,
           crf: int = 18, rotation: int = 0, audio: AudioSource | None = None,
           recipe: dict[str, Any] | None = None) -> int:
    """Write upright (H, W, 3) uint8 frames as an H.264 clip at `fps`, stored turned back by
    `rotation` with that display rotation set, `audio` copied packet for packet, the recipe
    in a sidecar (OUT.json) put in place with it. Atomic: the clip appears whole or not at
    all. Odd sizes lose their last row/column (yuv420p needs even ones). Returns the number
    of frames written."""
    import av

    output = Path(output)
    fmt = OUTPUT_FORMATS.get(output.suffix.lower())
    if fmt is None:
        raise ArtconvError(f"{output}: unsupported video format '{output.suffix}' (use "
                           f"{', '.join(sorted(OUTPUT_FORMATS))}, or a folder/ for PNG "
                           "frames)")
    sidecar = json.dumps(recipe, sort_keys=True).encode() if recipe is not None else None
    count = 0
    with (atomic_output(output, sidecar, suffix_hint=output.suffix) as tmp,
          av.open(str(tmp), "w", format=fmt) as out):
        stream = None
        k = (rotation // 90) % 4
        for arr in frames:
            arr = np.rot90(arr, -k) if k else arr
            h, w = arr.shape[0] // 2 * 2, arr.shape[1] // 2 * 2
            if stream is None:
                stream = out.add_stream("libx264", rate=fps)
                stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                stream.options = {"crf": str(crf)}
                if rotation:
                    stream.set_display_rotation(rotation)
                copier = _AudioCopier(out, audio) if audio is not None else None
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr[:h, :w]),
                                               format="rgb24")
            frame.pts = count
            frame.time_base = 1 / fps
            for packet in stream.encode(frame):
                out.mux(packet)
            count += 1
            if copier is not None:  # interleaved, so the muxer never holds much
                copier.copy(until=float(count / fps))
        if stream is None:
            raise ArtconvError(f"{output}: no frames to write")
        for packet in stream.encode():
            out.mux(packet)
        if copier is not None:
            copier.copy()
    return count


class _AudioCopier:
    """Audio stream 0 of a clip into an output container, packets unchanged (no re-encode),
    trimmed to the frames' time span and shifted to start at 0."""

    def __init__(self, out: Any, audio: AudioSource) -> None:
        self.audio, self.input, self.pending, self.packets = audio, None, None, None
        source = _open(audio.path) if is_clip(audio.path) else None
        if source is None or not source.streams.audio:
            if source is not None:
                source.close()
            return
        self.input = source
        self.source = source.streams.audio[0]
        self.stream = out.add_stream_from_template(self.source)
        self.out = out

    def _packets(self) -> Iterator[Any]:
        """The audio packets of the span, shifted to start at 0."""
        tb = self.source.time_base
        start = int(self.audio.start / tb)
        end = None if self.audio.duration is None else int((self.audio.start
                                                            + self.audio.duration) / tb)
        for packet in self.input.demux(self.source):
            if packet.dts is None or packet.pts is None:
                continue  # the demuxer's flush packet
            # From the clip's start, everything (AAC priming packets have pts < 0).
            if (start and packet.pts + (packet.duration or 0) <= start) or (
                    end is not None and packet.pts >= end):
                continue
            packet.pts -= start
            packet.dts -= start
            yield packet

    def copy(self, until: float | None = None) -> None:
        """Mux the packets that start before `until` seconds (None: all, then close)."""
        if self.input is None:
            return
        if self.packets is None:
            self.packets = self._packets()
        while True:
            if self.pending is None:
                self.pending = next(self.packets, False)
            if self.pending is False:
                break
            if until is not None and self.pending.pts * self.source.time_base >= until:
                return
            self.pending.stream = self.stream
            self.out.mux(self.pending)
            self.pending = None
        if until is None:
            self.input.close()
            self.input = None
