"""The gradient of an image objective computed tile by tile, in the memory of one tile.

Each tile is a *core* (the pixels whose gradient it supplies) plus a *margin* of context on
every side. The gradient at a core pixel depends only on positions whose receptive field
covers it, and those fields lie within (receptive field - 1) px of the pixel; with a margin
at least that wide, and tiles placed on the network's stride grid, the tiled gradient equals
the untiled one exactly. A margin of 0 is the TensorFlow tutorial's way: cheaper, exact only
away from the tile borders, with the seams hidden by a fresh random roll every step.

One `Tile` serves every tiled pass: the dream's gradient (`tile_grid`, a uniform margin) and
the features engine (`artconv.features.plan`, which sizes each tile's context per layer from
`artconv.nets.geometry`); both lay cores out with `spans` and pair them with `grid`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from artconv.nets.geometry import walk

Span = tuple[tuple[int, int], tuple[int, int]]  # ((core start, end), (ext start, end)), one axis


@dataclass(frozen=True)
class Tile:
    """`core` (the pixels this tile supplies) and `ext` (core plus its context, clipped to the
    image: the crop that is run) as (top, bottom, left, right) in image pixels. For a
    seamless network (`tile_grid(wrap=True)`) `ext` may run past the image's edges: the crop
    then wraps around, as the network sees the image."""

    core: tuple[int, int, int, int]
    ext: tuple[int, int, int, int]

    @property
    def ext_area(self) -> int:
        t, b, left, r = self.ext
        return (b - t) * (r - left)

    @property
    def core_area(self) -> int:
        t, b, left, r = self.core
        return (b - t) * (r - left)

    def crop(self, image: torch.Tensor) -> torch.Tensor:
        t, b, left, r = self.ext
        h, w = image.shape[-2:]
        if t >= 0 and b <= h and left >= 0 and r <= w:
            return image[..., t:b, left:r]
        rows = torch.arange(t, b, device=image.device) % h
        cols = torch.arange(left, r, device=image.device) % w
        return image.index_select(-2, rows).index_select(-1, cols)

    def core_of_ext(self, ext_values: torch.Tensor) -> torch.Tensor:
        """The core part of a tensor shaped like the extended tile."""
        (t, b, left, r), (et, _, el, _) = self.core, self.ext
        return ext_values[..., t - et:b - et, left - el:r - el]


def tile_grid(height: int, width: int, tile: int, margin: int = 0, align: int = 1,
              min_side: int = 1, *, wrap: bool = False) -> list[Tile]:
    """Tiles covering a height x width image with cores of at most ~`tile` px (0: one tile).

    Core edges and margins are multiples of `align` (the deepest layer's stride), so each
    tile sees the pooling grid exactly where the whole image does. Cores are balanced so no
    sliver tile is left at the end. Each extended tile spans at least `min_side` px (the
    network's smallest input) where the image does: a last sliver core with a small margin
    gets more context inward instead of being too small to run.

    `wrap` (a seamless network, which sees the image on a torus): the context runs on past
    the image's edges, around to the other side, so border tiles are as exact as inner ones;
    an axis whose core and context would span the whole image is run whole (the network's
    own circular padding is then exact)."""
    if tile <= 0 or (height <= tile and width <= tile):
        return [Tile((0, height, 0, width), (0, height, 0, width))]
    margin = math.ceil(margin / align) * align

    def axis(n: int) -> list[Span]:
        if wrap:
            return [((a, b), _wrapped(a, b, n, margin, min_side)) for a, b in spans(n, tile,
                                                                                    align)]
        return [((a, b), _widen(max(0, a - margin), min(n, b + margin), n, min_side, align))
                for a, b in spans(n, tile, align)]

    return grid(axis(height), axis(width))


def grid(rows: Sequence[Span], cols: Sequence[Span]) -> list[Tile]:
    """Every row span with every column span, row by row."""
    return [Tile((top, bottom, left, right), (et, eb, el, er))
            for (top, bottom), (et, eb) in rows for (left, right), (el, er) in cols]


def _wrapped(a: int, b: int, n: int, margin: int, least: int) -> tuple[int, int]:
    """The context of core [a, b) on a circular axis of n px (may start below 0 or end past
    n); the whole axis when that is as large."""
    lo, hi = a - margin, b + margin
    if hi - lo >= n or least >= n:
        return 0, n
    return lo, max(hi, lo + least)


def _widen(lo: int, hi: int, n: int, least: int, align: int) -> tuple[int, int]:
    if hi - lo >= least:
        return lo, hi
    if n <= least:
        return 0, n
    start = max(0, (hi - least) // align * align)  # on the stride grid, like every edge
    return start, max(hi, min(n, start + least))


def spans(n: int, tile: int, align: int = 1) -> list[tuple[int, int]]:
    """[start, end) cores covering 0..n, balanced so no sliver is left at the end: each as
    long as `tile` or less, rounded up to a multiple of `align` (so never longer when `tile`
    is one), every start on the `align` grid."""
    count = math.ceil(n / max(tile, 1))
    size = max(align, math.ceil(n / count / align) * align)
    return [(start, min(n, start + size)) for start in range(0, n, size)]


def layer_context(net: nn.Sequential, layer: str) -> tuple[int, int]:
    """(align, margin) for exact tiles up to `layer`: its total stride, on whose grid tiles
    must start, and its receptive field - 1, the context a core pixel's gradient needs."""
    deepest = list(walk(net, until=layer))[-1]
    return deepest.stride, deepest.receptive_field - 1


def tiled_gradient(score: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor,
                   tiles: Sequence[Tile], weights: Sequence[float] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(d score / d image, score) assembled from one tile at a time.

    `score(crop)` must be a mean over positions (as artconv's objectives are). Each tile's
    score is weighted by its share of the whole image's positions, which turns the per-tile
    means into the image's mean, so the gradient has the untiled scale: `weights`, one per
    tile, or by default its share of the image area (exact when every edge is a multiple
    of the network's stride). The returned score is the core-weighted sum of tile scores
    (exact when there is one tile)."""
    height, width = image.shape[-2:]
    if weights is None:
        weights = [t.ext_area / (height * width) for t in tiles]
    grad = torch.zeros_like(image)
    total = torch.zeros((), device=image.device)
    with torch.enable_grad():
        for t, weight in zip(tiles, weights, strict=True):
            crop = t.crop(image).detach().requires_grad_(True)
            value = score(crop) * weight
            (g,) = torch.autograd.grad(value, crop)
            t0, b0, l0, r0 = t.core
            grad[..., t0:b0, l0:r0] = t.core_of_ext(g)
            total = total + value.detach().float() * (t.core_area / t.ext_area)
    return grad, total
