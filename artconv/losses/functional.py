"""The loss functions, each returning one value per image of an (N, ...) batch (also
importable as `artconv.style.losses`, the very same module). `artconv.losses.terms` builds
the composable terms on them.

Per-image values (not a batch mean) let an engine sum them: the gradient each image gets is
then exactly the one it would get alone, so a batch of K images reproduces K single runs.

Everything here runs in fp32 (callers enter `artconv.device.fp32()`): features may arrive
as bf16 from an autocast network, and Gram matrices or covariances of bf16 values lose too
much precision to compare.

Normalisations follow the engines the default weights come from (see `artconv.style`):

* content: mean squared error of the feature maps (neural-style, crowsonkb).
* gram: ``G = F F^T / (C H W)`` and the mean squared error over its ``C x C`` entries, as in
  neural-style (Johnson). This is Gatys et al.'s ``1/(4 N^2 M^2)`` form times ``4 / C^2``.
* w2: the squared Wasserstein-2 distance between the Gaussians with the features' mean and
  covariance, divided by C, as crowsonkb's style-transfer-pytorch (``StyleLossW2``).
* tv: mean over pixels of squared (l2) or absolute (l1) neighbour differences.

Region masks (Gatys et al. 2017, "Controlling Perceptual Factors in Neural Style Transfer",
guided Gram matrices): a mask (N|1,1,H,W) at the layer's grid weighs each position, and the
statistics are normalised by the mask's mass ``mean(m)`` there: ``G = F diag(m) F^T /
(C H W mean(m))``, the Gram of (features x mask) for a 0/1 mask and the plain Gram for an
all-ones one. W2 takes the mask-weighted mean and covariance alike. Soft masks weigh
positions by their grey level, so two styles blend where their masks overlap.
`layer_mask` resizes a mask to a layer's grid (bilinear, as the paper).

Relative losses (``--loss-scale auto``): `gram_scale` and `w2_scale` give a style target's
own magnitude (mean square of the target Gram; the target covariance's trace / C) and
`content_scale` a content target's mean square, which the objective divides by.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from artconv.nets import precision

W2_EPS = 1e-4  # crowsonkb's: keeps the covariances positive definite
SQRTM_ITERS = 12  # crowsonkb's Newton-Schulz count; errors stay in the tiny eigenvalues


def _wide(t: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 -> fp32; fp32 and fp64 (gradchecks) stay as they are."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


# -- content ---------------------------------------------------------------------------------
def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N,C,H,W) vs (N|1,C,H,W) -> (N,): mean squared difference per image."""
    diff = _wide(features) - target
    # A sum over dims: flatten(1) copies a channels_last map (and again backward), and the
    # backward of a mean makes an NCHW gradient to mix with NHWC maps (6x the time at relu4_2)
    return diff.square().sum(tuple(range(1, diff.dim()))) / diff[0].numel()


def content_scale(target: torch.Tensor) -> torch.Tensor:
    """(N,C,H,W) content target -> (N,): its mean square (what a relative content loss
    divides by), never zero."""
    return _wide(target).square().flatten(1).mean(1).clamp_min(1e-12)


# -- masks -----------------------------------------------------------------------------------
MIN_MASS = 1e-6  # a region whose mask mass at a layer is below this adds no loss there


def layer_mask(mask: torch.Tensor, hw: tuple[int, int] | torch.Size) -> torch.Tensor:
    """(N,1,H,W) mask in [0, 1] -> (N,1,h,w) at a layer's grid: bilinear (antialiased when
    shrinking, so a thin region is not missed), clamped to [0, 1]."""
    hw = tuple(hw)
    if tuple(mask.shape[-2:]) == hw:
        return mask
    shrink = hw[0] < mask.shape[-2] or hw[1] < mask.shape[-1]
    out = F.interpolate(_wide(mask), size=hw, mode="bilinear", align_corners=False,
                        antialias=shrink)
    return out.clamp(0, 1)


def mask_mass(mask: torch.Tensor) -> torch.Tensor:
    """(N,1,h,w) -> (N,): the mean of the mask over positions (1 for an all-ones mask)."""
    return _wide(mask).flatten(1).mean(1)


