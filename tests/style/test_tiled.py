"""Exact tiled evaluation of the style objective (artconv.style.tiled): the loss and the
gradient of a tiled evaluation equal the untiled ones up to float rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from artconv.errors import ArtconvError
from artconv.losses import GaussianTarget
from artconv.nets.extractor import FeatureExtractor
from artconv.style import StyleOptions, StyleTransfer
from artconv.style.tiled import TiledObjective, estimate
from tests.conftest import tiny_sequential

TOL = 1e-4
BASE = {"content_layers": ("r3", "r2"), "style_layers": ("r1", "r2", "r3"), "size": 48,
        "precision": "fp32", "device": "cpu"}


def engine(fx: FeatureExtractor | None = None, **options) -> StyleTransfer:
    fx = fx if fx is not None else FeatureExtractor(tiny_sequential())
    return StyleTransfer(StyleOptions(**{**BASE, **options}), extractor=fx)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def agree(st: StyleTransfer, content: torch.Tensor, targets, x: torch.Tensor,
          tiles: tuple[int, ...], priors=()) -> None:
    """Loss rows and gradient, tiled at each of `tiles` px, against untiled."""
    ref = st.objective(content, targets, priors)
    assert not isinstance(ref, TiledObjective)
    v0, g0 = ref.value_and_grad(x)
    assert float(g0.abs().max()) > 0
    for tile in tiles:
        ob = st.objective(content, targets, priors, tile=tile)
        assert isinstance(ob, TiledObjective) and len(ob.plan(x.shape[-2:])) > 1
        v1, g1 = ob.value_and_grad(x)
        assert v1.shape == v0.shape
        assert rel(v1, v0) < TOL, (tile, v1, v0)
        assert rel(g1, g0) < TOL, tile
        assert rel(ob(x), v0) < TOL  # the value alone, without a gradient pass


@pytest.mark.parametrize("loss", ["gram", "w2"])
@pytest.mark.parametrize("scale", ["network", "auto"])
def test_tiled_equals_untiled_odd_size_and_tiles_under_the_receptive_field(loss, scale):
    # tiny_sequential: receptive field 18 px at r3, stride 4; tile 8 is smaller than it
    torch.manual_seed(0)
    st = engine(style_loss=loss, loss_scale=scale)
    targets = st.style_targets([torch.rand(3, 40, 36)], 48)
    content, x = torch.rand(1, 3, 37, 45), torch.rand(1, 3, 37, 45)
    agree(st, content, targets, x, (8, 12, 33))


def test_bf16_tiled_content_targets_are_held_in_bf16_and_agree_with_untiled():
    # The content targets are the largest image-sized buffer of a tiled print: in a bf16 run
    # the network's bf16 maps are kept as they are (exact), not widened to fp32 copies.
    torch.manual_seed(0)
    st = engine(precision="bf16")
    targets = st.style_targets([torch.rand(3, 40, 36)], 48)
    content, x = torch.rand(1, 3, 37, 45), torch.rand(1, 3, 37, 45)
    ref = st.objective(content, targets)
    tiled = st.objective(content, targets, tile=12)
    assert isinstance(tiled, TiledObjective)
    whole = {p.layer: p.target for p in ref.content.pieces}
    for piece in tiled.content.pieces:
        assert piece.target.dtype == whole[piece.layer].dtype == torch.bfloat16
        assert rel(piece.target.float(), whole[piece.layer].float()) < 2e-2  # tile by tile
    v0, g0 = ref.value_and_grad(x)
    v1, g1 = tiled.value_and_grad(x)
    assert rel(v1, v0) < 1e-2 and rel(g1, g0) < 2e-2  # bf16 convolutions, in other tiles


def test_pass_two_starts_from_the_last_tile_of_pass_one(monkeypatch):
    """A gradient evaluation runs the network 2n - 1 times over n tiles, not 2n: pass 1's
    last tile keeps its graph for pass 2, whose result stays the untiled one."""
    torch.manual_seed(0)
    st = engine()
    targets = st.style_targets([torch.rand(3, 40, 36)], 48)
    content, x = torch.rand(1, 3, 37, 45), torch.rand(1, 3, 37, 45)
    ob = st.objective(content, targets, tile=12)
    n = len(ob.plan(x.shape[-2:]))
    calls = []
    net = type(ob.net)
    real = net.features
    monkeypatch.setattr(net, "features", lambda *a, **k: calls.append(1) or real(*a, **k))
    _, grad = ob.value_and_grad(x)
    assert n > 2 and len(calls) == 2 * n - 1
    _, g0 = st.objective(content, targets).value_and_grad(x)
    assert rel(grad, g0) < TOL


@pytest.mark.parametrize("loss", ["gram", "w2"])
def test_tiled_blend_of_two_styles_and_a_batch_of_two(loss):
    torch.manual_seed(1)
    st = engine(style_loss=loss, blend=(0.7, 0.3), tv_loss="l1")
    targets = st.style_targets([torch.rand(3, 40, 40), torch.rand(3, 32, 44)], 48)
    content, x = torch.rand(2, 3, 41, 34), torch.rand(2, 3, 41, 34)
    agree(st, content, targets, x, (12, 20))


def test_tiled_real_vgg_geometry(random_vgg):
    """VGG19's pools and its 200+ px receptive field at relu5_1."""
    torch.manual_seed(2)
    st = engine(random_vgg, content_layers=("relu4_2",), size=72,
                style_layers=("relu1_1", "relu3_1", "relu5_1"))
    targets = st.style_targets([torch.rand(3, 64, 64)], 72)
    content, x = torch.rand(1, 3, 49, 70), torch.rand(1, 3, 49, 70)
    agree(st, content, targets, x, (32,))


