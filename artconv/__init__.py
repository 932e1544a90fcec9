"""artconv: Deep Dream, neural style transfer and per-pixel features from named VGG layers.

The public API is re-exported here lazily, so `import artconv` (and the CLI's start) stays
cheap until an engine is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from artconv import _moved
from artconv._version import __version__

_moved.install()

_EXPORTS = {
    "ArtconvError": "artconv.errors",
    "ArtconvWarning": "artconv.errors",
    "FeatureExtractor": "artconv.nets.extractor",
    "Backbone": "artconv.nets.extractor",
    "load_image": "artconv.io.images",
    "save_image": "artconv.io.images",
    "read_recipe": "artconv.io.images",
    "stylize": "artconv.api",
    "StyleOptions": "artconv.style.options",
    "StyleTransfer": "artconv.style.engine",
    "dream": "artconv.deepdream.engine",
    "dream_frames": "artconv.deepdream.zoom",
    "DreamOptions": "artconv.deepdream.options",
    "Dreamer": "artconv.deepdream.engine",
    "pixel_features": "artconv.features.engine",
    "FeatureOptions": "artconv.features.options",
    "FastStyle": "artconv.fast.engine",
    "FastOptions": "artconv.fast.options",
}

__all__ = [
    "ArtconvError", "ArtconvWarning", "Backbone", "DreamOptions", "Dreamer", "FastOptions",
    "FastStyle", "FeatureExtractor", "FeatureOptions", "StyleOptions", "StyleTransfer",
    "__version__", "dream", "dream_frames",
    "load_image", "pixel_features", "read_recipe", "save_image", "stylize",
]

if TYPE_CHECKING:  # pragma: no cover
    from artconv.api import stylize
    from artconv.deepdream.engine import Dreamer, DreamOptions, dream
    from artconv.deepdream.zoom import dream_frames
    from artconv.errors import ArtconvError
    from artconv.fast.engine import FastStyle
    from artconv.fast.options import FastOptions
    from artconv.features import FeatureOptions, pixel_features
    from artconv.io.images import load_image, read_recipe, save_image
    from artconv.nets.extractor import Backbone, FeatureExtractor
    from artconv.style import StyleOptions, StyleTransfer


__getattr__ = _moved.forward(__name__, names=_EXPORTS)
