"""A clip's work folder: where its finished frames wait to be encoded, and what made them.

    OUT.mp4.frames/               (the output itself when it is a folder of frames)
        clip.json                 the run's identity: engine, options, clip options, inputs
                                  by content; a run that differs is refused
        frame_000001.png ...      the finished frames, each a PNG with its recipe
        segment_000001-000004/    with --segment-frames, one folder a segment: its own
            clip.json, frame_*.png, and finished.json once it ran to its end

Everything that names, counts, splits, checks or encodes that folder is here, below the
temporal loop (`artconv.video.loop`), the segments (`artconv.video.segments`) and the one
function that picks between them (`artconv.video.clip.run_clip`). The file names themselves
are `artconv.outputs`' (the path checks and `artconv recipe` know them).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from artconv.errors import ArtconvError
from artconv.io.files import atomic_write_bytes
from artconv.io.images import load_image
from artconv.outputs import (
    CLIP_FOLDER_RECORD,
    WORK_FOLDER,
    check_write_paths,
    clip_work_folder,
    file_key,
    frame_path,
    frames_done,
    identity_difference,
    input_record,
    is_frames_output,
    options_by_content,
    sidecar,
)
from artconv.video.io import AudioSource, ClipInfo, encode, frame_files, is_frames, probe
from artconv.video.options import VideoOptions

RECIPE_NAME = CLIP_FOLDER_RECORD
FINISHED = "finished.json"
Span = tuple[int, int | None]  # 1-based first and last frame (None: to the end)
T = TypeVar("T")

work_folder = clip_work_folder  # the name the clip driver has always used


# -- checks before any work ---------------------------------------------------------------------
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


# -- identity -----------------------------------------------------------------------------------
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


def _input(item: Any) -> dict[str, Any]:
    if isinstance(item, str | Path) and not Path(item).is_file() and is_frames(item):
        return input_record(item, frame_files(item))
    return input_record(str(item))


def check_work_folder(output: str | Path, identity: dict[str, Any]) -> None:
    """Refuse, before any work (the CLI: before the network loads), continuing a work
    folder another run made; writes nothing."""
    keep_identity(work_folder(output), identity, record=False)


def keep_identity(folder: Path, identity: dict[str, Any], *, record: bool = True) -> None:
    """Refuse a work folder whose frames (or segments) another run made; record this run's
    identity in a new one (unless `record` is False)."""
    path = folder / RECIPE_NAME
    if path.is_file():
        before = _read_json(path)
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


def check_segments(folder: Path, pieces: Sequence[tuple[int, int, Path]]) -> None:
    """Every segment was made by the run the clip's work folder records (`keep_identity`
    checks each before it runs; this holds for segments made elsewhere, such as Ray
    workers)."""
    whole = _read_json(folder / RECIPE_NAME)
    if not isinstance(whole, dict):
        raise ArtconvError(f"{folder}: holds segments but no readable {RECIPE_NAME}; remove "
                           "it and run again")
    for _, _, piece in pieces:
        identity = _read_json(piece / RECIPE_NAME)
        why = f"no readable {RECIPE_NAME}" if not isinstance(identity, dict) else \
            identity_difference(whole, {k: v for k, v in identity.items() if k != "segment"})
        if why is not None:
            raise ArtconvError(f"{piece}: a segment of another run ({why}); remove it and "
                               "run again")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def open_work_folder(engine: str, options: Any, source: str | Path, output: Path,
                     video: VideoOptions, inputs: Sequence[Any], *, span: Span | None = None
                     ) -> tuple[ClipInfo, int | None, Path]:
    """Every check before a clip (or one segment of it) runs, in order: the paths it
    writes, the input and its selection, and the work folder's identity (recorded when new;
    a segment's folder too). (The input's facts, the frames selected, the folder to write.)"""
    identity = clip_identity(engine, options, video, inputs)
    check_clip_writes(output, inputs)
    info = probe(source, video)
    total = check_selection(info, video)
    folder = work_folder(output)
    keep_identity(folder, identity)
    if span is not None:
        folder = segment_folder(output, span)
        keep_identity(folder, {**identity, "segment": list(span)})
    return info, total, folder


# -- segments -----------------------------------------------------------------------------------
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


def segment_spans(source: str | Path, video: VideoOptions) -> list[Span]:
    """The segments of the clip `source` as `video` splits it: the one place a clip is cut."""
    if not video.segment_frames:
        raise ArtconvError("--segment-frames: not set")
    return spans(probe(source, video).selected(video), video.segment_frames,
                 video.segment_overlap)


def span_frames(frames: Iterable[T], total: int | None, span: Span | None
                ) -> tuple[Iterator[T], int | None]:
    """The frames of one segment of the selected frames, and how many (None: unknown)."""
    if span is None:
        return iter(frames), total
    first, last = span
    count = None if total is None else max(0, min(total, last or total) - first + 1)
    return itertools.islice(frames, first - 1, last), count


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


# -- the clip from the folder -------------------------------------------------------------------
def encode_folder(info: ClipInfo, folder: Path, count: int, output: Path, video: VideoOptions,
                  recipe: Callable[[Fraction], dict[str, Any]]) -> int:
    """Encode frames 1..`count` of the work folder into `output` at the input's rate over
    `every`, with the input's audio for their span; `recipe(fps)` is the clip's recipe."""
    fps = info.fps / video.every
    audio = None if info.is_folder else AudioSource(info.path, video.start,
                                                    float(count / fps))

    def arrays() -> Iterator[np.ndarray]:
        for k in range(1, count + 1):
            yield load_image(frame_path(folder, k)).mul(255).round().byte() \
                .permute(1, 2, 0).numpy()

    return encode(arrays(), output, fps, crf=video.crf, rotation=info.rotation, audio=audio,
                  recipe=recipe(fps))


__all__ = ["FINISHED", "RECIPE_NAME", "Span", "check_clip_writes", "check_segments",
           "check_selection", "check_work_folder", "clip_identity", "encode_folder",
           "finished", "frame_path", "frames_done", "keep_identity", "mark_finished",
           "open_work_folder", "segment_folder", "segment_spans", "span_frames", "spans",
           "work_folder"]