def _mask(path, left: bool) -> str:
    m = np.zeros((40, 48), np.uint8)
    if left:
        m[:, :30] = 255
    else:
        m[:, 20:] = 160  # soft, overlapping the other
    Image.fromarray(m).save(path)
    return str(path)


@pytest.mark.parametrize("loss", ["gram", "w2"])
def test_tiled_region_masks(tmp_path, loss):
    torch.manual_seed(3)
    masks = (_mask(tmp_path / "a.png", True), _mask(tmp_path / "b.png", False))
    st = engine(style_loss=loss, masks=masks)
    targets = st.style_targets([torch.rand(3, 40, 40), torch.rand(3, 40, 40)], 48)
    assert targets.regions == 2
    content, x = torch.rand(1, 3, 40, 48), torch.rand(1, 3, 40, 48)
    agree(st, content, targets, x, (12, 24))


def test_tiled_seamless_and_luminance():
    torch.manual_seed(4)
    fx = FeatureExtractor(tiny_sequential(), seamless=True)
    st = engine(fx, seamless=True, preserve_colors="luminance")
    content = torch.rand(1, 3, 40, 44)
    targets = st.style_targets([torch.rand(3, 40, 40)], 48, content=content)
    agree(st, content, targets, torch.rand(1, 1, 40, 44), (8, 16))


@pytest.mark.parametrize("seamless", [False, True])
@pytest.mark.parametrize("tv", ["l2", "l1"])
def test_tv_in_bands_of_rows_equals_tv_on_the_whole_image(monkeypatch, seamless, tv):
    import artconv.losses.terms as terms

    monkeypatch.setattr(terms, "TV_BAND_PIXELS", 45 * 5)  # 5-row bands, the last one short
    fx = FeatureExtractor(tiny_sequential(), seamless=seamless)
    st = engine(fx, seamless=seamless, tv_loss=tv, tv_weight=100.0)
    targets = st.style_targets([torch.rand(3, 40, 40)], 48)
    agree(st, torch.rand(1, 3, 37, 45), targets, torch.rand(2, 3, 37, 45), (12,))


def test_tiled_priors_act_on_the_whole_image():
    torch.manual_seed(5)
    st = engine()
    targets = st.style_targets([torch.rand(3, 40, 40)], 48)
    ref = torch.rand(1, 3, 40, 48)

    def prior(x: torch.Tensor) -> torch.Tensor:
        return 3.0 * (x - ref).square().flatten(1).mean(1)

    agree(st, torch.rand(1, 3, 40, 48), targets, torch.rand(1, 3, 40, 48), (12,), (prior,))


def _same_targets(a, b) -> None:
    for name in a.layers:
        for x, y in zip(_flat(a.layers[name]), _flat(b.layers[name]), strict=True):
            assert rel(x, y) < TOL, name


def _flat(target) -> list[torch.Tensor]:
    items = target if isinstance(target, tuple) else (target,)
    out = []
    for t in items:
        out += [t.mean, t.cov, t.cov_sqrt] if isinstance(t, GaussianTarget) else [t]
    return out


