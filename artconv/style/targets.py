"""Style targets: the blended feature statistics (Gram matrices or Gaussians) of the style
images at one scale, and the network they are measured with.

Targets are computed under no_grad and depend only on the style images, the scale and the
options, so one `TargetMaker` keeps them per (style images, scale): a batch runner that calls
`StyleTransfer.run(contents, styles=...)` for chunk after chunk computes each style's targets
once per scale. With colour preservation they depend on the content too and are not kept.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from artconv.device import autocast, fp32
from artconv.errors import ArtconvError
from artconv.io import color
from artconv.io.images import fit_longest
from artconv.losses import functional as lf
from artconv.losses.terms import style_targets
from artconv.nets.extractor import FeatureExtractor
from artconv.style.masks import Masks
from artconv.style.options import StyleOptions

KEPT_STYLES = 8  # style sets whose targets a TargetMaker keeps (every scale of each)


@dataclass(frozen=True)
class Net:
    """The feature extractor as the style engine runs it: device, autocast precision and
    memory format applied in one place."""

    fx: FeatureExtractor
    device: torch.device
    precision: str
    memory_format: torch.memory_format

    def features(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        with autocast(self.device, self.precision):
            return self.fx(x.contiguous(memory_format=self.memory_format), layers)


@dataclass
class StyleTargets:
    """Blended style statistics per layer for one scale (output longest side `size`).

    Each value has a leading batch dimension of 1 (shared by every content image) or K
    (one per content image, when colour preservation made them content-dependent).
    With region masks (`regions` > 0) each value is a tuple: one target per style image,
    not blended (each style is matched within its own region).
    """

    size: int
    loss: str
    layers: dict[str, Any]
    batch: int = 1
    regions: int = 0


Given = StyleTargets | Mapping[int, StyleTargets]


class TargetMaker:
    """Computes style targets for one network and option record, and keeps those `run()`
    computed per (style images, scale). `computations` counts real computations."""

    def __init__(self, net: Net, options: StyleOptions, masks: Masks | None = None) -> None:
        self.net, self.options, self.masks = net, options, masks
        self.computations = 0
        self._kept: OrderedDict[str, dict[int, StyleTargets]] = OrderedDict()

    @property
    def needs_content(self) -> bool:
        return self.options.preserve_colors != "none"

    @torch.no_grad()
    def compute(self, styles: Sequence[torch.Tensor], size: int, *,
                content: torch.Tensor | None = None) -> StyleTargets:
        """Blended style statistics for an output whose longest side is `size`.
        `styles`: (3,H,W) images in [0, 1]; `content` (K,3,H,W) only with colour
        preservation, where each content image gets its own targets."""
        self.computations += 1
        opts = self.options
        styles = [s[0] if s.dim() == 4 else s for s in styles]
        blend = opts.blend_weights(len(styles))
        regions = len(styles) if self.masks is not None else 0
        make = self._per_style if regions else self._blended
        if self.needs_content:
            if content is None:
                raise ValueError("style_targets: preserve_colors needs the content images")
            content = as_batch(content).to(self.net.device)
            per_image = [make(styles, blend, size, c) for c in content]
            layers = {name: _stack([t[name] for t in per_image]) for name in per_image[0]}
            return StyleTargets(size, opts.style_loss, layers, len(per_image), regions)
        return StyleTargets(size, opts.style_loss, make(styles, blend, size, None),
                            regions=regions)

    def key(self, styles: Sequence[torch.Tensor] | None) -> str | None:
        """What the targets of `styles` are kept under, or None where they are not kept."""
        if styles is None or self.needs_content:
            return None
        return fingerprint(styles)

    def for_scale(self, given: Given | None, styles: Sequence[torch.Tensor] | None,
                  size: int, content: torch.Tensor, key: str | None) -> StyleTargets:
        """The targets of one scale: the caller's (`given`, checked), kept ones, or new."""
        if given is not None:
            return self._checked(given, size)
        assert styles is not None
        if key is None:
            return self.compute(styles, size, content=content)
        kept = self._kept.setdefault(key, {})
        self._kept.move_to_end(key)
        while len(self._kept) > KEPT_STYLES:
            self._kept.popitem(last=False)
        if size not in kept:
            kept[size] = self.compute(styles, size)
        return kept[size]

    def _checked(self, given: Given, size: int) -> StyleTargets:
        found = given if isinstance(given, StyleTargets) else given.get(size)
        if found is None or found.size != size:
            raise ValueError(f"run: no style targets for scale {size} (compute them with "
                             f"style_targets(styles, {size}))")
        if found.loss != self.options.style_loss:
            raise ValueError(f"run: targets are for {found.loss}, options say "
                             f"{self.options.style_loss}")
        want = len(self.masks) if self.masks is not None else 0
        if found.regions != want:
            raise ValueError(f"run: targets are for {found.regions or 'no'} mask regions, "
                             f"options give {want or 'no'} --masks")
        return found

    def _per_style(self, styles: Sequence[torch.Tensor], blend: Sequence[float], size: int,
                   content: torch.Tensor | None) -> dict[str, Any]:
        """Region masks: each style image's own (guided) statistics, within its style mask."""
        opts, masks = self.options, self.masks
        assert masks is not None
        layers = list(opts.style_layers)
        found: dict[str, list[Any]] = {name: [] for name in layers}
        for k, image in enumerate(styles):
            image = _prepared(image.to(self.net.device, torch.float32), content, size, opts)
            region = masks.style_region(k, tuple(image.shape[-2:]), self.net.device)
            feats = self.net.features(image, layers)
            with fp32():
                for name in layers:
                    m = (None if region is None
                         else lf.layer_mask(region, feats[name].shape[-2:]))
                    if m is not None and float(lf.mask_mass(m)[0]) < lf.MIN_MASS:
                        raise ArtconvError(f"--style-masks {masks.style_files[k]['path']}: "
                                           f"selects nothing of style image {k + 1}")
                    found[name].append(lf.style_target(
                        opts.style_loss, lf.statistics(opts.style_loss, feats[name], m)))
        return {name: tuple(t) for name, t in found.items()}

    def _blended(self, styles: Sequence[torch.Tensor], blend: Sequence[float], size: int,
                 content: torch.Tensor | None) -> dict[str, Any]:
        opts = self.options
        layers = list(opts.style_layers)
        stats = []
        for image in styles:
            image = _prepared(image.to(self.net.device, torch.float32), content, size, opts)
            feats = self.net.features(image, layers)
            with fp32():
                stats.append({name: lf.statistics(opts.style_loss, feats[name])
                              for name in layers})
        return style_targets(opts.style_loss, stats, blend)


