"""Clips through a trained style network (issue 23): `artconv style CLIP --model M`, batched
passes, resume, --flow-blend (artconv/video/feedforward.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from artconv.fast.engine import FastStyle
from artconv.fast.options import FastOptions
from artconv.io.images import load_image
from artconv.video.clip import frame_path, frames_done, run_clip, work_folder
from artconv.video.feedforward import feedforward_frames
from artconv.video.options import VideoOptions
from artconv.video.stats import warping_error
from tests.conftest import make_image, run_cli
from tests.fast.fast_models import tiny_model
from tests.video.clips import audio_packets, frames, stream_facts, write_clip


def _engine(model) -> FastStyle:
    return FastStyle(FastOptions(model=str(model), precision="fp32", device="cpu"))


def test_a_clip_through_a_model_keeps_its_frames_and_sound_whole_and_in_segments(
        tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    clip = write_clip(tmp_path / "walk.mp4", frames(5, (48, 64)), fps=8)
    model = tiny_model(tmp_path / "ink.safetensors")
    code, out, err = run_cli(["style", str(clip), "--model", str(model), "--batch", "2",
                              "--precision", "fp32", "-q", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    made = tmp_path / "walk_ink.mp4"  # CLIP_MODEL.mp4 in the current folder
    assert result["output"] == str(made) and result["frames"] == 5 and result["encoded"]
    assert result["frames_per_second"] > 0
    assert stream_facts(made) == {"frames": 5, "rate": 8, "size": (64, 48), "rotation": 0,
                                  "audio": True}
    assert audio_packets(made) == audio_packets(clip)
    # the frames are the network's: each equals the engine on that frame alone
    first = load_image(frame_path(work_folder(made), 1))
    alone = _engine(model).run(_decoded_first(clip))[0]
    assert float((first - alone).abs().max()) <= 1 / 255 + 1e-6

    segmented = tmp_path / "seg.mp4"
    code, _, err = run_cli(["style", str(clip), "--model", str(model), "-o", str(segmented),
                            "--segment-frames", "3", "--segment-overlap", "1", "-q"], capsys)
    assert code == 0, err
    assert stream_facts(segmented)["frames"] == 5 and stream_facts(segmented)["audio"]


def _decoded_first(clip):
    import torch

    from artconv.video.io import read_frames

    first = next(iter(read_frames(clip, VideoOptions())))
    return torch.from_numpy(np.array(first)).permute(2, 0, 1).float().div(255)[None]


def test_a_stopped_clip_resumes_to_what_an_uninterrupted_run_makes(tmp_path):
    clip = write_clip(tmp_path / "walk.mp4", frames(7, (48, 64)), fps=8, audio=False)
    model = tiny_model(tmp_path / "ink.safetensors")
    video = VideoOptions(flow_blend=0.6, batch=2)
    whole = run_clip(_engine(model), clip, tmp_path / "whole/", video=video)
    assert whole.frames == 7 and not whole.stopped

    def stop_at_frame_3(step):
        return step.frame < 3

    out = tmp_path / "resumed/"
    first = run_clip(_engine(model), clip, out, video=video, callback=stop_at_frame_3)
    assert first.stopped and frames_done(work_folder(out)) == 2
    second = run_clip(_engine(model), clip, out, video=video)  # a new engine, as a re-run
    assert second.new == 5 and frames_done(work_folder(out)) == 7
    for k in range(1, 8):
        a = load_image(frame_path(work_folder(tmp_path / "whole/"), k))
        b = load_image(frame_path(work_folder(out), k))
        assert bool((a == b).all()), f"frame {k} differs"


def test_flow_blend_lowers_the_warping_error_on_a_panning_clip(tmp_path):
    clip = frames(8, (48, 64), pan=3.0)
    model = tiny_model(tmp_path / "ink.safetensors")
    plain = list(feedforward_frames(_engine(model), clip, video=VideoOptions(batch=3)))
    blended = list(feedforward_frames(_engine(model), clip,
                                      video=VideoOptions(batch=3, flow_blend=0.7)))
    assert len(plain) == len(blended) == 8
    # the first frame has nothing before it: the network's own output
    assert bool((plain[0] == blended[0]).all())
    e_plain, e_blend = warping_error(plain, clip).mean, warping_error(blended, clip).mean
    print(f"warping error: plain {e_plain:.3e}, blend 0.7 {e_blend:.3e}")
    assert e_blend < 0.6 * e_plain, (e_blend, e_plain)


def test_bad_models_and_flags_on_a_clip_are_one_line_and_write_nothing(tmp_path, capsys):
    clip = write_clip(tmp_path / "walk.mp4", frames(3, (48, 64)), fps=8, audio=False)
    fake = tmp_path / "fake.safetensors"
    fake.write_text("not a model")
    out = tmp_path / "out.mp4"
    code, _, err = run_cli(["style", str(clip), "--model", str(fake), "-o", str(out)], capsys)
    assert code != 0 and err.count("\n") == 1 and str(fake) in err
    assert "Traceback" not in err
    assert not out.exists() and not work_folder(out).exists()

    model = tiny_model(tmp_path / "ink.safetensors")
    style = make_image(tmp_path / "paint.png")
    for args, says in (([str(style), "--model", str(model)], "a style argument and --model"),
                       (["--model", str(model), "--temporal-weight", "5"],
                        "--temporal-weight: does not apply to --model"),
                       ([str(style), "--flow-blend", "0.5"],
                        "--flow-blend: does not apply to style")):
        code, _, err = run_cli(["style", str(clip), *args, "-o", str(out)], capsys)
        assert code != 0 and says in err and err.count("\n") == 1, err
        assert not out.exists() and not work_folder(out).exists()


def test_batch_fast_takes_a_clip(tmp_path, capsys):
    clip = write_clip(tmp_path / "walk.mp4", frames(3, (48, 64)), fps=8, audio=False)
    model = tiny_model(tmp_path / "ink.safetensors")
    code, _, err = run_cli(["batch", "fast", str(clip), "--model", str(model),
                            "--precision", "fp32", "--flow-blend", "0.5", "--out-dir",
                            str(tmp_path / "out"), "-q"], capsys)
    assert code == 0, err
    made = list((tmp_path / "out").glob("*.mp4"))
    assert len(made) == 1 and stream_facts(made[0])["frames"] == 3


@pytest.mark.parametrize("batch", [4, 2])
@pytest.mark.parametrize("blend", [0.0, 0.5])
def test_frames_of_another_size_are_refused(tmp_path, blend, batch):
    from artconv.errors import ArtconvError

    model = tiny_model(tmp_path / "ink.safetensors")
    # the odd frame in the first pass and in a later one
    clip = [*frames(2, (48, 64)), *frames(1, (40, 64))]
    with pytest.raises(ArtconvError, match="frame 3"):
        list(feedforward_frames(_engine(model), clip,
                                video=VideoOptions(batch=batch, flow_blend=blend)))
