"""Writers: one engine result to one file, with the recipe the engine made for it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from artconv.io.images import save_image


def write_picture(engine: Any, image: torch.Tensor, output: str | Path,
                  inputs: Sequence[str | Path] = (), **recipe_extra: Any) -> list[Path]:
    """Save an image result `(3, H, W)` atomically with `engine.recipe(inputs)`; never over
    one of `inputs`. 8 or 16 bits per channel, as the engine's `bit_depth` option says."""
    path = save_image(image, output, inputs=inputs,
                      recipe=engine.recipe(inputs, **recipe_extra),
                      depth=int(getattr(engine.options, "bit_depth", 8)))
    return [path]
