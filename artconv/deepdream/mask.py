"""`--mask FILE`: dream inside a region only.

The mask is a grey-level image, white = dream here, black = keep the input. It is read once
(its errors are one line naming `--mask FILE`), resized to the dream's size (antialiased),
softened by a Gaussian of `mask_feather` px radius there, and resized again to each octave's
size. The loop multiplies the gradient and the detail carried between octaves by it, so where
the mask is 0 the output is the input exactly.

    mask = DreamMask("subject.png", feather=8, device=device)
    full = mask.full((h, w))            # (1, 1, h, w) in [0, 1], feathered
    m = mask.at((h, w), (oh, ow))       # the same at an octave's size
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from artconv.errors import ArtconvError
from artconv.io.images import load_image, resize_to
from artconv.outputs import file_sha256

ASPECT_TOLERANCE = 0.01  # a mask whose aspect ratio differs more from the image's is refused


class DreamMask:
    """A mask file, read once; its feathered planes cached per image and octave size."""

    def __init__(self, path: str | Path, feather: float = 0.0, *, circular: bool = False,
                 device: torch.device | str = "cpu") -> None:
        self.path, self.feather, self.circular = str(path), float(feather), circular
        try:
            rgb = load_image(self.path)
        except ArtconvError as exc:
            raise ArtconvError(f"--mask {exc}") from None
        # Grey level as luma (a grey image's own value); a colour mask counts by brightness.
        weights = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
        grey = (rgb * weights).sum(0, keepdim=True)[None].clamp_(0, 1)  # (1, 1, H, W)
        self.grey = grey.to(device)
        if float(self.grey.max()) <= 0:
            raise ArtconvError(f"--mask {self.path}: black everywhere, nothing would be "
                               "dreamed (white = dream here)")
        self.sha256 = _sha256(Path(self.path))
        self._cache: dict[tuple[tuple[int, int], tuple[int, int]], torch.Tensor] = {}

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.grey.shape[-2]), int(self.grey.shape[-1])

    def describe(self) -> dict[str, str]:
        """What a recipe records: the file and its content hash."""
        return {"path": self.path, "sha256": self.sha256}

    def check_aspect(self, hw: tuple[int, int]) -> None:
        """Refuse an image whose aspect ratio differs from the mask's by more than 1%, beyond
        the half pixel per side that resizing the image (`--size`) rounds by."""
        (mh, mw), (h, w) = self.hw, hw
        rounding = 0.5 / h + 0.5 / w
        if abs((mw / mh) / (w / h) - 1) > ASPECT_TOLERANCE + rounding:
            raise ArtconvError(f"--mask {self.path}: the mask is {mw}x{mh} px but the image "
                               f"is {w}x{h} px; their aspect ratios differ by more than "
                               f"{ASPECT_TOLERANCE:.0%}")

    def full(self, hw: tuple[int, int]) -> torch.Tensor:
        """(1, 1, H, W): the mask at the image's size `hw`, feathered there."""
        return self.at(hw, hw)

    def at(self, full: tuple[int, int], hw: tuple[int, int]) -> torch.Tensor:
        """(1, 1, h, w): the mask of an image of size `full`, at an octave's size `hw`."""
        key = (tuple(full), tuple(hw))
        if key not in self._cache:
            if tuple(hw) == tuple(full):
                self.check_aspect(full)
                plane = feather(resize_to(self.grey, full), self.feather, self.circular)
            else:
                plane = resize_to(self.full(full), hw)
            self._cache[key] = plane  # type: ignore[index]
        return self._cache[key]  # type: ignore[index]


def feather(mask: torch.Tensor, radius: float, circular: bool = False) -> torch.Tensor:
    """Blur (N, 1, H, W) with a Gaussian of sigma radius/3 cut off at `radius` px: a soft edge
    that reaches at most `radius` px beyond the white region, so farther away the mask is
    still exactly 0. Edges replicate (wrap around when `circular`, for seamless dreams)."""
    r = math.ceil(radius)
    if r < 1:
        return mask
    sigma = max(radius / 3, 1e-6)
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(mask.dtype)
    mode = "circular" if circular else "replicate"
    out = mask
    for kernel, pad in ((k.view(1, 1, 1, -1), (r, r, 0, 0)), (k.view(1, 1, -1, 1), (0, 0, r, r))):
        if circular and max(pad) > max(out.shape[-2:]):  # circular padding wraps at most once
            mode = "replicate"
        out = F.conv2d(F.pad(out, pad, mode=mode), kernel)
    return out.clamp_(0, 1)


def _sha256(path: Path) -> str:
    try:
        return file_sha256(path)
    except ArtconvError as exc:
        raise ArtconvError(f"--mask {exc}") from None
