"""`--segment-frames`: a clip in overlapping segments, each its own task (on Ray too), joined
with every frame exactly once and the overlaps cross-faded exactly."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from artconv import batch, registry
from artconv.errors import ArtconvError
from artconv.io.images import load_image, read_recipe
from artconv.io.recipe import read_any_recipe
from artconv.video.clip import frame_path, frames_done, run_clip, work_folder
from artconv.video.options import VideoOptions
from artconv.video.segments import segment_folder, spans
from tests.conftest import run_cli
from tests.video.clips import audio_packets, dream_options, frames, stream_facts, write_clip

try:
    import ray
except ImportError:  # pragma: no cover - the ray extra is optional
    ray = None


def test_spans_cover_the_clip_with_the_overlap_asked():
    assert spans(10, 4, 2) == [(1, 4), (3, 6), (5, 8), (7, None)]
    assert spans(9, 4, 1) == [(1, 4), (4, 7), (7, None)]
    assert spans(3, 4, 2) == [(1, None)]
    with pytest.raises(ArtconvError, match="--segment-overlap 3: must be 1 to half"):
        spans(10, 4, 3)
    with pytest.raises(ArtconvError, match="--segment-overlap 3: at most half"):
        VideoOptions(segment_frames=4, segment_overlap=3).check()


def check_assembled(output, video: VideoOptions, total: int) -> None:
    """Every frame once; a frame one segment holds is that segment's; the overlaps are the
    exact linear cross-fade of the two segments' frames."""
    folder = work_folder(output)
    assert frames_done(folder) == total and not frame_path(folder, total + 1).exists()
    parts = spans(total, video.segment_frames, video.segment_overlap)
    held: dict[int, list[torch.Tensor]] = {}
    for span in parts:
        seg = segment_folder(output, span)
        n = frames_done(seg)
        assert n == (span[1] or total) - span[0] + 1
        for k in range(1, n + 1):
            held.setdefault(span[0] + k - 1, []).append(load_image(frame_path(seg, k)))
    assert sorted(held) == list(range(1, total + 1))
    seams = 0
    for g, images in held.items():
        got = load_image(frame_path(folder, g))
        if len(images) == 1:
            assert torch.equal(got, images[0])
            continue
        seams += 1
        first = max(s[0] for s in parts if s[0] <= g)  # where the later segment starts
        w = (g - first + 1) / (video.segment_overlap + 1)
        want = (1 - w) * images[0] + w * images[1]
        assert (got - want).abs().max() <= 0.5 / 255 + 1e-6, g
        assert read_recipe(frame_path(folder, g))["crossfade"] == pytest.approx([1 - w, w],
                                                                                abs=1e-6)
        assert not torch.equal(images[0], images[1])  # the fade has something to do
    assert seams == video.segment_overlap * (len(parts) - 1)


def test_a_segmented_clip_has_every_frame_once_and_exact_crossfades(tmp_path, backbone_file):
    clip = write_clip(tmp_path / "walk.mp4", frames(7, (32, 40)), fps=8)
    video = VideoOptions(segment_frames=4, segment_overlap=2)
    out = tmp_path / "walk_dream.mp4"
    engine = registry.get("dream").engine(dream_options(backbone_file))
    result = run_clip(engine, clip, out, video=video)
    assert result.encoded and result.frames == 7 and result.new == 4 + 4 + 1 + 2
    check_assembled(out, video, 7)
    facts = stream_facts(out)
    assert facts["frames"] == 7 and facts["rate"] == 8 and facts["audio"]
    assert audio_packets(out) == audio_packets(clip)
    recipe = read_any_recipe(out)
    assert recipe["segments"] == [[1, 4], [3, 6], [5, 7]] and recipe["frames"] == 7
    assert recipe["video"]["segment_frames"] == 4 and recipe["engine"] == "dream"

    # a second run redoes no segment
    again = run_clip(engine, clip, out, video=video)
    assert again.new == 0 and again.frames == 7


@pytest.mark.ray
@pytest.mark.skipif(ray is None, reason="Ray not installed (artconv[ray])")
def test_segments_run_as_ray_tasks_and_are_joined(tmp_path, backbone_file):
    from artconv.batch.ray import RayRunner

    clip = write_clip(tmp_path / "walk.mp4", frames(6, (32, 40)), fps=8)
    video = {"segment_frames": 4, "segment_overlap": 2}
    (job,) = batch.plan("dream", [clip])
    job = dataclasses.replace(job, video=video)
    runner = RayRunner(max_retries=0)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        report = batch.render([job], {"dream": dream_options(backbone_file)}, runner=runner)
    finally:
        if started:
            ray.shutdown()
    assert report.count("done") == 1 and len(report.results) == 1, report.to_dict()
    assert runner.stats["ray_tasks"] == 2  # one task a segment
    out = tmp_path / "walk_dream.mp4"
    check_assembled(out, VideoOptions.from_dict(video), 6)
    assert stream_facts(out)["frames"] == 6
    assert read_any_recipe(out)["segments"] == [[1, 4], [3, 6]]


def test_segments_from_the_command_line(tmp_path, backbone_file, capsys):
    clip = write_clip(tmp_path / "walk.mp4", frames(5, (32, 40)), fps=8)
    net = ["--backbone", f"{backbone_file}:build", "--layers", "r3", "--octaves", "1",
           "--steps", "2", "--precision", "fp32", "-q"]
    code, _, err = run_cli(["dream", str(clip), *net, "--segment-frames", "3",
                            "--segment-overlap", "1", "--partial"], capsys)
    assert code == 2 and "--partial: not with --segment-frames" in err
    code, out, err = run_cli(["dream", str(clip), *net, "--segment-frames", "3",
                              "--segment-overlap", "1", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["frames"] == 5
    made = tmp_path / "walk_dream.mp4"
    check_assembled(made, VideoOptions(segment_frames=3, segment_overlap=1), 5)
    assert stream_facts(made)["frames"] == 5
