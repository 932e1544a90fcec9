"""The rules every command follows for the files it writes (README, "Nothing lost").

* Every path a command will write is checked before any work starts: against every input,
  against every other path it writes, and for a writable folder (`check_write_paths`).
* An output and its recipe appear together or not at all: writers put the recipe (sidecar)
  in place first and the output last, and `output_complete` treats an output whose recipe
  is missing as unfinished, so a re-run redoes it.
* Temporaries a killed writer left beside an output are swept before it is written again
  (`sweep_temporaries`).

This module knows paths only; it imports nothing of torch or the engines.
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from artconv.errors import ArtconvError

StrPath = str | os.PathLike[str]


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


def check_write_paths(writes: Sequence[tuple[str, StrPath | None]],
                      inputs: Iterable[StrPath] = ()) -> None:
    """Refuse, with one line naming the option and the path, a set of writes that would
    lose a file: a write over an input, two writes to one file, or a folder that cannot be
    written. `writes` pairs a label (an option such as `--report`, or `output`) with a path;
    `None` paths are skipped. Call it before any work starts."""
    sources = {file_key(p) for p in inputs}
    seen: dict[object, str] = {}
    for label, raw in writes:
        if raw is None:
            continue
        path = Path(raw)
        key = file_key(path)
        if key in sources:
            raise ArtconvError(f"{label} {path}: is an input file; refusing to overwrite "
                               "it (choose another path)")
        if key in seen:
            other = seen[key]
            what = f"{label} and {other} name" if label != other else f"two {label} paths are"
            raise ArtconvError(f"{what} the same file {path}; choose different paths")
        seen[key] = label
        check_writable(path, label)


def check_writable(path: StrPath, label: str = "output") -> None:
    """The folder that will hold `path` exists and is writable, or can be made."""
    path = Path(path)
    if path.is_dir():
        raise ArtconvError(f"{label} {path}: is a folder, not a file")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the folder will be made below the nearest existing one
    if not folder.is_dir():
        raise ArtconvError(f"{label} {path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ArtconvError(f"{label} {path}: folder {folder} is not writable")


def check_folder(path: StrPath, label: str) -> None:
    """`path` is a folder that can be written, or one that can be made: refused in one line
    saying which of these fails. Tried with a real file (root passes `os.access` where
    writes still fail, as in /proc); nothing is left behind."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ArtconvError(f"{label} {path}: is a file, not a folder")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the folder will be made below the nearest existing one
    if not existing.is_dir():
        raise ArtconvError(f"{label} {path}: cannot be made ({existing} is a file)")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        if existing == path:
            raise ArtconvError(f"{label} {path}: cannot be written ({exc.strerror})") from None
        raise ArtconvError(f"{label} {path}: cannot be made in {existing} ({exc.strerror})") \
            from None


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
