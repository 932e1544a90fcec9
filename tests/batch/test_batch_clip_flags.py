"""`artconv batch style|dream` takes the clip flags (VideoOptions fields) and gives them to
every clip job of the batch, as a manifest's "video" table does."""

from __future__ import annotations

import json

from artconv.io.recipe import read_any_recipe
from tests.conftest import make_image, run_cli
from tests.video.clips import frames, stream_facts, write_clip

NET = ["--layers", "r3", "--octaves", "1", "--steps", "2", "--precision", "fp32", "-q"]


def test_clip_flags_reach_the_clip_jobs_of_a_batch(tmp_path, backbone_file, capsys):
    write_clip(tmp_path / "in" / "walk.mp4", frames(4, (32, 40)), fps=8)
    make_image(tmp_path / "in" / "still.png", (32, 40))
    code, out, err = run_cli(["batch", "dream", str(tmp_path / "in"), "--out-dir",
                              str(tmp_path / "out"), "--backbone", f"{backbone_file}:build",
                              *NET, "--every", "2", "--frame-blend", "0.25", "--crf", "30",
                              "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["done"] == 2, report
    video = {j["output"]: j.get("video") for j in report["jobs"]}
    assert video[str(tmp_path / "out" / "walk_dream.mp4")] == {
        "every": 2, "frame_blend": 0.25, "crf": 30}
    assert video[str(tmp_path / "out" / "still_dream.png")] is None  # a still takes none
    made = tmp_path / "out" / "walk_dream.mp4"
    facts = stream_facts(made)
    assert facts["frames"] == 2 and facts["rate"] == 4  # every 2nd frame, at half the rate
    recipe = read_any_recipe(made)
    assert recipe["video"]["every"] == 2 and recipe["video"]["frame_blend"] == 0.25


def test_without_clip_flags_a_clip_keeps_every_frame(tmp_path, backbone_file, capsys):
    clip = write_clip(tmp_path / "walk.mp4", frames(4, (32, 40)), fps=8)
    code, _, err = run_cli(["batch", "dream", str(clip), "--backbone",
                            f"{backbone_file}:build", *NET], capsys)
    assert code == 0, err
    assert stream_facts(tmp_path / "walk_dream.mp4")["frames"] == 4


def test_clip_flags_are_checked_and_need_a_clip(tmp_path, capsys):
    still = make_image(tmp_path / "still.png", (32, 40))
    code, _, err = run_cli(["batch", "dream", str(still), "--every", "2"], capsys)
    assert code == 2
    assert err.strip().startswith("error: --every: only for clips") and "\n" not in err.strip()
    clip = write_clip(tmp_path / "walk.mp4", frames(2, (32, 40)), fps=8)
    style = make_image(tmp_path / "paint.png", (32, 32))
    code, _, err = run_cli(["batch", "style", str(clip), "--styles", str(style),
                            "--temporal-frames", "2,1"], capsys)
    assert code == 2 and "--temporal-frames 2,1: must increase" in err
    assert not (tmp_path / "walk_paint.mp4").exists()


def test_batch_help_lists_the_clip_flags_for_clip_engines_only(capsys):
    code, out, _ = run_cli(["batch", "style", "--help"], capsys)
    assert code == 0 and "--temporal-weight" in out and "--every" in out
    assert "--partial" not in out  # a batch's Ctrl-C keeps frames; re-run to finish
    code, out, _ = run_cli(["batch", "features", "--help"], capsys)
    assert code == 0 and "--every" not in out
