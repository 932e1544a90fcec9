"""artconv: Deep Dream, neural style transfer and per-pixel features from named VGG layers.

The public API is re-exported here lazily, so `import artconv` (and the CLI's start) stays
cheap until an engine is used.
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
    "dream": "artconv.deepdream",
    "dream_frames": "artconv.deepdream",
    "DreamOptions": "artconv.deepdream",
    "Dreamer": "artconv.deepdream",
    "pixel_features": "artconv.features",
    "FeatureOptions": "artconv.features",
}

__all__ = [
    "ArtconvError", "Backbone", "DreamOptions", "Dreamer", "FeatureExtractor",
    "FeatureOptions", "StyleOptions", "StyleTransfer", "__version__", "dream", "dream_frames",
    "load_image", "pixel_features", "read_recipe", "save_image", "stylize",
]

if TYPE_CHECKING:  # pragma: no cover
    from artconv.core import Backbone, FeatureExtractor
    from artconv.deepdream import Dreamer, DreamOptions, dream, dream_frames
    from artconv.errors import ArtconvError
    from artconv.features import FeatureOptions, pixel_features
    from artconv.imageio import load_image, read_recipe, save_image
    from artconv.style import StyleOptions, StyleTransfer, stylize


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'artconv' has no attribute {name!r}")
