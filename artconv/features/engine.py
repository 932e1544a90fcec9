"""Per-pixel features: a vector for every pixel of the image from named layers (hypercolumns).

    feats = pixel_features("cat.jpg", ["relu1_2", "relu3_1"], pooling="none")   # (C, H, W)
    maps = pixel_features("cat.jpg", ["relu3_1"], upsample=None)                # {name: map}

    engine = FeatureEngine(FeatureOptions(layers=("relu2_1",)), callback=print)
    batch = engine.run(images)                                                  # (K, C, H, W)

`FeatureEngine` keeps the engine contract (`artconv.engine`): one `Step` per tile per image,
a callback returning False stops, Ctrl-C becomes `Interrupted` with the features so far, and
`recipe()` is the one place a features recipe is made. What is computed and how tiles are
laid out is `artconv.features.plan`; the computing itself is `artconv.features.extract`.
Files (arrays, pictures) are written by `artconv.features.files`, never here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from artconv.device import resolve_device, resolve_precision
from artconv.engine import Callback, Display, Interrupted, Step, keep_going
from artconv.errors import ArtconvError
from artconv.features.extract import (
    AxisSampling,
    Output,
    allocate,
    extract_into,
    pixel_sampling,
    write_tile,
)
from artconv.features.options import FeatureOptions
from artconv.features.plan import (
    CHUNK_CHANNELS,
    DTYPES,
    GIB,
    FeaturePlan,
    LayerSlot,
    forward_bytes,
    plan_features,
)
from artconv.io.images import ImageSource, load_image
from artconv.io.recipe import make_recipe
from artconv.nets.extractor import Backbone, FeatureExtractor
from artconv.nets.geometry import CellGeometry, layer_geometry
from artconv.nets.tiling import Tile
from artconv.networks import cached_extractor

# Names that `from artconv.features import X` has always offered live on here.
__all__ = ["CHUNK_CHANNELS", "DTYPES", "GIB", "UPSAMPLE_MODES", "AxisSampling", "CellGeometry",
           "FeatureEngine", "FeaturePlan", "LayerSlot", "Output", "StepListener", "Tile",
           "allocate", "build_extractor", "extract_into", "forward_bytes", "layer_geometry",
           "pixel_features", "pixel_sampling", "plan_features", "write_tile"]

UPSAMPLE_MODES = ("bilinear", "nearest", "none")
# What `run()` returns: (K, C, H, W), or with upsample "none" one {layer: map} per image.
FeatureBatch = torch.Tensor | list[dict[str, torch.Tensor]]


StepListener = Display  # the features engine's former name for a display adapter


@dataclass
class _Steps:
    """The step records of one call: `stages` images of `steps` tiles each."""

    stages: int
    steps: int
    size: tuple[int, int]
    callback: Callback | None
    listeners: Sequence[Callback] = ()  # told too; what they return does not count
    done: int = 0

    def after(self, stage: int, tile: int) -> bool:
        """Report tile `tile` (0-based) of image `stage` (1-based); False: stop."""
        self.done += 1
        step = Step("features", stage, self.stages, tile + 1, self.steps, self.done,
                    self.stages * self.steps, size=self.size)
        for listener in self.listeners:
            listener(step)
        return keep_going(self.callback, step)


class FeatureEngine:
    """Per-pixel features of a batch of images, on one network.

    `run(images)` takes (K, 3, H, W) in [0, 1] (or one (3, H, W)) and returns the features
    on the CPU in `options.dtype`: (K, C, H, W), every layer of `options.layers` brought to
    pixel resolution (`options.upsample`) and concatenated in that order. With
    `upsample="none"` it returns a list of K {layer: map} dicts, each map at its layer's own
    resolution: per image, what `pixel_features(..., upsample=None)` returns.

    Each image runs as the tiles of its plan (`plan(hw)`); after every tile the callback gets
    a `Step` with `stage` = the image (1..K) and `step` = the tile. A callback returning False
    stops: the features not computed are zeros, the shape is a full run's. Ctrl-C raises
    `Interrupted` carrying the features so far (None before the first tile).
    """

    name: ClassVar[str] = "features"

    def __init__(self, options: FeatureOptions | None = None, *,
                 extractor: FeatureExtractor | None = None, callback: Callback | None = None,
                 progress: Display | None = None, **overrides: Any) -> None:
        opts = options or FeatureOptions()
        self.options = opts.replace(**overrides) if overrides else opts.validated()
        self.fx = extractor if extractor is not None else cached_extractor(self.options)
        self.fx.check_layers(self.options.layers)
        self.device = resolve_device(self.options.device)
        self.precision = resolve_precision(self.options.precision, self.device)
        self.fx.to(self.device)
        self.callback = callback
        self.listeners: list[Callback] = [progress.on_step] if progress is not None else []
        self._plans: dict[tuple[int, int], FeaturePlan] = {}

    # -- planning ------------------------------------------------------------------------
    def plan(self, hw: Sequence[int]) -> FeaturePlan:
        """The plan for an image of `hw` (height, width): layers, channel ranges, tiles."""
        key = (int(hw[0]), int(hw[1]))
        if key not in self._plans:
            if len(self._plans) >= 64:  # a batch of many sizes: keep the memory bounded
                self._plans.clear()
            self._plans[key] = plan_features(self.fx, key, self.options)
        return self._plans[key]

    def plan_of(self, features: Output) -> FeaturePlan:
        """The plan that made one image's `features` (as `run()` returns them)."""
        if isinstance(features, torch.Tensor):
            return self.plan(features.shape[-2:])
        shapes = {k: tuple(v.shape) for k, v in features.items()}
        found = next((p for p in self._plans.values() if p.shapes() == shapes), None)
        if found is None:
            raise ArtconvError("features: these per-layer maps were not made by this engine "
                               "(run() them first)")
        return found

    # -- running -------------------------------------------------------------------------
    def run(self, images: torch.Tensor, /, *, callback: Callback | None = None
            ) -> FeatureBatch:
        """The features of a batch (see the class); `callback` overrides the engine's."""
        batch = images if images.dim() == 4 else images.unsqueeze(0)
        if batch.dim() != 4 or batch.shape[1] != 3:
            raise ArtconvError(f"expected images of shape (K, 3, H, W), got "
                               f"{tuple(images.shape)}")
        result, steps = None, None
        try:
            plan = self.plan(batch.shape[-2:])
            result = self._zeros(plan, len(batch))
            steps = self._steps(plan, len(batch), callback)
            for k, image in enumerate(batch):
                if not self._extract(image, plan, result[k], steps, stage=k + 1):
                    break
        except KeyboardInterrupt as exc:
            done = steps is not None and steps.done > 0
            raise Interrupted(result if done else None, engine=self.name) from exc
        return result

    def extract_into(self, image: torch.Tensor, plan: FeaturePlan, out: Output, *,
                     stage: int = 1, stages: int = 1, callback: Callback | None = None
                     ) -> bool:
        """One image's features into `out` (from `allocate(plan)`, or tensors viewing a
        memory-mapped array), reporting its tiles as image `stage` of `stages`. False when
        the callback stopped it (the tiles not run are left as they were)."""
        steps = self._steps(plan, stages, callback)
        steps.done = (stage - 1) * len(plan.tiles)
        return self._extract(image, plan, out, steps, stage=stage)

    def _extract(self, image: torch.Tensor, plan: FeaturePlan, out: Output, steps: _Steps,
                 *, stage: int) -> bool:
        return extract_into(self.fx, image, plan, out, device=self.device,
                            precision=self.precision,
                            on_tile=lambda i: steps.after(stage, i))

    def _steps(self, plan: FeaturePlan, stages: int, callback: Callback | None) -> _Steps:
        return _Steps(stages, len(plan.tiles), (plan.height, plan.width),
                      callback if callback is not None else self.callback, self.listeners)

    @staticmethod
    def _zeros(plan: FeaturePlan, count: int) -> FeatureBatch:
        if plan.upsample == "none":
            return [{n: torch.zeros(s, dtype=plan.dtype) for n, s in plan.shapes().items()}
                    for _ in range(count)]
        return torch.zeros((count, *plan.shape), dtype=plan.dtype)

    # -- the record ----------------------------------------------------------------------
    def recipe(self, inputs: Sequence[Any] = (), *, plan: FeaturePlan | None = None,
               **extra: Any) -> dict[str, Any]:
        """The record every features output carries (the one place it is made): options,
        weights identity, device, precision, and with `plan` what each channel range is.
        Plain JSON types only, so a .pt file opens with torch.load(weights_only=True)."""
        if plan is not None:
            extra["features"] = plan.describe()
        recipe = make_recipe("features", self.options, weights=self.fx.identity,
                             inputs=inputs, device=self.device, precision=self.precision,
                             **extra)
        return json.loads(json.dumps(recipe, default=str))  # torch.__version__: a str subclass


