"""The feature core: named layers, hooks, the cut, the pooling switch, weights, backbones."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import urllib.error
import warnings
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from artconv.errors import ArtconvError
from artconv.nets import vgg
from artconv.nets.extractor import Backbone, FeatureExtractor, load_backbone
from artconv.nets.pooling import pink_noise
from artconv.nets.weights import CAFFE_MEAN_BGR, IMAGENET_MEAN, IMAGENET_STD
from artconv.options import CoreOptions
from tests.conftest import tiny_sequential

ARTCONV = [sys.executable, "-m", "artconv"]


def quiet_vgg(*args, **kwargs) -> FeatureExtractor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return FeatureExtractor.vgg(*args, **kwargs)


# -- names and hooks ------------------------------------------------------------------
def test_vgg_layer_names_are_conventional():
    names19, names16 = vgg.layer_names("vgg19"), vgg.layer_names("vgg16")
    assert len(names19) == 37 and len(names16) == 31
    assert names19[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert names19[-3:] == ["conv5_4", "relu5_4", "pool5"]
    assert "conv5_4" not in names16 and names16[-1] == "pool5"


@pytest.mark.parametrize("layers", [["relu1_1"], ["conv1_1", "relu3_1", "pool2"],
                                    ["relu5_1", "relu1_1", "conv4_2"], ["pool5"]])
def test_hooks_equal_slicing_by_index(random_vgg, layers):
    x = torch.rand(2, 3, 40, 36)
    out = random_vgg(x, layers)
    assert list(out) == sorted(layers, key=random_vgg.layer_names.index)
    for name in layers:
        idx = random_vgg.layer_names.index(name)
        expected = random_vgg.net[: idx + 1](random_vgg.normalize(x))
        torch.testing.assert_close(out[name], expected, rtol=0, atol=0)


def test_conv_capture_is_not_overwritten_by_relu(random_vgg):
    x = torch.rand(1, 3, 32, 32)
    out = random_vgg(x, ["conv1_1", "relu1_1"])
    assert (out["conv1_1"] < 0).any(), "conv output must keep its negative values"
    torch.testing.assert_close(out["relu1_1"], out["conv1_1"].relu())


def test_cut_runs_nothing_past_the_deepest_layer(random_vgg):
    ran: list[str] = []
    handles = [m.register_forward_hook(lambda *_a, n=n: ran.append(n))
               for n, m in random_vgg.net.named_children()]
    try:
        random_vgg(torch.rand(1, 3, 32, 32), ["relu2_1", "conv1_2"])
    finally:
        for h in handles:
            h.remove()
    assert ran == random_vgg.layer_names[: random_vgg.layer_names.index("relu2_1") + 1]


def test_unknown_layer_lists_valid_ones(random_vgg):
    with pytest.raises(ArtconvError, match=r"unknown layer 'relu9_9'.*conv1_1, relu1_1"):
        random_vgg(torch.rand(1, 3, 32, 32), ["relu9_9"])


def test_too_small_input_names_minimum_size(random_vgg):
    assert random_vgg.min_size(["pool5"]) == 32
    with pytest.raises(ArtconvError, match=r"20x20 px is too small for layer pool5: needs at "
                                           r"least 32x32"):
        random_vgg(torch.rand(1, 3, 20, 20), ["relu1_1", "pool5"])


def test_frozen_eval_and_to_dtype():
    fx = FeatureExtractor(tiny_sequential())
    fx.train()
    assert not fx.training and not any(m.training for m in fx.modules())
    assert not any(p.requires_grad for p in fx.parameters())
    fx = fx.to(torch.float64)
    out = fx(torch.rand(1, 3, 16, 16, dtype=torch.float64), ["r3"])
    assert out["r3"].dtype == torch.float64


def test_user_hook_on_named_layer_sees_and_can_change_output():
    fx = FeatureExtractor(tiny_sequential())
    seen = []
    handle = fx.add_hook("r2", lambda _m, _i, out: seen.append(out.shape) or out * 0)
    out = fx(torch.rand(1, 3, 16, 16), ["c3"])
    assert seen == [torch.Size([1, 16, 8, 8])]
    torch.testing.assert_close(out["c3"], fx.net.c3.bias.view(1, -1, 1, 1).expand(1, 16, 4, 4))
    handle.remove()
    assert not torch.allclose(fx(torch.rand(1, 3, 16, 16), ["c3"])["c3"], out["c3"])


# -- pooling switch ------------------------------------------------------------------
@pytest.mark.parametrize("size,expected", [(64, {"max": 32, "avg": 32, "strided": 32}),
                                           (65, {"max": 32, "avg": 32, "strided": 33})])
def test_pooling_shapes_even_and_odd(random_vgg, size, expected):
    for mode, side in expected.items():
        fx = FeatureExtractor(random_vgg.net, mode)
        out = fx(torch.rand(1, 3, size, size), ["relu2_1", "pool5"])
        assert out["relu2_1"].shape[-2:] == (side, side), mode
        info = {i.name: i for i in fx.describe(size)}
        assert out["pool5"].shape[-2:] == (info["pool5"].height, info["pool5"].width), mode


def test_avg_pool_equals_hand_computation():
    fx = FeatureExtractor(tiny_sequential(), "avg")
    x = torch.rand(1, 3, 12, 12)
    r1 = fx(x, ["r1"])["r1"]
    p1 = fx(x, ["p1"])["p1"]
    hand = (r1[..., 0::2, 0::2] + r1[..., 1::2, 0::2] + r1[..., 0::2, 1::2]
            + r1[..., 1::2, 1::2]) / 4
    torch.testing.assert_close(p1, hand)


def test_avg_rescale_matches_max_rms_on_calibration_input():
    net = tiny_sequential()
    fx = FeatureExtractor(net, "avg", avg_rescale=True)
    assert set(fx.avg_scales) == {"p1", "p2"} and all(s > 1 for s in fx.avg_scales.values())
    x = pink_noise(224)
    before_p1 = fx.net[:2](x)
    rms = lambda t: t.square().mean().sqrt()  # noqa: E731
    torch.testing.assert_close(rms(fx.net.p1(before_p1)), rms(net.p1(before_p1)))


def test_avg_rescale_is_positive_after_leaky_relu():
    net = nn.Sequential(OrderedDict([("c", nn.Conv2d(3, 8, 3, padding=1)),
                                     ("a", nn.LeakyReLU(0.1)), ("p", nn.MaxPool2d(2)),
                                     ("c2", nn.Conv2d(8, 8, 3, padding=1)),
                                     ("a2", nn.LeakyReLU(0.1)), ("p2", nn.MaxPool2d(2))]))
    with torch.no_grad():
        net.c2.bias.fill_(-5.0)  # mostly negative inputs to p2: a mean ratio would blow up
    fx = FeatureExtractor(net, "avg", avg_rescale=True)
    assert all(0.5 < s < 10 for s in fx.avg_scales.values()), fx.avg_scales


def test_strided_keeps_trained_conv_weights(random_vgg):
    fx = FeatureExtractor(random_vgg.net, "strided")
    for name in ("conv2_1", "conv3_1", "conv5_1"):
        assert fx.net.get_submodule(name).stride == (2, 2)
        assert fx.net.get_submodule(name).weight is random_vgg.net.get_submodule(name).weight
    assert random_vgg.net.conv2_1.stride == (1, 1), "the original network is untouched"
    # pool1 is a pass-through; conv2_1 is conv 3x3/s2 on relu1_2
    x = torch.rand(1, 3, 32, 32)
    out = fx(x, ["relu1_2", "conv2_1"])
    ref = random_vgg.net.conv2_1._conv_forward(out["relu1_2"], random_vgg.net.conv2_1.weight,
                                               random_vgg.net.conv2_1.bias)[..., ::2, ::2]
    torch.testing.assert_close(out["conv2_1"], ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size", [64, 70])
def test_none_keeps_full_resolution_and_matches_max_on_stride_grid(random_vgg, size):
    fx = FeatureExtractor(random_vgg.net, "none")
    fx.normalize = random_vgg.normalize
    layers = ["relu1_1", "pool1", "relu2_2", "relu3_1", "pool3", "relu4_2", "relu5_1"]
    x = torch.rand(1, 3, size, size)
    full, ref = fx(x, layers), random_vgg(x, layers)
    for name in layers:
        assert full[name].shape[-2:] == (size, size)
        s = random_vgg.describe(size)[random_vgg.layer_names.index(name)].stride
        h, w = ref[name].shape[-2:]
        sub = full[name][..., ::s, ::s][..., :h, :w]
        if size % 32 == 0:  # a multiple of the total stride: exact everywhere
            torch.testing.assert_close(sub, ref[name], rtol=1e-4, atol=1e-4)
        elif s <= 4:  # otherwise exact away from the bottom/right border
            torch.testing.assert_close(sub[..., : h - 2, : w - 2], ref[name][..., : h - 2, : w - 2],
                                       rtol=1e-4, atol=1e-4)


def test_describe_vgg19_at_224():
    fx = quiet_vgg("vgg19", "random")
    info = {i.name: i for i in fx.describe(224)}
    assert len(info) == 37
    assert (info["relu1_1"].height, info["relu1_1"].receptive_field) == (224, 3)
    assert (info["pool1"].height, info["pool1"].stride) == (112, 2)
    assert (info["relu4_2"].height, info["relu4_2"].channels) == (28, 512)
    assert (info["pool5"].height, info["pool5"].stride, info["pool5"].receptive_field) == \
        (7, 32, 268)
    none = {i.name: i for i in FeatureExtractor(fx.net, "none").describe(224)}
    assert none["pool5"].height == 224 and none["pool5"].stride == 1
    assert none["pool5"].receptive_field == 268
    ratio = sum(i.gflops for i in none.values()) / sum(i.gflops for i in info.values())
    assert 20 < ratio < 100


# -- weights ------------------------------------------------------------------
@pytest.fixture(scope="module")
def vgg19_state():
    """A random VGG19 in torchvision's key layout, classifier included."""
    features = vgg.build_features("vgg19")
    torch.manual_seed(3)
    state = {f"features.{i}.{p}": t for i, (n, m) in enumerate(features.named_children())
             for p, t in m.state_dict().items()}
    state["classifier.0.weight"] = torch.randn(4, 8)
    return state


