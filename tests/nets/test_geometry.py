"""The one layer walk (stride, receptive field, offset, sizes, FLOPs) and the one Tile: the
`layers` table, the features engine and the tiler all read them."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from artconv.features import layer_geometry as features_layer_geometry
from artconv.nets.extractor import FeatureExtractor, describe
from artconv.nets.geometry import fits, layer_geometry, min_side, walk
from artconv.nets.tiling import layer_context, spans, tile_grid
from tests.conftest import tiny_sequential


def test_the_walk_is_what_the_layers_table_and_features_read(random_vgg):
    assert features_layer_geometry is layer_geometry
    rows = {i.name: i for i in describe(random_vgg.net, 224)}
    for g in walk(random_vgg.net, 224):
        row = rows[g.name]
        assert (g.stride, g.receptive_field, g.height, g.width, g.channels) == (
            row.stride, row.receptive_field, row.height, row.width, row.channels)
        assert g.flops / 1e9 == row.gflops
    relu5_1 = {g.name: g for g in walk(random_vgg.net)}["relu5_1"]
    assert (relu5_1.cell.lo, relu5_1.cell.hi, relu5_1.offset) == (-70, 85, 7.5)


@pytest.mark.parametrize("pooling", ["max", "avg", "strided", "none"])
def test_walked_sizes_match_a_forward_pass(pooling):
    fx = FeatureExtractor(tiny_sequential(), pooling)
    x = torch.rand(1, 3, 37, 50)
    maps = fx(x, fx.layer_names)
    for g in walk(fx.net, (37, 50)):
        assert maps[g.name].shape[-2:] == (g.height, g.width), (pooling, g.name)


def test_a_cell_covers_exactly_its_receptive_field():
    """Changing one input pixel changes exactly the cells whose [lo, hi] span holds it."""
    fx = FeatureExtractor(tiny_sequential(), "max")
    g = layer_geometry(fx.net)["c3"]
    x = torch.rand(1, 3, 40, 40)
    y = x.clone()
    y[..., 17, :] += 1.0  # one whole row: every column's cells may see it
    diff = (fx(x, ["c3"])["c3"] - fx(y, ["c3"])["c3"]).abs().amax(dim=(0, 1, 3))
    hit = [j for j in range(len(diff)) if diff[j] > 0]
    covering = [j for j in range(len(diff)) if g.stride * j + g.lo <= 17 <= g.stride * j + g.hi]
    assert hit and set(hit) <= set(covering)


def test_flat_layers_have_no_cell_geometry_and_sizes_follow_adaptive_pools():
    net = nn.Sequential(OrderedDict([("c", nn.Conv2d(3, 4, 3, padding=1)),
                                     ("gap", nn.AdaptiveAvgPool2d(1)), ("fl", nn.Flatten())]))
    geo = layer_geometry(net)
    assert geo["c"].receptive_field == 3 and geo["gap"] is None and geo["fl"] is None
    assert [(g.height, g.spatial) for g in walk(net, 64)] == [(64, True), (1, False),
                                                              (1, False)]


def test_fits_and_min_side():
    net = tiny_sequential()
    assert min_side(net, "r3") == 4
    assert fits(net, 4, "r3") and not fits(net, (3, 40), "r3") and fits(net, 3, "r2")


def test_the_tiler_reads_its_context_from_the_walk(random_vgg):
    align, margin = layer_context(random_vgg.net, "relu3_1")
    info = {i.name: i for i in random_vgg.describe(64)}["relu3_1"]
    assert (align, margin) == (info.stride, info.receptive_field - 1) == (4, 23)


@pytest.mark.parametrize("n, tile, align", [(100, 32, 8), (44, 8, 4), (7, 100, 4), (65, 16, 1)])
def test_spans_are_balanced_aligned_and_cover(n, tile, align):
    parts = spans(n, tile, align)
    assert parts[0][0] == 0 and parts[-1][1] == n
    assert all(a % align == 0 and b > a for a, b in parts)
    assert all(b == c for (_, b), (c, _) in zip(parts, parts[1:], strict=False))
    assert all(b - a <= max(tile, align) for a, b in parts)
    grid = tile_grid(n, n, tile, 0, align)
    assert {t.core[:2] for t in grid} == set(parts) or len(grid) == 1
