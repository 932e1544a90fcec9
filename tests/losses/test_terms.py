"""The loss terms (artconv.losses): each against its direct formula, their composition, their
relative scale (--loss-scale auto), and the use a trainer makes of them (content targets
new every step, style targets fixed, one value per image)."""

from __future__ import annotations

import pytest
import torch

from artconv import losses


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def gram_by_hand(f: torch.Tensor, m: torch.Tensor | None = None) -> torch.Tensor:
    """G = sum_p m_p f_p f_p^T / (C sum_p m_p), one image (C,H,W)."""
    c = f.shape[0]
    flat = f.reshape(c, -1)
    w = torch.ones(flat.shape[1], dtype=f.dtype) if m is None else m.reshape(-1)
    return (flat * w) @ flat.T / (c * w.sum())


def sqrtm(a: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(a)
    return vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T


def w2_by_hand(f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The squared W2 distance of the two maps' Gaussians (each covariance + eps I), / C."""
    c = f.shape[0]
    eye = torch.eye(c, dtype=f.dtype)
    a, b = f.reshape(c, -1), g.reshape(c, -1)
    s1 = torch.cov(a, correction=0) + losses.W2_EPS * eye
    s2 = torch.cov(b, correction=0) + losses.W2_EPS * eye
    r2 = sqrtm(s2)
    trace = torch.trace(s1 + s2 - 2 * sqrtm(r2 @ s1 @ r2))
    return ((a.mean(1) - b.mean(1)).square().sum() + trace) / c


# -- each term against its formula -----------------------------------------------------------
def test_content_term_is_the_mean_square_difference_and_relative_divides_by_the_target():
    f, t = rand(2, 4, 5, 6), rand(2, 4, 5, 6, seed=1)
    by_hand = (f - t).square().mean((1, 2, 3))
    torch.testing.assert_close(losses.ContentLoss("a", t).value(f), by_hand)
    relative = losses.ContentLoss("a", t, relative=True).value(f)
    torch.testing.assert_close(relative, by_hand / t.square().mean((1, 2, 3)))


@pytest.mark.parametrize("masked", [False, True])
def test_gram_term_is_the_mse_of_the_guided_gram_weighted_by_the_region_mass(masked):
    f, s = rand(2, 3, 6, 7), rand(1, 3, 5, 5, seed=1)
    target = losses.gram(s)
    m = (torch.arange(6 * 7).reshape(1, 1, 6, 7) % 3 == 0).double() if masked else None
    regions = losses.Regions(m) if masked else None
    got = losses.StyleLoss(target, regions, 0).value(f)
    for i in range(2):
        mse = (gram_by_hand(f[i], m) - target[0]).square().mean()
        mass = m.mean() if masked else 1.0
        torch.testing.assert_close(got[i], mse * mass)


def test_w2_term_is_the_wasserstein_distance_of_the_feature_gaussians():
    f, s = rand(1, 3, 8, 8), rand(1, 3, 8, 8, seed=1) * 2
    target = losses.style_target("w2", losses.statistics("w2", s))
    got = losses.StyleLoss(target).value(f)
    torch.testing.assert_close(got[0], w2_by_hand(f[0], s[0]), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", ["l2", "l1"])
def test_tv_term_is_the_mean_neighbour_difference(kind):
    x = rand(2, 3, 5, 6)
    dx = torch.nn.functional.pad(x[..., 1:] - x[..., :-1], (0, 1))
    dy = torch.nn.functional.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    per = dx.square() + dy.square() if kind == "l2" else dx.abs() + dy.abs()
    torch.testing.assert_close(losses.TV(kind)({}, x), per.mean((1, 2, 3)))


def test_pixel_term_sums_its_functions():
    x, ref = rand(2, 3, 4, 4), rand(2, 3, 4, 4, seed=1)
    term = losses.Pixel([lambda y: (y - ref).square().mean((1, 2, 3)), lambda y: y.mean((1, 2, 3))])
    torch.testing.assert_close(term({}, x), (x - ref).square().mean((1, 2, 3)) + x.mean((1, 2, 3)))


# -- composition ---------------------------------------------------------------------------
def test_rows_compose_the_pieces_content_averaged_style_weighted_per_layer():
    feats = {"a": rand(2, 3, 6, 6), "b": rand(2, 5, 3, 3, seed=1)}
    image = rand(2, 3, 12, 12, seed=2)
    ct = {"a": rand(2, 3, 6, 6, seed=3), "b": rand(2, 5, 3, 3, seed=4)}
    st = {"a": losses.gram(rand(1, 3, 6, 6, seed=5)), "b": losses.gram(rand(1, 5, 4, 4, seed=6))}
    content = losses.Content(ct)
    style = losses.Style(st, [("a", 0.25), ("b", 0.75)])
    assert content.layers == ("a", "b") and style.layers == ("a", "b")
    torch.testing.assert_close(content(feats, image), (
        losses.content_loss(feats["a"], ct["a"]) + losses.content_loss(feats["b"], ct["b"])) / 2)
    torch.testing.assert_close(style(feats, image), (
        0.25 * losses.gram_loss(feats["a"], st["a"])
        + 0.75 * losses.gram_loss(feats["b"], st["b"])))
    # no content layers: a zero row, one value per image
    assert torch.equal(losses.Content({})(feats, image), torch.zeros(2, dtype=image.dtype))


def test_regions_sum_over_styles_and_all_ones_mask_is_the_plain_loss():
    f = rand(1, 3, 6, 6)
    t1, t2 = losses.gram(rand(1, 3, 6, 6, seed=1)), losses.gram(rand(1, 3, 6, 6, seed=2))
    left = torch.zeros(1, 1, 6, 6, dtype=torch.float64)
    left[..., :3] = 1
    masks = torch.cat([left, 1 - left])
    style = losses.Style({"a": (t1, t2)}, [("a", 1.0)], losses.Regions(masks))
    expected = (losses.gram_loss(f, t1, left) * 0.5 + losses.gram_loss(f, t2, 1 - left) * 0.5)
    torch.testing.assert_close(style({"a": f}, f), expected)
    ones = losses.Style({"a": (t1,)}, [("a", 1.0)], losses.Regions(torch.ones(1, 1, 6, 6)))
    torch.testing.assert_close(ones({"a": f}, f), losses.Style({"a": t1}, [("a", 1.0)])(
        {"a": f}, f))


def test_style_refuses_targets_that_do_not_match_the_regions():
    t = losses.gram(rand(1, 3, 4, 4))
    with pytest.raises(ValueError, match="2 targets for 3 regions"):
        losses.Style({"a": (t, t)}, [("a", 1.0)], losses.Regions(torch.ones(3, 1, 4, 4)))
    with pytest.raises(ValueError, match="for no regions"):
        losses.Style({"a": (t, t)}, [("a", 1.0)])


# -- relative scale ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["gram", "w2"])
def test_relative_terms_do_not_change_with_the_networks_feature_scale(kind):
    """--loss-scale auto: a network whose features are 50x larger gives the same relative
    losses, so one set of weights means the same on any network."""
    f, s, c = rand(2, 4, 6, 6), rand(1, 4, 6, 6, seed=1), rand(2, 4, 6, 6, seed=2)

    def values(k: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        target = losses.style_target(kind, losses.statistics(kind, k * s))
        relative = losses.StyleLoss(target, relative=True).value(k * f)
        raw = losses.StyleLoss(target).value(k * f)
        return relative, raw, losses.ContentLoss("a", k * c, relative=True).value(k * f)

    (rel1, raw1, con1), (rel50, raw50, con50) = values(1.0), values(50.0)
    # W2's eps (1e-4 on a covariance ~0.08 here) does not scale with the features
    torch.testing.assert_close(rel50, rel1, rtol=5e-3 if kind == "w2" else 1e-6, atol=0)
    torch.testing.assert_close(con50, con1)
    assert float((raw50 / raw1).min()) > 2000  # the raw losses grow as s^2 (W2) or s^4
    target = losses.style_target(kind, losses.statistics(kind, s))
    torch.testing.assert_close(losses.StyleLoss(target, relative=True).value(f),
                               losses.StyleLoss(target).value(f) / losses.target_scale(target))


# -- a trainer's use -----------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["gram", "w2"])
def test_fixed_style_targets_and_new_content_targets_give_each_image_its_own_loss(kind):
    """A batch of N outputs against one style target (batch dim 1) and content targets made
    from the batch itself: each image's value and gradient are those it gets alone."""
    style_images = [rand(1, 3, 8, 8, seed=1), rand(1, 3, 8, 8, seed=2)]
    stats = [{"a": losses.statistics(kind, s)} for s in style_images]
    style = losses.Style(losses.style_targets(kind, stats, [0.5, 0.5]), [("a", 1.0)],
                         relative=True)
    tv = losses.TV()
    for step in range(2):  # new photos, new content targets every step
        photos = rand(3, 3, 8, 8, seed=10 + step)
        y = (photos * 0.9 + 0.05).requires_grad_(True)
        content = losses.Content({"a": photos}, relative=True)
        loss = content({"a": y}, y) + 10 * style({"a": y}, y) + tv({}, y)
        assert loss.shape == (3,)
        (grad,) = torch.autograd.grad(loss.sum(), y)
        for i in range(3):
            yi = y[i:i + 1].detach().requires_grad_(True)
            alone = (losses.Content({"a": photos[i:i + 1]}, relative=True)({"a": yi}, yi)
                     + 10 * style({"a": yi}, yi) + tv({}, yi))
            (gi,) = torch.autograd.grad(alone.sum(), yi)
            torch.testing.assert_close(alone[0], loss[i])
            torch.testing.assert_close(gi, grad[i:i + 1])


def test_blended_targets_are_the_weighted_sums_of_each_images_statistics():
    a, b = rand(1, 3, 6, 6), rand(1, 3, 5, 7, seed=1)
    grams = losses.style_targets("gram", [{"x": (losses.gram(a),)}, {"x": (losses.gram(b),)}],
                                 [0.7, 0.3])
    torch.testing.assert_close(grams["x"], 0.7 * losses.gram(a) + 0.3 * losses.gram(b))
    stats = [{"x": losses.statistics("w2", a)}, {"x": losses.statistics("w2", b)}]
    gauss = losses.style_targets("w2", stats, [0.7, 0.3])["x"]
    (ma, sa), (mb, sb) = losses.moments(a), losses.moments(b)
    mean, srm = 0.7 * ma + 0.3 * mb, 0.7 * sa + 0.3 * sb
    torch.testing.assert_close(gauss.mean, mean)
    torch.testing.assert_close(gauss.cov, losses.covariance(mean, srm))
    torch.testing.assert_close(gauss.cov_sqrt @ gauss.cov_sqrt, gauss.cov)
