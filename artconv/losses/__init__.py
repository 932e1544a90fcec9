"""The perceptual losses as composable terms, shared by the style optimiser (untiled and
tiled) and the fast-network trainer: each term is written once (`artconv.losses.terms`), on
the loss functions of `artconv.losses.functional` (`artconv.style.losses`, deprecated, is
the same module).

A term holds a target made once, is called as ``term(feats, image) -> (K,)`` (one value per
image), and divides by its target's own magnitude when made `relative` (--loss-scale auto).
An objective is a weighted sum of terms; this layer imports the network core at most, never
an engine. Training a network with fixed style targets and content targets that change
every step::

    from artconv import losses

    fx = FeatureExtractor(...)                      # artconv.nets
    with torch.no_grad():                           # style targets: once
        stats = [{n: losses.statistics("gram", f) for n, f in fx(s, style_layers).items()}
                 for s in style_images]             # each (1,3,H,W)
        style = losses.Style(losses.style_targets("gram", stats, blend=[1.0]),
                             zip(style_layers, layer_weights), relative=True)
    tv = losses.TV("l2")
    for x in batches:                               # (N,3,h,w) photos
        with torch.no_grad():                       # content targets: every step
            content = losses.Content(fx(x, content_layers), relative=True)
        y = net(x)
        feats = fx(y, [*content.layers, *style.layers])
        loss = (w_content * content(feats, y) + w_style * style(feats, y)
                + w_tv * tv(feats, y)).mean()       # each term is (N,)

Weights (defaults per network scale, --loss-scale): `artconv.losses.weights`, torch-free
like this package's import (names load from the modules on first use).

Region masks: `Style(targets_with_a_tuple_per_layer, ..., regions=Regions(masks))`.
Tiles: `Content.owned`, `Style.sums` / `Style.from_sums` / `Style.gradients`, `TV.in_bands`
(see `artconv.style.tiled`).
"""

from __future__ import annotations

from artconv._moved import forward

__all__ = [
    "MIN_MASS", "SQRTM_ITERS", "TV", "W2_EPS", "Content", "ContentLoss", "GaussianTarget",
    "Part", "Pixel", "Regions", "Style", "StyleKind", "StyleLoss", "StyleTarget", "Sums",
    "Term", "blend", "content_loss", "content_scale", "covariance", "gram", "gram_loss",
    "gram_scale", "layer_mask", "mask_mass", "moment_sums", "moments", "sqrtm_eigh",
    "sqrtm_newton_schulz", "statistics", "statistics_from_sums", "style_target",
    "style_targets", "target_scale", "tv_loss", "w2_from_moments", "w2_loss", "w2_scale",
]

__getattr__ = forward(__name__, "artconv.losses.functional", "artconv.losses.terms")