def _features(fx, x):
    return fx(x, ["conv1_1", "relu3_1", "relu5_1"])


def test_weights_round_trip_torchvision_caffe_safetensors(tmp_path, vgg19_state):
    x = torch.rand(1, 3, 32, 32)
    tv_path = tmp_path / "my_vgg19.pth"
    torch.save(vgg19_state, tv_path)
    st_path = tmp_path / "my_vgg19.safetensors"
    save_file({k: v.contiguous() for k, v in vgg19_state.items()}, st_path)
    caffe_path = tmp_path / "vgg19-d01eb7cb.pth"  # neural-style's file name: caffe input
    torch.save({"state_dict": vgg19_state}, caffe_path)

    tv = quiet_vgg("vgg19", str(tv_path))
    st = quiet_vgg("vgg19", str(st_path))
    caffe = quiet_vgg("vgg19", str(caffe_path))
    a, b, c = _features(tv, x), _features(st, x), _features(caffe, x)
    ref_net = vgg.build_features("vgg19")
    ref_net.load_state_dict({f"{n}.{p}": vgg19_state[f"features.{i}.{p}"]
                             for i, n in enumerate(vgg.layer_names("vgg19"))
                             for p in ("weight", "bias") if f"features.{i}.{p}" in vgg19_state})
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(
        1, 3, 1, 1)
    torch.testing.assert_close(a["relu5_1"], ref_net[:30]((x - mean) / std))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    caffe_in = x.flip(1) * 255 - torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    torch.testing.assert_close(c["relu5_1"], ref_net[:30](caffe_in), rtol=1e-4, atol=1e-3)
    assert "caffe" in caffe.identity and "torchvision" in tv.identity