def _prepared(image: torch.Tensor, content: torch.Tensor | None, size: int,
              opts: StyleOptions) -> torch.Tensor:
    """A style image (3,H,W) colour-matched as the options ask and resized for `size`,
    as a batch of one."""
    if opts.preserve_colors == "histogram":
        image = color.match_color(image, content)
    elif opts.preserve_colors == "luminance":
        y = color.match_luminance(color.luminance(image), color.luminance(content))
        image = y.expand(3, -1, -1)
    longest = max(1, round(size * opts.style_scale))
    hw = fit_longest(image.shape[-2:], longest)
    if hw == tuple(image.shape[-2:]):  # already so (read at --style-size): interpolate
        return image[None]  # would give the same values, in a copy of print size
    # not resize_to, which clamps: a colour-matched style may leave [0, 1] on purpose
    return F.interpolate(image[None], size=hw, mode="bicubic", antialias=True)


def fingerprint(styles: Sequence[torch.Tensor]) -> str:
    """sha1 of the style images' shapes and float32 pixels (what targets are made from)."""
    digest = hashlib.sha1()
    for image in styles:
        pixels = image.detach().to("cpu", torch.float32).contiguous()
        digest.update(repr(tuple(pixels.shape)).encode())
        digest.update(pixels.numpy())  # its buffer: tobytes() copied a print-sized style
    return digest.hexdigest()


def as_batch(image: torch.Tensor) -> torch.Tensor:
    """(3,H,W) -> (1,3,H,W); (K,3,H,W) as is; anything else is refused."""
    if image.dim() == 3:
        return image.unsqueeze(0)
    if image.dim() != 4 or image.shape[1] != 3:
        raise ArtconvError(f"expected an image (3,H,W) or batch (K,3,H,W), got "
                           f"{tuple(image.shape)}")
    return image


def _stack(items: list[Any]) -> Any:
    if isinstance(items[0], tuple):  # region targets: one per style image
        return tuple(_stack(list(per_style)) for per_style in zip(*items, strict=True))
    if isinstance(items[0], lf.GaussianTarget):
        return lf.GaussianTarget(*(torch.cat([getattr(t, f) for t in items])
                                       for f in ("mean", "cov", "cov_sqrt")))
    return torch.cat(items)
