"""The style engine's image-sized buffers (issue 24, print sizes): fewer of them alive at the
peak of a tiled Adam run, the same bits out.

The reference here is the Adam loop as torch runs it (`torch.optim.Adam`, a copy of the
iterate as the result); the engine's in-place step must give bit-identical results."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from artconv.losses import terms
from artconv.nets import tiling
from artconv.nets.extractor import FeatureExtractor
from artconv.style import StyleOptions, StyleTransfer
from artconv.style.optimise import InPlaceAdam, warm_start
from artconv.style.targets import _prepared
from tests.conftest import LiveTensors, tiny_sequential

BASE = {"content_layers": ("r2",), "style_layers": ("r1", "r2", "r3"), "optimizer": "adam",
        "device": "cpu", "precision": "fp32", "tile": 48}


def engine(**options) -> StyleTransfer:
    return StyleTransfer(StyleOptions(**{**BASE, **options}),
                         extractor=FeatureExtractor(tiny_sequential()))


def images(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(4)
    return torch.rand(1, 3, h, w, generator=gen), torch.rand(3, 40, 56, generator=gen)


def test_image_sized_buffers_at_the_peak(monkeypatch):
    """A tiled Adam run holds at its peak the content target (r2: 16 channels at 1/2 x 1/2,
    16 bytes per pixel), the iterate, its gradient and Adam's two moments (12 each): 64
    bytes per pixel of its own (the caller's photo is not counted). Before: 88 (torch's
    Adam made its denominator in two new image-sized tensors, and the result was made while
    the content target, the moments and two copies of the iterate were alive). Tiles keep
    the network's maps below the counted size."""
    monkeypatch.setattr(terms, "TV_BAND_PIXELS", 4096)  # banded here too, as at print size
    content, style = images(192, 192)
    st = engine(size=192, iterations=(3,))
    pixels = 192 * 192
    with LiveTensors(min_bytes=6 * pixels) as live:  # half an RGB image: the image-sized ones
        st.run(content, [style])
    assert live.peak / pixels <= 64, live.peak / pixels


def _torch_adam_run(st: StyleTransfer, content: torch.Tensor, style: torch.Tensor
                    ) -> torch.Tensor:
    """A one-scale run as torch's Adam takes it."""
    opts = st.options
    targets = st.style_targets([style], opts.output_size)
    objective = st.objective(content, targets, tile=opts.tile)
    x = content.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=opts.learning_rate(), betas=(0.9, 0.99))
    for _ in range(opts.iterations[0]):
        _, x.grad = objective.value_and_grad(x.detach())
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)
    return x.detach().clamp(0, 1)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_runs_are_bit_identical_to_torchs_adam(precision):
    content, style = images(72, 88)
    st = engine(size=88, iterations=(4,), tile=32, precision=precision)
    assert torch.equal(st.run(content, [style]), _torch_adam_run(st, content, style))


def test_in_place_adam_takes_torchs_steps_bit_for_bit_and_spends_the_gradient():
    gen = torch.Generator().manual_seed(7)
    start = torch.rand(1, 3, 33, 47, generator=gen)
    grads = [torch.randn(1, 3, 33, 47, generator=gen) for _ in range(6)]
    ours, theirs = start.clone(), start.clone()
    mine = InPlaceAdam([ours], lr=0.02, betas=(0.9, 0.99))
    ref = torch.optim.Adam([theirs], lr=0.02, betas=(0.9, 0.99))
    for i, g in enumerate(grads):
        if i == 3:  # carried to a new scale (warm start): the state's format is torch's
            ours = F.interpolate(ours, size=(40, 52), mode="bilinear").requires_grad_(True)
            theirs = ours.detach().clone().requires_grad_(True)
            old_mine, old_ref = dict(mine.state[mine.param_groups[0]["params"][0]]), dict(
                ref.state[ref.param_groups[0]["params"][0]])
            mine = InPlaceAdam([ours], lr=0.02, betas=(0.9, 0.99))
            ref = torch.optim.Adam([theirs], lr=0.02, betas=(0.9, 0.99))
            warm_start(mine, [ours], [old_mine])
            warm_start(ref, [theirs], [old_ref])
        g = F.interpolate(g, size=ours.shape[-2:], mode="bilinear")
        ours.grad, theirs.grad = g.clone(), g.clone()
        mine.step()
        ref.step()
        assert ours.grad is None  # its buffer held the denominator
        assert torch.equal(ours, theirs), i
    state, expected = mine.state[ours], ref.state[theirs]
    assert all(torch.equal(state[k], expected[k]) for k in ("step", "exp_avg", "exp_avg_sq"))


def test_a_style_already_at_its_size_is_used_as_is():
    """Read at --style-size, a style is at the size its statistics are taken at: no
    print-sized copy, and the values interpolation would give (it is the identity)."""
    style = torch.rand(3, 50, 80) * 1.4 - 0.2  # colour-matched styles may leave [0, 1]
    used = _prepared(style, None, 80, StyleOptions())
    assert used.data_ptr() == style.data_ptr()
    assert torch.equal(used, F.interpolate(style[None], size=(50, 80), mode="bicubic",
                                           antialias=True))


def test_freed_memory_goes_back_only_when_a_pass_has_piled_it_up(monkeypatch):
    """Each tile's end compares the resident size with the pass's first tile's end: memory
    is given back (glibc's malloc_trim) only past `TRIM_SLACK` of growth, so a pass whose
    tiles reuse their memory pays no page faults for it."""
    trims, resident = [], iter([900, 950, 900 + tiling.TRIM_SLACK + 1, 960, 700, 700])
    monkeypatch.setattr(tiling, "_MALLOC_TRIM", trims.append)
    monkeypatch.setattr(tiling, "_resident", lambda: next(resident))
    freed = tiling.FreedMemory(torch.device("cpu"))
    for _ in range(4):
        freed.tile_done()
    assert trims == [0] and freed.trims == 1
    again = tiling.FreedMemory(torch.device("cpu"))  # a new pass measures from its own start
    again.tile_done()
    again.tile_done()
    assert trims == [0]
    assert not tiling.FreedMemory(torch.device("meta")).on  # not the host's memory
