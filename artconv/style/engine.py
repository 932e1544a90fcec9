"""Neural style transfer: optimise an image so its features match a content image's and its
feature statistics match one or more style images' (Gatys et al. 2016).

    img = artconv.stylize("photo.jpg", "starry.jpg", size=512)            # a PIL image

    st = StyleTransfer(StyleOptions(optimizer="adam"), extractor=fx)      # lower level
    targets = st.style_targets([style], size=512)                         # reusable
    out = st.run(contents, targets=targets, callback=print)               # (K,3,H,W)

A batch of K content images of one size is optimised together; every loss is computed per
image and summed and each image has its own L-BFGS history, so the result equals K separate
runs. Style targets are computed once per style and scale under no_grad and reused across
content images and `run()` calls (unless colours are preserved: then they depend on the
content).

The engine keeps the contract of `artconv.engine`: a `Step` after every step (with the
per-image losses in `per_image`), a callback returning False stops with the result so far,
Ctrl-C becomes `Interrupted` with the result so far, and `recipe()` is the one place a style
recipe is made. The pieces: `weights` (loss weights), `targets` (style statistics and their
cache), `optimise` (the objective and the per-scale state); this module runs the ladder.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from artconv.device import memory_format, resolve_device, resolve_precision
from artconv.engine import Callback, Display, Interrupted, Step, keep_going
from artconv.errors import ArtconvError
from artconv.io import color
from artconv.io.images import (
    ImageSource,
    fit_longest,
    load_image,
    resize_circular,
    resize_to,
)
from artconv.io.recipe import make_recipe
from artconv.losses.weights import (
    DEFAULT_WEIGHTS,
    TV_L1_FACTOR,
    LossWeights,
    default_layer_weights,
    resolve_weights,
    weights_kind,
)
from artconv.nets.extractor import FeatureExtractor
from artconv.style.masks import Masks
from artconv.style.optimise import (
    EMA,
    LBFGS_HISTORY,
    Objective,
    Prior,
    ScaleRun,
    loss_figures,
    warm_start,
)
from artconv.style.options import StyleOptions
from artconv.style.targets import Given, Net, StyleTargets, as_batch
from artconv.style.tiled import (
    Estimate,
    TiledObjective,
    TiledTargetMaker,
    TilePlan,
    assemble,
    choose_tile,
    estimate,
    tiles_needed,
)

FIGURES_EVERY = 10  # Adam without a callback: read losses from the device this often


StepInfo = Step  # the style engine's former step record: `per_image`, `scale` are Step's now


@dataclass
class _Run:
    """One call of `run()`: whom to tell, the scale in progress and how far the call got;
    what a step's image, `current_image()` and Ctrl-C read."""

    callbacks: list[Callback]
    every_step: bool  # a callback (not only a display) wants fresh losses every step
    total: int = 0  # steps over all scales
    stages: int = 0
    output: torch.Tensor | None = None  # the content at the output size
    scale: ScaleRun | None = None
    done: int = 0
    figures: dict[str, float] = field(default_factory=dict)  # the losses last read
    tiles: int = 1  # tiles the scale in progress runs as (each step passes them twice)
    displays: list[Callback] = field(default_factory=list)  # told of tiles within a step
    at: tuple[int, int, int, tuple[int, int]] = (0, 0, 0, (0, 0))  # stage, step, steps, hw
    tile_pass: int = 0  # of the step in progress

    def result(self) -> torch.Tensor | None:
        """The result so far, shaped as `run()` returns it; None before the first step."""
        if self.done == 0 or self.scale is None or self.output is None:
            return None
        return _finish(self.scale.iterate(), self.output, self.scale.lum)

    def steps(self, objective: Objective, steps: int, stage: int,
              hw: tuple[int, int]) -> bool:
        """The steps of the scale in progress; False when a callback asked to stop."""
        scale = self.scale
        assert scale is not None
        for step in range(1, steps + 1):
            read = (not scale.adam or self.every_step or step % FIGURES_EVERY == 0
                    or step == steps)
            self.at, self.tile_pass = (stage, step, steps, hw), 0
            values = scale.evaluate(objective, read)
            per_image: tuple[float, ...] = ()
            if values is not None:
                per_image = tuple(values.sum(0).tolist())
                self.figures = loss_figures(values, objective.rows)
                if not math.isfinite(self.figures["loss"]):
                    raise ArtconvError(
                        f"loss became {self.figures['loss']} at step {step} of scale "
                        f"{hw[1]}x{hw[0]}; nothing saved (try --precision fp32, a smaller "
                        "--lr or smaller weights)")
            scale.advance(per_image)
            self.done += 1
            if not self.report(stage, step, steps, hw, per_image):
                return False
        return True

    def tile_done(self, tile: int, tiles: int) -> None:
        """`TiledObjective.on_tile`: a tile of a pass of the step in progress is done; the
        displays get a within-step record (a bar per pass with its ETA), callbacks do not."""
        if tile == 1:
            self.tile_pass += 1
        if not self.displays:
            return
        stage, step, steps, hw = self.at
        info = StepInfo("style", stage, self.stages, step, steps, self.done, self.total,
                        {"tiles": tiles}, hw, 0, None, tile=tile, tiles=tiles,
                        tile_pass=self.tile_pass)
        for display in self.displays:
            display(info)

    def report(self, stage: int, step: int, steps: int, hw: tuple[int, int],
               per_image: tuple[float, ...]) -> bool:
        """Tell the display and the callback; False when one asked to stop."""
        if not self.callbacks:
            return True
        assert self.scale is not None
        figures = dict(self.figures)
        if self.tiles > 1:
            figures["tiles"] = self.tiles
        info = Step("style", stage, self.stages, step, steps, self.done, self.total,
                    figures, hw, 0, self.scale.current, per_image=per_image)
        return all([keep_going(callback, info) for callback in self.callbacks])


