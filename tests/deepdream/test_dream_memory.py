"""The dream's own image-sized buffers: fewer of them alive at the peak, the same bits out.

The reference loop here is the octave loop and update as they were written before the
buffers were trimmed (base and detail kept through the steps, `(x + step * grad).clamp`,
the plain Laplacian expressions); the engine must give bit-identical dreams."""

from __future__ import annotations

import functools

import pytest
import torch

from artconv.deepdream import transforms as T
from artconv.deepdream.engine import Dreamer, DreamOptions
from artconv.io.images import resize_to
from artconv.nets.extractor import FeatureExtractor
from tests.conftest import LiveTensors, tiny_sequential

pytestmark = pytest.mark.filterwarnings("ignore:--tile")
CONFIGS = [{}, {"lap_levels": 3}, {"scale_jitter": 0.1, "rotate_jitter": 5, "lap_levels": 2},
           {"preserve_colors": True, "seamless": True}, {"tile": 40}]


def make(**options) -> Dreamer:
    base = {"layers": ("r2", "r3"), "octaves": 3, "steps": 3, "seed": 5, "device": "cpu",
            "precision": "fp32"}
    return Dreamer(DreamOptions(**{**base, **options}),
                   extractor=FeatureExtractor(tiny_sequential()))


def _lap_plain(grad, levels, circular=False):
    """lap_normalize as plain expressions (a temporary per operation)."""
    up = T.resize_circular if circular else T.resize_detail
    bands, x = [], grad
    for _ in range(levels):
        if min(x.shape[-2:]) < 4:
            break
        low = T._blur_down(x, circular)
        bands.append(x - up(low, x.shape[-2:]))
        x = low
    out = T._unit_rms(x)
    for band in reversed(bands):
        out = up(out, band.shape[-2:]) + T._unit_rms(band)
    return out


def _reference(d: Dreamer, image: torch.Tensor) -> torch.Tensor:
    """The dream of one image by the loop as first written."""
    o = d.options
    original = image[None]
    objective = d.prepare(original)
    rng = torch.Generator().manual_seed(o.seed)
    resize = T.resize_circular if o.seamless else T.resize_detail
    lap = functools.partial(_lap_plain, levels=o.lap_levels, circular=bool(o.seamless))
    detail = None
    for hw in d.octave_sizes(*original.shape[-2:]):
        base = resize_to(original, hw)
        detail = torch.zeros_like(base) if detail is None else resize(detail, hw)
        img = (base + detail).clamp(0, 1)
        for _ in range(o.steps):
            grad, _ = d.scorer.gradient(img, objective, T.input_transforms(o, rng))
            if o.lap_levels:
                grad = lap(grad)
            grad = T.normalize_mean(grad)
            img = (img + o.step_size * grad).clamp_(0, 1)
        detail = img - base
    out = img
    return (T.keep_colors(out, original) if o.preserve_colors else out)[0]


@pytest.mark.parametrize("options", CONFIGS)
def test_dreams_are_bit_identical_to_the_plain_loop(options):
    d = make(**options)
    image = torch.rand(3, 72, 96, generator=torch.Generator().manual_seed(1))
    assert torch.equal(d.run(image), _reference(d, image))


def test_lap_normalize_in_place_is_bit_identical():
    grad = torch.randn(1, 3, 67, 90, generator=torch.Generator().manual_seed(2))
    for circular in (False, True):
        assert torch.equal(T.lap_normalize(grad.clone(), 4, circular),
                           _lap_plain(grad, 4, circular))


@pytest.mark.parametrize("lap", [0, 4])
def test_image_sized_buffers_at_the_peak(lap):
    """At most 5 fp32 RGB images' worth (60 bytes per pixel) is alive at once: the input,
    the image, its rolled copy, that copy's gradient and the gradient rolled back (before:
    72 bytes per pixel, 96 with Laplacian normalisation). Tiles keep the network's maps
    below the counted size."""
    d = make(octaves=3, steps=2, lap_levels=lap, tile=48, layers=("r3",))
    image = torch.rand(3, 256, 256, generator=torch.Generator().manual_seed(3))
    pixels = 256 * 256
    objective = d.prepare(image)  # (it may look at the whole image once, untiled)
    with LiveTensors(min_bytes=6 * pixels) as live:  # half an RGB image: the image-sized ones
        d.run(image, objective)
    assert live.peak / pixels <= 60, live.peak / pixels
