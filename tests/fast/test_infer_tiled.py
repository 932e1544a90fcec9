"""Tiled inference is exact: each instance norm's statistics are gathered over all tiles,
so any tiling gives the untiled picture to float rounding (and naive tiles would not)."""

from __future__ import annotations

import pytest
import torch

from artconv.fast.engine import FastStyle
from artconv.fast.options import FastOptions
from artconv.fast.tiled import context, tiled_forward
from artconv.nets.tiling import tile_grid
from tests.fast.fast_models import tiny_model, tiny_net


@pytest.mark.parametrize("blocks, hw, tile", [
    (1, (97, 130), 64),   # neither side a multiple of 4, a tile that does not divide them
    (2, (130, 61), 72),   # tall and narrow, one column of tiles
    (5, (150, 150), 100),  # the published depth (the largest context)
    (1, (64, 203), 80),   # a single row of tiles
])
def test_tiled_equals_untiled(blocks, hw, tile):
    # float64, so that "to float rounding" is tight: a missing bit of context or a
    # misplaced statistic would show far above 1e-9
    net = tiny_net(width=4, blocks=blocks, seed=blocks).double()
    images = torch.rand(2, 3, *hw, generator=torch.Generator().manual_seed(1),
                        dtype=torch.float64)
    assert len(tile_grid(*hw, tile, margin=context(net), align=4)) > 1
    with torch.no_grad():
        whole = net(images)
    out = torch.full_like(images, float("nan"))
    assert tiled_forward(net, images, tile, out=out)
    assert torch.isfinite(out).all()  # every pixel written
    torch.testing.assert_close(out, whole, atol=1e-9, rtol=0)


def test_tiles_with_their_own_statistics_would_differ():
    """What the passes are for: each tile normalised by itself is visibly wrong."""
    net = tiny_net(width=4, blocks=1)
    image = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    image[..., :48] *= 0.3  # a dark half: its tiles' statistics differ from the whole's
    with torch.no_grad():
        whole = net(image)
        naive = torch.cat([net(image[..., :48]), net(image[..., 48:])], dim=-1)
    assert (naive - whole).abs().max() > 0.05


def test_engine_tiled_reports_passes_and_stops_when_asked(tmp_path):
    model = tiny_model(tmp_path / "m.safetensors", width=4, blocks=1)
    opts = FastOptions(model=str(model), device="cpu", precision="fp32")
    photo = torch.rand(1, 3, 100, 90, generator=torch.Generator().manual_seed(3))
    steps = []
    tiled = FastStyle(opts.replace(tile=64)).run(photo, callback=steps.append)
    torch.testing.assert_close(tiled, FastStyle(opts).run(photo), atol=1e-4, rtol=0)
    passes, tiles = steps[0].stages, steps[0].steps
    assert passes == 2 + 2 * 1 + 3 + 1 and tiles == 4  # a pass per norm, then the output
    assert [s.done for s in steps] == list(range(1, passes * tiles + 1))
    assert {s.total for s in steps} == {passes * tiles}
    stopped = FastStyle(opts.replace(tile=64)).run(photo, callback=lambda s: s.done < 3)
    assert torch.equal(stopped, photo)  # stopped before any output: the photo comes back


def test_tiled_preserves_colours_as_untiled(tmp_path):
    model = tiny_model(tmp_path / "m.safetensors", width=4, blocks=1)
    opts = FastOptions(model=str(model), device="cpu", precision="fp32",
                       preserve_colors="luminance")
    photo = torch.rand(1, 3, 90, 100, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(FastStyle(opts.replace(tile=64)).run(photo),
                               FastStyle(opts).run(photo), atol=1e-4, rtol=0)
