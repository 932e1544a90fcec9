"""The pooling switch: max | avg | strided | none, applied to any named nn.Sequential.

`max` is the network as trained. The other modes rewrite the pools (and, for `strided` and
`none`, the convolutions after them) while keeping every trained weight:

* avg: each MaxPool2d becomes an AvgPool2d of the same size/stride (Gatys et al. 2016 found
  smoother results). With `rescale=True` each pool is multiplied by a factor calibrated once
  so its output's RMS equals what max pooling gives on the same input.
* strided: each pool is removed (it becomes a pass-through so its name stays valid) and the
  next convolution gets the pool's stride (the All Convolutional Net idea). With ImageNet
  weights this is aliased subsampling, not a trained strided net. A pool with no convolution
  after it (VGG's pool5) becomes a plain subsampling `x[..., ::s, ::s]`. Sizes round up:
  a stride-2 3x3 conv with padding 1 gives ceil(H/2) where the pool gave floor(H/2).
* none: no downsampling (a-trous / "shift-and-stitch"). Each pool keeps its window but runs
  with stride 1 and dilation d; every layer after k stride-2 pools is dilated by d = 2**k,
  with its padding scaled to match. Every layer then has one vector per input pixel, and
  `map[..., ::d, ::d]` equals the standard network's map exactly when H and W are multiples
  of the total stride (otherwise exactly except the last row/column of each map).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from artconv.errors import ArtconvError
from artconv.nets.shapes import pair, wrap_pad

PoolingMode = Literal["max", "avg", "strided", "none"]
POOLING_MODES: tuple[str, ...] = ("max", "avg", "strided", "none")
POOL_TYPES = (nn.MaxPool2d, nn.AvgPool2d)


class ScaledAvgPool2d(nn.AvgPool2d):
    """Average pool times a constant, so `avg` activations keep `max`'s magnitude."""

    def __init__(self, pool: nn.MaxPool2d, scale: float = 1.0) -> None:
        super().__init__(pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode,
                         count_include_pad=False)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out if self.scale == 1.0 else out * self.scale

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", scale={self.scale:.3f}" if self.scale != 1.0 else "")


class RemovedPool(nn.Identity):
    """A pool taken out by `strided` mode; the next convolution downsamples instead."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.moved_stride = stride


class Subsample(nn.Module):
    """Keep every s-th pixel: `strided` mode's stand-in for a pool with no conv after it."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., :: self.stride, :: self.stride]

    def extra_repr(self) -> str:
        return f"stride={self.stride}"