# -- the API --------------------------------------------------------------------------------------
# The features package's old name for the one extractor cache (`artconv.networks`).
build_extractor = cached_extractor


def pixel_features(image: ImageSource, layers: Sequence[str] | str | None = None, *,
                   pooling: str | None = None, upsample: str | None = "bilinear",
                   extractor: FeatureExtractor | nn.Sequential | Backbone | None = None,
                   progress: Display | None = None, **options: Any) -> Output:
    """Every pixel's feature vector: the layers' maps at the image's resolution, concatenated
    in the order given -> (C, H, W) on the CPU. `upsample=None` returns {name: map} at each
    layer's own resolution instead. With `pooling="none"` all maps are natively H x W.

    `image`: a path, PIL image, array or tensor (see `artconv.io.images.load_image`), or a
    (1, 3, H, W) / (3, H, W) tensor in [0, 1]. `extractor`: a prebuilt FeatureExtractor, or an
    own nn.Sequential / Backbone (wrapped with `pooling`). `progress`: anything with
    `on_step(step)` (an `artconv.progress.Progress`). Other keywords are `FeatureOptions`
    fields (weights, arch, size, dtype, tile, max_memory, device, ...).
    """
    given = {k: v for k, v in {"layers": layers, "pooling": pooling}.items() if v is not None}
    opts = FeatureOptions().replace(**options, **given, upsample=upsample or "none")
    fx = _extractor(extractor, opts, pooling_given="pooling" in given)
    engine = FeatureEngine(opts, extractor=fx, progress=progress)
    return engine.run(load_image(image, opts.size).unsqueeze(0))[0]


def _extractor(given: FeatureExtractor | nn.Sequential | Backbone | None,
               opts: FeatureOptions, pooling_given: bool) -> FeatureExtractor:
    if given is None:
        return cached_extractor(opts)
    if isinstance(given, FeatureExtractor):
        if pooling_given and given.pooling != opts.pooling:
            raise ArtconvError(f"--pooling {opts.pooling}: the given extractor was built with "
                               f"pooling {given.pooling!r}")
        if opts.seamless and not given.seamless:
            raise ArtconvError("--seamless: the given extractor was built without it")
        return given
    return FeatureExtractor(given, opts.pooling, seamless=opts.seamless)
