"""The loss terms as pieces: each holds a target made once, gives one value per image (K,)
and, when `relative` (--loss-scale auto), divides by its target's own magnitude.

Every term is called as ``term(feats, image) -> (K,)`` with the network's maps by layer name
and the image they came from, so an objective is a weighted sum of terms whatever they read.
The style optimiser (`artconv.style.optimise.Objective`), its tiled form
(`artconv.style.tiled.TiledObjective`) and the fast-network trainer assemble these same
pieces; a new term is written here once.

Tiling: the style losses are functions of sums over the positions of a layer (``sum m f f^T``
and, for W2, ``sum m f``), the content loss a sum over positions. So the feature terms also
take a tile's owned positions (`Part`): `Content.owned` gives their share of the content
loss, `Style.sums` their share of the sums, and `Style.from_sums` the loss from the sums
gathered over all tiles (what `Style.__call__` gives from whole maps, up to float rounding).
`TV.in_bands` gives TV and its gradient a band of rows at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F

from artconv.device import fp32
from artconv.losses import functional as lf
from artconv.losses.functional import GaussianTarget, StyleTarget
from artconv.nets import precision

Slices = tuple[slice, slice]
Sums = dict[tuple[str, int], tuple[torch.Tensor, ...]]  # (layer, region) -> gathered sums
TV_BAND_PIXELS = 1 << 20  # pixels per band of the banded TV (its temporaries ~ 10x that)


class Term(Protocol):
    """What an objective sums: maps by layer name and the image -> (K,) per image."""

    layers: tuple[str, ...]  # the network layers it reads (none for pixel terms)

    def __call__(self, feats: Mapping[str, torch.Tensor], image: torch.Tensor
                 ) -> torch.Tensor: ...


class Part(NamedTuple):
    """The positions of one layer's map that a tile owns: where they sit in the whole map,
    the whole map's size, and their features: (N,C,p) for the sums (fp32, or bf16 maps as
    they are: the Gram sums may be a fused bf16 product, `lf.gram_sum`), or for
    `Style.gradients` maps as the network made them (dtype, layout): the owned maps
    (N,C,h,w), or the tile's whole map with `local`, where the owned ones sit in it."""

    where: Slices
    grid: tuple[int, int]
    features: torch.Tensor
    local: Slices | None = None


# -- content ---------------------------------------------------------------------------------
class ContentLoss:
    """One layer's content loss: mean squared difference to `target` (N|1,C,H,W), divided by
    the target's mean square when `relative`. Cheap to make, so a trainer makes one per
    step from the batch's own maps."""

    def __init__(self, layer: str, target: torch.Tensor, relative: bool = False) -> None:
        self.layer, self.target = layer, target
        self.scale: torch.Tensor | None = None
        if relative:
            with torch.no_grad(), fp32():
                self.scale = lf.content_scale(target)

    def value(self, f: torch.Tensor) -> torch.Tensor:
        """The layer's maps (N,C,H,W) -> (N,)."""
        term = lf.content_loss(f, self.target)
        return term if self.scale is None else term / self.scale

    def owned(self, part: Part) -> torch.Tensor:
        """The owned positions' share (N,) of `value` (the shares of all tiles sum to it)."""
        rows, cols = part.where
        t = self.target[..., rows, cols].flatten(2)
        c, h, w = self.target.shape[1:]
        term = (part.features - t).square().sum((1, 2)) / (c * h * w)
        return term if self.scale is None else term / self.scale


class Content:
    """The content row: the mean of its layers' `ContentLoss`es."""

    def __init__(self, targets: Mapping[str, torch.Tensor], relative: bool = False) -> None:
        self.pieces = [ContentLoss(name, t, relative) for name, t in targets.items()]
        self.layers = tuple(p.layer for p in self.pieces)

    def __call__(self, feats: Mapping[str, torch.Tensor], image: torch.Tensor
                 ) -> torch.Tensor:
        if not self.pieces:
            return image.new_zeros(image.shape[0])
        total = sum(p.value(feats[p.layer]) for p in self.pieces)
        assert isinstance(total, torch.Tensor)
        return total / len(self.pieces)

    def owned(self, parts: Mapping[str, Part]) -> torch.Tensor:
        """A tile's share (N,) of the row (its layers must not be empty)."""
        total = sum(p.owned(parts[p.layer]) for p in self.pieces)
        assert isinstance(total, torch.Tensor)
        return total / len(self.pieces)