class DilatedPool2d(nn.Module):
    """A pool run at stride 1 with dilation: `none` mode's full-resolution pool.

    The input is padded so the output keeps the input size: -inf for max (never wins), and
    for avg the border windows average over real pixels only; `circular` (--seamless) wraps
    around instead. Positions on the dilation grid see exactly the windows the strided pool
    saw.
    """

    def __init__(self, pool: nn.Module, dilation: int, circular: bool = False) -> None:
        super().__init__()
        self.circular = circular
        self.kind = "max" if isinstance(pool, nn.MaxPool2d) else "avg"
        self.kernel = pair(pool.kernel_size)
        self.padding = pair(pool.padding)
        self.dilation = dilation
        self.scale = getattr(pool, "scale", 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.dilation
        (kh, kw), (ph, pw) = self.kernel, self.padding
        pad = (d * pw, d * (kw - 1 - pw), d * ph, d * (kh - 1 - ph))
        if self.circular:
            padded = wrap_pad(x, pad)
            if self.kind == "max":
                return F.max_pool2d(padded, (kh, kw), stride=1, dilation=d)
            h, w = x.shape[-2:]
            out = sum(padded[..., i * d:i * d + h, j * d:j * d + w]
                      for i in range(kh) for j in range(kw)) / (kh * kw)
            return out if self.scale == 1.0 else out * self.scale
        if self.kind == "max":
            padded = F.pad(x, pad, value=-math.inf)
            return F.max_pool2d(padded, (kh, kw), stride=1, dilation=d)
        # avg_pool2d has no dilation: sum the kh*kw shifted views, count the real pixels.
        padded = F.pad(x, pad)
        ones = F.pad(torch.ones_like(x[:1, :1]), pad)
        h, w = x.shape[-2:]
        total = sum(padded[..., i * d:i * d + h, j * d:j * d + w]
                    for i in range(kh) for j in range(kw))
        count = sum(ones[..., i * d:i * d + h, j * d:j * d + w]
                    for i in range(kh) for j in range(kw))
        out = total / count
        return out if self.scale == 1.0 else out * self.scale

    def extra_repr(self) -> str:
        return (f"{self.kind}, kernel={self.kernel}, dilation={self.dilation}"
                + (", circular" if self.circular else ""))


def apply_pooling(net: nn.Sequential, mode: str) -> nn.Sequential:
    """A new Sequential with the pooling switch applied (modules copied where changed)."""
    if mode not in POOLING_MODES:
        raise ArtconvError(f"--pooling {mode!r}: choose one of {', '.join(POOLING_MODES)}")
    items = list(net.named_children())
    if mode == "max":
        return net
    if mode == "avg":
        out = [(n, ScaledAvgPool2d(m) if isinstance(m, nn.MaxPool2d) else m) for n, m in items]
    elif mode == "strided":
        out = _strided(items)
    else:
        out = _atrous(items)
    return nn.Sequential(OrderedDict(out))


def _strided(items: list[tuple[str, nn.Module]]) -> list[tuple[str, nn.Module]]:
    out = list(items)
    for i, (name, module) in enumerate(items):
        if not isinstance(module, POOL_TYPES):
            continue
        stride = pair(module.stride)[0]
        nxt = next((j for j in range(i + 1, len(items))
                    if isinstance(items[j][1], (nn.Conv2d, *POOL_TYPES))), None)
        if nxt is not None and isinstance(items[nxt][1], nn.Conv2d):
            conv = _copy_conv(items[nxt][1], stride=pair(items[nxt][1].stride)[0] * stride)
            out[nxt] = (items[nxt][0], conv)
            items[nxt] = (items[nxt][0], conv)
            out[i] = (name, RemovedPool(stride))
        else:
            out[i] = (name, Subsample(stride))
    return out


def _atrous(items: list[tuple[str, nn.Module]]) -> list[tuple[str, nn.Module]]:
    out = []
    dilation = 1
    for name, module in items:
        if isinstance(module, POOL_TYPES):
            out.append((name, DilatedPool2d(module, dilation)))
            dilation *= pair(module.stride)[0]
        elif isinstance(module, nn.Conv2d):
            stride = pair(module.stride)[0]
            if dilation > 1 or stride > 1:
                module = _copy_conv(module, stride=1, dilation_factor=dilation)
            out.append((name, module))
            dilation *= stride
        else:
            out.append((name, module))
    return out


def _copy_conv(conv: nn.Conv2d, *, stride: int, dilation_factor: int = 1) -> nn.Conv2d:
    """Same weights (shared, not copied), new stride / dilation / padding."""
    if isinstance(conv.padding, str):
        raise ValueError(f"cannot re-stride a conv with padding={conv.padding!r}")
    dil = tuple(d * dilation_factor for d in conv.dilation)
    pad = tuple(p * dilation_factor for p in conv.padding)
    new = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride, pad, dil,
                    conv.groups, conv.bias is not None, conv.padding_mode,
                    device="meta")
    new.weight = conv.weight
    new.bias = conv.bias
    return new


@torch.no_grad()
def calibrate_avg_scales(max_net: nn.Sequential, avg_net: nn.Sequential,
                         normalize: nn.Module, size: int = 224, *, layers: int | None = None
                         ) -> dict[str, float]:
    """Set each ScaledAvgPool2d's scale to rms(maxpool(x)) / rms(avgpool(x)) on the input x
    that reaches it in the avg network, fed 1/f ("pink") noise, the spectrum of natural
    images. Done in order, so each factor sees the already-rescaled layers above. RMS, not
    the mean: after a leaky ReLU (own backbones) the mean can be ~0 or negative. Only the
    first `layers` layers run (those that map NCHW maps to NCHW maps), and none after the
    last pool."""
    children = list(zip(avg_net.named_children(), max_net.named_children(), strict=True))
    children = children[:layers]
    last_pool = max((k for k, ((_, m), _) in enumerate(children)
                     if isinstance(m, ScaledAvgPool2d)), default=-1)
    x = normalize(pink_noise(size))
    scales: dict[str, float] = {}
    for (name, module), (_, original) in children[:last_pool + 1]:
        if isinstance(module, ScaledAvgPool2d):
            module.scale = 1.0
            ratio = _rms(original(x)) / _rms(module(x)).clamp_min(1e-12)
            module.scale = float(ratio)
            scales[name] = module.scale
        x = module(x)
    return scales


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.float().square().mean().sqrt()


def pink_noise(size: int, seed: int = 0) -> torch.Tensor:
    """A (1,3,size,size) image in [0,1] with a 1/f amplitude spectrum."""
    gen = torch.Generator().manual_seed(seed)
    fy = torch.fft.fftfreq(size)[:, None]
    fx = torch.fft.rfftfreq(size)[None, :]
    amp = 1.0 / torch.sqrt(fx**2 + fy**2).clamp_min(1.0 / size)
    phase = torch.rand(3, size, size // 2 + 1, generator=gen) * 2 * math.pi
    img = torch.fft.irfft2(amp * torch.exp(1j * phase), s=(size, size))
    img = (img - img.mean()) / img.std()
    return (0.5 + 0.2 * img).clamp(0, 1).unsqueeze(0)
