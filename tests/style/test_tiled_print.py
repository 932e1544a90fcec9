"""Print sizes from the command line: --tile, the print preset, --resume from the last
finished scale, 16-bit PNG and TIFF output."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch

from artconv.errors import ArtconvError
from artconv.io.images import check_depth, read_recipe, save_image
from artconv.presets import options_for
from tests.conftest import make_image, run_cli


@pytest.fixture
def files(tmp_path, backbone_file) -> dict[str, Path]:
    return {"content": make_image(tmp_path / "content.png", (60, 44)),
            "style": make_image(tmp_path / "style.png", (40, 40), seed=1),
            "backbone": backbone_file}


def args(files: dict[str, Path], *extra: str) -> list[str]:
    return ["style", str(files["content"]), str(files["style"]), "--backbone",
            f"{files['backbone']}:build", "--content-layers", "r3", "--style-layers",
            "r1,r2,r3", "-i", "2", "--precision", "fp32", "--device", "cpu", *extra]


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_output_keeps_16_bits_and_the_recipe(tmp_path, suffix):
    cv2 = pytest.importorskip("cv2")
    image = torch.rand(3, 9, 13)
    path = save_image(image, tmp_path / f"out{suffix}", recipe={"k": 1}, depth=16)
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # BGR, uint16
    assert pixels.dtype.name == "uint16" and pixels.shape == (9, 13, 3)
    want = image.mul(65535).round().permute(1, 2, 0).flip(-1).numpy()
    assert abs(pixels.astype("float64") - want).max() == 0
    assert read_recipe(path) == {"k": 1}


def test_16_bit_needs_png_or_tiff():
    with pytest.raises(ArtconvError, match=r"out.jpg: 16 bits .* \.png or \.tif"):
        check_depth("out.jpg", 16)
    check_depth("out.jpg", 8)


def test_the_print_preset_goes_coarse_to_fine_tiled_where_needed():
    opts = options_for("style", "print", {"size": 7680})
    assert opts.tile == "auto" and opts.bit_depth == 16 and opts.optimizer == "adam"
    ladder = opts.ladder()
    assert ladder[0] >= 512 and ladder[-1] == 7680
    steps = [opts.iterations_at(i) for i in range(len(ladder))]
    assert steps == sorted(steps, reverse=True) and steps[0] == 1000


def test_tile_from_the_command_line_is_recorded(files, tmp_path, capsys):
    out = tmp_path / "tiled.png"
    code, stdout, _ = run_cli(args(files, "-s", "60", "--tile", "16", "--json", "-o",
                                   str(out)), capsys)
    assert code == 0, stdout
    assert json.loads(stdout)["width"] == 60
    assert read_recipe(out)["options"]["tile"] == 16


def test_resume_starts_after_the_last_finished_scale(files, tmp_path, capsys):
    out = tmp_path / "r.png"
    common = args(files, "-s", "60", "--scales", "32,45,60", "--resume", "-o", str(out))
    code, stdout, _ = run_cli(common, capsys)
    assert code == 0, stdout
    kept = {p.name for p in tmp_path.glob("r_scale*.png")}
    assert kept == {"r_scale32.png", "r_scale45.png", "r_scale60.png"}
    assert read_recipe(tmp_path / "r_scale45.png")["scale"] == 45
    # as if the run had stopped during the last scale
    (tmp_path / "r_scale60.png").unlink()
    out.unlink()
    code, stdout, stderr = run_cli(common, capsys)
    assert code == 0, stdout
    assert "--resume: starting after r_scale45.png (scale 2 of 3)" in stdout + stderr
    assert read_recipe(out)["options"]["scales"] == [60]
    assert (tmp_path / "r_scale60.png").is_file()


def test_resume_refuses_scales_of_another_photo_or_weight_and_of_the_wrong_aspect(
        files, tmp_path, capsys):
    # issue 20.4: the scale files record what made them; a run that differs is refused
    out = tmp_path / "r.png"
    resume = ["-s", "48", "--scales", "32,48", "--resume", "-o", str(out)]
    code, _, err = run_cli(args(files, *resume), capsys)
    assert code == 0, err
    (tmp_path / "r_scale48.png").unlink()
    out.unlink()
    kept = {p.name: p.read_bytes() for p in tmp_path.glob("r*.png")}
    other = make_image(tmp_path / "other.png", (60, 44), seed=7)
    for changed, said in [({"content": other}, "input .*other.png is not the file it was "
                                                "made from"),
                          ({}, "it was made with --style-weight")]:
        extra = [] if changed else ["--style-weight", "7"]
        code, _, err = run_cli(args({**files, **changed}, *resume, *extra), capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert re.search(rf"--resume .*r_scale32.png: not from this run \({said}", err), err
        assert {p.name: p.read_bytes() for p in tmp_path.glob("r*.png")} == kept

    # the same photo by another path is the same input
    code, _, err = run_cli(args({**files, "content": Path(os.path.relpath(files["content"]))},
                                *resume), capsys)
    assert code == 0 and "starting after r_scale32.png" in err

    # a last scale of the wrong aspect (its recipe copied over, as a foreign file may be)
    recipe = read_recipe(tmp_path / "r_scale32.png")
    save_image(torch.rand(3, 13, 32), tmp_path / "r_scale32.png", recipe=recipe)
    (tmp_path / "r_scale48.png").unlink()
    code, _, err = run_cli(args(files, *resume), capsys)
    assert code == 2 and "it is 32x13 px, this run's scale is 32x23" in err, err


def test_a_huge_memory_budget_is_a_one_line_refusal(files, capsys):
    # issue 20.11: 1e308 GiB overflowed the tile planner
    code, _, err = run_cli(args(files, "--tile", "auto", "--max-memory", "1e308"), capsys)
    assert code == 2 and "--max-memory 1e+308: must be at most" in err
    assert len(err.strip().splitlines()) == 1
