"""The training photos: which they are, which are usable, and the crops each step trains on.

`list_photos` expands --images (folders, globs, list files of paths or URLs); `scan` reads
each photo's header and sets aside the ones that cannot be read (named, with the reason).
`PhotoSet` then hands out batches. Every random choice of a step (which photos, where the
crop is, its scale, the flip) is drawn from a generator seeded with (seed, step), and each
epoch's order from (seed, epoch): a step's batch depends on nothing but the options and the
step number, so a resumed run sees exactly the crops an uninterrupted one would, and the
data-order state a checkpoint needs is the step (plus the photos found broken so far).

A photo whose pixels turn out corrupt only when decoded (a truncated JPEG passes the header
read) is skipped then: set aside, named once through `on_skip`, and replaced in that batch
by another photo drawn from the same step's generator, so this too is the same on a resume.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from artconv.errors import ArtconvError
from artconv.io.files import list_images, url_of
from artconv.io.images import image_hw, load_image

MIN_PHOTOS = 2  # usable photos below this: nothing to learn a style transfer from
CACHE_BYTES = 1 << 30  # decoded photos kept in memory (uint8 at the crop's scale)
LIST_SUFFIXES = (".txt", ".lst", ".list", ".jsonl", ".csv")
_MAX_ATTEMPTS = 64  # replacement draws for one slot before the set is called unusable

Skip = Callable[[str, str], object]  # (photo, reason) -> anything: told once per photo


def list_photos(specs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]
                ) -> list[str]:
    """The photos --images names, as strings (paths or URLs), sorted within each spec and
    without repeats: a folder's image files, a glob's, a list file's lines (one path or
    URL a line, `#` comments; JSON Lines objects give their "content" or "path"; relative
    paths are relative to the list file), a single image file or URL."""
    items = [specs] if isinstance(specs, (str, os.PathLike)) else list(specs)
    if not items:
        raise ArtconvError("--images: no photos given")
    found: dict[str, None] = {}
    for item in items:
        text = os.fspath(item)
        path = Path(text)
        if url_of(text) is not None:
            found[url_of(text) or text] = None
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            found.update(dict.fromkeys(_read_list(path)))
        else:
            found.update(dict.fromkeys(str(p) for p in list_images(text)))
    return list(found)


def _read_list(path: Path) -> list[str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtconvError(f"--images {path}: cannot read ({exc.strerror or exc})") from None
    if b"\0" in data[:8192]:
        raise ArtconvError(f"--images {path}: not a text file (a list has one path or URL "
                           "a line)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ArtconvError(f"--images {path}: not UTF-8 text") from None
    base = path.resolve().parent
    out = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ArtconvError(f"--images {path}:{lineno}: not valid JSON "
                                   f"({exc.msg})") from None
            line = str(entry.get("content") or entry.get("path") or "") if isinstance(
                entry, dict) else ""
            if not line:
                raise ArtconvError(f"--images {path}:{lineno}: a JSON line needs a "
                                   "\"content\" or \"path\"")
        elif path.suffix.lower() == ".csv":
            line = line.split(",")[0].strip().strip('"')
        if url_of(line) is not None:
            out.append(url_of(line) or line)
        else:
            p = Path(line).expanduser()
            out.append(str(p if p.is_absolute() else base / p))
    if not out:
        raise ArtconvError(f"--images {path}: the list names no photos")
    return out


@dataclass(frozen=True)
class Photo:
    source: str  # a path or URL as listed
    hw: tuple[int, int]  # (height, width) upright, from the header


def scan(sources: Sequence[str], on_skip: Skip | None = None
         ) -> tuple[list[Photo], list[tuple[str, str]]]:
    """(usable photos, [(photo, reason)] set aside): every header is read; an unreadable
    file, a non-image, a folder or a photo too small to hold any pixels is set aside."""
    usable, skipped = [], []
    for source in sources:
        try:
            hw = image_hw(source)
            reason = "" if min(hw) >= 1 else "has no pixels"
        except ArtconvError as exc:
            reason = _reason(source, str(exc))
        if reason:
            skipped.append((source, reason))
            if on_skip is not None:
                on_skip(source, reason)
        else:
            usable.append(Photo(source, (int(hw[0]), int(hw[1]))))
    return usable, skipped


def _reason(source: str, message: str) -> str:
    """An error line without the file name it starts with (the log names the file)."""
    for prefix in (f"{source}: ", f"{Path(source)}: "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message


def digest(photos: Sequence[Photo]) -> str:
    """sha256 of the photo list (sources and sizes, in order): the recipe's and the
    checkpoint's fingerprint of the data."""
    h = hashlib.sha256()
    for p in photos:
        h.update(f"{p.source}\t{p.hw[0]}x{p.hw[1]}\n".encode())
    return h.hexdigest()