def _weighted(f: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Flattened features (N,C,P) -> (features x mask (N,C,P), total weight (N,1,1))."""
    if mask is None:
        return f, f.new_full((f.shape[0], 1, 1), float(f.shape[2]))
    m = _wide(mask).flatten(2)  # (N|1,1,P)
    total = m.sum(2, keepdim=True).clamp_min(MIN_MASS * f.shape[2])
    return f * m, total.expand(f.shape[0], 1, 1)


def _total(f: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The total weight (N,1,1) of flattened features (N,C,P) under `mask`, fp32."""
    if mask is None:
        return torch.full((f.shape[0], 1, 1), float(f.shape[2]), device=f.device,
                          dtype=torch.promote_types(f.dtype, torch.float32))
    total = _wide(mask).flatten(2).sum(2, keepdim=True).clamp_min(MIN_MASS * f.shape[2])
    return total.expand(f.shape[0], 1, 1)


class _Moments(torch.autograd.Function):
    """(F m 1, F diag(m) F^T) of maps (N,C,H,W), flattened to F (N,C,P), under a constant
    mask m (N|1,1,P) or none: the sums behind the Gram matrix and the W2 moments, in fp32.

    Written out because autograd's own backward of ``bmm(F m, F^T)`` does two matmuls and
    sums two full-size gradients (one of them transposed); with the product symmetric, one
    matmul ``(dG + dG^T) F`` gives the gradient (`moment_grad`), in the maps' own layout,
    rather than a third full-size map for the sum. For bf16 maps measured faster widened,
    the fp32 copy is kept for the backward rather than converted twice. A constant `minus`
    is taken off inside the product (`precision.product`); the backward is the same.
    """

    @staticmethod
    def forward(ctx: Any, maps: torch.Tensor, m: torch.Tensor | None, sums: bool,
                minus: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor]:
        # bf16 or widened to fp32: whichever measured faster here (nets.precision); the
        # sums and the product stay fp32 either way.
        kind = precision.choose(maps.device, maps.dtype, maps.shape[1], maps[0, 0].numel())
        fw = maps if kind == precision.BF16 else _wide(maps)
        f = fw.flatten(2)
        fm = f if m is None else f * m.to(f.dtype)
        ctx.save_for_backward(fw, m)
        ctx.dtype, ctx.kind = maps.dtype, kind
        ctx.set_materialize_grads(False)  # no full-size zeros for an unused output
        return (fm.sum(2, dtype=torch.promote_types(fm.dtype, torch.float32)) if sums else None,
                precision.product(fm, f, kind, minus))

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_sum: torch.Tensor | None, d_prod: torch.Tensor | None
                 ) -> tuple[torch.Tensor | None, None, None, None]:
        fw, m = ctx.saved_tensors
        if not ctx.needs_input_grad[0] or (d_sum is None and d_prod is None):
            return None, None, None, None
        mask = None if m is None else m.view(m.shape[0], 1, *fw.shape[2:])
        return moment_grad(fw, d_prod, d_sum, mask, ctx.kind).to(ctx.dtype), None, None, None


@torch.no_grad()  # a gradient handed to autograd, never differentiated itself
def moment_grad(maps: torch.Tensor, d_prod: torch.Tensor | None, d_sum: torch.Tensor | None,
                mask: torch.Tensor | None, kind: str,
                where: tuple[slice, slice] | None = None) -> torch.Tensor:
    """The gradient at `maps` (N,C,...) of ``<d_prod, F diag(m) F^T> + <d_sum, F m>`` over
    the positions `where` (rows, cols of 4-d maps; all if None): ``m ((dP + dP^T) f +
    d_sum)`` there, 0 elsewhere; `mask` m (N|1,1,...) covers those positions (None: 1).
    The product runs as `kind` ("bf16": in the maps' bf16; else widened), written straight
    into a new tensor of the maps' shape and memory layout (NHWC stays NHWC), which
    autograd may take over and add the next layer's gradient to in place. Given a tile's
    whole map and its owned positions as `where`, the product over the margin too costs
    less than cutting out the owned positions: they are not one block of memory in either
    layout, and autograd would widen their gradient back to the whole map."""
    fw = maps if kind == precision.BF16 else _wide(maps)
    rows = _rows(fw)
    if rows is not None:  # NHWC: channels fastest, so the (P,C) rows are contiguous
        grad = torch.empty_like(fw)
        if d_prod is None:
            grad.zero_()
        else:
            precision.product_grad(rows, d_prod, kind, rows=True, out=_rows(grad))
    elif d_prod is None:
        grad = torch.zeros(fw.shape, dtype=fw.dtype, device=fw.device)
    else:
        grad = precision.product_grad(fw.flatten(2), d_prod, kind).view(fw.shape)
    owned = grad if where is None else grad[..., where[0], where[1]]
    if d_sum is not None:
        owned.add_(d_sum.view(*d_sum.shape, *[1] * (owned.dim() - 2)))
    if mask is not None:
        owned.mul_(mask)
    if where is not None:
        _zero_outside(grad, *where)
    return grad


