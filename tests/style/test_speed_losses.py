"""The fast paths of the style losses (issue 16): the hand-written backward passes of the
Gram / W2 statistics and of TV give autograd's gradients, keep the maps' memory layout, and
a style run ends at the same loss as with the plain autograd formulation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from artconv.losses import functional as losses
from artconv.nets.extractor import FeatureExtractor
from artconv.style import StyleOptions, StyleTransfer
from tests.conftest import tiny_sequential


# -- the plain autograd formulations the fast paths replace ----------------------------------
def plain_gram(features, mask=None):
    f = features.double().flatten(2)
    fm, total = losses._weighted(f, None if mask is None else mask.double())
    return torch.bmm(fm, f.mT) / (features.shape[1] * total)


def plain_moments(features, mask=None):
    f = features.double().flatten(2)
    fm, total = losses._weighted(f, None if mask is None else mask.double())
    return fm.sum(2) / total[..., 0], torch.bmm(fm, f.mT) / total


def plain_tv(image, kind="l2", *, wrap=False):
    x = F.pad(image, (0, 1, 0, 1), mode="circular" if wrap else "replicate")
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    per_pixel = dx.square() + dy.square() if kind == "l2" else dx.abs() + dy.abs()
    return per_pixel.flatten(1).mean(1)


def maps(dtype, layout, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(2, 6, 9, 7, generator=g).relu().to(dtype)
    return f.contiguous(memory_format=layout).requires_grad_(True)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gram_and_moments_gradients_match_autograd(layout, masked, dtype):
    f = maps(dtype, layout)
    mask = torch.rand(1, 1, 9, 7, generator=torch.Generator().manual_seed(1)) if masked else None
    target = torch.randn(1, 6, 6, generator=torch.Generator().manual_seed(2))
    w = torch.randn(2, 6, generator=torch.Generator().manual_seed(3))

    def total(gram, moments):
        mean, srm = moments(f, mask)
        return ((gram(f, mask) - target).square().sum() + (mean * w).sum()
                + srm.square().sum())

    fast = total(losses.gram, losses.moments)
    plain = total(plain_gram, plain_moments)
    assert float(fast.detach()) == pytest.approx(float(plain.detach()), rel=1e-5)
    (g_fast,) = torch.autograd.grad(fast, f)
    (g_plain,) = torch.autograd.grad(plain, f)
    assert g_fast.dtype == dtype and g_fast.stride() == f.stride()  # no layout change
    tol = 1e-5 if dtype == torch.float32 else 1e-2  # bf16: the gradient's own rounding
    err = (g_fast.double() - g_plain.double()).abs().max() / g_plain.double().abs().max()
    assert err < tol


def test_statistics_pass_gradcheck_in_fp64():
    f = torch.rand(1, 4, 5, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(1, 1, 5, 3, dtype=torch.float64)
    target = losses.GaussianTarget.from_moments(*losses.moments(f.detach() * 0.5))
    assert torch.autograd.gradcheck(lambda x: losses.gram_loss(x, target.cov, mask), (f,))
    assert torch.autograd.gradcheck(lambda x: losses.w2_loss(x, target, mask), (f,))


def test_a_mask_that_needs_its_gradient_still_gets_it():
    f = torch.rand(1, 4, 5, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(1, 1, 5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, m: losses.gram(x, m).sum(), (f, mask))


@pytest.mark.parametrize("kind", ["l2", "l1"])
@pytest.mark.parametrize("wrap", [False, True])
@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (1, 1, 1, 5), (1, 3, 1, 1)])
def test_tv_matches_the_padded_formulation(kind, wrap, shape):
    x = torch.rand(*shape, dtype=torch.float64, requires_grad=True)
    w = torch.rand(shape[0], dtype=torch.float64)
    fast, plain = losses.tv_loss(x, kind, wrap=wrap), plain_tv(x, kind, wrap=wrap)
    torch.testing.assert_close(fast, plain)
    (g_fast,) = torch.autograd.grad((fast * w).sum(), x)
    (g_plain,) = torch.autograd.grad((plain * w).sum(), x)
    torch.testing.assert_close(g_fast, g_plain)


def test_tv_keeps_a_bf16_image_bf16_in_its_gradient():
    x = torch.rand(1, 3, 6, 6).to(torch.bfloat16).requires_grad_(True)
    losses.tv_loss(x).sum().backward()
    assert x.grad.dtype == torch.bfloat16


@pytest.mark.parametrize("style_loss", ["gram", "w2"])
@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_final_loss_unchanged_against_the_plain_losses(monkeypatch, style_loss, optimizer):
    """The same seeded fp32 run with the fast losses and with the plain autograd ones ends
    within 1 % (the issue's bound)."""
    content = torch.rand(1, 3, 40, 48, generator=torch.Generator().manual_seed(0))
    style = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(1))
    opts = StyleOptions(content_layers=("r3",), style_layers=("r1", "r2", "r3"),
                        style_weight=1e4, content_weight=1e2, tv_weight=1e-1, size=48,
                        iterations=(15,), precision="fp32", device="cpu",
                        style_loss=style_loss, optimizer=optimizer)

    def final_loss():
        st = StyleTransfer(opts, extractor=FeatureExtractor(tiny_sequential()))
        st.run(content, [style])
        return st.last_figures["loss"]

    fast = final_loss()
    calls = []

    def counted(fn):
        return lambda *a, **k: calls.append(fn) or fn(*a, **k)

    monkeypatch.setattr(losses, "moments", counted(lambda f, m=None: tuple(
        t.float() for t in plain_moments(f, m))))
    monkeypatch.setattr(losses, "gram", counted(lambda f, m=None: plain_gram(f, m).float()))
    monkeypatch.setattr(losses, "tv_loss", counted(plain_tv))
    plain = final_loss()
    assert len(set(calls)) == 2  # the plain statistic and TV did run
    assert fast == pytest.approx(plain, rel=0.01)
