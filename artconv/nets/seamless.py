"""Seamless (`--seamless`): the network sees the image on a torus, so its result tiles.

`make_seamless(net)` rewrites a named nn.Sequential (after the pooling switch) so that every
place that pads pads circularly, keeping every trained weight (shared, not copied):

* every nn.Conv2d (nested ones too) becomes a `CircularConv2d`: `padding_mode="circular"`;
* every max / avg pool (the network's own, or `avg`'s ScaledAvgPool2d) becomes a circular
  twin that wraps its padding and, for `ceil_mode`, the windows that run past the right or
  bottom edge, so a pixel at the left edge sees the right edge;
* `none`'s DilatedPool2d pads circularly instead of with -inf / by counting real pixels;
* explicit padding layers (nn.ZeroPad2d, ReflectionPad2d, ...) become nn.CircularPad2d.

Output sizes are those of the network before (`artconv layers` and every size check read the
same modules), and with circular padding the features of `torch.roll(x, s)` are those of `x`
rolled by s / stride for shifts that are multiples of the layer's stride.
"""

from __future__ import annotations

import copy
import itertools
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from artconv.nets import pooling as pooling_mod
from artconv.nets.shapes import conv_out, pair, wrap_pad

PAD_TYPES = (nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d)


class CircularConv2d(nn.Conv2d):
    """A Conv2d with `padding_mode="circular"` that also wraps maps smaller than its padding
    (torch's circular pad refuses to wrap more than once)."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | None) -> torch.Tensor:
        left, right, top, bottom = self._reversed_padding_repeated_twice
        x = wrap_pad(x, (left, right, top, bottom))
        return F.conv2d(x, weight, bias, self.stride, 0, self.dilation, self.groups)


def _window_pads(n: int, k: int, s: int, p: int, d: int, ceil: bool) -> tuple[int, int]:
    """(before, after) wrap of one axis so an unpadded, floor-mode pool gives the padded
    pool's output size, each window seeing the pixels the torus puts there."""
    out = conv_out(n, k, s, p, d, ceil)
    need = (out - 1) * s + d * (k - 1) + 1 if out > 0 else 0
    return p, need - n - p


def _pool_pad(x: torch.Tensor, pool: nn.Module) -> torch.Tensor:
    (kh, kw), (sh, sw), (ph, pw) = (pair(v) for v in (pool.kernel_size, pool.stride,
                                                       pool.padding))
    dh, dw = pair(getattr(pool, "dilation", 1))
    h, w = x.shape[-2:]
    top, bottom = _window_pads(h, kh, sh, ph, dh, pool.ceil_mode)
    left, right = _window_pads(w, kw, sw, pw, dw, pool.ceil_mode)
    return wrap_pad(x, (left, right, top, bottom))


class CircularMaxPool2d(nn.MaxPool2d):
    """A max pool whose padding (and ceil_mode overhang) wraps around the map."""

    def __init__(self, pool: nn.MaxPool2d) -> None:
        super().__init__(pool.kernel_size, pool.stride, pool.padding, pool.dilation,
                         pool.return_indices, pool.ceil_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(_pool_pad(x, self), self.kernel_size, self.stride, 0,
                            self.dilation, False, self.return_indices)

    def extra_repr(self) -> str:
        return super().extra_repr() + ", circular"


class CircularAvgPool2d(pooling_mod.ScaledAvgPool2d):
    """An average pool (times `scale`, as `avg` pooling rescales) whose padding and ceil_mode
    overhang wrap around the map: every window averages real pixels."""

    def __init__(self, pool: nn.AvgPool2d | nn.MaxPool2d, scale: float = 1.0) -> None:
        super().__init__(pool, scale)
        self.divisor_override = getattr(pool, "divisor_override", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.avg_pool2d(_pool_pad(x, self), self.kernel_size, self.stride, 0, False, True,
                           self.divisor_override)
        return out if self.scale == 1.0 else out * self.scale

    def extra_repr(self) -> str:
        return super().extra_repr() + ", circular"


def make_seamless(net: nn.Sequential) -> nn.Sequential:
    """A new Sequential with every convolution, pool and padding layer wrapping around the
    map (see the module's doc). Weights and buffers are shared with `net`, which is left
    unchanged; the names stay."""
    return nn.Sequential(OrderedDict((name, _rewrite(m)) for name, m in net.named_children()))


def _rewrite(module: nn.Module) -> nn.Module:
    """`module` with circular padding: replaced when it is a conv/pool/pad itself, otherwise a
    structural copy (weights shared) whose nested ones are replaced; as is when it has none."""
    direct = _circular(module)
    if direct is not None:
        return direct
    if not any(_circular(m) is not None for m in module.modules()):
        return module
    memo = {id(t): t for t in itertools.chain(module.parameters(), module.buffers())}
    twin = copy.deepcopy(module, memo)
    for name, child in list(twin.named_modules()):
        replaced = _circular(child)
        if replaced is not None and name:
            parent_name, _, attr = name.rpartition(".")
            setattr(twin.get_submodule(parent_name), attr, replaced)
    return twin


def _circular(m: nn.Module) -> nn.Module | None:
    """The circular twin of one conv / pool / pad layer (None for anything else)."""
    if isinstance(m, CircularConv2d | CircularMaxPool2d | CircularAvgPool2d):
        return m
    if isinstance(m, nn.Conv2d):
        return _circular_conv(m)
    if isinstance(m, nn.MaxPool2d):
        return CircularMaxPool2d(m)
    if isinstance(m, pooling_mod.ScaledAvgPool2d):
        return CircularAvgPool2d(m, m.scale)
    if isinstance(m, nn.AvgPool2d):
        return CircularAvgPool2d(m)
    if isinstance(m, pooling_mod.DilatedPool2d):
        if m.circular:
            return m
        twin = copy.copy(m)
        twin.circular = True
        return twin
    if isinstance(m, PAD_TYPES):
        return nn.CircularPad2d(tuple(m.padding))
    return None


def _circular_conv(conv: nn.Conv2d) -> CircularConv2d:
    """Same weights (shared), same stride / dilation / padding, padding_mode circular."""
    new = CircularConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                         conv.padding, conv.dilation, conv.groups, conv.bias is not None,
                         "circular", device="meta")
    new.weight = conv.weight
    new.bias = conv.bias
    new.train(conv.training)
    return new
