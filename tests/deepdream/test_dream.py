"""The dream engine on tiny random networks: objectives rise, jitter stays aligned, octaves
carry detail, tiling is exact and bounded, zoom videos resume."""

from __future__ import annotations

import warnings
from collections import OrderedDict

import pytest
import torch
from PIL import Image
from torch import nn

import artconv
from artconv.deepdream.engine import (
    Dreamer,
    DreamInterrupted,
    DreamOptions,
    keep_colors,
    lap_normalize,
)
from artconv.deepdream.objectives import (
    Objective,
    channel_mean,
    layer_l2,
    parse_channels,
    select_channels,
)
from artconv.deepdream.zoom import write_frames
from artconv.errors import ArtconvError
from artconv.io.color import rgb_to_yiq
from artconv.io.images import load_image, resize_to
from artconv.nets.extractor import FeatureExtractor
from artconv.nets.tiling import tile_grid
from artconv.nets.weights import ArtconvWarning
from artconv.presets import options_for
from tests.conftest import make_image, tiny_sequential

POOLINGS = ("max", "avg", "strided", "none")
# Tiny tiles are the point of the tiling tests; the engine's "tile much smaller than its
# margin is slow" note is expected there.
pytestmark = pytest.mark.filterwarnings("ignore:--tile")
_FX: dict[str, FeatureExtractor] = {}


def fx_for(pooling: str = "max") -> FeatureExtractor:
    if pooling not in _FX:
        _FX[pooling] = FeatureExtractor(tiny_sequential(), pooling)
    return _FX[pooling]


def dreamer(pooling: str = "max", **options) -> Dreamer:
    defaults = {"layers": ("r3",), "octaves": 1, "steps": 20, "tile": 0, "device": "cpu",
                "precision": "fp32"}
    return Dreamer(DreamOptions(**{**defaults, **options}), extractor=fx_for(pooling))


def noise(h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed))


# -- objectives rise ---------------------------------------------------------------------------
@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("kind", ["layer", "channel", "guided", "custom"])
def test_objective_rises_over_20_steps(kind, pooling, tmp_path):
    options = {
        "layer": {},
        "channel": {"channels": ("r3:strongest:3",)},
        "guided": {"guide": str(make_image(tmp_path / "guide.png", (32, 32), seed=3))},
        "custom": {"layers": ("r2",), "objective": lambda maps: maps["r2"].mean()},
    }[kind]
    # No jitter: it makes the ascent maximise the objective averaged over shifts, which for
    # aliased (strided) pooling is not the objective at shift 0 that is measured here.
    d = dreamer(pooling, jitter=0, **options)
    image = noise()
    objective = d.prepare(image)
    before = d.evaluate(image, objective)
    after = d.evaluate(d.run(image, objective), objective)
    assert after > before + 0.05 * abs(before) + 1e-4, (before, after)


def test_channel_objective_is_the_chosen_channels_only():
    d = dreamer(channels=("r3:2,7",))
    objective = d.prepare(noise())
    maps = {"r3": torch.zeros(1, 16, 4, 4)}
    maps["r3"][:, 2] = 1.0
    maps["r3"][:, 7] = 3.0
    maps["r3"][:, 9] = 100.0  # not chosen
    scale = objective(maps) / 2.0  # mean of channels 2 and 7 is 2
    maps["r3"][:, 9] = -50.0
    assert objective(maps) / 2.0 == pytest.approx(float(scale))


def test_objectives_compose():
    maps = {"a": torch.full((1, 2, 2, 2), 2.0), "b": torch.full((1, 4, 2, 2), 1.0)}
    combined = 2 * layer_l2("a") + channel_mean("b", [0, 1]) - 1.0
    assert isinstance(combined, Objective)
    assert combined.layers == ("a", "b")
    assert float(combined(maps)) == pytest.approx(2 * 4.0 + 1.0 - 1.0)
    assert sum([layer_l2("a"), layer_l2("b")]).layers == ("a", "b")


# -- channels ----------------------------------------------------------------------------------
def test_parse_channels_groups_comma_split_tokens():
    specs = parse_channels(("relu4_2:12", "45", "relu5_1:strongest:8", "random:3"))
    assert [s.describe() for s in specs] == ["relu4_2:12,45", "relu5_1:strongest:8",
                                             "random:3"]
    assert specs[2].layer is None
    with pytest.raises(ArtconvError, match="--channels"):
        parse_channels(("relu4_2:best:3",))


