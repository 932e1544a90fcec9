"""The rules every command follows for the files it writes (README, "Nothing lost").

* Every path a command will write is checked before any work starts: against every input,
  against every other path it writes, and for a writable folder (`check_write_paths`).
* An output and its recipe appear together or not at all: writers put the recipe (sidecar)
  in place first and the output last, and `output_complete` treats an output whose recipe
  is missing as unfinished, so a re-run redoes it.
* Temporaries a killed writer left beside an output are swept before it is written again
  (`sweep_temporaries`).
* Work folders (a clip's `OUT.mp4.frames/`, marked by its `clip.json`) are artconv's own:
  no other write may land inside one (`check_write_paths`).
* Work kept for a resume (a clip's frames, a still's `--resume` scales) records what made
  it, with every input by its content (`content_id`), and a run that differs is refused
  (`identity_difference`).

This module knows paths only; it imports nothing of torch or the engines.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artconv.errors import ArtconvError
from artconv.options import flag

StrPath = str | os.PathLike[str]

# Frames on disk: a clip's work folder (artconv.video.work: OUT.mp4.frames/ beside the
# output, or the output itself when it is a folder of frames) and a zoom video's folder hold
# one PNG a frame, named FRAME_NAME, each with its recipe; a clip's also holds the record of
# what made them. Named here, at the bottom, so the path checks below, `artconv recipe`, the
# clip driver and the zoom driver share them.
CLIP_WORK_SUFFIX = ".frames"
FRAME_NAME = "frame_{:06d}.png"
CLIP_FOLDER_RECORD = "clip.json"


def file_key(path: StrPath) -> object:
    """A hashable identity of a file: device and inode when it exists (so hard links,
    symlinks and case-folding filesystems compare equal), else its resolved path. Batches
    compare thousands of paths; a dict of keys keeps that linear."""
    resolved = Path(path).resolve()  # "missing/../file" names file, though stat says no
    try:
        st = os.stat(resolved)
        return (st.st_dev, st.st_ino)
    except OSError:  # doesn't exist (yet)
        return resolved


def same_file(a: StrPath, b: StrPath) -> bool:
    """True when two paths name one file."""
    return file_key(a) == file_key(b)


def sidecar(path: StrPath) -> Path:
    """Where the recipe of an output without an embedded one lives: `OUT.ext.json`."""
    p = Path(path)
    return p.with_name(p.name + ".json")


@dataclass(frozen=True)
class Owned:
    """A batch job's output as the path checks see it: the job in messages (`name`, a
    manifest line when `line`), what to change when it clashes, and whether it is a clip
    (whose work folder, `clip_work_folder(output)`, nothing else may go inside)."""

    output: StrPath
    name: str
    line: bool = False
    clip: bool = False
    collide_hint: str = "choose another path"
    input_hint: str = "choose another path"


def check_write_paths(writes: Sequence[tuple[str, StrPath | None]],
                      inputs: Iterable[StrPath] = (), *, owned: Sequence[Owned] = ()) -> None:
    """The one check of what a run will write, before any work starts: refused, in one line
    naming the option (or the batch job) and the path, a write over a file the run reads
    (`inputs`, see `files_read`), two writes to one file, a write inside a clip's work
    folder, or a folder that cannot be written.

    `writes` pairs a label (an option such as `--report`, `output`, `WORK_FOLDER` for a work
    folder's first frame) with a path (None: skipped); their folders are checked. `owned`
    are a batch's job outputs: each must not collide with another's or land on an input or
    in another job's work folder, and no write may take a job's output, recipe or folder.
    (A batch checks its jobs' folders as it runs them: finished jobs need none.)"""
    sources: dict[object, str] = {}
    for p in inputs:
        sources.setdefault(file_key(p), os.fspath(p))
    clips = {file_key(clip_work_folder(o.output)): o for o in owned if o.clip}
    seen_jobs: dict[object, Owned] = {}
    for job in owned:
        _check_outside_work_folders("output", job.output, clips, job)
        key = file_key(job.output)
        if key in seen_jobs:
            raise ArtconvError(f"{job.output}: jobs collide ({seen_jobs[key].name} and "
                               f"{job.name} would both write it); {job.collide_hint}")
        for what, path in (("output", job.output), ("recipe", sidecar(job.output))):
            src = sources.get(file_key(path))
            if src is not None:
                raise ArtconvError(f"{path}: {job.name} would write its {what} over the "
                                   f"input {src}; {job.input_hint}")
        seen_jobs[key] = job

    writes = [(label, Path(raw)) for label, raw in writes if raw is not None]
    # The work folders these writes make: nothing but their own frames goes inside them.
    planned = {file_key(path.parent): label for label, path in writes if label == WORK_FOLDER}
    seen: dict[object, str] = {}
    for label, path in writes:
        key = file_key(path)
        if key in sources:
            raise ArtconvError(f"{label} {path}: is an input file; refusing to overwrite "
                               "it (choose another path)")
        if label != WORK_FOLDER:
            inside = inside_work_folder(path)
            if inside is None and file_key(path.parent) in planned:
                inside = path.parent
            if inside is not None:
                raise ArtconvError(f"{label} {path}: is inside the work folder {inside} "
                                   "that artconv keeps for a clip; choose a path outside it")
        if key in seen:
            other = seen[key]
            what = f"{label} and {other} name" if label != other else f"two {label} paths are"
            raise ArtconvError(f"{what} the same file {path}; choose different paths")
        seen[key] = label
        check_writable(path, label)

    if not owned or not writes:
        return
    claims: dict[object, tuple[str, Owned]] = {}
    for job in owned:
        claims.setdefault(file_key(job.output), ("output", job))
        claims.setdefault(file_key(sidecar(job.output)), ("recipe", job))
        # A folder the batch creates for its outputs does not exist yet at this check.
        claims.setdefault(file_key(Path(job.output).parent), ("output folder", job))
    for label, path in writes:
        _check_outside_work_folders(label, path, clips)
        hit = claims.get(file_key(path))
        if hit is not None:
            raise ArtconvError(f"{label} {path}: is the {hit[0]} of {hit[1].name}; "
                               "refusing to overwrite it (choose another path)")


def _check_outside_work_folders(label: str, path: StrPath, clips: Mapping[object, Owned],
                                owner: Owned | None = None) -> None:
    """Work folders are artconv's own: nothing goes inside one, an existing one (it holds a
    clip.json) or one a clip job of this batch (`clips`, by folder) will make."""
    parent = Path(path).resolve().parent
    for folder in (parent, *parent.parents):
        job = clips.get(file_key(folder))
        if job is not None and job is not owner:
            raise ArtconvError(f"{label} {path}: is inside the work folder {folder} of "
                               f"{job.name}; choose a path outside it")
    found = inside_work_folder(path)
    if found is not None:
        what = f"{owner.name}: " if owner is not None and owner.line else ""
        raise ArtconvError(f"{what}{label} {path}: is inside the work folder {found} that "
                           "artconv keeps for a clip; choose a path outside it")


def check_writable(path: StrPath, label: str = "output") -> None:
    """The folder that will hold `path` exists and is writable, or can be made."""
    path = Path(path)
    if path.is_dir():
        raise ArtconvError(f"{label} {path}: is a folder, not a file")
    folder = _nearest_existing(path.parent)
    if not folder.is_dir():
        raise ArtconvError(f"{label} {path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK) or not _can_create_in(folder):
        raise ArtconvError(f"{label} {path}: folder {folder} is not writable")


def _nearest_existing(path: Path) -> Path:
    """`path`, or the nearest of its parents that exists: a folder that will be made is
    made below it."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _can_create_in(folder: Path) -> bool:
    """A file can really be made in `folder` (see `_create_error`)."""
    return _create_error(folder) is None


def _create_error(folder: Path) -> str | None:
    """Why no file can be made in `folder`, or None when one can: `os.access` says yes to
    root everywhere, even in /proc. An unnamed temporary (O_TMPFILE where there is one)
    leaves nothing behind."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


# -- work folders ------------------------------------------------------------------------
WORK_FOLDER = "work folder"  # the label of a work folder's own writes


def clip_work_folder(output: StrPath) -> Path:
    """Where a clip's finished frames go: the output itself when it is a folder of frames
    (`is_frames_output`), else OUT.frames/ beside it."""
    output = Path(output)
    if is_frames_output(output):
        return output
    return output.with_name(output.name + CLIP_WORK_SUFFIX)


def is_frames_output(path: StrPath) -> bool:
    """An output named as a folder of PNG frames: a trailing slash, an existing folder, or
    no suffix at all."""
    text = os.fspath(path)
    return text.endswith(("/", os.sep)) or Path(text).is_dir() or not Path(text).suffix


def frame_path(folder: StrPath, index: int) -> Path:
    """Frame `index` (1-based) of a folder of frames."""
    return Path(folder) / FRAME_NAME.format(index)


def frames_done(folder: StrPath, limit: int | None = None) -> int:
    """The finished frames of a folder of frames: those before the first missing one (at
    most `limit`). A resumed run continues after them."""
    done = 0
    while (limit is None or done < limit) and frame_path(folder, done + 1).is_file():
        done += 1
    return done


def inside_work_folder(path: StrPath) -> Path | None:
    """The work folder (a folder holding artconv's `clip.json`) that holds `path`, if any."""
    folder = Path(path).resolve().parent
    for candidate in (folder, *folder.parents):
        if is_work_record(candidate / CLIP_FOLDER_RECORD):
            return candidate
    return None


def is_work_record(path: Path) -> bool:
    """`path` is a clip work folder's identity record, not any file of that name (a clip
    generator's own `clip.json` beside its clip makes no folder artconv's)."""
    try:
        if not path.is_file() or path.stat().st_size > 1 << 20:
            return False
        record = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and {"engine", "inputs"} <= record.keys()


# -- identities --------------------------------------------------------------------------
_DIGESTS: dict[tuple, str] = {}


def content_id(path: StrPath) -> str:
    """A file by its content, not by how its path is spelt: "SIZE:SHA256". Kept per process
    for a file that has not changed (same inode, size and time), as a clip's segments ask
    again."""
    p = Path(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        raise ArtconvError(f"{p}: cannot read ({exc.strerror})") from None
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = f"{st.st_size}:{file_sha256(p)}"
    return _DIGESTS[key]


def file_sha256(path: StrPath) -> str:
    """The SHA-256 of a file (hex), read in 1 MiB blocks: how artconv names a file by its
    content (weights, masks, the inputs of a resumable run)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise ArtconvError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return digest.hexdigest()


def input_record(name: StrPath, files: Sequence[StrPath] | None = None) -> dict[str, str]:
    """An input of a resumable run: its name (for messages) and its content: of the file,
    or of `files` in order (the frames of a folder or glob); a URL by its text."""
    if files is None:
        if not os.path.isfile(name):  # a URL: by its text
            return {"name": os.fspath(name), "content": os.fspath(name)}
        return {"name": os.fspath(name), "content": content_id(name)}
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{Path(f).name}\0{content_id(f)}\0".encode())
    return {"name": os.fspath(name), "content": f"{len(files)} files:{digest.hexdigest()}"}


def named_file(value: Any) -> tuple[str, str] | None:
    """The existing file an option value names and what follows it: (FILE, "") for a path,
    (FILE, NAME) for an own network's FILE.py:NAME; None for anything else."""
    if not isinstance(value, str) or not value:
        return None
    if os.path.isfile(value):
        return value, ""
    head, sep, tail = value.rpartition(":")
    if sep and head and os.path.isfile(head):
        return head, tail
    return None


def files_read(inputs: Iterable[StrPath | None] = (),
               options: Iterable[Mapping[str, Any]] = ()) -> list[Path]:
    """Every file a run reads, once each, in order: `inputs` (its images; None skipped) and
    every option value naming an existing file (weights, backbone, init image, masks, guide,
    model, ...) in `options` (option records' `to_dict()`, a job's overrides). What every
    write is checked against (`check_write_paths`): the one answer for commands, batches
    and the studio."""
    found: dict[str, None] = {os.fspath(p): None for p in inputs if p is not None}
    for values in options:
        for value in values.values():
            for item in value if isinstance(value, list | tuple) else (value,):
                named = named_file(item)
                if named is not None:
                    found[named[0]] = None
    return [Path(p) for p in found]


def options_by_content(values: Mapping[str, Any]) -> dict[str, Any]:
    """Option values with every string naming an existing file (a weights file, a mask, an
    own network's FILE.py:FUNCTION) replaced by its content, so the same file spelt
    another way is the same option."""

    def one(value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [one(v) for v in value]
        named = named_file(value)
        if named is None:
            return value
        path, tail = named
        return f"file {content_id(path)}" + (f":{tail}" if tail else "")

    return {k: one(v) for k, v in values.items()}


def identity_difference(before: Mapping[str, Any], now: Mapping[str, Any]) -> str | None:
    """What differs between the record of earlier work and this run's, in a few words for
    a one-line refusal (None when they match). Records hold "inputs" ([{name, content}]),
    option tables ("options", "video") and plain entries."""
    now = json.loads(json.dumps(now, default=str))  # as the record was stored: tuples as lists
    for key in sorted(set(before) | set(now)):
        a, b = before.get(key), now.get(key)
        if a == b:
            continue
        if key == "inputs" and isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                return f"it was made from {len(a)} inputs, this run has {len(b)}"
            if not all(isinstance(old, Mapping) for old in a):
                return "it names its inputs by path only (made by an older artconv)"
            for old, new in zip(a, b, strict=True):
                if old.get("content") != new.get("content"):
                    name = new.get("name")
                    return f"input {name} is not the file it was made from"
            continue
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for name in sorted(set(a) | set(b)):
                if a.get(name) != b.get(name):
                    return (f"it was made with {flag(name)} {_shown(a.get(name))}, this run "
                            f"has {_shown(b.get(name))}")
        return f"its {key} was {_shown(a)}, this run has {_shown(b)}"
    return None


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(_shown, value)) or "none"
    text = "none" if value is None else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_folder(path: StrPath, label: str) -> None:
    """`path` is a folder that can be written, or one that can be made: refused in one line
    saying which of these fails. Tried with a real file (root passes `os.access` where
    writes still fail, as in /proc); nothing is left behind."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ArtconvError(f"{label} {path}: is a file, not a folder")
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise ArtconvError(f"{label} {path}: cannot be made ({existing} is a file)")
    error = _create_error(existing)
    if error is not None:
        if existing == path:
            raise ArtconvError(f"{label} {path}: cannot be written ({error})")
        raise ArtconvError(f"{label} {path}: cannot be made in {existing} ({error})")


def output_complete(path: StrPath) -> bool:
    """An output counts as finished only when it and its recipe are both there: a PNG
    carries its recipe inside (written in one rename), every other format needs its
    sidecar (or, for .pt/.safetensors, the recipe stored in the file itself)."""
    p = Path(path)
    if not p.is_file():
        return False
    if p.suffix.lower() in (".png", ".pt", ".safetensors"):
        return True
    return sidecar(p).is_file()


def sweep_temporaries(outputs: Iterable[StrPath]) -> list[Path]:
    """Remove the hidden temporaries (`.NAME.XXXXXXXX[.ext].tmp`, see
    `imageio.atomic_path`) that a killed writer of these outputs left, sidecars included.
    Call only when no other writer of these outputs is running. One listing per folder;
    unreadable folders are skipped."""
    names: dict[Path, set[str]] = defaultdict(set)
    for output in outputs:
        path = Path(output)
        names[path.parent].update((path.name, sidecar(path).name))
    removed = []
    for folder, owned in names.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            name = entry.name
            if not (name.startswith(".") and name.endswith(".tmp")):
                continue
            # `.{output name}.{random}{ext}.tmp`: the owner is a prefix ending at a dot.
            dots = [i for i, c in enumerate(name) if c == "." and i > 1]
            if any(name[1:i] in owned for i in dots):
                try:
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
                except OSError:
                    pass
    return removed
