"""`artconv style` end to end: outputs, recipes, one-line errors, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from artconv.cli import main
from artconv.io.images import load_image, read_recipe
from tests.conftest import make_image

ARTCONV = Path(sys.executable).parent / "artconv"


@pytest.fixture
def files(tmp_path, backbone_file) -> dict[str, Path]:
    return {"content": make_image(tmp_path / "content.png"),
            "style": make_image(tmp_path / "style.png", (40, 40), seed=1),
            "style2": make_image(tmp_path / "wave.png", (40, 40), seed=2),
            "backbone": backbone_file}


def net_args(files: dict[str, Path], size: int = 64, iterations: int = 3) -> list[str]:
    return ["--backbone", f"{files['backbone']}:build", "--content-layers", "r3",
            "--style-layers", "r1,r2,r3", "-s", str(size), "-i", str(iterations),
            "--precision", "fp32", "--device", "cpu"]


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def test_end_to_end_default_output_in_current_dir(files, tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    proc = subprocess.run([str(ARTCONV), "style", str(files["content"]), str(files["style"]),
                           *net_args(files), "-q"], cwd=workdir, capture_output=True,
                          text=True, env=subprocess_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = workdir / "content_style.png"
    assert load_image(out).shape == (3, 53, 64)
    recipe = read_recipe(out)
    assert recipe["engine"] == "style" and recipe["options"]["iterations"] == [3]
    assert recipe["loss_weights"]["kind"] == "torchvision"
    assert recipe["inputs"] == [str(files["content"]), str(files["style"])]


def test_output_json_blend_and_save_every(files, tmp_path, capsys):
    out = tmp_path / "out" / "result.png"
    code, stdout, _ = run_cli(["style", str(files["content"]), str(files["style"]),
                               str(files["style2"]), *net_args(files, 48, 4), "-o", str(out),
                               "--blend", "0.7,0.3", "--save-every", "2", "--json"], capsys)
    assert code == 0
    data = json.loads(stdout)
    assert data["output"] == str(out) and (data["width"], data["height"]) == (48, 40)
    assert set(data["losses"]) == {"content", "style", "tv", "loss"}
    assert read_recipe(out)["options"]["blend"] == [0.7, 0.3]
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "result.png", "result_00002.png", "result_00004.png"]


def test_help_is_generated_from_the_options(capsys):
    code, stdout, _ = run_cli(["style", "--help"], capsys)
    assert code == 0
    for flag in ("--style-loss", "--preserve-colors", "--blend", "--scales", "--min-scale",
                 "--avg-decay", "--tv-loss", "--save-every", "--preset", "--pooling"):
        assert flag in stdout


def test_short_s_is_size_in_batch_style_too(capsys):
    """`-s` is --size everywhere; `batch style` used it for --styles as well (two options,
    one flag)."""
    import re

    code, stdout, _ = run_cli(["batch", "style", "--help"], capsys)
    assert code == 0
    short = re.compile(r"(?<![-\w])-s\b")
    size = [line for line in stdout.splitlines() if re.search(r"--size\b", line)]
    styles = [line for line in stdout.splitlines() if re.search(r"--styles\b", line)]
    assert styles and not any(short.search(line) for line in styles), styles
    assert any(short.search(line) for line in size), size


def _assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def test_missing_style_file(files, tmp_path, capsys):
    code, _, err = run_cli(["style", str(files["content"]), str(tmp_path / "nope.jpg"),
                            *net_args(files)], capsys)
    _assert_one_line_error(code, err, "nope.jpg", "no such file")


def test_not_an_image(files, tmp_path, capsys):
    fake = tmp_path / "notes.png"
    fake.write_text("not a picture")
    code, _, err = run_cli(["style", str(files["content"]), str(fake), *net_args(files)],
                           capsys)
    _assert_one_line_error(code, err, "notes.png", "not an image")


@pytest.mark.parametrize(("blend", "fragment"), [("0.7", "--blend: 1 weights for 2"),
                                                 ("0.7,x", "--blend"),
                                                 ("0,0", "at least one weight")])
def test_bad_blend(files, capsys, blend, fragment):
    code, _, err = run_cli(["style", str(files["content"]), str(files["style"]),
                            str(files["style2"]), *net_args(files), "--blend", blend], capsys)
    _assert_one_line_error(code, err, fragment)


def test_unknown_and_malformed_presets(files, tmp_path, capsys):
    code, _, err = run_cli(["style", str(files["content"]), str(files["style"]),
                            *net_args(files), "--preset", "nope"], capsys)
    _assert_one_line_error(code, err, "unknown preset 'nope'")
    bad = tmp_path / "bad.toml"
    bad.write_text('engine = "style"\n[options]\nstyle_wieght = 3\n')
    code, _, err = run_cli(["style", str(files["content"]), str(files["style"]),
                            *net_args(files), "--preset", str(bad)], capsys)
    _assert_one_line_error(code, err, str(bad), "style_wieght")


def test_refuses_to_overwrite_an_input(files, capsys):
    code, _, err = run_cli(["style", str(files["content"]), str(files["style"]),
                            *net_args(files), "-o", str(files["style"])], capsys)
    _assert_one_line_error(code, err, "--output", "is an input file; refusing to overwrite")


def test_preset_values_and_explicit_flags(files, tmp_path, capsys):
    out = tmp_path / "p.png"
    code, _, _ = run_cli(["style", str(files["content"]), str(files["style"]),
                          *net_args(files, 32, 2), "--preset", "hq", "--scales", "24,32",
                          "-o", str(out), "-q"], capsys)
    assert code == 0
    options = read_recipe(out)["options"]
    assert (options["optimizer"], options["style_loss"]) == ("adam", "w2")  # from the preset
    assert options["iterations"] == [2] and options["scales"] == [24, 32]  # explicit flags


def test_ctrl_c_saves_current_image(files, tmp_path):
    out = tmp_path / "live.png"
    proc = subprocess.Popen([str(ARTCONV), "style", str(files["content"]), str(files["style"]),
                             *net_args(files, 48, 100000), "--save-every", "1", "-o",
                             str(out)], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=subprocess_env())
    try:
        deadline = time.monotonic() + 90
        while not (tmp_path / "live_00002.png").exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the run never got going"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert load_image(out).shape == (3, 40, 48)
    assert read_recipe(out)["interrupted"] is True
