"""Files in and out without torch: image extensions, atomic writes, listing inputs.

Everything here is plain Python, so presets, batch planning and the CLI's `--help` use it
without loading torch; `artconv.io.images` (pixels) builds on it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from artconv import outputs
from artconv.errors import ArtconvError

StrPath = str | os.PathLike[str]

SAVE_FORMATS: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
IMAGE_EXTENSIONS: frozenset[str] = frozenset(SAVE_FORMATS) | {".bmp", ".gif"}


def check_regular_file(path: StrPath) -> None:
    """Refuse a path that exists but is no regular file (a named pipe, socket or device)
    before anything opens it: reading a pipe that nobody writes to waits forever. A missing
    path passes, so that callers keep their own "no such file" message."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a special file")
    raise ArtconvError(f"{path}: is {kind}, not a regular file")


@contextmanager
def atomic_output(path: StrPath, sidecar: bytes | None, suffix_hint: str = ""
                  ) -> Iterator[Path]:
    """:func:`atomic_path` for an output whose recipe goes in a sidecar (``PATH.json``).

    The body writes the output to the yielded temporary; then the sidecar is put in place,
    and only then the output. So whenever the process dies or the disk fills, the output
    is on disk with its recipe or not at all (a recipe alone does no harm: a re-run redoes
    an output whose file is missing). If the output still fails to land after its sidecar
    did, the sidecar that was there before is put back (or the new one removed).
    """
    path = Path(path)
    side = outputs.sidecar(path)
    placed, previous = False, None
    try:
        with atomic_path(path, suffix_hint=suffix_hint) as tmp:
            yield tmp
            if sidecar is not None:
                previous = side.read_bytes() if side.is_file() else None
                atomic_write_bytes(side, sidecar)
                placed = True
    except BaseException:
        if placed:
            with contextlib.suppress(OSError, ArtconvError):
                if previous is None:
                    side.unlink(missing_ok=True)
                else:
                    atomic_write_bytes(side, previous)
        raise


def atomic_write_bytes(path: StrPath, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


@contextmanager
def atomic_path(path: StrPath, suffix_hint: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on clean exit it replaces ``path`` atomically.

    The temp file is fsynced before the rename, so after a crash ``path`` holds either the
    old or the new content, never a mix. On any exception the temp file is removed and
    ``path`` is untouched. OS errors become ``ArtconvError("{path}: cannot write (...)")``.
    Writers that append their own extension (``np.save``) should be handed an open file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Same folder, so os.replace is a rename within one filesystem (atomic); the dot
        # prefix and .tmp suffix keep it out of globs and list_images.
        fd, name = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=f"{suffix_hint}.tmp"
        )
        os.close(fd)
        tmp = Path(name)
        try:
            yield tmp
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            # mkstemp creates 0600; give the file the permissions a plain open() would.
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)  # already gone after a successful replace
    except OSError as e:
        raise ArtconvError(_one_line(f"{path}: cannot write ({e.strerror or e})")) from e


@cache
def _umask() -> int:
    # The only portable way to read the umask is to set it; do it once, not per write.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def list_images(pattern_or_paths: StrPath | Iterable[StrPath]) -> list[Path]:
    """Expand files, folders and glob patterns (``**`` recursive) into a sorted list of images.

    A folder contributes its image files (not sub-folders); a pattern contributes the image
    files it matches, so ``out/*`` skips recipe sidecars; a plain file is taken as given.
    """
    items = (
        [pattern_or_paths]
        if isinstance(pattern_or_paths, str | os.PathLike)
        else list(pattern_or_paths)
    )
    found: set[Path] = set()
    for item in items:
        p = Path(item)
        if p.is_dir():
            images = [f for f in p.iterdir() if _is_image_file(f)]
            if not images:
                raise ArtconvError(f"{p}: folder holds no image files")
        elif p.is_file():
            images = [p]
        elif p.exists():
            check_regular_file(p)  # a pipe or device given by name: say so
            images = [p]
        elif any(c in os.fspath(item) for c in "*?["):
            matches = glob.glob(os.fspath(item), recursive=True)
            images = [Path(m) for m in matches if _is_image_file(Path(m))]
            if not images:
                raise ArtconvError(f"{item}: pattern matches no image files")
        else:
            raise ArtconvError(f"{p}: no such file or folder")
        found.update(images)
    return sorted(found)


def _is_image_file(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()


def _one_line(msg: str) -> str:
    # Messages quote PIL/OS text, which occasionally spans lines; the CLI prints one.
    return " ".join(msg.split())
