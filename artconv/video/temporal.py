"""Ruder et al.'s temporal loss as a pixel-space prior of the style engine.

    prior(x) = weight * mean(c * (x - warped_previous)^2)        per image (K,)

with c the weight of `flow.FlowPair.weights` (0 on disoccluded pixels and motion
boundaries). The style engine calls priors at every scale with the images being optimised
(K, C, h, w), so the reference and the weights are resized to x's size here (and kept per
size); in luminance mode (C = 1) the reference's luminance is compared.

The weight: `--temporal-weight` is Ruder's ratio of temporal to content weight (1e3 : 5 on
0..255 pixels and caffe-VGG features). A difference of one [0, 1] pixel unit is 255 caffe
units but only 1/0.226 ~ 4.4 units of a torchvision-normalised network's input, so the
pixel weight is temporal_weight x content_weight x (network units per [0, 1])^2; with
relative losses (--loss-scale auto) the torchvision factor is used.
"""

from __future__ import annotations

import torch

from artconv.io import color
from artconv.io.images import resize_to

# Network input units per [0, 1] pixel unit: caffe VGG takes 0..255, torchvision-scaled
# networks x / std with ImageNet's std ~0.226.
PIXEL_UNITS = {"caffe": 255.0, "torchvision": 1 / 0.226}


def pixel_weight(temporal_weight: float, content_weight: float, kind: str) -> float:
    """The weight of the mean squared [0, 1] pixel difference (see the module docstring)."""
    return temporal_weight * content_weight * PIXEL_UNITS.get(kind, PIXEL_UNITS["torchvision"]
                                                              ) ** 2


class TemporalPrior:
    """weight * mean(c * (x - reference)^2) per image; `reference` (1, 3, H, W) in [0, 1],
    `c` (1, 1, H, W) in [0, 1]."""

    def __init__(self, reference: torch.Tensor, c: torch.Tensor, weight: float) -> None:
        self.reference, self.c, self.weight = reference.float(), c.float(), float(weight)
        self._at: dict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def at(self, channels: int, hw: tuple[int, int], device: torch.device
           ) -> tuple[torch.Tensor, torch.Tensor]:
        key = (channels, *hw)
        if key not in self._at:
            ref = resize_to(self.reference.to(device), hw)
            if channels == 1:
                ref = color.luminance(ref)
            c = torch.nn.functional.interpolate(self.c.to(device), size=hw, mode="bilinear",
                                                align_corners=False)
            self._at[key] = (ref, c)
        return self._at[key]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        ref, c = self.at(x.shape[1], (int(x.shape[-2]), int(x.shape[-1])), x.device)
        diff = (x.float() - ref) ** 2 * c
        return self.weight * diff.mean(dim=(1, 2, 3))


__all__ = ["PIXEL_UNITS", "TemporalPrior", "pixel_weight"]