def test_select_channels_ranks_and_checks_range():
    means = torch.tensor([0.1, 5.0, -1.0, 3.0])
    strongest, weakest = parse_channels(("x:strongest:2", "x:weakest:1"))
    assert select_channels(strongest, "x", 4, means) == [1, 3]
    assert select_channels(weakest, "x", 4, means) == [2]
    (rand,) = parse_channels(("x:random:2",))
    assert select_channels(rand, "x", 10, seed=1) == select_channels(rand, "x", 10, seed=1)
    assert len({tuple(select_channels(rand, "x", 10, seed=s)) for s in range(5)}) > 1
    with pytest.raises(ArtconvError, match="out of range for x, which has 4"):
        select_channels(parse_channels(("x:4",))[0], "x", 4)


# -- jitter ------------------------------------------------------------------------------------
def test_zero_shift_step_is_a_plain_gradient_step():
    d = dreamer(jitter=0, step_size=0.01)
    image = noise().unsqueeze(0)
    objective = d.prepare(image)
    x = image.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(objective(d.fx(x, ["r3"])), x)
    expected = (image + 0.01 * g / g.abs().mean()).clamp(0, 1)
    stepped, _ = d.step(image, objective, shift=(0, 0))
    torch.testing.assert_close(stepped, expected)


def test_rolled_gradient_is_rolled_back_into_place():
    # A pointwise network makes the exact answer known: rolling the image must not move the
    # gradient, so with the roll undone it equals the unrolled one at every pixel.
    net = nn.Sequential(OrderedDict([("c", nn.Conv2d(3, 4, 1)), ("r", nn.ReLU())]))
    torch.manual_seed(0)
    d = Dreamer(DreamOptions(layers=("r",), octaves=1, tile=0, device="cpu"),
                extractor=FeatureExtractor(net))
    image = noise(24, 20)
    objective = d.prepare(image)
    g0, _ = d.gradient(image, objective)
    g1, _ = d.gradient(image, objective, shift=(5, -3))
    torch.testing.assert_close(g1, g0)
    assert not torch.allclose(torch.roll(g0, (5, -3), (-2, -1)), g0)  # the roll is visible
    s0, _ = d.step(image, objective, shift=(0, 0))
    s1, _ = d.step(image, objective, shift=(5, -3))
    torch.testing.assert_close(s1, s0)


# -- octaves -----------------------------------------------------------------------------------
def test_octaves_keep_the_input_size():
    out = dreamer(octaves=3, octave_scale=1.5, steps=2).run(noise(37, 45))
    assert out.shape == (3, 37, 45)


def test_octaves_carry_detail_onto_the_sharp_input():
    image = noise(48, 48)
    d = dreamer(octaves=3, octave_scale=2.0, steps=2, step_size=0.002, jitter=4)
    objective = d.prepare(image)
    out = d.run(image, objective)
    last_only = dreamer(octaves=1, steps=2, step_size=0.002, jitter=4).run(image, objective)
    assert (out - last_only).abs().mean() > 1e-3  # the small octaves did something
    # Re-injection keeps the input's own fine detail: the result is the input plus six small
    # steps, far closer to it than an upscaled small octave could be.
    changed = (out - image).abs().mean()
    blurred = (resize_to(resize_to(image, (12, 12)), (48, 48)) - image).abs().mean()
    assert changed < 6 * 0.002 * 1.5
    assert blurred > 10 * changed


def test_octave_below_minimum_size_is_dropped_with_a_warning():
    seen = set()
    d = Dreamer(DreamOptions(layers=("r3",), octaves=4, octave_scale=2.0, steps=1, tile=0),
                extractor=fx_for(), callback=lambda info: seen.add(info.octaves))
    assert d.min_size == 4
    with pytest.warns(ArtconvWarning, match="dropping 1 of 4 octaves"):
        out = d.run(noise(16, 16))
    assert seen == {3}
    assert out.shape == (3, 16, 16)
    with pytest.raises(ArtconvError, match="too small"):
        d.run(noise(3, 16))