def test_missing_key_and_wrong_shape_fail_clearly(tmp_path, vgg19_state):
    missing = dict(vgg19_state)
    del missing["features.10.weight"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(ArtconvError, match=r"missing.pth: missing 1 vgg19 key.*features\.10"
                                           r"\.weight \(conv3_1\.weight\)"):
        quiet_vgg("vgg19", str(tmp_path / "missing.pth"))
    wrong = dict(vgg19_state)
    wrong["features.0.weight"] = torch.zeros(64, 3, 5, 5)
    torch.save(wrong, tmp_path / "wrong.pth")
    expected = (r"wrong.pth: features\.0\.weight \(conv1_1\.weight\) has shape "
                r"\(64, 3, 5, 5\), vgg19 needs \(64, 3, 3, 3\)")
    with pytest.raises(ArtconvError, match=expected):
        quiet_vgg("vgg19", str(tmp_path / "wrong.pth"))
    with pytest.raises(ArtconvError, match=r"missing \d+ vgg16 key"):  # vgg19 file as vgg16
        torch.save({k: v for k, v in vgg19_state.items() if k.startswith("features.")},
                   tmp_path / "x.pth")
        quiet_vgg("vgg16", str(tmp_path / "x.pth"))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))  # print is patched by Ray once it is imported


