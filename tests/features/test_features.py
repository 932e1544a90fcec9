"""Per-pixel features (API): shapes, no interpolation at full resolution, cell geometry,
tiling equal to a whole-image pass, PCA pictures, similarity maps, errors."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from artconv.device import memory_format
from artconv.errors import ArtconvError
from artconv.features import FeatureOptions, layer_geometry, pixel_features, plan_features
from artconv.features import plan as features_plan
from artconv.features.pca import colormap, fit_pca, pca_rgb, sample_pixels, similarity_map
from artconv.nets.extractor import FeatureExtractor
from tests.conftest import tiny_sequential

FP32 = {"precision": "fp32", "device": "cpu"}
CHANNELS = {"r1": 8, "r2": 16, "c3": 16, "r3": 16}  # tiny_sequential


def rand_image(h: int = 40, w: int = 48, seed: int = 0) -> torch.Tensor:
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed))


def two_regions(h: int = 40, w: int = 64) -> torch.Tensor:
    """Left half flat red, right half flat blue."""
    img = torch.zeros(3, h, w)
    img[0, :, : w // 2] = 1.0
    img[2, :, w // 2:] = 1.0
    return img


def fx_for(pooling: str) -> FeatureExtractor:
    return FeatureExtractor(tiny_sequential(), pooling)


def raw(fx: FeatureExtractor, img: torch.Tensor, layer: str) -> torch.Tensor:
    """The network's own map, run the way the engine runs it (same memory format), so that
    "no interpolation" can be checked bit for bit."""
    layout = memory_format(torch.device("cpu"), "fp32")
    with torch.no_grad():
        return fx(img.unsqueeze(0).contiguous(memory_format=layout), [layer])[layer][0]


# -- shapes and dtypes ---------------------------------------------------------------------------
@pytest.mark.parametrize("pooling", ["max", "avg", "strided", "none"])
@pytest.mark.parametrize("upsample", ["bilinear", "nearest", None])
def test_shapes_and_dtypes(pooling, upsample):
    fx = fx_for(pooling)
    img = rand_image()
    out = pixel_features(img, ["r1", "r3"], extractor=fx, upsample=upsample, **FP32)
    if upsample is None:
        assert list(out) == ["r1", "r3"]
        for name, t in out.items():
            assert t.shape == raw(fx, img, name).shape
            assert t.dtype == torch.float32
        assert out["r3"].shape[1:] == ((40, 48) if pooling == "none" else (10, 12))
    else:
        assert out.shape == (8 + 16, 40, 48)
        assert out.dtype == torch.float32 and out.device.type == "cpu"


def test_float16_output_is_the_float32_result_rounded():
    img = rand_image()
    full = pixel_features(img, ["r1", "r3"], extractor=fx_for("max"), **FP32)
    half = pixel_features(img, ["r1", "r3"], extractor=fx_for("max"), dtype="float16", **FP32)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half, full.half())


def test_hypercolumn_channels_are_the_layers_in_the_order_given(random_vgg):
    img = rand_image(32, 32)
    out = pixel_features(img, ["relu2_1", "relu1_1"], extractor=random_vgg, **FP32)
    assert out.shape == (128 + 64, 32, 32)
    first = pixel_features(img, ["relu1_1"], extractor=random_vgg, **FP32)
    torch.testing.assert_close(out[128:], first, rtol=0, atol=0)


# -- full resolution, geometry ---------------------------------------------------------------------
@pytest.mark.parametrize("upsample", ["bilinear", "nearest"])
def test_pooling_none_is_native_full_resolution_never_interpolated(upsample):
    fx = fx_for("none")
    img = rand_image()
    out = pixel_features(img, ["r1", "r2", "r3"], extractor=fx, upsample=upsample, **FP32)
    # r1, r2: cell centres within half a pixel of their own pixel -> the raw maps, bit for bit
    assert torch.equal(out[:8], raw(fx, img, "r1"))
    assert torch.equal(out[8:24], raw(fx, img, "r2"))
    # r3's a-trous cell y is centred at y + 1.5: re-indexed by 1 px (a copy), never blended
    r3 = raw(fx, img, "r3")
    assert layer_geometry(fx.net)["r3"].offset == 1.5
    assert torch.equal(out[24:, 1:, 1:], r3[:, :-1, :-1])
    assert torch.equal(out[24:, 0, 1:], r3[:, 0, :-1])  # the image's edge row repeats


def test_max_bilinear_is_torch_interpolate_at_the_cells_true_centres():
    fx = fx_for("max")
    img = rand_image()  # 40 x 48: multiples of r3's stride 4
    out = pixel_features(img, ["r3"], extractor=fx, **FP32)
    ref = F.interpolate(raw(fx, img, "r3")[None], scale_factor=4, mode="bilinear",
                        align_corners=False)[0]
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_strided_cells_sit_on_the_grid_points_not_block_centres():
    fx = fx_for("strided")
    assert layer_geometry(fx.net)["r3"].offset == 0  # a stride-2 3x3 conv centres on 2j
    img = rand_image()
    out = pixel_features(img, ["r3"], extractor=fx, **FP32)
    torch.testing.assert_close(out[:, ::4, ::4], raw(fx, img, "r3"), rtol=1e-6, atol=1e-6)


def test_geometry_of_vgg_matches_describe(random_vgg):
    geo = layer_geometry(random_vgg.net)
    for info in random_vgg.describe(64):
        assert geo[info.name].stride == info.stride
        assert geo[info.name].receptive_field == info.receptive_field
    assert geo["relu5_1"].offset == 7.5  # (16 - 1) / 2: centre of a 16x16 block


# -- tiling --------------------------------------------------------------------------------------
@pytest.mark.parametrize("pooling", ["max", "strided", "none"])
@pytest.mark.parametrize("upsample", ["bilinear", "nearest", None])
def test_tiled_extraction_equals_whole_image(pooling, upsample):
    fx = fx_for(pooling)
    img = rand_image(44, 50)  # not multiples of the stride: partial last tiles and cells
    opts = FeatureOptions(layers=("r1", "r2", "r3"), tile=8,
                          upsample=upsample or "none")
    assert len(plan_features(fx, (44, 50), opts).tiles) >= 20
    whole = pixel_features(img, ["r1", "r2", "r3"], extractor=fx, upsample=upsample, **FP32)
    tiled = pixel_features(img, ["r1", "r2", "r3"], extractor=fx, upsample=upsample, tile=8,
                           **FP32)
    pairs = whole.items() if isinstance(whole, dict) else [("all", whole)]
    for name, w in pairs:
        t = tiled[name] if isinstance(tiled, dict) else tiled
        assert (t - w).abs().max() <= 1e-5 * w.abs().max()


def test_tiled_vgg_equals_whole_and_auto_tiles_within_the_memory_budget(random_vgg):
    img = rand_image(64, 56)
    layers = ["relu1_2", "relu3_1"]
    whole = pixel_features(img, layers, extractor=random_vgg, **FP32)
    need = features_plan.forward_bytes(random_vgg, "relu3_1", layers, (64, 56), 64 + 256)
    budget = 0.9 * need / features_plan.GIB
    plan = plan_features(random_vgg, (64, 56), FeatureOptions(layers=tuple(layers),
                                                              max_memory=budget))
    assert 1 < len(plan.tiles) <= 16
    for t in plan.tiles:
        assert t.ext[0] % 4 == 0 and t.ext[2] % 4 == 0  # on relu3_1's cell grid
        hw = (t.ext[1] - t.ext[0], t.ext[3] - t.ext[2])
        assert features_plan.forward_bytes(random_vgg, "relu3_1", layers, hw, 320) <= \
            budget * features_plan.GIB
    tiled = pixel_features(img, layers, extractor=random_vgg, max_memory=budget, **FP32)
    assert (tiled - whole).abs().max() <= 1e-5 * whole.abs().max()


def test_a_margin_short_of_the_receptive_field_leaves_seams(monkeypatch):
    fx = fx_for("max")
    img = rand_image(44, 50)
    whole = pixel_features(img, ["r3"], extractor=fx, **FP32)
    context = features_plan._context

    def short(a, b, n, layers, upsample, align):  # 4 px of context: indices fit, fields don't
        start, end = context(a, b, n, layers, upsample, align)
        return max(start, a - 4), min(end, b + 4)

    monkeypatch.setattr(features_plan, "_context", short)
    tiled = pixel_features(img, ["r3"], extractor=fx, tile=8, **FP32)
    assert (tiled - whole).abs().max() > 1e-3 * whole.abs().max()


# -- precision -----------------------------------------------------------------------------------
def test_bf16_precision_is_close_and_output_dtype_is_separate():
    img = rand_image()
    fp32 = pixel_features(img, ["r3"], extractor=fx_for("max"), **FP32)
    bf16 = pixel_features(img, ["r3"], extractor=fx_for("max"), precision="bf16", device="cpu")
    assert bf16.dtype == torch.float32
    assert not torch.equal(bf16, fp32)
    assert (bf16 - fp32).abs().max() <= 0.05 * fp32.abs().max()


# -- PCA and similarity --------------------------------------------------------------------------
def region_features(pooling: str = "max") -> torch.Tensor:
    return pixel_features(two_regions(), ["r1", "r3"], extractor=fx_for(pooling), **FP32)


def interior(t: torch.Tensor, left: bool) -> torch.Tensor:
    """Pixels well inside one half (further than r3's receptive field from any edge)."""
    return t[..., 12:28, 10:22] if left else t[..., 12:28, 42:54]


@pytest.mark.parametrize("pooling", ["max", "none"])
def test_pca_of_two_flat_regions_gives_two_separated_colours(pooling):
    feats = region_features(pooling)
    rgb = pca_rgb(feats, fit_pca(sample_pixels(feats), groups=[8, 16]))
    assert rgb.shape == (3, 40, 64) and rgb.min() >= 0 and rgb.max() <= 1
    left, right = interior(rgb, True), interior(rgb, False)
    assert left.std(dim=(1, 2)).max() < 0.02 and right.std(dim=(1, 2)).max() < 0.02
    distance = (left.mean(dim=(1, 2)) - right.mean(dim=(1, 2))).norm()
    assert distance > 0.5


def test_pca_sign_convention_and_basis_are_reproducible():
    feats = region_features()
    a = fit_pca(sample_pixels(feats), groups=[8, 16])
    b = fit_pca(sample_pixels(feats.clone()), groups=[8, 16])
    torch.testing.assert_close(a.components, b.components)
    biggest = a.components.gather(1, a.components.abs().argmax(1, keepdim=True))
    assert (biggest > 0).all()
    assert torch.all(a.explained[:-1] >= a.explained[1:])


def test_pca_reads_numpy_memmaps_in_chunks(tmp_path):
    feats = region_features()
    arr = np.lib.format.open_memmap(tmp_path / "f.npy", "w+", np.float32, tuple(feats.shape))
    arr[:] = feats.numpy()
    basis = fit_pca(sample_pixels(feats))
    torch.testing.assert_close(pca_rgb(arr, basis), pca_rgb(feats, basis))


def test_pca_copies_read_only_memmap_chunks_without_torch_warnings(tmp_path):
    """A read-only np.load(mmap_mode="r") array (the shared-PCA path) must be copied chunk
    by chunk: torch.from_numpy on it shares the mapping and warns (once per process)."""
    import warnings

    from artconv.features.pca import _chunk

    feats = region_features()
    np.save(tmp_path / "f.npy", feats.numpy())
    arr = np.load(tmp_path / "f.npy", mmap_mode="r")  # small: one chunk is the whole array
    assert not arr.flags.writeable
    block = _chunk(arr[:, 0:64])
    assert not np.shares_memory(block.numpy(), arr) and block.numpy().flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        basis = fit_pca(sample_pixels(arr))
        torch.testing.assert_close(pca_rgb(arr, basis), pca_rgb(feats, basis))
        similarity_map(arr, 1, 1, [8, 16])


def test_similarity_is_one_at_the_point_and_higher_in_its_own_region():
    feats = region_features()
    sim = similarity_map(feats, x=16, y=20, groups=[8, 16])
    assert sim.shape == (40, 64)
    assert sim[20, 16] == 1.0
    assert sim.max() <= 1.0 + 1e-6
    assert interior(sim, True).mean() > interior(sim, False).mean() + 0.05
    assert interior(sim, True).min() > 0.99  # flat region: the very same vector


@pytest.mark.parametrize("point", [(64, 0), (0, 40), (-1, 3)])
def test_similarity_point_outside_the_image_is_a_clear_error(point):
    with pytest.raises(ArtconvError, match="outside the 64x40"):
        similarity_map(region_features(), *point)


def test_colormap_brightness_rises_monotonically():
    rgb = colormap(torch.linspace(0, 1, 50)[None])
    luma = (rgb * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(0)[0]
    assert torch.all(luma[1:] > luma[:-1])


# -- errors and options --------------------------------------------------------------------------
def test_unknown_layer_is_a_clear_error():
    with pytest.raises(ArtconvError, match=r"unknown layer 'relu9_9'.*valid: c1, r1"):
        pixel_features(rand_image(), ["r1", "relu9_9"], extractor=fx_for("max"), **FP32)


def test_a_layer_after_global_pooling_is_refused():
    net = nn.Sequential(OrderedDict([("c1", nn.Conv2d(3, 4, 3, padding=1)),
                                     ("gap", nn.AdaptiveAvgPool2d(1))]))
    with pytest.raises(ArtconvError, match="'gap' is not a spatial map"):
        pixel_features(rand_image(), ["gap"], extractor=net, **FP32)


def test_too_small_image_names_the_size_needed():
    with pytest.raises(ArtconvError, match="too small for layer r3: needs at least 4x4"):
        pixel_features(rand_image(3, 3), ["r3"], extractor=fx_for("max"), **FP32)


@pytest.mark.parametrize("bad, message", [
    ({"similar_to": (1, 2, 3)}, "expected X,Y"),
    ({"layers": ()}, "at least one layer"),
    ({"upsample": "cubic"}, "--upsample 'cubic': choose one of"),
    ({"max_memory": 0}, "--max-memory 0.0: must be greater than 0"),
])
def test_bad_options_are_one_line_errors(bad, message):
    with pytest.raises(ArtconvError, match=message):
        FeatureOptions().replace(**bad)


def test_the_hypercolumn_preset_is_valid_feature_options():
    from artconv.presets import find_preset, options_for

    opts = options_for(FeatureOptions, find_preset("features-hypercolumn"), {})
    assert opts.pooling == "none" and opts.dtype == "float16" and len(opts.layers) == 4


def test_image_from_a_file_is_resized_by_size(image_file):
    out = pixel_features(image_file, ["r1"], extractor=fx_for("max"), size=24, **FP32)
    assert out.shape == (8, 20, 24)
    assert Image.open(image_file).size == (48, 40)
