"""The fast engine: a trained style network applied to photos, one forward pass each.

    engine = FastStyle(FastOptions(model="starry.safetensors", size=1024))
    out = engine.run(photos)                        # (K, 3, H, W) in [0, 1] -> same shape

It keeps the contract of `artconv.engine`: a `Step` after every forward pass (`per_pass`
photos at a time, or every tile of every pass with `tile`), a callback returning False
stops with the result so far (photos not reached yet come back as they went in), Ctrl-C
becomes `Interrupted` with the result so far, and `recipe()` names the model file and its
sha256. It needs no loss network: a batch hands it no extractor (registry `network=False`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from artconv.device import autocast, resolve_device, resolve_precision
from artconv.engine import Callback, Interrupted, Step, keep_going
from artconv.fast.options import FastOptions
from artconv.fast.pretrained import Model, open_model
from artconv.fast.tiled import tiled_forward
from artconv.io import color
from artconv.io.images import fit_longest, resize_to
from artconv.io.recipe import make_recipe


class FastStyle:
    """Apply a trained style network (`options.model`) to batches of photos."""

    name: ClassVar[str] = "fast"

    def __init__(self, options: FastOptions | None = None, *, extractor: Any = None,
                 callback: Callback | None = None, progress: Any = None,
                 model: Model | None = None, **overrides: Any) -> None:
        """`model`: the network `options.model` names, already opened on this device (a
        server keeps it loaded between calls); opened here when None."""
        del extractor  # a trained network needs no loss network
        opts = options or FastOptions()
        self.options = opts.replace(**overrides) if overrides else opts.validated()
        self.device = resolve_device(self.options.device)
        self.precision = resolve_precision(self.options.precision, self.device)
        self.model: Model = model if model is not None else \
            open_model(self.options.model, self.device)
        self.net = self.model.net
        self.callback, self.progress = callback, progress
        self.last_figures: dict[str, float] = {}

    def recipe(self, inputs: Sequence[Any] = (), **extra: Any) -> dict[str, Any]:
        """The record an output carries: options, the model (as given, its file, sha256,
        shape and the recipe it was trained with), device and precision."""
        extra.setdefault("model", self.model.describe())
        return make_recipe(self.name, self.options, weights=f"model:{self.model.sha256}",
                           inputs=inputs, device=self.device, precision=self.precision,
                           **extra)

    def output_hw(self, hw: Sequence[int]) -> tuple[int, int]:
        size = self.options.size
        return fit_longest(hw, size) if size else (int(hw[0]), int(hw[1]))

    def run(self, images: torch.Tensor, /, *, callback: Callback | None = None,
            **_inputs: Any) -> torch.Tensor:
        """Stylise `images` ((K, 3, H, W) or (3, H, W) in [0, 1]) at the output size; the
        result is (K, 3, h, w) in [0, 1] on the CPU (where a print's output fits)."""
        if images.dim() == 3:
            images = images[None]
        photos = resize_to(images.float(), self.output_hw(images.shape[-2:])).cpu()
        count = photos.shape[0]
        per = self.options.per_pass or count
        user = callback if callback is not None else self.callback
        run = _Run([c for c in (getattr(self.progress, "on_step", None), user) if c],
                   photos.clone(), tuple(photos.shape[-2:]))
        try:
            if self.options.tile:
                for k in range(count):
                    if not self._tiled(run, photos[k:k + 1], k, count):
                        break
            else:
                run.total = math.ceil(count / per)
                for i in range(run.total):
                    part = slice(i * per, (i + 1) * per)
                    run.result[part] = self._forward(photos[part])
                    if not run.step(1, 1, i + 1, run.total, photos[part].shape[0]):
                        break
        except KeyboardInterrupt:
            raise Interrupted(run.result if run.made else None, engine=self.name) from None
        finally:
            self.last_figures = run.figures
        return run.result

    def _forward(self, photos: torch.Tensor) -> torch.Tensor:
        x = photos.to(self.device)
        with torch.no_grad(), autocast(self.device, self.precision):
            y = self.net(x)
        return self._colours(y.float(), x).cpu()

    def _colours(self, y: torch.Tensor, photo: torch.Tensor) -> torch.Tensor:
        if self.options.preserve_colors == "luminance":
            return color.with_luminance(color.luminance(y), photo).clamp(0, 1)
        return y

    def _tiled(self, run: _Run, photo: torch.Tensor, k: int, count: int) -> bool:
        """Photo `k` tile by tile (`artconv.fast.tiled`) into its place in the result, which
        with the photo is all that is image-sized; False when a callback stopped."""
        out = run.result[k:k + 1]

        def on_tile(pass_: int, passes: int, tile: int, tiles: int) -> bool:
            run.total = count * passes * tiles
            # a photo counts when its last tile is written; the last pass writes output
            run.made = run.made or pass_ == passes
            return run.step(pass_, passes, tile, tiles,
                            1 if (pass_, tile) == (passes, tiles) else 0)

        return tiled_forward(self.net, photo, self.options.tile, device=self.device, out=out,
                             on_tile=on_tile, finish=self._colours,
                             autocast=lambda: autocast(self.device, self.precision))


@dataclass
class _Run:
    """One call of `run()`: whom to tell, the result so far, how far it got."""

    callbacks: list[Callback]
    result: torch.Tensor  # the photos, replaced by their results as they are made
    hw: tuple[int, int]
    total: int = 0
    done: int = 0
    photos: int = 0
    made: bool = False  # some output is in `result` (before, a Ctrl-C has nothing to save)
    start: float = field(default_factory=time.perf_counter)
    figures: dict[str, float] = field(default_factory=dict)

    def step(self, stage: int, stages: int, step: int, steps: int, photos: int) -> bool:
        """Count a step (that finished `photos` photos) and tell everyone; False: stop."""
        self.done += 1
        self.photos += photos
        self.made = self.made or photos > 0
        self.figures = {"photos/s": self.photos / max(time.perf_counter() - self.start, 1e-9)}
        info = Step("fast", stage, stages, step, steps, self.done, self.total,
                    dict(self.figures), self.hw, 0, lambda: self.result)
        return all([keep_going(c, info) for c in self.callbacks])
