"""Previews of a running job: JPEG pictures of the image so far, a few a second at most.

The studio's one JPEG encoder and decoder: the local queue (`artconv.web.studio`) and a Ray
worker (`artconv.web.runner`) make their previews here, and the Ray driver turns a worker's
JPEG back into the tensor a `Step` carries. A leaf: it imports nothing of the studio.
"""

from __future__ import annotations

import io
import time
from typing import Any

from PIL import Image

PREVIEWS_PER_SECOND = 3.0


class Previews:
    """When a step is worth a picture: at most `per_second` of them, and always the last
    step (the final image). The picture is made only then (`step.image` costs a copy)."""

    def __init__(self, per_second: float = PREVIEWS_PER_SECOND) -> None:
        self.interval = 1.0 / per_second
        self.last = 0.0

    def picture(self, step: Any) -> bytes | None:
        now = time.monotonic()
        if now - self.last < self.interval and step.done < step.total:
            return None
        image = step.image
        if image is None:
            return None
        self.last = now
        return jpeg(image[0])


def jpeg(image: Any, quality: int = 85) -> bytes:
    """A (3, H, W) tensor in [0, 1] as JPEG bytes (previews, thumbnails)."""
    # torch loads with the first job, not with the server
    from artconv.io.images import to_pil

    buffer = io.BytesIO()
    to_pil(image).convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def from_jpeg(picture: bytes) -> Any:
    """JPEG bytes as the (1, 3, H, W) tensor in [0, 1] a Step's image is."""
    from artconv.io.images import load_image  # (on a Ray driver: torch is loaded already)

    with Image.open(io.BytesIO(picture)) as img:
        return load_image(img)[None]