def _zero_outside(t: torch.Tensor, rows: slice, cols: slice) -> None:
    """Zero `t` (...,H,W) outside the block [rows, cols] (slices with steps of 1)."""
    top, bottom = rows.start or 0, t.shape[-2] if rows.stop is None else rows.stop
    left, right = cols.start or 0, t.shape[-1] if cols.stop is None else cols.stop
    t[..., :top, :].zero_()
    t[..., bottom:, :].zero_()
    t[..., top:bottom, :left].zero_()
    t[..., top:bottom, right:].zero_()


def _rows(t: torch.Tensor) -> torch.Tensor | None:
    """A channels_last map (N,C,H,W) as its contiguous (N,H*W,C) rows (a view), else None
    (a contiguous map's bmm output (N,C,P) is already in its layout)."""
    if t.dim() != 4 or t.is_contiguous() or not t.is_contiguous(
            memory_format=torch.channels_last):
        return None
    n, c, h, w = t.shape
    return t.permute(0, 2, 3, 1).view(n, h * w, c)


def moment_sums(maps: torch.Tensor, mask: torch.Tensor | None, sums: bool = True,
                minus: torch.Tensor | None = None
                ) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Maps (N,C,...) -> (sum of F m (N,C) if `sums`, F diag(m) F^T - `minus` (N,C,C)),
    fp32, F the maps flattened to (N,C,P). A constant `minus` (N|1,C,C) may be subtracted
    inside the product (`precision.product`), where that is what keeps the result exact."""
    m = None if mask is None else _wide(mask).flatten(2)
    if m is not None and m.requires_grad:  # a learnt mask: autograd's general backward
        f = _wide(maps).flatten(2)
        fm, _ = _weighted(f, mask)
        prod = torch.bmm(fm, f.mT)
        return fm.sum(2) if sums else None, prod if minus is None else prod - minus
    return _Moments.apply(maps, m, sums, minus)


# -- Gram ------------------------------------------------------------------------------------
def gram(features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(N,C,H,W) -> (N,C,C) Gram matrices ``F F^T / (C H W)``, one batched matmul, fp32.
    With a `mask` (N|1,1,H,W): the guided Gram ``F diag(m) F^T / (C H W mean(m))``."""
    c = features.shape[1]
    f = features.flatten(2)  # a view also for channels_last maps
    _, prod = moment_sums(features, mask, sums=False)
    return prod / (c * _total(f, mask))


def gram_loss(features: torch.Tensor, target: torch.Tensor,
              mask: torch.Tensor | None = None) -> torch.Tensor:
    """(N,C,H,W) vs a target Gram (N|1,C,C) -> (N,): mean squared error of the Grams
    (of the guided Gram within `mask`). Where the statistics run in bf16 on a CPU, the
    difference is taken inside the product (`precision.fuses`): rounding the Gram itself
    would be off by more than a converged difference."""
    c = features.shape[1]
    if not precision.fuses(features.device, features.dtype, c, features[0, 0].numel()) or (
            mask is not None and mask.requires_grad):
        return (gram(features, mask) - target).square().flatten(1).mean(1)
    scale = c * _total(features.flatten(2), mask)
    _, diff = moment_sums(features, mask, sums=False, minus=target * scale)
    return (diff / scale).square().flatten(1).mean(1)


def gram_sum(maps: torch.Tensor, mask: torch.Tensor | None, target: torch.Tensor
             ) -> torch.Tensor:
    """``sum m f f^T`` (N,C,C), fp32, of maps (N,C,...), whose Gram is to be compared with
    `target` (N|1,C,C). Where the statistics run in bf16 on a CPU (`precision.fuses`), it is
    taken as a fused difference from the target's share of it, which is then added back in
    fp32: the product rounded to bf16 would be off by more than a converged difference."""
    c = maps.shape[1]
    if not precision.fuses(maps.device, maps.dtype, c, maps[0, 0].numel()):
        return moment_sums(maps, mask, sums=False)[1]
    share = target * (c * _total(maps.flatten(2), mask))
    return moment_sums(maps, mask, sums=False, minus=share)[1].add_(share)


