"""Clips in batches: a clip is one job (planned from folders and manifests), its output a
clip, skipped when done; on Ray too."""

from __future__ import annotations

import json

import pytest

from artconv import batch
from artconv.errors import ArtconvError
from artconv.style import StyleOptions
from tests.conftest import make_image
from tests.video.clips import dream_options, frames, stream_facts, write_clip

try:
    import ray
except ImportError:  # pragma: no cover - the ray extra is optional
    ray = None


def test_a_folder_of_clips_plans_one_clip_job_each_and_runs_them(tmp_path, backbone_file):
    for name in ("a", "b"):
        write_clip(tmp_path / "in" / f"{name}.mp4", frames(3, (32, 40)), fps=8)
    make_image(tmp_path / "in" / "still.png")
    jobs = batch.plan("dream", tmp_path / "in", out_dir=tmp_path / "out")
    outputs = sorted(j.output for j in jobs)
    assert outputs == [str(tmp_path / "out" / n) for n in ("a_dream.mp4", "b_dream.mp4",
                                                            "still_dream.png")]
    report = batch.render(jobs, {"dream": dream_options(backbone_file)})
    assert report.count("done") == 3 and report.ok, report.to_dict()
    assert stream_facts(tmp_path / "out" / "a_dream.mp4")["frames"] == 3
    again = batch.render(jobs, {"dream": dream_options(backbone_file)})
    assert again.count("skipped") == 3
    # outputs written beside their clips are not taken for new inputs by the next plan
    beside = batch.plan("dream", tmp_path / "in")
    batch.render(beside, {"dream": dream_options(backbone_file)})
    assert len(batch.plan("dream", tmp_path / "in")) == 3


def test_a_manifest_clip_job_takes_video_options(tmp_path, backbone_file):
    clip = write_clip(tmp_path / "walk.mp4", frames(6, (32, 40)), fps=12)
    make_image(tmp_path / "paint.png", (32, 32), seed=2)
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"engine": "style", "input": "walk.mp4",
                                    "styles": ["paint.png"],
                                    "video": {"every": 2, "frame_iterations": 2}}) + "\n")
    (job,) = batch.read_manifest(manifest)
    assert job.is_clip and job.output == str(tmp_path / "walk_paint.mp4")
    assert job.to_dict()["video"] == {"every": 2, "frame_iterations": 2}
    opts = StyleOptions(backbone=f"{tmp_path / 'net.py'}:build", size=40, iterations=(2,),
                        content_layers=("r2",), style_layers=("r1", "r2"), precision="fp32")
    (tmp_path / "net.py").write_text(backbone_file.read_text())
    report = batch.render([job], {"style": opts})
    assert report.ok, report.to_dict()
    facts = stream_facts(tmp_path / "walk_paint.mp4")
    assert facts["frames"] == 3 and facts["rate"] == 6
    assert clip.is_file()

    manifest.write_text(json.dumps({"engine": "style", "input": "walk.mp4",
                                    "styles": ["paint.png"], "video": {"every": 0}}) + "\n")
    with pytest.raises(ArtconvError, match=r"jobs.jsonl:1: option 'every': 0: must be at"):
        batch.read_manifest(manifest)
    manifest.write_text(json.dumps({"engine": "style", "input": "paint.png",
                                    "styles": ["paint.png"], "output": "x.png",
                                    "video": {"every": 2}}) + "\n")
    with pytest.raises(ArtconvError, match="'video' options need a clip"):
        batch.read_manifest(manifest)


@pytest.mark.ray
@pytest.mark.skipif(ray is None, reason="Ray not installed (artconv[ray])")
def test_clip_jobs_run_on_ray(tmp_path, backbone_file):
    from artconv.batch.ray import RayRunner

    for name in ("a", "b"):
        write_clip(tmp_path / f"{name}.mp4", frames(3, (32, 40)), fps=8)
    jobs = batch.plan("dream", [tmp_path / "a.mp4", tmp_path / "b.mp4"])
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        report = batch.render(jobs, {"dream": dream_options(backbone_file)},
                              runner=RayRunner(max_retries=0))
    finally:
        if started:
            ray.shutdown()
    assert report.count("done") == 2, report.to_dict()
    assert stream_facts(tmp_path / "b_dream.mp4")["frames"] == 3
