"""One memory accounting for both tiled engines (artconv.nets.tiling.MemoryEstimate): a
tiled pass costs one tile whatever the image size, so the estimate grows only by the
image-sized buffers; the style and dream engines count theirs the same way."""

from __future__ import annotations

import torch

from artconv.deepdream.gradient import TiledObjective as DreamTiles
from artconv.nets.extractor import FeatureExtractor
from artconv.nets.tiling import largest_tile, pass_bytes
from artconv.style import StyleOptions, StyleTransfer
from tests.conftest import tiny_sequential

PX = 12  # bytes of one fp32 RGB pixel


def test_a_tiled_pass_costs_one_tile_at_any_size():
    fx = FeatureExtractor(tiny_sequential())
    st = StyleTransfer(StyleOptions(content_layers=("r3",), style_layers=("r1", "r2", "r3"),
                                    tile=64, optimizer="adam", device="cpu",
                                    precision="fp32"), extractor=fx)
    small, large = st.memory((256, 256)), st.memory((1024, 1024))
    assert small.tile == large.tile == 64 and small.pass_ == large.pass_
    grown = (large.total - small.total) / (1024**2 - 256**2)
    untiled = (pass_bytes(fx.net, (1024, 1024), "r3") - pass_bytes(fx.net, (256, 256), "r3")
               ) / (1024**2 - 256**2)
    assert grown < untiled
    # the image-sized buffers, by name: each a whole number of fp32 RGB images or so
    assert set(large.buffers) >= {"image and gradient", "optimiser", "tv"}
    assert large.buffers["optimiser"] == 3 * PX * 1024**2  # Adam: two moments and a step


def test_the_dream_counts_its_tiles_the_same_way():
    fx = FeatureExtractor(tiny_sequential())
    tiles = DreamTiles(fx, ["r3"], tile=64, margin=None, min_size=4,
                       device=torch.device("cpu"), precision="fp32",
                       memory_format=torch.contiguous_format)
    small, large = tiles.memory((256, 256)), tiles.memory((1024, 1024))
    assert small.tile == 64 and small.pass_ == large.pass_
    assert large.buffers["image and gradient"] == 4 * PX * 1024**2
    assert tiles.memory((48, 48)).tile == 0  # one tile: untiled


def test_largest_tile_is_the_largest_that_fits():
    assert largest_tile(lambda side: side <= 100, 1000, 16) == 96
    assert largest_tile(lambda side: False, 1000, 16) == 0
    assert largest_tile(lambda side: True, 1000, 16) == 1008
