"""Zoom videos, a driver above the dream engine: frames with recipes, steps counted over the
whole video, stopping from the callback, resuming, and the API entry points."""

from __future__ import annotations

import pytest
import torch

import artconv
from artconv.deepdream.engine import Dreamer, DreamOptions
from artconv.deepdream.zoom import frame_paths, gif_path, write_frames
from artconv.errors import ArtconvError
from artconv.io.images import load_image, read_recipe
from artconv.io.recipe import read_any_recipe
from artconv.nets.extractor import FeatureExtractor
from artconv.outputs import frames_done
from tests.conftest import tiny_sequential

OPTIONS = {"layers": ("r3",), "octaves": 1, "steps": 2, "zoom": 1.1, "rotate": 2.0, "tile": 0,
           "device": "cpu", "precision": "fp32"}
_FX: list[FeatureExtractor] = []


def fx() -> FeatureExtractor:
    if not _FX:
        _FX.append(FeatureExtractor(tiny_sequential()))
    return _FX[0]


def dreamer(frames: int, callback=None, **options) -> Dreamer:
    return Dreamer(DreamOptions(frames=frames, **{**OPTIONS, **options}), extractor=fx(),
                   callback=callback)


def image() -> torch.Tensor:
    return torch.rand(3, 20, 20, generator=torch.Generator().manual_seed(0))


def test_frames_carry_recipes_and_steps_count_over_the_video(tmp_path):
    steps = []
    paths = write_frames(dreamer(3, steps.append), image(), tmp_path / "z", inputs=["in.png"])
    assert paths == frame_paths(tmp_path / "z", 3) and frames_done(tmp_path / "z") == 3
    assert [s.frame for s in steps] == [1, 1, 2, 2, 3, 3]
    assert [s.done for s in steps] == list(range(1, 7)) and {s.total for s in steps} == {6}
    recipe = read_recipe(paths[1])
    assert recipe["frame"] == 2 and recipe["engine"] == "dream"
    assert recipe["inputs"] == ["in.png"]
    assert not gif_path(tmp_path / "z").exists()
    # named and read as a clip's frames are (one format, one reader): `artconv recipe FOLDER`
    folder = read_any_recipe(tmp_path / "z")
    assert folder["frames"] == 3 and folder["engine"] == "dream" and "frame" not in folder


def test_a_stop_keeps_only_whole_frames_and_the_rerun_matches(tmp_path):
    whole = write_frames(dreamer(3, gif=True), image(), tmp_path / "a")
    stopped = write_frames(dreamer(3, lambda s: s.frame < 2, gif=True), image(),
                           tmp_path / "b")
    assert [p.name for p in stopped] == ["frame_000001.png"]
    assert frames_done(tmp_path / "b", 3) == 1
    assert not gif_path(tmp_path / "b").exists()
    steps = []
    resumed = write_frames(dreamer(3, steps.append, gif=True), image(), tmp_path / "b")
    assert {s.frame for s in steps} == {2, 3} and {s.total for s in steps} == {4}
    assert gif_path(tmp_path / "b").is_file()
    for a, b in zip(whole, resumed, strict=True):
        torch.testing.assert_close(load_image(a), load_image(b), rtol=0, atol=0)


def test_api_entry_points_write_the_same_frames(tmp_path):
    source = tmp_path / "in.png"
    artconv.save_image(image(), source)
    by_api = artconv.dream_frames(source, tmp_path / "api", extractor=fx(),
                                  frames=2, **OPTIONS)
    by_method = write_frames(dreamer(2), load_image(source), tmp_path / "method")
    for a, b in zip(by_api, by_method, strict=True):
        torch.testing.assert_close(load_image(a), load_image(b), rtol=0, atol=0)
    assert read_recipe(by_api[0])["inputs"] == [str(source)]


def test_frames_must_be_asked_for_and_match_the_input(tmp_path):
    with pytest.raises(ArtconvError, match="--frames"):
        write_frames(dreamer(0), image(), tmp_path / "z")
    write_frames(dreamer(1), image(), tmp_path / "z")
    with pytest.raises(ArtconvError, match="use another folder or the same --size"):
        write_frames(dreamer(2), image()[:, :16], tmp_path / "z")