def split(photos: Sequence[Photo], holdout: int) -> tuple[list[Photo], list[Photo]]:
    """(training photos, held-out photos): at most a fifth held out, spread evenly over
    the list (so a folder sorted by subject gives a varied preview)."""
    n = len(photos)
    k = min(holdout, n // 5)
    picked = {round((i + 0.5) * n / k - 0.5) for i in range(k)} if k else set()
    train = [p for i, p in enumerate(photos) if i not in picked]
    held = [p for i, p in enumerate(photos) if i in picked]
    return train, held


def step_generator(seed: int, *counters: int) -> torch.Generator:
    """A CPU generator for one (seed, counters...) key: the same draws on every run and
    every device, however the run was interrupted."""
    key = hashlib.sha256(repr((seed, *counters)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(key[:8], "little") >> 1)


class PhotoSet:
    """Training batches from `photos`: `batch(step)` -> (B, 3, crop, crop) in [0, 1].

    Epochs visit every photo once in an order drawn from (seed, epoch); slot j of step s is
    photo number s * B + j of that endless sequence. Each crop is a random square of side
    between the crop and the shorter side of the photo resized to `jitter` x crop, scaled
    to crop x crop, flipped left-right half the time."""

    def __init__(self, photos: Sequence[Photo], *, crop: int, batch_size: int, seed: int,
                 jitter: float = 1.5, on_skip: Skip | None = None,
                 broken: Iterable[str] = (), cache_bytes: int = CACHE_BYTES) -> None:
        if len(photos) < 1:
            raise ArtconvError("--images: no usable training photos")
        self.photos = list(photos)
        self.crop, self.batch_size, self.seed, self.jitter = crop, batch_size, seed, jitter
        self.on_skip = on_skip
        self.broken: dict[str, str] = {}  # source -> reason, found while decoding
        for source in broken:
            self.broken[source] = "corrupt"
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._cached_bytes, self.cache_bytes = 0, cache_bytes
        self._orders: OrderedDict[int, torch.Tensor] = OrderedDict()
        self.decoded = 0  # photos decoded (cache misses): a measure of I/O

    def __len__(self) -> int:
        return len(self.photos)

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, photo within it) where step `step` (0-based) starts."""
        g = step * self.batch_size
        return g // len(self.photos), g % len(self.photos)

    def epochs(self, steps: int) -> float:
        return steps * self.batch_size / len(self.photos)

    def order(self, epoch: int) -> torch.Tensor:
        if epoch not in self._orders:
            self._orders[epoch] = torch.randperm(len(self.photos),
                                                 generator=step_generator(self.seed, -1, epoch))
            while len(self._orders) > 2:
                self._orders.popitem(last=False)
        return self._orders[epoch]

    def batch(self, step: int) -> torch.Tensor:
        """The crops of step `step` (0-based), (B, 3, crop, crop) float32 in [0, 1]."""
        gen = step_generator(self.seed, step)
        n = len(self.photos)
        crops = []
        for j in range(self.batch_size):
            g = step * self.batch_size + j
            index = int(self.order(g // n)[g % n])
            # Every slot draws its crop parameters first, whether or not the photo loads,
            # so one broken photo changes nothing but its own slot's photo.
            u = torch.rand(4, generator=gen, dtype=torch.float64).tolist()
            for _ in range(_MAX_ATTEMPTS):
                pixels = self._pixels(self.photos[index])
                if pixels is not None:
                    break
                index = int(torch.randint(n, (1,), generator=gen))
            else:
                raise ArtconvError(f"--images: {len(self.broken)} of {n} photos cannot be "
                                   "decoded; too few usable photos left")
            crops.append(random_crop(pixels, self.crop, *u))
        return torch.stack(crops)

    def _pixels(self, photo: Photo) -> torch.Tensor | None:
        """The photo as uint8 (3, h, w) with its shorter side `jitter` x crop, or None when
        it cannot be decoded (it is then set aside for the rest of the run)."""
        if photo.source in self.broken:
            return None
        if photo.source in self._cache:
            self._cache.move_to_end(photo.source)
            return self._cache[photo.source]
        try:
            pixels = load_photo(photo, math.ceil(self.crop * self.jitter))
        except ArtconvError as exc:
            reason = _reason(photo.source, str(exc))
            self.broken[photo.source] = reason
            if self.on_skip is not None:
                self.on_skip(photo.source, reason)
            return None
        self.decoded += 1
        self._cache[photo.source] = pixels
        self._cached_bytes += pixels.numel()
        while self._cached_bytes > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= old.numel()
        return pixels


def load_photo(photo: Photo, shorter: int) -> torch.Tensor:
    """A photo as uint8 (3, h, w) resized so its shorter side is `shorter` px (a large
    JPEG is reduced while decoding)."""
    h, w = photo.hw
    longest = max(shorter, math.ceil(shorter * max(h, w) / max(1, min(h, w))))
    image = load_image(photo.source, longest)
    return image.mul(255).round().to(torch.uint8)


def random_crop(pixels: torch.Tensor, crop: int, u_side: float, u_y: float, u_x: float,
                u_flip: float) -> torch.Tensor:
    """A square crop of uint8 (3, h, w) chosen by four uniform numbers in [0, 1): its side
    (between `crop` and the shorter side), its place, a left-right flip; returned as float32
    (3, crop, crop) in [0, 1]."""
    h, w = pixels.shape[-2:]
    short = min(h, w)
    side = min(short, crop + int(u_side * (short - crop + 1))) if short > crop else short
    y = int(u_y * (h - side + 1))
    x = int(u_x * (w - side + 1))
    out = pixels[:, y:y + side, x:x + side].float().div_(255)
    if side != crop:
        out = F.interpolate(out[None], size=(crop, crop), mode="bilinear",
                            align_corners=False, antialias=side > crop)[0].clamp_(0, 1)
    return out.flip(-1) if u_flip < 0.5 else out


def center_crop(pixels: torch.Tensor, crop: int) -> torch.Tensor:
    """The middle square of uint8 (3, h, w), as large as the shorter side, scaled to
    crop x crop, as float32 in [0, 1]: the held-out crops, the same at every evaluation."""
    h, w = pixels.shape[-2:]
    side = min(h, w)
    y, x = (h - side) // 2, (w - side) // 2
    out = pixels[:, y:y + side, x:x + side].float().div_(255)[None]
    return F.interpolate(out, size=(crop, crop), mode="bilinear", align_corners=False,
                         antialias=side > crop)[0].clamp_(0, 1)
