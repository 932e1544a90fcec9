"""The dream's per-step transforms: small functions of a tensor, composed by the loop (as in
lucent's optvis.transform).

Two lists are made for every step:

* **input transforms** `x -> x'` (a random roll, a random zoom and rotation): the gradient is
  taken at `x'` and carried back onto `x` through the transforms' own backward pass, so the
  network's grid never imprints on the dream;
* **gradient transforms** `g -> g'` (Laplacian normalisation, then the mean-magnitude
  normalisation that makes `step_size` a pixel change).

Random draws come from the dream's generator in a fixed order (roll, then zoom and rotation),
so a seed gives the same dream, tiled or not, resumed or not.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from artconv.io.color import luminance, with_luminance
from artconv.io.images import resize_circular

if TYPE_CHECKING:
    from artconv.deepdream.options import DreamOptions

Transform = Callable[[torch.Tensor], torch.Tensor]


def compose(transforms: Sequence[Transform]) -> Transform:
    """One transform applying `transforms` in order."""
    def apply(x: torch.Tensor) -> torch.Tensor:
        for t in transforms:
            x = t(x)
        return x

    return apply


# -- input transforms ------------------------------------------------------------------------
def roll(shift: tuple[int, int]) -> Transform:
    """Roll the image by (dy, dx) px, wrapping around (google/deepdream's jitter)."""
    return lambda x: torch.roll(x, shifts=shift, dims=(-2, -1))


def warp(scale: float, degrees: float) -> Transform:
    """Zoom by `scale` and rotate by `degrees` about the centre (see `affine_warp`)."""
    return lambda x: affine_warp(x, scale, degrees)


def random_shift(jitter: int, rng: torch.Generator) -> tuple[int, int]:
    """A roll of up to `jitter` px each way, drawn from `rng` (drawn even when 0)."""
    dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=rng).tolist()
    return dy, dx


def random_warp(scale_jitter: float, rotate_jitter: float, rng: torch.Generator
                ) -> Transform | None:
    """A zoom by up to `scale_jitter` (log-uniform) and a rotation by up to `rotate_jitter`
    degrees, drawn from `rng`; None (and nothing drawn) when both are off."""
    if not scale_jitter and not rotate_jitter:
        return None
    u = (torch.rand(2, generator=rng) * 2 - 1).tolist()
    return warp(math.exp(u[0] * math.log1p(scale_jitter)), u[1] * rotate_jitter)


def input_transforms(options: DreamOptions, rng: torch.Generator,
                     shift: tuple[int, int] | None = None) -> list[Transform]:
    """This step's input transforms: a roll (`shift`, or drawn up to `jitter` px), then the
    scale and rotation jitter. Identity transforms are left out."""
    if shift is None:
        shift = random_shift(options.jitter, rng)
    transforms = [roll(shift)] if any(shift) else []
    warped = random_warp(options.scale_jitter, options.rotate_jitter, rng)
    return transforms if warped is None else [*transforms, warped]


# -- gradient transforms ---------------------------------------------------------------------
def normalize_mean(grad: torch.Tensor) -> torch.Tensor:
    """Divide by the mean magnitude: `step_size` becomes a mean pixel change, whatever the
    layer's scale (google/deepdream's rule)."""
    return grad / grad.abs().mean().clamp_min(1e-12)


def masked(mask: torch.Tensor) -> Transform:
    """Multiply by `mask` ((1, 1, H, W), 1 = dream here): no step where it is 0."""
    return lambda grad: grad * mask


