"""The dream's per-step transforms: small functions, drawn in a fixed order from the seed."""

from __future__ import annotations

import math

import pytest
import torch

from artconv.deepdream.options import DreamOptions
from artconv.deepdream.transforms import (
    affine_warp,
    compose,
    gradient_transforms,
    input_transforms,
    lap_normalize,
    normalize_mean,
    roll,
)


def rng(seed: int = 5) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_no_jitter_means_no_input_transforms_but_the_same_draws():
    r = rng()
    assert input_transforms(DreamOptions(jitter=0), r) == []
    reference = rng()
    torch.randint(0, 1, (2,), generator=reference)  # the roll is drawn even when 0
    assert torch.equal(torch.rand(3, generator=r), torch.rand(3, generator=reference))


def test_roll_is_drawn_before_the_warp_and_a_given_shift_draws_no_roll():
    x = torch.rand(1, 3, 12, 10, generator=rng(1))
    o = DreamOptions(jitter=4, scale_jitter=0.2, rotate_jitter=15.0)
    drawn = input_transforms(o, rng())
    assert len(drawn) == 2
    r = rng()
    dy, dx = torch.randint(-4, 5, (2,), generator=r).tolist()
    u = (torch.rand(2, generator=r) * 2 - 1).tolist()
    scale = math.exp(u[0] * math.log1p(0.2))
    expected = affine_warp(torch.roll(x, (dy, dx), (-2, -1)), scale, u[1] * 15.0)
    torch.testing.assert_close(compose(drawn)(x), expected)
    assert len(input_transforms(o, rng(), shift=(0, 0))) == 1  # only the warp


def test_gradient_transforms_end_in_the_mean_magnitude_normalisation():
    assert gradient_transforms(DreamOptions()) == [normalize_mean]
    with_lap = gradient_transforms(DreamOptions(lap_levels=3))
    assert len(with_lap) == 2 and with_lap[-1] is normalize_mean
    g = torch.randn(1, 3, 16, 16, generator=rng())
    torch.testing.assert_close(with_lap[0](g), lap_normalize(g, 3))
    assert float(normalize_mean(g).abs().mean()) == pytest.approx(1.0, rel=1e-5)


def test_compose_applies_in_order():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    double = lambda t: 2 * t  # noqa: E731
    torch.testing.assert_close(compose([roll((0, 1)), double])(x), 2 * torch.roll(x, 1, -1))
    torch.testing.assert_close(compose([])(x), x)