# -- tiling ------------------------------------------------------------------------------------
@pytest.mark.parametrize("hw", [(64, 64), (62, 57)])
def test_tiled_gradient_equals_untiled(hw):
    image = noise(*hw)
    untiled = dreamer(tile=0)
    tiled = dreamer(tile=24)
    objective = untiled.prepare(image)
    assert len(tiled._tiles(hw)[0]) > 1
    g0, v0 = untiled.gradient(image, objective, shift=(3, 7))
    g1, v1 = tiled.gradient(image, objective, shift=(3, 7))
    torch.testing.assert_close(g1, g0, rtol=1e-4, atol=1e-6 * float(g0.abs().max()))


def test_tiles_without_margin_match_only_away_from_borders():
    image = noise(64, 64)
    untiled, tiled = dreamer(tile=0), dreamer(tile=32, tile_margin=0)
    objective = untiled.prepare(image)
    g0, _ = untiled.gradient(image, objective)
    g1, _ = tiled.gradient(image, objective)
    rf = 18  # c1, p1, c2, p2, c3
    inner = torch.zeros(64, 64, dtype=torch.bool)
    for top in (0, 32):
        for left in (0, 32):  # pixels >= rf away from any inner tile edge
            t0, t1 = top + (rf if top else 0), top + 32 - (rf if top == 0 else 0)
            l0, l1 = left + (rf if left else 0), left + 32 - (rf if left == 0 else 0)
            inner[t0:t1, l0:l1] = True
    scale = float(g0.abs().max())
    assert (g1 - g0)[..., inner].abs().max() < 1e-5 * scale
    assert (g1 - g0)[..., ~inner].abs().max() > 1e-3 * scale  # the margin is what fixes it


def test_tile_grid_is_aligned_and_covers_the_image():
    tiles = tile_grid(100, 70, 32, margin=17, align=8)
    covered = torch.zeros(100, 70, dtype=torch.int64)
    for t in tiles:
        top, bottom, left, right = t.core
        covered[top:bottom, left:right] += 1
        assert top % 8 == 0 and left % 8 == 0 and t.ext[0] % 8 == 0 and t.ext[2] % 8 == 0
        assert t.ext[0] == max(0, top - 24) and t.ext[1] == min(100, bottom + 24)
    assert bool((covered == 1).all())


def _largest_activation(d: Dreamer, image: torch.Tensor) -> int:
    largest = 0

    def hook(_module, _inputs, output):
        nonlocal largest
        largest = max(largest, output.numel())

    objective = d.prepare(image)  # measures the input at <= 512 px, untiled, without grad
    handles = [d.fx.add_hook(name, hook) for name in d.fx.layer_names]
    try:
        d.step(image, objective, shift=(0, 0))
    finally:
        for h in handles:
            h.remove()
    return largest


def test_tiling_bounds_the_largest_activation():
    untiled, tiled = dreamer(tile=0), dreamer(tile=32)
    peak_untiled = _largest_activation(untiled, noise(128, 128))
    peak_tiled = _largest_activation(tiled, noise(128, 128))
    peak_tiled_big = _largest_activation(tiled, noise(256, 256))
    assert peak_untiled == 8 * 128 * 128
    assert peak_tiled < peak_untiled / 2
    assert peak_tiled_big == peak_tiled  # flat as the image grows


# -- zoom videos -------------------------------------------------------------------------------
def _frames(folder, frames, counter=None):
    d = Dreamer(DreamOptions(layers=("r3",), octaves=2, steps=2, frames=frames, zoom=1.1,
                             rotate=2.0, tile=0, gif=True),
                extractor=fx_for(), callback=counter)
    return write_frames(d, noise(32, 32), folder)


def test_zoom_writes_n_frames_and_resumes(tmp_path):
    paths = _frames(tmp_path / "a", 3)
    assert [p.name for p in paths] == ["frame_000001.png", "frame_000002.png", "frame_000003.png"]
    assert all(p.is_file() for p in paths)
    assert Image.open(tmp_path / "a.gif").n_frames == 3
    mtimes = [p.stat().st_mtime_ns for p in paths]
    steps = []
    _frames(tmp_path / "a", 3, steps.append)
    assert steps == [] and [p.stat().st_mtime_ns for p in paths] == mtimes
    # Interrupted after two frames, then continued: the third frame is the same.
    _frames(tmp_path / "b", 2)
    steps = []
    _frames(tmp_path / "b", 3, steps.append)
    assert {info.frame for info in steps} == {3}
    torch.testing.assert_close(load_image(tmp_path / "b" / "frame_000003.png"),
                               load_image(paths[2]))


