"""One walk over a network's layers: where each layer's cells sit on the input and what the
layer costs, computed from the modules alone (no forward pass).

    for g in walk(net, (512, 384)):
        g.stride, g.receptive_field, g.cell.lo, g.cell.hi, g.height, g.width, g.flops

Cell j of a layer's map covers input pixels [stride*j + lo, stride*j + hi] (padding
included), so its centre is stride*j + offset. The `artconv layers` table (`describe`), the
features engine (where a cell reaches a pixel, how much context a tile needs) and the tiler
(`artconv.nets.tiling.layer_context`) all read this one walk.

Kernels are taken as square: stride, receptive field and offset are those of the first
axis. Convolutions and pools move the geometry by their own formulas; every other layer is
taken as elementwise (activations, norms, dropout). From global pooling, a flatten or a
linear layer on, a layer's output is no longer a map on the input's grid (`spatial` False).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from torch import nn

from artconv.nets import pooling as pooling_mod
from artconv.nets.shapes import conv_out, pair

FLAT = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Linear)


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


@dataclass(frozen=True)
class LayerGeometry:
    """One layer's output: its cells' geometry, its size for the walk's input size, and the
    cost of computing it (multiply-adds x 2)."""

    name: str
    index: int
    kind: str
    channels: int
    cell: CellGeometry
    height: int
    width: int
    flops: float
    note: str = ""
    spatial: bool = True  # still a map on the input's grid

    @property
    def stride(self) -> int:
        return self.cell.stride

    @property
    def receptive_field(self) -> int:
        return self.cell.receptive_field

    @property
    def offset(self) -> float:
        return self.cell.offset


@dataclass(frozen=True)
class LayerInfo:
    """One row of `artconv layers`: what a named layer is and what it sees."""

    name: str
    index: int
    kind: str
    channels: int
    stride: int  # total downsampling factor at this layer's output
    receptive_field: int  # in input pixels
    height: int
    width: int
    gflops: float  # multiply-adds x 2 of this layer at the given input size
    note: str = ""


@dataclass
class _State:
    """What the walk carries from layer to layer."""

    height: int
    width: int
    channels: int = 3
    stride: int = 1
    lo: int = 0
    hi: int = 0
    spatial: bool = True

    def window(self, k: int, s: int, d: int, p: int, ceil: bool = False,
               resize: bool = True) -> None:
        """A kernel `k`, stride `s`, dilation `d`, left padding `p` acting on the map."""
        self.lo -= self.stride * p
        self.hi += self.stride * (d * (k - 1) - p)
        self.stride *= s
        if resize:
            self.height, self.width = (conv_out(n, k, s, p, d, ceil)
                                       for n in (self.height, self.width))


def walk(net: nn.Sequential, size: int | tuple[int, int] = 224, *, until: str | None = None,
         scales: Mapping[str, float] | None = None) -> Iterator[LayerGeometry]:
    """Each named layer's geometry for an input of `size` (side, or (height, width)), up to
    and including `until`. `scales` (avg-pool rescale factors by layer) only annotate."""
    h, w = (size, size) if isinstance(size, int) else size
    state = _State(int(h), int(w))
    for index, (name, m) in enumerate(net.named_children()):
        flops, note = _step(state, m, (scales or {}).get(name))
        yield LayerGeometry(name, index, _kind(m), state.channels,
                            CellGeometry(state.stride, state.lo, state.hi), state.height,
                            state.width, flops, note, state.spatial)
        if name == until:
            return


def _step(state: _State, m: nn.Module, scale: float | None) -> tuple[float, str]:
    """Move `state` past layer `m`; its (FLOPs, note)."""
    if isinstance(m, FLAT):
        state.spatial = False
        if isinstance(m, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
            state.height, state.width = pair(m.output_size)
        return 0.0, ""
    if isinstance(m, nn.Conv2d):
        return _conv(state, m)
    if isinstance(m, pooling_mod.POOL_TYPES):
        k, s, p = (pair(v)[0] for v in (m.kernel_size, m.stride, m.padding))
        state.window(k, s, pair(getattr(m, "dilation", 1))[0], p, m.ceil_mode)
        flops = float(state.channels * state.height * state.width * k * k)
        return flops, f"x{scale:.3f}" if scale else ""
    if isinstance(m, pooling_mod.DilatedPool2d):
        (kh, kw), d = m.kernel, m.dilation
        state.window(kh, 1, d, d * m.padding[0], resize=False)  # padded to keep the size
        return float(state.channels * state.height * state.width * kh * kw), \
            f"stride 1, dilation {d}"
    if isinstance(m, pooling_mod.Subsample):
        state.height, state.width = (math.ceil(n / m.stride) for n in (state.height,
                                                                       state.width))
        state.stride *= m.stride
        return 0.0, "subsample (no conv follows)"
    if isinstance(m, pooling_mod.RemovedPool):
        return 0.0, f"removed; next conv strides {m.moved_stride}"
    if isinstance(m, nn.BatchNorm2d):
        state.channels = m.num_features
    return 0.0, ""


def _conv(state: _State, m: nn.Conv2d) -> tuple[float, str]:
    k, s, d = m.kernel_size[0], m.stride[0], m.dilation[0]
    p = m.padding
    p = p[0] if isinstance(p, tuple) else 0 if p == "valid" else (d * (k - 1)) // 2
    state.window(k, s, d, p)
    flops = 2.0 * m.in_channels // m.groups * k * m.kernel_size[1] * m.out_channels \
        * max(state.height, 0) * max(state.width, 0)
    state.channels = m.out_channels
    note = f"stride {s}" if s > 1 else f"dilation {d}" if d > 1 else ""
    return flops, note


def _kind(m: nn.Module) -> str:
    if isinstance(m, nn.Conv2d):
        return "conv"
    if isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Tanh)):
        return "relu" if isinstance(m, nn.ReLU) else type(m).__name__.lower()
    if isinstance(m, nn.MaxPool2d):
        return "max pool"
    if isinstance(m, pooling_mod.ScaledAvgPool2d | nn.AvgPool2d):
        return "avg pool"
    if isinstance(m, pooling_mod.DilatedPool2d):
        return f"{m.kind} pool"
    if isinstance(m, pooling_mod.RemovedPool | pooling_mod.Subsample):
        return "pool"
    if isinstance(m, nn.BatchNorm2d):
        return "batchnorm"
    return type(m).__name__


# -- views of the walk ------------------------------------------------------------------------
def layer_geometry(net: nn.Sequential) -> dict[str, CellGeometry | None]:
    """Each layer's cell geometry (one axis); None from the first layer that is no longer a
    spatial map (global pooling, flatten, linear)."""
    return {g.name: g.cell if g.spatial else None for g in walk(net)}


def describe(net: nn.Sequential, size: int | tuple[int, int], *, until: str | None = None,
             scales: Mapping[str, float] | None = None) -> list[LayerInfo]:
    """The `artconv layers` rows for an input of `size`, and the sizes behind size checks."""
    return [LayerInfo(g.name, g.index, g.kind, g.channels, g.stride, g.receptive_field,
                      g.height, g.width, g.flops / 1e9, g.note)
            for g in walk(net, size, until=until, scales=scales)]


def fits(net: nn.Sequential, size: int | tuple[int, int], until: str) -> bool:
    """Whether every layer up to `until` has at least one cell for an input of `size`."""
    return all(g.height >= 1 and g.width >= 1 for g in walk(net, size, until=until))


def min_side(net: nn.Sequential, until: str, limit: int = 1 << 16) -> int:
    """The smallest square input for which every layer up to `until` has at least 1 px
    (`limit` when none up to it does)."""
    side = 1
    while side < limit and not fits(net, side, until):
        side += 1
    return side
