"""`artconv dream` end to end at 64 px with a tiny own backbone (no downloads)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from artconv.cli import main
from artconv.deepdream.engine import Dreamer
from artconv.io.images import read_recipe
from tests.conftest import make_image

ARTCONV = Path(sys.executable).with_name("artconv")
FAST = ["--layers", "r3", "--octaves", "2", "--steps", "2", "--device", "cpu",
        "--precision", "fp32"]


def run_main(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as done:
        main(args)
    return int(done.value.code or 0), capsys.readouterr().err


@pytest.fixture
def image64(tmp_path) -> Path:
    return make_image(tmp_path / "in.png", (64, 48))


def test_cli_writes_default_output_with_recipe(image64, backbone_file):
    proc = subprocess.run([str(ARTCONV), "dream", str(image64), "--backbone",
                           f"{backbone_file}:build", *FAST, "-q"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = image64.with_name("in_dream.png")
    assert Image.open(out).size == (64, 48)
    recipe = read_recipe(out)
    assert recipe["engine"] == "dream" and recipe["options"]["layers"] == ["r3"]
    assert recipe["inputs"] == [str(image64)]


@pytest.mark.parametrize("args, message", [
    (["--layers", "relu9"], "unknown layer 'relu9'"),
    (["--layers", "r3", "--channels", "r3:3,99"], "channel 99 is out of range for r3"),
    (["--layers", "r3", "--guide", "missing.jpg"], "--guide missing.jpg: no such file"),
    (["--layers", "r3", "-o", "out.bmp"], "unsupported output format"),
])
def test_cli_bad_input_is_one_line(image64, backbone_file, capsys, args, message):
    code, err = run_main(["dream", str(image64), "--backbone", f"{backbone_file}:build",
                          "-q", *args], capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cli_refuses_to_overwrite_the_input(image64, backbone_file, capsys):
    code, err = run_main(["dream", str(image64), "--backbone", f"{backbone_file}:build",
                          *FAST, "-q", "-o", str(image64)], capsys)
    assert code == 2 and "input" in err


def test_cli_short_s_is_size(image64, backbone_file, capsys, tmp_path):
    out = tmp_path / "small.png"
    code, err = run_main(["dream", str(image64), "--backbone", f"{backbone_file}:build",
                          *FAST, "-q", "-s", "32", "-o", str(out)], capsys)
    assert code == 0, err
    assert Image.open(out).size == (32, 24) and read_recipe(out)["options"]["size"] == 32


def test_cli_frames_and_gif(image64, backbone_file, capsys, tmp_path):
    folder = tmp_path / "zoom"
    code, err = run_main(["dream", str(image64), "--backbone", f"{backbone_file}:build",
                          *FAST, "--frames", "3", "--gif", "-o", str(folder), "-q"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in folder.iterdir()) == [
        "frame_000001.png", "frame_000002.png", "frame_000003.png"]
    assert Image.open(tmp_path / "zoom.gif").n_frames == 3
    assert read_recipe(folder / "frame_000002.png")["frame"] == 2


def test_cli_ctrl_c_saves_and_exits_130(image64, backbone_file, capsys, monkeypatch):
    real_step, calls = Dreamer.step, []

    def step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(Dreamer, "step", step)
    out = image64.with_name("partial.png")
    code, _ = run_main(["dream", str(image64), "--backbone", f"{backbone_file}:build",
                        *FAST, "-o", str(out), "-q"], capsys)
    assert code == 130
    assert Image.open(out).size == (64, 48)
    assert read_recipe(out)["interrupted"] is True


def test_cli_preset_applies_and_flags_override(image64, capsys):
    out = image64.with_name("soft.png")
    code, err = run_main(["dream", str(image64), "--preset", "dream-soft", "--weights",
                          "random", "--steps", "1", "--octaves", "1", "--device", "cpu",
                          "--precision", "fp32", "-o", str(out), "-q"], capsys)
    assert code == 0, err
    options = read_recipe(out)["options"]
    assert options["layers"] == ["relu3_3"] and options["lap_levels"] == 4
    assert options["steps"] == 1
