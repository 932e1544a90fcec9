"""Region masks for style transfer (Gatys et al. 2017, guided Gram matrices): which style goes
where in the output (`--masks`, one grey-level image per style image, white = that style)
and, optionally, which region of each style image it is taken from (`--style-masks`).

Masks are inputs like the images: read once, checked with one-line errors naming the option
and the file, and recorded in the recipe by name and sha256. At each scale a mask is resized
to the output grid (`regions`), and the losses resize it again to each layer's grid
(`losses.layer_mask`, bilinear as the paper).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from artconv.errors import ArtconvError
from artconv.io.images import load_image
from artconv.outputs import file_sha256
from artconv.style.options import StyleOptions


def load_mask(path: str, option: str) -> tuple[torch.Tensor, dict[str, str]]:
    """A mask file as a (1,1,H,W) grey level in [0, 1] (mean of R, G, B; transparent
    areas count as white, as `load_image` composites alpha over white) and its record
    {"path", "sha256"}; a missing or broken file is a one-line error naming `option`."""
    try:
        image = load_image(path)
        digest = file_sha256(path)
    except ArtconvError as exc:
        raise ArtconvError(f"{option} {exc}") from None
    except OSError as exc:
        raise ArtconvError(f"{option} {path}: cannot read ({exc.strerror or exc})") from None
    return image.mean(0, keepdim=True)[None], {"path": str(path), "sha256": digest}


@dataclass
class Masks:
    """The masks of a run: `content[k]` (1,1,H,W) says where style k goes, `style[k]`
    where in style image k it comes from (None: all of it); `rest` is the style that
    pixels no mask covers get (None: content only)."""

    content: list[torch.Tensor]
    style: list[torch.Tensor | None]
    rest: int | None
    files: list[dict[str, str]]
    style_files: list[dict[str, str]]

    @classmethod
    def from_options(cls, options: StyleOptions) -> Masks | None:
        if not options.masks:
            return None
        content, files = zip(*(load_mask(p, "--masks") for p in options.masks), strict=True)
        style: list[torch.Tensor | None] = [None] * len(content)
        style_files: list[dict[str, str]] = []
        if options.style_masks:
            loaded = [load_mask(p, "--style-masks") for p in options.style_masks]
            style = [m for m, _ in loaded]
            style_files = [r for _, r in loaded]
        rest = None if options.masks_rest == "content" else int(options.masks_rest[5:])
        return cls(list(content), style, rest, list(files), style_files)

    def __len__(self) -> int:
        return len(self.content)

    def regions(self, hw: tuple[int, int], device: torch.device | str) -> torch.Tensor:
        """(S,1,h,w): each style's region at an output grid of `hw`; with `rest`, the part
        no mask covers (1 - sum, clipped) is added to that style's region."""
        out = torch.cat([_resize(m.to(device), hw) for m in self.content])
        if self.rest is not None:
            uncovered = (1 - out.sum(0, keepdim=True)).clamp(0, 1)
            out[self.rest:self.rest + 1] = (out[self.rest:self.rest + 1] + uncovered).clamp(0, 1)
        return out

    def style_region(self, k: int, hw: tuple[int, int],
                     device: torch.device | str) -> torch.Tensor | None:
        """(1,1,h,w): the region of style image k (resized to `hw`), or None for all."""
        mask = self.style[k]
        return None if mask is None else _resize(mask.to(device), hw)

    def record(self) -> dict[str, Any]:
        """What the recipe says about the masks: file names and sha256 hashes."""
        out: dict[str, Any] = {"masks": self.files}
        if self.style_files:
            out["style_masks"] = self.style_files
        return out


def _resize(mask: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    if tuple(mask.shape[-2:]) == tuple(hw):
        return mask
    shrink = hw[0] < mask.shape[-2] or hw[1] < mask.shape[-1]
    return F.interpolate(mask, size=hw, mode="bilinear", align_corners=False,
                         antialias=shrink).clamp(0, 1)