def test_pickle_that_would_run_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"features.0.weight": _Evil()}, fh)
    with pytest.raises(ArtconvError, match=r"evil.pth: refused: it would run code when "
                                           r"loaded \((posix|nt).system\)"):
        quiet_vgg("vgg19", str(path))
    assert "pwned" not in capsys.readouterr().out


def test_imagenet_offline_with_empty_cache_fails_with_instructions(monkeypatch, tmp_path):
    def offline(url, dst, **_kw):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ArtconvError) as err:
        FeatureExtractor.vgg("vgg19", "imagenet")
    msg = str(err.value)
    assert "\n" not in msg
    assert str(tmp_path) in msg or "hub" in msg
    assert "checkpoints/vgg19-dcbb9e9d.pth" in msg
    assert "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in msg
    assert "--weights PATH" in msg and "--weights random" in msg


def test_imagenet_uses_the_hub_cache_when_present(vgg19_state):
    from artconv.nets.weights import TORCHVISION_URLS, checkpoint_path

    path = checkpoint_path(TORCHVISION_URLS["vgg16"])
    path.parent.mkdir(parents=True, exist_ok=True)
    features16 = vgg.build_features("vgg16")
    torch.save({f"features.{i}.{p}": t for i, (_, m) in enumerate(features16.named_children())
                for p, t in m.state_dict().items()}, path)
    fx = FeatureExtractor.vgg("vgg16", "imagenet")
    assert fx.identity == "vgg16:imagenet:vgg16-397923af.pth"


def test_random_weights_warn_and_are_seeded():
    with pytest.warns(UserWarning, match="not meaningful art"):
        a = FeatureExtractor.vgg("vgg16", "random", seed=1)
    b = quiet_vgg("vgg16", "random", seed=1)
    c = quiet_vgg("vgg16", "random", seed=2)
    assert torch.equal(a.net.conv3_1.weight, b.net.conv3_1.weight)
    assert not torch.equal(a.net.conv3_1.weight, c.net.conv3_1.weight)


def test_missing_weights_file():
    with pytest.raises(ArtconvError, match="nope.pth: no such weights file"):
        FeatureExtractor.vgg("vgg19", "nope.pth")


# -- own backbones ------------------------------------------------------------------
def test_own_backbone_returns_its_maps():
    net = tiny_sequential()
    fx = FeatureExtractor(net)
    x = torch.rand(1, 3, 24, 24)
    out = fx(x, ["r2", "c1"])
    torch.testing.assert_close(out["r2"], net[:5](x))
    torch.testing.assert_close(out["c1"], net[:1](x))
    assert fx.layer_names == ["c1", "r1", "p1", "c2", "r2", "p2", "c3", "r3"]


def test_own_backbone_with_normalization_and_pooling():
    from artconv.nets.weights import Normalization

    net = tiny_sequential()
    norm = Normalization(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    fx = FeatureExtractor(Backbone(net, norm), "avg")
    x = torch.rand(1, 3, 16, 16)
    expected = F.avg_pool2d(net[:2]((x - 0.5) / 0.25), 2)
    torch.testing.assert_close(fx(x, ["p1"])["p1"], expected)


def test_backbone_from_file(backbone_file):
    opts = CoreOptions(backbone=f"{backbone_file}:build")
    fx = FeatureExtractor.from_options(opts)
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(fx(x, ["r3"])["r3"], tiny_sequential()(x))


@pytest.mark.parametrize("spec,message", [("nofile.py:build", "nofile.py: no such backbone"),
                                          ("{f}:missing", "has no function 'missing'"),
                                          ("{f}", "expected FILE.py:FUNCTION")])
def test_backbone_errors(backbone_file, spec, message):
    with pytest.raises(ArtconvError, match=message):
        load_backbone(spec.format(f=backbone_file))


def test_backbone_must_be_sequential(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("from torch import nn\ndef build():\n    return nn.Linear(2, 2)\n")
    with pytest.raises(ArtconvError, match="expected an nn.Sequential or artconv.Backbone"):
        load_backbone(f"{path}:build")


# -- options ------------------------------------------------------------------
def test_options_check_choices_ranges_and_unknown_keys():
    with pytest.raises(ArtconvError, match="--pooling 'mean': choose one of max, avg"):
        CoreOptions.from_dict({"pooling": "mean"})
    with pytest.raises(ArtconvError, match="--seed -1: must be at least 0"):
        CoreOptions.from_dict({"seed": -1})
    with pytest.raises(ArtconvError, match="preset.toml: unknown option 'colour'"):
        CoreOptions.from_dict({"colour": 1}, source="preset.toml")
    assert CoreOptions.from_dict({"seed": "7", "avg-rescale": "yes", "pooling": "avg"}).seed == 7


# -- CLI ------------------------------------------------------------------
def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*ARTCONV, *args], capture_output=True, text=True, timeout=120)


