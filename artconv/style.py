"""Neural style transfer: optimise an image so its features match a content image's and its
feature statistics match one or more style images' (Gatys et al. 2016).

    img = artconv.stylize("photo.jpg", "starry.jpg", size=512)            # a PIL image

    st = StyleTransfer(StyleOptions(optimizer="adam"), extractor=fx)      # lower level
    targets = st.style_targets([style], size=512)                         # reusable
    out = st.run(contents, targets=targets, callback=print)               # (K,3,H,W)

A batch of K content images of one size is optimised together; every loss is computed per
image and summed and each image has its own L-BFGS history, so the result equals K separate
runs. Style targets are computed once per style and scale under no_grad and can be reused
across content images (unless colours are preserved: then they depend on the content).

Where the default weights come from (`DEFAULT_WEIGHTS`): the loss formulas are those of the
two reference engines (see `artconv.losses`), so their tested weights carry over:

* torchvision-scaled networks (ImageNet VGG, random weights, own backbones fed [0, 1]):
  crowsonkb/style-transfer-pytorch, `StyleTransfer.stylize()`: content 0.015, style 1
  (W2; style layer weights summing to 1, ramp 256:64:16:4:1), TV 2 (L2), Adam lr 0.02,
  betas (0.9, 0.99), iterate averaging 0.99, ladder 128 -> 512 in x1.41 steps.
* caffe VGG (inputs 0..255, features ~58x larger): jcjohnson/neural-style: content 5,
  style 100 per layer (= 500 over 5 equal layers), TV 1e-3 (on 0..255 pixels, summed),
  L-BFGS with history 100, 512 px.
* the two missing combinations carry the other engine's style:content ratio over, scaled by
  how the losses grow with the feature scale s ~ 57.7 (255 x ImageNet std 0.226): W2 and
  content both grow as s^2, so caffe+W2 keeps crowsonkb's ratio 1/0.015; the Gram MSE grows
  as s^4, so neural-style's ratio 100 becomes 100 x s^2 ~ 3.3e5 at torchvision scale, i.e.
  style 5e3 next to crowsonkb's content 0.015 (an estimate: the two VGGs were trained
  apart; checked by eye on the ImageNet-trained tiny_darknet, which is fed [0, 1] too).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from PIL import Image

from artconv import color, losses
from artconv.core import FeatureExtractor
from artconv.device import autocast, fp32, memory_format, resolve_device, resolve_precision
from artconv.errors import ArtconvError
from artconv.imageio import (
    ImageSource,
    fit_longest,
    load_image,
    resize_to,
    to_pil,
)
from artconv.options import CoreOptions, opt
from artconv.progress import Progress, ensure

DEFAULT_SIZE = 512
LADDER_STEP = math.sqrt(2)  # crowsonkb's ratio between scales
LBFGS_HISTORY = 100  # neural-style's (torch's) default; ~2 x 100 image copies of memory
FIGURES_EVERY = 10  # Adam without a callback: read losses from the device this often

# (content, style, tv) weights per (kind of network scale, style loss); module docstring.
DEFAULT_WEIGHTS: dict[tuple[str, str], tuple[float, float, float]] = {
    ("torchvision", "w2"): (0.015, 1.0, 2.0),  # crowsonkb
    ("torchvision", "gram"): (0.015, 5e3, 2.0),  # crowsonkb content/TV, ratio from neural-style
    # neural-style: TV 1e-3 x 255^2 x 3 x H x W / 2 in our per-pixel mean, matched at 512x512
    ("caffe", "gram"): (5.0, 500.0, 2.6e7),
    ("caffe", "w2"): (5.0, 5.0 / 0.015, 2.6e7),  # neural-style content/TV, crowsonkb's ratio
}
# L1 TV: the weight whose gradient equals L2's at a 2.5% pixel step (2 x 0.025 x w).
TV_L1_FACTOR = 0.05


def default_layer_weights(loss: str, n: int) -> tuple[float, ...]:
    """Gram: equal, as Gatys (w_l = 1/5) and neural-style; the 1/(CHW) Gram normalisation
    already weighs deep, wide layers down by C^2. W2: crowsonkb's geometric ramp 4^-i
    (256:64:16:4:1), the layer weighting his W2 weights were tuned with."""
    raw = [1.0] * n if loss == "gram" else [4.0 ** (n - 1 - i) for i in range(n)]
    return tuple(w / sum(raw) for w in raw)


@dataclass
class StyleOptions(CoreOptions):
    """Everything `artconv style`, `artconv.stylize` and batch jobs accept."""

    size: int | None = opt(
        None, "Longest side of the output in px (default 512, or the last of --scales).",
        min=16, short="-s")
    scales: tuple[int, ...] = opt(
        (), "Coarse-to-fine sizes (longest side), e.g. 256,512,1024: optimise small, "
        "upsample, continue. The last is the output size unless --size is larger.", min=16)
    min_scale: int | None = opt(
        None, "Automatic coarse-to-fine ladder from this size up to --size in x1.41 steps "
        "(crowsonkb's); unset = one scale. Ignored with --scales.", min=16)
    iterations: tuple[int, ...] = opt(
        (500,), "Steps per scale (L-BFGS: loss evaluations). Several values go to the scales "
        "in order, the last repeating: 1000,500 = 1000 on the first scale, 500 on the rest.",
        min=0, short="-i")
    optimizer: Literal["lbfgs", "adam"] = opt("lbfgs", "L-BFGS (Gatys, neural-style) or Adam "
                                             "(less memory; see --avg-decay).")
    lr: float | None = opt(None, "Step size; default 1 for L-BFGS, 0.02 for Adam (crowsonkb).",
                           gt=0)
    avg_decay: float = opt(
        0.0, "Adam only: output the exponential moving average of the iterates with this "
        "decay (0.99 in crowsonkb), which removes Adam's noise; 0 = off.", min=0, max=0.9999)
    init: str = opt("content", "Start image: content, noise (uniform, from --seed) or an "
                               "image path.")
    content_layers: tuple[str, ...] = opt(("relu4_2",), "Layers whose features the result "
                                          "must keep from the content image (several are "
                                          "averaged, so the weight keeps its meaning).")
    style_layers: tuple[str, ...] = opt(
        ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
        "Layers whose feature statistics the result takes from the style images.")
    style_layer_weights: tuple[float, ...] = opt(
        (), "Relative weight per style layer, normalised to sum 1 (default: equal for gram, "
        "256,64,16,4,1 for w2).", min=0)
    style_loss: Literal["gram", "w2"] = opt(
        "gram", "gram: MSE of Gram matrices (Gatys); w2: Wasserstein-2 distance of the "
        "features' mean and covariance (crowsonkb).")
    content_weight: float | None = opt(None, "Content loss weight (default: per network "
                                       "scale and style loss, see docs).", min=0)
    style_weight: float | None = opt(None, "Style loss weight (default: per network scale "
                                     "and style loss).", min=0)
    tv_weight: float | None = opt(None, "Total-variation (smoothness) weight (default: per "
                                  "network scale).", min=0)
    tv_loss: Literal["l2", "l1"] = opt("l2", "Total variation: l2 (smooth) or l1 (keeps "
                                       "edges).")
    blend: tuple[float, ...] = opt((), "Weights of several style images, e.g. 0.7,0.3 "
                                   "(normalised to sum 1); default equal.", min=0)
    style_scale: float = opt(1.0, "Style image size relative to the output (at each scale).",
                             gt=0)
    preserve_colors: Literal["none", "luminance", "histogram"] = opt(
        "none", "Keep the content's colours (Gatys 2017): luminance = transfer on luminance "
        "only; histogram = give the style images the content's colour mean and covariance.")

    def check(self) -> None:
        super().check()
        if self.scales:
            if list(self.scales) != sorted(set(self.scales)):
                raise ArtconvError(f"--scales {','.join(map(str, self.scales))}: must increase")
            if self.size is not None and self.scales[-1] > self.size:
                raise ArtconvError(f"--scales goes up to {self.scales[-1]}, past --size "
                                   f"{self.size}")
        if not self.iterations:
            raise ArtconvError("--iterations: give at least one number")
        # An automatic ladder's length depends on --size, so a preset's 1000,500 must fit
        # any; only explicit --scales make surplus values a mistake.
        if self.scales and len(self.iterations) > len(self.ladder()):
            raise ArtconvError(f"--iterations: {len(self.iterations)} values for "
                               f"{len(self.ladder())} scales ({self._ladder_text()})")
        if self.avg_decay and self.optimizer != "adam":
            raise ArtconvError("--avg-decay: averaging iterates needs --optimizer adam")
        if not self.style_layers:
            raise ArtconvError("--style-layers: name at least one layer")
        if self.style_layer_weights and len(self.style_layer_weights) != len(self.style_layers):
            raise ArtconvError(f"--style-layer-weights: {len(self.style_layer_weights)} values "
                               f"for {len(self.style_layers)} style layers")
        if self.style_layer_weights and not sum(self.style_layer_weights) > 0:
            raise ArtconvError("--style-layer-weights: at least one must be positive")
        if self.blend and not sum(self.blend) > 0:
            raise ArtconvError("--blend: at least one weight must be positive")

    # -- derived ---------------------------------------------------------------------------
    @property
    def output_size(self) -> int:
        return self.size or (self.scales[-1] if self.scales else DEFAULT_SIZE)

    def ladder(self) -> list[int]:
        """The longest side at each scale, coarse to fine. Explicit --scales win over
        --min-scale; a larger --size is added as the last scale."""
        if self.scales:
            extra = [self.size] if self.size is not None and self.size > self.scales[-1] else []
            return [*self.scales, *extra]
        end = self.output_size
        if self.min_scale is None or self.min_scale >= end:
            return [end]
        sizes, i = set(), 0
        while round(end / LADDER_STEP**i) >= self.min_scale:
            sizes.add(round(end / LADDER_STEP**i))
            i += 1
        return sorted(sizes)

    def blend_weights(self, n_styles: int) -> list[float]:
        """--blend normalised to sum 1 (equal when not given), checked against the count."""
        blend = self.blend or (1.0,) * n_styles
        if len(blend) != n_styles:
            raise ArtconvError(f"--blend: {len(blend)} weights for {n_styles} style image(s)")
        return [b / sum(blend) for b in blend]

    def iterations_at(self, scale_index: int) -> int:
        return self.iterations[min(scale_index, len(self.iterations) - 1)]

    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (0.02 if self.optimizer == "adam" else 1.0)

    def _ladder_text(self) -> str:
        return ",".join(map(str, self.ladder()))


@dataclass(frozen=True)
class LossWeights:
    """The weights a run actually used (defaults resolved), recorded in the recipe."""

    kind: str  # "torchvision" or "caffe": the network's feature scale
    content: float
    style: float
    tv: float
    style_layers: tuple[float, ...]  # normalised to sum 1


def weights_kind(fx: FeatureExtractor) -> str:
    """caffe-normalised networks (inputs scaled to 0..255) have ~58x larger features."""
    return "caffe" if fx.normalize.norm.scale != 1.0 else "torchvision"


def resolve_weights(options: StyleOptions, kind: str) -> LossWeights:
    content, style, tv = DEFAULT_WEIGHTS[(kind, options.style_loss)]
    if options.tv_loss == "l1":
        tv *= TV_L1_FACTOR
    if options.style_layer_weights:
        total = sum(options.style_layer_weights)
        layers = tuple(w / total for w in options.style_layer_weights)
    else:
        layers = default_layer_weights(options.style_loss, len(options.style_layers))
    return LossWeights(kind, _given(options.content_weight, content),
                       _given(options.style_weight, style), _given(options.tv_weight, tv),
                       layers)


def _given(value: float | None, default: float) -> float:
    return default if value is None else value


@dataclass
class StyleTargets:
    """Blended style statistics per layer for one scale (output longest side `size`).

    Each value has a leading batch dimension of 1 (shared by every content image) or K
    (one per content image, when colour preservation made them content-dependent).
    """

    size: int
    loss: str
    layers: dict[str, torch.Tensor | losses.GaussianTarget]
    batch: int = 1


@dataclass
class StepInfo:
    """What the per-step callback receives. Figures are summed over the batch."""

    step: int  # 1-based within this scale
    steps: int  # this scale's iterations
    scale: int  # 0-based index into the ladder
    scales: int
    size: tuple[int, int]  # (height, width) at this scale
    total_step: int  # 1-based over all scales
    figures: dict[str, float]  # content, style, tv, loss
    per_image: list[float]  # total loss of each image of the batch
    _image: Callable[[], torch.Tensor] = field(repr=False, default=lambda: torch.empty(0))

    @property
    def image(self) -> torch.Tensor:
        """The current result (K,3,H,W) RGB in [0, 1] (the averaged iterate if averaging)."""
        return self._image()


class _Objective:
    """The weighted losses of a batch at one scale: `(3, K)` rows content, style, tv."""

    def __init__(self, st: StyleTransfer, content_targets: dict[str, torch.Tensor],
                 targets: StyleTargets) -> None:
        self.st, self.content_targets, self.targets = st, content_targets, targets
        self.layers = list(dict.fromkeys([*content_targets, *targets.layers]))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        st, w = self.st, self.st.weights
        net_in = (x if x.shape[1] == 3 else x.expand(-1, 3, -1, -1))
        net_in = net_in.contiguous(memory_format=st.memory_format)
        with autocast(st.device, st.precision):
            feats = st.fx(net_in, self.layers)
        with fp32():
            zero = x.new_zeros(x.shape[0])
            content = sum((losses.content_loss(feats[name], target)
                           for name, target in self.content_targets.items()), zero)
            if self.content_targets:
                content = content / len(self.content_targets)
            style = zero
            for name, lw in zip(st.options.style_layers, w.style_layers, strict=True):
                target = self.targets.layers[name]
                if isinstance(target, losses.GaussianTarget):
                    style = style + lw * losses.w2_loss(feats[name], target)
                else:
                    style = style + lw * losses.gram_loss(feats[name], target)
            tv = losses.tv_loss(x, st.options.tv_loss)
            return torch.stack([w.content * content, w.style * style, w.tv * tv])


class _EMA:
    """Bias-corrected exponential moving average of the iterates (as Adam's moments)."""

    def __init__(self, start: torch.Tensor, decay: float) -> None:
        self.decay, self.accum = decay, 1.0
        self.value = torch.zeros_like(start)
        self.update(start)

    def update(self, x: torch.Tensor) -> None:
        self.accum *= self.decay
        self.value.mul_(self.decay).add_(x, alpha=1 - self.decay)

    def get(self) -> torch.Tensor:
        return self.value / (1 - self.accum)


class StyleTransfer:
    """The engine: one network, options, and the optimisation loop.

    `extractor` lets a batch share one network (the options' network fields are then not
    used to build one). `progress` adds a bar per scale to a caller's display.
    """

    def __init__(self, options: StyleOptions | None = None, *,
                 extractor: FeatureExtractor | None = None, progress: Progress | None = None,
                 **overrides: Any) -> None:
        opts = options or StyleOptions()
        self.options = opts.replace(**overrides) if overrides else opts.validated()
        self.device = resolve_device(self.options.device)
        self.precision = resolve_precision(self.options.precision, self.device)
        self.memory_format = memory_format(self.device, self.precision)
        self.fx = extractor if extractor is not None else FeatureExtractor.from_options(
            self.options)
        self.fx.to(self.device, memory_format=self.memory_format)
        self.fx.check_layers([*self.options.content_layers, *self.options.style_layers])
        self.weights = resolve_weights(self.options, weights_kind(self.fx))
        self.progress = progress
        self.target_computations = 0  # style_targets() calls: lets callers check reuse
        self.last_figures: dict[str, float] = {}
        self._compose: Callable[[], torch.Tensor] | None = None

    # -- targets -----------------------------------------------------------------------------
    @property
    def needs_content_for_targets(self) -> bool:
        return self.options.preserve_colors != "none"

    @torch.no_grad()
    def style_targets(self, styles: Sequence[torch.Tensor], size: int, *,
                      content: torch.Tensor | None = None) -> StyleTargets:
        """Blended style statistics for an output whose longest side is `size`.

        `styles`: (3,H,W) images in [0, 1]. `content` (K,3,H,W) is needed only with
        colour preservation, where each content image gets its own targets.
        """
        self.target_computations += 1
        opts = self.options
        styles = [s[0] if s.dim() == 4 else s for s in styles]
        blend = opts.blend_weights(len(styles))
        if self.needs_content_for_targets:
            if content is None:
                raise ValueError("style_targets: preserve_colors needs the content images")
            content = _batch(content).to(self.device)
            per_image = [self._blended(styles, blend, size, c) for c in content]
            layers = {name: _stack([t[name] for t in per_image]) for name in per_image[0]}
            return StyleTargets(size, opts.style_loss, layers, len(per_image))
        return StyleTargets(size, opts.style_loss, self._blended(styles, blend, size, None))

    def _blended(self, styles: Sequence[torch.Tensor], blend: Sequence[float], size: int,
                 content: torch.Tensor | None) -> dict[str, Any]:
        opts = self.options
        layers = list(opts.style_layers)
        sums: dict[str, Any] = {}
        for image, b in zip(styles, blend, strict=True):
            image = image.to(self.device, torch.float32)
            if opts.preserve_colors == "histogram":
                image = color.match_color(image, content)
            elif opts.preserve_colors == "luminance":
                y = color.match_luminance(color.luminance(image), color.luminance(content))
                image = y.expand(3, -1, -1)
            longest = max(1, round(size * opts.style_scale))
            hw = fit_longest(image.shape[-2:], longest)
            # resize_to clamps; a colour-matched style may leave [0, 1] on purpose
            image = F.interpolate(image[None], size=hw, mode="bicubic", antialias=True)
            with autocast(self.device, self.precision):
                feats = self.fx(image.contiguous(memory_format=self.memory_format), layers)
            with fp32():
                for name in layers:
                    stats = (losses.moments(feats[name]) if opts.style_loss == "w2"
                             else (losses.gram(feats[name]),))
                    scaled = tuple(b * s for s in stats)
                    sums[name] = scaled if name not in sums else tuple(
                        a + c for a, c in zip(sums[name], scaled, strict=True))
        if opts.style_loss == "w2":
            with fp32():
                return {n: losses.GaussianTarget.from_moments(*s) for n, s in sums.items()}
        return {n: s[0] for n, s in sums.items()}

    # -- running -----------------------------------------------------------------------------
    def scale_sizes(self, hw: tuple[int, int]) -> list[tuple[int, int]]:
        """(height, width) at each scale for a content image of size `hw`."""
        return [fit_longest(hw, longest) for longest in self.options.ladder()]

    def check_sizes(self, content_hw: Sequence[int], style_hws: Sequence[Sequence[int]] = (),
                    *, content_name: str = "content image",
                    style_names: Sequence[str] = ()) -> None:
        """Refuse, before any work, a content or style image that would be too small for
        the network at the first (smallest) scale, naming the image and the option that
        set its size."""
        opts = self.options
        ladder = opts.ladder()
        if opts.scales:
            where = f" at --scales {opts.scales[0]}"
        elif len(ladder) > 1:
            where = f" at --min-scale {opts.min_scale} (first scale {ladder[0]} px)"
        else:
            where = f" at --size {ladder[0]}"
        hw = fit_longest(tuple(content_hw), ladder[0])
        self.fx.check_size(hw, [*opts.content_layers, *opts.style_layers], what=content_name,
                           where=where)
        longest = max(1, round(ladder[0] * opts.style_scale))
        style_where = (f" at --style-scale {opts.style_scale:g} of {ladder[0]} px"
                       if opts.style_scale != 1 else where)
        for k, style_hw in enumerate(style_hws):
            name = style_names[k] if k < len(style_names) else f"style image {k + 1}"
            self.fx.check_size(fit_longest(tuple(style_hw), longest), opts.style_layers,
                               what=name, where=style_where)

    def run(self, content: torch.Tensor | ImageSource,
            styles: Sequence[torch.Tensor] | None = None, *,
            targets: StyleTargets | Mapping[int, StyleTargets] | None = None,
            callback: Callable[[StepInfo], Any] | None = None) -> torch.Tensor:
        """Stylise `content` ((3,H,W) or (K,3,H,W) in [0, 1], or anything `load_image`
        takes) and return the result (K,3,H,W) at the output size.

        Give `styles` ((3,H,W) images), or `targets` from `style_targets()` (one, or a
        mapping {scale size: targets} covering every scale of the ladder).
        """
        if styles is None and targets is None:
            raise ValueError("run: give styles or targets")
        opts = self.options
        if not isinstance(content, torch.Tensor):
            content = load_image(content)
        content = _batch(content).to(self.device, torch.float32)
        self.check_sizes(content.shape[-2:], [s.shape[-2:] for s in styles or ()])
        lum = opts.preserve_colors == "luminance"
        sizes = self.scale_sizes(tuple(content.shape[-2:]))
        ladder = opts.ladder()
        x = self._initial(content, sizes[0], lum)
        adam_state: list[dict[str, Any]] | None = None
        total_step = 0
        progress = ensure(self.progress)
        with progress:
            for index, (longest, hw) in enumerate(zip(ladder, sizes, strict=True)):
                scale_targets = self._targets_for(targets, styles, longest, content)
                content_s = resize_to(content, hw)
                x = resize_to(x, hw)
                objective = self.objective(content_s, scale_targets)
                x, adam_state, total_step = self._optimise(
                    objective, x, content_s, lum, adam_state, index, len(sizes), hw,
                    total_step, progress, callback)
        self._compose = None
        x = x.clamp(0, 1)
        return color.with_luminance(x, content_s).clamp(0, 1) if lum else x

    @torch.no_grad()
    def objective(self, content: torch.Tensor, targets: StyleTargets
                  ) -> Callable[[torch.Tensor], torch.Tensor]:
        """The loss at one scale: a function of the images being optimised ((K,3,H,W), or
        (K,1,H,W) luminance with preserve_colors=luminance) returning the weighted
        content, style and TV losses as a (3, K) tensor. `content`: (K,3,H,W) at that size.
        """
        content = _batch(content).to(self.device, torch.float32)
        if self.options.preserve_colors == "luminance":
            content = color.luminance(content).expand(-1, 3, -1, -1)
        feats: dict[str, torch.Tensor] = {}
        if self.options.content_layers:
            with autocast(self.device, self.precision):
                feats = self.fx(content.contiguous(memory_format=self.memory_format),
                                self.options.content_layers)
        return _Objective(self, {n: f.float() for n, f in feats.items()}, targets)

    def current_image(self) -> torch.Tensor | None:
        """The latest result (K,3,H,W) while `run` is going or after it was interrupted
        (Ctrl-C in a callback or the loop); None before the first step."""
        if self._compose is None:
            return None
        with torch.no_grad():
            return self._compose()

    def _targets_for(self, targets: StyleTargets | Mapping[int, StyleTargets] | None,
                     styles: Sequence[torch.Tensor] | None, longest: int,
                     content: torch.Tensor) -> StyleTargets:
        if targets is None:
            assert styles is not None
            return self.style_targets(styles, longest, content=content)
        found = targets if isinstance(targets, StyleTargets) else targets.get(longest)
        if found is None or found.size != longest:
            raise ValueError(f"run: no style targets for scale {longest} (compute them with "
                             f"style_targets(styles, {longest}))")
        if found.loss != self.options.style_loss:
            raise ValueError(f"run: targets are for {found.loss}, options say "
                             f"{self.options.style_loss}")
        return found

    def _initial(self, content: torch.Tensor, hw: tuple[int, int], lum: bool) -> torch.Tensor:
        init = self.options.init
        k = content.shape[0]
        if init == "content":
            x = resize_to(content, hw)
        elif init == "noise":
            # Made on the CPU, so a seed gives the same start on any device; one draw shared
            # by the batch, so each image starts where it would in a run of its own.
            gen = torch.Generator().manual_seed(self.options.seed)
            x = torch.rand((1, 3, *hw), generator=gen).to(self.device).expand(k, -1, -1, -1)
        else:
            try:
                start = load_image(init)
            except ArtconvError as exc:
                raise ArtconvError(f"--init {exc} (use content, noise or an image path)") \
                    from None
            x = resize_to(start.to(self.device), hw).expand(k, -1, -1, -1)
        return color.luminance(x).clamp(0, 1) if lum else x  # _optimise copies it

    def _optimise(self, objective: _Objective, x: torch.Tensor, content_s: torch.Tensor,
                  lum: bool, adam_state: list[dict[str, Any]] | None, index: int,
                  n_scales: int, hw: tuple[int, int], total_step: int, progress: Progress,
                  callback: Callable[[StepInfo], Any] | None
                  ) -> tuple[torch.Tensor, list[dict[str, Any]] | None, int]:
        opts = self.options
        steps = opts.iterations_at(index)
        # One leaf per image: L-BFGS then keeps a history per image (a joint history would
        # couple the images), and Adam's per-element update is unchanged by the split.
        # Contiguous: clone() keeps odd strides (a 1x1 image's (3,1,1) tensor passes for
        # channels_last, and interpolation keeps that), and L-BFGS views each grad flat.
        params = [x[i:i + 1].detach().clone(memory_format=torch.contiguous_format)
                  .requires_grad_(True) for i in range(x.shape[0])]
        adam = opts.optimizer == "adam"
        if adam:
            optimizers: list[torch.optim.Optimizer] = [torch.optim.Adam(
                params, lr=opts.learning_rate(), betas=(0.9, 0.99))]
            if adam_state is not None:
                _warm_start(optimizers[0], params, adam_state)
        else:  # max_iter=1: one loss evaluation per step(); the history survives the calls
            optimizers = [torch.optim.LBFGS([p], lr=opts.learning_rate(), max_iter=1,
                                            history_size=LBFGS_HISTORY, tolerance_grad=-1,
                                            tolerance_change=-1) for p in params]
        ema = _EMA(torch.cat(params).detach(), opts.avg_decay) if opts.avg_decay else None

        def current() -> torch.Tensor:
            y = ema.get() if ema is not None else torch.cat(params).detach()
            y = y.clamp(0, 1)
            return color.with_luminance(y, content_s).clamp(0, 1) if lum else y

        self._compose = current
        task = progress.task(f"style {hw[1]}x{hw[0]}", total=steps)
        for step in range(1, steps + 1):
            for p in params:
                p.grad = None
            parts = objective(torch.cat(params))
            parts.sum().backward()
            read = (not adam or callback is not None or step % FIGURES_EVERY == 0
                    or step == steps)
            per_image: list[float] = []
            if read:  # the one host sync of a step
                values = parts.detach().double().cpu()
                per_image = values.sum(0).tolist()
                self.last_figures = _figures(values)
                if not math.isfinite(self.last_figures["loss"]):
                    raise ArtconvError(
                        f"loss became {self.last_figures['loss']} at step {step} of scale "
                        f"{hw[1]}x{hw[0]}; nothing saved (try --precision fp32, a smaller "
                        "--lr or smaller weights)")
            if adam:
                optimizers[0].step()
                with torch.no_grad():
                    for p in params:
                        p.clamp_(0, 1)  # the box constraint, as crowsonkb
            else:
                for opt_k, loss_k in zip(optimizers, per_image, strict=True):
                    opt_k.step(lambda loss_k=loss_k: loss_k)  # gradient is already in .grad
            if ema is not None:
                ema.update(torch.cat(params).detach())
            total_step += 1
            task.update(advance=1, **(self.last_figures if read else {}))
            if callback is not None:
                callback(StepInfo(step, steps, index, n_scales, hw, total_step,
                                  dict(self.last_figures), per_image, current))
        task.done()
        with torch.no_grad():
            final = ema.get().clamp(0, 1) if ema is not None else torch.cat(params).detach()
        state = [dict(optimizers[0].state[p]) for p in params] if adam else None
        return final, state, total_step


def _warm_start(opt: torch.optim.Adam, params: list[torch.Tensor],
                old: list[dict[str, Any]]) -> None:
    """Carry Adam's moments to the new scale, resized (crowsonkb's scale_adam)."""
    for p, state in zip(params, old, strict=True):
        if not state:
            continue
        hw = p.shape[-2:]
        opt.state[p] = {
            "step": state["step"].clone(),
            "exp_avg": F.interpolate(state["exp_avg"], size=hw, mode="bicubic"),
            "exp_avg_sq": F.interpolate(state["exp_avg_sq"], size=hw, mode="bilinear").relu_(),
        }


def _figures(values: torch.Tensor) -> dict[str, float]:
    content, style, tv = (float(v) for v in values.sum(1))
    return {"content": content, "style": style, "tv": tv, "loss": content + style + tv}


def _batch(image: torch.Tensor) -> torch.Tensor:
    if image.dim() == 3:
        return image.unsqueeze(0)
    if image.dim() != 4 or image.shape[1] != 3:
        raise ArtconvError(f"expected an image (3,H,W) or batch (K,3,H,W), got "
                           f"{tuple(image.shape)}")
    return image


def _stack(items: list[Any]) -> Any:
    if isinstance(items[0], losses.GaussianTarget):
        return losses.GaussianTarget(*(torch.cat([getattr(t, f) for t in items])
                                       for f in ("mean", "cov", "cov_sqrt")))
    return torch.cat(items)


# -- styles given by name ----------------------------------------------------------------------
@dataclass(frozen=True)
class StyleSources:
    """The style images behind STYLE arguments, and the options of named presets."""

    images: list[ImageSource]
    names: list[str]  # for output file names
    preset_options: dict[str, Any]
    preset_paths: list[str]


def resolve_styles(styles: ImageSource | Sequence[ImageSource]) -> StyleSources:
    """Each style is an image (path, PIL, array, tensor) or the name of a style preset,
    which contributes its images and its options. A string that is no existing file, has
    no image extension and no folder part is taken as a preset name."""
    from artconv.presets import find_preset, is_preset_name

    items = list(styles) if isinstance(styles, (list, tuple)) else [styles]
    if not items:
        raise ArtconvError("no style image given")
    images: list[ImageSource] = []
    names: list[str] = []
    options: dict[str, Any] = {}
    paths: list[str] = []
    for item in items:
        if is_preset_name(item):
            preset = find_preset(str(item))
            if preset.engine != "style":
                raise ArtconvError(f"{preset.path}: preset {preset.name!r} is for "
                                   f"{preset.engine}, not style")
            found = preset.image_paths()
            if not found:
                raise ArtconvError(f"{preset.path}: preset {preset.name!r} has no style "
                                   f"images; use it as --preset {preset.name} with a style "
                                   "image")
            images += found
            names.append(preset.name)
            options.update(preset.options)
            paths.append(str(preset.path))
        else:
            images.append(item)
            names.append(Path(item).stem if isinstance(item, (str, os.PathLike)) else "style")
    return StyleSources(images, names, options, paths)


def build_options(sources: StyleSources | None = None, preset: str | None = None,
                  overrides: Mapping[str, Any] | None = None) -> StyleOptions:
    """Defaults < options of style presets named as STYLE < `preset` < explicit `overrides`
    (None values count as not given)."""
    from artconv.presets import find_preset

    values: dict[str, Any] = dict(sources.preset_options) if sources else {}
    where = list(sources.preset_paths) if sources else []
    if preset is not None:
        found = find_preset(preset)
        if found.engine != "style":
            raise ArtconvError(f"{found.path}: preset {found.name!r} is for {found.engine}, "
                               "not style")
        values.update(found.options)
        where.append(str(found.path))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return StyleOptions.from_dict(values, source=" + ".join(where) or "options")


def stylize(content: ImageSource, style: ImageSource | Sequence[ImageSource], *,
            preset: str | None = None, extractor: FeatureExtractor | None = None,
            progress: Progress | None = None, callback: Callable[[StepInfo], Any] | None = None,
            **options: Any) -> Image.Image:
    """Stylise `content` with one style image or several (`blend=` weights) and return the
    result as a PIL image. Images may be paths, PIL images, arrays or tensors; a style may
    also be a style preset's name. `options` are `StyleOptions` fields and override
    `preset`'s values."""
    sources = resolve_styles(style)
    opts = build_options(sources, preset, options)
    opts.blend_weights(len(sources.images))  # fail before loading anything
    st = StyleTransfer(opts, extractor=extractor, progress=progress)
    styles = [load_image(s) for s in sources.images]
    out = st.run(load_image(content), styles, callback=callback)
    return to_pil(out[0])

