"""--loss-scale: relative losses that do not depend on the network's feature magnitude, the
default per network, and the recipe's record of it."""

from __future__ import annotations

import pytest
import torch

from artconv.errors import ArtconvError
from artconv.losses import functional as losses
from artconv.losses.weights import AUTO_WEIGHTS, DEFAULT_WEIGHTS, loss_scale, resolve_weights
from artconv.nets.extractor import FeatureExtractor
from artconv.style import StyleOptions, StyleTransfer
from tests.conftest import make_image, tiny_sequential


def scaled_net(factor: float) -> FeatureExtractor:
    """The tiny backbone with every feature map multiplied by `factor` (weights and biases
    of the first conv, biases of the later ones: ReLU and max pooling are homogeneous)."""
    net = tiny_sequential()
    with torch.no_grad():
        net.c1.weight.mul_(factor)
        for conv in (net.c1, net.c2, net.c3):
            conv.bias.mul_(factor)
    return FeatureExtractor(net, "max", identity=f"scaled:{factor}")


def test_default_scale_per_network_and_recorded(backbone_file):
    assert loss_scale(StyleOptions()) == "network"
    assert loss_scale(StyleOptions(backbone="x.py:build")) == "auto"
    assert loss_scale(StyleOptions(backbone="x.py:build", loss_scale="network")) == "network"
    w = resolve_weights(StyleOptions(backbone="x.py:build"), "torchvision")
    assert (w.content, w.style, w.tv) == AUTO_WEIGHTS["gram"] and w.relative
    w = resolve_weights(StyleOptions(loss_scale="auto", style_loss="w2"), "torchvision")
    assert w.style_layers == (0.2,) * 5  # relative layers pull alike: equal weights
    w = resolve_weights(StyleOptions(), "torchvision")
    assert (w.content, w.style, w.tv) == DEFAULT_WEIGHTS[("torchvision", "gram")]
    assert not w.relative
    st = StyleTransfer(StyleOptions(backbone=f"{backbone_file}:build", device="cpu",
                                    content_layers=("r2",), style_layers=("r1", "r2")))
    assert st.recipe()["loss_weights"]["scale"] == "auto"
    with pytest.raises(ArtconvError, match="--loss-scale 'big'"):
        StyleOptions(loss_scale="big").validated()


@pytest.mark.parametrize("style_loss", ["gram", "w2"])
def test_auto_losses_do_not_depend_on_the_feature_scale(tmp_path, style_loss):
    content = make_image(tmp_path / "c.png")
    style = make_image(tmp_path / "s.png", (40, 40), seed=1)
    from artconv.io.images import load_image

    content_t, style_t = load_image(content)[None], load_image(style)
    x = torch.rand(1, 3, 32, 38, generator=torch.Generator().manual_seed(0))
    found = {}
    # W2 adds an absolute 1e-4 to the covariances (W2_EPS): invariant only where feature
    # variances are much larger, so its check starts from features 10x the random net's
    low = 1.0 if style_loss == "gram" else 10.0
    for scale in ("auto", "network"):
        for factor in (low, low * 10):
            opts = StyleOptions(size=38, content_layers=("r3",), style_layers=("r1", "r2", "r3"),
                                precision="fp32", device="cpu", loss_scale=scale,
                                style_loss=style_loss, tv_weight=0)
            st = StyleTransfer(opts, extractor=scaled_net(factor))
            targets = st.style_targets([style_t], 38)
            found[scale, factor] = st.objective(
                torch.nn.functional.interpolate(content_t, size=(32, 38)), targets)(x)
    torch.testing.assert_close(found["auto", low * 10], found["auto", low], rtol=low * 2e-3,
                               atol=1e-6)
    grow = found["network", low * 10][:2] / found["network", low][:2]
    assert float(grow.min()) > 50  # the raw losses grow as s^2 (content, w2) or s^4 (gram)


def test_relative_gram_loss_is_relative_error():
    a = losses.gram(torch.randn(1, 4, 5, 5))
    f = torch.randn(1, 4, 5, 5)
    relative = losses.gram_loss(f, a) / losses.gram_scale(a)
    expected = (losses.gram(f) - a).square().sum() / a.square().sum()
    torch.testing.assert_close(relative, expected.view(1))
