"""Per-pixel features (hypercolumns): the option record, the engine, arrays and pictures.

The option record loads with the package (it needs no torch, so `--help` stays fast); every
other name loads from `artconv.features.engine` on first use, so
`from artconv.features import X` keeps working for every public name.
"""

from __future__ import annotations

from artconv._moved import forward
from artconv.features.options import FeatureOptions

__all__ = ["FeatureOptions"]

__getattr__ = forward(__name__, "artconv.features.engine")
