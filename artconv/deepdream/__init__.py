"""Deep Dream: the option record (options), objectives and their building from options
(objectives, prepare), the per-step transforms (transforms), the tiled gradient (gradient),
the engine with its octave loop (engine) and zoom videos above it (zoom).

The option record loads with the package (it needs no torch, so `--help` stays fast); every
other name loads from `artconv.deepdream.engine` (or, for zoom videos,
`artconv.deepdream.zoom`) on first use, so
`from artconv.deepdream import X` keeps working for every public name.
"""

from __future__ import annotations

from artconv._moved import forward
from artconv.deepdream.options import DreamOptions

__all__ = ["DreamOptions"]

__getattr__ = forward(__name__, "artconv.deepdream.zoom", "artconv.deepdream.engine")
