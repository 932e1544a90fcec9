"""The clip driver: steadier than frame by frame, clips in and out (count, rate, size,
rotation, audio), resuming without redoing a frame, --partial, bad clips."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from artconv.deepdream.engine import Dreamer, DreamOptions
from artconv.engine import Interrupted
from artconv.errors import ArtconvError
from artconv.io.images import read_recipe
from artconv.nets.extractor import FeatureExtractor
from artconv.style import StyleOptions, StyleTransfer
from artconv.video.clip import (
    TemporalLoop,
    frame_path,
    frames_done,
    run_clip,
    temporal_frames,
    work_folder,
)
from artconv.video.io import probe, read_frames
from artconv.video.options import VideoOptions
from artconv.video.stats import warping_error
from tests.conftest import SHARED, tiny_sequential
from tests.video.clips import audio_packets, frames, stream_facts, write_clip

STYLE = {"content_layers": ("r2",), "style_layers": ("r1", "r2", "r3"), "device": "cpu",
         "precision": "fp32", "loss_scale": "auto"}
DREAM = {"layers": ("r3",), "octaves": 1, "steps": 2, "tile": 0, "device": "cpu",
         "precision": "fp32"}
_FX: list[FeatureExtractor] = []


def fx() -> FeatureExtractor:
    if not _FX:
        _FX.append(FeatureExtractor(tiny_sequential()))
    return _FX[0]


def styler(**options) -> StyleTransfer:
    return StyleTransfer(StyleOptions(**{**STYLE, **options}), extractor=fx())


def dreamer(**options) -> Dreamer:
    return Dreamer(DreamOptions(**{**DREAM, **options}), extractor=fx())


def style_image() -> torch.Tensor:
    return torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(3))


def test_temporal_style_flickers_at_most_half_as_much_as_independent_frames():
    clip = frames(6, (48, 64), pan=3.0, zoom=1.02)
    steps = 30
    st = styler(size=64, iterations=(steps,), init="noise")
    steady = list(temporal_frames(st, clip, styles=[style_image()],
                                  video=VideoOptions(frame_iterations=steps)))
    alone = [st.run(torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255,
                    [style_image()])[0] for f in clip]
    assert len(steady) == 6 and steady[0].shape == (3, 48, 64)
    consistent = warping_error(steady, clip).mean
    independent = warping_error(alone, clip).mean
    assert consistent <= 0.5 * independent, (consistent, independent)


def test_later_frames_run_one_scale_with_the_temporal_prior_and_fewer_steps():
    seen = []
    st = styler(scales=(24, 48), iterations=(4,))
    loop = TemporalLoop(st, VideoOptions(frame_iterations=3), styles=[style_image()],
                        callback=seen.append)
    outs = list(loop.run(frames(3, (36, 48))))
    assert [i for i, _ in outs] == [1, 2, 3]
    first = [s for s in seen if s.frame == 1]
    later = [s for s in seen if s.frame == 2]
    assert {s.stages for s in first} == {2} and len(first) == 8
    assert {s.stages for s in later} == {1} and len(later) == 3
    assert "prior" in later[-1].figures and "prior" not in first[-1].figures
    assert loop.frames.later.target_computations == 1  # kept across frames


def test_dream_frames_start_from_the_warped_previous_dream():
    clip = frames(4, (40, 48), pan=2.0)
    steady = list(temporal_frames(dreamer(), clip, video=VideoOptions(frame_blend=0.8)))
    alone = list(temporal_frames(dreamer(), clip, video=VideoOptions(frame_blend=0.0)))
    assert warping_error(steady, clip).mean < warping_error(alone, clip).mean


def test_clip_in_clip_out_keeps_frames_rate_size_and_audio(tmp_path):
    source = write_clip(tmp_path / "in.mp4", frames(6, (48, 64)), fps=12)
    result = run_clip(dreamer(), source, tmp_path / "out.mp4")
    facts = stream_facts(tmp_path / "out.mp4")
    assert result.encoded and result.frames == 6
    assert facts == {"frames": 6, "rate": 12, "size": (64, 48), "rotation": 0, "audio": True}
    assert audio_packets(tmp_path / "out.mp4") == audio_packets(source)
    recipe = read_recipe(frame_path(work_folder(tmp_path / "out.mp4"), 3))
    assert recipe["engine"] == "dream" and recipe["frame"] == 3
    sidecar = (tmp_path / "out.mp4.json").read_text()
    assert '"frames": 6' in sidecar and '"partial": false' in sidecar


def test_rotation_is_kept_and_frames_reach_the_engine_upright(tmp_path):
    source = write_clip(tmp_path / "in.mp4", frames(3, (48, 64)), fps=10, audio=False,
                        rotation=90)
    info = probe(source)
    assert (info.width, info.height, info.rotation) == (48, 64, 90)
    assert next(read_frames(source)).shape == (64, 48, 3)
    run_clip(dreamer(), source, tmp_path / "out.mp4")
    facts = stream_facts(tmp_path / "out.mp4")
    assert facts["size"] == (64, 48) and facts["rotation"] == 90 and not facts["audio"]


def test_start_duration_and_every_pick_frames_and_divide_the_rate(tmp_path):
    source = write_clip(tmp_path / "in.mp4", frames(12, (32, 40)), fps=12)
    video = VideoOptions(start=0.25, duration=0.5, every=2)
    assert len(list(read_frames(source, video))) == 3
    run_clip(dreamer(), source, tmp_path / "part.mp4", video=video)
    facts = stream_facts(tmp_path / "part.mp4")
    assert facts["frames"] == 3 and facts["rate"] == 6


def test_a_resumed_clip_redoes_no_finished_frame(tmp_path, monkeypatch):
    source = write_clip(tmp_path / "in.mp4", frames(6, (32, 40)), fps=12)
    output = tmp_path / "out.mp4"

    def stop_in_frame_4(step):
        return step.frame < 4

    st = styler(size=40, iterations=(3,))
    first = run_clip(st, source, output, styles=[style_image()], callback=stop_in_frame_4)
    assert first.stopped and not output.exists()
    assert frames_done(work_folder(output)) == 3
    before = frame_path(work_folder(output), 3).stat().st_mtime_ns

    calls = []
    run = StyleTransfer.run
    monkeypatch.setattr(StyleTransfer, "run", lambda self, *a, **k: (calls.append(
        k.get("init") is not None), run(self, *a, **k))[1])
    second = run_clip(styler(size=40, iterations=(3,)), source, output,
                      styles=[style_image()])
    assert second.new == 3 and second.encoded
    # frames 4..6 only, each continuing the scene from the warped frame before it
    assert calls == [True, True, True] and second.times.scenes == 0
    assert frame_path(work_folder(output), 3).stat().st_mtime_ns == before
    assert stream_facts(output)["frames"] == 6


def test_ctrl_c_keeps_finished_frames_and_partial_encodes_them(tmp_path):
    source = write_clip(tmp_path / "in.mp4", frames(5, (32, 40)), fps=12)
    output = tmp_path / "out.mp4"

    def ctrl_c_in_frame_3(step):
        if step.frame == 3:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        run_clip(dreamer(), source, output, callback=ctrl_c_in_frame_3, partial=True)
    assert frames_done(work_folder(output)) == 2
    assert stream_facts(output)["frames"] == 2
    assert '"partial": true' in (tmp_path / "out.mp4.json").read_text()


def test_a_work_folder_of_other_options_is_refused(tmp_path):
    source = write_clip(tmp_path / "in.mp4", frames(2, (32, 40)), fps=12, audio=False)
    run_clip(dreamer(), source, tmp_path / "out.mp4")
    with pytest.raises(ArtconvError, match="out.mp4.frames: holds frames made with other"):
        run_clip(dreamer(steps=3), source, tmp_path / "out.mp4")


def test_frames_glob_in_and_frames_folder_out(tmp_path):
    from PIL import Image

    for k, f in enumerate(frames(3, (32, 40)), 1):
        Image.fromarray(f).save(tmp_path / f"f{k:03d}.png")
    result = run_clip(dreamer(), str(tmp_path / "f*.png"), tmp_path / "out/",
                      video=VideoOptions(fps=8))
    assert not result.encoded and frames_done(tmp_path / "out") == 3


def test_corrupt_and_truncated_clips_fail_with_one_line_naming_the_file(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(ArtconvError, match=r"bad.mp4: not a readable video") as info:
        probe(bad)
    assert "\n" not in str(info.value)
    good = write_clip(tmp_path / "good.mp4", frames(8, (32, 40)), fps=12, audio=False)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ArtconvError, match=r"cut.mp4: ") as info:
        list(read_frames(cut))
    assert "\n" not in str(info.value)


def test_a_clip_whose_frames_break_names_the_frame(tmp_path):
    import av

    # MPEG-TS carries its frames without an index: garbage in the middle breaks frames
    path = tmp_path / "broken.ts"
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("mpeg2video", rate=12)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for f in frames(24, (48, 64)):
            for p in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    middle = len(data) // 2
    data[middle:middle + 4000] = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    with warnings.catch_warnings(), pytest.raises(ArtconvError) as info:
        warnings.simplefilter("ignore")
        list(read_frames(path))
    assert "broken.ts: cannot decode frame" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.skipif(not (SHARED / "video" / "make_clip.py").is_file(),
                    reason="../shared/video/make_clip.py is not here")
def test_a_scene_cut_starts_a_new_scene(tmp_path):
    import subprocess
    import sys

    clip = tmp_path / "shared.mp4"
    subprocess.run([sys.executable, str(SHARED / "video" / "make_clip.py"), str(clip),
                    "--seconds", "1", "--fps", "9", "--width", "96", "--height", "64"],
                   check=True, capture_output=True)
    loop = TemporalLoop(dreamer(), VideoOptions())
    outs = list(loop.run(read_frames(clip)))
    assert len(outs) == 9 and loop.times.scenes == 2  # the first frame and the cut at 2/3
