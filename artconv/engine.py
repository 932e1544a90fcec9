"""The one contract every engine (style, dream, features) keeps.

An engine is built from its option record and, optionally, a shared `FeatureExtractor`;
`run()` takes a batch of images `(K, 3, H, W)` in [0, 1] and returns its result for the
batch. While it works it calls `callback(step)` with a `Step` after every step:

* the callback returning False stops the run early; `run()` then returns the result so far;
* Ctrl-C (KeyboardInterrupt) inside `run()` becomes `Interrupted`, which carries the result so
  far (or None before the first step), so every caller saves it the same way;
* `recipe(inputs)` is the only place a recipe (the record an output carries) is made.

Engines report only through the callback: progress bars, previews and web pages are adapters
on it (`artconv.cli.display`), never imported by an engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:  # the contract itself stays importable without torch (fast CLI start)
    import torch

    from artconv.options import CoreOptions


@dataclass(frozen=True)
class Step:
    """One step of any engine. `stage` is a scale (style), an octave (dream) or a tile
    (features); counts are 1-based; `done`/`total` run over the whole call (for an ETA)."""

    engine: str
    stage: int
    stages: int
    step: int
    steps: int
    done: int
    total: int
    figures: Mapping[str, float] = field(default_factory=dict)
    size: tuple[int, int] = (0, 0)  # (height, width) the stage works at
    frame: int = 0  # a frame of a clip or zoom video, 0 for a still
    _image: Callable[[], torch.Tensor] | None = field(default=None, repr=False, compare=False)

    @property
    def image(self) -> torch.Tensor | None:
        """The current result (K, 3, h, w) in [0, 1], made only when asked for (it may cost
        a copy), or None where the engine has no picture (features)."""
        return None if self._image is None else self._image()

    @property
    def label(self) -> str:
        """What a progress display calls this stage."""
        h, w = self.size
        kind = {"style": "scale", "dream": "octave", "fast": "pass"}.get(self.engine, "part")
        where = f" {w}x{h}" if h and w else ""
        return f"{self.engine} {kind} {self.stage}/{self.stages}{where}"


Callback = Callable[[Step], "bool | None"]


def keep_going(callback: Callback | None, step: Step) -> bool:
    """Call the callback, if any; False means the caller asked to stop."""
    return callback is None or callback(step) is not False


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during `run()`. `image` is the result so far, shaped as `run()` returns it, or
    None when no step had been taken (there is nothing worth saving)."""

    def __init__(self, image: Any, engine: str = "") -> None:
        super().__init__(f"{engine or 'engine'} interrupted")
        self.image = image
        self.engine = engine


class Engine(Protocol):
    """What the CLI, batch, Ray and the web page rely on."""

    name: ClassVar[str]
    options: CoreOptions

    def run(self, images: torch.Tensor, /, **inputs: Any) -> Any:
        """The result for a batch `(K, 3, H, W)`; engine-specific inputs (style images,
        targets) by keyword."""

    def recipe(self, inputs: Sequence[Any] = (), **extra: Any) -> dict[str, Any]:
        """The record an output of this engine carries."""
