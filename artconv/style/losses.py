"""The style-transfer losses, each returning one value per image of an (N, ...) batch.

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

W2_EPS = 1e-4  # crowsonkb's: keeps the covariances positive definite
SQRTM_ITERS = 12  # crowsonkb's Newton-Schulz count; errors stay in the tiny eigenvalues


def _wide(t: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 -> fp32; fp32 and fp64 (gradchecks) stay as they are."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


# -- content ---------------------------------------------------------------------------------
def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N,C,H,W) vs (N|1,C,H,W) -> (N,): mean squared difference per image."""
    diff = _wide(features) - target
    return diff.square().flatten(1).mean(1)


# -- Gram ------------------------------------------------------------------------------------
def gram(features: torch.Tensor) -> torch.Tensor:
    """(N,C,H,W) -> (N,C,C) Gram matrices ``F F^T / (C H W)``, one batched matmul, fp32."""
    n, c, h, w = features.shape
    f = _wide(features).flatten(2)  # a view also for channels_last maps
    return torch.bmm(f, f.mT) / (c * h * w)


def gram_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N,C,H,W) vs a target Gram (N|1,C,C) -> (N,): mean squared error of the Grams."""
    return (gram(features) - target).square().flatten(1).mean(1)


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


def moments(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,C,H,W) -> mean (N,C) and second raw moment ``F F^T / (H W)`` (N,C,C), fp32."""
    f = _wide(features).flatten(2)
    return f.mean(2), torch.bmm(f, f.mT) / f.shape[2]


def covariance(mean: torch.Tensor, srm: torch.Tensor, eps: float = W2_EPS) -> torch.Tensor:
    eye = torch.eye(srm.shape[-1], dtype=srm.dtype, device=srm.device)
    return srm - mean.unsqueeze(-1) * mean.unsqueeze(-2) + eps * eye


def w2_loss(features: torch.Tensor, target: GaussianTarget, *,
            eps: float = W2_EPS, iters: int = SQRTM_ITERS) -> torch.Tensor:
    """(N,C,H,W) -> (N,): ``(|m - m_t|^2 + tr(S + S_t - 2 (S_t^1/2 S S_t^1/2)^1/2)) / C``.

    The one square root that depends on the image is taken by Newton-Schulz iteration
    (matmuls only): eigh's gradient is undefined for the repeated near-zero eigenvalues
    that ReLU features' covariances have.
    """
    mean, srm = moments(features)
    cov = covariance(mean, srm, eps)
    mean_term = (mean - target.mean).square().mean(-1)
    root = sqrtm_newton_schulz(target.cov_sqrt @ cov @ target.cov_sqrt, iters)
    cov_term = torch.diagonal(target.cov + cov - 2 * root, dim1=-2, dim2=-1).mean(-1)
    return mean_term + cov_term


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


# -- total variation -------------------------------------------------------------------------
def tv_loss(image: torch.Tensor, kind: Literal["l2", "l1"] = "l2") -> torch.Tensor:
    """(N,C,H,W) -> (N,): mean over pixels of ``dx^2 + dy^2`` (l2, crowsonkb's TVLoss) or
    ``|dx| + |dy|`` (l1); the last row/column is replicated so it adds no difference."""
    x = F.pad(_wide(image), (0, 1, 0, 1), mode="replicate")
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    per_pixel = dx.square() + dy.square() if kind == "l2" else dx.abs() + dy.abs()
    return per_pixel.flatten(1).mean(1)
