"""artconv: Deep Dream, neural style transfer and per-pixel features from named VGG layers.

The public API is re-exported here lazily, so ``import artconv`` stays cheap for the CLI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "ArtconvError": "artconv.errors",
    "FeatureExtractor": "artconv.core",
    "Backbone": "artconv.core",
    "load_image": "artconv.imageio",
    "save_image": "artconv.imageio",
    "read_recipe": "artconv.imageio",
    "stylize": "artconv.style",
    "StyleOptions": "artconv.style",
    "StyleTransfer": "artconv.style",
    "dream": "artconv.dream",
    "DreamOptions": "artconv.dream",
    "Dreamer": "artconv.dream",
    "pixel_features": "artconv.features",
    "FeatureOptions": "artconv.features",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # pragma: no cover
    from artconv.core import Backbone, FeatureExtractor
    from artconv.errors import ArtconvError
    from artconv.imageio import load_image, read_recipe, save_image


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'artconv' has no attribute {name!r}")
