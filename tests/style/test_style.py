"""The style-transfer engine on a tiny random backbone at 24-48 px (a few seconds in all)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from artconv.errors import ArtconvError
from artconv.io import color
from artconv.io.images import load_image, resize_to
from artconv.nets.extractor import Backbone, FeatureExtractor
from artconv.nets.weights import Normalization
from artconv.presets import find_preset, options_for, read_preset
from artconv.style import (
    DEFAULT_WEIGHTS,
    StepInfo,
    StyleOptions,
    StyleTransfer,
    resolve_styles,
    stylize,
)
from tests.conftest import make_image, tiny_sequential

LAYERS = {"content_layers": ("r3",), "style_layers": ("r1", "r2", "r3")}
# The tiny random net's features are ~100x smaller than VGG's, so the default weights would
# leave only TV; these make the style term dominate and every term count.
WEIGHTS = {"gram": {"style_weight": 1e7, "content_weight": 1e3, "tv_weight": 1e-2},
           "w2": {"style_weight": 1e3, "content_weight": 1e3, "tv_weight": 1e-2}}


def engine(pooling: str = "max", **options) -> StyleTransfer:
    loss = options.get("style_loss", "gram")
    base = {**LAYERS, **WEIGHTS[loss], "size": 48, "iterations": (30,), "precision": "fp32",
            "device": "cpu"}
    fx = FeatureExtractor(tiny_sequential(), pooling)
    return StyleTransfer(StyleOptions(**{**base, **options}), extractor=fx)


@pytest.fixture
def content(tmp_path) -> torch.Tensor:
    return load_image(make_image(tmp_path / "c.png"))  # 48x40


@pytest.fixture
def style(tmp_path) -> torch.Tensor:
    return load_image(make_image(tmp_path / "s.png", (40, 40), seed=1))


@pytest.fixture
def style2(tmp_path) -> torch.Tensor:
    img = load_image(make_image(tmp_path / "s2.png", (36, 44), seed=5))
    return img.flip(0)  # other colours


def record(into: list[StepInfo]):
    return into.append


# -- optimisation ---------------------------------------------------------------------------
@pytest.mark.parametrize("pooling", ["max", "avg", "strided", "none"])
@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_loss_drops(content, style, optimizer, pooling):
    steps: list[StepInfo] = []
    out = engine(pooling, optimizer=optimizer).run(content, [style], callback=record(steps))
    assert out.shape == (1, 3, 40, 48)
    assert [s.step for s in steps] == list(range(1, 31))
    first, last = steps[0].figures, steps[-1].figures
    assert first["style"] > 0.9 * first["loss"]  # the style term is what there is to lower
    assert last["loss"] < 0.1 * first["loss"]
    assert last["content"] > 0  # the image moved away from the content


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_w2_loss_drops(content, style, optimizer):
    steps: list[StepInfo] = []
    engine(style_loss="w2", optimizer=optimizer).run(content, [style], callback=record(steps))
    assert steps[-1].figures["loss"] < 0.5 * steps[0].figures["loss"]


def test_adam_averaging_differs_from_last_iterate(content, style):
    plain = engine(optimizer="adam", iterations=(10,)).run(content, [style])
    averaged = engine(optimizer="adam", iterations=(10,), avg_decay=0.9).run(content, [style])
    assert (plain - averaged).abs().max() > 1e-3


# -- styles, blending, targets --------------------------------------------------------------
def test_blend_one_zero_equals_single_style(content, style, style2):
    single = engine(init="noise", seed=3).run(content, [style])
    blended = engine(init="noise", seed=3, blend=(1, 0)).run(content, [style, style2])
    other = engine(init="noise", seed=3, blend=(0.5, 0.5)).run(content, [style, style2])
    torch.testing.assert_close(blended, single)
    assert (other - single).abs().max() > 1e-2


def test_seed_makes_noise_init_repeatable(content, style):
    a = engine(init="noise", seed=7, iterations=(5,)).run(content, [style])
    b = engine(init="noise", seed=7, iterations=(5,)).run(content, [style])
    c = engine(init="noise", seed=8, iterations=(5,)).run(content, [style])
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (a - c).abs().max() > 0.1


def test_init_from_image_file(tmp_path, content, style):
    start = make_image(tmp_path / "start.png", (30, 30), seed=9)
    out = engine(init=str(start), iterations=(0,)).run(content, [style])
    torch.testing.assert_close(out[0], resize_to(load_image(start), (40, 48)))
    with pytest.raises(ArtconvError, match=r"--init .*nope\.png"):
        engine(init=str(tmp_path / "nope.png")).run(content, [style])


def test_targets_computed_once_and_reused(content, style, tmp_path):
    st = engine(iterations=(5,))
    targets = st.style_targets([style], 48)
    assert st.target_computations == 1
    other = load_image(make_image(tmp_path / "c2.png", seed=2))
    a = st.run(content, targets=targets)
    b = st.run(other, targets={48: targets})
    assert st.target_computations == 1
    torch.testing.assert_close(a, st.run(content, [style]))
    assert st.target_computations == 2
    assert (a - b).abs().max() > 0.05
    with pytest.raises(ValueError, match="no style targets for scale 48"):
        st.run(content, targets={64: targets})


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_batch_equals_one_at_a_time(tmp_path, content, style, optimizer):
    other = load_image(make_image(tmp_path / "c2.png", seed=2))
    st = engine(optimizer=optimizer, iterations=(15,))
    steps: list[StepInfo] = []
    batch = st.run(torch.stack([content, other]), [style], callback=record(steps))
    singles = torch.cat([st.run(content, [style]), st.run(other, [style])])
    # L-BFGS amplifies the last-bit differences of batched convolutions a little
    torch.testing.assert_close(batch, singles, rtol=0, atol=2e-3 if optimizer == "lbfgs"
                               else 1e-5)
    assert len(steps[-1].per_image) == 2
    assert steps[-1].figures["loss"] == pytest.approx(sum(steps[-1].per_image))


# -- colour ---------------------------------------------------------------------------------
def test_luminance_mode_keeps_content_chroma(content, style2):
    out = engine(preserve_colors="luminance").run(content, [style2])[0]
    yiq_out, yiq_content = color.rgb_to_yiq(out), color.rgb_to_yiq(content)
    assert (yiq_out[1:] - yiq_content[1:]).abs().mean() < 0.01
    assert (yiq_out[0] - yiq_content[0]).abs().mean() > 0.01  # the luminance was styled
    plain = engine().run(content, [style2])[0]
    assert (color.rgb_to_yiq(plain)[1:] - yiq_content[1:]).abs().mean() > 0.02


def test_histogram_mode_uses_colour_matched_style(content, style2):
    st = engine(preserve_colors="histogram")
    targets = st.style_targets([style2], 48, content=content[None])
    plain = engine()
    expected = plain.style_targets([color.match_color(style2, content)], 48)
    for name in LAYERS["style_layers"]:
        torch.testing.assert_close(targets.layers[name], expected.layers[name])
        assert not torch.allclose(plain.style_targets([style2], 48).layers[name],
                                  expected.layers[name])
    with pytest.raises(ValueError, match="needs the content"):
        st.style_targets([style2], 48)
    assert st.run(content, [style2], callback=None).shape == (1, 3, 40, 48)


# -- multi-scale ----------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_multiscale_runs_each_scale(content, style, optimizer):
    steps: list[StepInfo] = []
    st = engine(optimizer=optimizer, scales=(24, 36, 48), iterations=(6, 3))
    out = st.run(content, [style], callback=record(steps))
    assert out.shape == (1, 3, 40, 48)
    ran = {}
    for s in steps:
        ran.setdefault((s.scale, s.size), []).append(s.step)
    assert ran == {(0, (20, 24)): list(range(1, 7)), (1, (30, 36)): [1, 2, 3],
                   (2, (40, 48)): [1, 2, 3]}
    assert steps[-1].total_step == 12 and steps[-1].image.shape == (1, 3, 40, 48)


def test_automatic_ladder():
    assert StyleOptions(size=512, min_scale=128).ladder() == [128, 181, 256, 362, 512]
    assert StyleOptions(scales=(256, 512, 1024)).output_size == 1024
    assert StyleOptions(scales=(256, 512), size=1024).ladder() == [256, 512, 1024]
    assert StyleOptions(scales=(256, 512), min_scale=64).ladder() == [256, 512]
    assert StyleOptions().ladder() == [512]
    opts = StyleOptions(size=512, min_scale=128, iterations=(1000, 500))
    assert [opts.iterations_at(i) for i in range(5)] == [1000, 500, 500, 500, 500]


# -- failures -------------------------------------------------------------------------------
def test_non_finite_loss_stops_with_clear_error(content, style):
    st = engine()
    handle = st.fx.add_hook("c1", lambda m, i, o: o * float("nan"))
    try:
        with pytest.raises(ArtconvError, match="loss became nan at step 1"):
            st.run(content, [style])
    finally:
        handle.remove()


def test_interrupt_leaves_current_image(content, style):
    st = engine(iterations=(50,))

    def stop(info: StepInfo) -> None:
        if info.step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        st.run(content, [style], callback=stop)
    image = st.current_image()
    assert image is not None and image.shape == (1, 3, 40, 48)
    assert image.isfinite().all() and image.min() >= 0 and image.max() <= 1
    assert (image[0] - content).abs().max() > 1e-3


@pytest.mark.parametrize(("changes", "message"), [
    ({"blend": (0.5,)}, "--blend: 1 weights for 2 style"),
    ({"avg_decay": 0.9}, "--avg-decay"),
    ({"scales": (48, 24)}, "must increase"),
    ({"scales": (24, 48), "size": 32}, "--scales goes up to 48, past --size 32"),
    ({"style_layer_weights": (1, 2)}, "2 values for 3 style layers"),
    ({"style_layers": ("r1", "r9")}, "unknown layer 'r9'"),
    ({"tv_loss": "l3"}, "--tv-loss 'l3': choose one of"),
    ({"scales": (24, 48), "iterations": (1, 2, 3)}, "3 values for 2 scales"),
])
def test_option_errors(content, style, changes, message):
    with pytest.raises(ArtconvError, match=message):
        engine(**changes).run(content, [style, style])


# -- default weights --------------------------------------------------------------------------
def test_default_weights_follow_the_network_scale_and_loss():
    caffe = FeatureExtractor(Backbone(tiny_sequential(), Normalization.caffe()))
    st = StyleTransfer(StyleOptions(**LAYERS, device="cpu"), extractor=caffe)
    w = st.weights
    assert (w.kind, w.content, w.style, w.tv) == ("caffe", *DEFAULT_WEIGHTS[("caffe", "gram")])
    assert w.style_layers == pytest.approx((1 / 3,) * 3)
    w2 = engine(style_loss="w2", content_weight=None, style_weight=None, tv_weight=None,
                tv_loss="l1").weights
    assert (w2.kind, w2.content, w2.style) == ("torchvision", 0.015, 1.0)
    assert w2.tv == pytest.approx(2.0 * 0.05)
    assert w2.style_layers == pytest.approx((16 / 21, 4 / 21, 1 / 21))  # the 4^-i ramp
    assert engine(style_weight=3.0).weights.style == 3.0


# -- API ------------------------------------------------------------------------------------
def test_stylize_accepts_paths_pil_arrays_and_tensors(tmp_path):
    content_path = make_image(tmp_path / "c.png")
    style_path = make_image(tmp_path / "s.png", (40, 40), seed=1)
    fx = FeatureExtractor(tiny_sequential())
    kw = {**LAYERS, **WEIGHTS["gram"], "size": 32, "iterations": (3,), "precision": "fp32"}
    pil = Image.open(style_path)
    results = [
        stylize(content_path, style_path, extractor=fx, **kw),
        stylize(str(content_path), pil, extractor=fx, **kw),
        stylize(np.asarray(Image.open(content_path)), [load_image(style_path)], extractor=fx,
                **kw),
    ]
    for img in results:
        assert isinstance(img, Image.Image) and img.size == (32, 27)
    assert np.abs(np.asarray(results[0], float) - np.asarray(results[2], float)).max() <= 1


# -- presets ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gatys", "hq", "fast-preview"])
def test_bundled_presets_load(name):
    preset = find_preset(name)
    assert preset.engine == "style" and preset.description
    opts = options_for(StyleOptions, name, {"iterations": "7"})
    assert opts.iterations == (7,)  # explicit options win


def test_hq_preset_is_multiscale_adam_w2():
    opts = options_for(StyleOptions, "hq", {})
    assert (opts.optimizer, opts.style_loss, opts.pooling) == ("adam", "w2", "avg")
    assert opts.avg_decay == 0.99 and opts.ladder() == [128, 181, 256, 362, 512]


def test_malformed_preset_names_file_and_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('engine = "style"\n[options]\nstyle_wieght = 3\n')
    with pytest.raises(ArtconvError, match=r"bad\.toml: unknown option 'style_wieght'"):
        read_preset(bad)
    bad.write_text('engine = "style"\ncolour = "red"\n')
    with pytest.raises(ArtconvError, match=r"bad\.toml: unknown key 'colour'"):
        read_preset(bad)
    bad.write_text('engine = "style"\n[options]\niterations = "many"\n')
    with pytest.raises(ArtconvError, match=r"--iterations"):
        read_preset(bad)
    with pytest.raises(ArtconvError, match="unknown preset 'no-such-style'"):
        find_preset("no-such-style")


def test_style_named_by_preset_brings_images_and_options(tmp_path, monkeypatch):
    make_image(tmp_path / "painting.png", (40, 40), seed=3)
    (tmp_path / "mypaint.toml").write_text(
        'engine = "style"\ndescription = "x"\nimages = ["painting.png"]\n'
        '[options]\nstyle_loss = "w2"\n')
    monkeypatch.setenv("ARTCONV_STYLES", str(tmp_path))
    sources = resolve_styles(["mypaint", str(tmp_path / "painting.png")])
    assert sources.images == [tmp_path / "painting.png", str(tmp_path / "painting.png")]
    assert sources.names == ["mypaint", "painting"]
    assert sources.preset_options == {"style_loss": "w2"}
    with pytest.raises(ArtconvError, match="has no style images"):
        resolve_styles("gatys")
    with pytest.raises(ArtconvError, match="unknown preset 'mypaynt'"):
        resolve_styles("mypaynt")
