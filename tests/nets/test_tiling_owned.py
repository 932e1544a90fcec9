"""Tiles own each feature position of every layer exactly once (artconv.nets.tiling.owned),
and scattering a crop back (`add_crop`) lands where the crop came from, wrapping or not."""

from __future__ import annotations

import pytest
import torch

from artconv.nets.tiling import add_crop, owned, tile_grid


@pytest.mark.parametrize("wrap", [False, True])
@pytest.mark.parametrize(("h", "w", "tile", "margin", "align"),
                         [(37, 45, 8, 17, 4), (64, 64, 16, 0, 16), (101, 33, 40, 211, 16),
                          (17, 90, 5, 9, 2), (50, 50, 100, 10, 4)])
def test_every_position_is_owned_once(h, w, tile, margin, align, wrap):
    tiles = tile_grid(h, w, tile, margin, align, wrap=wrap)
    for stride in {1, 2, align}:
        m = (h // stride, w // stride)  # VGG-style floor pooling
        count = torch.zeros(m, dtype=torch.int64)
        for t in tiles:
            (rows, cols), (crop_rows, crop_cols) = owned(t, stride, m, (h, w))
            count[rows, cols] += 1
            ext_h, ext_w = t.ext[1] - t.ext[0], t.ext[3] - t.ext[2]
            assert crop_rows.stop <= ext_h // stride and crop_cols.stop <= ext_w // stride
            # the crop's map position is the whole map's, shifted by the crop's origin
            assert crop_rows.start * stride + t.ext[0] == rows.start * stride
            assert crop_cols.start * stride + t.ext[2] == cols.start * stride
        assert bool((count == 1).all()), (stride, count)


def test_owned_refuses_tiles_off_the_stride_grid():
    t = tile_grid(40, 40, 12, 5, 1)[4]  # cores every 12 px: not on a stride-8 grid
    with pytest.raises(ValueError, match="stride"):
        owned(t, 8, (5, 5), (40, 40))


@pytest.mark.parametrize("wrap", [False, True])
def test_add_crop_is_the_adjoint_of_crop(wrap):
    image = torch.rand(2, 3, 23, 31)
    total = torch.zeros_like(image)
    tiles = tile_grid(23, 31, 8, 6, 2, wrap=wrap)
    for t in tiles:
        add_crop(total, t, torch.ones_like(t.crop(image)))
    # each pixel counted once per tile whose context holds it; the same count by cropping
    expected = torch.zeros_like(image)
    index = torch.arange(image.numel(), dtype=torch.float32).view_as(image)
    for t in tiles:
        crop = t.crop(index).long().flatten()
        expected.view(-1).index_add_(0, crop, torch.ones(crop.numel()))
    assert torch.equal(total, expected)
