"""The one extractor cache: networks built from options, shared by every caller whose
options name the same network.

`network_key(options)` is what makes two option records need the same network (engine
fields, device and precision don't: engines move the extractor where they work). A batch
keeps an `ExtractorCache` of its own (every network its jobs need, loaded once);
`cached_extractor(options)` is the process-wide one the API uses, remembering the last
network, so a loop of API calls over images builds and loads it once.

Importing this module costs nothing: the network code loads on the first miss.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from artconv.nets.extractor import FeatureExtractor
    from artconv.options import CoreOptions


def network_key(options: CoreOptions) -> tuple:
    """The options that change the network itself: records sharing them share one extractor.
    The seed counts only where it makes the weights (random VGG weights)."""
    seed = options.seed if options.weights == "random" and not options.backbone else None
    return (options.arch, options.weights, options.preprocess, options.pooling,
            options.avg_rescale, options.seamless, options.backbone, seed)


class ExtractorCache:
    """Extractors by `network_key`; `limit` keeps only the most recently used ones (None:
    all). `loaded` counts the networks built (a batch reports it)."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.loaded = 0
        self._items: OrderedDict[tuple, FeatureExtractor] = OrderedDict()

    def get(self, options: CoreOptions) -> FeatureExtractor:
        key = network_key(options)
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        from artconv.nets.extractor import FeatureExtractor

        extractor = FeatureExtractor.from_options(options)
        self.loaded += 1
        self._items[key] = extractor
        while self.limit is not None and len(self._items) > self.limit:
            self._items.popitem(last=False)
        return extractor

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


_LAST = ExtractorCache(limit=1)


def cached_extractor(options: CoreOptions) -> FeatureExtractor:
    """`FeatureExtractor.from_options(options)`, reusing the last network built here when
    its options name the same one."""
    return _LAST.get(options)
