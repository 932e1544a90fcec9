"""What a features pass computes: the requested layers' channel ranges and geometry, and the
tiles an image runs as.

How a map cell reaches a pixel is pure geometry (`artconv.nets.geometry`): cell j of a layer
with total stride s covers input pixels [s*j + lo, s*j + hi], so its centre is s*j + offset.

Large images run as tiles: tile origins on multiples of the deepest stride (so every map's
cell grid is the whole image's), each tile widened by the span that the receptive fields of
its kept pixels (plus their interpolation neighbours) need. Tiles are then exactly a
whole-image pass, up to float summation order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from artconv.errors import ArtconvError
from artconv.features.options import FeatureOptions
from artconv.nets.extractor import FeatureExtractor
from artconv.nets.geometry import CellGeometry, LayerGeometry, walk
from artconv.nets.tiling import Span, Tile, grid, largest_tile, spans

DTYPES = {"float32": torch.float32, "float16": torch.float16}
GIB = 2**30
CHUNK_CHANNELS = 64  # channels brought to pixel resolution at a time (bounds temporaries)


@dataclass(frozen=True)
class LayerSlot:
    """One requested layer: its channels' place in the hypercolumn and its map's geometry."""

    name: str
    channels: int
    start: int  # channel range [start, stop) in the concatenated output
    stop: int
    geometry: CellGeometry
    height: int  # the whole image's map size
    width: int


@dataclass(frozen=True)
class FeaturePlan:
    layers: tuple[LayerSlot, ...]
    height: int
    width: int
    upsample: str
    dtype: torch.dtype
    align: int  # tile origins are multiples of this (the deepest stride)
    margin: int  # context px an interior tile adds on each side of its core
    tiles: tuple[Tile, ...]

    @property
    def channels(self) -> int:
        return self.layers[-1].stop

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    def shapes(self) -> dict[str, tuple[int, int, int]]:
        """Output shape per layer: (C, H, W) slices, or each map's own size with upsample none."""
        if self.upsample == "none":
            return {s.name: (s.channels, s.height, s.width) for s in self.layers}
        return {s.name: (s.channels, self.height, self.width) for s in self.layers}

    @property
    def nbytes(self) -> int:
        item = torch.empty((), dtype=self.dtype).element_size()
        return item * sum(math.prod(s) for s in self.shapes().values())

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def shape_record(self) -> list[int] | dict[str, list[int]]:
        """The output's shape, JSON-ready: [C, H, W], or {layer: [C, h, w]} with upsample none."""
        if self.upsample == "none":
            return {k: list(v) for k, v in self.shapes().items()}
        return list(self.shape)

    def shape_text(self) -> str:
        """The shape and dtype as messages print them."""
        if self.upsample != "none":
            return f"{tuple(self.shape)} {self.dtype_name}"
        maps = ", ".join(f"{k} {tuple(v)}" for k, v in self.shapes().items())
        return f"{maps} {self.dtype_name}"

    def describe(self) -> dict[str, Any]:
        """JSON-ready: what each channel range is, for recipes and file metadata."""
        return {"shape": list(self.shape) if self.upsample != "none" else None,
                "dtype": self.dtype_name, "upsample": self.upsample,
                "tiles": len(self.tiles), "margin": self.margin,
                "layers": [{"name": s.name, "channels": s.channels, "start": s.start,
                            "stop": s.stop, "stride": s.geometry.stride,
                            "offset": s.geometry.offset,
                            "receptive_field": s.geometry.receptive_field,
                            "map": [s.height, s.width]} for s in self.layers]}


def plan_features(fx: FeatureExtractor, hw: tuple[int, int], options: FeatureOptions
                  ) -> FeaturePlan:
    """Check the layers and image size, and lay out tiles within `options.max_memory`."""
    h, w = hw
    names = list(dict.fromkeys(options.layers))
    deepest = fx.check_layers(names)[-1]
    walked = {g.name: g for g in walk(fx.net, (h, w), until=deepest)}
    flat = [n for n in names if not walked[n].spatial]
    if flat:
        raise ArtconvError(f"layer {flat[0]!r} is not a spatial map (global pooling or "
                           "later); pick a layer before it")
    if any(g.height < 1 or g.width < 1 for g in walked.values()):
        need = fx.min_size(names)
        raise ArtconvError(f"image of {w}x{h} px is too small for layer {deepest}: needs at "
                           f"least {need}x{need} px")
    slots = _slots(fx, names, walked)
    align = max(s.geometry.stride for s in slots)
    margin = _margin(slots, options.upsample, align)
    if options.tile:
        core = round_up(options.tile, align)
    else:
        core = _auto_tile(fx, deepest, names, (h, w), align, margin, slots[-1].stop,
                          options.max_memory * GIB)
    if fx.seamless and (core < h or core < w):
        # Tile context here stops at the image edge; a seamless network's wraps around.
        raise ArtconvError(f"--seamless: a {w}x{h} px image would run as tiles of {core} px "
                           "(--tile / --max-memory), which are not seamless yet; raise "
                           "--max-memory or leave out --seamless")
    rows = _axis_spans(h, core, align, [(s.geometry, s.height) for s in slots],
                       options.upsample)
    cols = _axis_spans(w, core, align, [(s.geometry, s.width) for s in slots],
                       options.upsample)
    return FeaturePlan(tuple(slots), h, w, options.upsample, DTYPES[options.dtype], align,
                       margin, tuple(grid(rows, cols)))


