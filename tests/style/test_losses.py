"""Style-transfer losses and colour transforms against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from artconv.io import color
from artconv.losses import functional as losses


def _feats(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# -- Gram and content -----------------------------------------------------------------------
def test_gram_is_feature_products_over_size():
    f = _feats(2, 3, 2, 4)
    n, c, h, w = f.shape
    expected = torch.zeros(n, c, c)
    for b in range(n):
        for i in range(c):
            for j in range(c):
                expected[b, i, j] = sum(f[b, i, y, x] * f[b, j, y, x]
                                        for y in range(h) for x in range(w)) / (c * h * w)
    torch.testing.assert_close(losses.gram(f), expected)


def test_gram_loss_is_mean_squared_gram_difference():
    f, target = _feats(1, 2, 3, 3), torch.tensor([[[0.5, 0.0], [0.0, 0.1]]])
    g = losses.gram(f)[0]
    by_hand = sum((g[i, j] - target[0, i, j]) ** 2 for i in range(2) for j in range(2)) / 4
    torch.testing.assert_close(losses.gram_loss(f, target), by_hand.reshape(1))


def test_content_loss_is_per_image_mse():
    f = torch.zeros(2, 1, 1, 2)
    target = torch.tensor([[[[1.0, 3.0]]]])
    torch.testing.assert_close(losses.content_loss(f, target), torch.tensor([5.0, 5.0]))


def test_content_loss_of_channels_last_maps_has_a_channels_last_gradient():
    """The network's maps are NHWC: an NCHW gradient would be added to the next layer's NHWC
    one element by element across layouts (what made this loss 6x slower at relu4_2)."""
    f = torch.rand(2, 8, 5, 6).contiguous(memory_format=torch.channels_last)
    target = torch.rand(1, 8, 5, 6).contiguous(memory_format=torch.channels_last)
    leaf = f.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(losses.content_loss(leaf, target).sum(), leaf)
    assert grad.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(grad, 2 * (f - target) / (8 * 5 * 6))


def test_gram_of_channels_last_and_bf16_features():
    f = _feats(2, 8, 5, 6)
    cl = f.to(memory_format=torch.channels_last)
    torch.testing.assert_close(losses.gram(cl), losses.gram(f))
    g = losses.gram(f.bfloat16())
    assert g.dtype == torch.float32  # Gram and losses always in fp32
    torch.testing.assert_close(g, losses.gram(f), rtol=2e-2, atol=2e-3)


# -- total variation ------------------------------------------------------------------------
def test_tv_l2_and_l1_by_hand():
    x = torch.tensor([[[[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]]]])
    # the last column/row are replicated, so they add no difference:
    # dx = [[1, 2, 0], [0, 0, 0]], dy = [[2, 1, -1], [0, 0, 0]]
    assert losses.tv_loss(x, "l2").item() == pytest.approx((1 + 4 + 4 + 1 + 0 + 1) / 6)
    assert losses.tv_loss(x, "l1").item() == pytest.approx((1 + 2 + 2 + 1 + 0 + 1) / 6)
    assert losses.tv_loss(torch.ones(1, 3, 4, 4), "l2").item() == 0.0


# -- Wasserstein-2 --------------------------------------------------------------------------
def _w2_target(features: torch.Tensor) -> losses.GaussianTarget:
    return losses.GaussianTarget.from_moments(*losses.moments(features))


def test_w2_one_channel_is_mean_and_std_distance():
    # 1-D Gaussians: W2^2 = (m1 - m2)^2 + (s1 - s2)^2 (eps shifts both variances equally)
    f = torch.tensor([0.0, 2.0], dtype=torch.float64).reshape(1, 1, 1, 2)  # mean 1, var 1
    same_spread = torch.tensor([3.0, 5.0], dtype=torch.float64).reshape(1, 1, 1, 2)  # 4, 1
    wider = torch.tensor([2.0, 6.0], dtype=torch.float64).reshape(1, 1, 1, 2)  # 4, 4
    eps = losses.W2_EPS
    assert losses.w2_loss(f, _w2_target(same_spread)).item() == pytest.approx(9.0, abs=1e-6)
    expected = 9.0 + (math.sqrt(1 + eps) - math.sqrt(4 + eps)) ** 2
    assert losses.w2_loss(f, _w2_target(wider)).item() == pytest.approx(expected, abs=1e-6)


def test_w2_matches_closed_form_in_several_channels():
    f = _feats(1, 4, 6, 6, seed=1, dtype=torch.float64)
    g = _feats(1, 4, 5, 7, seed=2, dtype=torch.float64) * 2 + 0.3
    m1, m2 = f.flatten(2).mean(2)[0], g.flatten(2).mean(2)[0]
    eye = torch.eye(4, dtype=torch.float64)
    s1 = torch.cov(f.flatten(2)[0], correction=0) + losses.W2_EPS * eye
    s2 = torch.cov(g.flatten(2)[0], correction=0) + losses.W2_EPS * eye
    root2 = losses.sqrtm_eigh(s2)
    cross = losses.sqrtm_eigh(root2 @ s1 @ root2)
    exact = ((m1 - m2).square().sum() + torch.trace(s1 + s2 - 2 * cross)) / 4
    torch.testing.assert_close(losses.w2_loss(f, _w2_target(g))[0], exact, rtol=1e-6,
                               atol=1e-9)
    assert losses.w2_loss(g, _w2_target(g)).item() == pytest.approx(0.0, abs=1e-6)


def test_newton_schulz_square_root():
    a = _feats(2, 6, 6, seed=3, dtype=torch.float64)
    spd = a @ a.mT + 0.1 * torch.eye(6, dtype=torch.float64)
    root = losses.sqrtm_newton_schulz(spd, iters=20)
    torch.testing.assert_close(root @ root, spd, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(root, losses.sqrtm_eigh(spd), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kind", ["gram", "w2"])
def test_style_loss_gradient(kind):
    f = _feats(1, 3, 3, 3, seed=4, dtype=torch.float64).requires_grad_(True)
    other = _feats(1, 3, 4, 4, seed=5, dtype=torch.float64)
    if kind == "gram":
        target = losses.gram(other)
        fn = lambda x: losses.gram_loss(x, target)  # noqa: E731
    else:
        target = _w2_target(other)
        fn = lambda x: losses.w2_loss(x, target)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (f,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("kind", ["content", "gram", "w2", "tv"])
def test_batched_losses_equal_single_ones(kind):
    batch = _feats(3, 4, 5, 5, seed=6)
    other = _feats(1, 4, 5, 5, seed=7)
    fns = {"content": lambda x: losses.content_loss(x, other),
           "gram": lambda x: losses.gram_loss(x, losses.gram(other)),
           "w2": lambda x: losses.w2_loss(x, _w2_target(other)),
           "tv": lambda x: losses.tv_loss(x)}
    singles = torch.cat([fns[kind](batch[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(fns[kind](batch), singles)
    assert len(set(singles.tolist())) == 3  # really per image


# -- colour ---------------------------------------------------------------------------------
def test_yiq_round_trip_and_luminance():
    img = _feats(3, 4, 5, seed=8)
    torch.testing.assert_close(color.yiq_to_rgb(color.rgb_to_yiq(img)), img)
    y = color.luminance(img)
    torch.testing.assert_close(y[0], 0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2])


def test_with_luminance_keeps_chroma():
    content, y = _feats(3, 6, 6, seed=9), _feats(1, 6, 6, seed=10)
    out = color.with_luminance(y, content)
    yiq_out, yiq_content = color.rgb_to_yiq(out), color.rgb_to_yiq(content)
    torch.testing.assert_close(yiq_out[1:], yiq_content[1:])
    torch.testing.assert_close(yiq_out[:1], y)


def test_match_color_gives_content_mean_and_covariance():
    style = _feats(3, 10, 12, seed=11) * torch.tensor([1.0, 0.3, 0.6])[:, None, None]
    content = _feats(3, 8, 8, seed=12).pow(2)
    matched = color.match_color(style, content)
    mean_m, cov_m = color.color_stats(matched)
    mean_c, cov_c = color.color_stats(content)
    torch.testing.assert_close(mean_m, mean_c, atol=1e-5, rtol=0)
    torch.testing.assert_close(cov_m, cov_c, atol=1e-5, rtol=1e-4)
    mean_s, _ = color.color_stats(style)
    assert not torch.allclose(mean_s, mean_c, atol=1e-2)  # there was something to match


def test_match_luminance_mean_and_std():
    y, ref = _feats(1, 5, 5, seed=13) * 0.2, _feats(1, 6, 6, seed=14)
    out = color.match_luminance(y, ref)
    assert out.mean().item() == pytest.approx(ref.mean().item(), abs=1e-6)
    assert out.std().item() == pytest.approx(ref.std().item(), rel=1e-5)
