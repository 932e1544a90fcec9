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

import ctypes
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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


# -- exact statistics over tiles ------------------------------------------------------------
def owned_context(net: nn.Sequential, layers: Sequence[str]) -> tuple[int, int]:
    """(align, margin) for tiles whose owned positions (`owned`) of `layers` are computed
    exactly: the deepest layer's stride, and the context those positions' receptive fields
    reach past the core on either side. About half of `layer_context`'s margin, which a
    core pixel's gradient needs: an owned position's field is centred on it."""
    wanted = set(layers)
    found = [g for g in walk(net) if g.name in wanted]
    if len(found) != len(wanted):
        raise ValueError(f"owned_context: layers {sorted(wanted)} not all in the network")
    margin = max(max(0, -g.cell.lo, g.cell.hi - g.stride + 1) for g in found)
    return found[-1].stride, margin


def owned(tile: Tile, stride: int, map_hw: tuple[int, int], image_hw: tuple[int, int]
          ) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """The positions of a layer's map (total `stride`, whole-image map `map_hw`) that `tile`
    owns, as (rows, cols) slices into the whole map and into the tile's own map.

    A position belongs to the tile whose core holds its cell's first pixel (stride x
    index); the last core along an axis also takes the map's end. Every position is thus
    owned by exactly one tile, and its receptive field lies inside the tile's context when
    the margin is at least the receptive field - 1 (`layer_context`). Core and context
    edges must be multiples of `stride` (tiles on the deepest layer's stride grid)."""
    whole, crop = [], []
    for (a, b), e, n, m in ((tile.core[:2], tile.ext[0], image_hw[0], map_hw[0]),
                            (tile.core[2:], tile.ext[2], image_hw[1], map_hw[1])):
        if a % stride or (a - e) % stride:
            raise ValueError(f"tile edge {a} (context from {e}) is not on the stride-{stride} "
                             "grid")
        lo, hi = a // stride, (m if b >= n else b // stride)
        hi = max(lo, min(hi, m))
        whole.append(slice(lo, hi))
        start = (a - e) // stride
        crop.append(slice(start, start + hi - lo))
    return (whole[0], whole[1]), (crop[0], crop[1])


def add_crop(total: torch.Tensor, tile: Tile, values: torch.Tensor) -> None:
    """Add `values`, shaped like the tile's crop, into `total` at the crop's place (wrapping
    around the image's edges where a seamless tile's context does)."""
    t, b, left, r = tile.ext
    h, w = total.shape[-2:]
    if t >= 0 and b <= h and left >= 0 and r <= w:
        total[..., t:b, left:r] += values
        return
    rows = torch.arange(t, b, device=total.device) % h
    cols = torch.arange(left, r, device=total.device) % w
    part = total.new_zeros((*total.shape[:-1], r - left)).index_add_(-2, rows, values)
    total.index_add_(-1, cols, part)


# -- memory ---------------------------------------------------------------------------------
GIB = 2**30
# Bytes an autograd forward + backward holds per activation element: saved inputs of every
# conv, ReLU outputs, max-pool indices, the gradients in flight. Measured 4 x 1.3 on VGG19
# at 256 and 512 px on the CPU (benchmarks/bench_tiled.py --calibrate); 4 x 1.5 leaves room
# for the style statistics' temporaries.
GRAD_PASS_BYTES = 4 * 1.5
NO_GRAD_PASS_BYTES = 4 * 1.1  # a layer's input and output, with the allocator's slack


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak bytes of a tiled (or untiled) engine pass at one image size: the
    image-sized `buffers` (by name: what grows with the image), one network pass
    (`pass_`: of one tile, or of the whole image when untiled) and the network's weights.
    The style and dream engines both count their buffers in one of these."""

    hw: tuple[int, int]
    tile: int  # 0: untiled
    buffers: dict[str, int] = field(default_factory=dict)
    pass_: int = 0
    network: int = 0

    @property
    def total(self) -> int:
        return sum(self.buffers.values()) + self.pass_ + self.network

    def text(self) -> str:
        parts = ", ".join(f"{k} {v / GIB:.2f}" for k, v in self.buffers.items() if v)
        where = f"tiles of {self.tile} px" if self.tile else "untiled"
        return (f"{self.total / GIB:.2f} GiB ({where}: one pass {self.pass_ / GIB:.2f}, "
                f"{parts})")


def network_bytes(net: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in net.parameters())


def pass_bytes(net: nn.Sequential, hw: tuple[int, int], until: str, *, batch: int = 1,
               grad: bool = True) -> int:
    """Estimated peak bytes of one fp32 pass of `net` up to `until` over a batch of
    `batch` images of `hw`: with `grad`, every activation is kept for the backward pass;
    without, about the largest adjacent pair."""
    acts = [3 * hw[0] * hw[1]] + [g.channels * max(g.height, 0) * max(g.width, 0)
                                  for g in walk(net, hw, until=until)]
    if grad:
        return int(batch * GRAD_PASS_BYTES * sum(acts))
    return int(batch * NO_GRAD_PASS_BYTES * max(a + b for a, b in zip(acts, acts[1:],
                                                                      strict=False)))


def largest_tile(fits: Callable[[int], bool], longest: int, align: int) -> int:
    """The largest core side (a multiple of `align`, at most `longest` rounded up) for which
    `fits(side)` holds; 0 when none does."""
    lo, hi = 0, max(1, math.ceil(longest / align))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid * align):
            lo = mid
        else:
            hi = mid - 1
    return lo * align


def available_memory(device: torch.device) -> int:
    """Bytes free on `device` now: CUDA's free memory, else the host's MemAvailable."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc's; other C libraries lack it
    except (OSError, AttributeError, TypeError):
        return None


_MALLOC_TRIM = _malloc_trim()
TRIM_SLACK = 128 * 2**20  # bytes of resident growth over a pass that make a tile give back


def _resident() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class FreedMemory:
    """Gives freed memory back to the system between the tiles of one pass on the CPU, when
    it has piled up.

    A tile's maps are a few MB to a few tens of MB each, sizes glibc serves from its heap,
    and edge tiles have other sizes than inner ones, so the holes they leave stay resident
    and the heap grows with the number of tiles: ~100 bytes per output pixel of peak RSS at
    2048 px in tiles of 512 (benchmarks/README.md, issue 24). Giving the pages back
    (glibc's malloc_trim) costs the next tile the page faults of its whole working set, so
    it is done only when the resident size at a tile's end has grown more than
    `TRIM_SLACK` over the pass's first tile's end (where a tile's reusable memory is
    counted once): the growth stays bounded, the faults are paid now and then."""

    def __init__(self, device: torch.device) -> None:
        self.on = device.type == "cpu" and _MALLOC_TRIM is not None
        self.base: int | None = None
        self.trims = 0

    def tile_done(self) -> None:
        if not self.on or _MALLOC_TRIM is None:
            return
        now = _resident()
        if now is not None and self.base is None:
            self.base = now
        elif now is None or now > self.base + TRIM_SLACK:
            _MALLOC_TRIM(0)
            self.trims += 1