@pytest.mark.parametrize("loss", ["gram", "w2"])
def test_style_targets_measured_tile_by_tile_equal_the_whole_image(tmp_path, loss):
    styles = [torch.rand(3, 50, 44), torch.rand(3, 40, 40)]
    plain = engine(style_loss=loss, blend=(0.6, 0.4)).style_targets(styles, 48)
    tiled = engine(style_loss=loss, blend=(0.6, 0.4), tile=12).style_targets(styles, 48)
    _same_targets(tiled, plain)
    masks = (_mask(tmp_path / "a.png", True), _mask(tmp_path / "b.png", False))
    opts = {"style_loss": loss, "masks": masks, "style_masks": masks}
    plain = engine(**opts).style_targets(styles, 48)
    tiled = engine(tile=8, **opts).style_targets(styles, 48)
    assert tiled.regions == 2
    _same_targets(tiled, plain)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_runs_from_the_same_seed_agree_after_5_steps(optimizer):
    content = torch.rand(1, 3, 40, 48, generator=torch.Generator().manual_seed(6))
    style = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(7))
    common = {"optimizer": optimizer, "iterations": (5,), "init": "noise", "seed": 3,
              "scales": (32, 48)}
    steps: list = []
    tiled = engine(tile=12, **common).run(content, [style], callback=steps.append)
    plain = engine(**common).run(content, [style])
    # L-BFGS takes unit steps along directions built from gradient differences, which
    # magnifies float rounding step by step; Adam's normalised steps do not.
    assert rel(tiled, plain) < (TOL if optimizer == "adam" else 1e-2)
    assert 1 < steps[0].figures["tiles"] < steps[-1].figures["tiles"]
    assert engine(**common).options.lbfgs_history == 100


def test_tile_auto_picks_untiled_where_it_fits_and_tiles_where_not():
    st = engine(tile="auto", max_memory=64)
    assert st.tile_sizes([(40, 48)]) == [0]
    hw = (400, 480)
    opts = StyleOptions(**BASE, optimizer="adam")
    untiled, small = (estimate(st.fx, opts, hw, t).total for t in (0, 16))
    assert small < untiled
    limit = (small + untiled) / 2 / 2**30
    st = engine(tile="auto", max_memory=limit, optimizer="adam")
    tile = st.tile_sizes([hw])[0]
    assert 16 <= tile < 480
    assert st.memory(hw).total <= limit * 2**30


def test_an_impossible_request_is_refused_in_one_line_before_any_work(monkeypatch):
    st = engine(tile=16, max_memory=0.0001, size=2048)
    monkeypatch.setattr(StyleTransfer, "objective", lambda *a, **k: pytest.fail("ran"))
    with pytest.raises(ArtconvError) as caught:
        st.run(torch.rand(1, 3, 40, 48), [torch.rand(3, 40, 40)])
    text = str(caught.value)
    assert "\n" not in text and "--tile 16" in text and "--max-memory 0.0001" in text
    with pytest.raises(ArtconvError, match="--tile auto.*--max-memory"):
        engine(tile="auto", max_memory=0.0001, size=2048).tile_sizes([(2048, 1800)])


def test_an_lbfgs_state_that_cannot_fit_is_refused_naming_adam():
    st = engine(lbfgs_history=10**9)
    with pytest.raises(ArtconvError, match="--lbfgs-history.*--optimizer adam"):
        st.run(torch.rand(1, 3, 40, 48), [torch.rand(3, 40, 40)])


def test_lbfgs_history_reaches_the_optimiser():
    from artconv.style.optimise import ScaleRun

    opts = StyleOptions(**BASE, lbfgs_history=7)
    x = torch.rand(1, 3, 8, 8)
    run = ScaleRun.start(x, x, opts, False, None)
    assert run.optimizers[0].defaults["history_size"] == 7


@pytest.mark.parametrize(("given", "tile"), [("1024", 1024), ("auto", "auto"), ("0", 0),
                                             ("off", 0), (256, 256)])
def test_tile_option_reads_numbers_and_auto(given, tile):
    assert StyleOptions(tile=given).validated().tile == tile
    assert StyleOptions.from_dict({"tile": given}).tile == tile


def test_tile_option_refuses_other_words():
    with pytest.raises(ArtconvError, match="--tile"):
        StyleOptions(tile="big").validated()
