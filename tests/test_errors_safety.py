"""Issue 15, style/dream/core part: every write checked before work, and hostile inputs
(weights that are no weights, contract-breaking backbones, 1x1 images, huge seeds, nan
options, no command) end as one line naming the file or option, never a traceback."""

from __future__ import annotations

import math
import os
import pickle
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

import artconv.style
from artconv.cli import main
from artconv.deepdream.engine import Dreamer, DreamOptions
from artconv.errors import ArtconvError
from artconv.features import FeatureOptions
from artconv.io.images import load_image, read_recipe
from artconv.nets.extractor import FeatureExtractor, load_backbone
from artconv.nets.tiling import tile_grid
from artconv.nets.weights import read_state_dict
from artconv.options import MAX_SEED, CoreOptions
from artconv.style import StyleOptions, StyleTransfer
from tests.conftest import make_image, tiny_sequential

TINY_STYLE = ["--content-layers", "r3", "--style-layers", "r1,r2,r3", "-s", "32", "-i", "2",
              "--precision", "fp32", "--device", "cpu", "-q"]
TINY_DREAM = ["--layers", "r3", "--octaves", "1", "--steps", "1", "--precision", "fp32",
              "--device", "cpu", "-q"]


def run_main(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    code = done.value.code
    return (code if isinstance(code, int) else 0 if code is None else 1), out, err


def one_line_error(code: int, err: str, *fragments: str) -> str:
    assert code == 2, err
    lines = [line for line in err.splitlines()
             if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def png_named(path: Path) -> Path:
    """A PNG image stored under any name (such as a sidecar's)."""
    return make_image(path.with_name(path.name + ".png"), seed=1).rename(path)


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if an engine is even built: the checks must come before any work."""
    def refuse(*_args, **_kwargs):
        raise AssertionError("the engine was built before the paths were checked")

    monkeypatch.setattr(artconv.style.StyleTransfer, "__init__", refuse)
    monkeypatch.setattr(Dreamer, "__init__", refuse)


# -- item 1: every path style/dream will write is checked before any work ---------------
def test_style_refuses_output_over_the_init_image_before_work(tmp_path, backbone_file,
                                                              capsys, no_work):
    content = make_image(tmp_path / "c.png")
    style = make_image(tmp_path / "s.png", seed=1)
    start = make_image(tmp_path / "start.png", seed=2)
    before = start.read_bytes()
    code, _, err = run_main(["style", content, style, "--backbone", f"{backbone_file}:build",
                             *TINY_STYLE, "--init", start, "-o", start], capsys)
    one_line_error(code, err, "--output", str(start), "is an input file")
    assert start.read_bytes() == before


def test_style_refuses_an_intermediate_over_an_input_before_work(tmp_path, backbone_file,
                                                                  capsys, no_work):
    content = make_image(tmp_path / "out_00002.png")  # what --save-every 2 would write
    style = make_image(tmp_path / "s.png", seed=1)
    code, _, err = run_main(["style", content, style, "--backbone", f"{backbone_file}:build",
                             *TINY_STYLE, "--save-every", "2", "-o", tmp_path / "out.png"],
                            capsys)
    one_line_error(code, err, "--save-every", "out_00002.png", "is an input file")


def test_style_refuses_a_sidecar_over_an_input_and_an_unwritable_folder(
        tmp_path, backbone_file, capsys, no_work):
    content = make_image(tmp_path / "c.png")
    style = png_named(tmp_path / "out.jpg.json")  # an input under the sidecar's name
    code, _, err = run_main(["style", content, style, "--backbone", f"{backbone_file}:build",
                             *TINY_STYLE, "-o", tmp_path / "out.jpg"], capsys)
    one_line_error(code, err, "--output recipe", "out.jpg.json", "is an input file")
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    code, _, err = run_main(["style", content, make_image(tmp_path / "s.png"), "--backbone",
                             f"{backbone_file}:build", *TINY_STYLE, "-o",
                             blocker / "out.png"], capsys)
    one_line_error(code, err, "--output", "notes.txt is not a folder")


def test_dream_refuses_sidecar_frames_and_gif_over_inputs_before_work(tmp_path, backbone_file,
                                                                      capsys, no_work):
    image = make_image(tmp_path / "in.png")
    guide = png_named(tmp_path / "d.jpg.json")
    net = ["--backbone", f"{backbone_file}:build", *TINY_DREAM]
    code, _, err = run_main(["dream", image, *net, "--guide", guide, "-o", tmp_path / "d.jpg"],
                            capsys)
    one_line_error(code, err, "--output recipe", "d.jpg.json", "is an input file")
    # -o names the frames folder: here it is the input file itself
    code, _, err = run_main(["dream", image, *net, "--frames", "2", "-o", image], capsys)
    one_line_error(code, err, "--output", "frame_000001.png", "in.png is not a folder")
    gif_input = make_image(tmp_path / "zoom.gif", seed=2)
    code, _, err = run_main(["dream", gif_input, *net, "--frames", "2", "--gif", "-o",
                             tmp_path / "zoom"], capsys)
    one_line_error(code, err, "--gif", "zoom.gif", "is an input file")
    assert not (tmp_path / "zoom").exists()


def test_dream_frames_default_folder_is_checked_too(tmp_path, backbone_file, capsys, no_work):
    image = make_image(tmp_path / "in.png")
    (tmp_path / "in_dream_frames").write_text("a file where the frames folder goes")
    code, _, err = run_main(["dream", image, "--backbone", f"{backbone_file}:build",
                             *TINY_DREAM, "--frames", "2"], capsys)
    one_line_error(code, err, "--frames", "in_dream_frames is not a folder")


# -- item 5: files that are not weights, and pickles that would run code ---------------
class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))  # print is patched once Ray is imported


@pytest.mark.parametrize("name, data, kind", [
    ("notes.txt", b"just some text\nwith lines\n", "it is text"),
    ("config.json", b'{"features.0.weight": [1, 2, 3]}', "it is JSON"),
    ("noise.bin", bytes(range(256)) * 8 + os.urandom(512), ""),
    ("empty.pth", b"", "the file is empty"),
    ("list.pth", pickle.dumps([1, 2, 3], protocol=5), "a pickle, but not of torch tensors"),
])
def test_files_that_are_not_weights_say_so(tmp_path, name, data, kind):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ArtconvError) as err:
        read_state_dict(path)
    message = str(err.value)
    assert message.startswith(f"{path}: not a torch or safetensors weights file")
    assert kind in message and "run code" not in message and "\n" not in message


def test_an_image_as_weights_is_not_reported_as_code(tmp_path):
    path = make_image(tmp_path / "photo.png")
    with pytest.raises(ArtconvError, match=r"photo.png: not a torch or safetensors weights "
                                           r"file \(it is a PNG image\)"):
        read_state_dict(path)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_pickles_that_would_run_code_are_refused_by_name(tmp_path, capsys, protocol):
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"features.0.weight": _Evil()}, protocol=protocol))
    with pytest.raises(ArtconvError, match=r"evil.pth: refused: it would run code when loaded "
                                           r"\((posix|nt)\.system\)"):
        read_state_dict(path)
    assert "pwned" not in capsys.readouterr().out


def test_zip_checkpoint_that_would_run_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"w": _Evil()}, path)
    with pytest.raises(ArtconvError, match="evil.pt: refused: it would run code"):
        read_state_dict(path)
    other = tmp_path / "archive.pth"
    with zipfile.ZipFile(other, "w") as fh:
        fh.writestr("readme.txt", "no tensors here")
    with pytest.raises(ArtconvError, match="not a torch or safetensors weights file .*zip"):
        read_state_dict(other)
    assert "pwned" not in capsys.readouterr().out


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_named_pipe_as_weights_is_refused_without_waiting(tmp_path):
    import subprocess

    for name in ("pipe.pth", "pipe.safetensors"):
        fifo = tmp_path / name
        os.mkfifo(fifo)
        code = ("import warnings; warnings.simplefilter('ignore')\n"
                "from artconv.errors import ArtconvError\n"
                "from artconv.nets.weights import resolve\n"
                f"try:\n    resolve('vgg19', {str(fifo)!r})\n"
                "except ArtconvError as exc:\n    print(exc)\n")
        try:
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                  text=True, timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"reading {name} waited for a writer forever")
        assert f"{name}: is a named pipe" in proc.stdout, proc.stdout + proc.stderr


def test_cli_text_file_as_weights_is_one_line(tmp_path, capsys):
    weights = tmp_path / "weights.txt"
    weights.write_text("hello\n")
    code, _, err = run_main(["style", make_image(tmp_path / "c.png"),
                             make_image(tmp_path / "s.png", seed=1), "--weights", weights,
                             "-s", "32", "-i", "1", "--device", "cpu", "-q", "-o",
                             tmp_path / "o.png"], capsys)
    one_line_error(code, err, "weights.txt: not a torch or safetensors weights file")


# -- item 6: a 1x1 content image with L-BFGS; images too small name the file ------------
def test_one_pixel_content_with_lbfgs_and_content_init(tmp_path):
    tiny = make_image(tmp_path / "dot.png", (1, 1))
    content = load_image(tiny)
    st = StyleTransfer(StyleOptions(size=32, iterations=(2,), optimizer="lbfgs",
                                    init="content", content_layers=("r3",),
                                    style_layers=("r1", "r3"), precision="fp32",
                                    device="cpu"), extractor=FeatureExtractor(tiny_sequential()))
    out = st.run(content, [load_image(make_image(tmp_path / "s.png", seed=1))])
    assert out.shape == (1, 3, 32, 32) and bool(out.isfinite().all())


def test_cli_one_pixel_content_writes_its_output(tmp_path, backbone_file, capsys):
    out = tmp_path / "o.png"
    code, _, err = run_main(["style", make_image(tmp_path / "dot.png", (1, 1)),
                             make_image(tmp_path / "s.png", seed=1), "--backbone",
                             f"{backbone_file}:build", *TINY_STYLE, "-o", out], capsys)
    assert code == 0, err
    assert read_recipe(out)["engine"] == "style"


@pytest.mark.parametrize("args, fragments", [
    (["-s", "16"], ["c.png: 16x13 px at --size 16", "relu5_1", "16x16 px"]),
    # The content is read at the output size (32 px: 32x27), as a batch reads it, and each
    # scale is fitted from that: 16x14 here, where 40x48 fitted directly gives 16x13.
    (["--scales", "16,32"], ["c.png: 16x14 px at --scales 16", "relu5_1"]),
    (["-s", "32", "--style-scale", "0.2"], ["s.png: 6x6 px at --style-scale 0.2 of 32 px",
                                            "relu5_1"]),
])
def test_style_image_too_small_names_file_and_option(tmp_path, capsys, args, fragments):
    code, _, err = run_main(["style", make_image(tmp_path / "c.png"),
                             make_image(tmp_path / "s.png", (40, 40), seed=1), "--weights",
                             "random", "-i", "1", "--device", "cpu", "-q", "-o",
                             tmp_path / "o.png", *args], capsys)
    one_line_error(code, err, "is too small for layer", *fragments)


def test_dream_image_too_small_names_file_and_option(tmp_path, backbone_file, capsys):
    net = ["--backbone", f"{backbone_file}:build", *TINY_DREAM]
    code, _, err = run_main(["dream", make_image(tmp_path / "dot.png", (1, 1)), *net,
                             "-o", tmp_path / "o.png"], capsys)
    one_line_error(code, err, "dot.png: 1x1 px is too small for layer r3", "4x4 px")
    code, _, err = run_main(["dream", make_image(tmp_path / "c.png"), *net, "-s", "2",
                             "-o", tmp_path / "o.png"], capsys)
    one_line_error(code, err, "c.png: 2x2 px at --size 2 is too small for layer r3")


# -- item 7: backbones whose layers break the NCHW contract ---------------------------
BAD_BACKBONES = '''
import sys
from collections import OrderedDict
from torch import nn

class Pair(nn.Module):
    def forward(self, x):
        return x, x

class Boom(nn.Module):
    def forward(self, x):
        raise ValueError("kaboom")

def tup():
    return nn.Sequential(OrderedDict([("c1", nn.Conv2d(3, 8, 3, padding=1)),
                                      ("pair", Pair()), ("r1", nn.ReLU())]))

def flat():
    return nn.Sequential(OrderedDict([("c1", nn.Conv2d(3, 8, 3, padding=1)),
                                      ("flat", nn.Flatten()), ("fc", nn.Linear(8, 2))]))

def boom():
    return nn.Sequential(OrderedDict([("c1", nn.Conv2d(3, 8, 3, padding=1)),
                                      ("boom", Boom())]))

def pooled_tuple():
    return nn.Sequential(OrderedDict([("c1", nn.Conv2d(3, 8, 3, padding=1)),
                                      ("r1", nn.ReLU()), ("p1", nn.MaxPool2d(2)),
                                      ("pair", Pair()), ("r2", nn.ReLU())]))

def nested():
    block = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 1))
    return nn.Sequential(OrderedDict([("block", block), ("r", nn.ReLU())]))

def bye():
    sys.exit(0)
'''


@pytest.fixture
def bad_backbones(tmp_path) -> Path:
    path = tmp_path / "bad.py"
    path.write_text(BAD_BACKBONES)
    return path


@pytest.mark.parametrize("func, bad, after, fragment", [
    ("tup", "pair", "r1", "layer 'pair' returned a tuple of 2"),
    ("flat", "flat", "fc", "layer 'flat' returned a 2-D tensor of shape (1, 8192)"),
    ("boom", "boom", None, "layer 'boom' failed on a 32x32 px test image (ValueError: kaboom)"),
])
def test_layers_breaking_the_contract_are_refused_by_name(bad_backbones, func, bad, after,
                                                          fragment):
    spec = f"{bad_backbones}:{func}"
    fx = FeatureExtractor.from_options(CoreOptions(backbone=spec))
    assert fx(torch.rand(1, 3, 8, 8), ["c1"])["c1"].shape == (1, 8, 8, 8)  # before it: fine
    assert [i.name for i in fx.describe(8)] == ["c1"]
    for name in filter(None, (bad, after)):
        with pytest.raises(ArtconvError) as err:
            fx(torch.rand(1, 3, 8, 8), [name])
        message = str(err.value)
        assert message.startswith(f"--backbone {spec}: layer {name!r} cannot be used: ")
        assert fragment in message and f"use a layer before {bad!r}" in message


def test_a_backbone_whose_first_layer_breaks_the_contract_is_refused(tmp_path):
    path = tmp_path / "flat.py"
    path.write_text("from torch import nn\n"
                    "def build():\n    return nn.Sequential(nn.Flatten(), nn.ReLU())\n")
    with pytest.raises(ArtconvError, match=r"flat.py:build: layer '0' returned a 2-D tensor"
                                           r".*no layer can be used"):
        FeatureExtractor.from_options(CoreOptions(backbone=f"{path}:build"))


@pytest.mark.parametrize("command", ["style", "dream", "features"])
def test_cli_layer_after_a_tuple_is_one_line_in_every_engine(tmp_path, bad_backbones, capsys,
                                                             command):
    spec = f"{bad_backbones}:tup"
    image = make_image(tmp_path / "c.png")
    args = {"style": ["style", image, make_image(tmp_path / "s.png"), "--content-layers", "r1",
                      "--style-layers", "c1", "-s", "32", "-i", "1", "-o", tmp_path / "o.png"],
            "dream": ["dream", image, "--layers", "r1", "-o", tmp_path / "o.png"],
            "features": ["features", image, "--layers", "c1,r1", "-o", tmp_path / "o.npy"],
            }[command]
    code, _, err = run_main([*args, "--backbone", spec, "--device", "cpu", "-q"], capsys)
    one_line_error(code, err, "layer 'r1' cannot be used: layer 'pair' returned a tuple")


def test_cli_layers_lists_the_usable_layers_and_names_the_first_unusable(bad_backbones,
                                                                         capsys):
    import json

    code, out, err = run_main(["layers", "--backbone", f"{bad_backbones}:tup", "--json"],
                              capsys)
    assert code == 0, err
    assert [(r["name"], r["channels"]) for r in json.loads(out)] == [("c1", 8)]
    assert "layer 'pair' returned a tuple of 2" in err and "1 layer(s) after it" in err
    code, out, err = run_main(["layers", "--backbone", f"{bad_backbones}:flat"], capsys)
    assert code == 0, err
    text = " ".join(out.split())
    assert "note: layer 'flat' returned a 2-D tensor" in text and "cannot be used" in text
    assert " fc " not in text and " flat " not in text.split("note:")[0]


def test_layers_shows_the_measured_channels_of_a_nested_block(bad_backbones, capsys):
    import json

    code, out, err = run_main(["layers", "--backbone", f"{bad_backbones}:nested", "--size",
                               "16", "--json"], capsys)
    assert code == 0, err
    assert {r["name"]: r["channels"] for r in json.loads(out)} == {"block": 12, "r": 12}


def test_avg_rescale_stops_before_an_unusable_layer(bad_backbones):
    fx = FeatureExtractor.from_options(CoreOptions(backbone=f"{bad_backbones}:pooled_tuple",
                                                   pooling="avg", avg_rescale=True))
    assert set(fx.avg_scales) == {"p1"}


# -- item 11: a backbone that calls sys.exit -------------------------------------------
def test_backbone_calling_sys_exit_is_an_error_naming_file_and_function(tmp_path,
                                                                         bad_backbones):
    spec = f"{bad_backbones}:bye"
    with pytest.raises(ArtconvError, match=r"bad.py:bye: bye\(\) failed \(it called "
                                           r"sys.exit\(0\)\)"):
        load_backbone(spec)
    at_import = tmp_path / "quits.py"
    at_import.write_text("import sys\nsys.exit(3)\n")
    with pytest.raises(ArtconvError, match=r"quits.py:build: importing .*quits.py failed "
                                           r"\(it called sys.exit\(3\)\)"):
        load_backbone(f"{at_import}:build")


@pytest.mark.parametrize("command", ["layers", "style"])
def test_cli_backbone_sys_exit_does_not_exit_zero(tmp_path, bad_backbones, capsys, command):
    spec = f"{bad_backbones}:bye"
    out = tmp_path / "o.png"
    args = (["layers", "--backbone", spec] if command == "layers" else
            ["style", make_image(tmp_path / "c.png"), make_image(tmp_path / "s.png"),
             "--backbone", spec, "-s", "32", "-i", "1", "-q", "-o", out])
    code, _, err = run_main(args, capsys)
    one_line_error(code, err, f"{spec}:", "sys.exit(0)")
    assert not out.exists()


# -- item 8: seeds are bounded in the option record ------------------------------------
@pytest.mark.parametrize("command", ["style", "dream", "features"])
def test_huge_seed_is_one_line_naming_the_option(tmp_path, capsys, command, no_work):
    image = make_image(tmp_path / "c.png")
    args = {"style": ["style", image, make_image(tmp_path / "s.png", seed=1)],
            "dream": ["dream", image],
            "features": ["features", image]}[command]
    code, _, err = run_main([*args, "--weights", "random", "--seed",
                             "99999999999999999999999", "-o", tmp_path / "o.npy"
                             if command == "features" else tmp_path / "o.png"], capsys)
    one_line_error(code, err, "--seed 99999999999999999999999: must be at most",
                   str(MAX_SEED))


def test_largest_seed_runs():
    opts = DreamOptions(layers=("r3",), octaves=1, steps=1, tile=0, device="cpu",
                        precision="fp32", seed=MAX_SEED, frames=2)
    dreamer = Dreamer(opts, extractor=FeatureExtractor(tiny_sequential()))
    image = torch.rand(3, 16, 16)
    assert dreamer.run(image, frame=2).shape == (3, 16, 16)
    assert CoreOptions.from_dict({"seed": MAX_SEED}).seed == MAX_SEED
    with pytest.raises(ArtconvError, match="--seed -1: must be at least 0"):
        CoreOptions.from_dict({"seed": -1})


# -- item 15: nan/inf options fail up front; size errors name the option; no command -------
@pytest.mark.parametrize("cls, name, value", [
    (StyleOptions, "style_weight", math.nan), (StyleOptions, "lr", math.inf),
    (StyleOptions, "content_weight", -math.inf), (StyleOptions, "blend", (0.5, math.nan)),
    (StyleOptions, "style_scale", math.inf), (DreamOptions, "zoom", math.nan),
    (DreamOptions, "step_size", math.inf), (DreamOptions, "layer_weights", (math.nan,)),
    (FeatureOptions, "max_memory", math.inf),
])
def test_non_finite_numbers_are_refused_by_every_option_record(cls, name, value):
    flag = "--" + name.replace("_", "-")
    for source in (value, str(value[-1] if isinstance(value, tuple) else value)):
        with pytest.raises(ArtconvError, match=f"{flag} .*: must be a finite number"):
            cls.from_dict({name: source}, source="preset.toml")


@pytest.mark.parametrize("args, message", [
    (["--style-weight", "nan"], "--style-weight nan: must be a finite number"),
    (["--lr", "inf"], "--lr inf: must be a finite number"),
    (["--tv-weight", "-inf"], "--tv-weight -inf: must be a finite number"),
])
def test_cli_non_finite_option_fails_before_work(tmp_path, backbone_file, capsys, no_work,
                                                 args, message):
    code, _, err = run_main(["style", make_image(tmp_path / "c.png"),
                             make_image(tmp_path / "s.png", seed=1), "--backbone",
                             f"{backbone_file}:build", *TINY_STYLE, "-o", tmp_path / "o.png",
                             *args], capsys)
    one_line_error(code, err, message)


def test_whole_numbers_beyond_64_bits_are_refused_for_every_option():
    with pytest.raises(ArtconvError, match="--jitter 99999999999999999999: must be at most"):
        DreamOptions.from_dict({"jitter": 10**20 - 1})


def test_tile_smaller_than_the_network_sees_names_the_option():
    with pytest.raises(ArtconvError, match=r"--tile 2: smaller than 4 px, the smallest input "
                                           r"r3 can see"):
        Dreamer(DreamOptions(layers=("r3",), tile=2, device="cpu"),
                extractor=FeatureExtractor(tiny_sequential()))


def test_sliver_tiles_without_margin_get_enough_context():
    # 42 px in 4 px cores leaves a 2 px sliver; r3 needs 4 px, so its tile looks inward.
    for tile in tile_grid(42, 30, 4, margin=0, align=4, min_side=4):
        (top, bottom, left, right) = tile.ext
        assert bottom - top >= 4 and right - left >= 4
        assert top <= tile.core[0] and tile.core[1] <= bottom
    d = Dreamer(DreamOptions(layers=("r3",), octaves=1, steps=1, tile=4, tile_margin=0,
                             device="cpu", precision="fp32"),
                extractor=FeatureExtractor(tiny_sequential()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "computes each pixel ~N times"
        assert d.run(torch.rand(3, 42, 30)).shape == (3, 42, 30)


def test_no_command_prints_help_without_an_empty_error_line(capsys):
    code, out, err = run_main([], capsys)
    assert code in (0, 2)
    assert "Usage" in out + err and "error:" not in out + err
    code, out, err = run_main(["batch"], capsys)
    assert "Usage" in out + err and "error:" not in out + err


def test_no_command_in_a_subprocess_has_no_error_line():
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "artconv"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode in (0, 2)
    assert "Usage" in proc.stdout + proc.stderr and "error:" not in proc.stderr