class StyleTransfer:
    """The style engine: one network, options, and the coarse-to-fine optimisation.

    `extractor` lets a batch share one network (the options' network fields are then not
    used to build one). `callback` gets a `Step` after every step (`run(callback=)`
    replaces it for one call); `progress`, a display with `on_step`, is told as well.
    """

    name: ClassVar[str] = "style"

    def __init__(self, options: StyleOptions | None = None, *,
                 extractor: FeatureExtractor | None = None, callback: Callback | None = None,
                 progress: Display | None = None, **overrides: Any) -> None:
        opts = options or StyleOptions()
        self.options = opts.replace(**overrides) if overrides else opts.validated()
        self.device = resolve_device(self.options.device)
        self.precision = resolve_precision(self.options.precision, self.device)
        self.memory_format = memory_format(self.device, self.precision)
        self.masks = Masks.from_options(self.options)  # inputs: read before the network
        self.fx = extractor if extractor is not None else FeatureExtractor.from_options(
            self.options)
        self.fx.to(self.device, memory_format=self.memory_format)
        self.fx.check_layers([*self.options.content_layers, *self.options.style_layers])
        self.weights = resolve_weights(self.options, weights_kind(self.fx))
        self.callback, self.progress = callback, progress
        self.net = Net(self.fx, self.device, self.precision, self.memory_format)
        self.target_maker = TiledTargetMaker(self.net, self.options, self.masks)
        self.last_figures: dict[str, float] = {}
        self._run_state: _Run | None = None

    def recipe(self, inputs: Sequence[Any] = (), **extra: Any) -> dict[str, Any]:
        """The record an output of this engine carries (the one place it is made): options,
        weights identity, device, precision, the loss weights actually used (with the loss
        scale), the ladder and the region masks' files and sha256 hashes."""
        extra.setdefault("loss_weights", dataclasses.asdict(self.weights))
        if self.masks is not None:
            for key, value in self.masks.record().items():
                extra.setdefault(key, value)
        extra.setdefault("scales", list(self.options.ladder()))
        return make_recipe("style", self.options, weights=self.fx.identity, inputs=inputs,
                           device=self.device, precision=self.precision, **extra)

    # -- targets -----------------------------------------------------------------------------
    @property
    def needs_content_for_targets(self) -> bool:
        return self.target_maker.needs_content

    @property
    def target_computations(self) -> int:
        """Style targets computed so far (kept ones reused don't count): lets callers check
        reuse."""
        return self.target_maker.computations

    def style_targets(self, styles: Sequence[torch.Tensor], size: int, *,
                      content: torch.Tensor | None = None) -> StyleTargets:
        """Blended style statistics for an output whose longest side is `size`.

        `styles`: (3,H,W) images in [0, 1]. `content` (K,3,H,W) is needed only with
        colour preservation, where each content image gets its own targets.
        """
        return self.target_maker.compute(styles, size, content=content)

    # -- sizes ---------------------------------------------------------------------------------
    def scale_sizes(self, hw: tuple[int, int]) -> list[tuple[int, int]]:
        """(height, width) at each scale for a content image of size `hw`."""
        return [fit_longest(hw, longest) for longest in self.options.ladder()]

    def check_sizes(self, content_hw: Sequence[int], style_hws: Sequence[Sequence[int]] = (),
                    *, content_name: str = "content image",
                    style_names: Sequence[str] = ()) -> None:
        """Refuse, before any work, a content or style image that would be too small for
        the network at the first (smallest) scale, naming the image and the option that
        set its size."""
        check_sizes(self.fx, self.options, content_hw, style_hws, content_name=content_name,
                    style_names=style_names)

    # -- running -----------------------------------------------------------------------------
    def run(self, content: torch.Tensor | ImageSource,
            styles: Sequence[torch.Tensor] | None = None, *,
            targets: StyleTargets | Mapping[int, StyleTargets] | None = None,
            callback: Callback | None = None, init: torch.Tensor | None = None,
            priors: Sequence[Prior] = ()) -> torch.Tensor:
        """Stylise `content` ((K,3,H,W) or (3,H,W) in [0, 1], or anything `load_image`
        takes) and return the result (K,3,H,W) at the output size.

        Give `styles` ((3,H,W) images; their targets are kept for later calls), or
        `targets` from `style_targets()` (one, or a mapping {scale size: targets} covering
        every scale of the ladder). A callback returning False stops the run with the
        result so far; Ctrl-C raises `Interrupted` carrying it.

        `init` ((K|1,3,h,w) in [0, 1], any size) is where the first scale starts, in place
        of the `init` option (a video frame starts from the last output, warped). `priors`
        are pixel-space terms added to the loss at every scale (`optimise.Prior`: the
        images (K,C,h,w) -> (K,) weighted losses), reported as the figure "prior".
        """
        if styles is None and targets is None:
            raise ValueError("run: give styles or targets")
        user = callback if callback is not None else self.callback
        shown = getattr(self.progress, "on_step", None)
        run = self._run_state = _Run([c for c in (shown, user) if c is not None],
                                     every_step=user is not None,
                                     displays=[shown] if shown is not None else [])
        try:
            # the display's bars show inside it (nested entries are harmless)
            with self.progress if hasattr(self.progress, "__enter__") else nullcontext():
                result = self._ladder(run, content, styles, targets, init, tuple(priors))
        except KeyboardInterrupt:
            raise Interrupted(run.result(), engine=self.name) from None
        finally:
            self.last_figures = run.figures  # the losses last read (all of them at the end)
        self._run_state = None
        return result

    def _ladder(self, run: _Run, content: torch.Tensor | ImageSource,
                styles: Sequence[torch.Tensor] | None, targets: Given | None,
                init: torch.Tensor | None = None, priors: tuple[Prior, ...] = ()
                ) -> torch.Tensor:
        """Coarse to fine: each scale starts from the last one's result, resized."""
        opts = self.options
        if not isinstance(content, torch.Tensor):
            content = load_image(content, opts.output_size)  # never decoded at full size
        content = as_batch(content).to(self.device, torch.float32)
        self.check_sizes(content.shape[-2:], [s.shape[-2:] for s in styles or ()])
        lum = opts.preserve_colors == "luminance"
        sizes = self.scale_sizes(tuple(content.shape[-2:]))
        run.output, run.stages = resize_to(content, sizes[-1]), len(sizes)
        run.total = sum(opts.iterations_at(i) for i in range(len(sizes)))
        key = self.target_maker.key(styles) if targets is None else None
        # Every scale's tile size (and memory) is settled before anything is allocated.
        tiles = self.tile_sizes(sizes, content.shape[0])
        # the style images at a tiled scale are measured tile by tile too
        self.target_maker.tiles = dict(zip(opts.ladder(), tiles, strict=True))
        x, adam_state = _initial(opts, content, sizes[0], lum, self.device, init), None
        for index, (longest, hw) in enumerate(zip(opts.ladder(), sizes, strict=True)):
            scale_targets = self.target_maker.for_scale(targets, styles, longest, content, key)
            content_s = resize_to(content, hw)
            objective = self.objective(content_s, scale_targets, priors, tile=tiles[index])
            run.tiles = len(objective.plan(hw)) if isinstance(objective, TiledObjective) else 1
            if isinstance(objective, TiledObjective):
                objective.on_tile = run.tile_done  # a bar per tile pass: no frozen screen
            # A seamless texture stays tileable when carried up to the next scale (start
            # copies it: no name keeps the carried image alive through the scale).
            run.scale = ScaleRun.start(resize_circular(x, hw) if opts.seamless
                                       else resize_to(x, hw), content_s, opts, lum, adam_state)
            adam_state = None
            finished = run.steps(objective, opts.iterations_at(index), index + 1, hw)
            # Image-sized state that is done with goes before the next scale's (or the
            # result's) is made: the content targets, and after the last scale the
            # optimiser's moments and gradient.
            del objective
            if index + 1 < len(sizes) and finished:
                adam_state = run.scale.adam_state()
            else:
                run.scale.close()
            if not finished:
                result = run.result()
                assert result is not None  # a callback stops only after a step
                return result
            x = run.scale.iterate()
        return _finish(x, run.output, lum)

    @torch.no_grad()
    def objective(self, content: torch.Tensor, targets: StyleTargets,
                  priors: Sequence[Prior] = (), *, tile: int = 0) -> Objective:
        """The loss at one scale: a function of the images being optimised ((K,3,H,W), or
        (K,1,H,W) luminance with preserve_colors=luminance) returning the weighted
        content, style and TV losses as a (3, K) tensor. `content`: (K,3,H,W) at that size.
        With `tile` > 0 and an image larger than one tile, a `TiledObjective` (exact, in
        the memory of one tile; `artconv.style.tiled`)."""
        content = as_batch(content).to(self.device, torch.float32)
        if self.options.preserve_colors == "luminance":
            content = color.luminance(content).expand(-1, 3, -1, -1)
        hw = (int(content.shape[-2]), int(content.shape[-1]))
        layers = [*self.options.content_layers, *self.options.style_layers]
        tiled = tiles_needed(self.fx, layers, hw, tile) > 1
        feats: dict[str, torch.Tensor] = {}
        if self.options.content_layers:
            if tiled:
                plan = TilePlan(self.fx, self.options.content_layers, hw, tile)
                feats = assemble(self.net, content, self.options.content_layers, plan)
            else:
                feats = self.net.features(content, self.options.content_layers)
        regions = (self.masks.regions(hw, self.device) if self.masks is not None else None)
        # Kept in the network's output precision: the terms widen their slices to fp32, so a
        # bf16 target is exact at half the memory of an fp32 copy.
        if tiled:
            return TiledObjective(self.net, self.options, self.weights, feats, targets, regions,
                                  priors, tile=tile)
        return Objective(self.net, self.options, self.weights, feats, targets, regions, priors)

    def tile_sizes(self, sizes: Sequence[tuple[int, int]], batch: int = 1) -> list[int]:
        """The tile size of each scale (0: untiled) from --tile and --max-memory; a run that
        would not fit is refused here, with one line, before anything is allocated."""
        regions = len(self.masks) if self.masks is not None else 0
        return [choose_tile(self.fx, self.options, hw, self.device, batch, regions)
                for hw in sizes]

    def memory(self, hw: tuple[int, int], batch: int = 1) -> Estimate:
        """The estimated peak memory of a scale of `hw` px as this engine would run it."""
        regions = len(self.masks) if self.masks is not None else 0
        tile = choose_tile(self.fx, self.options, hw, self.device, batch, regions,
                           check=False)
        layers = [*self.options.content_layers, *self.options.style_layers]
        tile = tile if tiles_needed(self.fx, layers, hw, tile) > 1 else 0
        return estimate(self.fx, self.options, hw, tile, batch, regions)

    def current_image(self) -> torch.Tensor | None:
        """The latest result (K,3,h,w) at the scale in progress while `run` is going or
        after it was interrupted; None before the first scale started. (`Interrupted.image`
        carries it at the output size.)"""
        run = self._run_state
        if run is None or run.scale is None:
            return None
        with torch.no_grad():
            return run.scale.current()


