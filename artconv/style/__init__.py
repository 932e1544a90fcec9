"""Neural style transfer (Gatys et al.): the option record, the engine and its losses.

The option record loads with the package (it needs no torch, so `--help` stays fast); every
other name loads from `artconv.style.engine` on first use.
"""

from __future__ import annotations

from artconv._moved import forward
from artconv.style.options import StyleOptions

__all__ = ["StyleOptions"]

# stylize and its preset helpers moved up to artconv.api (they read presets and the registry)
__getattr__ = forward(__name__, "artconv.style.engine", names={
    name: "artconv.api" for name in ("stylize", "resolve_styles", "build_options", "StyleSources")})
