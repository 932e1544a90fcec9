"""Files in and out without torch: image extensions, atomic writes, listing inputs, and
images named by http(s) URL (downloaded once into a cache).

Everything here is plain Python, so presets, batch planning and the CLI's `--help` use it
without loading torch; `artconv.io.images` (pixels) builds on it.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import http.client
import math
import os
import re
import stat
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
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


# --------------------------------------------------------------------------- URLs

# A download larger than this is refused (a style or content picture is a few MB; a
# Commons original can be hundreds). $ARTCONV_MAX_DOWNLOAD (bytes, e.g. 200e6) changes it.
DEFAULT_MAX_DOWNLOAD: int = 50_000_000
# Seconds a server may stay silent (connecting, or between two pieces of the file) before
# the download is given up. $ARTCONV_DOWNLOAD_TIMEOUT changes it.
DEFAULT_DOWNLOAD_TIMEOUT: float = 30.0
# The whole download, however it trickles, is given up after this many times the timeout
# (5 minutes by default: 50 MB at 170 kB/s), so a server that sends a few bytes a second
# cannot hold a run forever.
DEADLINE_TIMEOUTS: int = 10
# Wikimedia (and others) refuse the anonymous Python-urllib agent.
USER_AGENT = "artconv/0.1 (neural style transfer; +https://pypi.org/project/artconv/) urllib"

# (label, total bytes or None) -> a function told each chunk's length: a progress display
Report = Callable[[str, "int | None"], Callable[[int], object]]

_MANGLED_URL = re.compile(r"(?i)(https?):/(?!/)(.+)")
_UNSAFE_NAME = re.compile(r"[^\w.+-]+")


def url_of(src: object) -> str | None:
    """The http(s) URL that `src` names, or None for anything else.

    A URL that went through `pathlib.Path` has lost a slash ('https:/host/x.jpg'); such a
    path is read as the URL it was, unless a file of that name exists."""
    if isinstance(src, str):
        text = src
    elif isinstance(src, os.PathLike):
        text = os.fspath(src)
        if not isinstance(text, str):
            return None
    else:
        return None
    if text[:8].lower().startswith(("http://", "https://")):
        return text
    # A path's text (str(Path(url))) names the URL too: a batch job keeps its input as one.
    mangled = _MANGLED_URL.fullmatch(text)
    if mangled and not os.path.exists(text):
        return f"{mangled.group(1)}://{mangled.group(2)}"
    return None


def url_stem(url: str) -> str:
    """The file stem a URL names ('.../1280px-Earth.jpg?x=1' -> '1280px-Earth'), for
    default output names: the last segment of the URL's path only (never its query, which
    may hold '/../'), reduced to letters, digits and '._+-', so it is one plain file name."""
    stem = _UNSAFE_NAME.sub("_", Path(_url_file_name(url)).stem).strip("._")
    return stem[:100] or "image"


def input_stem(src: object) -> str:
    """The stem an input gives its default output names: a path's own stem, or for an
    http(s) URL its sanitised `url_stem`. The one rule for every command, batch and clip."""
    url = url_of(src)
    if url is not None:
        return url_stem(url)
    return Path(os.fspath(src)).stem  # type: ignore[arg-type]


def beside_input(src: object, name: str) -> Path:
    """Where a default output called `name` of the input `src` goes: beside a local input;
    for an http(s) URL in the current folder, never at a path made from the URL's text."""
    if url_of(src) is not None:
        return Path.cwd() / name
    return Path(os.fspath(src)).with_name(name)  # type: ignore[arg-type]