def test_cli_layers_json_lists_37_layers_with_sizes():
    res = run_cli("layers", "--arch", "vgg19", "--size", "224", "--json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r["name"] for r in rows] == vgg.layer_names("vgg19")
    sizes = {r["name"]: (r["height"], r["width"], r["stride"]) for r in rows}
    assert sizes["relu1_2"] == (224, 224, 1) and sizes["relu3_4"] == (56, 56, 4)
    assert sizes["relu5_4"] == (14, 14, 16) and sizes["pool5"] == (7, 7, 32)


def test_cli_layers_table_and_backbone(backbone_file):
    res = run_cli("layers", "--arch", "vgg19", "--pooling", "none", "--size", "512")
    assert res.returncode == 0, res.stderr
    assert "relu5_4" in res.stdout and "512x512" in res.stdout and "compute of max" in res.stdout
    res = run_cli("layers", "--backbone", f"{backbone_file}:build", "--size", "32", "--json")
    assert res.returncode == 0, res.stderr
    assert [r["name"] for r in json.loads(res.stdout)][:3] == ["c1", "r1", "p1"]


def test_cli_layers_avg_rescale_shows_each_pools_calibrated_factor(backbone_file):
    spec = f"{backbone_file}:build"
    res = run_cli("layers", "--backbone", spec, "--size", "32", "--pooling", "avg",
                  "--avg-rescale")
    assert res.returncode == 0, res.stderr
    fx = FeatureExtractor.from_options(CoreOptions.from_dict(
        {"backbone": spec, "pooling": "avg", "avg_rescale": True}))
    assert set(fx.avg_scales) == {"p1", "p2"}
    rows = {line.split()[1]: line for line in res.stdout.splitlines() if line.count("│") > 2}
    for name, scale in fx.avg_scales.items():
        assert f"x{scale:.3f}" in rows[name], rows[name]
    plain = run_cli("layers", "--backbone", spec, "--size", "32", "--pooling", "avg")
    assert plain.returncode == 0 and f"x{fx.avg_scales['p1']:.3f}" not in plain.stdout


@pytest.mark.parametrize("size, fragments", [
    ("16", ["too small from pool5", "pool5 needs at least 32x32 px"]),
    ("8", ["too small from pool4", "pool4 needs at least 16x16 px", "pool5 (the deepest) 32x32"]),
    ("224", []),
])
def test_cli_layers_notes_the_first_layer_with_no_output(size, fragments):
    res = run_cli("layers", "--size", size)
    assert res.returncode == 0, res.stderr
    text = " ".join(res.stdout.split())  # rich wraps long lines
    assert ("note:" in text) == bool(fragments), text[-300:]
    for fragment in fragments:
        assert fragment in text


def test_cli_errors_are_one_line_without_traceback():
    res = run_cli("layers", "--arch", "vgg99")
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0 and "vgg99" in res.stderr
    res = run_cli("--version")
    assert res.returncode == 0 and res.stdout.startswith("artconv ")


def test_device_resolution():
    from artconv.device import resolve_device, resolve_precision

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ArtconvError, match="--device cuda: CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ArtconvError, match="--device 'tpu'"):
        resolve_device("tpu")
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cpu")) in ("fp32", "bf16")


def test_sequential_subclass_children_become_layers():
    class Net(nn.Sequential):
        pass

    net = Net(OrderedDict([("a", nn.Conv2d(3, 4, 1)), ("b", nn.ReLU())]))
    assert FeatureExtractor(net).layer_names == ["a", "b"]


def test_options_replace_none_keeps_required_fields():
    opts = CoreOptions(seed=5)
    assert opts.replace(seed=None, pooling=None).seed == 5
    assert opts.replace(backbone=None).backbone is None  # optional fields may be reset


def test_avg_rescale_needs_avg_pooling():
    with pytest.raises(ArtconvError, match="--avg-rescale: only applies to --pooling avg"):
        CoreOptions(avg_rescale=True, pooling="max").validated()
    assert CoreOptions(avg_rescale=True, pooling="avg").validated().avg_rescale
