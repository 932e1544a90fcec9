"""Exact tiled inference: any size in the memory of one tile plus the output.

The network is fully convolutional except for its instance norms, which normalise by the
statistics of the *whole* feature map; a tile normalised by its own statistics gives seams
and colour shifts. So the norms are visited in forward order, one pass over all tiles each:
pass k runs every tile (with enough context around its core that the core is exact) up to
the k-th norm, applying the already gathered statistics of norms 1..k-1, and adds the k-th
norm's input over the tile's core to per-channel sums; the last pass applies all of them and
writes each core into the output. Nothing image-sized is kept but the input and the output.

Passes are recomputation, not storage: the 2 + 2 x blocks + 3 passes cost about 7x one
untiled forward at 5 blocks (the early norms' passes are short) plus the context overhead,
the price of memory that does not grow with the image.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from artconv.fast.net import NormSite, TransformerNet
from artconv.nets.tiling import Tile, tile_grid

ALIGN = 4  # the network's total stride: tiles start on its grid, as the whole image's does
# Sums in float64: a variance from sum and sum of squares over millions of pixels loses
# nothing there, where float32 would cancel badly.
_SUMS = torch.float64


def context(net: TransformerNet) -> int:
    """Px of context a tile needs around its core for the core to come out exactly as in the
    whole image: the receptive field's radius (each stage's reach times its stride, plus
    the pixels a stride-2 step or a 2x upsampling may round by), up to the stride grid."""
    reach = (4 + 1 + 1  # conv1 9x9; conv2 3x3 stride 2 and its rounding
             + 2 * 1 + 2  # conv3 at half size, rounding
             + 4 * 2 * net.blocks  # two 3x3 convs per residual block at a quarter
             + 4 + 2 * 1  # deconv1: upsampling from a quarter, 3x3 at half
             + 2 + 1 + 4)  # deconv2: upsampling from half, 3x3; deconv3 9x9
    # An upper bound: measured in float64, 5 blocks are exact from 56 px, 1 block from 24.
    return math.ceil(reach / ALIGN) * ALIGN


class _Reached(Exception):
    """Raised inside `forward` at the norm whose statistics a pass gathers: the rest of the
    network is not needed for it (an exception is the one way out of `forward` midway)."""


@dataclass
class Stats:
    """One norm's per-image, per-channel statistics over the whole image (N, C), float64."""

    mean: torch.Tensor
    var: torch.Tensor


class _Sums:
    def __init__(self) -> None:
        self.n = 0
        self.s: torch.Tensor | None = None
        self.ss: torch.Tensor | None = None

    def add(self, x: torch.Tensor) -> None:
        x = x.to(_SUMS)
        s, ss = x.sum((-2, -1)), (x * x).sum((-2, -1))
        self.n += x.shape[-2] * x.shape[-1]
        self.s = s if self.s is None else self.s + s
        self.ss = ss if self.ss is None else self.ss + ss

    def stats(self) -> Stats:
        assert self.s is not None and self.ss is not None
        mean = self.s / self.n
        var = (self.ss / self.n - mean * mean).clamp_min(0)  # biased, as InstanceNorm2d's
        return Stats(mean, var)


def normalise(module: nn.InstanceNorm2d, x: torch.Tensor, stats: Stats) -> torch.Tensor:
    """InstanceNorm2d's arithmetic with statistics given instead of the map's own."""
    dtype = torch.promote_types(x.dtype, torch.float32)  # bf16 under autocast: in fp32
    shape = (*stats.mean.shape, 1, 1)
    mean = stats.mean.to(x.device, dtype).view(shape)
    inv = torch.rsqrt(stats.var.to(x.device, dtype).view(shape) + module.eps)
    y = (x.to(dtype) - mean) * inv
    if module.affine:
        y = y * module.weight.view(1, -1, 1, 1) + module.bias.view(1, -1, 1, 1)
    return y


def _core(site: NormSite, tile: Tile, x: torch.Tensor) -> torch.Tensor:
    """The part of a feature map of `tile`'s crop (stride `site.stride`) that its core
    covers; edges on the stride grid divide exactly, the image's last edge rounds up as the
    network's sizes do."""
    s = site.stride
    (top, bottom, left, right), (et, _, el, _) = tile.core, tile.ext
    return x[..., top // s - et // s: -(-bottom // s) - et // s,
             left // s - el // s: -(-right // s) - el // s]


# (pass, passes, tile, tiles) after each tile; False stops
TileStep = Callable[[int, int, int, int], "bool | None"]


def tiled_forward(net: TransformerNet, images: torch.Tensor, tile: int, *,
                  out: torch.Tensor, device: torch.device | None = None,
                  on_tile: TileStep | None = None,
                  autocast: Callable[[], Any] | None = None,
                  finish: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
                  ) -> bool:
    """`net(images)` computed tile by tile with cores of about `tile` px; `images` (N, 3, H, W)
    and the result stay where they are (the CPU for a print), each tile runs on `device`
    (default: the net's). `out` (shaped like `images`) receives the result. `on_tile` is
    called after every tile of every pass (a pass per norm, then the output); returning
    False stops. `finish(result, photo)` is applied to each core before it is written (a
    per-pixel step such as colour preservation, so it needs no image-sized temporaries).
    True when the result is complete."""
    device = device or next(net.parameters()).device
    _, _, height, width = images.shape
    tiles = tile_grid(height, width, tile, margin=context(net), align=ALIGN)
    sites = net.norm_sites()
    modules = dict(net.named_modules())
    gathered: list[Stats] = []
    passes = len(sites) + 1

    def run(tile_: Tile, upto: int, sums: _Sums | None) -> torch.Tensor | None:
        order = iter(range(len(sites)))

        def norm(module: nn.InstanceNorm2d, x: torch.Tensor) -> torch.Tensor:
            k = next(order)
            if k < upto:
                return normalise(module, x, gathered[k])
            assert sums is not None and modules[sites[k].name] is module
            sums.add(_core(sites[k], tile_, x))
            raise _Reached

        crop = tile_.crop(images).to(device)
        try:
            with (autocast or contextlib.nullcontext)():
                return net(crop, norm=norm)
        except _Reached:
            return None

    with torch.no_grad():
        for k in range(passes):
            sums = _Sums() if k < len(sites) else None
            for i, tile_ in enumerate(tiles):
                y = run(tile_, k, sums)
                if y is not None:
                    top, bottom, left, right = tile_.core
                    y = tile_.core_of_ext(y)
                    y = y.to(torch.promote_types(y.dtype, torch.float32))  # bf16 -> fp32
                    if finish is not None:
                        y = finish(y, images[..., top:bottom, left:right].to(y.device))
                    out[..., top:bottom, left:right] = y.to(out)
                if on_tile is not None and on_tile(k + 1, passes, i + 1, len(tiles)) is False:
                    return False
            if sums is not None:
                gathered.append(sums.stats())
    return True