def url_cache_path(url: str) -> Path:
    """Where the image at `url` is cached: ~/.cache/artconv/images (XDG_CACHE_HOME
    respected), named by a hash of the whole URL plus the URL's file name, so two URLs
    ending in the same name never share a file."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "artconv" / "images"
    name = _url_file_name(url) or "image"
    if len(name) > 120:  # file systems allow 255 bytes; Commons names can be longer
        suffix = Path(name).suffix[:10]
        name = name[:120 - len(suffix)] + suffix
    return cache / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-{name}"


def _url_file_name(url: str) -> str:
    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    return name.replace(os.sep, "_").lstrip(".")


def max_download_bytes() -> int:
    """The download size limit in force: $ARTCONV_MAX_DOWNLOAD, else DEFAULT_MAX_DOWNLOAD."""
    return int(_env_number("ARTCONV_MAX_DOWNLOAD", DEFAULT_MAX_DOWNLOAD, 1,
                           "a number of bytes of at least 1, such as 200e6"))


def download_timeout() -> float:
    """Seconds of silence after which a download is given up: $ARTCONV_DOWNLOAD_TIMEOUT,
    else DEFAULT_DOWNLOAD_TIMEOUT."""
    return _env_number("ARTCONV_DOWNLOAD_TIMEOUT", DEFAULT_DOWNLOAD_TIMEOUT, 0.001,
                       "a number of seconds above 0, such as 120")


def _env_number(var: str, default: float, least: float, expected: str) -> float:
    value = os.environ.get(var, "")
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number >= least):
        raise ArtconvError(f"{var}={value!r}: expected {expected}")
    return number


_downloader: Callable[[str], Path] | None = None


def use_downloader(downloader: Callable[[str], Path] | None) -> None:
    """How `fetch` brings a URL into the cache: the CLI installs a download that shows a
    progress bar (`artconv.presets.download_image`), so this layer needs no screen and a
    library caller stays quiet (None: `download` itself)."""
    global _downloader
    _downloader = downloader


def fetch(url: str) -> Path:
    """The cached file of `url`, downloaded by the installed downloader if need be."""
    return (_downloader or download)(url)


def download(url: str, *, report: Report | None = None) -> Path:
    """The file at an http(s) `url`, fetched into the cache (`url_cache_path`) once.

    Refused with one line naming the URL: a server error or none, a server silent for
    `download_timeout()` seconds or not done after DEADLINE_TIMEOUTS times that, a redirect
    to anything but http(s), more than `max_download_bytes()` (by its Content-Length
    or, without one, as the bytes arrive), a web page instead of a file, or fewer bytes
    than the Content-Length promised. Only a complete download enters the cache (what a
killed one left there goes at the next try); every
    message says where to put the file by hand. `report(label, total)` is called once
    and returns a function told the length of each chunk (a progress bar)."""
    if url_of(url) != url:
        raise ArtconvError(f"{url}: not an http(s) URL")
    dst = url_cache_path(url)
    if dst.is_file():
        return dst
    timeout, cap = download_timeout(), max_download_bytes()
    _remove_stale_temporaries(dst, timeout * DEADLINE_TIMEOUTS)
    with atomic_path(dst) as tmp:
        _fetch(url, tmp, dst, timeout, cap, report)
    return dst


def _remove_stale_temporaries(dst: Path, deadline: float) -> None:
    """Remove what a killed download of `dst` left (atomic_path's temporaries): only those
    older than the deadline, which no live download can still be writing."""
    if not dst.parent.is_dir():
        return
    now = time.time()
    for tmp in dst.parent.glob(f".{glob.escape(dst.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            if now - tmp.stat().st_mtime > deadline:
                tmp.unlink()


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only: urllib would follow one to ftp:// too."""

    def http_error_302(self, req, fp, code, msg, headers):  # type: ignore[no-untyped-def]
        target = headers.get("location") or headers.get("uri") or ""
        scheme = urllib.parse.urlsplit(urllib.parse.urljoin(req.full_url, target)).scheme
        if scheme.lower() not in ("http", "https"):
            fp.close()
            raise ArtconvError(_one_line(f"{req.full_url}: the server redirects to {target}, "
                                         "not an http(s) URL; refused"))
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


_OPENER = urllib.request.build_opener(_HttpOnlyRedirects)


def _fetch(url: str, tmp: Path, dst: Path, timeout: float, cap: int,
           report: Report | None) -> None:
    by_hand = f"fetch it elsewhere and save it as {dst}, or give a local path"

    deadline = time.monotonic() + timeout * DEADLINE_TIMEOUTS

    def failed(why: object) -> ArtconvError:
        if time.monotonic() > deadline:
            return late()
        if isinstance(why, TimeoutError) or "timed out" in str(why):
            return ArtconvError(f"{url}: no answer within {timeout:g} s (set "
                                f"ARTCONV_DOWNLOAD_TIMEOUT higher, try again, or {by_hand})")
        return ArtconvError(_one_line(f"{url}: could not download ({why}); {by_hand}"))

    def late() -> ArtconvError:
        return ArtconvError(f"{url}: not downloaded within {timeout * DEADLINE_TIMEOUTS:g} s "
                            f"({DEADLINE_TIMEOUTS} x ARTCONV_DOWNLOAD_TIMEOUT; the server is "
                            f"too slow: set ARTCONV_DOWNLOAD_TIMEOUT higher, or {by_hand})")

    def too_big(what: str) -> ArtconvError:
        return ArtconvError(f"{url}: {what}, over the {_size(cap)} download limit (set "
                            f"ARTCONV_MAX_DOWNLOAD higher, or {by_hand})")

    network = (urllib.error.URLError, OSError, http.client.HTTPException, ValueError)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        response = _OPENER.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise failed(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise failed(exc.reason) from None
    except network as exc:
        raise failed(exc) from None
    with response, open(tmp, "wb") as fh:
        length = response.headers.get("Content-Length", "")
        expected = int(length) if length.strip().isdigit() else None
        if expected is not None and expected > cap:
            raise too_big(f"{_size(expected)}")
        kind = response.headers.get_content_type()
        if kind == "text/html":
            raise ArtconvError(f"{url}: the server sent a web page, not an image (give the "
                               "image file's own address; on Wikimedia Commons the one on "
                               "upload.wikimedia.org)")
        advance = report(f"downloading {_url_file_name(url) or url}", expected) \
            if report is not None else None
        got = 0
        while True:
            # read1: what has arrived (read() would wait for a whole 64 KB, however slowly
            # it trickles in, before the deadline is looked at again).
            try:
                chunk = response.read1(1 << 16)
            except network as exc:
                raise failed(exc) from None
            if not chunk:
                break
            if time.monotonic() > deadline:
                raise late()
            got += len(chunk)
            if got > cap:
                raise too_big(f"more than {_size(cap)}")
            fh.write(chunk)  # a full disk here is the cache's problem: "cannot write"
            if advance is not None:
                advance(len(chunk))
    if expected is not None and got != expected:
        raise ArtconvError(f"{url}: download incomplete ({got} of {expected} bytes); "
                           "try again")


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n} bytes"
