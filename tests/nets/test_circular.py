"""--seamless in the network: circular padding everywhere, translation-equivariant on the
torus, the same sizes, the same weights, exact wrapped tiles."""

from __future__ import annotations

import warnings
from collections import OrderedDict

import pytest
import torch
from torch import nn

from artconv.nets.extractor import FeatureExtractor
from artconv.nets.geometry import describe
from artconv.nets.seamless import CircularConv2d, wrap_pad
from artconv.nets.tiling import layer_context, tile_grid, tiled_gradient
from artconv.networks import network_key
from artconv.options import CoreOptions
from tests.conftest import run_cli, tiny_sequential

MODES = ["max", "avg", "strided", "none"]


def strides(fx: FeatureExtractor) -> dict[str, int]:
    return {i.name: i.stride for i in fx.describe(64)}


def equivariance_error(fx: FeatureExtractor, x: torch.Tensor, shift: tuple[int, int]
                       ) -> float:
    """max |features(roll(x, s)) - roll(features(x), s / stride)| over every layer."""
    names = fx.layer_names
    plain, moved = fx(x, names), fx(torch.roll(x, shift, (2, 3)), names)
    st = strides(fx)
    return max(float((torch.roll(plain[n], (shift[0] // st[n], shift[1] // st[n]), (2, 3))
                      - moved[n]).abs().max()) for n in names)


@pytest.mark.parametrize("pooling", MODES)
def test_seamless_features_are_translation_equivariant(pooling):
    x = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(1))
    seamless = FeatureExtractor(tiny_sequential(), pooling, seamless=True)
    # shifts are multiples of the deepest stride (4), both ways, past the middle
    for shift in [(4, 8), (-12, 20), (28, -44)]:
        assert equivariance_error(seamless, x, shift) < 1e-5
    # zero padding is not: the test can fail
    plain = FeatureExtractor(tiny_sequential(), pooling)
    assert equivariance_error(plain, x, (4, 8)) > 1e-2


def test_avg_rescale_with_seamless_is_equivariant_and_calibrated():
    fx = FeatureExtractor(tiny_sequential(), "avg", avg_rescale=True, seamless=True)
    assert set(fx.avg_scales) == {"p1", "p2"} and all(s > 1 for s in fx.avg_scales.values())
    assert equivariance_error(fx, torch.rand(1, 3, 32, 32), (8, -4)) < 1e-5


def test_padded_and_ceil_mode_pools_wrap_with_the_same_sizes():
    """ResNet's 3x3/2 pad 1 pool, Darknet's ceil_mode pools, an avg pool, a zero-pad layer
    and a nested block: the sizes stay, and padding wraps (equivariant under even shifts)."""
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict([
        ("c1", nn.Conv2d(3, 8, 3, padding=1)), ("r1", nn.ReLU()),
        ("p1", nn.MaxPool2d(3, 2, padding=1)),
        ("block", nn.Sequential(nn.ZeroPad2d(1), nn.Conv2d(8, 8, 3), nn.ReLU())),
        ("p2", nn.MaxPool2d(2, 2, ceil_mode=True)),
        ("c3", nn.Conv2d(8, 8, 3, padding=1)),
        ("p3", nn.AvgPool2d(3, 2, padding=1, count_include_pad=True)),
    ])).eval()
    fx = FeatureExtractor(net, seamless=True)
    plain = FeatureExtractor(net)
    for hw in [(33, 47), (32, 48), (17, 9)]:
        x = torch.rand(1, 3, *hw)
        a, b = plain(x, fx.layer_names), fx(x, fx.layer_names)
        assert all(a[n].shape == b[n].shape for n in fx.layer_names), hw
        assert plain.describe(hw) == fx.describe(hw)
    x = torch.rand(1, 3, 32, 48)
    assert equivariance_error(fx, x, (8, 16)) < 1e-5
    assert equivariance_error(plain, x, (8, 16)) > 1e-2
    # the user's network is left as it was, its weights shared, not copied
    assert isinstance(net.block[0], nn.ZeroPad2d) and type(net.c1) is nn.Conv2d
    assert fx.net.c1.weight is net.c1.weight and fx.net.block[1].weight is net.block[1].weight
    assert isinstance(fx.net.block[1], CircularConv2d)