def gram_scale(target: torch.Tensor) -> torch.Tensor:
    """(N,C,C) target Gram -> (N,): its mean square, so ``gram_loss / gram_scale`` is the
    relative error ``|G - A|^2 / |A|^2``."""
    return target.square().flatten(1).mean(1).clamp_min(1e-30)


# -- Wasserstein-2 ---------------------------------------------------------------------------
@dataclass(frozen=True)
class GaussianTarget:
    """A style layer's target for the W2 loss: mean (N,C), covariance (N,C,C) with
    `W2_EPS` on the diagonal, and its exact square root (computed once, by eigh)."""

    mean: torch.Tensor
    cov: torch.Tensor
    cov_sqrt: torch.Tensor

    @classmethod
    def from_moments(cls, mean: torch.Tensor, srm: torch.Tensor,
                     eps: float = W2_EPS) -> GaussianTarget:
        """From the mean and second raw moment, which (unlike covariances) may be blended
        linearly across several style images."""
        cov = covariance(mean, srm, eps)
        return cls(mean, cov, sqrtm_eigh(cov))


def moments(features: torch.Tensor,
            mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,C,H,W) -> mean (N,C) and second raw moment ``F F^T / (H W)`` (N,C,C), fp32;
    with a `mask` (N|1,1,H,W), both weighted by it and divided by its total."""
    f = features.flatten(2)
    total = _total(f, mask)
    sums, prod = moment_sums(features, mask)
    assert sums is not None
    return sums / total[..., 0], prod / total


def covariance(mean: torch.Tensor, srm: torch.Tensor, eps: float = W2_EPS) -> torch.Tensor:
    eye = torch.eye(srm.shape[-1], dtype=srm.dtype, device=srm.device)
    return srm - mean.unsqueeze(-1) * mean.unsqueeze(-2) + eps * eye


def w2_loss(features: torch.Tensor, target: GaussianTarget,
            mask: torch.Tensor | None = None, *,
            eps: float = W2_EPS, iters: int = SQRTM_ITERS) -> torch.Tensor:
    """(N,C,H,W) -> (N,): ``(|m - m_t|^2 + tr(S + S_t - 2 (S_t^1/2 S S_t^1/2)^1/2)) / C``.

    The one square root that depends on the image is taken by Newton-Schulz iteration
    (matmuls only): eigh's gradient is undefined for the repeated near-zero eigenvalues
    that ReLU features' covariances have. With a `mask`, the features' mask-weighted
    mean and covariance.
    """
    mean, srm = moments(features, mask)
    return w2_from_moments(mean, srm, target, eps=eps, iters=iters)


def w2_from_moments(mean: torch.Tensor, srm: torch.Tensor, target: GaussianTarget, *,
                    eps: float = W2_EPS, iters: int = SQRTM_ITERS) -> torch.Tensor:
    """`w2_loss` from the features' mean (N,C) and second raw moment (N,C,C) instead of
    the maps (a tiled run gathers those over its tiles)."""
    cov = covariance(mean, srm, eps)
    mean_term = (mean - target.mean).square().mean(-1)
    root = sqrtm_newton_schulz(target.cov_sqrt @ cov @ target.cov_sqrt, iters)
    cov_term = torch.diagonal(target.cov + cov - 2 * root, dim1=-2, dim2=-1).mean(-1)
    return mean_term + cov_term


def w2_scale(target: GaussianTarget) -> torch.Tensor:
    """A W2 target's magnitude (N,): the trace of its covariance / C (the loss's own
    normalisation), so ``w2_loss / w2_scale`` is relative."""
    return torch.diagonal(target.cov, dim1=-2, dim2=-1).mean(-1).clamp_min(1e-30)


def sqrtm_newton_schulz(a: torch.Tensor, iters: int = SQRTM_ITERS) -> torch.Tensor:
    """Square root of symmetric PSD matrices (..., C, C) by the coupled Newton-Schulz
    iteration; scaled by the Frobenius norm first, so it converges."""
    norm = torch.linalg.matrix_norm(a, keepdim=True).clamp_min(1e-30)
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    y, z = a / norm, eye.expand_as(a)
    for _ in range(iters):
        t = 1.5 * eye - 0.5 * (z @ y)
        y, z = y @ t, t @ z
    return y * norm.sqrt()


def sqrtm_eigh(a: torch.Tensor) -> torch.Tensor:
    """Exact square root of symmetric PSD matrices (no gradient needed: targets only)."""
    vals, vecs = torch.linalg.eigh(a)
    return (vecs * vals.clamp_min(0).sqrt().unsqueeze(-2)) @ vecs.mT


# -- style targets -----------------------------------------------------------------------------
StyleKind = Literal["gram", "w2"]
StyleTarget = torch.Tensor | GaussianTarget  # a target Gram (N|1,C,C) or a Gaussian


def statistics(loss: StyleKind, features: torch.Tensor, mask: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, ...]:
    """A style image's statistics at one layer, in the form several images blend in
    linearly: (Gram,) for gram, (mean, second raw moment) for w2."""
    return moments(features, mask) if loss == "w2" else (gram(features, mask),)


def statistics_from_sums(loss: StyleKind, second: torch.Tensor, first: torch.Tensor | None,
                         weight: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """`statistics` from the sums ``sum m f f^T`` (N,C,C) and ``sum m f`` (N,C) gathered
    over the positions (tile by tile) and their total weight ``sum m``."""
    if loss == "w2":
        assert first is not None
        return first / weight, second / weight
    return (second / (second.shape[-1] * weight),)


def blend(stats: Sequence[tuple[torch.Tensor, ...]], weights: Sequence[float]
          ) -> tuple[torch.Tensor, ...]:
    """The weighted sum of several images' `statistics` (the blend weights sum to 1)."""
    total: tuple[torch.Tensor, ...] | None = None
    for s, b in zip(stats, weights, strict=True):
        scaled = tuple(b * v for v in s)
        total = scaled if total is None else tuple(
            a + c for a, c in zip(total, scaled, strict=True))
    assert total is not None
    return total