# -- style -----------------------------------------------------------------------------------
class Regions:
    """Region masks (S,1,h,w) in [0, 1] at the image's grid (Gatys et al. 2017's guided
    style), resized to each layer's grid once (`lf.layer_mask`)."""

    def __init__(self, masks: torch.Tensor) -> None:
        self.masks = masks
        self._at: dict[tuple[int, int], torch.Tensor] = {}

    def __len__(self) -> int:
        return self.masks.shape[0]

    def at(self, hw: Sequence[int]) -> torch.Tensor:
        """The masks (S,1,h,w) at a layer's grid `hw`."""
        key = (int(hw[0]), int(hw[1]))
        if key not in self._at:
            self._at[key] = lf.layer_mask(self.masks, key)
        return self._at[key]


class StyleLoss:
    """One layer's style loss against one `target`: a Gram matrix (N|1,C,C) or a
    `GaussianTarget` (W2). Within region `region` of `regions` if given: the guided loss,
    weighted by the region's mass at the layer (a region pulls as much as it covers).
    `relative`: divided by the target's magnitude (`lf.target_scale`)."""

    def __init__(self, target: StyleTarget, regions: Regions | None = None, region: int = 0,
                 relative: bool = False) -> None:
        self.target, self.regions, self.region = target, regions, region
        self.w2 = isinstance(target, GaussianTarget)
        self.scale: torch.Tensor | None = None
        if relative:
            with torch.no_grad(), fp32():
                self.scale = lf.target_scale(target)

    def mask(self, grid: Sequence[int]) -> torch.Tensor | None:
        """The region's mask (1,1,h,w) at a layer's grid, None without regions."""
        if self.regions is None:
            return None
        return self.regions.at(grid)[self.region:self.region + 1]

    def value(self, f: torch.Tensor) -> torch.Tensor:
        """The layer's maps (N,C,H,W) -> (N,)."""
        m = self.mask(f.shape[-2:])
        if isinstance(self.target, GaussianTarget):
            term = lf.w2_loss(f, self.target, m)
        else:
            term = lf.gram_loss(f, self.target, m)
        if self.scale is not None:
            term = term / self.scale
        if m is not None:
            term = term * lf.mask_mass(m)
        return term

    def sums(self, part: Part) -> tuple[torch.Tensor, ...]:
        """The owned positions' sums: (sum m f f^T,), and sum m f for W2, with
        `lf.moment_sums`'s one-matmul backward."""
        m = None
        if self.regions is not None:
            rows, cols = part.where
            m = self.regions.at(part.grid)[self.region:self.region + 1, :, rows, cols]
            m = m.flatten(2)
        if not self.w2:
            return (lf.gram_sum(part.features, m, self.target),)
        first, second = lf.moment_sums(part.features, m)
        return (second, first)

    def gradient(self, part: Part, slopes: Sequence[torch.Tensor | None]
                 ) -> torch.Tensor | None:
        """The gradient of ``<D2, sum m f f^T> + <D1, sum m f>`` over the owned positions
        (the `slopes` D of the loss with respect to `sums`) at `part.features`: ``m ((D2 +
        D2^T) f + D1)`` at the owned positions (all of them, or `part.local` of a tile's
        whole map), 0 elsewhere, in the maps' dtype and layout (`lf.moment_grad`). Not
        autograd's: the surrogate's value is never needed, so its product (and the maps
        widened for it) is not computed. None if D is all None."""
        d2, d1 = slopes[0], (slopes[1] if self.w2 else None)
        if d2 is None and d1 is None:
            return None
        f = part.features
        m = None
        if self.regions is not None:
            rows, cols = part.where
            m = self.regions.at(part.grid)[self.region:self.region + 1, :, rows, cols]
        kind = precision.choose(f.device, f.dtype, f.shape[1], f[0, 0].numel())
        return lf.moment_grad(f, d2, d1, m, kind, part.local).to(f.dtype)

    def from_sums(self, sums: tuple[torch.Tensor, ...], grid: Sequence[int]) -> torch.Tensor:
        """`value` from the sums over all of a layer's positions (grid `grid`)."""
        positions = int(grid[0]) * int(grid[1])
        m = self.mask(grid)
        mass = sums[0].new_tensor(float(positions)) if m is None else m[0].sum().float()
        weight = mass.clamp_min(lf.MIN_MASS * positions)
        stats = lf.statistics_from_sums("w2" if self.w2 else "gram", sums[0],
                                        sums[1] if self.w2 else None, weight)
        if isinstance(self.target, GaussianTarget):
            term = lf.w2_from_moments(*stats, self.target)
        else:
            term = (stats[0] - self.target).square().flatten(1).mean(1)
        if self.scale is not None:
            term = term / self.scale
        if m is not None:
            term = term * (mass / positions)
        return term


