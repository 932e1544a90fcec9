"""A tiny engine for tests: inverts its images. It plugs into artconv with one registry
entry, which shows that batches, manifests and presets find engines only there."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from artconv.engine import Interrupted, Step, keep_going
from artconv.io.recipe import make_recipe
from artconv.options import CoreOptions, opt


@dataclass
class InvertOptions(CoreOptions):
    size: int | None = opt(None, "Longest side the inputs are loaded at.", min=1)
    steps: int = opt(2, "Steps to report.", min=1)


class InvertEngine:
    name: ClassVar[str] = "invert"
    built: ClassVar[list[InvertEngine]] = []

    def __init__(self, options: InvertOptions | None = None, *, extractor: Any = None,
                 callback: Any = None, progress: Any = None, **overrides: Any) -> None:
        self.options = (options or InvertOptions()).replace(**overrides)
        self.extractor, self.callback = extractor, callback
        self.on_step = getattr(progress, "on_step", None)  # a display, as the contract says
        self.batches: list[int] = []
        InvertEngine.built.append(self)

    def run(self, images: Any, /, **inputs: Any) -> Any:
        self.batches.append(images.shape[0])
        steps = self.options.steps
        try:
            for k in range(1, steps + 1):
                step = Step(self.name, 1, 1, k, steps, k, steps, {"k": float(k)},
                            tuple(images.shape[-2:]))
                keep_going(self.on_step, step)
                if not keep_going(self.callback, step):
                    break
        except KeyboardInterrupt:
            raise Interrupted(1 - images, engine=self.name) from None
        return 1 - images

    def recipe(self, inputs: Any = (), **extra: Any) -> dict[str, Any]:
        return make_recipe(self.name, self.options, weights="none", inputs=inputs, **extra)


class InvertFrames:
    """The invert engine frame by frame in a clip (its registry `clip_frames_path`): each
    frame inverted on its own, no flow needed."""

    long_term = False
    shows_steps = True

    def __init__(self, engine: InvertEngine, video: Any, styles: Any = ()) -> None:
        self.engine, self.last_figures = engine, {}

    def size(self, hw: tuple[int, int]) -> tuple[int, int]:
        return hw

    def scene(self, content: Any, relay: Any) -> Any:
        return self.engine.run(content)

    def next(self, content: Any, warped: Any, init: Any, relay: Any) -> Any:
        return self.engine.run(content)
