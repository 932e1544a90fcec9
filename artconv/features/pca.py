"""Pictures of per-pixel features: PCA to RGB, and cosine-similarity heat maps.

PCA recipe (everything a reader needs to reproduce the colours):

1. Fit pixels: a regular grid of about `SAMPLE_PIXELS` pixels per image (every g-th row and
   column, starting at g//2); with a shared basis, that many from each image, pooled.
2. Centre each channel on the fit pixels' mean.
3. Balance layers: divide each layer's block of channels by the square root of its total
   variance, so every layer weighs the same whatever its channel count and magnitude.
4. Components: the 3 leading eigenvectors of the channel covariance (`torch.linalg.eigh`,
   float64). Sign: each component is flipped so its largest-magnitude loading is positive.
5. Colours: PC1 -> red, PC2 -> green, PC3 -> blue. Each score is mapped linearly so the fit
   pixels' 1st..99th percentiles span 0..1, then clipped.

Steps 2-5 are fitted per image, or once for a batch (`--pca-shared`), and then applied
unchanged to every pixel, so a shared basis gives every image the same colour meaning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from artconv.errors import ArtconvError

SAMPLE_PIXELS = 16_384
LOW_HIGH = (0.01, 0.99)
ROWS_PER_CHUNK = 64
Features = torch.Tensor | np.ndarray  # (C, H, W); numpy memmaps are read in row chunks


@dataclass(frozen=True)
class PcaBasis:
    mean: torch.Tensor  # (C,)
    scale: torch.Tensor  # (C,) divisor after centring (the layer balance)
    components: torch.Tensor  # (3, C)
    low: torch.Tensor  # (3,) score mapped to 0
    high: torch.Tensor  # (3,) score mapped to 1
    explained: torch.Tensor  # (3,) fraction of the (balanced) variance

    def scores(self, vectors: torch.Tensor) -> torch.Tensor:
        """(N, C) -> (N, 3) component scores."""
        return ((vectors.double() - self.mean) / self.scale) @ self.components.T

    def describe(self) -> dict[str, Any]:
        return {"explained_variance": [round(float(v), 4) for v in self.explained],
                "low": self.low.tolist(), "high": self.high.tolist()}


def sample_pixels(features: Features, n: int = SAMPLE_PIXELS) -> torch.Tensor:
    """About `n` pixel vectors on a regular grid -> (N, C) float32."""
    c, h, w = features.shape
    g = max(1, math.ceil(math.sqrt(h * w / n)))
    grid = _chunk(features[:, g // 2::g, g // 2::g])
    return grid.reshape(c, -1).T


def fit_pca(samples: torch.Tensor, groups: Sequence[int] | None = None, k: int = 3
            ) -> PcaBasis:
    """Fit the basis on (N, C) pixel vectors; `groups`: channels per layer, in order."""
    x = samples.double()
    n, c = x.shape
    if n < 2:
        raise ArtconvError("PCA needs at least 2 pixels")
    mean = x.mean(0)
    x = x - mean
    scale = torch.ones(c, dtype=torch.float64)
    start = 0
    for size in groups or [c]:
        block_var = x[:, start:start + size].pow(2).sum(1).mean()
        scale[start:start + size] = block_var.sqrt().clamp_min(1e-12)
        start += size
    x = x / scale
    evals, evecs = torch.linalg.eigh(x.T @ x / (n - 1))  # ascending
    top = evecs[:, -k:].flip(1).T
    explained = evals[-k:].flip(0).clamp_min(0) / evals.clamp_min(0).sum().clamp_min(1e-12)
    if top.shape[0] < k:  # fewer channels than colours: the missing colours stay mid-grey
        top = torch.cat([top, torch.zeros(k - top.shape[0], c, dtype=top.dtype)])
        explained = torch.cat([explained, torch.zeros(k - len(explained), dtype=top.dtype)])
    biggest = top[torch.arange(k), top.abs().argmax(1)]
    top = top * torch.where(biggest < 0, -1.0, 1.0).to(top.dtype)[:, None]
    scores = x @ top.T
    low, high = (torch.quantile(scores, q, dim=0) for q in LOW_HIGH)
    return PcaBasis(mean, scale, top, low, high, explained)


def pca_rgb(features: Features, basis: PcaBasis) -> torch.Tensor:
    """(C, H, W) features -> (3, H, W) RGB in [0, 1] through `basis` (row chunks, so a
    memory-mapped array is never read whole)."""
    c, h, w = features.shape
    out = torch.empty(3, h, w)
    span = (basis.high - basis.low)
    flat = span.abs() < 1e-12
    span = torch.where(flat, torch.ones_like(span), span)
    for r in range(0, h, ROWS_PER_CHUNK):
        block = _chunk(features[:, r:r + ROWS_PER_CHUNK]).reshape(c, -1).T
        rgb = (basis.scores(block) - basis.low) / span
        rgb[:, flat] = 0.5
        out[:, r:r + ROWS_PER_CHUNK] = rgb.clamp(0, 1).T.reshape(3, -1, w).float()
    return out


def similarity_map(features: Features, x: int, y: int,
                   groups: Sequence[int] | None = None) -> torch.Tensor:
    """Cosine similarity of every pixel's vector to the one at column `x`, row `y` -> (H, W).

    With `groups` (channels per layer), each layer's block is first divided by its mean
    per-pixel norm over the image, so every layer counts equally in the cosine."""
    c, h, w = features.shape
    if not (0 <= x < w and 0 <= y < h):
        raise ArtconvError(f"--similar-to {x},{y}: outside the {w}x{h} feature map "
                           f"(x 0..{w - 1}, y 0..{h - 1})")
    weight = torch.ones(c, dtype=torch.float64)
    if groups:
        sample = sample_pixels(features).double()
        start = 0
        for size in groups:
            norm = sample[:, start:start + size].norm(dim=1).mean()
            weight[start:start + size] = 1 / norm.clamp_min(1e-12)
            start += size
    ref = _chunk(features[:, y:y + 1, x:x + 1]).reshape(c).double() * weight
    ref = ref / ref.norm().clamp_min(1e-12)
    out = torch.empty(h, w)
    for r in range(0, h, ROWS_PER_CHUNK):
        block = _chunk(features[:, r:r + ROWS_PER_CHUNK]).double() * weight[:, None, None]
        cos = torch.einsum("c,chw->hw", ref, block) / block.norm(dim=0).clamp_min(1e-12)
        out[r:r + ROWS_PER_CHUNK] = cos.float()
    out[y, x] = 1.0  # exactly, whatever the rounding: the reference pixel itself
    return out


# Five stops of a dark-to-bright ramp (black, purple, red, orange, pale yellow): brightness
# rises monotonically, so the map also reads in greyscale.
RAMP = torch.tensor([[0.00, 0.00, 0.02], [0.34, 0.06, 0.43], [0.78, 0.20, 0.28],
                     [0.98, 0.58, 0.05], [0.99, 1.00, 0.70]])


def colormap(values: torch.Tensor) -> torch.Tensor:
    """(H, W) in [0, 1] -> (3, H, W) RGB along `RAMP` (piecewise linear)."""
    t = values.clamp(0, 1) * (len(RAMP) - 1)
    i = t.floor().long().clamp(max=len(RAMP) - 2)
    f = (t - i).unsqueeze(-1)
    rgb = RAMP[i] * (1 - f) + RAMP[i + 1] * f
    return rgb.permute(2, 0, 1).contiguous()


def heat_overlay(image: torch.Tensor, similarity: torch.Tensor, x: int, y: int,
                 alpha: float = 0.75) -> torch.Tensor:
    """The similarity stretched from its minimum (darkest) to 1 (brightest), coloured by
    `RAMP`, laid over the image in grey, with a ring marking (x, y)."""
    lo = float(similarity.min())
    t = (similarity - lo) / max(1.0 - lo, 1e-6)
    grey = (image[:3] * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(0)
    out = alpha * colormap(t) + (1 - alpha) * grey
    return mark(out, x, y)


def mark(image: torch.Tensor, x: int, y: int) -> torch.Tensor:
    """A black-and-white ring around (x, y), visible on any colour."""
    _, h, w = image.shape
    r = max(3, min(h, w) // 40)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    d = ((yy - y) ** 2 + (xx - x) ** 2).float().sqrt()
    out = image.clone()
    out[:, (d >= r) & (d < r + 1)] = 1.0
    out[:, (d >= r + 1) & (d < r + 2)] = 0.0
    return out


def _chunk(a: Features) -> torch.Tensor:
    """A float32 tensor of a slice, always copied out of a numpy array (a read-only memmap
    would otherwise be shared, and torch warns about non-writable arrays); callers pass one
    row chunk at a time, so the copy stays small."""
    if isinstance(a, torch.Tensor):
        return a.float()
    return torch.from_numpy(np.array(a, dtype=np.float32, order="C", copy=True))
