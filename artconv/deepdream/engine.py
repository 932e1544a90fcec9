"""Deep Dream: gradient ascent on the activations of chosen layers of the feature core.

    from artconv import dream
    dream("cat.jpg", layers=("relu4_2",), octaves=4).save("cat_dream.png")

    dreamer = Dreamer(DreamOptions(layers=("relu5_1",)), extractor=fx, callback=show)
    out = dreamer.run(image)                      # (3, H, W) in [0, 1]; a batch (K, 3, H, W)

The engine is three small parts and the loop that joins them:

* the objective, built from the options by `ObjectiveBuilder` (artconv.deepdream.prepare)
  out of the scores in artconv.deepdream.objectives;
* the per-step transforms (artconv.deepdream.transforms): a random roll and scale/rotation
  jitter of the image, Laplacian and mean-magnitude normalisation of the gradient;
* the gradient itself, tile by tile above `tile` px (artconv.deepdream.gradient);
* the octave loop, here: per octave (small to large) the image is a sharp copy of the input
  at that size plus the dream *detail* carried up from the octave below (google/deepdream's
  re-injection); each step takes the gradient through this step's transforms, normalises it
  and takes one step of `step_size`.

Zoom videos and GIFs are a driver above the engine (artconv.deepdream.zoom); the engine
writes no files and reports only through its callback (`artconv.engine.Step`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image

from artconv._moved import moved_names
from artconv.deepdream.gradient import TiledObjective
from artconv.deepdream.mask import DreamMask
from artconv.deepdream.objectives import Objective
from artconv.deepdream.options import DreamOptions
from artconv.deepdream.prepare import GUIDE_FEATURES_MAX, REFERENCE_SIDE, ObjectiveBuilder
from artconv.deepdream.transforms import (
    affine_warp,
    gradient_transforms,
    input_transforms,
    keep_colors,
    lap_normalize,
    resize_circular,
    resize_detail,
    roll,
)
from artconv.device import memory_format, resolve_device, resolve_precision
from artconv.engine import Callback, Display, Interrupted, Step, keep_going
from artconv.errors import ArtconvError
from artconv.io.images import ImageSource, load_image, resize_to, to_pil
from artconv.io.recipe import make_recipe
from artconv.nets.extractor import FeatureExtractor
from artconv.nets.tiling import Tile
from artconv.nets.weights import ArtconvWarning

# The dream's former step records: `octave`, `objective` are Step's now.
DreamStep = StepInfo = Step
FIGURES_EVERY = 10  # a display without a callback: read the objective this often


class DreamInterrupted(Interrupted):
    """Ctrl-C while dreaming; `image` is the result so far at full size, shaped as `run()`
    returns it, or None when no octave had been started (there is nothing worth saving)."""

    def __init__(self, image: torch.Tensor | None, engine: str = "dream") -> None:
        super().__init__(image, engine)


@dataclass
class _Call:
    """One `run()` call: the inputs, the octave sizes and what has been dreamed so far."""

    originals: torch.Tensor  # (K, 3, H, W) on the device
    sizes: list[tuple[int, int]]
    steps: int
    preserve_colors: bool
    mask: DreamMask | None = None
    seamless: bool = False  # detail is resized on a torus, so a tileable dream stays one
    done: int = 0
    figures: dict[str, float] = field(default_factory=dict)  # the objective last read
    results: list[torch.Tensor] = field(default_factory=list)  # (3, H, W) each, on the CPU
    img: torch.Tensor | None = None  # the current image at this octave

    @property
    def total(self) -> int:
        return len(self.originals) * len(self.sizes) * self.steps

    def full_size(self) -> torch.Tensor:
        """The current image's dream so far at the input's size: its detail added to the
        sharp input."""
        original = self.originals[len(self.results)][None]
        img = self.img
        if img is None:
            out = original
        elif img.shape == original.shape:
            out = img
        else:
            detail = self.resize(img - self.base(img.shape[-2:]), original.shape[-2:])
            if self.mask is not None:
                detail = detail * self.mask.full(tuple(original.shape[-2:]))
            out = (original + detail).clamp(0, 1)
        if self.preserve_colors:
            out = keep_colors(out, original)
        if self.mask is not None:  # exactly the input where the mask is 0 (colour round trips)
            m = self.mask.full(tuple(original.shape[-2:]))
            out = torch.where(m > 0, out, original)
        return out[0].detach().float().cpu()

    def base(self, hw: Sequence[int]) -> torch.Tensor:
        """The current image's sharp input at an octave's size: made when needed (the start
        and end of an octave), not kept through its steps (an image-sized buffer)."""
        return resize_to(self.originals[len(self.results)][None], tuple(hw))

    def resize(self, detail: torch.Tensor, hw: Sequence[int]) -> torch.Tensor:
        return (resize_circular if self.seamless else resize_detail)(detail, hw)

    def finish(self) -> None:
        self.results.append(self.full_size())
        self.img = None

    @property
    def started(self) -> bool:
        return bool(self.results) or self.img is not None

    def so_far(self, single: bool) -> torch.Tensor:
        """(K, 3, H, W), or (3, H, W) for a `single` image: the finished images, the current
        one so far, the rest as given."""
        out = list(self.results)
        if self.img is not None:
            out.append(self.full_size())
        out += [x.detach().float().cpu() for x in self.originals[len(out):]]
        return out[0] if single else torch.stack(out)

    def record(self, index: int, octave: int, step: int, value: float | None, frame: int
               ) -> Step:
        """The step record after `step` of `octave` of image `index`; `value` None: the
        objective was not read this step, the figures repeat the last ones read."""
        hw = self.sizes[octave - 1]
        if value is not None:
            self.figures = {"objective": value}
        return Step(engine="dream", stage=octave, stages=len(self.sizes), step=step,
                    steps=self.steps, done=self.done, total=self.total,
                    figures=dict(self.figures), size=hw, frame=frame,
                    _image=functools.partial(self.image_at, index, hw, self.img))

    def image_at(self, index: int, hw: tuple[int, int], img: torch.Tensor) -> torch.Tensor:
        """The batch while image `index` is `img` (at an octave of size `hw`): the images
        before it as dreamed, those after it as given, all at that size (for `Step.image`,
        made only when asked)."""
        if len(self.originals) == 1:
            return img
        done = [resize_to(r[None].to(img.device), hw) for r in self.results[:index]]
        rest = [resize_to(x[None], hw) for x in self.originals[index + 1:]]
        return torch.cat([*done, img, *rest])


class Dreamer:
    """The dream engine on one feature extractor; reusable across images (a batch)."""

    name: ClassVar[str] = "dream"

    def __init__(self, options: DreamOptions | None = None, *,
                 extractor: FeatureExtractor | None = None, callback: Callback | None = None,
                 progress: Display | None = None, **overrides: Any) -> None:
        """`callback(step)` runs after every step; returning False stops the dream.
        `progress` (anything with `on_step(step)`, e.g. artconv.progress.Progress) is told
        of every step too."""
        options = options or DreamOptions()
        self.options = options.replace(**overrides) if overrides else options.validated()
        o = self.options
        self.device = resolve_device(o.device)
        self.precision = resolve_precision(o.precision, self.device)
        self.memory_format = memory_format(self.device, self.precision)
        self.fx = extractor if extractor is not None else FeatureExtractor.from_options(o)
        # Weights in the crops' format, or every convolution converts them again each step.
        self.fx.to(self.device, memory_format=self.memory_format)
        self.callback = callback
        self.on_step: Callback | None = getattr(progress, "on_step", None)
        self.objectives = ObjectiveBuilder(o, self.fx, self.device, self.precision)
        self.layers, self.min_size = self.objectives.layers, self.objectives.min_size
        self.scorer = TiledObjective(
            self.fx, self.layers, tile=o.tile, margin=o.tile_margin, min_size=self.min_size,
            device=self.device, precision=self.precision, memory_format=self.memory_format)
        self.grad_transforms = gradient_transforms(o)
        self.mask = (DreamMask(o.mask, o.mask_feather, device=self.device,
                               circular=bool(getattr(o, "seamless", False)))
                     if o.mask is not None else None)

    # -- the objective and one step ----------------------------------------------------------
    def prepare(self, image: ImageSource) -> Objective:
        """The objective for dreaming `image` (see ObjectiveBuilder)."""
        return self.objectives.build(self.to_batch(image))

    def evaluate(self, image: torch.Tensor, objective: Objective) -> float:
        """The objective's value at `image` (no step taken)."""
        return self.scorer.value(self.to_batch(image), objective)

    def gradient(self, image: torch.Tensor, objective: Objective, *,
                 shift: tuple[int, int] = (0, 0),
                 warp: Callable[[torch.Tensor], torch.Tensor] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(d objective / d image, objective) at `image` rolled by `shift` (then warped),
        with the gradient mapped back onto the unrolled image."""
        transforms = [roll(shift)] if any(shift) else []
        return self.scorer.gradient(self.to_batch(image), objective,
                                    transforms + ([warp] if warp is not None else []))

    def step(self, image: torch.Tensor, objective: Objective, *,
             shift: tuple[int, int] | None = None, rng: torch.Generator | None = None,
             mask: torch.Tensor | None = None, read: bool = True
             ) -> tuple[torch.Tensor, float | None]:
        """One ascent step: (new image, objective before the step). Without `shift`, a random
        roll of up to `jitter` px is drawn from `rng`. With `mask` ((1, 1, H, W) in [0, 1])
        the step is taken only where it is non-zero, `step_size` measured inside it.
        `read=False` leaves the objective on the device (None is returned, no host sync and
        no finiteness check: a non-finite gradient makes the image NaN, which the next step
        that reads sees)."""
        o = self.options
        rng = rng if rng is not None else torch.Generator().manual_seed(o.seed)
        x = self.to_batch(image)
        grad, value = self.scorer.gradient(x, objective, input_transforms(o, rng, shift))
        score = _checked(value, grad) if read else None
        transforms = (self.grad_transforms if mask is None
                      else gradient_transforms(o, mask.to(grad.device, grad.dtype)))
        for transform in transforms:
            grad = transform(grad)
        # (x + step * grad) in grad's buffer, a fresh tensor the transforms made: no two
        # more image-sized temporaries; the same float operations, so the same bits.
        if grad.data_ptr() == x.data_ptr() or grad.requires_grad:
            grad = grad.clone()
        return grad.mul_(o.step_size).add_(x).clamp_(0, 1), score

    # -- octaves -----------------------------------------------------------------------------
    def check_size(self, hw: Sequence[int], *, what: str | None = None, where: str = ""
                   ) -> None:
        """Refuse an image too small for the deepest layer, naming `what` (a file) and
        `where` (the option that sized it)."""
        self.fx.check_size(hw, self.layers, what=what, where=where)

    def octave_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """(h, w) per octave, small to large; octaves below the network's minimum input are
        dropped with a warning."""
        self.check_size((height, width))
        return _octave_sizes(height, width, self.options, self.min_size, self.layers[-1])

    def run(self, images: ImageSource, objective: Objective | None = None, *, frame: int = 0,
            callback: Callback | None = None) -> torch.Tensor:
        """Dream `images`: (3, H, W) -> (3, H, W), a batch (K, 3, H, W) -> (K, 3, H, W), each
        image in turn, float in [0, 1] on the CPU. `callback` replaces the engine's callback
        and progress display for this call. Ctrl-C raises DreamInterrupted carrying the
        result so far."""
        single = not isinstance(images, torch.Tensor) or images.dim() == 3
        call = _Call(self.to_batch(images), [], self.options.steps, self.options.preserve_colors,
                     self.mask, bool(getattr(self.options, "seamless", False)))
        notify = self.notify if callback is None else functools.partial(keep_going, callback)
        # A callback sees the objective every step; a display alone every FIGURES_EVERY.
        every = callback is not None or self.callback is not None
        shown = every or (callback is None and self.on_step is not None)
        try:
            if self.mask is not None:  # before any work: a wrong-shaped mask is refused
                self.mask.check_aspect(tuple(call.originals.shape[-2:]))
            call.sizes = self.octave_sizes(*call.originals.shape[-2:])
            for index in range(len(call.originals)):
                if not self._dream_one(call, index, objective, frame, notify, every, shown):
                    break
        except KeyboardInterrupt:
            raise DreamInterrupted(call.so_far(single) if call.started else None) from None
        return call.so_far(single)

    def _dream_one(self, call: _Call, index: int, objective: Objective | None, frame: int,
                   notify: Callable[[Step], bool], every: bool = True, shown: bool = True
                   ) -> bool:
        """Dream image `index` of the call, octave by octave; False if told to stop. The
        objective is read from the device (a host sync) every step when `every`, every
        FIGURES_EVERY steps when `shown`, and always at an octave's last step, which also
        catches a dream that became non-finite."""
        o = self.options
        original = call.originals[index][None]
        objective = objective or self.prepare(original)
        rng = torch.Generator().manual_seed((o.seed + 7919 * frame) % 2**64)
        detail: torch.Tensor | None = None
        full = (original.shape[-2], original.shape[-1])
        for k, hw in enumerate(call.sizes, 1):
            base = call.base(hw)  # a sharp copy of the input, never the dream (may be it)
            mask = None if self.mask is None else self.mask.at(full, hw)
            if detail is not None:
                detail = call.resize(detail, hw)
                if mask is not None:  # the detail carried up spreads; outside the mask it goes
                    detail = detail * mask
                base = base + detail
            # Only the image lives through the steps (base and detail are made again at the
            # octave's end): 24 bytes per pixel fewer at the peak.
            call.img, base, detail = base.clamp(0, 1), None, None
            for s in range(1, o.steps + 1):
                read = every or s == o.steps or (shown and s % FIGURES_EVERY == 0)
                call.img, value = self.step(call.img, objective, rng=rng, mask=mask,
                                            read=read)
                call.done += 1
                if not notify(call.record(index, k, s, value, frame)):
                    return False
            detail = call.img - call.base(hw)
        call.finish()
        return True

    def notify(self, step: Step) -> bool:
        """Tell the progress display and the callback of a step; False: stop."""
        keep_going(self.on_step, step)
        return keep_going(self.callback, step)

    # -- helpers ----------------------------------------------------------------------------
    def recipe(self, inputs: Sequence[Any] = (), **extra: Any) -> dict[str, Any]:
        """The record an output carries (see artconv.io.recipe). The guide image and the
        mask are inputs of every dream that uses them, whoever calls: listed once, after
        `inputs`; the mask's path and sha256 are also its recipe's "mask"."""
        mask = self.mask.path if self.mask is not None else None
        for path in (self.options.guide, mask):
            if path is not None and str(Path(path)) not in {str(Path(i)) for i in inputs
                                                            if isinstance(i, str | Path)}:
                inputs = [*inputs, Path(path)]
        if self.mask is not None:
            extra.setdefault("mask", self.mask.describe())
        if self.options.objective is not None:
            extra.setdefault("objective", getattr(self.options.objective, "name", None)
                             or getattr(self.options.objective, "__name__", "custom"))
        return make_recipe("dream", self.options, weights=self.fx.identity, inputs=inputs,
                           device=self.device, precision=self.precision, **extra)

    def to_batch(self, image: ImageSource) -> torch.Tensor:
        """`image` (a path, PIL image, array, (3, H, W) or (K, 3, H, W) tensor) as a float
        batch on the engine's device."""
        if not isinstance(image, torch.Tensor):
            image = load_image(image)
        x = image if image.dim() == 4 else image.unsqueeze(0)
        return x.to(self.device, torch.float32)

    def _tiles(self, hw: Sequence[int]) -> tuple[list[Tile], list[float]]:
        return self.scorer.tiles(hw)


def _checked(value: torch.Tensor, grad: torch.Tensor) -> float:
    """The objective as a float, refusing a non-finite objective or gradient. The step's one
    host sync: the objective for progress, and the gradient's mean magnitude, which is
    non-finite exactly when some gradient entry is."""
    score, size = torch.stack([value.float(), grad.abs().mean().float()]).tolist()
    if not math.isfinite(score) or not math.isfinite(size):
        raise ArtconvError(f"dream objective became non-finite ({score}); try a smaller "
                           "--step-size or --precision fp32, or check the objective")
    return score


def _octave_sizes(height: int, width: int, o: DreamOptions, min_size: int, deepest: str
                  ) -> list[tuple[int, int]]:
    sizes = [(max(1, round(height / o.octave_scale ** k)),
              max(1, round(width / o.octave_scale ** k))) for k in reversed(range(o.octaves))]
    kept = [hw for hw in sizes if min(hw) >= min_size]
    if len(kept) < len(sizes):
        warnings.warn(f"dropping {len(sizes) - len(kept)} of {len(sizes)} octaves smaller "
                      f"than {min_size} px, the minimum input for {deepest} "
                      "(use fewer --octaves or a smaller --octave-scale)",
                      ArtconvWarning, stacklevel=4)
    return kept


# -- the API ---------------------------------------------------------------------------------
def dream(image: ImageSource, options: DreamOptions | None = None, *,
          extractor: FeatureExtractor | None = None, progress: Any = None,
          callback: Callback | None = None, **overrides: Any) -> Image.Image:
    """Dream an image (path, PIL image, array or (3, H, W) tensor in [0, 1]) and return it as
    a PIL image. Options are DreamOptions fields, e.g. `layers=("relu4_2",), octaves=4`;
    pass `extractor=` to reuse a network across calls."""
    dreamer = Dreamer(options, extractor=extractor, progress=progress, callback=callback,
                      **overrides)
    if dreamer.options.frames:
        raise ArtconvError("frames: use artconv.dream_frames(image, folder, ...) for "
                           "zoom videos")
    with progress if progress is not None else contextlib.nullcontext():
        return to_pil(dreamer.run(load_image(image, dreamer.options.size)))


__all__ = ["GUIDE_FEATURES_MAX", "REFERENCE_SIDE", "DreamInterrupted", "DreamOptions",
           "DreamStep", "Dreamer", "StepInfo", "affine_warp", "dream",
           "keep_colors", "lap_normalize"]

# The zoom driver's names, once re-exported here; the driver sits above the engine.
__getattr__ = moved_names(__name__, dict.fromkeys(
    ("dream_frames", "frame_paths", "gif_path", "write_gif", "write_frames"),
    "artconv.deepdream.zoom"))