class Style:
    """The style row: the sum over layers of the layer's weight times its loss (summed over
    the regions when there are some). `targets` by layer: one target, or with `regions` a
    tuple of one per region (style image); `layer_weights` (layer, weight) in order."""

    def __init__(self, targets: Mapping[str, StyleTarget | tuple[StyleTarget, ...]],
                 layer_weights: Iterable[tuple[str, float]], regions: Regions | None = None,
                 relative: bool = False) -> None:
        self.regions = regions
        self.pieces: list[tuple[str, float, tuple[StyleLoss, ...]]] = []
        for name, lw in layer_weights:
            given = targets[name]
            per = given if isinstance(given, tuple) else (given,)
            if isinstance(given, tuple) != (regions is not None) or (
                    regions is not None and len(per) != len(regions)):
                raise ValueError(f"Style: layer {name}: {len(per)} targets for "
                                 f"{len(regions) if regions is not None else 'no'} regions")
            self.pieces.append((name, lw, tuple(
                StyleLoss(t, regions, k, relative) for k, t in enumerate(per))))
        self.layers = tuple(dict.fromkeys(name for name, _, _ in self.pieces))

    def __call__(self, feats: Mapping[str, torch.Tensor], image: torch.Tensor
                 ) -> torch.Tensor:
        total: torch.Tensor | int = 0
        for name, lw, per in self.pieces:
            f = feats[name]
            layer = sum(p.value(f) for p in per)
            total = total + lw * layer
        if isinstance(total, int):
            return image.new_zeros(image.shape[0])
        return total

    def sums(self, parts: Mapping[str, Part], into: Sums | None = None) -> Sums:
        """A tile's sums per (layer, region), added to those gathered `into` so far."""
        gathered: Sums = {} if into is None else into
        for name, _, per in self.pieces:
            for k, p in enumerate(per):
                part = p.sums(parts[name])
                old = gathered.get((name, k))
                gathered[(name, k)] = part if old is None else tuple(
                    a + b for a, b in zip(old, part, strict=True))
        return gathered

    def from_sums(self, sums: Sums, grids: Mapping[str, Sequence[int]]) -> torch.Tensor:
        """The row (K,) from the sums over all positions (`grids`: each layer's map size)."""
        total: torch.Tensor | int = 0
        for name, lw, per in self.pieces:
            for k, p in enumerate(per):
                total = total + lw * p.from_sums(sums[(name, k)], grids[name])
        assert isinstance(total, torch.Tensor)
        return total

    def gradients(self, parts: Mapping[str, Part], slopes: Mapping[tuple[str, int], Sequence[
            torch.Tensor | None]]) -> dict[str, torch.Tensor]:
        """Per layer, the gradient at `Part.features` (a tile's owned maps, or its whole map
        with `Part.local`) of the surrogate ``sum <D, s>`` over the tile's own sums s and
        the row's derivatives D with respect to the gathered sums: at every owned position,
        the row's true gradient; 0 at the margin's."""
        out: dict[str, torch.Tensor] = {}
        for name, _, per in self.pieces:
            for k, p in enumerate(per):
                g = p.gradient(parts[name], slopes[(name, k)])
                if g is not None:  # each a new tensor: the first may take the rest
                    out[name] = g if name not in out else out[name].add_(g)
        return out


