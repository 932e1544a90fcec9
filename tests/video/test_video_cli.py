"""`artconv style CLIP`, `artconv dream CLIP` and `artconv video-stats` from the command line."""

from __future__ import annotations

import json

from artconv.video.clip import frames_done, work_folder
from tests.conftest import make_image, run_cli
from tests.video.clips import audio_packets, frames, stream_facts, write_clip

FAST_STYLE = ["--content-layers", "r2", "--style-layers", "r1,r2", "--precision", "fp32",
              "-i", "3", "--frame-iterations", "2", "-q"]
FAST_DREAM = ["--layers", "r3", "--octaves", "1", "--steps", "2", "--precision", "fp32", "-q"]


def test_style_on_a_clip_writes_a_clip_with_its_sound_and_stats_read_it(
        tmp_path, backbone_file, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    clip = write_clip(tmp_path / "walk.mp4", frames(4, (32, 40)), fps=8)
    style = make_image(tmp_path / "paint.png", (32, 32), seed=4)
    code, out, err = run_cli(["style", str(clip), str(style), "--backbone",
                              f"{backbone_file}:build", "--size", "40", *FAST_STYLE,
                              "--temporal-frames", "1,2", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    made = tmp_path / "walk_paint.mp4"  # CLIP_STYLE.mp4 in the current folder
    assert result["output"] == str(made) and result["frames"] == 4 and result["encoded"]
    assert stream_facts(made) == {"frames": 4, "rate": 8, "size": (40, 32), "rotation": 0,
                                  "audio": True}
    assert audio_packets(made) == audio_packets(clip)

    code, out, err = run_cli(["video-stats", str(made), "--input", str(clip), "--json"],
                             capsys)
    assert code == 0, err
    stats = json.loads(out)
    assert stats["frames"] == 4 and stats["pairs"] == 3 and stats["warping_error"] >= 0
    assert "style" in stats["losses"]


def test_dream_on_a_frames_glob_writes_frames_and_continues(tmp_path, backbone_file, capsys):
    from PIL import Image

    (tmp_path / "in").mkdir()
    for k, f in enumerate(frames(3, (32, 40)), 1):
        Image.fromarray(f).save(tmp_path / "in" / f"{k:04d}.png")
    out_dir = tmp_path / "dreamed"
    args = ["dream", str(tmp_path / "in" / "*.png"), "-o", f"{out_dir}/", "--backbone",
            f"{backbone_file}:build", *FAST_DREAM, "--frame-blend", "0.7"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert frames_done(work_folder(f"{out_dir}/")) == 3
    code, _, err = run_cli(args, capsys)  # nothing left to do
    assert code == 0, err


def test_clip_flags_on_a_still_and_bad_clips_are_one_line_errors(tmp_path, capsys):
    still = make_image(tmp_path / "photo.png")
    code, _, err = run_cli(["dream", str(still), "--frame-blend", "0.3"], capsys)
    assert code == 2 and "--frame-blend: only for clips" in err
    code, _, err = run_cli(["style", str(still), str(still), "--partial"], capsys)
    assert code == 2 and "--partial: only for clips" in err

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\0garbage" * 64)
    code, _, err = run_cli(["dream", str(bad), "--weights", "random"], capsys)
    assert code == 2 and "bad.mp4: not a readable video" in err
    assert len(err.strip().splitlines()) == 1

    clip = write_clip(tmp_path / "c.mp4", frames(2, (32, 40)), fps=8, audio=False)
    code, _, err = run_cli(["dream", str(clip), "-o", str(tmp_path / "c.gif")], capsys)
    assert code == 2 and "unsupported video format '.gif'" in err
    code, _, err = run_cli(["dream", str(clip), "-o", str(clip)], capsys)
    assert code == 2 and "is an input file" in err


def test_help_lists_the_clip_flags(capsys):
    code, out, _ = run_cli(["style", "--help"], capsys)
    assert code == 0 and "--temporal-weight" in out and "--partial" in out
    code, out, _ = run_cli(["dream", "--help"], capsys)
    assert code == 0 and "--frame-blend" in out


def test_the_clip_options_load_without_torch():
    import subprocess
    import sys

    probe = ("import sys; from artconv.video.options import VideoOptions; "
             "import artconv.cli.video; VideoOptions(every=2).validated(); "
             "assert 'torch' not in sys.modules and 'av' not in sys.modules "
             "and 'cv2' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


def test_clip_flags_never_shadow_an_engine_flag():
    import dataclasses

    from artconv.deepdream.options import DreamOptions
    from artconv.style.options import StyleOptions
    from artconv.video.options import VideoOptions

    clip = {f.name for f in dataclasses.fields(VideoOptions)}
    for record in (StyleOptions, DreamOptions):
        assert not clip & {f.name for f in dataclasses.fields(record)}, record.__name__
