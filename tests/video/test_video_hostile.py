"""Hostile cases of the clip surface (issues 20, 26): a resume that would mix the work of
two runs, an output folder that is the input, options that overflowed, a selection past the
end, unwritable outputs, flicker figures of frames that do not correspond. Each refusal is
one line, comes before any work, and leaves every file as it was."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from artconv.deepdream.engine import Dreamer
from artconv.errors import ArtconvError
from artconv.video.clip import frames_done, run_clip
from artconv.video.options import VideoOptions
from tests.conftest import run_cli
from tests.video.clips import dream_options, frames, write_clip

FAST_DREAM = ["--layers", "r3", "--octaves", "1", "--steps", "2", "--precision", "fp32",
              "--tile", "0", "-q"]


def files_under(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` with its bytes: what a refusal must leave as it was."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def stop_after(count: int):
    """An on_frame that stops the clip (as Ctrl-C does) once `count` frames are written."""

    def on_frame(done: int, total: int | None) -> None:
        if done >= count:
            raise KeyboardInterrupt

    return on_frame


def one_line(err: str) -> str:
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    return err.strip()


def frames_folder(folder: Path, count: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k, f in enumerate(frames(count, (32, 40)), 1):
        Image.fromarray(f).save(folder / f"{k:04d}.png")
    return folder


# -- 26.2: inputs by their content, not by how their path is spelt ---------------------------
def test_a_resume_refuses_a_replaced_input_and_takes_the_same_file_by_another_path(
        tmp_path, backbone_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    clip = write_clip(tmp_path / "in.mp4", frames(4, (32, 40)), fps=8, audio=False)
    original = clip.read_bytes()
    engine = Dreamer(dream_options(backbone_file))
    with pytest.raises(KeyboardInterrupt):
        run_clip(engine, "in.mp4", "out.mp4", on_frame=stop_after(2))
    kept = files_under(tmp_path / "out.mp4.frames")
    assert frames_done(tmp_path / "out.mp4.frames") == 2

    write_clip(clip, frames(4, (32, 40), seed=5), fps=8, audio=False)  # another clip
    with pytest.raises(ArtconvError, match=r"out.mp4.frames: .*input in.mp4 is not the file "
                                           r"it was made from"):
        run_clip(engine, "in.mp4", "out.mp4")
    assert files_under(tmp_path / "out.mp4.frames") == kept
    assert not (tmp_path / "out.mp4").exists()

    clip.write_bytes(original)  # the same content again, named by its absolute path
    result = run_clip(engine, tmp_path / "in.mp4", tmp_path / "out.mp4")
    assert result.frames == 4 and result.new == 2 and result.encoded


# -- 20.5, 26.3: one identity for whole and segmented clips ---------------------------------
def test_whole_and_segmented_runs_share_one_identity_check(tmp_path, backbone_file):
    source = write_clip(tmp_path / "in.mp4", frames(5, (32, 40)), fps=8, audio=False)
    engine = Dreamer(dream_options(backbone_file))
    out = tmp_path / "whole" / "out.mp4"
    with pytest.raises(KeyboardInterrupt):  # stopped with --partial after 2 frames
        run_clip(engine, source, out, partial=True, on_frame=stop_after(2))
    assert json.loads((out.parent / "out.mp4.json").read_text())["partial"] is True
    kept = files_under(out.parent)
    segmented = VideoOptions(segment_frames=4, segment_overlap=1)
    with pytest.raises(ArtconvError, match=r"it was made with --segment-frames none, this "
                                           r"run has 4"):
        run_clip(engine, source, out, video=segmented)
    assert files_under(out.parent) == kept  # frames, clip.json, clip and sidecar

    seg = tmp_path / "seg" / "out.mp4"
    assert run_clip(engine, source, seg, video=segmented).frames == 5
    kept = files_under(seg.parent)
    for video, other, why in [
            (VideoOptions(segment_frames=4, segment_overlap=2), engine, "--segment-overlap 1"),
            (segmented, Dreamer(dream_options(backbone_file).replace(steps=3)), "--steps 2"),
            (VideoOptions(), engine, "--segment-frames 4, this run has none")]:
        with pytest.raises(ArtconvError, match=f"made with {why}"):
            run_clip(other, source, seg, video=video)
        assert files_under(seg.parent) == kept


# -- 20.6: an output folder that is the input folder ----------------------------------------
@pytest.mark.parametrize("given", ["folder", "glob"])
def test_frames_are_never_written_among_the_input_frames(tmp_path, backbone_file, capsys,
                                                         given):
    folder = frames_folder(tmp_path / "frames")
    kept = files_under(folder)
    source = str(folder) if given == "folder" else str(folder / "*.png")
    code, _, err = run_cli(["dream", source, "-o", f"{folder}/", "--backbone",
                            f"{backbone_file}:build", *FAST_DREAM], capsys)
    assert code == 2 and "holds the input frames" in one_line(err)
    assert files_under(folder) == kept


# -- 20.8, 20.9, 26.7: clip options and selections refused in one line ----------------------
def test_huge_tiny_and_past_the_end_selections_are_one_line_refusals(tmp_path, capsys,
                                                                     backbone_file):
    clip = write_clip(tmp_path / "in.mp4", frames(3, (32, 40)), fps=8, audio=False)
    folder = frames_folder(tmp_path / "frames")
    net = ["--backbone", f"{backbone_file}:build", *FAST_DREAM]
    for args, said in [([str(clip), "--start", "1e18"], "--start 1e+18: must be at most"),
                       ([str(clip), "--start", "1e300"], "--start 1e+300: must be at most"),
                       ([str(folder), "--fps", "1e-300"], "--fps 1e-300: must be at least"),
                       ([str(folder), "--fps", "0.0001"], "--fps 0.0001: must be at least"),
                       ([str(folder), "--start", "10"], "--start 10 s selects no frame of "
                                                        "its 3 frames")]:
        code, _, err = run_cli(["dream", *args, "-o", str(tmp_path / "out.mp4"), *net],
                               capsys)
        assert code == 2 and said in one_line(err), (args, err)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "in.mp4", "mynet.py"]

    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"engine": "dream", "input": "in.mp4", "output": "o.mp4",
                                    "video": {"start": 1e18}}) + "\n")
    code, _, err = run_cli(["batch", "run", str(manifest), "-q"], capsys)
    assert code == 2 and "jobs.jsonl:1" in one_line(err) and "must be at most" in err


# -- 26.8: an output that cannot be made, before the network loads --------------------------
@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
@pytest.mark.parametrize("output", ["/proc/out.mp4", "/proc/dir/"])
def test_an_unwritable_clip_output_is_refused_before_the_network_loads(tmp_path, capsys,
                                                                       output):
    clip = write_clip(tmp_path / "in.mp4", frames(2, (32, 40)), fps=8, audio=False)
    marker = tmp_path / "loaded"
    net = tmp_path / "net.py"  # a backbone that says when it is built
    net.write_text("from pathlib import Path\nfrom torch import nn\n\ndef build():\n"
                   f"    Path({str(marker)!r}).touch()\n"
                   "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())\n")
    code, _, err = run_cli(["dream", str(clip), "-o", output, "--backbone", f"{net}:build",
                            *FAST_DREAM], capsys)
    assert code == 2 and "is not writable" in one_line(err)
    assert not marker.exists()


# -- 20.12: flicker of frames that do not correspond ----------------------------------------
def test_video_stats_refuses_frames_that_do_not_correspond_and_names_a_partial_output(
        tmp_path, backbone_file, capsys):
    clip = write_clip(tmp_path / "in.mp4", frames(4, (32, 40)), fps=8, audio=False)
    longer = write_clip(tmp_path / "longer.mp4", frames(6, (32, 40)), fps=8, audio=False)
    engine = Dreamer(dream_options(backbone_file))
    whole = run_clip(engine, clip, tmp_path / "whole.mp4").output
    code, _, err = run_cli(["video-stats", str(whole), "--input", str(longer)], capsys)
    assert code == 2 and "the frames do not correspond" in one_line(err)

    with pytest.raises(KeyboardInterrupt):
        run_clip(engine, clip, tmp_path / "part.mp4", partial=True, on_frame=stop_after(2))
    code, out, err = run_cli(["video-stats", str(tmp_path / "part.mp4"), "--input",
                              str(clip)], capsys)
    assert code == 0, err
    assert "a partial output: its 2 frames against the input's first 2" in out


def test_a_work_folder_that_names_its_inputs_by_path_only_is_refused(tmp_path, backbone_file):
    # clip.json of an older artconv: inputs as typed, so a replaced file went unnoticed
    source = write_clip(tmp_path / "in.mp4", frames(2, (32, 40)), fps=8, audio=False)
    folder = tmp_path / "out.mp4.frames"
    folder.mkdir()
    (folder / "clip.json").write_text(json.dumps({"engine": "dream", "inputs": [str(source)]}))
    with pytest.raises(ArtconvError, match="names its inputs by path only"):
        run_clip(Dreamer(dream_options(backbone_file)), source, tmp_path / "out.mp4")
    assert [p.name for p in folder.iterdir()] == ["clip.json"]