# -- pixels ----------------------------------------------------------------------------------
class TV:
    """Total variation of the image (`lf.tv_loss`): l2 or l1, `wrap` for seamless
    textures."""

    layers: tuple[str, ...] = ()

    def __init__(self, kind: str = "l2", wrap: bool = False) -> None:
        self.kind, self.wrap = kind, wrap

    def __call__(self, feats: Mapping[str, torch.Tensor], image: torch.Tensor
                 ) -> torch.Tensor:
        return lf.tv_loss(image, self.kind, wrap=self.wrap)  # type: ignore[arg-type]

    def in_bands(self, x: torch.Tensor, grad: torch.Tensor, weight: float) -> torch.Tensor:
        """The value (K,) at `x`, and `weight` times its gradient added into `grad`, a band
        of rows at a time (with the row below each band), so its temporaries stay
        band-sized however large the image."""
        h = x.shape[-2]
        band = max(1, TV_BAND_PIXELS // max(1, x.shape[-1]))
        total = x.new_zeros(x.shape[0])
        for top in range(0, h, band):
            bottom = min(h, top + band)
            below = (bottom if bottom < h else 0 if self.wrap else h - 1)
            with torch.enable_grad(), fp32():
                rows = torch.cat([x[..., top:bottom, :], x[..., below:below + 1, :]], -2)
                rows = rows.detach().requires_grad_(True)
                # `lf.tv_loss`'s differences for the band's rows: the row below gives
                # the last one's (itself at the bottom edge, row 0 when seamless)
                side = F.pad(rows[..., :-1, :], (0, 1, 0, 0), mode="circular" if self.wrap
                             else "replicate")
                dx = side[..., 1:] - side[..., :-1]
                dy = rows[..., 1:, :] - rows[..., :-1, :]
                per = (dx.square() + dy.square() if self.kind == "l2"
                       else dx.abs() + dy.abs())
                value = per.flatten(1).sum(1) / (x.shape[1] * h * x.shape[-1])
                (g,) = torch.autograd.grad(weight * value.sum(), rows)
            total += value.detach()
            grad[..., top:bottom, :] += g[..., :-1, :]
            grad[..., below:below + 1, :] += g[..., -1:, :]
        return total


class Pixel:
    """Pixel-space functions of the image (a video's temporal prior): images (K,C,h,w) ->
    (K,) each, summed. Each resizes its own references."""

    layers: tuple[str, ...] = ()

    def __init__(self, fns: Sequence[Callable[[torch.Tensor], torch.Tensor]]) -> None:
        self.fns = tuple(fns)

    def __call__(self, feats: Mapping[str, torch.Tensor], image: torch.Tensor
                 ) -> torch.Tensor:
        total = sum(fn(image) for fn in self.fns)
        assert isinstance(total, torch.Tensor)
        return total


# -- style targets from images ---------------------------------------------------------------
def style_targets(loss: lf.StyleKind, stats: Sequence[Mapping[str, tuple[torch.Tensor, ...]]],
                  blend: Sequence[float]) -> dict[str, StyleTarget]:
    """Blended targets by layer from each style image's `lf.statistics` by layer (made
    once, under no_grad and fp32), with blend weights summing to 1."""
    with fp32():
        return {name: lf.style_target(loss, lf.blend([s[name] for s in stats], blend))
                for name in stats[0]}
