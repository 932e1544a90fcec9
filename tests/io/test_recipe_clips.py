"""`artconv recipe` on clips: the sidecar beside a clip, an unfinished clip's work folder, a
folder of frames, and one-line errors when there is no recipe."""

from __future__ import annotations

import json
import shutil

import pytest

from artconv.errors import ArtconvError
from artconv.io.recipe import read_any_recipe
from tests.conftest import run_cli
from tests.video.clips import frames, write_clip

FAST_DREAM = ["--layers", "r3", "--octaves", "1", "--steps", "2", "--precision", "fp32", "-q"]


@pytest.fixture
def dreamed(tmp_path, backbone_file, capsys):
    """A 4-frame clip dreamed at every 2nd frame into out.mp4 (2 frames)."""
    clip = write_clip(tmp_path / "walk.mp4", frames(4, (32, 40)), fps=8)
    out = tmp_path / "out.mp4"
    code, _, err = run_cli(["dream", str(clip), "-o", str(out), "--backbone",
                            f"{backbone_file}:build", "--every", "2", *FAST_DREAM], capsys)
    assert code == 0, err
    return clip, out


def test_recipe_of_a_clip_reads_its_sidecar(dreamed, capsys):
    _, out = dreamed
    code, text, err = run_cli(["recipe", str(out)], capsys)
    assert code == 0, err
    recipe = json.loads(text)
    assert recipe == json.loads(out.with_name("out.mp4.json").read_text())
    assert recipe["engine"] == "dream" and recipe["frames"] == 2
    assert recipe["video"]["every"] == 2 and not recipe["partial"]
    assert "unfinished" not in recipe


def test_an_unfinished_clip_gives_its_work_folders_recipe(dreamed, capsys):
    clip, out = dreamed
    folder = out.with_name("out.mp4.frames")
    out.unlink()
    out.with_name("out.mp4.json").unlink()  # as before the clip is encoded
    (folder / "frame_000002.png").unlink()
    code, text, err = run_cli(["recipe", str(out)], capsys)
    assert code == 0, err
    recipe = json.loads(text)
    assert recipe["unfinished"] is True and recipe["frames"] == 1
    assert recipe["work_folder"] == str(folder)
    assert recipe["engine"] == "dream" and recipe["video"]["every"] == 2
    assert recipe["inputs"][0] == str(clip) and "frame" not in recipe

    for frame in folder.glob("frame_*.png"):  # started, nothing finished: its clip.json
        frame.unlink()
    recipe = read_any_recipe(out)
    assert recipe["unfinished"] is True and recipe["frames"] == 0
    assert recipe["engine"] == "dream" and recipe["video"]["every"] == 2


def test_a_frames_folder_output_gives_its_last_frames_recipe(tmp_path, backbone_file, capsys):
    clip = write_clip(tmp_path / "walk.mp4", frames(3, (32, 40)), fps=8)
    out = tmp_path / "dreamt"
    code, _, err = run_cli(["dream", str(clip), "-o", f"{out}/", "--backbone",
                            f"{backbone_file}:build", *FAST_DREAM], capsys)
    assert code == 0, err
    recipe = read_any_recipe(out)
    assert recipe["engine"] == "dream" and recipe["frames"] == 3
    assert "unfinished" not in recipe


def test_no_recipe_is_one_line_naming_the_file(tmp_path, capsys):
    clip = write_clip(tmp_path / "home.mp4", frames(2, (32, 40)), fps=8)
    code, _, err = run_cli(["recipe", str(clip)], capsys)
    assert code == 2
    assert err.strip() == f"error: {clip}: carries no artconv recipe (no sidecar home.mp4.json)"
    code, _, err = run_cli(["recipe", str(tmp_path / "gone.mp4")], capsys)
    assert code == 2 and err.strip() == f"error: {tmp_path / 'gone.mp4'}: no such file"

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ArtconvError, match=r"empty: is a folder, and holds no artconv clip"):
        read_any_recipe(empty)
    # a work folder left without frames or its record is no recipe either
    (tmp_path / "home.mp4.frames").mkdir()
    with pytest.raises(ArtconvError, match=r"home.mp4: carries no artconv recipe"):
        read_any_recipe(clip)
    shutil.rmtree(tmp_path / "home.mp4.frames")
    clip.with_name("home.mp4.json").write_text("[1, 2]")
    with pytest.raises(ArtconvError, match=r"home.mp4.json: artconv recipe is not a JSON"):
        read_any_recipe(clip)
