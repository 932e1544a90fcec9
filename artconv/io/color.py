"""Colour preservation for style transfer (Gatys et al. 2017, "Controlling Perceptual
Factors in Neural Style Transfer", section 5).

* luminance: transfer style on luminance only, then put the content's chroma back. YIQ is
  used; YUV would give the same image, because both share Y and both map a change of Y back
  to RGB as the same change of R, G and B.
* histogram: before the transfer, give the style image the content's colour mean and
  covariance with an affine map ``x -> A (x - m_s) + m_c``, ``A = S_c^1/2 S_s^-1/2``.

Images are (..., 3, H, W) float RGB tensors; nothing here clamps, since clamping would
change the statistics that were just matched.
"""

from __future__ import annotations

import torch

# FCC NTSC RGB -> YIQ
_YIQ = torch.tensor([[0.299, 0.587, 0.114],
                     [0.596, -0.274, -0.322],
                     [0.211, -0.523, 0.312]], dtype=torch.float64)
_RGB = torch.linalg.inv(_YIQ)  # exact inverse, so round trips are lossless


def _apply(matrix: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    m = matrix.to(image.dtype).to(image.device)
    return torch.einsum("ij,...jhw->...ihw", m, image)


def rgb_to_yiq(image: torch.Tensor) -> torch.Tensor:
    return _apply(_YIQ, image)


def yiq_to_rgb(image: torch.Tensor) -> torch.Tensor:
    return _apply(_RGB, image)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) -> (..., 1, H, W)."""
    return rgb_to_yiq(image)[..., :1, :, :]


def with_luminance(y: torch.Tensor, chroma_from: torch.Tensor) -> torch.Tensor:
    """RGB with luminance `y` (..., 1, H, W) and the I, Q channels of `chroma_from`."""
    yiq = rgb_to_yiq(chroma_from)
    return yiq_to_rgb(torch.cat([y, yiq[..., 1:, :, :]], dim=-3))


def match_luminance(y: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Shift and scale luminance `y` to the mean and standard deviation of `reference`
    (the paper's step that keeps a dark style from darkening the result)."""
    mu_y, sd_y = y.mean(), y.std().clamp_min(1e-6)
    return (y - mu_y) * (reference.std() / sd_y) + reference.mean()


def color_stats(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, H, W) -> colour mean (3,) and covariance (3, 3)."""
    x = image.reshape(3, -1).double()
    mean = x.mean(1)
    centred = x - mean[:, None]
    return mean, centred @ centred.T / x.shape[1]


def match_color(style: torch.Tensor, content: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """`style` (3, H, W) affinely mapped so its colour mean and covariance are `content`'s.

    The symmetric square roots (eigen-decomposition) are the "image analogies" variant the
    paper chose over Cholesky: it rotates colours least.
    """
    # On the host: MPS has neither float64 nor eigh, and this runs once per style image.
    source, content = style.detach().cpu(), content.detach().cpu()
    mean_s, cov_s = color_stats(source)
    mean_c, cov_c = color_stats(content)
    eye = torch.eye(3, dtype=cov_s.dtype)  # eps: a flat style image
    vals_s, vecs_s = torch.linalg.eigh(cov_s + eps * eye)
    vals_c, vecs_c = torch.linalg.eigh(cov_c)
    inv_sqrt_s = vecs_s @ torch.diag(vals_s.rsqrt()) @ vecs_s.T
    sqrt_c = vecs_c @ torch.diag(vals_c.clamp_min(0).sqrt()) @ vecs_c.T
    a = sqrt_c @ inv_sqrt_s
    x = source.reshape(3, -1).double()
    out = a @ (x - mean_s[:, None]) + mean_c[:, None]
    return out.reshape(style.shape).to(style.device, style.dtype)
