"""Computing a `FeaturePlan`: each tile through the network, each map brought to the pixels
of the tile's core and written into the output (a tensor in RAM, or tensors that view a
memory-mapped .npy).

Coarse maps are interpolated at exactly their cells' centres (for VGG's 2x2 pools this is
torch's `align_corners=False` at scale s); stride-1 maps (`--pooling none`, or layers before
the first pool) are never interpolated, only re-indexed by the integer part of their offset.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from artconv.device import autocast, memory_format
from artconv.features.plan import CHUNK_CHANNELS, FeaturePlan, LayerSlot
from artconv.nets.extractor import FeatureExtractor
from artconv.nets.geometry import CellGeometry
from artconv.nets.tiling import Tile

# One image's features: (C, H, W), or {layer: (C, h, w)} at each layer's own resolution.
Output = torch.Tensor | dict[str, torch.Tensor]


def allocate(plan: FeaturePlan) -> Output:
    """An in-RAM output for `plan`: one (C, H, W) tensor, or {name: map} with upsample none."""
    if plan.upsample == "none":
        return {n: torch.empty(s, dtype=plan.dtype) for n, s in plan.shapes().items()}
    return torch.empty(plan.shape, dtype=plan.dtype)


@torch.no_grad()
def extract_into(fx: FeatureExtractor, image: torch.Tensor, plan: FeaturePlan, out: Output, *,
                 device: torch.device, precision: str,
                 on_tile: Callable[[int], bool] | None = None) -> bool:
    """Run `plan` tile by tile and write each tile's core into `out`. After tile i (0-based)
    `on_tile(i)` is called; False stops, and False is returned (the tiles not run are left
    as they were in `out`). True when every tile was written."""
    image = image if image.dim() == 4 else image.unsqueeze(0)
    layout = memory_format(device, precision)
    names = [s.name for s in plan.layers]
    for i, tile in enumerate(plan.tiles):
        crop = tile.crop(image).to(device).contiguous(memory_format=layout)
        with autocast(device, precision):
            maps = fx(crop, names)
        write_tile(maps, tile, plan, out)
        del maps
        if on_tile is not None and not on_tile(i):
            return False
    return True


def write_tile(maps: Mapping[str, torch.Tensor], tile: Tile, plan: FeaturePlan,
               out: Output) -> None:
    """One tile's maps (batch of one, computed on `tile.ext`) into its core of `out`."""
    y0, y1, x0, x1 = tile.core
    ey0, ey1, ex0, ex1 = tile.ext
    for slot in plan.layers:
        m = maps[slot.name][0]
        if isinstance(out, dict):
            _write_cells(out[slot.name], m, slot, tile, plan)
            continue
        rows, cols = pixel_sampling(slot, tile, plan.upsample)
        # Channel chunks bound the pixel-resolution temporaries (3 per chunk) that would
        # otherwise dwarf the forward pass itself for wide layers.
        for c in range(0, slot.channels, CHUNK_CHANNELS):
            part = m[c:c + CHUNK_CHANNELS].float()
            block = _resample(part, 1, rows, ey0 == 0, ey1 == plan.height)
            block = _resample(block, 2, cols, ex0 == 0, ex1 == plan.width)
            out[slot.start + c:slot.start + c + len(part), y0:y1, x0:x1] = \
                block.to("cpu", plan.dtype)


@dataclass(frozen=True)
class AxisSampling:
    """How the pixels [a, b) of one axis sample a map: pixel a + r + s*t (phase r < s) blends
    cells first[r] + t and first[r] + t + 1 with weight weight[r]. Cells are local to the
    tile's map and may run past its ends only at the image's borders, where they clamp."""

    count: int
    stride: int
    first: tuple[int, ...]
    weight: tuple[float, ...] | None  # None: take cell first[r] + t as is


def pixel_sampling(slot: LayerSlot, tile: Tile, mode: str) -> tuple[AxisSampling, AxisSampling]:
    """(rows, cols) sampling of the tile core's pixels from the map computed on its ext."""
    y0, y1, x0, x1 = tile.core
    return (_axis(y0, y1, tile.ext[0], slot.geometry, mode),
            _axis(x0, x1, tile.ext[2], slot.geometry, mode))


def _axis(a: int, b: int, origin: int, g: CellGeometry, mode: str) -> AxisSampling:
    s = g.stride
    phases = range(a, min(b, a + s))
    shift = origin // s  # tile origins are multiples of every stride
    if s == 1:  # full resolution: re-index by the integer part of the offset, never blend
        return AxisSampling(b - a, 1, (a - math.floor(g.offset) - shift,), None)
    if mode == "nearest":
        first = tuple(math.floor((y - g.offset) / s + 0.5) - shift for y in phases)
        return AxisSampling(b - a, s, first, None)
    u = [(y - g.offset) / s for y in phases]
    first = tuple(math.floor(v) - shift for v in u)
    weight = tuple(v - math.floor(v) for v in u)
    return AxisSampling(b - a, s, first, weight)


def _resample(m: torch.Tensor, dim: int, ax: AxisSampling, at_start: bool, at_end: bool
              ) -> torch.Tensor:
    """Sample `m` along `dim` as `ax` says: one strided slice (and blend) per phase, which is
    many times faster than gathering pixel by pixel. Indices before the map's first cell or
    after its last are clamped by replicating the edge cell, as bilinear interpolation does;
    that may only happen at the image's own borders (`at_start`, `at_end`)."""
    n = m.shape[dim]
    blend = ax.weight is not None
    lo = min(ax.first)
    hi = max(f + (ax.count - 1 - r) // ax.stride for r, f in enumerate(ax.first)) + blend
    pad_lo, pad_hi = max(0, -lo), max(0, hi - (n - 1))
    if (pad_lo and not at_start) or (pad_hi and not at_end):  # pragma: no cover - a bug trap
        raise AssertionError("tile margin too small: a kept pixel needs a cell outside")
    if pad_lo or pad_hi:
        m = torch.cat([m.narrow(dim, 0, 1).repeat_interleave(pad_lo, dim), m,
                       m.narrow(dim, n - 1, 1).repeat_interleave(pad_hi, dim)], dim)
    shape = list(m.shape)
    shape[dim] = ax.count
    out = m.new_empty(shape)
    for r, start in enumerate(ax.first):
        cells = len(range(r, ax.count, ax.stride))
        src = m.narrow(dim, start + pad_lo, cells)
        if ax.weight is not None and ax.weight[r]:
            src = torch.lerp(src, m.narrow(dim, start + pad_lo + 1, cells), ax.weight[r])
        index = [slice(None)] * m.dim()
        index[dim] = slice(r, None, ax.stride)
        out[tuple(index)] = src
    return out


def _write_cells(dst: torch.Tensor, m: torch.Tensor, slot: LayerSlot, tile: Tile,
                 plan: FeaturePlan) -> None:
    """Native-resolution output: the tile core's own cells, copied."""
    s = slot.geometry.stride
    (y0, y1, x0, x1), (ey0, _, ex0, _) = tile.core, tile.ext
    # A core that ends at the image's edge also takes the map's last, partial cells.
    gy1 = slot.height if y1 == plan.height else y1 // s
    gx1 = slot.width if x1 == plan.width else x1 // s
    dst[:, y0 // s:gy1, x0 // s:gx1] = m[:, y0 // s - ey0 // s:gy1 - ey0 // s,
                                         x0 // s - ex0 // s:gx1 - ex0 // s].to("cpu", dst.dtype)
