"""An objective's value and gradient at an image, tile by tile above `tile` px (in the memory
of one tile), through the per-step input transforms (see artconv.nets.tiling and
artconv.deepdream.transforms)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from artconv.deepdream.objectives import Objective
from artconv.deepdream.transforms import Transform, compose
from artconv.device import autocast, fp32
from artconv.errors import ArtconvError
from artconv.nets.extractor import FeatureExtractor, describe
from artconv.nets.tiling import (
    MemoryEstimate,
    Tile,
    network_bytes,
    pass_bytes,
    tile_grid,
    tiled_gradient,
)
from artconv.nets.weights import ArtconvWarning


class TiledObjective:
    """Scores objectives of `layers` on `fx`, tiled above `tile` px with a margin of context
    (default: the deepest layer's receptive field, so tiled = untiled)."""

    def __init__(self, fx: FeatureExtractor, layers: Sequence[str], *, tile: int,
                 margin: int | None, min_size: int, device: torch.device, precision: str,
                 memory_format: torch.memory_format) -> None:
        self.fx, self.layers, self.tile, self.min_size = fx, list(layers), tile, min_size
        self.device, self.precision, self.memory_format = device, precision, memory_format
        deepest = {i.name: i for i in fx.describe(256)}[self.layers[-1]]
        self.align = deepest.stride
        self.margin = deepest.receptive_field - 1 if margin is None else margin
        if 0 < tile < min_size:
            raise ArtconvError(f"--tile {tile}: smaller than {min_size} px, the smallest "
                               f"input {self.layers[-1]} can see (use --tile {min_size} "
                               "or more, or --tile 0 for no tiling)")
        self._cache: dict[tuple[int, int], tuple[list[Tile], list[float]]] = {}

    def score(self, objective: Objective, crop: torch.Tensor) -> torch.Tensor:
        """The objective on one crop (a scalar, in fp32)."""
        crop = crop.contiguous(memory_format=self.memory_format)
        with autocast(self.device, self.precision):
            maps = self.fx(crop, objective.layers or self.layers)
        with fp32():
            return objective({k: v.float() for k, v in maps.items()}).float()

    def value(self, x: torch.Tensor, objective: Objective) -> float:
        """The objective's value at the batch `x` (no gradient)."""
        with torch.no_grad():
            tiles, weights = self.tiles(x.shape[-2:])
            return sum(float(self.score(objective, t.crop(x))) * w * t.core_area / t.ext_area
                       for t, w in zip(tiles, weights, strict=True))

    def gradient(self, x: torch.Tensor, objective: Objective,
                 transforms: Sequence[Transform] = ()) -> tuple[torch.Tensor, torch.Tensor]:
        """(d objective / d x, objective), the objective taken at `x` passed through
        `transforms`; their backward pass carries the gradient back onto `x`."""
        def score(crop: torch.Tensor) -> torch.Tensor:
            return self.score(objective, crop)

        if not transforms:
            return tiled_gradient(score, x, *self.tiles(x.shape[-2:]))
        with torch.enable_grad():
            src = x.detach().requires_grad_(True)
            moved = compose(transforms)(src)
            grad_moved, value = tiled_gradient(score, moved.detach(),
                                               *self.tiles(moved.shape[-2:]))
            (grad,) = torch.autograd.grad(moved, src, grad_moved)
        return grad, value

    def tiles(self, hw: Sequence[int]) -> tuple[list[Tile], list[float]]:
        """The tiles for an image size and each one's share of the deepest layer's positions
        (counted, not estimated from areas: edges that are not stride multiples round)."""
        key = (hw[0], hw[1])
        if key not in self._cache:
            # A seamless network's tile context wraps around the image like its padding.
            tiles = tile_grid(hw[0], hw[1], self.tile, self.margin, self.align, self.min_size,
                              wrap=self.fx.seamless)
            work = sum(t.ext_area for t in tiles) / (hw[0] * hw[1])
            if work > 4:  # stacklevel: the caller of Dreamer.run
                warnings.warn(f"--tile {self.tile} with a {self.margin} px margin of "
                              f"context (the receptive field of {self.layers[-1]}) computes "
                              f"each pixel ~{work:.0f} times; a larger --tile or a smaller "
                              "--tile-margin is faster", ArtconvWarning, stacklevel=6)
            full = self._positions(key)
            weights = [self._positions((t.ext[1] - t.ext[0], t.ext[3] - t.ext[2])) / full
                       for t in tiles]
            self._cache[key] = (tiles, weights)
        return self._cache[key]

    def memory(self, hw: Sequence[int], batch: int = 1) -> MemoryEstimate:
        """Estimated peak memory of one gradient at an image of `hw`, counted as the style
        engine counts its own (`artconv.nets.tiling.MemoryEstimate`): the image-sized
        buffers (image, its transformed copy and their gradients, the tile sum and the
        octave's detail and result) and one pass of the largest tile."""
        h, w = int(hw[0]), int(hw[1])
        tiles, _ = self.tiles((h, w))
        image = 4 * batch * 3 * h * w
        biggest = max(tiles, key=lambda t: t.ext_area)
        crop = (biggest.ext[1] - biggest.ext[0], biggest.ext[3] - biggest.ext[2])
        return MemoryEstimate(
            (h, w), self.tile if len(tiles) > 1 else 0,
            {"image and gradient": 4 * image, "octave": 2 * image},
            pass_bytes(self.fx.net, crop, self.layers[-1], batch=batch),
            network_bytes(self.fx))

    def _positions(self, hw: tuple[int, int]) -> int:
        info = describe(self.fx.net, hw, until=self.layers[-1])[-1]
        return max(1, info.height * info.width)