def test_every_conv_is_circular_and_keeps_its_weights(random_vgg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fx = FeatureExtractor.vgg("vgg19", "random", "strided", seamless=True)
    convs = [m for m in fx.net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 16 and all(m.padding_mode == "circular" for m in convs)
    torch.testing.assert_close(fx.net.conv3_1.weight, random_vgg.net.conv3_1.weight)
    assert fx.net.conv2_1.stride == (2, 2)
    x = torch.rand(1, 3, 64, 64)
    assert equivariance_error(fx, x, (32, -32)) < 1e-4  # pool5 strides 32


def test_tiny_maps_wrap_more_than_once():
    x = torch.arange(6.0).reshape(1, 1, 2, 3)
    out = wrap_pad(x, (4, 1, 3, 0))
    assert out.shape == (1, 1, 5, 8)
    assert out[0, 0, 3].tolist() == [2, 0, 1, 2, 0, 1, 2, 0]  # row 0, columns from -4
    assert wrap_pad(x, (0, -1, 0, 0)).shape == (1, 1, 2, 2)
    conv = FeatureExtractor(nn.Sequential(nn.Conv2d(1 + 2, 4, 5, padding=3)), seamless=True,
                            check=False)
    assert conv(torch.rand(1, 3, 2, 2), ["0"])["0"].shape == (1, 4, 4, 4)


def test_options_cache_key_and_from_options(backbone_file):
    opts = CoreOptions(backbone=f"{backbone_file}:build", seamless=True)
    assert network_key(opts) != network_key(opts.replace(seamless=False))
    fx = FeatureExtractor.from_options(opts)
    assert fx.seamless and isinstance(fx.net.c1, CircularConv2d)
    assert not FeatureExtractor.from_options(opts.replace(seamless=False)).seamless
    assert CoreOptions.from_dict({"seamless": "true"}).seamless
    assert CoreOptions().to_dict()["seamless"] is False


@pytest.mark.parametrize("pooling", MODES)
def test_wrapped_tiles_are_exact_at_the_borders(pooling):
    fx = FeatureExtractor(tiny_sequential(), pooling, seamless=True)

    def score(crop):
        return fx(crop, ["r3"])["r3"].square().mean()

    h, w = 64, 80
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(2))
    full, _ = tiled_gradient(score, x, tile_grid(h, w, 0))
    align, margin = layer_context(fx.net, "r3")
    positions = describe(fx.net, (h, w), until="r3")[-1]

    def tiled(wrap):
        tiles = tile_grid(h, w, 24, margin, align, 8, wrap=wrap)
        weights = [(lambda i: i.height * i.width)(describe(
            fx.net, (t.ext[1] - t.ext[0], t.ext[3] - t.ext[2]), until="r3")[-1])
            / (positions.height * positions.width) for t in tiles]
        return tiles, tiled_gradient(score, x, tiles, weights)[0]

    tiles, grad = tiled(True)
    assert len(tiles) > 4 and any(t.ext[0] < 0 or t.ext[2] < 0 for t in tiles)
    torch.testing.assert_close(grad, full, rtol=1e-4, atol=1e-4 * float(full.abs().max()))
    _, clipped = tiled(False)  # clipped tiles are wrong at the borders of a seamless net
    assert float((clipped - full).abs().max()) > 0.05 * float(full.abs().max())


def test_wrapped_tile_crop_and_whole_axis():
    x = torch.arange(20.0).reshape(1, 1, 4, 5)
    tiles = tile_grid(4, 100, 40, margin=10, wrap=True)
    assert all(t.ext[:2] == (0, 4) for t in tiles)  # rows: one core, run whole
    assert tiles[0].core[2:] == (0, 34) and tiles[0].ext[2:] == (-10, 44)
    assert tiles[-1].ext[3] == 110
    big = torch.rand(1, 1, 4, 100)
    crop = tiles[0].crop(big)
    torch.testing.assert_close(crop[..., :10], big[..., 90:])
    torch.testing.assert_close(crop[..., 10:], big[..., :44])
    assert tile_grid(4, 5, 2, margin=4, wrap=True)[0].crop(x).shape[-2:] == (4, 5)


def test_layers_command_takes_seamless(capsys):
    code, out, _ = run_cli(["layers", "--seamless", "--pooling", "avg", "--size", "64"],
                           capsys)
    assert code == 0 and "seamless" in out and "pads circularly" in out
    _, plain, _ = run_cli(["layers", "--pooling", "avg", "--size", "64", "--json"], capsys)
    _, wrapped, _ = run_cli(["layers", "--seamless", "--pooling", "avg", "--size", "64",
                             "--json"], capsys)
    assert plain == wrapped  # sizes, strides, receptive fields unchanged
