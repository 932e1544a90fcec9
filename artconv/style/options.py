"""The style engine's option record: the CLI's flags, presets, manifests and recipes all
read it. No torch here, so `artconv style --help` starts fast."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from artconv.errors import ArtconvError
from artconv.losses.options import check_loss_fields
from artconv.options import MAX_MEMORY_GIB, CoreOptions, opt

DEFAULT_SIZE = 512
LADDER_STEP = math.sqrt(2)  # crowsonkb's ratio between scales

@dataclass
class StyleOptions(CoreOptions):
    """Everything `artconv style`, `artconv.stylize` and batch jobs accept."""

    size: int | None = opt(
        None, "Longest side of the output in px (default 512, or the last of --scales).",
        min=16, short="-s")
    scales: tuple[int, ...] = opt(
        (), "Coarse-to-fine sizes (longest side), e.g. 256,512,1024: optimise small, "
        "upsample, continue. The last is the output size unless --size is larger.", min=16)
    min_scale: int | None = opt(
        None, "Automatic coarse-to-fine ladder from this size up to --size in x1.41 steps "
        "(crowsonkb's); unset = one scale. Ignored with --scales.", min=16)
    iterations: tuple[int, ...] = opt(
        (500,), "Steps per scale (L-BFGS: loss evaluations). Several values go to the scales "
        "in order, the last repeating: 1000,500 = 1000 on the first scale, 500 on the rest.",
        min=0, short="-i")
    optimizer: Literal["lbfgs", "adam"] = opt("lbfgs", "L-BFGS (Gatys, neural-style) or Adam "
                                             "(less memory; see --avg-decay).")
    lbfgs_history: int = opt(
        100, "L-BFGS only: steps of history kept (neural-style's -lbfgs_num_correction); each "
        "costs two image-sized buffers, the real memory limit at print sizes.", min=1)
    tile: int | str = opt(
        0, "Compute each step tile by tile, cores of about this many px per side, in the "
        "memory of one tile; exact (the result equals the untiled one). auto = untiled "
        "where it fits in --max-memory, else the largest tile that does; 0 = never tile.",
        min=0)
    bit_depth: int = opt(
        8, "Bits per channel of the output picture: 16 for print (PNG and TIFF only).",
        min=8, max=16)
    max_memory: float | None = opt(
        None, "GiB a run may use (default: what the device has free): --tile auto sizes its "
        "tiles to it, and a run that would not fit is refused before it starts.", gt=0,
        max=MAX_MEMORY_GIB)
    lr: float | None = opt(None, "Step size; default 1 for L-BFGS, 0.02 for Adam (crowsonkb).",
                           gt=0)
    avg_decay: float = opt(
        0.0, "Adam only: output the exponential moving average of the iterates with this "
        "decay (0.99 in crowsonkb), which removes Adam's noise; 0 = off.", min=0, max=0.9999)
    init: str = opt("content", "Start image: content, noise (uniform, from --seed) or an "
                               "image path.")
    content_layers: tuple[str, ...] = opt(("relu4_2",), "Layers whose features the result "
                                          "must keep from the content image (several are "
                                          "averaged, so the weight keeps its meaning).")
    style_layers: tuple[str, ...] = opt(
        ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
        "Layers whose feature statistics the result takes from the style images.")
    style_layer_weights: tuple[float, ...] = opt(
        (), "Relative weight per style layer, normalised to sum 1 (default: equal for gram, "
        "256,64,16,4,1 for w2).", min=0)
    style_loss: Literal["gram", "w2"] = opt(
        "gram", "gram: MSE of Gram matrices (Gatys); w2: Wasserstein-2 distance of the "
        "features' mean and covariance (crowsonkb).")
    content_weight: float | None = opt(None, "Content loss weight (default: per network "
                                       "scale and style loss, see docs).", min=0)
    style_weight: float | None = opt(None, "Style loss weight (default: per network scale "
                                     "and style loss).", min=0)
    tv_weight: float | None = opt(None, "Total-variation (smoothness) weight (default: per "
                                  "network scale).", min=0)
    tv_loss: Literal["l2", "l1"] = opt("l2", "Total variation: l2 (smooth) or l1 (keeps "
                                       "edges).")
    blend: tuple[float, ...] = opt((), "Weights of several style images, e.g. 0.7,0.3 "
                                   "(normalised to sum 1); default equal.", min=0)
    style_scale: float = opt(1.0, "Style image size relative to the output (at each scale).",
                             gt=0)
    masks: tuple[str, ...] = opt(
        (), "Region masks (Gatys 2017): one grey-level image per style image, white = that "
        "style there; soft masks blend. Replaces --blend.")
    masks_rest: str = opt(
        "content", "What pixels no mask covers get: content (content only, no style) or "
        "styleN (the N-th style image, from 0).")
    style_masks: tuple[str, ...] = opt(
        (), "With --masks: one mask per style image selecting the region of the style "
        "image that maps to its --masks region (default: the whole style image).")
    loss_scale: Literal["auto", "network"] | None = opt(
        None, "auto: every loss relative to its target's own magnitude, so the weights mean "
        "the same on any network; network: the raw losses with weights per network scale "
        "(VGG). Default: auto with --backbone, else network.")
    preserve_colors: Literal["none", "luminance", "histogram"] = opt(
        "none", "Keep the content's colours (Gatys 2017): luminance = transfer on luminance "
        "only; histogram = give the style images the content's colour mean and covariance.")

    def __post_init__(self) -> None:
        # --tile is a number or "auto": CLI strings and preset values become one of them.
        if isinstance(self.tile, str):
            word = self.tile.strip().lower()
            self.tile = 0 if word in ("0", "off", "none") else int(word) if word.isdigit() \
                else word

    def check(self) -> None:
        super().check()
        if isinstance(self.tile, bool) or (isinstance(self.tile, str) and self.tile != "auto"):
            raise ArtconvError(f"--tile {self.tile!r}: a size in px, auto, or 0 (no tiling)")
        if self.bit_depth not in (8, 16):
            raise ArtconvError(f"--bit-depth {self.bit_depth}: 8 or 16")
        if self.scales:
            if list(self.scales) != sorted(set(self.scales)):
                raise ArtconvError(f"--scales {','.join(map(str, self.scales))}: must increase")
            if self.size is not None and self.scales[-1] > self.size:
                raise ArtconvError(f"--scales goes up to {self.scales[-1]}, past --size "
                                   f"{self.size}")
        if not self.iterations:
            raise ArtconvError("--iterations: give at least one number")
        # An automatic ladder's length depends on --size, so a preset's 1000,500 must fit
        # any; only explicit --scales make surplus values a mistake.
        if self.scales and len(self.iterations) > len(self.ladder()):
            raise ArtconvError(f"--iterations: {len(self.iterations)} values for "
                               f"{len(self.ladder())} scales ({self._ladder_text()})")
        if self.avg_decay and self.optimizer != "adam":
            raise ArtconvError("--avg-decay: averaging iterates needs --optimizer adam")
        check_loss_fields(self)
        if self.masks_rest != "content" and not re.fullmatch(r"style\d+", self.masks_rest):
            raise ArtconvError(f"--masks-rest {self.masks_rest!r}: content or styleN "
                               "(style0, style1, ...)")
        if self.masks and self.blend:
            raise ArtconvError("--blend and --masks: masks say where each style goes; "
                               "give one of them")
        if not self.masks and (self.style_masks or self.masks_rest != "content"):
            which = "--style-masks" if self.style_masks else "--masks-rest"
            raise ArtconvError(f"{which}: needs --masks")
        if self.masks and self.style_masks and len(self.style_masks) != len(self.masks):
            raise ArtconvError(f"--style-masks: {len(self.style_masks)} masks for "
                               f"{len(self.masks)} --masks")

    # -- derived ---------------------------------------------------------------------------
    @property
    def output_size(self) -> int:
        return self.size or (self.scales[-1] if self.scales else DEFAULT_SIZE)

    @property
    def style_size(self) -> int:
        """The longest side style images are used at (their size at the last scale), so
        the longest side they need be read at."""
        return max(1, round(self.output_size * self.style_scale))

    def ladder(self) -> list[int]:
        """The longest side at each scale, coarse to fine. Explicit --scales win over
        --min-scale; a larger --size is added as the last scale."""
        if self.scales:
            extra = [self.size] if self.size is not None and self.size > self.scales[-1] else []
            return [*self.scales, *extra]
        end = self.output_size
        if self.min_scale is None or self.min_scale >= end:
            return [end]
        sizes, i = set(), 0
        while round(end / LADDER_STEP**i) >= self.min_scale:
            sizes.add(round(end / LADDER_STEP**i))
            i += 1
        return sorted(sizes)

    def blend_weights(self, n_styles: int) -> list[float]:
        """--blend normalised to sum 1 (equal when not given), checked against the count
        (and --masks against it: callers check this before loading anything)."""
        self.check_masks(n_styles)
        blend = self.blend or (1.0,) * n_styles
        if len(blend) != n_styles:
            raise ArtconvError(f"--blend: {len(blend)} weights for {n_styles} style image(s)")
        return [b / sum(blend) for b in blend]

    def check_masks(self, n_styles: int) -> None:
        """--masks (and --masks-rest styleN) against the number of style images."""
        if not self.masks:
            return
        if len(self.masks) != n_styles:
            raise ArtconvError(f"--masks: {len(self.masks)} mask(s) for {n_styles} style "
                               "image(s); give one per style image")
        if self.masks_rest != "content" and int(self.masks_rest[5:]) >= n_styles:
            raise ArtconvError(f"--masks-rest {self.masks_rest}: there are {n_styles} "
                               f"style image(s) (style0..style{n_styles - 1})")

    def iterations_at(self, scale_index: int) -> int:
        return self.iterations[min(scale_index, len(self.iterations) - 1)]

    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (0.02 if self.optimizer == "adam" else 1.0)

    def _ladder_text(self) -> str:
        return ",".join(map(str, self.ladder()))