def _slots(fx: FeatureExtractor, names: Sequence[str], walked: Mapping[str, LayerGeometry]
           ) -> list[LayerSlot]:
    """The layers in the order asked for, each with its channel range."""
    slots, start = [], 0
    for n in names:
        c = fx.channels(n)  # measured where the walk cannot see into a layer
        g = walked[n]
        slots.append(LayerSlot(n, c, start, start + c, g.cell, g.height, g.width))
        start += c
    return slots


def _axis_spans(n: int, core: int, align: int, layers: Sequence[tuple[CellGeometry, int]],
                upsample: str) -> list[Span]:
    """One axis's (core, context) spans."""
    return [((a, b), _context(a, b, n, layers, upsample, align))
            for a, b in spans(n, core, align)]


def _context(a: int, b: int, n: int, layers: Sequence[tuple[CellGeometry, int]],
             upsample: str, align: int) -> tuple[int, int]:
    """The input span [start, end) that pixels [a, b) of one axis need: the receptive fields
    of every map cell they read (after clamping at the image's borders, which can reach a cell
    further back than the pixel's own), the start put back on the `align` grid."""
    lo, hi = n, 0
    for g, cells in layers:
        first, last = _cells(a, b, n, g, cells, upsample)
        lo, hi = min(lo, g.stride * first + g.lo), max(hi, g.stride * last + g.hi + 1)
    return max(0, lo) // align * align, min(n, hi)


def _cells(a: int, b: int, n: int, g: CellGeometry, cells: int, upsample: str
           ) -> tuple[int, int]:
    """First and last map cell that pixels [a, b) read (as `extract._axis` samples them)."""
    s, off = g.stride, g.offset
    if upsample == "none":  # the core's own cells; the last core also takes partial cells
        first, last = a // s, (b // s - 1 if b < n else cells - 1)
    elif s == 1:
        first, last = a - math.floor(off), b - 1 - math.floor(off)
    elif upsample == "nearest":
        first, last = math.floor((a - off) / s + 0.5), math.floor((b - 1 - off) / s + 0.5)
    else:
        first, last = math.floor((a - off) / s), math.floor((b - 1 - off) / s) + 1
    return min(max(first, 0), cells - 1), min(max(last, 0), cells - 1)


def _margin(slots: Sequence[LayerSlot], upsample: str, align: int) -> int:
    """Context px an interior tile needs on either side (for sizing tiles and reports): the
    span `_context` gives a core far from the image's borders."""
    far, big = 1000 * align, 10**9
    layers = [(s.geometry, big // s.geometry.stride) for s in slots]
    start, end = _context(far, far + align, big, layers, upsample, align)
    return max(far - start, end - far - align)


def _auto_tile(fx: FeatureExtractor, deepest: str, names: Sequence[str], hw: tuple[int, int],
               align: int, margin: int, channels: int, budget: float) -> int:
    """The largest core side (a multiple of `align`) whose tile, with its context, fits the
    memory budget: the whole image when it fits untiled, at least one `align` step."""
    h, w = hw
    if forward_bytes(fx, deepest, names, hw, channels) <= budget:
        return max(h, w)

    def fits(core: int) -> bool:
        side = core + 2 * margin
        return forward_bytes(fx, deepest, names, (min(h, side), min(w, side)),
                             channels) <= budget

    return largest_tile(fits, max(h, w), align) or align


def forward_bytes(fx: FeatureExtractor, deepest: str, names: Iterable[str],
                  hw: tuple[int, int], channels: int) -> int:
    """Estimated peak bytes of one fp32 pass over an image of `hw`: the largest adjacent pair
    of activations (a layer's input and output), a conv workspace of about the largest one,
    the captured maps, and the upsampling temporaries of one channel chunk. The output
    buffer itself is not included (it may live on disk)."""
    walked = list(walk(fx.net, hw, until=deepest))
    acts = [3 * hw[0] * hw[1]] + [g.channels * max(g.height, 0) * max(g.width, 0)
                                  for g in walked]
    pair = max(a + b for a, b in zip(acts, acts[1:], strict=False))
    wanted = set(names)
    captured = sum(a for a, g in zip(acts[1:], walked, strict=True) if g.name in wanted)
    chunk = 3 * min(CHUNK_CHANNELS, channels) * hw[0] * hw[1]
    return 4 * (pair + max(acts) + captured + chunk)


def round_up(n: int, m: int) -> int:
    return -(-n // m) * m