# -- errors, interruption, API -----------------------------------------------------------------
def test_bad_requests_are_one_line_errors(tmp_path):
    with pytest.raises(ArtconvError, match="unknown layer 'relu9'"):
        dreamer(layers=("relu9",))
    with pytest.raises(ArtconvError, match="channel 16 is out of range for r3"):
        dreamer(channels=("r3:3,16",))
    with pytest.raises(ArtconvError, match="--guide .*nope.png: no such file"):
        dreamer(guide=str(tmp_path / "nope.png"))
    with pytest.raises(ArtconvError, match="--layer-weights: 1 weights for 2"):
        dreamer(layers=("r2", "r3"), layer_weights=(1.0,))
    with pytest.raises(ArtconvError, match="--octave-scale"):
        dreamer(octave_scale=1.0)


def test_non_finite_objective_stops_with_an_error():
    d = dreamer(objective=lambda maps: maps["r3"].mean() * float("nan"))
    with pytest.raises(ArtconvError, match="non-finite"):
        d.run(noise())


def test_ctrl_c_carries_the_image_so_far():
    def interrupt(info):
        if info.octave == 2:
            raise KeyboardInterrupt

    d = Dreamer(DreamOptions(layers=("r3",), octaves=3, steps=2, tile=0),
                extractor=fx_for(), callback=interrupt)
    image = noise(40, 40)
    with pytest.raises(DreamInterrupted) as caught:
        d.run(image)
    assert caught.value.image.shape == (3, 40, 40)
    assert not torch.equal(caught.value.image, image)


def test_api_returns_pil_and_callback_can_stop(image_file):
    calls = []
    out = artconv.dream(image_file, extractor=fx_for(), layers=("r3",), octaves=2, steps=5,
                        callback=lambda info: calls.append(info) or False)
    assert isinstance(out, Image.Image)
    assert out.size == Image.open(image_file).size
    assert len(calls) == 1 and calls[0].octave == 1 and calls[0].step == 1


def test_preserve_colors_keeps_the_input_chroma():
    # Muted colours, so no channel leaves [0, 1] and is clamped.
    original, dreamed = noise(8, 8, seed=1) * 0.1 + 0.45, noise(8, 8, seed=2) * 0.1 + 0.45
    mixed = keep_colors(dreamed[None], original[None])[0]
    torch.testing.assert_close(rgb_to_yiq(mixed)[0], rgb_to_yiq(dreamed)[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(rgb_to_yiq(mixed)[1:], rgb_to_yiq(original)[1:], atol=1e-5,
                               rtol=0)


def test_preserve_colors_option_keeps_chroma_of_the_run():
    image = noise(32, 32, seed=4) * 0.5 + 0.25

    def chroma_change(out):
        return float((rgb_to_yiq(out) - rgb_to_yiq(image))[1:].abs().mean())

    kept = chroma_change(dreamer(preserve_colors=True, steps=5).run(image))
    free = chroma_change(dreamer(steps=5).run(image))
    assert kept < 0.2 * free


def test_lap_normalize_lifts_the_coarse_scales():
    y, x = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    smooth = (x + y)[None, None].expand(1, 3, 64, 64)
    fine = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    grad = 0.01 * smooth + fine
    out = lap_normalize(grad, 4)

    def smooth_share(t):
        return float((t * smooth).sum() ** 2 / ((smooth * smooth).sum() * (t * t).sum()))

    assert out.shape == grad.shape
    assert smooth_share(out) > 20 * smooth_share(grad)


def test_bf16_precision_runs():
    d = dreamer(precision="bf16", steps=3)
    image = noise()
    out = d.run(image)
    assert torch.isfinite(out).all() and not torch.equal(out, image)


def test_presets_load():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        soft = options_for(DreamOptions, "dream-soft", {})
        deep = options_for(DreamOptions, "dream-deep", {"steps": 3})
    assert soft.layers[0].startswith("relu3") and soft.lap_levels > 0
    assert deep.layers[0].startswith("relu5") and deep.steps == 3
