"""Per-pixel features: a vector for every pixel of the image from named layers (hypercolumns).

    feats = pixel_features("cat.jpg", ["relu1_2", "relu3_1"], pooling="none")   # (C, H, W)
    maps = pixel_features("cat.jpg", ["relu3_1"], upsample=None)                # {name: map}

How a map cell reaches a pixel is pure geometry (`layer_geometry`): cell j of a layer with
total stride s covers input pixels [s*j + lo, s*j + hi], so its centre is s*j + offset. Coarse
maps are interpolated at exactly those centres (for VGG's 2x2 pools this is torch's
`align_corners=False` at scale s); stride-1 maps (`--pooling none`, or layers before the first
pool) are never interpolated, only re-indexed by the integer part of their offset.

Large images run as tiles (`plan_features`): tile origins on multiples of the deepest stride
(so every map's cell grid is the whole image's), each tile padded by the span that the
receptive fields of its kept pixels (plus their interpolation neighbours) need. Tiles are
then exactly a whole-image pass, up to float summation order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import torch
from torch import nn

from artconv import pooling as pooling_mod
from artconv.core import Backbone, FeatureExtractor, describe
from artconv.device import autocast, memory_format, resolve_device, resolve_precision
from artconv.errors import ArtconvError
from artconv.options import CoreOptions, opt
from artconv.progress import Progress, ensure

UPSAMPLE_MODES = ("bilinear", "nearest", "none")
DTYPES = {"float32": torch.float32, "float16": torch.float16}
GIB = 2**30
CHUNK_CHANNELS = 64


@dataclass
class FeatureOptions(CoreOptions):
    """Options of `artconv features` / `pixel_features` (CLI flags are generated from these)."""

    layers: tuple[str, ...] = opt(
        ("relu1_2", "relu2_2", "relu3_1", "relu4_1"),
        "Layers whose maps are brought to pixel resolution and concatenated, in this order.",
        short="-l")
    size: int | None = opt(
        None, "Resize so the longest side is this many px (default: the file's own size).",
        min=1, short="-s")
    upsample: Literal["bilinear", "nearest", "none"] = opt(
        "bilinear", "How maps coarser than the image reach its pixels: bilinear, nearest "
        "(blocks), or none (each layer kept at its own resolution; with --pooling none every "
        "map is already full size and is never interpolated).")
    dtype: Literal["float32", "float16"] = opt(
        "float32", "Dtype of the stored features (the network itself runs in --precision).")
    tile: int = opt(
        0, "Tile side in px for large images, rounded up to the deepest layer's stride; "
        "0 = auto from --max-memory.", min=0)
    max_memory: float = opt(
        2.0, "GiB one forward pass may use; larger images run as overlapping tiles that give "
        "the whole-image result.", gt=0)
    memmap: Literal["auto", "always", "never"] = opt(
        "auto", "Build a .npy output memory-mapped on disk: auto = when it would take more "
        "than half the available RAM.")
    pca_shared: bool = opt(
        False, "With several images: fit one PCA basis on all of them, so a colour means the "
        "same in every picture.")
    similar_to: tuple[int, ...] = opt(
        (), "X,Y: cosine similarity of every pixel to pixel (X, Y) of the input file, written "
        "as a heat map (-o heat.png).")

    def check(self) -> None:
        super().check()
        if not self.layers:
            raise ArtconvError("--layers: give at least one layer")
        if self.similar_to and len(self.similar_to) != 2:
            raise ArtconvError(f"--similar-to {','.join(map(str, self.similar_to))}: "
                               "expected X,Y")


# -- geometry ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class CellGeometry:
    """Cell j of a map covers input pixels [stride*j + lo, stride*j + hi] (padding included)."""

    stride: int
    lo: int
    hi: int

    @property
    def offset(self) -> float:
        """Input position of cell 0's centre: (s-1)/2 for VGG's pools, 0 for strided convs."""
        return (self.lo + self.hi) / 2

    @property
    def receptive_field(self) -> int:
        return self.hi - self.lo + 1


def layer_geometry(net: nn.Sequential) -> dict[str, CellGeometry | None]:
    """Each layer's cell geometry along one axis (kernels are taken as square, as in
    `core.describe`); None from the first layer that is no longer a spatial map (global
    pooling, flatten, linear)."""
    stride, lo, hi, spatial = 1, 0, 0, True
    out: dict[str, CellGeometry | None] = {}
    for name, m in net.named_children():
        if isinstance(m, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d | nn.Flatten | nn.Linear):
            spatial = False
        if not spatial:
            out[name] = None
            continue
        if isinstance(m, (nn.Conv2d, *pooling_mod.POOL_TYPES, pooling_mod.DilatedPool2d)):
            k, s, d, p = _window(m)
            lo += stride * -p
            hi += stride * (d * (k - 1) - p)
            stride *= s
        elif isinstance(m, pooling_mod.Subsample):
            stride *= m.stride
        out[name] = CellGeometry(stride, lo, hi)
    return out


def _window(m: nn.Module) -> tuple[int, int, int, int]:
    """(kernel, stride, dilation, left padding) of a conv or pool, first axis."""
    if isinstance(m, pooling_mod.DilatedPool2d):
        return m.kernel[0], 1, m.dilation, m.dilation * m.padding[0]
    pair = pooling_mod._pair
    k, s = pair(m.kernel_size)[0], pair(m.stride)[0]
    d = pair(getattr(m, "dilation", 1))[0]
    p = m.padding
    if p == "same":
        p = d * (k - 1) // 2
    elif p == "valid":
        p = 0
    return k, s, d, pair(p)[0]


# -- the plan -----------------------------------------------------------------------------------
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
class Tile:
    core: tuple[int, int, int, int]  # (y0, y1, x0, x1) image pixels this tile writes
    region: tuple[int, int, int, int]  # the crop that is run: core plus margin, in the image


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

    def describe(self) -> dict[str, Any]:
        """JSON-ready: what each channel range is, for recipes and file metadata."""
        return {"shape": list(self.shape) if self.upsample != "none" else None,
                "dtype": str(self.dtype).removeprefix("torch."), "upsample": self.upsample,
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
    geometry = layer_geometry(fx.net)
    flat = [n for n in names if geometry[n] is None]
    if flat:
        raise ArtconvError(f"layer {flat[0]!r} is not a spatial map (global pooling or "
                           "later); pick a layer before it")
    infos = {i.name: i for i in describe(fx.net, (h, w), until=deepest)}
    if any(i.height < 1 or i.width < 1 for i in infos.values()):
        need = fx.min_size(names)
        raise ArtconvError(f"image of {w}x{h} px is too small for layer {deepest}: needs at "
                           f"least {need}x{need} px")
    slots, start = [], 0
    for n in names:
        c = infos[n].channels
        slots.append(LayerSlot(n, c, start, start + c, geometry[n], infos[n].height,
                               infos[n].width))
        start += c
    align = max(s.geometry.stride for s in slots)
    margin = _margin(slots, options.upsample, align)
    if options.tile:
        core = _round_up(options.tile, align)
    else:
        core = _auto_tile(fx, deepest, names, (h, w), align, margin, start,
                          options.max_memory * GIB)
    rows = [(a, b, *_context(a, b, h, [(s.geometry, s.height) for s in slots],
                             options.upsample, align)) for a, b in _spans(h, core)]
    cols = [(a, b, *_context(a, b, w, [(s.geometry, s.width) for s in slots],
                             options.upsample, align)) for a, b in _spans(w, core)]
    tiles = tuple(Tile((y0, y1, x0, x1), (ry0, ry1, rx0, rx1))
                  for y0, y1, ry0, ry1 in rows for x0, x1, rx0, rx1 in cols)
    return FeaturePlan(tuple(slots), h, w, options.upsample, DTYPES[options.dtype], align,
                       margin, tiles)


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
    """First and last map cell that pixels [a, b) read (as `_axis` samples them)."""
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
    """The largest core side (a multiple of `align`) whose tile fits the memory budget."""
    h, w = hw
    if forward_bytes(fx, deepest, names, hw, channels) <= budget:
        return max(h, w)
    lo, hi = 1, max(1, math.ceil(max(h, w) / align))  # in units of `align`
    while lo < hi:
        mid = (lo + hi + 1) // 2
        side = mid * align + 2 * margin
        if forward_bytes(fx, deepest, names, (min(h, side), min(w, side)), channels) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo * align


def forward_bytes(fx: FeatureExtractor, deepest: str, names: Iterable[str],
                  hw: tuple[int, int], channels: int) -> int:
    """Estimated peak bytes of one fp32 pass over an image of `hw`: the largest adjacent pair
    of activations (a layer's input and output), a conv workspace of about the largest one,
    the captured maps, and the upsampling temporaries of one channel chunk. The output
    buffer itself is not included (it may live on disk)."""
    infos = describe(fx.net, hw, until=deepest)
    acts = [3 * hw[0] * hw[1]] + [i.channels * max(i.height, 0) * max(i.width, 0)
                                  for i in infos]
    pair = max(a + b for a, b in zip(acts, acts[1:], strict=False))
    wanted = set(names)
    captured = sum(a for a, i in zip(acts[1:], infos, strict=True) if i.name in wanted)
    chunk = 3 * min(CHUNK_CHANNELS, channels) * hw[0] * hw[1]
    return 4 * (pair + max(acts) + captured + chunk)


def _spans(n: int, step: int) -> list[tuple[int, int]]:
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


# -- extraction ---------------------------------------------------------------------------------
Output = torch.Tensor | dict[str, torch.Tensor]


def allocate(plan: FeaturePlan) -> Output:
    """An in-RAM output for `plan`: one (C, H, W) tensor, or {name: map} with upsample none."""
    if plan.upsample == "none":
        return {n: torch.empty(s, dtype=plan.dtype) for n, s in plan.shapes().items()}
    return torch.empty(plan.shape, dtype=plan.dtype)


@torch.no_grad()
def extract_into(fx: FeatureExtractor, image: torch.Tensor, plan: FeaturePlan, out: Output, *,
                 device: torch.device, precision: str, progress: Progress | None = None,
                 description: str = "features") -> None:
    """Run `plan` tile by tile and write each tile's core into `out` (a tensor, or tensors that
    view a numpy memmap: `torch.from_numpy(np.lib.format.open_memmap(...))`)."""
    image = image if image.dim() == 4 else image.unsqueeze(0)
    mf = memory_format(device, precision)
    names = [s.name for s in plan.layers]
    task = ensure(progress).task(description, total=len(plan.tiles))
    for tile in plan.tiles:
        ry0, ry1, rx0, rx1 = tile.region
        crop = image[..., ry0:ry1, rx0:rx1].to(device).contiguous(memory_format=mf)
        with autocast(device, precision):
            maps = fx(crop, names)
        for slot in plan.layers:
            m = maps[slot.name][0]
            if plan.upsample == "none":
                _write_cells(out[slot.name], m, slot, tile, plan)
                continue
            rows, cols = pixel_sampling(slot, tile, plan.upsample)
            y0, y1, x0, x1 = tile.core
            h, w = plan.height, plan.width
            # Channel chunks bound the pixel-resolution temporaries (3 per chunk) that would
            # otherwise dwarf the forward pass itself for wide layers.
            for c in range(0, slot.channels, CHUNK_CHANNELS):
                part = m[c:c + CHUNK_CHANNELS].float()
                block = _resample(part, 1, rows, ry0 == 0, ry1 == h)
                block = _resample(block, 2, cols, rx0 == 0, rx1 == w)
                out[slot.start + c:slot.start + c + len(part), y0:y1, x0:x1] = \
                    block.to("cpu", plan.dtype)
        del maps
        task.update(1)
    task.done()


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
    """(rows, cols) sampling of the tile core's pixels from the map computed on its region."""
    y0, y1, x0, x1 = tile.core
    return (_axis(y0, y1, tile.region[0], slot.geometry, mode),
            _axis(x0, x1, tile.region[2], slot.geometry, mode))


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
        if blend and ax.weight[r]:
            src = torch.lerp(src, m.narrow(dim, start + pad_lo + 1, cells), ax.weight[r])
        index = [slice(None)] * m.dim()
        index[dim] = slice(r, None, ax.stride)
        out[tuple(index)] = src
    return out