def check_sizes(fx: FeatureExtractor, opts: StyleOptions, content_hw: Sequence[int],
                style_hws: Sequence[Sequence[int]] = (), *, content_name: str = "content image",
                style_names: Sequence[str] = ()) -> None:
    """`StyleTransfer.check_sizes` for a network and option record."""
    ladder = opts.ladder()
    if opts.scales:
        where = f" at --scales {opts.scales[0]}"
    elif len(ladder) > 1:
        where = f" at --min-scale {opts.min_scale} (first scale {ladder[0]} px)"
    else:
        where = f" at --size {ladder[0]}"
    hw = fit_longest(tuple(content_hw), ladder[0])
    fx.check_size(hw, [*opts.content_layers, *opts.style_layers], what=content_name,
                  where=where)
    longest = max(1, round(ladder[0] * opts.style_scale))
    style_where = (f" at --style-scale {opts.style_scale:g} of {ladder[0]} px"
                   if opts.style_scale != 1 else where)
    for k, style_hw in enumerate(style_hws):
        name = style_names[k] if k < len(style_names) else f"style image {k + 1}"
        fx.check_size(fit_longest(tuple(style_hw), longest), opts.style_layers, what=name,
                      where=style_where)


def _initial(options: StyleOptions, content: torch.Tensor, hw: tuple[int, int], lum: bool,
             device: torch.device, given: torch.Tensor | None = None) -> torch.Tensor:
    """The image the first scale starts from (ScaleRun.start copies it): `given` (run's
    `init`), else the `init` option."""
    init = options.init
    k = content.shape[0]
    if given is not None:
        x = resize_to(as_batch(given).to(device, torch.float32), hw).expand(k, -1, -1, -1)
    elif init == "content":
        x = resize_to(content, hw)
    elif init == "noise":
        # Made on the CPU, so a seed gives the same start on any device; one draw shared
        # by the batch, so each image starts where it would in a run of its own.
        gen = torch.Generator().manual_seed(options.seed)
        x = torch.rand((1, 3, *hw), generator=gen).to(device).expand(k, -1, -1, -1)
    else:
        try:
            start = load_image(init)
        except ArtconvError as exc:
            raise ArtconvError(f"--init {exc} (use content, noise or an image path)") \
                from None
        x = resize_to(start.to(device), hw).expand(k, -1, -1, -1)
    return color.luminance(x).clamp(0, 1) if lum else x


def _finish(x: torch.Tensor, content: torch.Tensor, lum: bool) -> torch.Tensor:
    """An iterate (K,C,h,w) as a result: at the size of `content` (the content at the
    output size), clamped, and recoloured from the content in luminance mode."""
    with torch.no_grad():
        x = resize_to(x, tuple(content.shape[-2:])).clamp(0, 1)
        return color.with_luminance(x, content).clamp(0, 1) if lum else x


__all__ = [
    "DEFAULT_WEIGHTS", "EMA", "FIGURES_EVERY", "LBFGS_HISTORY", "TV_L1_FACTOR", "Display",
    "LossWeights", "Objective", "Prior", "ScaleRun", "StepInfo", "StyleOptions",
    "StyleTargets", "StyleTransfer", "check_sizes", "default_layer_weights",
    "resolve_weights", "warm_start", "weights_kind",
]
