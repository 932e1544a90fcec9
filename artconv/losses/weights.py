"""The loss weights of a run (style optimisation or training): the defaults per network
scale and style loss, and how options override them (any option record with the loss fields
of `LossFields`; also importable as `artconv.style.weights`).

Where the default weights come from (`DEFAULT_WEIGHTS`): the loss formulas are those of the
two reference engines (see `artconv.losses.functional`), so their tested weights carry over:

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

Loss scales (`StyleOptions.loss_scale`, resolved by `loss_scale()`): "network" is the raw
losses above with those weights (the default for VGG, so VGG runs are unchanged); "auto" (the
default with --backbone) divides each style layer's loss by its target's own magnitude
(Gram: the target Gram's mean square, so the loss is |G - A|^2 / |A|^2; W2: the target
covariance's trace / C) and the content loss by the content target's mean square, so the
weights mean the same on any network and every layer pulls comparably (equal layer
weights, for W2 too). How they relate to the VGG ones: a network-scale weight w on a raw Gram
loss |G_l - A_l|^2 is, layer by layer, the relative weight w x |A_l|^2 (the target Gram's
mean square), and a content weight c is c x mean(P^2); the VGG defaults thus give each layer
a pull set by its own feature magnitude (strong where features are large, next to nothing
where they are small), while auto gives every layer the same pull. On Tiny Darknet the old
weights leave the deep layers far from their targets (benchmarks/README.md).
`AUTO_WEIGHTS` (content 1, style 10, TV 2 as crowsonkb's) were chosen with
benchmarks/bench_loss_scale.py (target: relative style error <= 0.05 with relative content
error < 0.5 at 256 px, L-BFGS; the figures measured, and at which size and iterations, are
in benchmarks/README.md); a larger --style-weight gives visibly more style there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from artconv.nets.extractor import FeatureExtractor


class LossFields(Protocol):
    """The fields of an option record the loss weights are read from (StyleOptions,
    the trainer's options)."""

    style_layers: Sequence[str]
    style_layer_weights: Sequence[float]
    style_loss: str
    content_weight: float | None
    style_weight: float | None
    tv_weight: float | None
    tv_loss: str
    loss_scale: str | None
    backbone: str | None

# (content, style, tv) weights per (kind of network scale, style loss); module docstring.
DEFAULT_WEIGHTS: dict[tuple[str, str], tuple[float, float, float]] = {
    ("torchvision", "w2"): (0.015, 1.0, 2.0),  # crowsonkb
    ("torchvision", "gram"): (0.015, 5e3, 2.0),  # crowsonkb content/TV, ratio from neural-style
    # neural-style: TV 1e-3 x 255^2 x 3 x H x W / 2 in our per-pixel mean, matched at 512x512
    ("caffe", "gram"): (5.0, 500.0, 2.6e7),
    ("caffe", "w2"): (5.0, 5.0 / 0.015, 2.6e7),  # neural-style content/TV, crowsonkb's ratio
}
# (content, style, tv) with --loss-scale auto: the losses are relative (see above), TV is
# on pixels as before. Chosen with benchmarks/bench_loss_scale.py (figures in its README).
AUTO_WEIGHTS: dict[str, tuple[float, float, float]] = {
    "gram": (1.0, 10.0, 2.0),
    "w2": (1.0, 10.0, 2.0),
}
# L1 TV: the weight whose gradient equals L2's at a 2.5% pixel step (2 x 0.025 x w).
TV_L1_FACTOR = 0.05


def default_layer_weights(loss: str, n: int, scale: str = "network") -> tuple[float, ...]:
    """Gram: equal, as Gatys (w_l = 1/5) and neural-style; the 1/(CHW) Gram normalisation
    already weighs deep, wide layers down by C^2. W2: crowsonkb's geometric ramp 4^-i
    (256:64:16:4:1), the layer weighting his W2 weights were tuned with. With relative
    losses (scale "auto") every layer is already on the same footing: equal."""
    raw = ([1.0] * n if loss == "gram" or scale == "auto"
           else [4.0 ** (n - 1 - i) for i in range(n)])
    return tuple(w / sum(raw) for w in raw)


@dataclass(frozen=True)
class LossWeights:
    """The weights a run actually used (defaults resolved), recorded in the recipe."""

    kind: str  # "torchvision" or "caffe": the network's feature scale
    content: float
    style: float
    tv: float
    style_layers: tuple[float, ...]  # normalised to sum 1
    scale: str = "network"  # "auto": relative losses; "network": raw (see module docstring)

    @property
    def relative(self) -> bool:
        return self.scale == "auto"


def weights_kind(fx: FeatureExtractor) -> str:
    """caffe-normalised networks (inputs scaled to 0..255) have ~58x larger features."""
    return "caffe" if fx.normalize.norm.scale != 1.0 else "torchvision"


def loss_scale(options: LossFields) -> str:
    """--loss-scale as given, else auto for an own backbone and network for VGG."""
    if options.loss_scale is not None:
        return options.loss_scale
    return "auto" if options.backbone else "network"


Weights = tuple[float, float, float]  # (content, style, tv)


def resolve_weights(options: LossFields, kind: str, *,
                    network: Mapping[tuple[str, str], Weights] = DEFAULT_WEIGHTS,
                    auto: Mapping[str, Weights] = AUTO_WEIGHTS) -> LossWeights:
    """The weights of a run on a network of `kind`: the options' own, else the defaults of
    `network` / `auto` (the trainer passes its own: what suits an optimisation need not
    suit training a network)."""
    scale = loss_scale(options)
    if scale == "auto":
        content, style, tv = auto[options.style_loss]
    else:
        content, style, tv = network[(kind, options.style_loss)]
    if options.tv_loss == "l1":
        tv *= TV_L1_FACTOR
    if options.style_layer_weights:
        total = sum(options.style_layer_weights)
        layers = tuple(w / total for w in options.style_layer_weights)
    else:
        layers = default_layer_weights(options.style_loss, len(options.style_layers), scale)
    return LossWeights(kind, _given(options.content_weight, content),
                       _given(options.style_weight, style), _given(options.tv_weight, tv),
                       layers, scale)


def _given(value: float | None, default: float) -> float:
    return default if value is None else value
