"""The terms' tile forms: statistics gathered over the parts of a map give the whole map's
loss, and the surrogate's gradient at every part is the true gradient (what
`artconv.style.tiled.TiledObjective` relies on); TV by bands of rows equals TV."""

from __future__ import annotations

import pytest
import torch

from artconv import losses
from artconv.losses import terms

BLOCKS = ((slice(0, 3), slice(0, 5)), (slice(0, 3), slice(5, 9)),
          (slice(3, 7), slice(0, 5)), (slice(3, 7), slice(5, 9)))  # a 7x9 map in 4 parts


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def parts(feats: dict[str, torch.Tensor], where: tuple[slice, slice]) -> dict[str, losses.Part]:
    return {n: losses.Part(where, tuple(f.shape[-2:]), f[..., where[0], where[1]].flatten(2))
            for n, f in feats.items()}


def style_term(kind: str, regions: bool, relative: bool) -> losses.Style:
    styles = [rand(1, 4, 6, 6, seed=1), rand(1, 4, 8, 5, seed=2)]
    if regions:
        per = tuple(losses.style_target(kind, losses.statistics(kind, s)) for s in styles)
        soft = rand(1, 1, 7, 9, seed=3)
        return losses.Style({"a": per}, [("a", 1.0)], losses.Regions(torch.cat([soft, 1 - soft])),
                            relative)
    stats = [{"a": losses.statistics(kind, s)} for s in styles]
    return losses.Style(losses.style_targets(kind, stats, [0.6, 0.4]), [("a", 1.0)],
                        relative=relative)


@pytest.mark.parametrize("kind", ["gram", "w2"])
@pytest.mark.parametrize("regions", [False, True])
@pytest.mark.parametrize("relative", [False, True])
@pytest.mark.parametrize("whole_map", [False, True])
def test_style_from_gathered_sums_and_surrogate_equal_the_whole_map(kind, regions, relative,
                                                                   whole_map):
    f = rand(2, 4, 7, 9, seed=4).requires_grad_(True)
    style = style_term(kind, regions, relative)
    whole = style({"a": f}, f)
    (expected,) = torch.autograd.grad(whole.sum(), f)

    sums: losses.Sums = {}
    with torch.no_grad():
        for where in BLOCKS:
            style.sums(parts({"a": f}, where), into=sums)
    leaves = {k: tuple(s.requires_grad_(True) for s in v) for k, v in sums.items()}
    gathered = style.from_sums(leaves, {"a": (7, 9)})
    torch.testing.assert_close(gathered, whole.detach())
    flat = [s for v in leaves.values() for s in v]
    found = iter(torch.autograd.grad(gathered.sum(), flat))
    slopes = {k: tuple(next(found) for _ in v) for k, v in leaves.items()}
    grad = torch.zeros_like(f)
    for r, c in BLOCKS:  # each part's surrogate gradient, as a tile's second pass
        if whole_map:  # given the whole map: its gradient there, 0 off the part
            owned = {"a": losses.Part((r, c), (7, 9), f.detach(), (r, c))}
            grad += style.gradients(owned, slopes)["a"]
        else:
            owned = {"a": losses.Part((r, c), (7, 9), f.detach()[..., r, c])}
            grad[..., r, c] += style.gradients(owned, slopes)["a"]
    torch.testing.assert_close(grad, expected)


@pytest.mark.parametrize("relative", [False, True])
def test_content_shares_of_the_parts_sum_to_the_whole_value_and_gradient(relative):
    f = rand(2, 4, 7, 9).requires_grad_(True)
    content = losses.Content({"a": rand(2, 4, 7, 9, seed=1)}, relative)
    whole = content({"a": f}, f)
    (expected,) = torch.autograd.grad(whole.sum(), f)
    shares = [content.owned(parts({"a": f}, where)) for where in BLOCKS]
    torch.testing.assert_close(sum(shares), whole.detach())
    (grad,) = torch.autograd.grad(sum(s.sum() for s in shares), f)
    torch.testing.assert_close(grad, expected)


@pytest.mark.parametrize("kind", ["l2", "l1"])
@pytest.mark.parametrize("wrap", [False, True])
def test_tv_in_bands_of_rows_equals_tv_and_its_gradient(monkeypatch, kind, wrap):
    monkeypatch.setattr(terms, "TV_BAND_PIXELS", 9 * 3)  # 3-row bands, the last one short
    x = rand(2, 3, 8, 9)
    tv = losses.TV(kind, wrap)
    src = x.clone().requires_grad_(True)
    value = tv({}, src)
    (expected,) = torch.autograd.grad(2.5 * value.sum(), src)
    grad = torch.zeros_like(x)
    torch.testing.assert_close(tv.in_bands(x, grad, 2.5), value.detach())
    torch.testing.assert_close(grad, expected)
