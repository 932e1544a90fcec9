"""Shape arithmetic shared by the pooling switch, the seamless rewrite and the geometry walk:
the leaf they all import, so none of them imports another for a helper."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    """A module's kernel/stride/padding as (height, width); torch allows an int or a tuple."""
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[-1]))


def conv_out(n: int, k: int, s: int, p: int, d: int, ceil: bool = False) -> int:
    """The output length of a convolution or pool along one axis, as torch computes it."""
    span = n + 2 * p - d * (k - 1) - 1
    if span < 0:
        return 0
    out = (math.ceil if ceil else math.floor)(span / s) + 1
    if ceil and (out - 1) * s >= n + p:  # torch drops a last window starting in the padding
        out -= 1
    return out


def wrap_pad(x: torch.Tensor, pad: Sequence[int]) -> torch.Tensor:
    """`F.pad(x, pad, mode="circular")` for (left, right, top, bottom) on the last two axes,
    also where a pad exceeds the map (it wraps more than once) or is negative (it crops)."""
    left, right, top, bottom = (int(p) for p in pad)
    if not (left or right or top or bottom):
        return x
    h, w = x.shape[-2:]
    if min(pad) >= 0 and max(left, right) <= w and max(top, bottom) <= h:
        return F.pad(x, (left, right, top, bottom), mode="circular")
    rows = torch.arange(-top, h + bottom, device=x.device) % h
    cols = torch.arange(-left, w + right, device=x.device) % w
    return x.index_select(-2, rows).index_select(-1, cols)
