"""The one contract every engine (style, dream, features) keeps.

An engine is built from its option record and, optionally, a shared `FeatureExtractor`;
`run()` takes a batch of images `(K, 3, H, W)` in [0, 1] and returns its result for the
batch. While it works it calls `callback(step)` with a `Step` after every step:

* the callback returning False stops the run early; `run()` then returns the result so far;
* Ctrl-C (KeyboardInterrupt) inside `run()` becomes `Interrupted`, which carries the result so
  far (or None before the first step), so every caller saves it the same way;
* `recipe(inputs)` is the only place a recipe (the record an output carries) is made.

Engines report only through the callback: progress bars, previews and web pages are adapters
on it (`artconv.progress.Progress`, the studio's runner), never imported by an engine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:  # the contract itself stays importable without torch (fast CLI start)
    import torch

    from artconv.options import CoreOptions


@dataclass(frozen=True)
class Step:
    """One step of any engine. `stage` is a scale (style), an octave (dream) or a tile
    (features); counts are 1-based; `done`/`total` run over the whole call (for an ETA).
    `per_image` holds each image's figure (style: its total loss) where the engine read one
    this step, else it is empty."""

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
    per_image: tuple[float, ...] = ()
    # Progress within a step that runs as tiles (a tiled style scale passes them twice):
    # `tile` of `tiles` done in pass `tile_pass` of step `step` (not yet finished); 0 on the
    # record of a finished step. Engines send these to displays only, so a callback sees
    # each step once.
    tile: int = 0
    tiles: int = 0
    tile_pass: int = 0

    @property
    def image(self) -> torch.Tensor | None:
        """The current result (K, 3, h, w) in [0, 1], made only when asked for (it may cost
        a copy), or None where the engine has no picture (features)."""
        return None if self._image is None else self._image()

    @property
    def within_step(self) -> bool:
        """True for a tile's progress inside a step, False for a finished step."""
        return self.tile > 0

    @property
    def label(self) -> str:
        """What a progress display calls this stage."""
        h, w = self.size
        kind = {"style": "scale", "dream": "octave", "fast": "pass"}.get(self.engine, "part")
        where = f" {w}x{h}" if h and w else ""
        if self.tiles:
            return f"  step {self.step}/{self.steps} tiles (pass {self.tile_pass}/2)"
        return f"{self.engine} {kind} {self.stage}/{self.stages}{where}"

    def to_dict(self) -> dict[str, Any]:
        """The step as plain JSON-able values (for a page, a log or another process); the
        image is left out, it is made only when asked for."""
        return {"engine": self.engine, "stage": self.stage, "stages": self.stages,
                "step": self.step, "steps": self.steps, "done": self.done,
                "total": self.total, "figures": {k: float(v) for k, v in self.figures.items()},
                "size": tuple(self.size), "frame": self.frame,
                "per_image": tuple(self.per_image)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any],
                  image: Callable[[], torch.Tensor] | None = None) -> Step:
        """The step `to_dict` made, with `image` (if given) making its picture."""
        names = {f.name for f in dataclasses.fields(cls)} - {"_image"}
        fields = {k: v for k, v in data.items() if k in names}
        fields["size"] = tuple(fields.get("size", (0, 0)))
        fields["per_image"] = tuple(fields.get("per_image", ()))
        return cls(**fields, _image=image)

    # The engines' earlier names for these fields (style: scale 0-based; dream: octave).
    @property
    def scale(self) -> int:
        return self.stage - 1

    @property
    def scales(self) -> int:
        return self.stages

    @property
    def total_step(self) -> int:
        return self.done

    @property
    def octave(self) -> int:
        return self.stage

    @property
    def octaves(self) -> int:
        return self.stages

    @property
    def objective(self) -> float:
        return float(self.figures["objective"])


Callback = Callable[[Step], "bool | None"]


def keep_going(callback: Callback | None, step: Step) -> bool:
    """Call the callback, if any; False means the caller asked to stop."""
    return callback is None or callback(step) is not False


class Display(Protocol):
    """A display adapter on the step callback (`artconv.progress.Progress` is one): engines
    take one as `progress=` and call `on_step` with every step."""

    def on_step(self, step: Step) -> object: ...


class Relay:
    """A driver's callback for the engine runs it makes (a zoom video's or a clip's frames):
    each step is stamped with `frame` (when set) and, with `total` set, counted over the
    whole job (`offset` + the run's own count), then shown on `display` and passed to
    `callback`; `stopped` remembers that the callback asked to stop."""

    def __init__(self, callback: Callback | None, display: Callable[[Step], Any] | None = None,
                 *, total: int | None = None) -> None:
        self.callback, self.display, self.total = callback, display, total
        self.frame: int | None = None
        self.offset = 0
        self.stopped = False

    def __call__(self, step: Step) -> bool:
        changes: dict[str, int] = {}
        if self.frame is not None:
            changes["frame"] = self.frame
        if self.total is not None:
            changes.update(done=self.offset + step.done, total=self.total)
        if changes:
            step = dataclasses.replace(step, **changes)
        if self.display is not None:
            self.display(step)
        if not keep_going(self.callback, step):
            self.stopped = True
        return not self.stopped


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