def normalize_masked_mean(grad: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`normalize_mean` over the masked region: the mean magnitude is taken inside the mask
    (weighted by it), so `step_size` is still the mean pixel change where the dream is."""
    inside = mask.expand_as(grad).sum().clamp_min(1e-12)
    return grad / (grad.abs().sum() / inside).clamp_min(1e-12)


def gradient_transforms(options: DreamOptions, mask: torch.Tensor | None = None
                        ) -> list[Transform]:
    """What each step does to the gradient before stepping: Laplacian normalisation when
    `lap_levels` is set, then the mean-magnitude normalisation. With a `mask` the gradient
    is masked before and after the Laplacian bands (which blur across the mask's edge) and
    its mean magnitude is measured inside the mask."""
    circular = bool(getattr(options, "seamless", False))
    lap = functools.partial(lap_normalize, levels=options.lap_levels, circular=circular)
    if mask is None:
        return [lap, normalize_mean] if options.lap_levels else [normalize_mean]
    keep = masked(mask)
    middle = [lap, keep] if options.lap_levels else []
    return [keep, *middle, functools.partial(normalize_masked_mean, mask=mask)]


# -- image operations ------------------------------------------------------------------------
def resize_detail(x: torch.Tensor, hw: Sequence[int]) -> torch.Tensor:
    """Bilinear resize without clamping: dream detail is signed."""
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    return F.interpolate(x, size=tuple(hw), mode="bilinear", align_corners=False)


def affine_warp(x: torch.Tensor, scale: float, degrees: float, mode: str = "bilinear"
                ) -> torch.Tensor:
    """Zoom by `scale` and rotate by `degrees` about the centre, same size, differentiable;
    the borders reflect, so no black corners enter the image."""
    h, w = x.shape[-2:]
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    # In grid_sample's [-1, 1] coordinates a pixel rotation needs the aspect ratio.
    # Made on the host, copied without a blocking transfer: this runs every jittered step.
    theta = torch.tensor([[c, -s * h / w, 0.0], [s * w / h, c, 0.0]],
                         dtype=x.dtype).div_(scale).to(x.device, non_blocking=True)
    grid = F.affine_grid(theta[None].expand(x.shape[0], 2, 3), list(x.shape),
                         align_corners=False)
    out = F.grid_sample(x, grid, mode=mode, padding_mode="reflection", align_corners=False)
    return out.clamp(0, 1) if mode == "bicubic" else out


def lap_normalize(grad: torch.Tensor, levels: int, circular: bool = False) -> torch.Tensor:
    """Split into Laplacian bands, scale each to unit RMS, merge: every scale of pattern gets
    the same push, as in google/deepdream's lapnorm notebook (smoother, larger patterns).
    `circular`: the blur and the upsampling wrap around the edges (seamless dreams)."""
    up = resize_circular if circular else resize_detail
    bands = []
    x = grad
    # Each band is made in the buffer of its upsampled low-pass and scaled in place, and the
    # merge adds into the band: the same float operations (negation is exact, addition
    # commutes), without the image-sized temporaries of the plain expressions.
    for _ in range(levels):
        if min(x.shape[-2:]) < 4:
            break
        low = _blur_down(x, circular)
        band = up(low, x.shape[-2:])
        if band is low:  # same size (never for levels that halve): keep `low` intact
            band = band.clone()
        bands.append(band.neg_().add_(x))  # x - up(low)
        x = low
    out = _unit_rms(x)
    for band in reversed(bands):
        out = _unit_rms_(band).add_(up(out, band.shape[-2:]))
    return out


@functools.cache
def _binomial_kernel(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # Cached per device: a host-to-device copy every step would block on the GPU.
    b = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
    return torch.outer(b, b).to(device, dtype)


def _blur_down(x: torch.Tensor, circular: bool = False) -> torch.Tensor:
    k = _binomial_kernel(x.device, x.dtype)
    channels = x.shape[1]
    padded = F.pad(x, (2, 2, 2, 2), mode="circular" if circular else "replicate")
    return F.conv2d(padded, k.expand(channels, 1, 5, 5), stride=2, groups=channels)


def _unit_rms(x: torch.Tensor) -> torch.Tensor:
    return x / x.square().mean().sqrt().clamp_min(1e-12)


def _unit_rms_(x: torch.Tensor) -> torch.Tensor:
    """`_unit_rms` in place (an owned band)."""
    return x.div_(x.square().mean().sqrt().clamp_min(1e-12))


def keep_colors(result: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """`result`'s luminance with `original`'s chroma (YIQ, as the style engine does)."""
    return with_luminance(luminance(result), original).clamp(0, 1)
