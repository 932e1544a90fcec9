"""Pictures made from one image's features: the first three principal components as RGB,
and a cosine-similarity heat map around one point. Each is an RGB picture plus what its
recipe says about it; `artconv.features.files` saves them (the math is `features.pca`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from artconv.features.pca import (
    Features,
    PcaBasis,
    fit_pca,
    heat_overlay,
    pca_rgb,
    sample_pixels,
    similarity_map,
)


@dataclass(frozen=True)
class Picture:
    rgb: torch.Tensor  # (3, H, W) in [0, 1]
    record: dict[str, Any] = field(default_factory=dict)  # recipe entries describing it


def pca_picture(features: Features, groups: Sequence[int], basis: PcaBasis | None = None,
                shared_over: int = 0) -> Picture:
    """PC1..3 as RGB, with a basis fitted on this image's pixels, or the given (shared) one
    fitted on `shared_over` images."""
    if basis is None:
        basis = fit_pca(sample_pixels(features), groups)
    record = basis.describe() | ({"shared_over": shared_over} if shared_over else {})
    return Picture(pca_rgb(features, basis), {"picture": "pca", "pca": record})


def heat_picture(features: Features, image: torch.Tensor, point: Sequence[int],
                 file_hw: Sequence[int], groups: Sequence[int]) -> Picture:
    """Every pixel's similarity to `point` (x, y in the file's pixels: the features may be of
    the image resized by --size) over the image."""
    x, y = point
    (fh, fw), (h, w) = file_hw, features.shape[-2:]
    px, py = min(w - 1, x * w // fw), min(h - 1, y * h // fh)
    sim = similarity_map(features, px, py, groups)
    return Picture(heat_overlay(image, sim, px, py),
                   {"picture": "similarity", "point": [x, y], "point_in_features": [px, py],
                    "similarity_min": float(sim.min())})