def _write_cells(dst: torch.Tensor, m: torch.Tensor, slot: LayerSlot, tile: Tile,
                 plan: FeaturePlan) -> None:
    """Native-resolution output: the tile core's own cells, copied."""
    s = slot.geometry.stride
    (y0, y1, x0, x1), (ry0, _, rx0, _) = tile.core, tile.region
    # A core that ends at the image's edge also takes the map's last, partial cells.
    gy1 = slot.height if y1 == plan.height else y1 // s
    gx1 = slot.width if x1 == plan.width else x1 // s
    dst[:, y0 // s:gy1, x0 // s:gx1] = m[:, y0 // s - ry0 // s:gy1 - ry0 // s,
                                         x0 // s - rx0 // s:gx1 - rx0 // s].to("cpu", dst.dtype)


# -- the API --------------------------------------------------------------------------------------
_CACHE: dict[tuple, FeatureExtractor] = {}


def build_extractor(options: CoreOptions) -> FeatureExtractor:
    """FeatureExtractor.from_options, remembering the last one: repeated API calls with the same
    network options (a loop over images) build and load it once."""
    names = [f.name for f in fields(CoreOptions) if f.name not in ("device", "precision")]
    key = tuple((n, getattr(options, n)) for n in names)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = FeatureExtractor.from_options(options)
    return _CACHE[key]


def pixel_features(image: Any, layers: Sequence[str] | str | None = None, *,
                   pooling: str | None = None, upsample: str | None = "bilinear",
                   extractor: FeatureExtractor | nn.Sequential | Backbone | None = None,
                   progress: Progress | None = None, **options: Any) -> Output:
    """Every pixel's feature vector: the layers' maps at the image's resolution, concatenated
    in the order given -> (C, H, W) on the CPU. `upsample=None` returns {name: map} at each
    layer's own resolution instead. With `pooling="none"` all maps are natively H x W.

    `image`: a path, PIL image, array or tensor (see `artconv.imageio.load_image`), or a
    (1, 3, H, W) / (3, H, W) tensor in [0, 1]. `extractor`: a prebuilt FeatureExtractor, or an
    own nn.Sequential / Backbone (wrapped with `pooling`). Other keywords are
    `FeatureOptions` fields (weights, arch, size, dtype, tile, max_memory, device, ...).
    """
    from artconv.imageio import load_image

    given = {k: v for k, v in {"layers": layers, "pooling": pooling}.items() if v is not None}
    opts = FeatureOptions().replace(**options, **given, upsample=upsample or "none")
    fx = _extractor(extractor, opts, pooling_given="pooling" in given)
    img = load_image(image, opts.size).unsqueeze(0)
    device = resolve_device(opts.device)
    precision = resolve_precision(opts.precision, device)
    fx.to(device)
    plan = plan_features(fx, tuple(img.shape[-2:]), opts)
    out = allocate(plan)
    extract_into(fx, img, plan, out, device=device, precision=precision, progress=progress)
    return out


def _extractor(given: FeatureExtractor | nn.Sequential | Backbone | None,
               opts: FeatureOptions, pooling_given: bool) -> FeatureExtractor:
    if given is None:
        return build_extractor(opts)
    if isinstance(given, FeatureExtractor):
        if pooling_given and given.pooling != opts.pooling:
            raise ArtconvError(f"--pooling {opts.pooling}: the given extractor was built with "
                               f"pooling {given.pooling!r}")
        return given
    return FeatureExtractor(given, opts.pooling)