def style_target(loss: StyleKind, stats: tuple[torch.Tensor, ...]) -> StyleTarget:
    """The target a style term compares with, from (blended) `statistics`."""
    return GaussianTarget.from_moments(*stats) if loss == "w2" else stats[0]


def target_scale(target: StyleTarget) -> torch.Tensor:
    """A style target's own magnitude (N,), what a relative style loss divides by."""
    return w2_scale(target) if isinstance(target, GaussianTarget) else gram_scale(target)


# -- total variation -------------------------------------------------------------------------
def tv_loss(image: torch.Tensor, kind: Literal["l2", "l1"] = "l2", *,
            wrap: bool = False) -> torch.Tensor:
    """(N,C,H,W) -> (N,): mean over pixels of ``dx^2 + dy^2`` (l2, crowsonkb's TVLoss) or
    ``|dx| + |dy|`` (l1); the last row/column is replicated so it adds no difference, or,
    with `wrap` (seamless textures), the first one follows it, so the borders that meet
    when the image is tiled are smoothed too."""
    return _TV.apply(image, kind, wrap)


def _diffs(x: torch.Tensor, wrap: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences along W and H; 0 at the last column/row unless `wrap`."""
    if wrap:
        return x.roll(-1, -1) - x, x.roll(-1, -2) - x
    dx = F.pad(x[..., 1:] - x[..., :-1], (0, 1))
    dy = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    return dx, dy


def _back_diff(d: torch.Tensor, dim: int, wrap: bool) -> torch.Tensor:
    """The adjoint of a forward difference: ``d[i-1] - d[i]`` (``d[-1]`` = 0 or wrapped)."""
    if wrap:
        return d.roll(1, dim) - d
    size = d.shape[dim]
    prev = F.pad(d.narrow(dim, 0, size - 1), (1, 0) if dim == -1 else (0, 0, 1, 0))
    return prev - d


class _TV(torch.autograd.Function):
    """Total variation with a closed-form backward: autograd's own, through the padding
    and four slices, allocated and zero-filled a full image per slice (a measurable share
    of a small image's step)."""

    @staticmethod
    def forward(ctx: Any, image: torch.Tensor, kind: str, wrap: bool) -> torch.Tensor:
        x = _wide(image)
        dx, dy = _diffs(x, wrap)
        ctx.save_for_backward(dx, dy)
        ctx.kind, ctx.wrap, ctx.dtype = kind, wrap, image.dtype
        per_pixel = dx.square() + dy.square() if kind == "l2" else dx.abs() + dy.abs()
        return per_pixel.flatten(1).mean(1)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        dx, dy = ctx.saved_tensors
        if ctx.kind == "l2":
            dx, dy = 2 * dx, 2 * dy
        else:
            dx, dy = dx.sign(), dy.sign()
        per = grad.view(-1, *([1] * (dx.dim() - 1))) / dx[0].numel()
        out = (_back_diff(dx, -1, ctx.wrap) + _back_diff(dy, -2, ctx.wrap)) * per
        return out.to(ctx.dtype), None, None
