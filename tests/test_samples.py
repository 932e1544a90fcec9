"""Smoke tests of the scripts in samples/: each runs in-process at a tiny size on the tiny
random backbone (or random VGG) and must write what it promises, with the expected geometry."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

from tests.conftest import SHARED, make_image

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def load_sample(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"sample_{name}", SAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_sample_has_docstring_example_and_main():
    scripts = sorted(SAMPLES.glob("*.py"))
    assert len(scripts) >= 4
    index = (SAMPLES / "README.md").read_text()
    for path in scripts:
        module = load_sample(path.stem)
        assert f"samples/{path.name}" in (module.__doc__ or ""), path.name
        assert callable(module.main), path.name
        assert path.name in index, path.name
        assert len(path.read_text().splitlines()) <= 90, path.name


def test_style_sweep_grid(tmp_path, backbone_file):
    content = make_image(tmp_path / "content.png", (48, 40))
    style = make_image(tmp_path / "style.png", (40, 40), seed=1)
    common = [str(content), str(style), "--backbone", f"{backbone_file}:build", "--size", "32",
              "--iterations", "2", "--content-layers", "r2", "--style-layers", "r1,r2"]
    sweep = load_sample("style_sweep")
    sweep.main([*common, "-o", str(tmp_path / "sweep.png"), "--style-weights", "1e2,1e4,1e6"])
    # 48x40 at longest side 32 -> 32x27 per cell, three cells in one row
    with Image.open(tmp_path / "sweep.png") as grid:
        assert grid.size == (3 * 32, 27)
        cells = [grid.crop((i * 32, 0, i * 32 + 32, 20)).tobytes() for i in range(3)]
    assert len(set(cells)) == 3  # the weights made different pictures
    sweep.main([*common, "-o", str(tmp_path / "wrapped.png"), "--style-weights", "1,10,100",
                "--columns", "2", "--no-labels"])
    with Image.open(tmp_path / "wrapped.png") as grid:
        assert grid.size == (2 * 32, 2 * 27)


def test_dream_zoom_gif_and_resume(tmp_path, backbone_file):
    image = make_image(tmp_path / "photo.png", (48, 40))
    gif = tmp_path / "anim" / "zoom.gif"
    args = [str(image), "-o", str(gif), "--backbone", f"{backbone_file}:build", "--size", "40",
            "--layers", "r2", "--octaves", "1", "--steps", "1", "--zoom", "1.1"]
    dream_zoom = load_sample("dream_zoom")
    dream_zoom.main([*args, "--frames", "3"])
    folder = tmp_path / "anim" / "zoom"
    assert sorted(p.name for p in folder.iterdir()) == [f"frame_00000{k}.png" for k in (1, 2, 3)]
    with Image.open(gif) as animation:
        assert animation.n_frames == 3 and animation.size == (40, 33)
    kept = {p: p.stat().st_mtime_ns for p in folder.iterdir()}
    dream_zoom.main([*args, "--frames", "4"])  # continues: only frame 4 is new
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    with Image.open(gif) as animation:
        assert animation.n_frames == 4


def test_feature_gallery_rows_by_layers(tmp_path, backbone_file):
    image = make_image(tmp_path / "photo.png", (48, 40))
    out = tmp_path / "gallery.png"
    load_sample("feature_gallery").main([
        str(image), "-o", str(out), "--backbone", f"{backbone_file}:build", "--size", "48",
        "--layers", "r1,r2,r3", "--modes", "max,none,strided"])
    with Image.open(out) as gallery:
        assert gallery.size == (3 * 48, 3 * 40)
        # r3 sits behind two pools: max (upsampled) and none (a-trous) must differ there
        max_r3 = gallery.crop((96, 20, 144, 40)).tobytes()
        none_r3 = gallery.crop((96, 60, 144, 80)).tobytes()
    assert max_r3 != none_r3


@pytest.mark.filterwarnings("ignore:--weights random")
def test_feature_gallery_random_vgg_defaults(tmp_path):
    image = make_image(tmp_path / "photo.png", (40, 32))
    out = tmp_path / "gallery.png"
    load_sample("feature_gallery").main([str(image), "-o", str(out), "--weights", "random",
                                         "--size", "40", "--modes", "max"])
    with Image.open(out) as gallery:
        assert gallery.size == (3 * 40, 32)  # default relu1_2,relu3_1,relu4_1


def test_batch_folder_renders_summarises_and_resumes(tmp_path, backbone_file, capsys):
    photos = tmp_path / "photos"
    for i in range(2):
        make_image(photos / f"photo{i}.png", (40, 32), seed=i)
    styles = [make_image(tmp_path / f"paint{k}.png", (32, 32), seed=10 + k) for k in range(2)]
    out_dir = tmp_path / "out"
    args = [str(photos), "--styles", ",".join(map(str, styles)), "--out-dir", str(out_dir),
            "--backbone", f"{backbone_file}:build", "--size", "32", "--iterations", "2",
            "--content-layers", "r2", "--style-layers", "r1,r2"]
    batch_folder = load_sample("batch_folder")
    assert batch_folder.main(args) == 0
    outputs = {f"photo{i}_paint{k}.png" for i in range(2) for k in range(2)}
    assert outputs <= {p.name for p in out_dir.iterdir()}
    assert "4 done, 0 skipped, 0 failed" in capsys.readouterr().out
    with Image.open(out_dir / "contact_sheet.png") as sheet:
        # 2 styles + header column across; the square styles' header row, then 2 photos
        # as tall as their 32x26 results at 192 px wide
        row = round(192 * 26 / 32)
        assert sheet.size == (3 * (192 + 6) + 6, 6 + 192 + 2 * (6 + row) + 6)
    assert batch_folder.main(args) == 0
    assert "0 done, 4 skipped, 0 failed" in capsys.readouterr().out


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared (tiny_darknet, images)")
def test_feature_gallery_on_tiny_darknet(tmp_path):
    out = tmp_path / "gallery.png"
    load_sample("feature_gallery").main([
        str(SHARED / "images" / "content" / "chelsea_cat.png"), "-o", str(out),
        "--backbone", f"{SHARED / 'models' / 'tiny_darknet' / 'load.py'}:build",
        "--size", "64", "--layers", "lrelu2,lrelu10", "--modes", "max,none"])
    with Image.open(out) as gallery:
        w, h = gallery.size
        assert w == 2 * 64 and h % 2 == 0 and 0 < h <= 2 * 64
        assert len(gallery.convert("L").getcolors(256)) > 16  # a picture, not a flat fill
