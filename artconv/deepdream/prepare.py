"""From dream options to an objective: which layers, which channels, what scale, what guide.

    builder = ObjectiveBuilder(options, fx, device, precision)   # checks the request now
    objective = builder.build(image)                             # measured on the image

Each layer's scale and the ranked channels (strongest/weakest) are measured on the input
resized to at most REFERENCE_SIDE px, so memory stays bounded and the objective is the same
whether or not the dream is tiled.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from artconv.deepdream.objectives import (
    Objective,
    channel_mean,
    custom,
    guided,
    layer_l2,
    parse_channels,
    select_channels,
)
from artconv.deepdream.options import DreamOptions
from artconv.device import autocast, fp32
from artconv.errors import ArtconvError
from artconv.io.files import url_of
from artconv.io.images import load_image, resize_longest
from artconv.nets.extractor import FeatureExtractor

GUIDE_FEATURES_MAX = 8192  # guide positions kept per layer: bounds the matching matmul
REFERENCE_SIDE = 512  # layer scales and channel ranks are measured at most this large


class ObjectiveBuilder:
    """The dream objective of one option record on one network; checks the request (layers,
    channel ranges, guide file) when made, so errors come before any work."""

    def __init__(self, options: DreamOptions, fx: FeatureExtractor, device: torch.device,
                 precision: str) -> None:
        self.options, self.fx, self.device, self.precision = options, fx, device, precision
        o = options
        self.channel_specs = parse_channels(o.channels)
        default_layer = o.layers[-1] if o.layers else None
        self.channel_layers = [spec.layer or default_layer for spec in self.channel_specs]
        if isinstance(o.objective, Objective):
            wanted = list(o.objective.layers)
        else:
            wanted = [*o.layers, *self.channel_layers]
        self.layers: list[str] = fx.check_layers(wanted)
        for spec, layer in zip(self.channel_specs, self.channel_layers, strict=True):
            if spec.ranking is None:  # range errors now, not after the first octave
                select_channels(spec, layer, fx.channels(layer))
        if o.guide and url_of(o.guide) is None and not Path(o.guide).is_file():
            raise ArtconvError(f"--guide {o.guide}: " + (
                "is a folder, not an image file" if Path(o.guide).is_dir() else "no such file"))
        self.min_size = fx.min_size(self.layers)

    def build(self, x: torch.Tensor) -> Objective:
        """The objective for dreaming `x` (a (1, 3, H, W) batch on the device)."""
        o = self.options
        if o.objective is not None:
            return custom(o.objective, self.layers)
        reference = self._reference(x)
        with torch.no_grad(), autocast(self.device, self.precision):
            maps = self.fx(reference, self.layers)
        with fp32():
            mean_sq = {k: max(float(v.float().square().mean()), 1e-12) for k, v in maps.items()}
            channel_means = {k: v.float().mean(dim=(0, 2, 3)) for k, v in maps.items()}
        del maps
        chosen: dict[str, set[int]] = {}
        for spec, layer in zip(self.channel_specs, self.channel_layers, strict=True):
            chosen.setdefault(layer, set()).update(select_channels(
                spec, layer, self.fx.channels(layer), channel_means[layer], o.seed))
        guide = self._guide_features(max(reference.shape[-2:])) if o.guide else {}
        weights = dict(zip(o.layers, o.layer_weights or [1.0] * len(o.layers), strict=True))
        terms = []
        for layer in self.layers:
            weight, ms = weights.get(layer, 1.0), mean_sq[layer]
            if layer in chosen:
                terms.append(weight * channel_mean(layer, sorted(chosen[layer]), math.sqrt(ms)))
            elif guide:
                terms.append(weight * guided(layer, guide[layer], ms * guide[layer].shape[0]))
            else:
                terms.append(weight * layer_l2(layer, ms))
        return sum(terms)  # type: ignore[return-value]

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        side = min(max(x.shape[-2:]), max(REFERENCE_SIDE, self.min_size))
        return resize_longest(x, side) if side != max(x.shape[-2:]) else x

    def _guide_features(self, side: int) -> dict[str, torch.Tensor]:
        """Up to GUIDE_FEATURES_MAX feature columns (C, M) per layer of the guide image."""
        try:
            guide = load_image(self.options.guide, size=max(side, self.min_size))  # type: ignore[arg-type]
        except ArtconvError as exc:
            raise ArtconvError(f"--guide {exc}") from None
        with torch.no_grad(), autocast(self.device, self.precision):
            maps = self.fx(guide[None].to(self.device, torch.float32), self.layers)
        out = {}
        gen = torch.Generator().manual_seed(self.options.seed)
        for name, m in maps.items():
            feats = m[0].float().flatten(1)  # (C, M)
            if feats.shape[1] > GUIDE_FEATURES_MAX:
                keep = torch.randperm(feats.shape[1], generator=gen)[:GUIDE_FEATURES_MAX]
                feats = feats[:, keep.to(feats.device)]
            out[name] = feats
        return out
